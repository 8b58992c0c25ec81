package models

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/vtrain/vtrain/engine"
)

// smallGraph builds a training graph from the exported builders: x [4×3]
// → Dense(3→5) → Tanh → h; h + Dense(h) with the layer's weights shared by
// a second application (a parameter gradient that is a sum), Add(h, h),
// ReLU → Dense(5→3) → softmax cross-entropy. h feeds several ops, so
// G.Grad sums its gradients with its own +.
func smallGraph(t *testing.T, seed uint64) (TrainGraph, [][]float32, *G.ExprGraph) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	g := G.NewGraph()
	var vals [][]float32
	var params G.Nodes
	mk := func(name string, scale float64, shape ...int) *G.Node {
		n := tensor.Shape(shape).TotalSize()
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		vals = append(vals, v)
		node := G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name),
			G.WithValue(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))))
		params = append(params, node)
		return node
	}
	x := mk("x", 1, 4, 3)
	params = params[:0]
	vals = vals[:0]
	y := G.NewVector(g, tensor.Float32, G.WithShape(4), G.WithName("y"),
		G.WithValue(tensor.New(tensor.WithShape(4), tensor.WithBacking([]float32{0, 2, 1, 2}))))
	w1, b1 := mk("w1", 0.6, 3, 5), mk("b1", 0.1, 5)
	w2, b2 := mk("w2", 0.4, 5, 5), mk("b2", 0.1, 5)
	w3, b3 := mk("w3", 0.6, 5, 3), mk("b3", 0.1, 3)
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	h := must(Tanh(must(Dense(x, w1, b1))))
	r1 := must(Add(h, must(Dense(h, w2, b2))))
	r2 := must(Dense(must(Tanh(r1)), w2, b2)) // w2, b2 shared
	r3 := must(Add(must(Add(r2, r2)), h))
	logits := must(Dense(must(ReLU(r3)), w3, b3))
	loss := must(SoftmaxCrossEntropy(logits, y))
	grads, err := G.Grad(loss, params...)
	if err != nil {
		t.Fatal(err)
	}
	return TrainGraph{X: x, Labels: y, Logits: logits, Loss: loss, Params: params, Grads: grads}, vals, g
}

// TestNewOpsGradientFiniteDifference holds the Gorgonia gradients of a
// graph with Tanh, Add (residual, self and shared-weight sums) and the
// softmax cross-entropy to central differences of the loss, and checks
// that the same test rejects a doubled gradient.
func TestNewOpsGradientFiniteDifference(t *testing.T) {
	tg, vals, g := smallGraph(t, 3)
	vm := G.NewTapeMachine(g.SubgraphRoots(append(G.Nodes{tg.Loss}, tg.Grads...)...))
	defer vm.Close()
	run := func() float64 {
		t.Helper()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		defer vm.Reset()
		return float64(tg.Loss.Value().Data().(float32))
	}
	run()
	var grads [][]float32
	for _, gn := range tg.Grads {
		v, err := f32s(gn.Value())
		if err != nil {
			t.Fatal(err)
		}
		grads = append(grads, append([]float32(nil), v[:gn.Shape().TotalSize()]...))
	}
	for pi, v := range vals {
		orig := append([]float32(nil), v...)
		check := func(claimed []float32) (fd, want float64) {
			for _, c := range claimed {
				want += float64(c) * float64(c)
			}
			eps := 2e-3 / math.Sqrt(want)
			at := func(e float64) float64 {
				for i, c := range claimed {
					v[i] = orig[i] + float32(e)*c
				}
				return run()
			}
			fd = (at(eps) - at(-eps)) / (2 * eps)
			copy(v, orig)
			return fd, want
		}
		name := tg.Params[pi].Name()
		if fd, want := check(grads[pi]); math.Abs(fd-want) > 0.02*want {
			t.Errorf("%s: directional derivative %.6g, |g|² %.6g", name, fd, want)
		}
		wrong := make([]float32, len(grads[pi]))
		for i, c := range grads[pi] {
			wrong[i] = 2 * c
		}
		if fd, want := check(wrong); math.Abs(fd-want) <= 0.02*want {
			t.Errorf("%s: the check cannot tell a doubled gradient (%.6g vs %.6g)", name, fd, want)
		}
	}
	// The graph holds Gorgonia's own + (G.Grad's sum of h's gradients).
	plus := false
	for _, n := range g.AllNodes() {
		plus = plus || n.Op() != nil && gorgoniaOp(n.Op()) == "add"
	}
	if !plus {
		t.Error("no gradient sum in the graph: the test does not exercise it")
	}
	if err := CheckLowerable(tg); err != nil {
		t.Fatal(err)
	}
}

