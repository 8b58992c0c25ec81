// Package enginetest is the conformance suite that every engine.Engine
// must pass: the CPU reference in CI, the CUDA engine on a GPU. Every case
// is seeded, covers odd and degenerate sizes, writes its outputs into
// NaN-padded windows to catch stray writes, and compares with a float64
// reference under an explicit tolerance.
package enginetest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/trainer"
)

// Tol is the suite's tolerance: |got − want| ≤ Tol·(1 + |want|) per element
// for the kernels, and ≤ Tol relative L2 for a whole training step.
const Tol = 1e-4

const pad = 7 // NaN elements on each side of every output window

// RefTol is the tolerance (relative L2) of lowered training graphs on the
// CPU reference engine against Gorgonia's VM.
const RefTol = 1e-5

// Run runs the kernel suite and the training-step suites against e, with
// steps held to the cross-device tolerance Tol.
func Run(t *testing.T, e engine.Engine) { run(t, e, Tol) }

// RunReference is Run for the CPU reference engine: lowered training
// steps are held to RefTol.
func RunReference(t *testing.T, e engine.Engine) { run(t, e, RefTol) }

func run(t *testing.T, e engine.Engine, stepTol float64) {
	t.Run("Gemm", func(t *testing.T) { Gemm(t, e) })
	t.Run("RowOps", func(t *testing.T) { RowOps(t, e) })
	t.Run("Elementwise", func(t *testing.T) { Elementwise(t, e) })
	t.Run("Softmax", func(t *testing.T) { Softmax(t, e) })
	t.Run("Conv", func(t *testing.T) { Conv(t, e) })
	t.Run("Pool", func(t *testing.T) { Pool(t, e) })
	t.Run("Optimizers", func(t *testing.T) { Optimizers(t, e) })
	t.Run("Shapes", func(t *testing.T) { Shapes(t, e) })
	t.Run("TrainingSteps", func(t *testing.T) { TrainingSteps(t, e, stepTol) })
	t.Run("LoweredGraphs", func(t *testing.T) { LoweredGraphs(t, e, stepTol) })
	t.Run("Concurrent", func(t *testing.T) { Concurrent(t, e) })
}

// padded is an output window inside a NaN-filled buffer.
type padded struct {
	e    engine.Engine
	full engine.Buffer
	win  engine.Buffer
	n    int
}

func newPadded(t *testing.T, e engine.Engine, init []float32) *padded {
	t.Helper()
	n := len(init)
	full, err := e.Alloc(n + 2*pad)
	if err != nil {
		t.Fatal(err)
	}
	host := make([]float32, n+2*pad)
	for i := range host {
		host[i] = float32(math.NaN())
	}
	copy(host[pad:], init)
	if err := e.Upload(full, host); err != nil {
		t.Fatal(err)
	}
	return &padded{e: e, full: full, win: full.Slice(pad, n), n: n}
}

// get downloads the window, failing the test if anything outside it changed.
func (p *padded) get(t *testing.T, what string) []float32 {
	t.Helper()
	host := make([]float32, p.n+2*pad)
	if err := p.e.Download(host, p.full); err != nil {
		t.Fatal(err)
	}
	for i := range pad {
		if !math.IsNaN(float64(host[i])) || !math.IsNaN(float64(host[pad+p.n+i])) {
			t.Fatalf("%s: stray write outside the output window", what)
		}
	}
	p.e.Free(p.full)
	return host[pad : pad+p.n]
}

func upload(t *testing.T, e engine.Engine, v []float32) engine.Buffer {
	t.Helper()
	b, err := e.Alloc(len(v))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Upload(b, v); err != nil {
		t.Fatal(err)
	}
	return b
}

func randn(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

func nans(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

func compare(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); !(d <= tol*(1+math.Abs(w))) {
			t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], w)
		}
	}
}

