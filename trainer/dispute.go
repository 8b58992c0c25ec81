package trainer

import (
	"errors"
	"fmt"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/runspec"
)

// Disputes. A challenger does not hand down an opinion: it re-executes the
// accused's round from the agreed state (public: nothing is shipped),
// compares its state with every committed segment root, and checks the
// payload on the residual blocks the accused opened (Evidence). Where
// something does not hold it names the one thing any member can re-check
// cheaply (consensus.Fault): the first step whose result differs from the
// accused's signed leaf in the first segment that missed its root
// (re-executing one step), the encoding of the opened blocks (re-encoding
// a few hundred values), a leaf that contradicts the update's own
// commitment (nothing to compute), or a missing or malformed answer (which
// each referee asks for itself). The challenger keeps the states and
// openings the referees need (Finding.Keep, KeepOpenings) and serves them.
// In runs with a tolerance no step is bit-exact; there a dispute rests on
// the whole round (FaultSegment), re-executed by each referee against the
// accused's final state.

// Finding is a challenger's result on one challenge.
type Finding struct {
	Fault consensus.Fault // FaultNone: the round and the payload check
	// Segment is the segment the dispute rests on: the first that missed
	// its root (FaultStep, FaultAnswer), else the last.
	Segment int
	Step    int // FaultStep: the disputed step, in (lo, hi]
	Reason  string
	// Answer is the accused's signed step hashes the dispute rests on.
	Answer *consensus.Answer
	// Keep is the snapshots referees fetch from the challenger by hash,
	// KeepOpenings the residual blocks they re-encode.
	Keep         []Snapshot
	KeepOpenings []Opening
}

func found(f consensus.Fault, seg int, format string, a ...any) Finding {
	return Finding{Fault: f, Segment: seg, Reason: fmt.Sprintf("%v: %s", ErrChallenge, fmt.Sprintf(format, a...))}
}

// CheckEvidence checks the accused's evidence against the update's
// commitments without re-executing anything: the openings of blocks (the
// drawn ones, under the committed residual root) and, in runs with a
// tolerance, the final state (it hashes to the last root). d is the
// model's size. An answer that fails it is as good as none (FaultSilent).
func CheckEvidence(spec runspec.Spec, u *consensus.Update, d int, blocks []int, ev Evidence) error {
	S := spec.Segments()
	if len(u.Segments) != S {
		return fmt.Errorf("the update has %d roots, want %d", len(u.Segments), S)
	}
	if err := CheckOpenings(spec, u, d, blocks, ev.Openings); err != nil {
		return err
	}
	if spec.Verify.Tolerance > 0 {
		if ev.Final == nil || len(ev.Final.Params) != d {
			return fmt.Errorf("no final state of %d parameters", d)
		}
		if h := ev.Final.Hash(); h != u.Segments[S-1] || ev.Final.Step != int64(spec.Inner.Steps) {
			return fmt.Errorf("final state (step %d) hashes to %s, committed %s", ev.Final.Step, h.Short(), u.Segments[S-1].Short())
		}
	}
	return nil
}

// Check is the challenger's check of update u, whose round's agreed
// parameters are base, against the accused's evidence ev (the openings of
// blocks): the evidence holds (CheckEvidence); re-executing the round from
// base reaches every committed root (bit for bit; within the spec's
// tolerance of the accused's final state when there is one); and the
// payload encodes the final state on the opened blocks (LinkOpenings).
// Only a segment that misses its root needs the accused's signed step
// hashes: ask fetches them for that segment (its signature checked; nil if
// none came), and the first step whose result differs from them is the
// dispute. The error is for the checker's own failures.
func Check(spec runspec.Spec, base []float32, u *consensus.Update, blocks []int, ev Evidence, r Replayer, ask func(seg int) *consensus.Answer) (Finding, error) {
	S := spec.Segments()
	if err := CheckEvidence(spec, u, len(base), blocks, ev); err != nil {
		return found(consensus.FaultSilent, S-1, "%v", err), nil
	}
	st, err := r.Start(base)
	if err != nil {
		return Finding{}, err
	}
	for seg := range S {
		lo, hi := SegmentSteps(spec, seg)
		end, err := r.Run(st, hi-lo)
		if err != nil {
			return Finding{}, err
		}
		if spec.Verify.Tolerance == 0 && end.Hash() != u.Segments[seg] {
			return dispute(spec, u, seg, st, r, ask(seg))
		}
		st = end
	}
	final := st
	if tol := spec.Verify.Tolerance; tol > 0 {
		if d := relL2(st.Params, ev.Final.Params); !(d <= tol) {
			f := found(consensus.FaultSegment, S-1, "re-executing the round's %d steps lands %.3g (relative L2) from the committed final state, tolerance %.3g", spec.Inner.Steps, d, tol)
			f.Keep = []Snapshot{*ev.Final}
			return f, nil
		}
		final = *ev.Final
	}
	if err := LinkOpenings(spec, u, base, final.Params, ev.Openings); err != nil {
		f := found(consensus.FaultLink, S-1, "the payload is not the encoding of the final state (step %d) on the opened residual: %v", spec.Inner.Steps, err)
		f.Keep, f.KeepOpenings = []Snapshot{final.Light()}, ev.Openings
		return f, nil
	}
	return Finding{Segment: S - 1}, nil
}

