package models

import (
	"math"
	"testing"

	"github.com/vtrain/vtrain/models/data"
)

// refMLP computes the mean cross-entropy loss and its gradient for a dense
// network (logreg or MLP) in float64 with hand-written backpropagation, in
// vtrain's flat layout. It is the reference the Gorgonia graph is held to.
func refMLP(spec Spec, theta []float32, x []float32, y []int) (float64, []float64) {
	layout := spec.Layout()
	B := len(y)
	in := spec.Rows * spec.Cols
	acts := [][]float64{make([]float64, B*in)}
	for i := range acts[0] {
		acts[0][i] = float64(x[i])
	}
	dl := spec.denseLayers()
	for li, d := range dl {
		w, b := layout[2*li], layout[2*li+1]
		h := acts[len(acts)-1]
		out := make([]float64, B*d.out)
		for s := 0; s < B; s++ {
			for o := 0; o < d.out; o++ {
				v := float64(theta[b.Offset+o])
				for k := 0; k < d.in; k++ {
					v += h[s*d.in+k] * float64(theta[w.Offset+k*d.out+o])
				}
				if li < len(dl)-1 && v < 0 {
					v = 0
				}
				out[s*d.out+o] = v
			}
		}
		acts = append(acts, out)
	}
	C := spec.Classes
	logits := acts[len(acts)-1]
	grad := make([]float64, len(theta))
	delta := make([]float64, B*C)
	loss := 0.0
	for s := 0; s < B; s++ {
		row := logits[s*C : (s+1)*C]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, v)
		}
		z := 0.0
		for _, v := range row {
			z += math.Exp(v - m)
		}
		loss -= row[y[s]] - m - math.Log(z)
		for c := range row {
			p := math.Exp(row[c]-m) / z
			if c == y[s] {
				p--
			}
			delta[s*C+c] = p / float64(B)
		}
	}
	for li := len(dl) - 1; li >= 0; li-- {
		d := dl[li]
		w, b := layout[2*li], layout[2*li+1]
		h := acts[li]
		prev := make([]float64, B*d.in)
		for s := 0; s < B; s++ {
			for o := 0; o < d.out; o++ {
				g := delta[s*d.out+o]
				grad[b.Offset+o] += g
				for k := 0; k < d.in; k++ {
					grad[w.Offset+k*d.out+o] += h[s*d.in+k] * g
					prev[s*d.in+k] += float64(theta[w.Offset+k*d.out+o]) * g
				}
			}
		}
		if li > 0 {
			for i := range prev {
				if h[i] <= 0 {
					prev[i] = 0
				}
			}
		}
		delta = prev
	}
	return loss / float64(B), grad
}

func relL2(got []float32, want []float64) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	return math.Sqrt(num / den)
}

// testNet builds a training net of kind (hidden widths hidden) at batch
// size batch from Init(seed), with a synthetic batch filled in: the net,
// its parameters (the net trains them in place) and the batch's labels.
func testNet(t *testing.T, kind string, hidden []int, batch int, seed uint64) (*Net, Spec, []float32, []int) {
	t.Helper()
	spec, err := NewSpec(kind, hidden)
	if err != nil {
		t.Fatal(err)
	}
	theta := Init(spec, seed)
	net, err := NewTrainNet(spec, batch, theta)
	if err != nil {
		t.Fatal(err)
	}
	idx, ds := testBatch(t, spec, batch)
	y := make([]int, batch)
	ds.Fill(idx, net.Input(), y)
	return net, spec, theta, y
}

func testBatch(t *testing.T, spec Spec, n int) ([]int, *data.Dataset) {
	t.Helper()
	set := data.Synthetic(3, 256, 16)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = (i * 7) % set.Train.Len()
	}
	return idx, set.Train
}

func TestDenseGradientsMatchReference(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		hidden []int
		batch  int
	}{
		{LogReg, nil, 1},
		{LogReg, nil, 17},
		{MLP, []int{32}, 8},
		{MLP, []int{64, 16}, 13},
	} {
		net, spec, theta, y := testNet(t, tc.kind, tc.hidden, tc.batch, 5)
		// Two steps with a parameter change between them catch gradients
		// that accumulate across steps or read stale parameters.
		for step := 0; step < 2; step++ {
			loss, err := net.Step(y)
			if err != nil {
				t.Fatal(err)
			}
			wantLoss, wantGrad := refMLP(spec, theta, net.Input(), y)
			if math.Abs(float64(loss)-wantLoss) > 1e-5*math.Max(1, wantLoss) {
				t.Errorf("%s step %d: loss %v, reference %v", spec, step, loss, wantLoss)
			}
			if e := relL2(net.Grads(), wantGrad); e > 1e-5 {
				t.Errorf("%s step %d: gradient relative L2 error %.3g > 1e-5", spec, step, e)
			}
			for i := range theta {
				theta[i] -= 0.01 * net.Grads()[i]
			}
		}
		net.Close()
	}
}

