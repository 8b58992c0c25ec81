package trainer

import (
	"strings"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/zk"
)

// privateRun is a run whose founder "p" trains on private data (its whole
// synthetic training set), and p's update of round 0: what a member
// checks before it takes it.
func privateRun(t *testing.T) (runspec.Spec, *consensus.Update, []float32) {
	t.Helper()
	set := data.Synthetic(3, 64, 8)
	s := runspec.Default()
	s.Model = runspec.Model{Kind: models.LogReg}
	s.Data.Source = "synthetic"
	s.Inner.Optimizer, s.Inner.LR, s.Inner.Batch, s.Inner.Steps, s.Inner.Momentum, s.Inner.WeightDecay = "sgd", 0.05, 4, 6, 0, 0
	s = s.WithFounders("p", "q")
	s.Privacy = runspec.Privacy{Mode: "zk", Depth: 8, VKSHA256: strings.Repeat("0", 64)}
	p := s.ZKParams()
	shard := make([]int, set.Train.Len())
	for i := range shard {
		shard[i] = i
	}
	base := models.Init(models.Spec{Kind: models.LogReg, Rows: 28, Cols: 28, Classes: 10}, 7)
	theta, err := zk.ThetaFromFloat(base)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := zk.NewProver(&zk.Keys{Params: p}, theta, set.Train, shard, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Privacy.Peers = []runspec.PrivatePeer{{Peer: "p", DataRoot: zk.Hex(pr.DataRoot()), DataSize: uint64(len(shard))}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	seed := consensus.RoundSeed(s, 0, "p")
	c, err := pr.Round(zk.Context{Run: s.RunID(), Round: 0, Peer: "p"}, seed, s.Inner.Steps)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pr.Delta()
	if err != nil {
		t.Fatal(err)
	}
	u := &consensus.Update{Round: 0, From: "p", Samples: uint64(s.Inner.Steps * s.Inner.Batch), Loss: 2.3, Payload: d.Encode(), Seed: seed}
	for _, h := range c.Commitments() {
		u.Segments = append(u.Segments, consensus.Hash(h))
	}
	return s, u, base
}

// TestPrivateUpdateChecks: a private peer's honest update decodes to its
// exact change (as the pseudo-gradient θ_0 − θ_K) and links to its
// commitments from the agreed state; what does not is refused with a
// reason: another change, another state, a residual, a sample count that
// is not the round's, a payload that is not a change, a norm beyond the
// bound.
func TestPrivateUpdateChecks(t *testing.T) {
	s, u, base := privateRun(t)
	dec, err := compress.NewDecoder(len(base))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ValidateUpdate(s, u, dec)
	if err != nil {
		t.Fatalf("honest private update refused: %v", err)
	}
	if err := CheckPrivateLink(s, u, base); err != nil {
		t.Fatalf("honest private update does not link: %v", err)
	}
	delta, _ := zk.DecodeDelta(u.Payload, len(base))
	df := delta.Float(nil)
	dense := make([]float32, len(base))
	sp.Dense(dense)
	for i := range dense {
		if dense[i] != -df[i] {
			t.Fatalf("coordinate %d decodes to %v, want %v (θ_0 − θ_K)", i, dense[i], -df[i])
		}
	}

	moved := *u
	d2 := append(zk.Delta(nil), delta...)
	d2[17]++
	moved.Payload = d2.Encode()
	if err := CheckPrivateLink(s, &moved, base); err == nil || !strings.Contains(err.Error(), "last commitment") {
		t.Errorf("a change off by one unit: %v", err)
	}
	other := append([]float32(nil), base...)
	other[3] += 0.5
	if err := CheckPrivateLink(s, u, other); err == nil || !strings.Contains(err.Error(), "first commitment") {
		t.Errorf("another agreed state: %v", err)
	}
	for _, c := range []struct {
		name, gist string
		edit       func(u *consensus.Update, s *runspec.Spec)
	}{
		{"a residual", "residual", func(u *consensus.Update, _ *runspec.Spec) { u.ResidualOut[0] = 1 }},
		{"another sample count", "samples", func(u *consensus.Update, _ *runspec.Spec) { u.Samples++ }},
		{"a payload that is no change", "malformed", func(u *consensus.Update, _ *runspec.Spec) { u.Payload = []byte("junk") }},
		{"a negative loss", "loss", func(u *consensus.Update, _ *runspec.Spec) { u.Loss = -1 }},
		{"a norm beyond the bound", "bad norm", func(_ *consensus.Update, s *runspec.Spec) { s.Rounds.MaxUpdateNorm = 1e-6 }},
	} {
		v, sp := *u, s
		c.edit(&v, &sp)
		if _, err := ValidateUpdate(sp, &v, dec); err == nil || !strings.Contains(err.Error(), c.gist) {
			t.Errorf("%s: %v, want an error about %q", c.name, err, c.gist)
		}
	}
	// A public peer's update is not read as a change.
	pub := *u
	pub.From = "q"
	if _, err := ValidateUpdate(s, &pub, dec); err == nil {
		t.Error("a public peer's update decoded as a private change")
	}
}

// TestOuterStepKeepsZKRunProvable: a zk run's agreed parameters stay
// where its private peers can start from them (zk.ThetaFromFloat), however
// the aggregated updates push; a public run's are not clamped.
func TestOuterStepKeepsZKRunProvable(t *testing.T) {
	theta := []float32{500, -500, 3}
	push := &compress.Sparse{D: 3, Idx: []uint32{0, 1, 2}, Val: []float32{-200, 200, 0.5}, Threshold: -1, Bits: 32}
	for _, mode := range []string{"", "zk"} {
		spec := runspec.Default()
		spec.Privacy.Mode = mode
		next := theta
		mom := make([]float32, len(theta))
		var err error
		for range 5 {
			if next, mom, err = OuterStep(spec, next, mom, []*compress.Sparse{push}); err != nil {
				t.Fatal(err)
			}
		}
		_, ferr := zk.ThetaFromFloat(next)
		switch {
		case mode == "zk" && (next[0] != ZKParamLimit || next[1] != -ZKParamLimit || ferr != nil):
			t.Fatalf("zk run: parameters %v (limit %g), fixed point: %v", next, ZKParamLimit, ferr)
		case mode == "zk" && next[2] >= 3:
			t.Fatalf("zk run: an in-range parameter did not move: %v", next)
		case mode == "" && next[0] <= 1024:
			t.Fatalf("public run: parameters %v clamped", next)
		}
	}
}
