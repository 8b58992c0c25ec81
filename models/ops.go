package models

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/vtrain/vtrain/engine"
)

// tanhOp is y = tanh(x) elementwise, with an output allocated once; its
// gradient op (grad true) takes (y, dy), the forward op's output and the
// gradient at it, and computes dy ⊙ (1 − y²).
type tanhOp struct {
	grad  bool
	shape tensor.Shape
	out   outBuf
}

func (op *tanhOp) Arity() int {
	if op.grad {
		return 2
	}
	return 1
}

func (op *tanhOp) Type() hm.Type {
	t := G.TensorType{Dims: op.shape.Dims(), Of: hm.TypeVariable('a')}
	if op.grad {
		return hm.NewFnType(t, t, t)
	}
	return hm.NewFnType(t, t)
}

func (op *tanhOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *tanhOp) ReturnsPtr() bool                               { return false }
func (op *tanhOp) CallsExtern() bool                              { return false }
func (op *tanhOp) OverwritesInput() int                           { return -1 }
func (op *tanhOp) String() string                                 { return fmt.Sprintf("vtrain.tanh{grad=%v %v}", op.grad, op.shape) }
func (op *tanhOp) WriteHash(h hash.Hash)                          { fmt.Fprint(h, op.String()) }
func (op *tanhOp) Hashcode() uint32                               { return opHashcode(op) }

func (op *tanhOp) Do(inputs ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, inputs...) }

func (op *tanhOp) UsePreallocDo(_ G.Value, inputs ...G.Value) (G.Value, error) {
	var in [2][]float32
	if err := opInputs(op, inputs, in[:]); err != nil {
		return nil, err
	}
	res, dst := op.out.get(op.shape...)
	x := in[0][:len(dst)]
	if !op.grad {
		for i, v := range x {
			dst[i] = float32(math.Tanh(float64(v)))
		}
		return res, nil
	}
	dy := in[1][:len(x)]
	for i, y := range x {
		dst[i] = dy[i] * (1 - y*y)
	}
	return res, nil
}

// DiffWRT implements G.SDOp.
func (op *tanhOp) DiffWRT(inputs int) []bool {
	if op.grad {
		return make([]bool, inputs)
	}
	return []bool{true}
}

// SymDiff implements G.SDOp.
func (op *tanhOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if op.grad {
		return nil, fmt.Errorf("models: %v is not differentiable", op)
	}
	dx, err := G.ApplyOp(&tanhOp{grad: true, shape: op.shape}, output, grad)
	return G.Nodes{dx}, err
}

// addOp is a + b for two tensors of one shape (a residual connection).
// Its gradient is the output's gradient, passed to both inputs as it is.
type addOp struct {
	shape tensor.Shape
	out   outBuf
}

func (op *addOp) Arity() int { return 2 }

func (op *addOp) Type() hm.Type {
	t := G.TensorType{Dims: op.shape.Dims(), Of: hm.TypeVariable('a')}
	return hm.NewFnType(t, t, t)
}

func (op *addOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *addOp) ReturnsPtr() bool                               { return false }
func (op *addOp) CallsExtern() bool                              { return false }
func (op *addOp) OverwritesInput() int                           { return -1 }
func (op *addOp) String() string                                 { return fmt.Sprintf("vtrain.add{%v}", op.shape) }
func (op *addOp) WriteHash(h hash.Hash)                          { fmt.Fprint(h, op.String()) }
func (op *addOp) Hashcode() uint32                               { return opHashcode(op) }

func (op *addOp) Do(inputs ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, inputs...) }

func (op *addOp) UsePreallocDo(_ G.Value, inputs ...G.Value) (G.Value, error) {
	var in [2][]float32
	if err := opInputs(op, inputs, in[:]); err != nil {
		return nil, err
	}
	res, dst := op.out.get(op.shape...)
	a, b := in[0][:len(dst)], in[1][:len(dst)]
	for i, v := range a {
		dst[i] = v + b[i]
	}
	return res, nil
}