// dispute narrows segment seg, which re-executed from start misses its
// committed root, down to one step with the accused's signed step hashes a.
func dispute(spec runspec.Spec, u *consensus.Update, seg int, start Snapshot, r Replayer, a *consensus.Answer) (Finding, error) {
	lo, hi := SegmentSteps(spec, seg)
	switch {
	case a == nil:
		return found(consensus.FaultSilent, seg, "re-executing steps %d..%d misses the committed root %s, and no signed step hashes came", lo, hi, u.Segments[seg].Short()), nil
	case consensus.Contradicts(spec, u, seg, a):
		f := found(consensus.FaultAnswer, seg, "the signed step hashes (%d, want %d) do not end at the committed root %s", len(a.Leaves), hi-lo, u.Segments[seg].Short())
		f.Answer = a
		return f, nil
	}
	_, leaves, err := r.Trace(start, hi-lo)
	if err != nil {
		return Finding{}, err
	}
	for i, l := range leaves {
		if l == a.Leaves[i] {
			continue
		}
		f := found(consensus.FaultStep, seg, "step %d from the state after step %d gives %s, the accused signed %s", lo+i+1, lo+i, l.Short(), a.Leaves[i].Short())
		f.Step, f.Answer = lo+i+1, a
		prev, err := r.Run(start, i)
		if err != nil {
			return Finding{}, err
		}
		f.Keep = []Snapshot{prev}
		return f, nil
	}
	// Every signed hash matches the re-execution, yet the last is the
	// root the re-execution missed: unreachable for a hash.
	return Finding{}, fmt.Errorf("trainer: the re-execution both misses and matches root %s", u.Segments[seg].Short())
}

// Fetch gets a snapshot by hash for a referee, from the challenger, or
// else the accused. step is the inner step the state is at, so that an
// accused that kept only its segments' start states can recompute it: an
// honest accused always can, an honest challenger kept it, so a claim is
// unjudgeable only when both parties to it lie. It returns an error if no
// one serves it; Referee checks that what comes hashes to h.
type Fetch func(h Hash, step int) (*Snapshot, error)

// FetchOpenings gets the opened residual blocks a link claim rests on, from
// the challenger or the accused; Referee checks them against the update's
// commitments.
type FetchOpenings func() ([]Opening, error)

// ErrUnjudgeable is returned by Referee when what a check needs cannot be
// had (the challenger and the accused do not serve it): nobody is proven
// at fault.
var ErrUnjudgeable = errors.New("trainer: the dispute cannot be judged here")

