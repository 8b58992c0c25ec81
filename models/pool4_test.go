package models

import (
	"math"
	"testing"
)

// TestPool4 checks pool4 against the definition: max(a, b, c, d, 0) with
// Go's max, and the first of a..d equal to it when it is positive.
func TestPool4(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 2, 1e-45, -1e-45, 3e38, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 0.5}
	for _, a := range vals {
		for _, b := range vals {
			for _, c := range vals {
				for _, d := range vals {
					want := max(a, b, c, d, 0)
					wk := uint8(4)
					if want > 0 {
						for i, v := range []float32{a, b, c, d} {
							if v == want {
								wk = uint8(i)
								break
							}
						}
					}
					m, k := pool4(a, b, c, d)
					if math.Float32bits(m) != math.Float32bits(want) || k != wk {
						t.Fatalf("pool4(%v, %v, %v, %v) = %v, %d; want %v, %d", a, b, c, d, m, k, want, wk)
					}
				}
			}
		}
	}
}