// TestEveryModelLowers: the built-in models' graphs lower onto the CPU
// engine, and an evaluation net has no training graph.
func TestEveryModelLowers(t *testing.T) {
	for _, kind := range Kinds {
		spec, err := NewSpec(kind, []int{8, 4})
		if kind != MLP {
			spec, err = NewSpec(kind, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		net, err := NewTrainNet(spec, 3, Init(spec, 1))
		if err != nil {
			t.Fatal(err)
		}
		tg, err := net.TrainGraph()
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckLowerable(tg); err != nil {
			t.Errorf("%s: %v", spec, err)
		}
		p, err := Compile(engine.CPU(), tg, engine.Optim{Kind: "sgd"})
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if p.NumParams() != spec.NumParams() || p.Batch() != 3 || p.Kernels() == 0 {
			t.Errorf("%s: a program of %d parameters, batch %d, %d kernels", spec, p.NumParams(), p.Batch(), p.Kernels())
		}
		got := make([]float32, spec.NumParams())
		if err := p.Params(got); err != nil {
			t.Fatal(err)
		}
		for i, v := range net.Params() {
			if got[i] != v {
				t.Fatalf("%s: parameter %d on the engine is %v, want %v", spec, i, got[i], v)
			}
		}
		if _, err := p.Gradients(make([]float32, 3*spec.Rows*spec.Cols), []int{0, 1, spec.Classes}); err == nil {
			t.Errorf("%s: a label out of range was accepted", spec)
		}
		if _, err := p.Gradients(make([]float32, 5), []int{0, 1, 2}); !errors.Is(err, engine.ErrShape) {
			t.Errorf("%s: a short batch: %v", spec, err)
		}
		p.Close()
		net.Close()
		eval, err := NewEvalNet(spec, 3, Init(spec, 1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eval.TrainGraph(); err == nil {
			t.Errorf("%s: an evaluation net has a training graph", spec)
		}
		eval.Close()
	}
}

// TestUnsupportedOpsFailAtBuild: a graph with an op that has no lowering
// fails CheckLowerable and Compile, with an error naming the op and its
// node; so does a loss that feeds another op.
func TestUnsupportedOpsFailAtBuild(t *testing.T) {
	for _, c := range []struct {
		name string
		act  func(*G.Node) (*G.Node, error)
		want string // in the error
	}{
		{"sigmoid", G.Sigmoid, "sigmoid"},
		{"exp", G.Exp, "exp"},
		{"square", G.Square, "square"},
	} {
		x, w, b, y := tinyInputs()
		h, err := Dense(x, w, b)
		if err != nil {
			t.Fatal(err)
		}
		a, err := c.act(h)
		if err != nil {
			t.Fatal(err)
		}
		G.WithName("hidden." + c.name)(a)
		loss, err := SoftmaxCrossEntropy(a, y)
		if err != nil {
			t.Fatal(err)
		}
		grads, err := G.Grad(loss, w, b)
		if err != nil {
			t.Fatal(err)
		}
		tg := TrainGraph{X: x, Labels: y, Logits: a, Loss: loss, Params: G.Nodes{w, b}, Grads: grads}
		err = CheckLowerable(tg)
		if !errors.Is(err, ErrUnsupportedOp) || !strings.Contains(strings.ToLower(err.Error()), c.want) {
			t.Errorf("%s: CheckLowerable: %v", c.name, err)
		}
		if _, err := Compile(engine.CPU(), tg, engine.Optim{Kind: "sgd"}); !errors.Is(err, ErrUnsupportedOp) {
			t.Errorf("%s: Compile: %v", c.name, err)
		}
		t.Logf("%s: %v", c.name, err)
	}
	// A loss scaled after the fact: its gradient is not the loss's own.
	x, w, b, y := tinyInputs()
	logits, err := Dense(x, w, b)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := SoftmaxCrossEntropy(logits, y)
	if err != nil {
		t.Fatal(err)
	}
	scaled, err := G.Mul(loss, G.NewConstant(float32(2)))
	if err != nil {
		t.Fatal(err)
	}
	grads, err := G.Grad(scaled, w, b)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckLowerable(TrainGraph{X: x, Labels: y, Logits: logits, Loss: loss, Params: G.Nodes{w, b}, Grads: grads})
	if !errors.Is(err, ErrUnsupportedOp) {
		t.Errorf("a scaled loss: %v", err)
	}
	t.Logf("a scaled loss: %v", err)
}

// TestBuildersRejectShapes: the exported builders refuse mismatched
// shapes with an error.
func TestBuildersRejectShapes(t *testing.T) {
	g := G.NewGraph()
	m := func(name string, shape ...int) *G.Node {
		return G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithInit(G.Zeroes()))
	}
	x, w, b := m("x", 2, 3), m("w", 4, 5), m("b", 5)
	if _, err := Dense(x, w, b); err == nil {
		t.Error("Dense accepted x [2×3] · w [4×5]")
	}
	if _, err := Dense(x, m("w2", 3, 5), m("b2", 5, 1)); err == nil {
		t.Error("Dense accepted a matrix bias")
	}
	if _, err := Add(x, m("z", 3, 2)); err == nil {
		t.Error("Add accepted [2×3] + [3×2]")
	}
	img := m("img", 1, 1, 5, 5)
	if _, err := Conv(img, m("k", 2, 1, 3, 3), m("kb", 2), 1); err == nil {
		t.Error("Conv accepted an odd output to pool")
	}
	if _, err := Conv(img, m("k2", 2, 1, 3, 3), m("kb2", 3), 1); err == nil {
		t.Error("Conv accepted a bias of the wrong size")
	}
	if _, err := SoftmaxCrossEntropy(x, m("y", 3)); err == nil {
		t.Error("SoftmaxCrossEntropy accepted 3 labels for 2 rows")
	}
	other := G.NewGraph()
	if _, err := Add(x, G.NewMatrix(other, tensor.Float32, G.WithShape(2, 3), G.WithName("o"), G.WithInit(G.Zeroes()))); err == nil {
		t.Error("Add accepted nodes of two graphs")
	}
	if _, err := ReLU(nil); err == nil {
		t.Error("ReLU accepted nil")
	}
}

// tinyInputs returns, on a new graph, a batch of 2 samples of 3 features
// (x), a 3→4 dense layer's weight and bias, and 2 labels (y).
func tinyInputs() (x, w, b, y *G.Node) {
	g := G.NewGraph()
	x = G.NewMatrix(g, tensor.Float32, G.WithShape(2, 3), G.WithName("x"), G.WithInit(G.Zeroes()))
	w = G.NewMatrix(g, tensor.Float32, G.WithShape(3, 4), G.WithName("w"), G.WithInit(G.GlorotU(1)))
	b = G.NewVector(g, tensor.Float32, G.WithShape(4), G.WithName("b"), G.WithInit(G.Zeroes()))
	y = G.NewVector(g, tensor.Float32, G.WithShape(2), G.WithName("y"), G.WithInit(G.Zeroes()))
	return x, w, b, y
}
