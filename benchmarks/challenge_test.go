package benchmarks

import (
	"context"
	"testing"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
)

// BenchmarkChallenge measures what a spot-check costs its challenger
// against what the challenged round cost to train, at the default spec
// (MLP 784-256-10, 400 AdamW steps of 64, 16 segments): one round's inner
// steps with the segment roots, then trainer.Check of the honest update
// (re-executing the round from the agreed state, the root checks, and
// re-encoding the verify.openings residual blocks drawn), and what the
// accused sends for it (B/challenge: the openings with their paths, before
// framing). The reported fractions weigh the cost by the default rates and
// the verify.challengers checks of each drawn update: steady state
// (verify.rate) and over a 30-round run whose peers all start on probation
// (10 rounds at verify.newcomer_rate).
//
//	go test -tags openblas -run - -bench Challenge ./benchmarks/
func BenchmarkChallenge(b *testing.B) {
	spec := runspec.Default()
	spec.Data.Source = "synthetic"
	spec = spec.WithFounders("12D3KooWbenchmark")
	set := data.Synthetic(1, 8192, 1)
	g, _ := trainer.Genesis(spec)
	peer := trainer.PeerID("12D3KooWbenchmark")
	rep, err := trainer.NewReplayer(spec, 0, peer, set.Train)
	if err != nil {
		b.Fatal(err)
	}
	var train, judge, sent float64
	for i := 0; i < b.N; i++ {
		// One round's work, as a node does it, encoded from a residual
		// left by earlier rounds.
		t0 := time.Now()
		w, _, final, err := trainer.TrainRound(context.Background(), spec, &consensus.TrainRequest{Round: 0, Theta: g.Theta, Seed: trainer.RoundSeed(spec, 0, peer), Shard: trainer.ShardOf(spec, peer)}, set.Train)
		if err != nil {
			b.Fatal(err)
		}
		train += time.Since(t0).Seconds()
		res := make([]float32, len(g.Theta))
		for j := range res {
			res[j] = 1e-4 * float32(j%7-3)
		}
		payload, out, err := trainer.Link(spec, g.Theta, final.Params, res)
		if err != nil {
			b.Fatal(err)
		}
		u := &consensus.Update{Round: 0, Segments: w.Segments, Payload: payload,
			ResidualIn: trainer.ResidualRoot(spec, res), ResidualOut: trainer.ResidualRoot(spec, out)}
		blocks, err := trainer.DrawBlocks(spec, consensus.Hash{byte(i)}, u, consensus.Hash{1}, "challenger", len(res))
		if err != nil {
			b.Fatal(err)
		}
		ops, err := trainer.Open(spec, res, out, blocks)
		if err != nil {
			b.Fatal(err)
		}
		for _, op := range ops {
			sent += float64(4*len(op.In) + 32*(len(op.InPath)+len(op.OutPath)))
		}
		t1 := time.Now()
		f, err := trainer.Check(spec, g.Theta, u, blocks, trainer.Evidence{Openings: ops}, rep, func(int) *consensus.Answer { return nil })
		if err != nil || f.Fault != consensus.FaultNone {
			b.Fatal(f, err)
		}
		judge += time.Since(t1).Seconds()
	}
	n := float64(b.N)
	v := spec.Verify
	k := float64(v.Challengers)
	probation := (float64(v.Probation)*v.NewcomerRate + float64(30-v.Probation)*v.Rate) / 30
	b.ReportMetric(train/n*1e3, "ms/round")
	b.ReportMetric(judge/n*1e3, "ms/challenge")
	b.ReportMetric(sent/n, "B/challenge")
	b.ReportMetric(100*judge/train, "%/challenge")
	b.ReportMetric(100*k*v.Rate*judge/train, "%steady")
	b.ReportMetric(100*k*probation*judge/train, "%30rounds")
}
