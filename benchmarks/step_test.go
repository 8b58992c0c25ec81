package benchmarks

import (
	"fmt"
	"testing"

	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/trainer"
)

// BenchmarkStep times one training step (forward, backward, optimizer
// update) per model and batch size. Run with -tags openblas for the fast
// CPU path; OPENBLAS_NUM_THREADS and GOMAXPROCS set the thread counts.
//
//	go test -tags openblas -run - -bench Step ./benchmarks/
func BenchmarkStep(b *testing.B) {
	set := data.Synthetic(1, 2048, 1)
	for _, tc := range []struct {
		kind   string
		hidden []int
		batch  int
		opt    string
	}{
		{models.LogReg, nil, 64, trainer.OptSGD},
		{models.MLP, []int{256}, 64, trainer.OptSGD},
		{models.MLP, []int{256}, 64, trainer.OptAdamW},
		{models.MLP, []int{256}, 256, trainer.OptSGD},
		{models.CNN, nil, 64, trainer.OptSGD},
	} {
		spec, err := models.NewSpec(tc.kind, tc.hidden)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s/batch=%d/%s", spec, tc.batch, tc.opt), func(b *testing.B) {
			cfg := trainer.DefaultConfig(spec)
			cfg.Batch, cfg.Optimizer = tc.batch, tc.opt
			tr, err := trainer.New(cfg, set.Train)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			for i := 0; i < 10; i++ {
				tr.Step()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := tr.Step(); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(sec*1e3, "ms/step")
			b.ReportMetric(spec.FLOPsPerSample()*float64(tc.batch)/sec/1e9, "GFLOP/s")
			b.ReportMetric(float64(tc.batch)/sec, "samples/s")
		})
	}
}
