package trainer

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
)

// honestRound trains one round as a node does (segment roots, evidence)
// on a small MLP and returns the update, the evidence per segment and the
// base. opts train the round on another engine (WithEngine).
type honestRound struct {
	spec   runspec.Spec
	set    *data.Set
	base   []float32
	u      *consensus.Update
	starts []Snapshot
	final  Snapshot
	res    []float32
	peer   PeerID
}

func newHonestRound(t *testing.T, optimizer string, opts ...Option) *honestRound {
	t.Helper()
	spec := runspec.Default()
	spec.Model = runspec.Model{Kind: "mlp", Hidden: []int{16}}
	spec.Data.Source = "synthetic"
	spec.Inner.Steps, spec.Inner.Batch, spec.Inner.Optimizer = 12, 8, optimizer
	spec.Verify.Segment = 5 // 3 segments: 5, 5, 2 steps
	spec = spec.WithFounders("12D3KooWtest")
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	set := data.Synthetic(1, 512, 16)
	g, _ := Genesis(spec)
	hr := &honestRound{spec: spec, set: set, base: g.Theta, peer: "12D3KooWtest"}
	w, starts, final, err := TrainRound(context.Background(), spec, &consensus.TrainRequest{Theta: g.Theta, Seed: RoundSeed(spec, 0, hr.peer), Shard: ShardOf(spec, hr.peer)}, set.Train, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hr.u, hr.starts, hr.final = &consensus.Update{Round: 0, Segments: w.Segments}, starts, final
	hr.res = make([]float32, len(g.Theta))
	for i := range hr.res {
		hr.res[i] = float32(i%7) * 1e-4 // a residual carried from earlier rounds
	}
	payload, out, err := Link(spec, g.Theta, hr.final.Params, hr.res)
	if err != nil {
		t.Fatal(err)
	}
	hr.u.ResidualIn, hr.u.Payload, hr.u.ResidualOut = ParamHash(hr.res), payload, ParamHash(out)
	return hr
}

func (hr *honestRound) evidence(seg int) Evidence {
	ev := Evidence{Final: hr.final, ResidualIn: slices.Clone(hr.res)}
	if seg > 0 {
		s := hr.starts[seg]
		ev.Start = &s
	}
	return ev
}

func (hr *honestRound) judge(t *testing.T, u *consensus.Update, seg int, ev Evidence) error {
	t.Helper()
	r, err := NewReplayer(hr.spec, 0, hr.peer, hr.set.Train)
	if err != nil {
		t.Fatal(err)
	}
	err = Judge(hr.spec, hr.base, u, seg, ev, r)
	if err != nil && !errors.Is(err, ErrChallenge) {
		t.Fatalf("judge could not run: %v", err)
	}
	return err
}

// TestJudgeHonestPasses re-executes every segment of an honest round, with
// SGD and with AdamW (optimizer state in the snapshots), and each passes.
func TestJudgeHonestPasses(t *testing.T) {
	for _, opt := range []string{OptSGD, OptAdamW} {
		hr := newHonestRound(t, opt)
		for seg := range hr.spec.Segments() {
			if err := hr.judge(t, hr.u, seg, hr.evidence(seg)); err != nil {
				t.Errorf("%s: honest segment %d failed: %v", opt, seg, err)
			}
		}
	}
}

// TestJudgeCatchesEachLie fails every way of misreporting a round.
func TestJudgeCatchesEachLie(t *testing.T) {
	hr := newHonestRound(t, OptAdamW)
	clone := func() *consensus.Update {
		u := *hr.u
		u.Segments = slices.Clone(hr.u.Segments)
		return &u
	}
	scaled := func() *consensus.Update {
		u := clone()
		far := make([]float32, len(hr.base)) // base − far = 50 × (base − final)
		for i := range far {
			far[i] = hr.base[i] - 50*(hr.base[i]-hr.final.Params[i])
		}
		payload, out, _ := Link(hr.spec, hr.base, far, hr.res)
		u.Payload, u.ResidualOut = payload, ParamHash(out)
		return u
	}
	for _, tc := range []struct {
		name string
		u    func() *consensus.Update
		seg  int
		ev   func(Evidence) Evidence
	}{
		{"made-up first root", func() *consensus.Update { u := clone(); u.Segments[0][3] ^= 1; return u }, 0, nil},
		{"made-up middle root", func() *consensus.Update { u := clone(); u.Segments[1][0] ^= 1; return u }, 1, nil},
		{"forged start state", nil, 1, func(ev Evidence) Evidence {
			s := *ev.Start
			s.Params = slices.Clone(s.Params)
			s.Params[0] += 1e-3
			ev.Start = &s
			return ev
		}},
		{"start state withheld", nil, 2, func(ev Evidence) Evidence { ev.Start = nil; return ev }},
		{"optimizer state altered", nil, 1, func(ev Evidence) Evidence {
			s := *ev.Start
			s.Opt = map[string][]float32{}
			for k, v := range ev.Start.Opt {
				s.Opt[k] = slices.Clone(v)
				s.Opt[k][1] *= 2
			}
			ev.Start = &s
			return ev
		}},
		{"payload scaled ×50", scaled, 1, nil},
		{"another final state", nil, 0, func(ev Evidence) Evidence {
			ev.Final.Params = slices.Clone(ev.Final.Params)
			ev.Final.Params[5] = 0
			return ev
		}},
		{"residual not the committed one", nil, 2, func(ev Evidence) Evidence { ev.ResidualIn[0] += 1; return ev }},
		{"residual out misreported", func() *consensus.Update { u := clone(); u.ResidualOut[0] ^= 1; return u }, 0, nil},
		{"trained on another peer's batches", func() *consensus.Update { return hr.u }, 0, nil},
		{"segment out of range", nil, 7, nil},
	} {
		u := hr.u
		if tc.u != nil {
			u = tc.u()
		}
		ev := hr.evidence(min(tc.seg, len(hr.starts)-1))
		if tc.ev != nil {
			ev = tc.ev(ev)
		}
		r, _ := NewReplayer(hr.spec, 0, hr.peer, hr.set.Train)
		if tc.name == "trained on another peer's batches" {
			r, _ = NewReplayer(hr.spec, 0, "12D3KooWother", hr.set.Train)
		}
		err := Judge(hr.spec, hr.base, u, tc.seg, ev, r)
		if !errors.Is(err, ErrChallenge) {
			t.Errorf("%s: Judge = %v, want a failed challenge", tc.name, err)
		}
	}
}

// TestSnapshotResumesBitExactly: k steps, a snapshot, a fresh trainer set
// to it and k more steps land where 2k straight steps do.
func TestSnapshotResumesBitExactly(t *testing.T) {
	hr := newHonestRound(t, OptAdamW)
	r, _ := NewReplayer(hr.spec, 0, hr.peer, hr.set.Train)
	st, err := r.Start(hr.base)
	if err != nil {
		t.Fatal(err)
	}
	straight, _ := r.Run(st, 10)
	half, _ := r.Run(st, 5)
	resumed, _ := r.Run(half, 5)
	if straight.Hash() != resumed.Hash() || straight.Hash() != hr.u.Segments[1] {
		t.Fatal("resuming from a snapshot is not bit-exact")
	}
}