// DiffWRT implements G.SDOp.
func (op *addOp) DiffWRT(int) []bool { return []bool{true, true} }

// SymDiff implements G.SDOp.
func (op *addOp) SymDiff(_ G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	return G.Nodes{grad, grad}, nil
}

// xentOp is the mean softmax cross-entropy of logits [N×C] against labels
// [N], each a class index stored as a float32: (1/N)·Σ_r −log softmax(z_r)[y_r],
// a scalar. Its gradient op (grad true) takes (logits, labels, dloss) and
// computes dloss·(softmax(z) − onehot(y))/N. Both compute exactly what
// engine.Engine's SoftmaxCrossEntropy computes on the CPU engine (the same
// float32 operations in the same order, the mean summed in float64), so
// the graph and its lowering agree to the bit on the loss.
type xentOp struct {
	grad bool
	n, c int
	out  outBuf
}

func (op *xentOp) Arity() int {
	if op.grad {
		return 3
	}
	return 2
}

func (op *xentOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	m, v := G.TensorType{Dims: 2, Of: a}, G.TensorType{Dims: 1, Of: a}
	if op.grad {
		return hm.NewFnType(m, v, a, m)
	}
	return hm.NewFnType(m, v, a)
}

func (op *xentOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if op.grad {
		return tensor.Shape{op.n, op.c}, nil
	}
	return tensor.ScalarShape(), nil
}
func (op *xentOp) ReturnsPtr() bool     { return false }
func (op *xentOp) CallsExtern() bool    { return false }
func (op *xentOp) OverwritesInput() int { return -1 }
func (op *xentOp) String() string {
	return fmt.Sprintf("vtrain.softmax_xent{grad=%v %dx%d}", op.grad, op.n, op.c)
}
func (op *xentOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *xentOp) Hashcode() uint32      { return opHashcode(op) }

func (op *xentOp) Do(inputs ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, inputs...) }

// row computes one row's softmax numerators e^(z−m) into d, and returns
// their sum and the row's loss; it checks the label.
func (op *xentOp) row(z, d []float32, label float32, r int) (s, loss float32, y int, err error) {
	y = int(label)
	if y < 0 || y >= op.c || float32(y) != label {
		return 0, 0, 0, fmt.Errorf("models: label %v in row %d is not a class of %d", label, r, op.c)
	}
	m := z[0]
	for _, v := range z[1:] {
		m = max(m, v)
	}
	for c, v := range z {
		e := float32(math.Exp(float64(v - m)))
		d[c] = e
		s += e
	}
	return s, float32(math.Log(float64(s))) - (z[y] - m), y, nil
}

func (op *xentOp) UsePreallocDo(_ G.Value, inputs ...G.Value) (G.Value, error) {
	if len(inputs) != op.Arity() {
		return nil, fmt.Errorf("models: %v takes %d inputs, got %d", op, op.Arity(), len(inputs))
	}
	var in [2][]float32
	if err := opInputs(&xentOp{n: op.n, c: op.c}, inputs[:2], in[:]); err != nil {
		return nil, err
	}
	n, c := op.n, op.c
	logits, labels := in[0][:n*c], in[1][:n]
	if !op.grad {
		scratch := make([]float32, c)
		var sum float64
		for r := range n {
			_, loss, _, err := op.row(logits[r*c:(r+1)*c], scratch, labels[r], r)
			if err != nil {
				return nil, err
			}
			sum += float64(loss)
		}
		return G.NewF32(float32(sum / float64(n))), nil
	}
	dloss, err := scalarF32(inputs[2])
	if err != nil {
		return nil, err
	}
	res, dst := op.out.get(n, c)
	inv := 1 / float32(n)
	for r := range n {
		d := dst[r*c : (r+1)*c]
		s, _, y, err := op.row(logits[r*c:(r+1)*c], d, labels[r], r)
		if err != nil {
			return nil, err
		}
		for j := range d {
			d[j] = d[j] / s * inv
		}
		d[y] -= inv
		if dloss != 1 {
			for j := range d {
				d[j] *= dloss
			}
		}
	}
	return res, nil
}

