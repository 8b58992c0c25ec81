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
// (MLP 784-256-10, 200 AdamW steps of 64, 16 segments): one round's inner
// steps with the segment roots, then trainer.Check on each segment of the
// honest update (re-execution, the hash checks and re-deriving the
// payload), and, apart (ms/answer), what the accused spends computing its
// signed step hashes of a segment, which a challenger asks for only when
// its re-execution misses the segment's root. The reported fractions weigh the
// cost by the default rates and the verify.challengers checks of each
// drawn update: steady state (verify.rate) and over a 30-round run whose
// peers all start on probation (10 rounds at verify.newcomer_rate).
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
	var train, judge, answer float64
	for i := 0; i < b.N; i++ {
		// One round's work, as a node does it.
		t0 := time.Now()
		w, starts, final, err := trainer.TrainRound(context.Background(), spec, &consensus.TrainRequest{Round: 0, Theta: g.Theta, Seed: trainer.RoundSeed(spec, 0, peer), Shard: trainer.ShardOf(spec, peer)}, set.Train)
		if err != nil {
			b.Fatal(err)
		}
		u := &consensus.Update{Round: 0, Segments: w.Segments}
		train += time.Since(t0).Seconds()
		// The update as the engine would encode it, from a zero residual.
		res := make([]float32, len(g.Theta))
		payload, out, err := trainer.Link(spec, g.Theta, final.Params, res)
		if err != nil {
			b.Fatal(err)
		}
		u.ResidualIn, u.Payload, u.ResidualOut = trainer.ParamHash(res), payload, trainer.ParamHash(out)
		t1 := time.Now()
		var answering float64
		for seg := range spec.Segments() {
			ev := trainer.Evidence{Final: final, ResidualIn: res}
			if seg > 0 {
				ev.Start = &starts[seg]
			}
			t2 := time.Now()
			leaves, err := trainer.AnswerLeaves(spec, starts[seg], seg, rep)
			if err != nil {
				b.Fatal(err)
			}
			answering += time.Since(t2).Seconds()
			a := &consensus.Answer{Segment: seg, Leaves: leaves}
			f, err := trainer.Check(spec, g.Theta, u, seg, ev, rep, func() *consensus.Answer { return a })
			if err != nil || f.Fault != consensus.FaultNone {
				b.Fatal(f, err)
			}
		}
		judge += (time.Since(t1).Seconds() - answering) / float64(spec.Segments())
		answer += answering / float64(spec.Segments())
	}
	n := float64(b.N)
	v := spec.Verify
	k := float64(v.Challengers)
	probation := (float64(v.Probation)*v.NewcomerRate + float64(30-v.Probation)*v.Rate) / 30
	b.ReportMetric(train/n*1e3, "ms/round")
	b.ReportMetric(judge/n*1e3, "ms/challenge")
	b.ReportMetric(answer/n*1e3, "ms/answer")
	b.ReportMetric(100*judge/train, "%/challenge")
	b.ReportMetric(100*k*v.Rate*judge/train, "%steady")
	b.ReportMetric(100*k*probation*judge/train, "%30rounds")
}
