package models

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestReLUVectorMatchesScalar holds reluMul (the vector loop where the CPU
// has one, and the scalar tail) to the scalar definition bit for bit, for
// ReLU (v = x) and its gradient (v = dy), at every length around the
// vector width, on values that include ±0, ±Inf, quiet and signalling NaNs, subnormals and the
// extremes, and checks that nothing past len(dst) is written.
func TestReLUVectorMatchesScalar(t *testing.T) {
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), math.Float32frombits(0xffc00001), math.Float32frombits(0x7f800001), 1e-45, -1e-45, math.MaxFloat32, -math.MaxFloat32, 0.5, -2.5}
	r := rand.New(rand.NewPCG(1, 2))
	val := func() float32 {
		if r.IntN(3) == 0 {
			return special[r.IntN(len(special))]
		}
		return float32(r.NormFloat64())
	}
	// The scalar loop as it was before the vector one.
	want := func(x, v float32) float32 { return v * math.Float32frombits(0x3f800000&mask(x >= 0)) }
	for _, n := range append([]int{0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 33}, 64*256+5) {
		for _, grad := range []bool{false, true} {
			x, dy := make([]float32, n), make([]float32, n)
			for i := range x {
				x[i], dy[i] = val(), val()
			}
			v := x
			if grad {
				v = dy
			}
			buf := make([]float32, n+9)
			for i := range buf {
				buf[i] = 42
			}
			reluMul(buf[:n], x, v)
			for i := range n {
				if w := want(x[i], v[i]); math.Float32bits(buf[i]) != math.Float32bits(w) {
					t.Fatalf("n=%d grad=%v: element %d (x %v, v %v) is %v (%#08x), want %v (%#08x)",
						n, grad, i, x[i], v[i], buf[i], math.Float32bits(buf[i]), w, math.Float32bits(w))
				}
			}
			for i := n; i < len(buf); i++ {
				if buf[i] != 42 {
					t.Fatalf("n=%d grad=%v: wrote element %d past the end", n, grad, i)
				}
			}
		}
	}
}
