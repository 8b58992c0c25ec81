package models

import (
	"errors"
	"fmt"
	"math"
	"strings"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/vtrain/vtrain/engine"
)

// This file lowers a differentiated Gorgonia graph onto engine.Engine
// kernels: the device path of every model, with no model written twice.
//
// Compile walks the graph that the loss, the logits and the parameter
// gradients need, inputs first, and asks each node's op for the kernels
// that compute it (vtrain's ops carry their lowering, the lower methods
// beside their CPU code); Gorgonia's own Reshape (a view) and the
// elementwise + that G.Grad inserts where a node feeds several consumers
// are lowered here. Every buffer is planned once: the parameters, their
// gradients, every activation and scratch buffer and the optimizer state
// live on the device, so a step uploads the batch and its labels, runs the
// kernels in order and downloads the per-sample losses.

// ErrUnsupportedOp is wrapped by the error for a graph holding an op that
// has no lowering onto engine kernels.
var ErrUnsupportedOp = errors.New("models: op cannot be lowered onto an engine")

// TrainGraph is a differentiated training graph: what Compile lowers.
type TrainGraph struct {
	X      *G.Node // the input batch, batch × ... (float32)
	Labels *G.Node // each sample's class index as a float32, [batch]
	Logits *G.Node // [batch × classes]
	Loss   *G.Node // SoftmaxCrossEntropy(Logits, Labels)
	// Params are the learnable input nodes; their values, concatenated in
	// this order, are the flat parameter vector.
	Params G.Nodes
	// Grads[i] is d Loss / d Params[i], as G.Grad returns them.
	Grads G.Nodes
}

// TrainGraph returns the net's differentiated graph (a training net only).
func (n *Net) TrainGraph() (TrainGraph, error) {
	if !n.train {
		return TrainGraph{}, errors.New("models: an evaluation net has no training graph")
	}
	return TrainGraph{X: n.x, Labels: n.y, Logits: n.logits, Loss: n.loss, Params: n.learn, Grads: n.gradNodes}, nil
}

// lowerer is an op that lowers onto engine kernels. lower returns the
// buffer that holds node's value once the kernels it appended to l have
// run: l.out(node), written by them, or a view of an input's buffer. in
// holds the buffers of node's inputs, in order.
type lowerer interface {
	lower(l *lowering, node *G.Node, in []engine.Buffer) (engine.Buffer, error)
}

// kernel is one step of a program, named for errors.
type kernel struct {
	name string
	run  func(e engine.Engine) error
}

// sizeBuf stands in for a device buffer when CheckLowerable plans a
// graph without an engine.
type sizeBuf int

func (b sizeBuf) Len() int { return int(b) }
func (b sizeBuf) Slice(off, n int) engine.Buffer {
	if off < 0 || n < 0 || off+n > int(b) {
		panic(fmt.Sprintf("models: Slice(%d, %d) of %d elements", off, n, int(b)))
	}
	return sizeBuf(n)
}

// lowering is the state of one compilation.
type lowering struct {
	e       engine.Engine // nil: plan only (CheckLowerable)
	g       TrainGraph
	kernels []kernel
	owned   []engine.Buffer
	bufs    map[*G.Node]engine.Buffer
	bound   map[*G.Node]int  // gradient node → the parameter whose slice of the gradient vector it writes
	wrote   map[*G.Node]bool // gradient nodes whose lowering took that slice as its output
	grads   engine.Buffer
	offs    []int // each parameter's offset in the flat vector
	memo    map[any]engine.Buffer
	losses  engine.Buffer // per-sample losses, written by the loss's kernel
}

// alloc returns a zeroed buffer of n elements that the program owns.
func (l *lowering) alloc(n int) (engine.Buffer, error) {
	if n < 1 {
		return nil, fmt.Errorf("models: lowering: a buffer of %d elements", n)
	}
	if l.e == nil {
		return sizeBuf(n), nil
	}
	b, err := l.e.Alloc(n)
	if err != nil {
		return nil, err
	}
	l.owned = append(l.owned, b)
	return b, nil
}

// upload copies host data into b at compile time (not in plan-only mode).
func (l *lowering) upload(b engine.Buffer, v []float32) error {
	if l.e == nil {
		return nil
	}
	return l.e.Upload(b, v)
}

// emit appends a kernel to the program.
func (l *lowering) emit(name fmt.Stringer, run func(e engine.Engine) error) {
	l.kernels = append(l.kernels, kernel{name: name.String(), run: run})
}

// out returns the buffer node's kernels should write: its slice of the
// gradient vector when it is a parameter's gradient, else a new buffer.
// A lowering that calls out must return that buffer.
func (l *lowering) out(node *G.Node) (engine.Buffer, error) {
	n := node.Shape().TotalSize()
	if i, ok := l.bound[node]; ok {
		l.wrote[node] = true
		return l.grads.Slice(l.offs[i], n), nil
	}
	return l.alloc(n)
}

