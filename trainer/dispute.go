package trainer

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/runspec"
)

// Disputes. A challenger does not hand down an opinion: it checks the
// accused's answer (the segment's start state, the signed hash of its
// state after every step of the segment, its final state and residual)
// and, where the answer does not hold, names the one thing any member can
// re-check cheaply (consensus.Fault): the first step whose result differs
// from the accused's signed leaf (re-executing one step), the compression
// of the committed final state (re-encoding once), a leaf that contradicts
// the update's own commitment (nothing to compute), or a missing or
// malformed answer (which each referee asks for itself). The challenger
// keeps the states the referees need (Finding.Keep) and serves them by
// hash. In runs with a tolerance no step is bit-exact; there a dispute
// rests on the whole segment (FaultSegment), re-executed by each referee.

// Finding is a challenger's result on one challenge.
type Finding struct {
	Fault  consensus.Fault // FaultNone: the segment and the payload check
	Step   int             // FaultStep: the disputed step, in (lo, hi]
	Reason string
	// Answer is the accused's signed step hashes the dispute rests on.
	Answer *consensus.Answer
	// Keep is what referees fetch from the challenger by hash: snapshots
	// and the residual (as a snapshot-less vector).
	Keep    []Snapshot
	KeepVec [][]float32
}

func found(f consensus.Fault, format string, a ...any) Finding {
	return Finding{Fault: f, Reason: fmt.Sprintf("%v: %s", ErrChallenge, fmt.Sprintf(format, a...))}
}

// CheckEvidence checks the accused's evidence against the update's
// commitments without re-executing anything: the start state (it hashes to
// the committed root before the segment; segment 0 starts from the agreed
// base and has none), the final state and the residual. An answer that
// fails it is as good as none (FaultSilent).
func CheckEvidence(spec runspec.Spec, u *consensus.Update, seg int, ev Evidence) error {
	S := spec.Segments()
	if seg < 0 || seg >= S || len(u.Segments) != S {
		return fmt.Errorf("segment %d of %d (update has %d roots)", seg, S, len(u.Segments))
	}
	lo, _ := SegmentSteps(spec, seg)
	if seg > 0 {
		if ev.Start == nil {
			return fmt.Errorf("no start state for segment %d", seg)
		}
		if h := ev.Start.Hash(); h != u.Segments[seg-1] || ev.Start.Step != int64(lo) {
			return fmt.Errorf("segment %d's start state (step %d) hashes to %s, committed %s", seg, ev.Start.Step, h.Short(), u.Segments[seg-1].Short())
		}
		if ev.Start.IsLight() {
			// It hashes to the root, but cannot be re-executed.
			return fmt.Errorf("segment %d's start state comes without its optimizer's buffers", seg)
		}
	}
	if h := ev.Final.Hash(); h != u.Segments[S-1] {
		return fmt.Errorf("final state hashes to %s, committed %s", h.Short(), u.Segments[S-1].Short())
	}
	if h := Hash(ParamHash(ev.ResidualIn)); h != u.ResidualIn {
		return fmt.Errorf("residual hashes to %s, committed %s", h.Short(), u.ResidualIn.Short())
	}
	return nil
}

