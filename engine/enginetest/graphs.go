package enginetest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/trainer"
)

// RandomGraphs is the number of random graphs LoweredGraphs checks.
const RandomGraphs = 240

// randomGraph is a small training graph built from models' exported ops,
// with what the reference (Gorgonia's VM) needs to run it.
type randomGraph struct {
	tg     models.TrainGraph
	vals   [][]float32 // each parameter node's backing array
	xval   []float32
	yval   []float32
	batch  int
	class  int
	desc   []string
	opt    engine.Optim
	lr     float64
	feats  int
	params int
}

// buildRandomGraph builds graph number i of the seeded family: an
// optional convolution front end (one or two fused conv+ReLU+pool blocks
// after a Reshape), then dense layers of random widths, each followed by
// ReLU, Tanh or nothing, residual Adds that reuse an earlier node (or the
// node itself), layers that share their weights (so a parameter's
// gradient is a sum), and a dense output layer under the softmax
// cross-entropy loss.
func buildRandomGraph(i int) (*randomGraph, error) {
	r := rand.New(rand.NewPCG(0x5eed, uint64(i)))
	rg := &randomGraph{batch: 1 + r.IntN(5), class: 2 + r.IntN(4)}
	g := G.NewGraph()
	N := rg.batch
	param := func(name string, scale float64, shape ...int) *G.Node {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for j := range v {
			v[j] = float32(r.NormFloat64() * scale)
		}
		t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
		node := G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(fmt.Sprintf("%s%d", name, len(rg.vals))), G.WithValue(t))
		rg.tg.Params = append(rg.tg.Params, node)
		rg.vals = append(rg.vals, v)
		rg.params += n
		return node
	}
	note := func(format string, a ...any) { rg.desc = append(rg.desc, fmt.Sprintf(format, a...)) }

	var h *G.Node
	var err error
	if r.IntN(3) == 0 { // convolution front end
		c, side := 1+r.IntN(2), []int{4, 6, 8}[r.IntN(3)]
		rg.feats = c * side * side
		xv := make([]float32, N*rg.feats)
		rg.tg.X = G.NewMatrix(g, tensor.Float32, G.WithShape(N, rg.feats), G.WithName("x"),
			G.WithValue(tensor.New(tensor.WithShape(N, rg.feats), tensor.WithBacking(xv))))
		rg.xval = xv
		if h, err = G.Reshape(rg.tg.X, tensor.Shape{N, c, side, side}); err != nil {
			return nil, err
		}
		note("x %dx%dx%dx%d", N, c, side, side)
		for range 1 + r.IntN(2) {
			if side < 2 || side%2 != 0 {
				break
			}
			k := []int{1, 3}[r.IntN(2)]
			pad := k / 2
			o := 1 + r.IntN(3)
			w, b := param("convw", 0.5, o, c, k, k), param("convb", 0.1, o)
			if h, err = models.Conv(h, w, b, pad); err != nil {
				return nil, err
			}
			note("conv %d→%d k%d", c, o, k)
			c, side = o, side/2
		}
		if h, err = G.Reshape(h, tensor.Shape{N, c * side * side}); err != nil {
			return nil, err
		}
		note("reshape %d", c*side*side)
	} else {
		rg.feats = 1 + r.IntN(8)
		xv := make([]float32, N*rg.feats)
		rg.tg.X = G.NewMatrix(g, tensor.Float32, G.WithShape(N, rg.feats), G.WithName("x"),
			G.WithValue(tensor.New(tensor.WithShape(N, rg.feats), tensor.WithBacking(xv))))
		rg.xval = xv
		h = rg.tg.X
		note("x %dx%d", N, rg.feats)
	}
	type layer struct{ w, b *G.Node }
	var earlier []*G.Node // hidden nodes, for residual Adds
	var square []layer    // layers whose weight is square, for sharing
	for range r.IntN(5) {
		in := h.Shape()[1]
		width := 1 + r.IntN(8)
		if r.IntN(2) == 0 {
			width = in
		}
		var l layer
		shared := false
		if width == in {
			for _, s := range square {
				if s.w.Shape()[0] == in && r.IntN(2) == 0 {
					l, shared = s, true
					break
				}
			}
		}
		if !shared {
			l = layer{param("w", 1/math.Sqrt(float64(in)), in, width), param("b", 0.1, width)}
			if width == in {
				square = append(square, l)
			}
		}
		if h, err = models.Dense(h, l.w, l.b); err != nil {
			return nil, err
		}
		note("dense %d→%d shared=%v", in, width, shared)
		switch r.IntN(3) {
		case 0:
			h, err = models.ReLU(h)
			note("relu")
		case 1:
			h, err = models.Tanh(h)
			note("tanh")
		}
		if err != nil {
			return nil, err
		}
		switch r.IntN(6) {
		case 0, 1, 2:
			for _, e := range earlier {
				if e.Shape().Eq(h.Shape()) && r.IntN(2) == 0 {
					if h, err = models.Add(h, e); err != nil {
						return nil, err
					}
					note("add earlier")
					break
				}
			}
		case 3:
			if h, err = models.Add(h, h); err != nil {
				return nil, err
			}
			note("add self")
		}
		earlier = append(earlier, h)
	}
	in := h.Shape()[1]
	w, b := param("w", 1/math.Sqrt(float64(in)), in, rg.class), param("b", 0.1, rg.class)
	if rg.tg.Logits, err = models.Dense(h, w, b); err != nil {
		return nil, err
	}
	note("dense %d→%d", in, rg.class)
	rg.yval = make([]float32, N)
	rg.tg.Labels = G.NewVector(g, tensor.Float32, G.WithShape(N), G.WithName("y"),
		G.WithValue(tensor.New(tensor.WithShape(N), tensor.WithBacking(rg.yval))))
	if rg.tg.Loss, err = models.SoftmaxCrossEntropy(rg.tg.Logits, rg.tg.Labels); err != nil {
		return nil, err
	}
	if rg.tg.Grads, err = G.Grad(rg.tg.Loss, rg.tg.Params...); err != nil {
		return nil, err
	}
	switch r.IntN(3) {
	case 0:
		rg.opt, rg.lr = engine.Optim{Kind: "sgd"}, 0.1
	case 1:
		rg.opt, rg.lr = engine.Optim{Kind: "sgd", Momentum: 0.9, Nesterov: r.IntN(2) == 0, WeightDecay: 0.01}, 0.05
	default:
		rg.opt, rg.lr = engine.Optim{Kind: "adamw", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}, 1e-2
	}
	note("%s", rg.opt.Kind)
	return rg, nil
}

