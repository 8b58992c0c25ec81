package trainer

import (
	"errors"
	"slices"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/engine"
)

// withEnd adds to ev the committed end state of segment seg, which a
// challenged peer sends when the run allows a tolerance (node.Evidence).
func (hr *honestRound) withEnd(ev Evidence, seg int) Evidence {
	end := hr.final
	if seg+1 < len(hr.starts) {
		end = hr.starts[seg+1]
	}
	ev.End = &end
	return ev
}

// TestJudgeToleranceMixedEngines: a round trained on another engine (the
// engine package's CPU reference, standing in for a GPU peer) ends each
// segment a little away from the Gorgonia re-execution (about 1e-6
// relative with AdamW). Bit-exact judging fails it; with verify.tolerance
// and the committed end states it passes.
func TestJudgeToleranceMixedEngines(t *testing.T) {
	for _, opt := range []string{OptSGD, OptAdamW} {
		hr := newHonestRound(t, opt, WithEngine(engine.CPU()))
		for seg := range hr.spec.Segments() {
			hr.spec.Verify.Tolerance = 0
			if err := hr.judge(t, hr.u, seg, hr.withEnd(hr.evidence(seg), seg)); err == nil {
				t.Errorf("%s: segment %d trained on another engine passes bit-exact judging", opt, seg)
			}
			hr.spec.Verify.Tolerance = 1e-4
			if err := hr.judge(t, hr.u, seg, hr.withEnd(hr.evidence(seg), seg)); err != nil {
				t.Errorf("%s: segment %d fails within tolerance 1e-4: %v", opt, seg, err)
			}
		}
	}
}

// perturbed returns s with every parameter moved by rel of itself,
// alternately up and down: a state rel (relative L2) from s.
func perturbed(s Snapshot, rel float64) Snapshot {
	s.Params = slices.Clone(s.Params)
	for i := range s.Params {
		f := 1 + rel
		if i%2 == 1 {
			f = 1 - rel
		}
		s.Params[i] = float32(float64(s.Params[i]) * f)
	}
	return s
}

// recommit is hr's round as a peer commits it whose segment seg ended in
// end instead: that segment's root, and for the last segment the final
// state, the payload and the residual left over. It returns the update
// and the evidence for seg, end state included.
func (hr *honestRound) recommit(t *testing.T, seg int, end Snapshot) (*consensus.Update, Evidence) {
	t.Helper()
	u := *hr.u
	u.Segments = slices.Clone(hr.u.Segments)
	u.Segments[seg] = end.Hash()
	ev := hr.evidence(seg)
	ev.End = &end
	if seg == len(u.Segments)-1 {
		payload, out, err := Link(hr.spec, hr.base, end.Params, hr.res)
		if err != nil {
			t.Fatal(err)
		}
		u.Payload, u.ResidualOut = payload, ParamHash(out)
		ev.Final = end
	}
	return &u, ev
}

// TestJudgeTolerance commits end states a set distance from what
// re-execution gives, in a middle and in the last segment: within
// verify.tolerance they pass, beyond it they fail, and without the end
// state, or with one that is not the committed one, they fail.
func TestJudgeTolerance(t *testing.T) {
	const tol = 1e-4
	hr := newHonestRound(t, OptAdamW)
	S := hr.spec.Segments()
	for _, seg := range []int{1, S - 1} {
		honest := hr.withEnd(Evidence{}, seg).End
		near, far := perturbed(*honest, tol/10), perturbed(*honest, tol*10)
		if d := relL2(near.Params, honest.Params); d < tol/20 || d > tol/5 {
			t.Fatalf("segment %d: near state is %.3g away, want about %.3g", seg, d, tol/10)
		}
		if d := relL2(far.Params, honest.Params); d < tol*5 || d > tol*20 {
			t.Fatalf("segment %d: far state is %.3g away, want about %.3g", seg, d, tol*10)
		}
		nearU, nearEv := hr.recommit(t, seg, near)
		farU, farEv := hr.recommit(t, seg, far)
		for _, tc := range []struct {
			name string
			tol  float64
			u    *consensus.Update
			ev   func() Evidence
			pass bool
		}{
			{"honest, bit-exact", 0, hr.u, func() Evidence { return hr.evidence(seg) }, true},
			{"honest, with tolerance", tol, hr.u, func() Evidence { return hr.withEnd(hr.evidence(seg), seg) }, true},
			{"0.1×tolerance away", tol, nearU, func() Evidence { return nearEv }, true},
			{"0.1×tolerance away, bit-exact", 0, nearU, func() Evidence { return nearEv }, false},
			{"10×tolerance away", tol, farU, func() Evidence { return farEv }, false},
			{"end state withheld", tol, nearU, func() Evidence { ev := nearEv; ev.End = nil; return ev }, false},
			{"end state not the committed one", tol, nearU, func() Evidence { ev := nearEv; ev.End = honest; return ev }, false},
			{"end state of the wrong size", tol, nil, nil, false},
		} {
			u, ev := tc.u, Evidence{}
			if tc.ev != nil {
				ev = tc.ev()
			} else { // a committed end state short of one parameter
				short := near
				short.Params = near.Params[:len(near.Params)-1]
				c := *nearU
				c.Segments = slices.Clone(nearU.Segments)
				c.Segments[seg] = short.Hash()
				u, ev = &c, nearEv
				ev.End = &short
			}
			hr.spec.Verify.Tolerance = tc.tol
			err := hr.judge(t, u, seg, ev)
			switch {
			case tc.pass && err != nil:
				t.Errorf("segment %d, %s: %v", seg, tc.name, err)
			case !tc.pass && !errors.Is(err, ErrChallenge):
				t.Errorf("segment %d, %s: Judge = %v, want a failed challenge", seg, tc.name, err)
			}
		}
	}
}
