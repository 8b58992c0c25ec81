package trainer

import (
	"errors"
	"slices"
	"testing"

	"github.com/vtrain/vtrain/consensus"
)

// answered is hr's evidence on segment seg with honest step hashes (the
// signature is the engine's to check, not Check's).
func (hr *honestRound) answered(t *testing.T, seg int) Evidence {
	t.Helper()
	ev := hr.evidence(seg)
	leaves, err := AnswerLeaves(hr.spec, hr.starts[seg], seg, hr.replayer(t))
	if err != nil {
		t.Fatal(err)
	}
	ev.Answer = &consensus.Answer{Round: 0, Segment: seg, Leaves: leaves}
	return ev
}

func (hr *honestRound) replayer(t *testing.T) Replayer {
	r, err := NewReplayer(hr.spec, 0, hr.peer, hr.set.Train)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// keep serves what a challenger kept and the accused's honest evidence by
// hash, as referees fetch them (the accused recomputes a state it did not
// keep).
func (hr *honestRound) keep(t *testing.T, f Finding) Fetch {
	return func(h Hash, step int) (*Snapshot, []float32, error) {
		for i := range f.Keep {
			if f.Keep[i].Hash() == h {
				return &f.Keep[i], nil, nil
			}
		}
		for _, v := range f.KeepVec {
			if Hash(ParamHash(v)) == h {
				return nil, v, nil
			}
		}
		for i := range hr.starts {
			if hr.starts[i].Hash() == h {
				return &hr.starts[i], nil, nil
			}
		}
		if hr.final.Hash() == h {
			return &hr.final, nil, nil
		}
		if Hash(ParamHash(hr.res)) == h {
			return nil, hr.res, nil
		}
		if s, err := StateAt(hr.spec, hr.starts, step, hr.replayer(t)); err == nil && s.Hash() == h {
			return &s, nil, nil
		}
		return nil, nil, errors.New("not held")
	}
}

// TestDisputesOnRealSteps runs the dispute protocol on a real MLP round
// (AdamW, so the optimizer state is in every hash): an honest answer
// passes every segment; a lie in one step is pinned to that step and a
// referee re-executing that one step upholds it; a false claim against an
// honest step, and a false link claim, are overturned; a flipped payload is
// a link fault the referee upholds; an answer that contradicts the
// commitment, or comes without its start state, is named as such.
func TestDisputesOnRealSteps(t *testing.T) {
	hr := newHonestRound(t, OptAdamW)
	r := hr.replayer(t)
	check := func(u *consensus.Update, seg int, ev Evidence) (Finding, error) {
		return Check(hr.spec, hr.base, u, seg, ev, r, func() *consensus.Answer { return ev.Answer })
	}
	for seg := range hr.spec.Segments() {
		f, err := check(hr.u, seg, hr.answered(t, seg))
		if err != nil || f.Fault != consensus.FaultNone {
			t.Fatalf("honest segment %d: %+v, %v", seg, f, err)
		}
	}
	verdict := func(seg int, f Finding, ev Evidence) *consensus.VerdictMsg {
		return &consensus.VerdictMsg{Round: 0, Segment: seg, Fault: f.Fault, Step: f.Step, Answer: ev.Answer}
	}
	referee := func(x *consensus.VerdictMsg, u *consensus.Update, fetch Fetch) consensus.Ruling {
		t.Helper()
		got, err := Referee(hr.spec, hr.base, u, x, r, fetch)
		if err != nil {
			t.Fatalf("referee: %v", err)
		}
		return got
	}

	// A lie from the third step of segment 1 (steps 6..10) on: the update
	// commits to a root its steps do not reach, and the accused signs
	// leaves leading there, honest up to the second step.
	const seg = 1
	lo, _ := SegmentSteps(hr.spec, seg)
	bent := *hr.u
	bent.Segments = slices.Clone(hr.u.Segments)
	bent.Segments[seg][0] ^= 1
	ev := hr.answered(t, seg)
	for i := 2; i < len(ev.Answer.Leaves); i++ {
		ev.Answer.Leaves[i][1] ^= 1
	}
	ev.Answer.Leaves[len(ev.Answer.Leaves)-1] = bent.Segments[seg]
	f, err := check(&bent, seg, ev)
	if err != nil || f.Fault != consensus.FaultStep || f.Step != lo+3 || len(f.Keep) != 1 {
		t.Fatalf("a lie from step %d: %+v, %v", lo+3, f, err)
	}
	if got := referee(verdict(seg, f, ev), &bent, hr.keep(t, f)); got != consensus.Upheld {
		t.Fatalf("the referee of a true step claim: %v", got)
	}
	// The state before the disputed step, served light by a hostile
	// source: it hashes right but cannot be re-executed, so the referee
	// cannot rule on it (it neither upholds nor overturns).
	lightFetch := func(h Hash, step int) (*Snapshot, []float32, error) {
		st, v, err := hr.keep(t, f)(h, step)
		if st != nil {
			l := st.Light()
			st = &l
		}
		return st, v, err
	}
	if got, err := Referee(hr.spec, hr.base, &bent, verdict(seg, f, ev), hr.replayer(t), lightFetch); got != consensus.Lapsed || !errors.Is(err, ErrUnjudgeable) {
		t.Fatalf("a light state before the disputed step: %v, %v", got, err)
	}
	// Wrong leaves inside a segment that reaches its committed root are
	// no fault: the work behind the update is honest.
	wrongLeaf := hr.answered(t, seg)
	wrongLeaf.Answer.Leaves[2][0] ^= 1
	if f, err := check(hr.u, seg, wrongLeaf); err != nil || f.Fault != consensus.FaultNone {
		t.Errorf("a wrong leaf in an honest segment: %+v, %v", f, err)
	}
	// The same claim made up against the honest answer: overturned. The
	// first step of a segment re-executes from the committed start.
	honest := hr.answered(t, seg)
	for _, step := range []int{lo + 1, lo + 3} {
		x := verdict(seg, Finding{Fault: consensus.FaultStep, Step: step}, honest)
		if got := referee(x, hr.u, hr.keep(t, Finding{})); got != consensus.Overturned {
			t.Errorf("a false claim on step %d: %v", step, got)
		}
	}
	// Segment 0 starts from the agreed base: a false claim on step 1
	// needs nothing fetched.
	x0 := verdict(0, Finding{Fault: consensus.FaultStep, Step: 1}, hr.answered(t, 0))
	if got := referee(x0, hr.u, func(Hash, int) (*Snapshot, []float32, error) { return nil, nil, errors.New("none") }); got != consensus.Overturned {
		t.Errorf("a false claim on step 1: %v", got)
	}
	// Nobody serves the state a claim rests on: nobody is at fault.
	if got, err := Referee(hr.spec, hr.base, hr.u, verdict(seg, f, ev), r, func(Hash, int) (*Snapshot, []float32, error) { return nil, nil, errors.New("none") }); got != consensus.Lapsed || !errors.Is(err, ErrUnjudgeable) {
		t.Errorf("an unjudgeable claim: %v, %v", got, err)
	}

	// A flipped payload: every step is honest, the link is not.
	flipped := *hr.u
	far := make([]float32, len(hr.base))
	for i := range far {
		far[i] = hr.base[i] + (hr.base[i] - hr.final.Params[i])
	}
	payload, out, _ := Link(hr.spec, hr.base, far, hr.res)
	flipped.Payload, flipped.ResidualOut = payload, ParamHash(out)
	f, err = check(&flipped, seg, honest)
	if err != nil || f.Fault != consensus.FaultLink {
		t.Fatalf("a flipped payload: %+v, %v", f, err)
	}
	if got := referee(verdict(seg, f, honest), &flipped, hr.keep(t, f)); got != consensus.Upheld {
		t.Errorf("the referee of a true link claim: %v", got)
	}
	if got := referee(verdict(seg, Finding{Fault: consensus.FaultLink}, honest), hr.u, hr.keep(t, Finding{})); got != consensus.Overturned {
		t.Errorf("a false link claim: %v", got)
	}

	// Answers that do not hold, for a segment that misses its root (an
	// honest one needs no step hashes at all).
	short := hr.answered(t, seg)
	short.Answer.Leaves = short.Answer.Leaves[1:]
	if f, _ := check(&bent, seg, short); f.Fault != consensus.FaultAnswer {
		t.Errorf("an answer with a leaf missing: %v", f.Fault)
	}
	none := hr.evidence(seg)
	if f, _ := check(&bent, seg, none); f.Fault != consensus.FaultSilent {
		t.Errorf("a missed root and no step hashes: %v", f.Fault)
	}
	if f, _ := check(hr.u, seg, none); f.Fault != consensus.FaultNone {
		t.Errorf("an honest segment without step hashes: %v", f.Fault)
	}
	noStart := hr.answered(t, seg)
	noStart.Start = nil
	if f, _ := check(hr.u, seg, noStart); f.Fault != consensus.FaultSilent {
		t.Errorf("an answer without its start state: %v", f.Fault)
	}
	// A light start state (parameters and the moments' digest) hashes to
	// the committed root but cannot be re-executed: offered as evidence it
	// is no answer, not a checker's failure that would let the update pass
	// unchecked.
	lightStart := hr.answered(t, seg)
	l := lightStart.Start.Light()
	lightStart.Start = &l
	if f, err := check(&bent, seg, lightStart); err != nil || f.Fault != consensus.FaultSilent {
		t.Errorf("a light start state: %v, %v", f.Fault, err)
	}
}