// Gemm checks every transpose combination at odd, degenerate and larger
// sizes, with beta 0 over a NaN-filled C, and beta ≠ 0.
func Gemm(t *testing.T, e engine.Engine) {
	r := rand.New(rand.NewPCG(1, 1))
	sizes := [][3]int{{1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {3, 4, 1}, {17, 13, 11}, {64, 10, 784}, {33, 129, 65}}
	for _, s := range sizes {
		m, n, k := s[0], s[1], s[2]
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				for _, ab := range [][2]float32{{1, 0}, {0.5, -0.25}} {
					alpha, beta := ab[0], ab[1]
					a, b := randn(r, m*k, 1), randn(r, k*n, 1)
					c0 := randn(r, m*n, 1)
					if beta == 0 {
						c0 = nans(m * n)
					}
					want := make([]float64, m*n)
					for i := range m {
						for j := range n {
							var acc float64
							for p := range k {
								av := a[i*k+p]
								if ta {
									av = a[p*m+i]
								}
								bv := b[p*n+j]
								if tb {
									bv = b[j*k+p]
								}
								acc += float64(av) * float64(bv)
							}
							want[i*n+j] = float64(alpha) * acc
							if beta != 0 {
								want[i*n+j] += float64(beta) * float64(c0[i*n+j])
							}
						}
					}
					ab, bb := upload(t, e, a), upload(t, e, b)
					c := newPadded(t, e, c0)
					if err := e.Gemm(ta, tb, m, n, k, alpha, ab, bb, beta, c.win); err != nil {
						t.Fatal(err)
					}
					what := fmt.Sprintf("gemm %dx%dx%d transA=%v transB=%v alpha=%v beta=%v", m, n, k, ta, tb, alpha, beta)
					compare(t, what, c.get(t, what), want, Tol*math.Sqrt(float64(k)))
					e.Free(ab)
					e.Free(bb)
				}
			}
		}
	}
}

// RowOps checks AddRowVector, SumRows, ReLU and ReLUGrad.
func RowOps(t *testing.T, e engine.Engine) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, s := range [][2]int{{1, 1}, {1, 9}, {7, 1}, {3, 5}, {64, 10}, {129, 257}} {
		rows, cols := s[0], s[1]
		x, v := randn(r, rows*cols, 1), randn(r, cols, 1)
		// AddRowVector
		want := make([]float64, rows*cols)
		for i := range want {
			want[i] = float64(x[i]) + float64(v[i%cols])
		}
		y := newPadded(t, e, x)
		vb := upload(t, e, v)
		if err := e.AddRowVector(y.win, vb, rows, cols); err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("add-row-vector %dx%d", rows, cols), y.get(t, "add-row-vector"), want, Tol)
		// SumRows, over NaN
		sums := make([]float64, cols)
		for i, xv := range x {
			sums[i%cols] += float64(xv)
		}
		xb := upload(t, e, x)
		d := newPadded(t, e, nans(cols))
		if err := e.SumRows(d.win, xb, rows, cols); err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("sum-rows %dx%d", rows, cols), d.get(t, "sum-rows"), sums, Tol*math.Sqrt(float64(rows)))
		// ReLU and its gradient
		relu := make([]float64, len(x))
		for i, xv := range x {
			relu[i] = math.Max(float64(xv), 0)
		}
		rb := newPadded(t, e, x)
		if err := e.ReLU(rb.win); err != nil {
			t.Fatal(err)
		}
		got := rb.get(t, "relu")
		compare(t, "relu", got, relu, 0)
		dy := randn(r, len(x), 1)
		gradWant := make([]float64, len(x))
		for i := range x {
			if relu[i] > 0 {
				gradWant[i] = float64(dy[i])
			}
		}
		yb := upload(t, e, got)
		g := newPadded(t, e, dy)
		if err := e.ReLUGrad(g.win, yb); err != nil {
			t.Fatal(err)
		}
		compare(t, "relu-grad", g.get(t, "relu-grad"), gradWant, 0)
		for _, b := range []engine.Buffer{vb, xb, yb} {
			e.Free(b)
		}
	}
}