// TestCNNGradientFiniteDifference checks the CNN's gradient (whose
// convolution and pooling have no hand-written reference here) with a
// directional finite difference along the gradient itself, which averages
// over every coordinate and so is robust to float32 rounding:
// (L(θ+εg) − L(θ−εg)) / 2ε ≈ |g|². benchmarks/gradcheck.py compares every
// coordinate against PyTorch.
func TestCNNGradientFiniteDifference(t *testing.T) {
	spec, _ := NewSpec(CNN, nil)
	checkDirectional(t, spec, 9, 4, 2e-3, 0.08)
}

// checkDirectional trains one step of spec (seed, batch B) and checks, per
// parameter tensor, that the loss's central difference along the claimed
// gradient g, with a step of eps/|g|, is |g|² within rel; and that the
// same check rejects a doubled gradient, so that it can fail.
func checkDirectional(t *testing.T, spec Spec, seed uint64, B int, eps, rel float64) {
	t.Helper()
	theta := Init(spec, seed)
	net, err := NewTrainNet(spec, B, theta)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	idx, ds := testBatch(t, spec, B)
	y := make([]int, B)
	ds.Fill(idx, net.Input(), y)
	if _, err := net.Step(y); err != nil {
		t.Fatal(err)
	}
	g := append([]float32(nil), net.Grads()...)
	orig := append([]float32(nil), theta...)
	// check returns the directional derivative of the loss along the
	// claimed gradient of one tensor, and that claimed gradient's |.|².
	check := func(p Param, claimed []float32) (fd, want float64) {
		for _, v := range claimed {
			want += float64(v) * float64(v)
		}
		step := eps / math.Sqrt(want)
		lossAt := func(e float64) float64 {
			copy(theta, orig)
			for i, v := range claimed {
				theta[p.Offset+i] += float32(e) * v
			}
			l, err := net.Step(y)
			if err != nil {
				t.Fatal(err)
			}
			return float64(l)
		}
		fd = (lossAt(step) - lossAt(-step)) / (2 * step)
		copy(theta, orig)
		return fd, want
	}
	for _, p := range spec.Layout() {
		claimed := g[p.Offset : p.Offset+p.Size]
		if fd, want := check(p, claimed); math.Abs(fd-want) > rel*want {
			t.Errorf("%s: directional derivative %.6g, |g|² %.6g", p.Name, fd, want)
		}
		// The same check must reject a wrong gradient (doubled).
		wrong := make([]float32, len(claimed))
		for i, v := range claimed {
			wrong[i] = 2 * v
		}
		if fd, want := check(p, wrong); math.Abs(fd-want) <= rel*want {
			t.Errorf("%s: check cannot tell a doubled gradient (%.6g vs %.6g)", p.Name, fd, want)
		}
	}
}

func TestInitDeterministic(t *testing.T) {
	spec, _ := NewSpec(MLP, []int{16})
	a, b := Init(spec, 42), Init(spec, 42)
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("init differs at %d", i)
		}
	}
	c := Init(spec, 43)
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same > len(a)/100 {
		t.Fatalf("seeds 42 and 43 share %d of %d values", same, len(a))
	}
	for _, p := range spec.Layout() {
		bound := float32(1 / math.Sqrt(float64(p.FanIn)))
		for _, v := range a[p.Offset : p.Offset+p.Size] {
			if v < -bound || v >= bound {
				t.Fatalf("%s: %v outside ±%v", p.Name, v, bound)
			}
		}
	}
}

func TestSpecErrors(t *testing.T) {
	for _, bad := range []Spec{
		{Kind: "resnet"},
		{Kind: MLP, Hidden: []int{0}, Rows: 28, Cols: 28, Classes: 10},
		{Kind: LogReg, Hidden: []int{3}, Rows: 28, Cols: 28, Classes: 10},
		{Kind: CNN, Channels: []int{4}, Rows: 28, Cols: 28, Classes: 10},
		{Kind: LogReg, Rows: 28, Cols: 28, Classes: 1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if _, err := NewTrainNet(Spec{Kind: LogReg, Rows: 28, Cols: 28, Classes: 10}, 4, make([]float32, 3)); err == nil {
		t.Error("short parameter vector accepted")
	}
	if _, err := ParseHidden("256,x"); err == nil {
		t.Error("bad hidden list accepted")
	}
}

func TestLayoutCNN(t *testing.T) {
	spec, _ := NewSpec(CNN, nil)
	want := []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias"}
	ps := spec.Layout()
	if len(ps) != len(want) {
		t.Fatalf("%d params", len(ps))
	}
	off := 0
	for i, p := range ps {
		if p.Name != want[i] || p.Offset != off {
			t.Fatalf("param %d = %s at %d", i, p.Name, p.Offset)
		}
		off += p.Size
	}
	if got := ps[4].TorchShape(); got[0] != 10 || got[1] != 16*7*7 {
		t.Fatalf("fc1 torch shape %v", got)
	}
}
