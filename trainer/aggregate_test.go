package trainer

import (
	"math"
	"testing"

	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/runspec"
)

func l2(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// TestCenteredClipBoundsOneUpdate: honest updates that agree come out as
// they went in; a minority sending huge updates moves the result by at
// most its share of the honest norm, however huge; the mean it replaces
// is moved without bound.
func TestCenteredClipBoundsOneUpdate(t *testing.T) {
	const d, n = 64, 7
	r := prng.New(3)
	g := make([]float32, d)
	for i := range g {
		g[i] = float32(r.Norm())
	}
	same := make([][]float32, n)
	for j := range same {
		same[j] = g
	}
	out := make([]float32, d)
	if err := Aggregate(runspec.AggCenteredClip, 0, same, out); err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if math.Abs(float64(out[i]-g[i])) > 1e-6 {
			t.Fatalf("equal updates: coordinate %d is %v, want %v", i, out[i], g[i])
		}
	}
	for _, scale := range []float32{10, 1e4} {
		ups := make([][]float32, n)
		for j := range ups {
			u := make([]float32, d)
			for i := range u {
				u[i] = g[i] + float32(0.1*r.Norm())
			}
			ups[j] = u
		}
		for j := range 2 { // two of seven attack with -scale·g
			for i := range ups[j] {
				ups[j][i] = -scale * g[i]
			}
		}
		clip, mean := make([]float32, d), make([]float32, d)
		Aggregate(runspec.AggCenteredClip, 0, ups, clip)
		Aggregate(runspec.AggMean, 0, ups, mean)
		diff := func(v []float32) float64 {
			e := make([]float32, d)
			for i := range e {
				e[i] = v[i] - g[i]
			}
			return l2(e)
		}
		// Each of the two moves v by at most τ/n per step, τ about ‖g‖.
		if bound := 3 * 2 * 1.2 * l2(g) / n; diff(clip) > bound {
			t.Errorf("scale %v: centered clipping lands %.3g from the honest update, bound %.3g", scale, diff(clip), bound)
		}
		if scale == 1e4 && diff(mean) < 100*l2(g) {
			t.Errorf("the mean should be dragged away: %.3g", diff(mean))
		}
	}
}
