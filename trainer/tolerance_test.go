package trainer

import (
	"errors"
	"slices"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/engine"
)

// otherRounding is the CPU engine with matrix products accumulated in
// float64 and rounded once, as a GPU's products round differently from
// the CPU's BLAS. (The CPU engine alone computes some lowered models
// bit for bit as the Gorgonia graph does.)
type otherRounding struct{ engine.Engine }

func (o otherRounding) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b engine.Buffer, beta float32, c engine.Buffer) error {
	if err := engine.CheckGemm(m, n, k, a, b, c); err != nil {
		return err
	}
	ah, bh, ch := make([]float32, a.Len()), make([]float32, b.Len()), make([]float32, c.Len())
	for _, d := range []struct {
		dst []float32
		src engine.Buffer
	}{{ah, a}, {bh, b}, {ch, c}} {
		if err := o.Download(d.dst, d.src); err != nil {
			return err
		}
	}
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				av, bv := ah[i*k+p], bh[p*n+j]
				if transA {
					av = ah[p*m+i]
				}
				if transB {
					bv = bh[j*k+p]
				}
				s += float64(av) * float64(bv)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(ch[i*n+j])
			}
			ch[i*n+j] = float32(v)
		}
	}
	return o.Upload(c, ch)
}

// TestJudgeToleranceMixedEngines: a round trained on another engine (the
// engine package's CPU reference with products rounded otherwise,
// standing in for a GPU peer) ends a little away from the Gorgonia
// re-execution. Bit-exact judging fails it; with verify.tolerance and the
// committed final state it passes, and a referee overturns a claim that
// it is out of tolerance.
func TestJudgeToleranceMixedEngines(t *testing.T) {
	for _, opt := range []string{OptSGD, OptAdamW} {
		hr := newHonestRound(t, opt, WithEngine(otherRounding{engine.CPU()}))
		hr.spec.Verify.Tolerance = 0
		if err := hr.judge(t, hr.u, hr.evidence(t)); err == nil {
			t.Errorf("%s: a round trained on another engine passes bit-exact judging", opt)
		}
		hr.spec.Verify.Tolerance = 1e-4
		ev := hr.evidence(t)
		if err := hr.judge(t, hr.u, ev); err != nil {
			t.Errorf("%s: a round trained on another engine fails within tolerance 1e-4: %v", opt, err)
		}
		x := &consensus.VerdictMsg{Segment: hr.spec.Segments() - 1, Fault: consensus.FaultSegment}
		if got, err := Referee(hr.spec, hr.base, hr.u, x, hr.blocks, hr.replayer(t), only(Finding{Keep: []Snapshot{*ev.Final}}), nil); err != nil || got != consensus.Overturned {
			t.Errorf("%s: the referee of a false tolerance claim: %v, %v", opt, got, err)
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

// recommit is hr's round as a peer commits it whose round ended in end
// instead: the last root, the payload and the residual left over. It
// returns the update and the evidence, the final state light.
func (hr *honestRound) recommit(t *testing.T, end Snapshot) (*consensus.Update, Evidence) {
	t.Helper()
	u := hr.clone()
	u.Segments[len(u.Segments)-1] = end.Hash()
	payload, out, err := Link(hr.spec, hr.base, end.Params, hr.res)
	if err != nil {
		t.Fatal(err)
	}
	u.Payload, u.ResidualOut = payload, ResidualRoot(hr.spec, out)
	l := end.Light()
	return u, Evidence{Openings: hr.open(t, hr.res, out, hr.blocks), Final: &l}
}

// TestJudgeTolerance commits final states a set distance from what
// re-execution gives: within verify.tolerance they pass, beyond it they
// are a segment fault that a referee re-executing the round upholds; a
// final state withheld, not the committed one, of the wrong size or step,
// is no answer; and the payload is checked against the committed final
// state.
func TestJudgeTolerance(t *testing.T) {
	const tol = 1e-4
	hr := newHonestRound(t, OptAdamW)
	S := hr.spec.Segments()
	near, far := perturbed(hr.final, tol/10), perturbed(hr.final, tol*10)
	if d := relL2(near.Params, hr.final.Params); d < tol/20 || d > tol/5 {
		t.Fatalf("near state is %.3g away, want about %.3g", d, tol/10)
	}
	if d := relL2(far.Params, hr.final.Params); d < tol*5 || d > tol*20 {
		t.Fatalf("far state is %.3g away, want about %.3g", d, tol*10)
	}
	nearU, nearEv := hr.recommit(t, near)
	farU, farEv := hr.recommit(t, far)
	// edit returns nearU with its evidence's final state changed by f,
	// and with the last root committing to that state when reroot is set.
	edit := func(f func(s *Snapshot), reroot bool) func() (*consensus.Update, Evidence) {
		return func() (*consensus.Update, Evidence) {
			s := near
			s.Params = slices.Clone(s.Params)
			f(&s)
			u := *nearU
			if reroot {
				u.Segments = slices.Clone(nearU.Segments)
				u.Segments[S-1] = s.Hash()
			}
			ev := nearEv
			l := s.Light()
			ev.Final = &l
			return &u, ev
		}
	}
	fixed := func(u *consensus.Update, ev Evidence) func() (*consensus.Update, Evidence) {
		return func() (*consensus.Update, Evidence) { return u, ev }
	}
	// A payload flipped against the committed final state (see
	// TestDisputesOnRealSteps), the final state within tolerance.
	mirror := make([]float32, len(hr.base))
	for i := range mirror {
		mirror[i] = hr.base[i] + (hr.base[i] - near.Params[i])
	}
	payload, out, err := Link(hr.spec, hr.base, mirror, hr.res)
	if err != nil {
		t.Fatal(err)
	}
	flipped, flippedEv := *nearU, nearEv
	flipped.Payload, flipped.ResidualOut = payload, ResidualRoot(hr.spec, out)
	flippedEv.Openings = hr.open(t, hr.res, out, hr.blocks)
	for _, tc := range []struct {
		name  string
		tol   float64
		lie   func() (*consensus.Update, Evidence)
		fault consensus.Fault
	}{
		{"honest, bit-exact", 0, func() (*consensus.Update, Evidence) { return hr.u, hr.evidence(t) }, consensus.FaultNone},
		{"honest, with tolerance", tol, func() (*consensus.Update, Evidence) { return hr.u, hr.evidence(t) }, consensus.FaultNone},
		{"honest, the final state whole", tol, func() (*consensus.Update, Evidence) {
			ev := hr.evidence(t)
			ev.Final = &hr.final
			return hr.u, ev
		}, consensus.FaultNone},
		{"0.1×tolerance away", tol, fixed(nearU, nearEv), consensus.FaultNone},
		{"0.1×tolerance away, bit-exact", 0, fixed(nearU, Evidence{Openings: nearEv.Openings}), consensus.FaultSilent},
		{"10×tolerance away", tol, fixed(farU, farEv), consensus.FaultSegment},
		{"final state withheld", tol, func() (*consensus.Update, Evidence) { ev := nearEv; ev.Final = nil; return nearU, ev }, consensus.FaultSilent},
		{"final state not the committed one", tol, edit(func(s *Snapshot) { s.Params[0] += 1e-6 }, false), consensus.FaultSilent},
		{"final state of the wrong size", tol, edit(func(s *Snapshot) { s.Params = s.Params[:len(s.Params)-1] }, true), consensus.FaultSilent},
		{"final state of another step", tol, edit(func(s *Snapshot) { s.Step-- }, true), consensus.FaultSilent},
		{"payload flipped against the final state", tol, fixed(&flipped, flippedEv), consensus.FaultLink},
		{"openings that do not hold", tol, func() (*consensus.Update, Evidence) {
			ev := nearEv
			ev.Openings = slices.Clone(ev.Openings[1:])
			return nearU, ev
		}, consensus.FaultSilent},
	} {
		hr.spec.Verify.Tolerance = tc.tol
		u, ev := tc.lie()
		f := hr.check(t, u, ev)
		if f.Fault != tc.fault || f.Segment != S-1 {
			t.Errorf("%s: %s fault on segment %d (%s), want %s on %d", tc.name, f.Fault, f.Segment, f.Reason, tc.fault, S-1)
			continue
		}
		err := hr.judge(t, u, ev)
		if (err == nil) != (tc.fault == consensus.FaultNone) {
			t.Errorf("%s: Judge = %v", tc.name, err)
		}
		switch tc.fault {
		case consensus.FaultSegment:
			// The referee re-executes the round against the final state
			// the challenger kept; without it nobody is proven at fault.
			if len(f.Keep) != 1 || f.Keep[0].Hash() != u.Segments[S-1] {
				t.Errorf("%s: kept %d states, want the committed final state", tc.name, len(f.Keep))
			}
			got, err := Referee(hr.spec, hr.base, u, &consensus.VerdictMsg{Segment: f.Segment, Fault: f.Fault}, hr.blocks, hr.replayer(t), only(f), nil)
			if err != nil || got != consensus.Upheld {
				t.Errorf("%s: the referee of a true tolerance claim: %v, %v", tc.name, got, err)
			}
			got, err = Referee(hr.spec, hr.base, u, &consensus.VerdictMsg{Segment: f.Segment, Fault: f.Fault}, hr.blocks, hr.replayer(t), none, nil)
			if got != consensus.Lapsed || !errors.Is(err, ErrUnjudgeable) {
				t.Errorf("%s: the referee without the final state: %v, %v", tc.name, got, err)
			}
		case consensus.FaultLink:
			// The link is checked against the committed final state (the
			// one the evidence carries), not the re-executed one.
			if len(f.Keep) != 1 || f.Keep[0].Hash() != u.Segments[S-1] || !slices.Equal(f.Keep[0].Params, near.Params) {
				t.Errorf("%s: kept %d states, want the committed final state", tc.name, len(f.Keep))
			}
			got, err := Referee(hr.spec, hr.base, u, &consensus.VerdictMsg{Segment: f.Segment, Fault: f.Fault}, hr.blocks, hr.replayer(t), only(f), hr.openings(t, f))
			if err != nil || got != consensus.Upheld {
				t.Errorf("%s: the referee of a true link claim: %v, %v", tc.name, got, err)
			}
		}
	}
	// False claims against final states within tolerance: overturned.
	hr.spec.Verify.Tolerance = tol
	for _, c := range []struct {
		name string
		u    *consensus.Update
		fin  Snapshot
	}{{"the honest round", hr.u, hr.final}, {"0.1×tolerance away", nearU, near}} {
		x := &consensus.VerdictMsg{Segment: S - 1, Fault: consensus.FaultSegment}
		if got, err := Referee(hr.spec, hr.base, c.u, x, hr.blocks, hr.replayer(t), light(only(Finding{Keep: []Snapshot{c.fin}})), nil); err != nil || got != consensus.Overturned {
			t.Errorf("%s: the referee of a false tolerance claim: %v, %v", c.name, got, err)
		}
	}
}