// memoize returns the buffer stored under key, making it with mk (which
// may emit kernels) the first time.
func (l *lowering) memoize(key any, mk func() (engine.Buffer, error)) (engine.Buffer, error) {
	if b, ok := l.memo[key]; ok {
		return b, nil
	}
	b, err := mk()
	if err != nil {
		return nil, err
	}
	l.memo[key] = b
	return b, nil
}

// ones returns a buffer of n ones, uploaded at compile time.
func (l *lowering) ones(n int) (engine.Buffer, error) {
	type onesKey struct{ n int }
	return l.memoize(onesKey{n}, func() (engine.Buffer, error) {
		b, err := l.alloc(n)
		if err != nil {
			return nil, err
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return b, l.upload(b, v)
	})
}

// children returns node's inputs in order.
func children(node *G.Node) []*G.Node {
	var out []*G.Node
	it := node.Graph().From(node.ID())
	for it.Next() {
		out = append(out, it.Node().(*G.Node))
	}
	return out
}

// order returns the nodes that roots need, every node after its inputs.
func order(roots []*G.Node) []*G.Node {
	seen := map[*G.Node]bool{}
	var out []*G.Node
	var visit func(n *G.Node)
	visit = func(n *G.Node) {
		if seen[n] {
			return
		}
		seen[n] = true
		for _, c := range children(n) {
			visit(c)
		}
		out = append(out, n)
	}
	for _, r := range roots {
		visit(r)
	}
	return out
}

// gorgoniaOp names the Gorgonia ops that Compile lowers itself.
func gorgoniaOp(op G.Op) string {
	switch t := fmt.Sprintf("%T", op); {
	case t == "gorgonia.reshapeOp":
		return "reshape"
	case t == "gorgonia.elemBinOp" && strings.HasPrefix(op.String(), "+ "):
		return "add"
	case t == "gorgonia.constantScalar" || t == "gorgonia.constantTensor":
		return "constant"
	}
	return ""
}

func unsupported(node *G.Node, why string) error {
	return fmt.Errorf("%w: %s (op %q, node %q %v)", ErrUnsupportedOp, why, node.Op(), node.Name(), node.Shape())
}

// check validates the graph's parts.
func (g TrainGraph) check() error {
	if g.X == nil || g.Labels == nil || g.Logits == nil || g.Loss == nil {
		return errors.New("models: a training graph needs X, Labels, Logits and Loss")
	}
	if len(g.Params) == 0 || len(g.Params) != len(g.Grads) {
		return fmt.Errorf("models: %d parameters with %d gradients", len(g.Params), len(g.Grads))
	}
	if op, ok := g.Loss.Op().(*xentOp); !ok || op.grad {
		return fmt.Errorf("%w: the loss must be SoftmaxCrossEntropy, got op %q", ErrUnsupportedOp, g.Loss.Op())
	}
	if ch := children(g.Loss); ch[0] != g.Logits || ch[1] != g.Labels {
		return errors.New("models: the loss is not SoftmaxCrossEntropy(Logits, Labels)")
	}
	xs := g.X.Shape()
	if len(xs) < 1 || !g.Labels.Shape().Eq(tensor.Shape{xs[0]}) {
		return fmt.Errorf("models: input %v with labels %v", xs, g.Labels.Shape())
	}
	for i, p := range g.Params {
		if p == nil || g.Grads[i] == nil || p.Op() != nil {
			return fmt.Errorf("models: parameter %d is not a learnable input node", i)
		}
		if !g.Grads[i].Shape().Eq(p.Shape()) && g.Grads[i].Shape().TotalSize() != p.Shape().TotalSize() {
			return fmt.Errorf("models: parameter %s %v has a gradient of shape %v", p.Name(), p.Shape(), g.Grads[i].Shape())
		}
	}
	return nil
}

// plan lowers g into l: it allocates the program's buffers and appends its
// kernels. params and grads are the flat vectors' buffers.
func (l *lowering) plan(params, grads, x, labels engine.Buffer) error {
	g := l.g
	l.grads = grads
	off := 0
	for i, p := range g.Params {
		n := p.Shape().TotalSize()
		if _, dup := l.bufs[p]; dup {
			return fmt.Errorf("models: parameter %s is listed twice", p.Name())
		}
		l.bufs[p] = params.Slice(off, n)
		if _, ok := l.bound[g.Grads[i]]; !ok {
			l.bound[g.Grads[i]] = i
		}
		l.offs = append(l.offs, off)
		off += n
	}
	l.bufs[g.X], l.bufs[g.Labels] = x, labels
	roots := append(G.Nodes{g.Loss, g.Logits}, g.Grads...)
	for _, node := range order(roots) {
		if node.Dtype() != tensor.Float32 {
			return unsupported(node, fmt.Sprintf("%v values (only float32 lowers)", node.Dtype()))
		}
		if node.Op() == nil {
			if _, ok := l.bufs[node]; !ok {
				return unsupported(node, "an input that is neither a parameter, the batch nor the labels")
			}
			continue
		}
		kids := children(node)
		in := make([]engine.Buffer, len(kids))
		for i, c := range kids {
			if c == g.Loss {
				return unsupported(node, "the loss feeds another op (it must be the graph's cost)")
			}
			in[i] = l.bufs[c]
		}
		var (
			b   engine.Buffer
			err error
		)
		if lw, ok := node.Op().(lowerer); ok {
			b, err = lw.lower(l, node, in)
		} else {
			b, err = l.lowerGorgonia(node, kids, in)
		}
		if err != nil {
			return err
		}
		if b.Len() != node.Shape().TotalSize() {
			return fmt.Errorf("models: lowering %v gave %d elements for shape %v", node.Op(), b.Len(), node.Shape())
		}
		l.bufs[node] = b
	}
	if l.losses == nil {
		return errors.New("models: the loss was not lowered")
	}
	// A gradient whose op could not write into the gradient vector (a view,
	// the loss's own gradient, one node that is two parameters' gradient)
	// is copied there.
	for i, p := range g.Params {
		gn := g.Grads[i]
		if l.bound[gn] == i && l.wrote[gn] {
			continue
		}
		src, dst := l.bufs[gn], grads.Slice(l.offs[i], p.Shape().TotalSize())
		l.emit(gn.Op(), func(e engine.Engine) error { return e.Copy(dst, src) })
	}
	return nil
}

// lowerGorgonia lowers the Gorgonia ops that a vtrain graph and its
// gradient hold besides vtrain's own.
func (l *lowering) lowerGorgonia(node *G.Node, kids []*G.Node, in []engine.Buffer) (engine.Buffer, error) {
	switch gorgoniaOp(node.Op()) {
	case "reshape": // a view
		return in[0], nil
	case "add": // G.Grad's sum of a node's gradients
		if len(kids) != 2 || !kids[0].Shape().Eq(node.Shape()) || !kids[1].Shape().Eq(node.Shape()) {
			return nil, unsupported(node, "a broadcasting +")
		}
		out, err := l.out(node)
		if err != nil {
			return nil, err
		}
		a, b := in[0], in[1]
		l.emit(node.Op(), func(e engine.Engine) error { return e.Add(out, a, b) })
		return out, nil
	case "constant":
		var v []float32
		if s, err := scalarF32(node.Value()); err == nil {
			v = []float32{s}
		} else if v, err = f32s(node.Value()); err != nil {
			return nil, unsupported(node, err.Error())
		}
		b, err := l.alloc(len(v))
		if err != nil {
			return nil, err
		}
		return b, l.upload(b, v)
	}
	return nil, unsupported(node, "no lowering onto engine kernels")
}

// CheckLowerable reports whether Compile can lower g: nil, or an error
// that names the first op it cannot lower (its String()) and its node.
func CheckLowerable(g TrainGraph) error {
	if err := g.check(); err != nil {
		return err
	}
	n := 0
	for _, p := range g.Params {
		n += p.Shape().TotalSize()
	}
	l := newLowering(nil, g)
	return l.plan(sizeBuf(n), sizeBuf(n), sizeBuf(g.X.Shape().TotalSize()), sizeBuf(g.X.Shape()[0]))
}

func newLowering(e engine.Engine, g TrainGraph) *lowering {
	return &lowering{e: e, g: g, bufs: map[*G.Node]engine.Buffer{}, bound: map[*G.Node]int{}, wrote: map[*G.Node]bool{}, memo: map[any]engine.Buffer{}}
}

// Program is a training graph lowered onto an engine: parameters,
// gradients, activations and optimizer state on the device; a step
// uploads a batch and its labels and downloads the per-sample losses.
// A Program is not safe for concurrent use.
type Program struct {
	e       engine.Engine
	kernels []kernel
	owned   []engine.Buffer
	opt     *engine.Optimizer

	batch, classes, features, nparams int
	params, grads, x, labels, losses  engine.Buffer

	yHost, lossHost []float32
}

// Compile lowers g onto e with the optimizer opt. The parameters start
// from the values of g's parameter nodes.
func Compile(e engine.Engine, g TrainGraph, opt engine.Optim) (_ *Program, err error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	l := newLowering(e, g)
	p := &Program{e: e, batch: g.X.Shape()[0], classes: g.Logits.Shape()[1], features: g.X.Shape().TotalSize()}
	defer func() {
		if err != nil {
			p.owned = l.owned
			p.Close()
		}
	}()
	theta := make([]float32, 0)
	for _, n := range g.Params {
		v, err := f32s(n.Value())
		if err != nil {
			return nil, fmt.Errorf("models: parameter %s: %w", n.Name(), err)
		}
		theta = append(theta, v[:n.Shape().TotalSize()]...)
	}
	p.nparams = len(theta)
	if p.params, err = l.alloc(p.nparams); err != nil {
		return nil, err
	}
	if p.grads, err = l.alloc(p.nparams); err != nil {
		return nil, err
	}
	if p.x, err = l.alloc(p.features); err != nil {
		return nil, err
	}
	if p.labels, err = l.alloc(p.batch); err != nil {
		return nil, err
	}
	if err := l.plan(p.params, p.grads, p.x, p.labels); err != nil {
		return nil, err
	}
	p.kernels, p.owned, p.losses = l.kernels, l.owned, l.losses
	if err := e.Upload(p.params, theta); err != nil {
		return nil, err
	}
	if p.opt, err = engine.NewOptimizer(e, p.nparams, opt); err != nil {
		return nil, err
	}
	p.yHost, p.lossHost = make([]float32, p.batch), make([]float32, p.batch)
	return p, nil
}

// Engine returns the engine the program runs on.
func (p *Program) Engine() engine.Engine { return p.e }

// Batch returns the batch size the program was compiled for.
func (p *Program) Batch() int { return p.batch }

// NumParams returns the length of the flat parameter vector.
func (p *Program) NumParams() int { return p.nparams }

// Kernels returns how many kernels one step runs before the optimizer.
func (p *Program) Kernels() int { return len(p.kernels) }

// Gradients runs the forward and backward pass on the batch x (batch ×
// features) with labels y and leaves the gradient of the mean loss on the
// device; it returns the mean loss.
func (p *Program) Gradients(x []float32, y []int) (float32, error) {
	if len(y) != p.batch || len(x) != p.features {
		return 0, fmt.Errorf("%w: a batch of %d values and %d labels for a program of batch %d × %d features",
			engine.ErrShape, len(x), len(y), p.batch, p.features/p.batch)
	}
	for i, c := range y {
		if c < 0 || c >= p.classes {
			return 0, fmt.Errorf("models: label %d out of range 0..%d", c, p.classes-1)
		}
		p.yHost[i] = float32(c)
	}
	if err := p.e.Upload(p.labels, p.yHost); err != nil {
		return 0, err
	}
	if err := p.e.Upload(p.x, x); err != nil {
		return 0, err
	}
	for _, k := range p.kernels {
		if err := k.run(p.e); err != nil {
			return 0, fmt.Errorf("models: %s: %w", k.name, err)
		}
	}
	if err := p.e.Download(p.lossHost, p.losses); err != nil {
		return 0, err
	}
	var s float64
	for _, v := range p.lossHost {
		s += float64(v)
	}
	loss := float32(s / float64(p.batch))
	if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
		return loss, ErrNonFinite
	}
	return loss, nil
}