// Check is the challenger's check of segment seg of update u against the
// accused's evidence ev: the evidence holds (CheckEvidence); re-executing
// the segment from its start reaches the committed root (bit for bit;
// within the spec's tolerance of the accused's end state when there is
// one); and the final state and residual compress to the payload. Only a
// segment that misses its root needs the accused's signed step hashes:
// ask fetches them (its signature checked; nil if none came), and the
// first step whose result differs from them is the dispute. The error is
// for the checker's own failures.
func Check(spec runspec.Spec, base []float32, u *consensus.Update, seg int, ev Evidence, r Replayer, ask func() *consensus.Answer) (Finding, error) {
	if err := CheckEvidence(spec, u, seg, ev); err != nil {
		return found(consensus.FaultSilent, "%v", err), nil
	}
	lo, hi := SegmentSteps(spec, seg)
	start := ev.Start
	if seg == 0 {
		st, err := r.Start(base)
		if err != nil {
			return Finding{}, err
		}
		start = &st
	}
	if len(start.Params) != len(base) || len(ev.Final.Params) != len(base) || len(ev.ResidualIn) != len(base) {
		return found(consensus.FaultSilent, "states or residual of the wrong size"), nil
	}
	end, err := r.Run(*start, hi-lo)
	if err != nil {
		return Finding{}, err
	}
	switch {
	case end.Hash() == u.Segments[seg]:
	case spec.Verify.Tolerance > 0:
		// Across engines no step is bit-exact: the segment's end is
		// compared within the tolerance, and a dispute rests on the whole
		// segment (no step hashes needed).
		if ev.End == nil || ev.End.Hash() != u.Segments[seg] || len(ev.End.Params) != len(end.Params) {
			return found(consensus.FaultSilent, "no end state hashing to the committed %s", u.Segments[seg].Short()), nil
		}
		if d := relL2(end.Params, ev.End.Params); !(d <= spec.Verify.Tolerance) {
			f := found(consensus.FaultSegment, "re-executing steps %d..%d lands %.3g (relative L2) from the committed state, tolerance %.3g", lo, hi, d, spec.Verify.Tolerance)
			f.Keep = []Snapshot{*start, *ev.End}
			return f, nil
		}
	default:
		a := ask()
		switch {
		case a == nil:
			return found(consensus.FaultSilent, "re-executing steps %d..%d misses the committed root %s, and no signed step hashes came", lo, hi, u.Segments[seg].Short()), nil
		case consensus.Contradicts(spec, u, seg, a):
			f := found(consensus.FaultAnswer, "the signed step hashes (%d, want %d) do not end at the committed root %s", len(a.Leaves), hi-lo, u.Segments[seg].Short())
			f.Answer = a
			return f, nil
		}
		_, leaves, err := r.Trace(*start, hi-lo)
		if err != nil {
			return Finding{}, err
		}
		for i, l := range leaves {
			if l == a.Leaves[i] {
				continue
			}
			f := found(consensus.FaultStep, "step %d from the state after step %d gives %s, the accused signed %s", lo+i+1, lo+i, l.Short(), a.Leaves[i].Short())
			f.Step, f.Answer = lo+i+1, a
			prev, err := r.Run(*start, i)
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
	payload, out, err := Link(spec, base, ev.Final.Params, ev.ResidualIn)
	if err != nil {
		return Finding{}, err
	}
	if !bytes.Equal(payload, u.Payload) || Hash(ParamHash(out)) != u.ResidualOut {
		f := found(consensus.FaultLink, "the payload is not the compressed delta of the committed final state (step %d) with the committed residual", spec.Inner.Steps)
		f.Keep, f.KeepVec = []Snapshot{ev.Final}, [][]float32{ev.ResidualIn}
		return f, nil
	}
	return Finding{}, nil
}

// Fetch gets a snapshot or a vector by hash for a referee, from the
// challenger, or else the accused. step is the inner step the state is at
// (-1 for the residual), so that an accused that kept only its segments'
// start states can recompute it: an honest accused always can, an honest
// challenger kept it, so a claim is unjudgeable only when both parties to
// it lie. It returns an error if no one serves it; Referee checks that
// what comes hashes to h.
type Fetch func(h Hash, step int) (*Snapshot, []float32, error)

// ErrUnjudgeable is returned by Referee when what a check needs cannot be
// had (the challenger and the accused do not serve it): nobody is proven
// at fault.
var ErrUnjudgeable = errors.New("trainer: the dispute cannot be judged here")

// Referee checks a failed verdict's claim on update u of a round whose
// agreed parameters are base, as any member does before it votes on the
// exclusion it asks for: Upheld if the accused is at fault, Overturned if
// the claim is false. FaultStep costs one inner step, FaultLink one
// encoding, FaultSegment one segment; FaultAnswer and FaultSilent are not
// judged here (the engine judges the first, the driver asks the accused
// for the second). It returns ErrUnjudgeable when a state it needs cannot
// be fetched, and other errors when the referee itself fails.
func Referee(spec runspec.Spec, base []float32, u *consensus.Update, x *consensus.VerdictMsg, r Replayer, fetch Fetch) (consensus.Ruling, error) {
	S := spec.Segments()
	seg := x.Segment
	if seg < 0 || seg >= S || len(u.Segments) != S || x.Fault == consensus.FaultStep && x.Answer == nil {
		return consensus.Overturned, nil // the engine's checks make this unreachable for a valid verdict
	}
	lo, hi := SegmentSteps(spec, seg)
	// snap fetches the state with hash h; one to re-execute from must come
	// with its optimizer's buffers (a light one hashes the same).
	snap := func(h Hash, step int, resume bool) (Snapshot, error) {
		s, _, err := fetch(h, step)
		if err != nil || s == nil || s.Hash() != h || len(s.Params) != len(base) || resume && s.IsLight() {
			return Snapshot{}, fmt.Errorf("%w: no state hashing to %s: %v", ErrUnjudgeable, h.Short(), err)
		}
		return *s, nil
	}
	start := func() (Snapshot, error) {
		if seg == 0 {
			return r.Start(base)
		}
		return snap(u.Segments[seg-1], lo, true)
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
		if i == 0 {
			prev, err = start()
		} else {
			prev, err = snap(x.Answer.Leaves[i-1], x.Step-1, true)
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
		_, res, err := fetch(u.ResidualIn, -1)
		if err != nil || len(res) != len(base) || Hash(ParamHash(res)) != u.ResidualIn {
			return consensus.Lapsed, fmt.Errorf("%w: no residual hashing to %s: %v", ErrUnjudgeable, u.ResidualIn.Short(), err)
		}
		payload, out, err := Link(spec, base, fin.Params, res)
		if err != nil {
			return consensus.Lapsed, err
		}
		return rule(!bytes.Equal(payload, u.Payload) || Hash(ParamHash(out)) != u.ResidualOut), nil
	case consensus.FaultSegment:
		st, err := start()
		if err != nil {
			return consensus.Lapsed, err
		}
		end, err := snap(u.Segments[seg], hi, false)
		if err != nil {
			return consensus.Lapsed, err
		}
		got, err := r.Run(st, hi-lo)
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
