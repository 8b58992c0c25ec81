package trainer

import (
	"math"
	"testing"

	"github.com/vtrain/vtrain/internal/prng"
)

// TestSGDVectorLoopMatchesScalar checks the SGD update bit for bit
// against the scalar loop, on values that include subnormals (flushed),
// signed zeros, infinities and NaNs, at lengths around the vector width.
func TestSGDVectorLoopMatchesScalar(t *testing.T) {
	rng := prng.New(7)
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-39, -1e-39, 1e-45, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 3e38, -3e38}
	val := func() float32 {
		if rng.Uint64()%5 == 0 {
			return special[rng.Uint64()%uint64(len(special))]
		}
		return float32(rng.Norm() * math.Pow(10, float64(int(rng.Uint64()%80)-40)))
	}
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 1000, 1003} {
		p, g, b := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range p {
			p[i], g[i], b[i] = val(), val(), val()
		}
		for _, mu := range []float32{0.9, 0, 1e-30} {
			const eta = float32(0.01)
			wp, wb := append([]float32(nil), p...), append([]float32(nil), b...)
			for i, gi := range g {
				v := flush(float32(mu*wb[i]) + gi)
				wb[i] = v
				wp[i] -= float32(eta * v)
			}
			o := NewSGD(n, float64(mu), 0, false)
			copy(o.buf, b)
			gp := append([]float32(nil), p...)
			o.Step(gp, g, float64(eta))
			for i := range gp {
				if math.Float32bits(gp[i]) != math.Float32bits(wp[i]) || math.Float32bits(o.buf[i]) != math.Float32bits(wb[i]) {
					t.Fatalf("n=%d mu=%g i=%d: param %v buf %v, scalar %v %v", n, mu, i, gp[i], o.buf[i], wp[i], wb[i])
				}
			}
		}
	}
	if !hasVectorSGD() {
		t.Log("no vector loop on this CPU: the scalar loop was compared with itself")
	}
}