// Step trains on one batch: forward, backward and the optimizer update at
// learning rate lr, all on the device. It returns the batch's mean loss
// (before the update).
func (p *Program) Step(x []float32, y []int, lr float64) (float32, error) {
	loss, err := p.Gradients(x, y)
	if err != nil {
		return loss, err
	}
	return loss, p.Update(lr)
}

// Update applies one optimizer step at learning rate lr to the gradients
// on the device (those of the last Gradients).
func (p *Program) Update(lr float64) error { return p.opt.Step(p.params, p.grads, lr) }

// Params copies the parameters from the device into dst.
func (p *Program) Params(dst []float32) error { return p.e.Download(dst, p.params) }

// SetParams copies theta to the device.
func (p *Program) SetParams(theta []float32) error { return p.e.Upload(p.params, theta) }

// Grads copies the last gradients from the device into dst.
func (p *Program) Grads(dst []float32) error { return p.e.Download(dst, p.grads) }

// OptState downloads the optimizer state under package trainer's names,
// with the number of optimizer steps taken.
func (p *Program) OptState() (map[string][]float32, int64, error) { return p.opt.State() }

// SetOptState uploads optimizer state as OptState returns it.
func (p *Program) SetOptState(bufs map[string][]float32, steps int64) error {
	return p.opt.SetState(bufs, steps)
}

// Close frees the program's buffers (not the engine).
func (p *Program) Close() error {
	if p.opt != nil {
		p.opt.Close()
		p.opt = nil
	}
	for _, b := range p.owned {
		p.e.Free(b)
	}
	p.owned = nil
	return nil
}

// stringer names a kernel that no single op owns.
type stringer string

func (s stringer) String() string { return string(s) }
