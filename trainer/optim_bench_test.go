package trainer

import (
	"fmt"
	"testing"

	"github.com/vtrain/vtrain/internal/prng"
)

func BenchmarkOptimizers(b *testing.B) {
	const n = 203530
	rng := prng.New(1)
	p, g := make([]float32, n), make([]float32, n)
	for i := range p {
		p[i] = float32(rng.Norm() * 0.05)
		g[i] = float32(rng.Norm() * 1e-3)
	}
	for _, opt := range []Optimizer{NewAdamW(n, 0.9, 0.999, 1e-8, 0), NewSGD(n, 0.9, 0, false)} {
		b.Run(fmt.Sprintf("%s/%d", opt.Name(), n), func(b *testing.B) {
			b.SetBytes(4 * n)
			for i := 0; i < b.N; i++ {
				opt.Step(p, g, 1e-3)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/param")
		})
	}
}
