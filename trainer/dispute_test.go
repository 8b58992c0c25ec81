package trainer

import (
	"errors"
	"slices"
	"testing"

	"github.com/vtrain/vtrain/consensus"
)

// answer is the accused's honest signed step hashes of segment seg (the
// signature is the engine's to check, not Check's).
func (hr *honestRound) answer(t *testing.T, seg int) *consensus.Answer {
	t.Helper()
	leaves, err := AnswerLeaves(hr.spec, hr.starts[seg], seg, hr.replayer(t))
	if err != nil {
		t.Fatal(err)
	}
	return &consensus.Answer{Round: 0, Segment: seg, Leaves: leaves}
}

// keep serves what a challenger kept and the accused's honest states by
// hash, as referees fetch them (the accused recomputes a state it did not
// keep).
func (hr *honestRound) keep(t *testing.T, f Finding) Fetch {
	return func(h Hash, step int) (*Snapshot, error) {
		for i := range f.Keep {
			if f.Keep[i].Hash() == h {
				return &f.Keep[i], nil
			}
		}
		for i := range hr.starts {
			if hr.starts[i].Hash() == h {
				return &hr.starts[i], nil
			}
		}
		if hr.final.Hash() == h {
			return &hr.final, nil
		}
		if s, err := StateAt(hr.spec, hr.starts, step, hr.replayer(t)); err == nil && s.Hash() == h {
			return &s, nil
		}
		return nil, errors.New("not held")
	}
}

// light is fetch serving every state light: hashing right, but not to be
// re-executed from.
func light(fetch Fetch) Fetch {
	return func(h Hash, step int) (*Snapshot, error) {
		s, err := fetch(h, step)
		if s != nil {
			l := s.Light()
			s = &l
		}
		return s, err
	}
}

// only serves what a challenger kept and nothing else.
func only(f Finding) Fetch {
	return func(h Hash, _ int) (*Snapshot, error) {
		for i := range f.Keep {
			if f.Keep[i].Hash() == h {
				return &f.Keep[i], nil
			}
		}
		return nil, errors.New("not kept")
	}
}

func none(Hash, int) (*Snapshot, error) { return nil, errors.New("none") }

// openings serves a challenger's kept openings, or else the accused's
// honest ones.
func (hr *honestRound) openings(t *testing.T, f Finding) FetchOpenings {
	return func() ([]Opening, error) {
		if f.KeepOpenings != nil {
			return f.KeepOpenings, nil
		}
		return hr.open(t, hr.res, hr.kept, hr.blocks), nil
	}
}

