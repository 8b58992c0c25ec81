package benchmarks

import (
	"testing"

	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/trainer"
)

// BenchmarkEvaluate times what a node spends evaluating the agreed model
// in a round it evaluates (vtrain node --eval-every): the test set's
// first 1,000 samples through the default MLP, beside one AdamW training
// step of the same model at batch 64, so that the cost of an evaluation
// reads in inner steps.
//
//	go test -run - -bench Evaluate ./benchmarks/
func BenchmarkEvaluate(b *testing.B) {
	set := data.Synthetic(1, 2048, 1000)
	spec, err := models.NewSpec(models.MLP, []int{256})
	if err != nil {
		b.Fatal(err)
	}
	theta := models.Init(spec, 1)
	b.Run("mlp-784-256-10/1000", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := trainer.Evaluate(spec, theta, set.Test, 1000); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e3, "ms/eval")
	})
}