// Elementwise checks Copy, Add, Tanh and TanhGrad, out of place over NaN
// and in place (Add into its first and second input, Tanh and TanhGrad
// onto their input), at odd sizes and with inputs large enough to
// saturate tanh.
func Elementwise(t *testing.T, e engine.Engine) {
	r := rand.New(rand.NewPCG(8, 8))
	for _, n := range []int{1, 2, 7, 64, 1000, 4099} {
		a, b := randn(r, n, 2), randn(r, n, 2)
		if n > 2 {
			a[0], a[1], a[2] = 30, -30, 0
		}
		sum, th := make([]float64, n), make([]float64, n)
		for i := range a {
			sum[i] = float64(a[i]) + float64(b[i])
			th[i] = math.Tanh(float64(a[i]))
		}
		ab, bb := upload(t, e, a), upload(t, e, b)
		// Copy
		c := newPadded(t, e, nans(n))
		if err := e.Copy(c.win, ab); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, n)
		for i, v := range a {
			want[i] = float64(v)
		}
		compare(t, fmt.Sprintf("copy n=%d", n), c.get(t, "copy"), want, 0)
		// Add, out of place and into either input
		d := newPadded(t, e, nans(n))
		if err := e.Add(d.win, ab, bb); err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("add n=%d", n), d.get(t, "add"), sum, Tol)
		for _, first := range []bool{true, false} {
			in := newPadded(t, e, a)
			other := bb
			if first {
				err := e.Add(in.win, in.win, other)
				if err != nil {
					t.Fatal(err)
				}
			} else if err := e.Add(in.win, other, in.win); err != nil {
				t.Fatal(err)
			}
			compare(t, fmt.Sprintf("add in place (first=%v) n=%d", first, n), in.get(t, "add in place"), sum, Tol)
		}
		// Tanh, out of place and in place
		y := newPadded(t, e, nans(n))
		if err := e.Tanh(y.win, ab); err != nil {
			t.Fatal(err)
		}
		got := y.get(t, "tanh")
		compare(t, fmt.Sprintf("tanh n=%d", n), got, th, Tol)
		yin := newPadded(t, e, a)
		if err := e.Tanh(yin.win, yin.win); err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("tanh in place n=%d", n), yin.get(t, "tanh in place"), th, Tol)
		// TanhGrad on the (engine's) tanh output, out of place and onto dy
		dy := randn(r, n, 1)
		wantG := make([]float64, n)
		for i, v := range got {
			wantG[i] = float64(dy[i]) * (1 - float64(v)*float64(v))
		}
		yb, dyb := upload(t, e, got), upload(t, e, dy)
		g := newPadded(t, e, nans(n))
		if err := e.TanhGrad(g.win, dyb, yb); err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("tanh-grad n=%d", n), g.get(t, "tanh-grad"), wantG, Tol)
		gin := newPadded(t, e, dy)
		if err := e.TanhGrad(gin.win, gin.win, yb); err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("tanh-grad in place n=%d", n), gin.get(t, "tanh-grad in place"), wantG, Tol)
		for _, b := range []engine.Buffer{ab, bb, yb, dyb} {
			e.Free(b)
		}
	}
}