// Referee checks a failed verdict's claim on update u of a round whose
// agreed parameters are base, as any member does before it votes on the
// exclusion it asks for: Upheld if the accused is at fault, Overturned if
// the claim is false. FaultStep costs one inner step, FaultLink the
// re-encoding of the opened blocks (blocks: the challenger's draw),
// FaultSegment the round; FaultAnswer and FaultSilent are not judged here
// (the engine judges the first, the driver asks the accused for the
// second). It returns ErrUnjudgeable when what it needs cannot be
// fetched, and other errors when the referee itself fails.
func Referee(spec runspec.Spec, base []float32, u *consensus.Update, x *consensus.VerdictMsg, blocks []int, r Replayer, fetch Fetch, open FetchOpenings) (consensus.Ruling, error) {
	S := spec.Segments()
	seg := x.Segment
	tol := spec.Verify.Tolerance > 0
	if seg < 0 || seg >= S || len(u.Segments) != S || x.Fault == consensus.FaultStep && (x.Answer == nil || tol) || x.Fault == consensus.FaultSegment && !tol {
		// The engine's checks make this unreachable for a valid verdict:
		// no step is bit-exact across engines, and a bit-exact run has no
		// tolerance to miss.
		return consensus.Overturned, nil
	}
	lo, hi := SegmentSteps(spec, seg)
	// snap fetches the state with hash h; one to re-execute from must come
	// with its optimizer's buffers (a light one hashes the same).
	snap := func(h Hash, step int, resume bool) (Snapshot, error) {
		s, err := fetch(h, step)
		if err != nil || s == nil || s.Hash() != h || len(s.Params) != len(base) || resume && s.IsLight() {
			return Snapshot{}, fmt.Errorf("%w: no state hashing to %s: %v", ErrUnjudgeable, h.Short(), err)
		}
		return *s, nil
	}
	rule := func(atFault bool) consensus.Ruling {
		if atFault {
			return consensus.Upheld
		}
		return consensus.Overturned
	}
	switch x.Fault {
	case consensus.FaultStep:
		i := x.Step - lo - 1
		if i < 0 || x.Step > hi || len(x.Answer.Leaves) != hi-lo {
			return consensus.Overturned, nil
		}
		var prev Snapshot
		var err error
		switch {
		case i > 0:
			prev, err = snap(x.Answer.Leaves[i-1], x.Step-1, true)
		case seg > 0:
			prev, err = snap(u.Segments[seg-1], lo, true)
		default:
			prev, err = r.Start(base)
		}
		if err != nil {
			return consensus.Lapsed, err
		}
		_, leaves, err := r.Trace(prev, 1)
		if err != nil {
			return consensus.Lapsed, err
		}
		return rule(leaves[0] != x.Answer.Leaves[i]), nil
	case consensus.FaultLink:
		fin, err := snap(u.Segments[S-1], spec.Inner.Steps, false)
		if err != nil {
			return consensus.Lapsed, err
		}
		ops, err := open()
		if err == nil {
			err = CheckOpenings(spec, u, len(base), blocks, ops)
		}
		if err != nil {
			return consensus.Lapsed, fmt.Errorf("%w: no valid openings of the drawn residual blocks: %v", ErrUnjudgeable, err)
		}
		return rule(LinkOpenings(spec, u, base, fin.Params, ops) != nil), nil
	case consensus.FaultSegment:
		st, err := r.Start(base)
		if err != nil {
			return consensus.Lapsed, err
		}
		end, err := snap(u.Segments[S-1], spec.Inner.Steps, false)
		if err != nil {
			return consensus.Lapsed, err
		}
		got, err := r.Run(st, spec.Inner.Steps)
		if err != nil {
			return consensus.Lapsed, err
		}
		d := relL2(got.Params, end.Params)
		return rule(got.Hash() != end.Hash() && !(d <= spec.Verify.Tolerance)), nil
	}
	return consensus.Lapsed, fmt.Errorf("%w: a %s claim is not a referee's to re-execute", ErrUnjudgeable, x.Fault)
}

// AnswerLeaves is what an accused signs in its answer on segment seg: the
// hash of its state after each step of the segment, re-executed from the
// segment's start (the replayer is its own inner steps').
func AnswerLeaves(spec runspec.Spec, start Snapshot, seg int, r Replayer) ([]Hash, error) {
	lo, hi := SegmentSteps(spec, seg)
	_, leaves, err := r.Trace(start, hi-lo)
	return leaves, err
}

// StateAt recomputes an accused's own state after inner step `step` of a
// round from the evidence it kept (the segments' start states), for a
// referee that asks (see Fetch).
func StateAt(spec runspec.Spec, starts []Snapshot, step int, r Replayer) (Snapshot, error) {
	if step < 0 || step > spec.Inner.Steps || len(starts) != spec.Segments() {
		return Snapshot{}, fmt.Errorf("no step %d", step)
	}
	seg := min(step/spec.SegmentLen(), len(starts)-1)
	lo, _ := SegmentSteps(spec, seg)
	return r.Run(starts[seg], step-lo)
}