// scalarF32 reads a float32 scalar value.
func scalarF32(v G.Value) (float32, error) {
	switch s := v.(type) {
	case *G.F32:
		return float32(*s), nil
	case *tensor.Dense:
		if f, ok := s.Data().(float32); ok {
			return f, nil
		}
		if f, ok := s.Data().([]float32); ok && len(f) == 1 {
			return f[0], nil
		}
	}
	return 0, fmt.Errorf("models: want a float32 scalar, got %T", v)
}

// DiffWRT implements G.SDOp: the logits, not the labels.
func (op *xentOp) DiffWRT(inputs int) []bool {
	if op.grad {
		return make([]bool, inputs)
	}
	return []bool{true, false}
}

// SymDiff implements G.SDOp.
func (op *xentOp) SymDiff(inputs G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	if op.grad {
		return nil, fmt.Errorf("models: %v is not differentiable", op)
	}
	d, err := G.ApplyOp(&xentOp{grad: true, n: op.n, c: op.c}, inputs[0], inputs[1], grad)
	return G.Nodes{d, nil}, err
}

// lower implements lowerer.
func (op *tanhOp) lower(l *lowering, node *G.Node, in []engine.Buffer) (engine.Buffer, error) {
	out, err := l.out(node)
	if err != nil {
		return nil, err
	}
	if !op.grad {
		x := in[0]
		l.emit(op, func(e engine.Engine) error { return e.Tanh(out, x) })
		return out, nil
	}
	y, dy := in[0], in[1]
	l.emit(op, func(e engine.Engine) error { return e.TanhGrad(out, dy, y) })
	return out, nil
}

// lower implements lowerer.
func (op *addOp) lower(l *lowering, node *G.Node, in []engine.Buffer) (engine.Buffer, error) {
	out, err := l.out(node)
	if err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	l.emit(op, func(e engine.Engine) error { return e.Add(out, a, b) })
	return out, nil
}

// lower implements lowerer. The engine computes the per-sample losses and
// the gradient of their mean in one kernel, which the loss and its
// gradient share: the forward op's value on the device is the per-sample
// losses (their mean is taken on the host), and the gradient op's is that
// kernel's gradient, so the gradient must be the loss's own (dloss the
// constant 1 that G.Grad seeds).
func (op *xentOp) lower(l *lowering, node *G.Node, in []engine.Buffer) (engine.Buffer, error) {
	kids := children(node)
	type key struct {
		logits, labels *G.Node
		losses         bool
	}
	var losses engine.Buffer
	d, err := l.memoize(key{kids[0], kids[1], false}, func() (engine.Buffer, error) {
		d, err := l.alloc(op.n * op.c)
		if err != nil {
			return nil, err
		}
		if losses, err = l.alloc(op.n); err != nil {
			return nil, err
		}
		l.memo[key{kids[0], kids[1], true}] = losses
		logits, labels, loss, n, c := in[0], in[1], losses, op.n, op.c
		l.emit(op, func(e engine.Engine) error { return e.SoftmaxCrossEntropy(d, loss, logits, labels, n, c) })
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	losses = l.memo[key{kids[0], kids[1], true}]
	if !op.grad {
		if node != l.g.Loss {
			return nil, unsupported(node, "a second loss (only the graph's cost may be SoftmaxCrossEntropy)")
		}
		l.losses = losses
		// The scalar itself is never computed on the device.
		return l.alloc(1)
	}
	if one, ok := kids[2].Op(), gorgoniaOp(kids[2].Op()) == "constant"; !ok || !isOne(kids[2]) {
		return nil, unsupported(node, fmt.Sprintf("the gradient of a scaled loss (dloss is %v, must be the constant 1)", one))
	}
	return d, nil
}

// isOne reports whether a constant node's value is the scalar 1.
func isOne(n *G.Node) bool {
	v, err := scalarF32(n.Value())
	return err == nil && v == 1
}