// Softmax checks SoftmaxCrossEntropy, including logits large enough to
// overflow a naive exp and a single class.
func Softmax(t *testing.T, e engine.Engine) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, s := range []struct {
		rows, cols int
		scale      float64
	}{{1, 1, 1}, {1, 2, 1}, {5, 3, 1}, {64, 10, 3}, {17, 10, 60}, {3, 1000, 1}} {
		rows, cols := s.rows, s.cols
		z := randn(r, rows*cols, s.scale)
		y := make([]float32, rows)
		for i := range y {
			y[i] = float32(r.IntN(cols))
		}
		wantD := make([]float64, rows*cols)
		wantL := make([]float64, rows)
		for i := range rows {
			row := z[i*cols : (i+1)*cols]
			m := math.Inf(-1)
			for _, v := range row {
				m = math.Max(m, float64(v))
			}
			var sum float64
			for _, v := range row {
				sum += math.Exp(float64(v) - m)
			}
			lse := m + math.Log(sum)
			wantL[i] = lse - float64(row[int(y[i])])
			for j, v := range row {
				p := math.Exp(float64(v) - lse)
				if j == int(y[i]) {
					p--
				}
				wantD[i*cols+j] = p / float64(rows)
			}
		}
		zb, yb := upload(t, e, z), upload(t, e, y)
		d, l := newPadded(t, e, nans(rows*cols)), newPadded(t, e, nans(rows))
		if err := e.SoftmaxCrossEntropy(d.win, l.win, zb, yb, rows, cols); err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("softmax %dx%d scale %v", rows, cols, s.scale)
		compare(t, what+" dlogits", d.get(t, what), wantD, Tol)
		compare(t, what+" loss", l.get(t, what), wantL, Tol)
		e.Free(zb)
		e.Free(yb)
	}
}

// Optimizers checks SGD (plain, momentum, Nesterov, weight decay) and AdamW.
func Optimizers(t *testing.T, e engine.Engine) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{1, 3, 1025} {
		for _, c := range []struct {
			mu, wd   float32
			nesterov bool
		}{{0, 0, false}, {0.9, 0, false}, {0.9, 1e-2, true}} {
			p, g, b := randn(r, n, 1), randn(r, n, 1), randn(r, n, 1)
			const lr = 0.05
			wantP, wantB := make([]float64, n), make([]float64, n)
			for i := range n {
				gi := float64(g[i]) + float64(c.wd)*float64(p[i])
				bi := float64(c.mu)*float64(b[i]) + gi
				wantB[i] = bi
				if c.nesterov {
					bi = gi + float64(c.mu)*bi
				}
				wantP[i] = float64(p[i]) - lr*bi
			}
			pp, bp := newPadded(t, e, p), newPadded(t, e, b)
			gb := upload(t, e, g)
			if err := e.SGD(pp.win, gb, bp.win, lr, c.mu, c.wd, c.nesterov); err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("sgd n=%d %+v", n, c)
			compare(t, what+" params", pp.get(t, what), wantP, Tol)
			compare(t, what+" momentum", bp.get(t, what), wantB, Tol)
			e.Free(gb)
		}
		p, g, m := randn(r, n, 1), randn(r, n, 1), randn(r, n, 0.1)
		v := randn(r, n, 0.1)
		for i := range v {
			v[i] = v[i] * v[i]
		}
		const b1, b2, eps, decay, step, sqrtBC2 = 0.9, 0.999, 1e-8, 0.9999, 0.01, 0.05
		wantP, wantM, wantV := make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range n {
			wantM[i] = b1*float64(m[i]) + (1-b1)*float64(g[i])
			wantV[i] = b2*float64(v[i]) + (1-b2)*float64(g[i])*float64(g[i])
			wantP[i] = float64(p[i])*decay - step*wantM[i]/(math.Sqrt(wantV[i])/sqrtBC2+eps)
		}
		pp, mp, vp := newPadded(t, e, p), newPadded(t, e, m), newPadded(t, e, v)
		gb := upload(t, e, g)
		if err := e.AdamW(pp.win, gb, mp.win, vp.win, b1, b2, eps, decay, step, sqrtBC2); err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("adamw n=%d", n)
		compare(t, what+" params", pp.get(t, what), wantP, Tol)
		compare(t, what+" m", mp.get(t, what), wantM, Tol)
		compare(t, what+" v", vp.get(t, what), wantV, Tol)
		e.Free(gb)
	}
}