// TestDisputesOnRealSteps runs the dispute protocol on a real MLP round
// (AdamW, so the optimizer state is in every hash): an honest round needs
// no step hashes; a lie in one step is pinned to that step of the first
// segment that missed its root, and a referee re-executing that one step
// upholds it; a false claim against an honest step, and a false link
// claim, are overturned; a flipped payload is a link fault the referee
// upholds from the light final state and the openings; an answer that
// contradicts the commitment, or none, is named as such; a state served
// light, or not at all, leaves the claim unjudged.
func TestDisputesOnRealSteps(t *testing.T) {
	hr := newHonestRound(t, OptAdamW)
	S := hr.spec.Segments()
	r := hr.replayer(t)
	// check is Check with a for the step hashes; it records the segments
	// they were asked for.
	var asked []int
	check := func(u *consensus.Update, ev Evidence, a *consensus.Answer) Finding {
		t.Helper()
		asked = asked[:0]
		f, err := Check(hr.spec, hr.base, u, hr.blocks, ev, r, func(seg int) *consensus.Answer { asked = append(asked, seg); return a })
		if err != nil {
			t.Fatalf("check could not run: %v", err)
		}
		return f
	}
	verdict := func(f Finding) *consensus.VerdictMsg {
		return &consensus.VerdictMsg{Round: 0, Segment: f.Segment, Fault: f.Fault, Step: f.Step, Answer: f.Answer}
	}
	referee := func(x *consensus.VerdictMsg, u *consensus.Update, fetch Fetch, open FetchOpenings) consensus.Ruling {
		t.Helper()
		got, err := Referee(hr.spec, hr.base, u, x, hr.blocks, r, fetch, open)
		if err != nil {
			t.Fatalf("referee: %v", err)
		}
		return got
	}
	unjudged := func(name string, x *consensus.VerdictMsg, u *consensus.Update, fetch Fetch, open FetchOpenings) {
		t.Helper()
		if got, err := Referee(hr.spec, hr.base, u, x, hr.blocks, r, fetch, open); got != consensus.Lapsed || !errors.Is(err, ErrUnjudgeable) {
			t.Errorf("%s: %v, %v; want lapsed as unjudgeable", name, got, err)
		}
	}
	honest := hr.evidence(t)

	// An honest round reaches every root: no step hashes are asked for,
	// and wrong ones on offer change nothing.
	wrong := hr.answer(t, 1)
	wrong.Leaves[2][0] ^= 1
	if f := check(hr.u, honest, wrong); f.Fault != consensus.FaultNone || len(asked) != 0 {
		t.Errorf("an honest round: %s, step hashes asked for segments %v", brief(f), asked)
	}

	// lie is hr's update committing to a root for segment seg that its
	// steps do not reach, and the accused's leaves leading there, honest
	// before step from (a step of the round, in the segment).
	lie := func(seg, from int) (*consensus.Update, *consensus.Answer) {
		lo, _ := SegmentSteps(hr.spec, seg)
		u := hr.clone()
		u.Segments[seg][0] ^= 1
		a := hr.answer(t, seg)
		for i := from - lo - 1; i < len(a.Leaves); i++ {
			a.Leaves[i][1] ^= 1
		}
		a.Leaves[len(a.Leaves)-1] = u.Segments[seg]
		return u, a
	}
	for _, tc := range []struct {
		name      string
		seg, step int
	}{
		{"the first step", 0, 1},
		{"a middle step of the first segment", 0, 3},
		{"the first step of a middle segment", 1, 6},
		{"a middle step of a middle segment", 1, 8},
		{"the last step of the last, shorter segment", S - 1, 12},
	} {
		u, a := lie(tc.seg, tc.step)
		f := check(u, honest, a)
		if f.Fault != consensus.FaultStep || f.Segment != tc.seg || f.Step != tc.step || f.Answer != a || len(f.Keep) != 1 || f.Keep[0].Step != int64(tc.step-1) || !slices.Equal(asked, []int{tc.seg}) {
			t.Errorf("%s: a lie from step %d of segment %d: %s (asked for %v)", tc.name, tc.step, tc.seg, brief(f), asked)
			continue
		}
		if got := referee(verdict(f), u, hr.keep(t, f), nil); got != consensus.Upheld {
			t.Errorf("%s: the referee of a true step claim: %v", tc.name, got)
		}
		// What the challenger kept is enough: the state before the step,
		// or nothing for the round's first step.
		if got := referee(verdict(f), u, only(f), nil); got != consensus.Upheld {
			t.Errorf("%s: the referee with the challenger's keep alone: %v", tc.name, got)
		}
		if tc.step == 1 {
			if got := referee(verdict(f), u, none, nil); got != consensus.Upheld {
				t.Errorf("%s: the referee of the round's first step, nothing fetched: %v", tc.name, got)
			}
			continue
		}
		// The state before the disputed step, served light by a hostile
		// source: it hashes right but cannot be re-executed, so the
		// referee cannot rule on it (it neither upholds nor overturns);
		// served by nobody, likewise.
		unjudged(tc.name+", state served light", verdict(f), u, light(hr.keep(t, f)), nil)
		unjudged(tc.name+", state not served", verdict(f), u, none, nil)
	}

	// A later segment that also misses its root is not looked at: the
	// dispute is on the first.
	u, a := lie(1, 8)
	u.Segments[2][0] ^= 1
	if f := check(u, honest, a); f.Fault != consensus.FaultStep || f.Segment != 1 || f.Step != 8 || !slices.Equal(asked, []int{1}) {
		t.Errorf("two missed roots: %s (asked for %v)", brief(f), asked)
	}

	// The same claims made up against the honest round: overturned. The
	// first step of a segment re-executes from the committed start, a
	// later one from the signed leaf before it; segment 0 starts from the
	// agreed base and needs nothing fetched.
	for _, step := range []int{1, 3, 6, 8, 11, 12} {
		seg := min((step-1)/hr.spec.SegmentLen(), S-1)
		x := &consensus.VerdictMsg{Round: 0, Segment: seg, Fault: consensus.FaultStep, Step: step, Answer: hr.answer(t, seg)}
		fetch := hr.keep(t, Finding{})
		if step == 1 {
			fetch = none
		}
		if got := referee(x, hr.u, fetch, nil); got != consensus.Overturned {
			t.Errorf("a false claim on step %d (segment %d): %v", step, seg, got)
		}
	}
	// A claim on a step outside its segment, or with leaves of the wrong
	// count, is overturned without looking.
	for _, x := range []*consensus.VerdictMsg{
		{Segment: 1, Fault: consensus.FaultStep, Step: 5, Answer: hr.answer(t, 1)},
		{Segment: 1, Fault: consensus.FaultStep, Step: 11, Answer: hr.answer(t, 1)},
		{Segment: 1, Fault: consensus.FaultStep, Step: 7, Answer: &consensus.Answer{Segment: 1, Leaves: hr.answer(t, 1).Leaves[1:]}},
		{Segment: S, Fault: consensus.FaultStep, Step: 12, Answer: hr.answer(t, S-1)},
	} {
		if got := referee(x, hr.u, none, nil); got != consensus.Overturned {
			t.Errorf("a malformed claim on step %d of segment %d: %v", x.Step, x.Segment, got)
		}
	}

	// A flipped payload: every step is honest, the link is not. The
	// update's payload encodes a state as far from the base as the real
	// final state, on the other side, and commits to the residual that
	// encoding left.
	far := make([]float32, len(hr.base))
	for i := range far {
		far[i] = hr.base[i] + (hr.base[i] - hr.final.Params[i])
	}
	payload, out, err := Link(hr.spec, hr.base, far, hr.res)
	if err != nil {
		t.Fatal(err)
	}
	flipped := hr.clone()
	flipped.Payload, flipped.ResidualOut = payload, ResidualRoot(hr.spec, out)
	flippedEv := Evidence{Openings: hr.open(t, hr.res, out, hr.blocks)}
	f := check(flipped, flippedEv, nil)
	if f.Fault != consensus.FaultLink || f.Segment != S-1 || len(asked) != 0 {
		t.Fatalf("a flipped payload: %s", brief(f))
	}
	// The referee needs the final state (light will do: nothing is
	// re-executed) and the openings, both from the challenger's keep.
	if got := referee(verdict(f), flipped, only(f), hr.openings(t, f)); got != consensus.Upheld {
		t.Errorf("the referee of a true link claim: %v", got)
	}
	unjudged("a link claim without the final state", verdict(f), flipped, none, hr.openings(t, f))
	unjudged("a link claim without openings", verdict(f), flipped, only(f), func() ([]Opening, error) { return nil, errors.New("none") })
	bad := slices.Clone(f.KeepOpenings)
	bad[0].InPath = slices.Clone(bad[0].InPath)
	bad[0].InPath[0][0] ^= 1
	unjudged("a link claim on openings with a bad path", verdict(f), flipped, only(f), hr.openings(t, Finding{KeepOpenings: bad}))
	unjudged("a link claim on openings of other blocks", verdict(f), flipped, only(f), hr.openings(t, Finding{KeepOpenings: hr.open(t, hr.res, out, []int{0, 1, 2, 3})}))

	// A false link claim against the honest update: overturned, on the
	// challenger's openings or the accused's.
	link := &consensus.VerdictMsg{Round: 0, Segment: S - 1, Fault: consensus.FaultLink}
	if got := referee(link, hr.u, hr.keep(t, Finding{}), hr.openings(t, Finding{})); got != consensus.Overturned {
		t.Errorf("a false link claim: %v", got)
	}
	if got := referee(link, hr.u, light(hr.keep(t, Finding{})), hr.openings(t, Finding{KeepOpenings: honest.Openings})); got != consensus.Overturned {
		t.Errorf("a false link claim, the final state light: %v", got)
	}

	// A residual kept that does not follow from the payload, in an opened
	// block: a link fault the referee upholds.
	alt := slices.Clone(hr.kept)
	lo, _ := blockRange(hr.spec, len(hr.base), hr.blocks[1])
	alt[lo] += 1e-3
	altered := hr.clone()
	altered.ResidualOut = ResidualRoot(hr.spec, alt)
	f = check(altered, Evidence{Openings: hr.open(t, hr.res, alt, hr.blocks)}, nil)
	if f.Fault != consensus.FaultLink {
		t.Fatalf("a residual kept altered in an opened block: %s", brief(f))
	}
	if got := referee(verdict(f), altered, only(f), hr.openings(t, f)); got != consensus.Upheld {
		t.Errorf("the referee of a residual kept that does not follow: %v", got)
	}

	// Answers that do not hold, for a segment that misses its root.
	bent, _ := lie(1, 8)
	short := hr.answer(t, 1)
	short.Leaves = short.Leaves[1:]
	if f := check(bent, honest, short); f.Fault != consensus.FaultAnswer || f.Segment != 1 || f.Answer != short {
		t.Errorf("an answer with a leaf missing: %s", brief(f))
	}
	if f := check(bent, honest, hr.answer(t, 1)); f.Fault != consensus.FaultAnswer || f.Segment != 1 {
		t.Errorf("honest leaves that do not end at the committed root: %s", brief(f))
	}
	if f := check(bent, honest, nil); f.Fault != consensus.FaultSilent || f.Segment != 1 {
		t.Errorf("a missed root and no step hashes: %s", brief(f))
	}
	// Evidence that does not hold is no answer, whatever the step hashes:
	// nothing is re-executed for it.
	if f := check(bent, Evidence{}, hr.answer(t, 1)); f.Fault != consensus.FaultSilent || f.Segment != S-1 || len(asked) != 0 {
		t.Errorf("no openings: %s (asked for %v)", brief(f), asked)
	}
}