// flat returns the parameters as one vector.
func (rg *randomGraph) flat() []float32 {
	out := make([]float32, 0, rg.params)
	for _, v := range rg.vals {
		out = append(out, v...)
	}
	return out
}

// setFlat writes theta back into the parameter nodes' arrays.
func (rg *randomGraph) setFlat(theta []float32) {
	for _, v := range rg.vals {
		theta = theta[copy(v, theta):]
	}
}

// LoweredGraphs compiles RandomGraphs seeded random graphs built from the
// supported ops onto e and trains each for three steps beside Gorgonia's
// VM with package trainer's optimizers: the losses, the gradients and the
// parameters must agree within tol (relative L2). A failure names the
// graph's number, which rebuilds it, and what it holds.
func LoweredGraphs(t *testing.T, e engine.Engine, tol float64) {
	for i := range RandomGraphs {
		rg, err := buildRandomGraph(i)
		if err != nil {
			t.Fatalf("random graph %d: building: %v", i, err)
		}
		if err := checkLowered(e, rg, i, tol); err != nil {
			t.Fatalf("random graph %d (rebuilt by buildRandomGraph(%d)): %s\n%v", i, i, strings.Join(rg.desc, ", "), err)
		}
	}
}

func checkLowered(e engine.Engine, rg *randomGraph, seed int, tol float64) error {
	tg := rg.tg
	prog, err := models.Compile(e, tg, rg.opt)
	if err != nil {
		return err
	}
	defer prog.Close()
	roots := append(G.Nodes{tg.Loss, tg.Logits}, tg.Grads...)
	vm := G.NewTapeMachine(tg.Loss.Graph().SubgraphRoots(roots...))
	defer vm.Close()
	var ref trainer.Optimizer = trainer.NewSGD(rg.params, rg.opt.Momentum, rg.opt.WeightDecay, rg.opt.Nesterov)
	if rg.opt.Kind == "adamw" {
		ref = trainer.NewAdamW(rg.params, rg.opt.Beta1, rg.opt.Beta2, rg.opt.Eps, rg.opt.WeightDecay)
	}
	r := rand.New(rand.NewPCG(0xda7a, uint64(seed)))
	y := make([]int, rg.batch)
	wantG, gotG := make([]float32, rg.params), make([]float32, rg.params)
	got := make([]float32, rg.params)
	for step := range 3 {
		for j := range rg.xval {
			rg.xval[j] = float32(r.NormFloat64())
		}
		for j := range y {
			y[j] = r.IntN(rg.class)
			rg.yval[j] = float32(y[j])
		}
		x := append([]float32(nil), rg.xval...)
		// Both start the step from the reference's parameters.
		before := rg.flat()
		if err := prog.SetParams(before); err != nil {
			return err
		}
		if err := vm.RunAll(); err != nil {
			return fmt.Errorf("step %d: Gorgonia: %w", step, err)
		}
		wantLoss := tg.Loss.Value().Data().(float32)
		off := 0
		for _, gn := range tg.Grads {
			d, ok := gn.Value().(*tensor.Dense)
			if !ok {
				return fmt.Errorf("step %d: gradient %v is a %T", step, gn, gn.Value())
			}
			if d.RequiresIterator() {
				d = tensor.Materialize(d).(*tensor.Dense)
			}
			off += copy(wantG[off:], d.Data().([]float32)[:gn.Shape().TotalSize()])
		}
		vm.Reset()
		loss, err := prog.Gradients(x, y)
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		if math.Abs(float64(loss-wantLoss)) > tol*(1+math.Abs(float64(wantLoss))) {
			return fmt.Errorf("step %d: loss %v, Gorgonia %v", step, loss, wantLoss)
		}
		if err := prog.Grads(gotG); err != nil {
			return err
		}
		if rel := relL2(gotG, wantG); rel > tol {
			return fmt.Errorf("step %d: gradients differ by %.2e relative L2\n got  %v\n want %v", step, rel, gotG, wantG)
		}
		// The optimizer, on the host and on the device.
		theta := append([]float32(nil), before...)
		ref.Step(theta, wantG, rg.lr)
		rg.setFlat(theta)
		if err := prog.Update(rg.lr); err != nil {
			return err
		}
		if err := prog.Params(got); err != nil {
			return err
		}
		if rel := relL2UpdateULP(got, theta, before); rel > tol {
			return fmt.Errorf("step %d: update differs by %.2e relative L2 beyond an ulp\n got  %v\n want %v\n from %v", step, rel, got, theta, before)
		}
	}
	return nil
}

// relL2UpdateULP is RelL2Update with each parameter's difference reduced
// by one ulp of the parameter: the float32 resolution of θ − u, below
// which no implementation of an update can be held (AdamW's steps of
// about lr on parameters near 1 resolve to 1e-5 of the step).
func relL2UpdateULP(got, want, base []float32) float64 {
	var num, den float64
	for i := range want {
		w := float64(want[i])
		ulp := math.Abs(float64(math.Nextafter32(want[i], float32(math.Inf(1)))) - w)
		d := math.Max(math.Abs(float64(got[i])-w)-ulp, 0)
		u := w - float64(base[i])
		num += d * d
		den += u * u
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// relL2 is ‖got − want‖ / ‖want‖ (or ‖got − want‖ when want is zero).
func relL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