// Shapes checks that mismatched buffers are refused with ErrShape and
// nothing is written.
func Shapes(t *testing.T, e engine.Engine) {
	a := upload(t, e, make([]float32, 6))
	b := upload(t, e, make([]float32, 6))
	c := newPadded(t, e, nans(4))
	for what, err := range map[string]error{
		"gemm":           e.Gemm(false, false, 2, 2, 3, 1, a, b.Slice(0, 5), 0, c.win),
		"gemm zero":      e.Gemm(false, false, 0, 2, 3, 1, a, b, 0, c.win),
		"add-row-vector": e.AddRowVector(c.win, a, 2, 2),
		"sum-rows":       e.SumRows(c.win, a, 3, 2),
		"relu-grad":      e.ReLUGrad(c.win, a),
		"copy":           e.Copy(c.win, a),
		"add":            e.Add(c.win, a, b),
		"add inputs":     e.Add(a, b.Slice(0, 4), b),
		"tanh":           e.Tanh(c.win, a),
		"tanh-grad":      e.TanhGrad(c.win, a, b),
		"softmax":        e.SoftmaxCrossEntropy(c.win, a, b, a, 2, 2),
		"sgd":            e.SGD(c.win, a, b, 0.1, 0, 0, false),
		"adamw":          e.AdamW(c.win, a, b, b, 0.9, 0.999, 1e-8, 1, 0.1, 1),
		"im2col":         e.Im2Col(c.win, a, engine.ConvGeom{N: 1, C: 1, H: 2, W: 3, O: 1, K: 1, P: 0}),
		"col2im":         e.Col2Im(a, c.win, engine.ConvGeom{N: 1, C: 1, H: 2, W: 2, O: 1, K: 3, P: 0}),
		"from-cnp":       e.FromCNP(c.win, a, b, 1, 2, 2),
		"to-cnp":         e.ToCNP(c.win, a, 1, 2, 2),
		"relu-pool":      e.ReLUPool(c.win, a, 1, 2, 3),
		"relu-pool-grad": e.ReLUPoolGrad(c.win, a, b, 1, 2, 2),
		"upload":         e.Upload(a, make([]float32, 5)),
		"download":       e.Download(make([]float32, 5), a),
	} {
		if !errors.Is(err, engine.ErrShape) {
			t.Errorf("%s: got %v, want ErrShape", what, err)
		}
	}
	got := c.get(t, "shape errors")
	for _, v := range got {
		if !math.IsNaN(float64(v)) {
			t.Fatal("a refused operation wrote its output")
		}
	}
	if _, err := e.Alloc(0); !errors.Is(err, engine.ErrShape) {
		t.Errorf("alloc 0: %v", err)
	}
}

// Conv checks Im2Col against a direct reference, Col2Im as its exact
// adjoint (⟨im2col x, c⟩ = ⟨x, col2im c⟩), and the NCHW ↔ channel-major
// moves with the bias.
func Conv(t *testing.T, e engine.Engine) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, g := range []engine.ConvGeom{
		{N: 1, C: 1, H: 1, W: 1, O: 1, K: 1, P: 0},
		{N: 2, C: 1, H: 5, W: 3, O: 2, K: 3, P: 1},
		{N: 3, C: 2, H: 7, W: 9, O: 4, K: 5, P: 2},
		{N: 2, C: 3, H: 6, W: 6, O: 1, K: 3, P: 0},
		{N: 5, C: 8, H: 14, W: 14, O: 16, K: 5, P: 2},
	} {
		oh, ow, nhw := g.OutH(), g.OutW(), g.NHW()
		x := randn(r, g.N*g.C*g.H*g.W, 1)
		want := make([]float64, g.CKK()*nhw)
		for c := range g.C {
			for ki := range g.K {
				for kj := range g.K {
					for n := range g.N {
						for oy := range oh {
							for ox := range ow {
								iy, ix := oy+ki-g.P, ox+kj-g.P
								if iy >= 0 && iy < g.H && ix >= 0 && ix < g.W {
									want[((c*g.K+ki)*g.K+kj)*nhw+(n*oh+oy)*ow+ox] = float64(x[((n*g.C+c)*g.H+iy)*g.W+ix])
								}
							}
						}
					}
				}
			}
		}
		xb := upload(t, e, x)
		cols := newPadded(t, e, nans(g.CKK()*nhw))
		if err := e.Im2Col(cols.win, xb, g); err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("im2col %+v", g)
		got := cols.get(t, what)
		compare(t, what, got, want, 0)
		// Col2Im is the adjoint.
		c := randn(r, g.CKK()*nhw, 1)
		cb := upload(t, e, c)
		dx := newPadded(t, e, nans(len(x)))
		if err := e.Col2Im(dx.win, cb, g); err != nil {
			t.Fatal(err)
		}
		back := dx.get(t, "col2im")
		var lhs, rhs float64
		for i, v := range got {
			lhs += float64(v) * float64(c[i])
		}
		for i, v := range back {
			rhs += float64(v) * float64(x[i])
		}
		if math.Abs(lhs-rhs) > Tol*(1+math.Abs(lhs))*math.Sqrt(float64(len(c))) {
			t.Fatalf("col2im %+v is not im2col's adjoint: %v vs %v", g, lhs, rhs)
		}
		// FromCNP and ToCNP.
		hw := oh * ow
		tv, bias := randn(r, g.O*nhw, 1), randn(r, g.O, 1)
		wantY := make([]float64, len(tv))
		for n := range g.N {
			for o := range g.O {
				for p := range hw {
					wantY[(n*g.O+o)*hw+p] = float64(tv[(o*g.N+n)*hw+p]) + float64(bias[o])
				}
			}
		}
		tb, bb := upload(t, e, tv), upload(t, e, bias)
		y := newPadded(t, e, nans(len(tv)))
		if err := e.FromCNP(y.win, tb, bb, g.N, g.O, hw); err != nil {
			t.Fatal(err)
		}
		gotY := y.get(t, "from-cnp")
		compare(t, "from-cnp", gotY, wantY, Tol)
		yb := upload(t, e, gotY)
		tt := newPadded(t, e, nans(len(tv)))
		if err := e.ToCNP(tt.win, yb, g.N, g.O, hw); err != nil {
			t.Fatal(err)
		}
		wantT := make([]float64, len(tv))
		for i := range tv {
			wantT[i] = float64(tv[i]) + float64(bias[(i/hw)/g.N])
		}
		compare(t, "to-cnp", tt.get(t, "to-cnp"), wantT, Tol)
		for _, b := range []engine.Buffer{xb, cb, tb, bb, yb} {
			e.Free(b)
		}
	}
}

// Pool checks the fused ReLU and 2×2 max-pooling and its gradient,
// including ties (the first maximum wins) and all-negative windows.
func Pool(t *testing.T, e engine.Engine) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, s := range [][3]int{{1, 2, 2}, {3, 4, 6}, {16, 28, 28}, {5, 2, 8}} {
		planes, h, w := s[0], s[1], s[2]
		x := randn(r, planes*h*w, 1)
		for i := range x { // ties: a quarter of the values repeat a neighbour's
			if i > 0 && r.IntN(4) == 0 {
				x[i] = x[i-1]
			}
		}
		oh, ow := h/2, w/2
		dy := randn(r, planes*oh*ow, 1)
		wantY := make([]float64, planes*oh*ow)
		wantDX := make([]float64, len(x))
		for p := range planes {
			for oy := range oh {
				for ox := range ow {
					base := p*h*w + 2*oy*w + 2*ox
					at, v := base, x[base]
					for _, o := range []int{base + 1, base + w, base + w + 1} {
						if x[o] > v {
							at, v = o, x[o]
						}
					}
					wantY[(p*oh+oy)*ow+ox] = math.Max(float64(v), 0)
					if v > 0 {
						wantDX[at] = float64(dy[(p*oh+oy)*ow+ox])
					}
				}
			}
		}
		xb, dyb := upload(t, e, x), upload(t, e, dy)
		y, dx := newPadded(t, e, nans(len(wantY))), newPadded(t, e, nans(len(x)))
		if err := e.ReLUPool(y.win, xb, planes, h, w); err != nil {
			t.Fatal(err)
		}
		if err := e.ReLUPoolGrad(dx.win, dyb, xb, planes, h, w); err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("relu-pool %dx%dx%d", planes, h, w)
		compare(t, what, y.get(t, what), wantY, 0)
		compare(t, what+" grad", dx.get(t, what), wantDX, 0)
		e.Free(xb)
		e.Free(dyb)
	}
}

// TrainingSteps lowers softmax regression, MLPs with one to three hidden
// layers and the CNN onto e (models.Compile) and trains each for four
// steps with SGD (momentum, Nesterov, weight decay) or AdamW beside the
// Gorgonia CPU path (models.Net's Step, package trainer's optimizers):
// losses, gradients and the parameter updates must agree within tol
// (relative L2).
func TrainingSteps(t *testing.T, e engine.Engine, tol float64) {
	set := data.Synthetic(5, 256, 1)
	for _, c := range []struct {
		kind     string
		hidden   []int
		opt      string
		nesterov bool
	}{
		{models.LogReg, nil, "sgd", false},
		{models.LogReg, nil, "adamw", false},
		{models.MLP, []int{64}, "sgd", false},
		{models.MLP, []int{64, 32}, "adamw", false},
		{models.MLP, []int{48, 32, 16}, "sgd", true},
		{models.CNN, nil, "sgd", false},
		{models.CNN, nil, "adamw", false},
	} {
		spec, err := models.NewSpec(c.kind, c.hidden)
		if err != nil {
			t.Fatal(err)
		}
		const batch = 33
		cfg := trainer.DefaultConfig(spec)
		cfg.Optimizer, cfg.Batch, cfg.WeightDecay, cfg.Nesterov = c.opt, batch, 0.01, c.nesterov
		cfg.Schedule.Base = 0.05
		if c.opt == "adamw" {
			cfg.Schedule.Base = 1e-3
		}
		ref, err := models.NewTrainNet(spec, batch, models.Init(spec, cfg.Seed))
		if err != nil {
			t.Fatal(err)
		}
		var opt trainer.Optimizer = trainer.NewSGD(spec.NumParams(), cfg.Momentum, cfg.WeightDecay, cfg.Nesterov)
		if c.opt == "adamw" {
			opt = trainer.NewAdamW(spec.NumParams(), cfg.Beta1, cfg.Beta2, cfg.Eps, cfg.WeightDecay)
		}
		dev, err := compileModel(e, spec, batch, OptimOf(cfg), ref.Params())
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, batch*spec.Rows*spec.Cols)
		y := make([]int, batch)
		got := make([]float32, spec.NumParams())
		all := make([]int, set.Train.Len())
		for i := range all {
			all[i] = i
		}
		sampler, err := data.NewSampler(all, batch, 7)
		if err != nil {
			t.Fatal(err)
		}
		for step := range int64(4) {
			set.Train.Fill(sampler.BatchAt(step, nil), x, y)
			copy(ref.Input(), x)
			before := append([]float32(nil), ref.Params()...)
			if err := dev.SetParams(before); err != nil { // both start from the same parameters
				t.Fatal(err)
			}
			wantLoss, err := ref.Step(y)
			if err != nil {
				t.Fatal(err)
			}
			loss, err := dev.Gradients(x, y)
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("%s %s step %d", spec, c.opt, step)
			if math.Abs(float64(loss-wantLoss)) > tol*(1+math.Abs(float64(wantLoss))) {
				t.Fatalf("%s: loss %v, want %v", what, loss, wantLoss)
			}
			if err := dev.Grads(got); err != nil {
				t.Fatal(err)
			}
			if rel := RelL2Update(got, ref.Grads(), make([]float32, len(got))); rel > tol {
				t.Fatalf("%s: gradients differ by %.2e relative L2", what, rel)
			}
			lr := cfg.Schedule.At(step)
			opt.Step(ref.Params(), ref.Grads(), lr)
			if err := dev.Update(lr); err != nil {
				t.Fatal(err)
			}
			if err := dev.Params(got); err != nil {
				t.Fatal(err)
			}
			if rel := RelL2Update(got, ref.Params(), before); rel > tol {
				t.Fatalf("%s: update differs by %.2e relative L2", what, rel)
			}
		}
		dev.Close()
		ref.Close()
	}
}

// compileModel lowers spec's training graph onto e, from theta.
func compileModel(e engine.Engine, spec models.Spec, batch int, opt engine.Optim, theta []float32) (*models.Program, error) {
	net, err := models.NewTrainNet(spec, batch, append([]float32(nil), theta...))
	if err != nil {
		return nil, err
	}
	defer net.Close()
	g, err := net.TrainGraph()
	if err != nil {
		return nil, err
	}
	return models.Compile(e, g, opt)
}

// OptimOf maps a trainer configuration onto an engine optimizer's settings.
func OptimOf(c trainer.Config) engine.Optim {
	return engine.Optim{Kind: c.Optimizer, Momentum: c.Momentum, Nesterov: c.Nesterov, WeightDecay: c.WeightDecay,
		Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps}
}

// RelL2Update is ‖(got − base) − (want − base)‖ / ‖want − base‖: how far
// one step's update on an engine is from the reference update.
func RelL2Update(got, want, base []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		u := float64(want[i]) - float64(base[i])
		num += d * d
		den += u * u
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// Concurrent checks that trainers on their own buffers may share the
// engine: a node trains a round while it replays a challenged segment and
// answers for an earlier one, all on its one device. Several trainers
// step at once and each must end where it ends alone, bit for bit (the
// engine runs each one's operations in their order, and no state but the
// buffers is shared).
func Concurrent(t *testing.T, e engine.Engine) {
	set := data.Synthetic(5, 256, 1)
	spec, err := models.NewSpec(models.MLP, []int{32})
	if err != nil {
		t.Fatal(err)
	}
	const workers, steps = 4, 6
	run := func(w int) ([]float32, error) {
		cfg := trainer.DefaultConfig(spec)
		cfg.Batch, cfg.Seed = 16, uint64(100+w)
		if w%2 == 1 {
			cfg.Optimizer, cfg.Schedule.Base = "adamw", 1e-3
		}
		tr, err := trainer.New(cfg, set.Train, trainer.WithEngine(e))
		if err != nil {
			return nil, err
		}
		defer tr.Close()
		for range steps {
			if _, err := tr.Step(); err != nil {
				return nil, err
			}
		}
		return tr.Params(), nil
	}
	alone := make([][]float32, workers)
	for w := range alone {
		if alone[w], err = run(w); err != nil {
			t.Fatal(err)
		}
	}
	together := make([][]float32, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			together[w], errs[w] = run(w)
		}()
	}
	wg.Wait()
	for w := range workers {
		if errs[w] != nil {
			t.Fatalf("trainer %d beside the others: %v", w, errs[w])
		}
		if i := slices.IndexFunc(alone[w], func(v float32) bool { return v != v }); i >= 0 {
			t.Fatalf("trainer %d alone: parameter %d is NaN", w, i)
		}
		for i := range alone[w] {
			if math.Float32bits(alone[w][i]) != math.Float32bits(together[w][i]) {
				t.Fatalf("trainer %d beside the others: parameter %d is %g, alone %g", w, i, together[w][i], alone[w][i])
			}
		}
	}
}
