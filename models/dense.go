package models

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/vtrain/vtrain/engine"
)

// denseKind selects what a denseOp computes.
type denseKind int

const (
	denseForward denseKind = iota // (x, w, b) → x·w + b
	denseGradX                    // (dy, w) → dy·wᵀ
	denseGradW                    // (x, dy) → xᵀ·dy
	denseGradB                    // (dy) → Σ_rows dy
)

// denseOp is a fully connected layer for Gorgonia, x [N×I] · w [I×O] + b,
// and its three gradients. It computes exactly what Gorgonia's Mul and
// BroadcastAdd (and their gradients) compute, with the same BLAS calls and
// the same order of additions, but into outputs allocated once: Gorgonia's
// own ops allocate every value on every step (an MLP step allocated
// 1.1 MB, and the garbage collector's work was a fifth of the step).
type denseOp struct {
	kind    denseKind
	n, i, o int
	out     outBuf
}

func (op *denseOp) bindOut(dst []float32) bool {
	if len(dst) != op.shape().TotalSize() {
		return false
	}
	op.out.bind(dst, op.shape())
	return true
}

func (op *denseOp) Arity() int {
	switch op.kind {
	case denseForward:
		return 3
	case denseGradB:
		return 1
	default:
		return 2
	}
}

func (op *denseOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	m, v := G.TensorType{Dims: 2, Of: a}, G.TensorType{Dims: 1, Of: a}
	switch op.kind {
	case denseForward:
		return hm.NewFnType(m, m, v, m)
	case denseGradB:
		return hm.NewFnType(m, v)
	default:
		return hm.NewFnType(m, m, m)
	}
}

func (op *denseOp) shape() tensor.Shape {
	switch op.kind {
	case denseForward:
		return tensor.Shape{op.n, op.o}
	case denseGradX:
		return tensor.Shape{op.n, op.i}
	case denseGradW:
		return tensor.Shape{op.i, op.o}
	default:
		return tensor.Shape{op.o}
	}
}

func (op *denseOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape(), nil }
func (op *denseOp) ReturnsPtr() bool                               { return false }
func (op *denseOp) CallsExtern() bool                              { return false }
func (op *denseOp) OverwritesInput() int                           { return -1 }
func (op *denseOp) String() string {
	return fmt.Sprintf("vtrain.dense%d{%dx%dx%d}", op.kind, op.n, op.i, op.o)
}
func (op *denseOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *denseOp) Hashcode() uint32      { return opHashcode(op) }

func (op *denseOp) Do(inputs ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, inputs...) }

func (op *denseOp) UsePreallocDo(_ G.Value, inputs ...G.Value) (G.Value, error) {
	var in [3][]float32
	if err := opInputs(op, inputs, in[:]); err != nil {
		return nil, err
	}
	res, dst := op.out.get(op.shape()...)
	n, i, o := op.n, op.i, op.o
	b := sgemm()
	switch op.kind {
	case denseForward:
		x, w, bias := in[0], in[1], in[2]
		b.Sgemm(blas.NoTrans, blas.NoTrans, n, o, i, 1, x, i, w, o, 0, dst, o)
		bias = bias[:o]
		for r := 0; r < n; r++ {
			row := dst[r*o:][:len(bias)]
			for j, v := range bias {
				row[j] += v
			}
		}
	case denseGradX:
		dy, w := in[0], in[1]
		b.Sgemm(blas.NoTrans, blas.Trans, n, i, o, 1, dy, o, w, o, 0, dst, i)
	case denseGradW:
		x, dy := in[0], in[1]
		b.Sgemm(blas.Trans, blas.NoTrans, i, o, n, 1, x, i, dy, o, 0, dst, o)
	case denseGradB:
		dy := in[0]
		copy(dst, dy[:o])
		for r := 1; r < n; r++ {
			row := dy[r*o:][:len(dst)]
			for j, v := range row {
				dst[j] += v
			}
		}
	}
	return res, nil
}

// DiffWRT implements G.SDOp.
func (op *denseOp) DiffWRT(inputs int) []bool {
	if op.kind != denseForward {
		return make([]bool, inputs)
	}
	return []bool{true, true, true}
}

// SymDiff implements G.SDOp.
func (op *denseOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if op.kind != denseForward {
		return nil, fmt.Errorf("models: %v is not differentiable", op)
	}
	x, w := inputs[0], inputs[1]
	mk := func(k denseKind) *denseOp { return &denseOp{kind: k, n: op.n, i: op.i, o: op.o} }
	dx, err := G.ApplyOp(mk(denseGradX), grad, w)
	if err != nil {
		return nil, err
	}
	dw, err := G.ApplyOp(mk(denseGradW), x, grad)
	if err != nil {
		return nil, err
	}
	db, err := G.ApplyOp(mk(denseGradB), grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dw, db}, nil
}

// denseLayer applies x [N×I] · w [I×O] + b.
func denseLayer(x, w, b *G.Node) (*G.Node, error) {
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 2 || len(ws) != 2 || xs[1] != ws[0] || b.Shape().TotalSize() != ws[1] {
		return nil, fmt.Errorf("models: dense shapes %v · %v + %v", xs, ws, b.Shape())
	}
	return G.ApplyOp(&denseOp{kind: denseForward, n: xs[0], i: xs[1], o: ws[1]}, x, w, b)
}

// reluOp is Gorgonia's Rectify, x ⊙ (x ≥ 0), as one op with an output
// allocated once; its gradient op (grad true) takes (x, dy) and computes
// dy ⊙ (x ≥ 0), as Rectify's gradient does. The factor is built from the
// comparison's bits rather than a branch, whose outcome is random.
type reluOp struct {
	grad  bool
	shape tensor.Shape
	out   outBuf
}

func (op *reluOp) Arity() int {
	if op.grad {
		return 2
	}
	return 1
}

func (op *reluOp) Type() hm.Type {
	t := G.TensorType{Dims: op.shape.Dims(), Of: hm.TypeVariable('a')}
	if op.grad {
		return hm.NewFnType(t, t, t)
	}
	return hm.NewFnType(t, t)
}

func (op *reluOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }
func (op *reluOp) ReturnsPtr() bool                               { return false }
func (op *reluOp) CallsExtern() bool                              { return false }
func (op *reluOp) OverwritesInput() int                           { return -1 }
func (op *reluOp) String() string                                 { return fmt.Sprintf("vtrain.relu{grad=%v %v}", op.grad, op.shape) }
func (op *reluOp) WriteHash(h hash.Hash)                          { fmt.Fprint(h, op.String()) }
func (op *reluOp) Hashcode() uint32                               { return opHashcode(op) }

func (op *reluOp) Do(inputs ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, inputs...) }

func (op *reluOp) UsePreallocDo(_ G.Value, inputs ...G.Value) (G.Value, error) {
	var in [2][]float32
	if err := opInputs(op, inputs, in[:]); err != nil {
		return nil, err
	}
	res, dst := op.out.get(op.shape...)
	x := in[0][:len(dst)]
	if !op.grad {
		reluMul(dst, x, x)
	} else {
		reluMul(dst, x, in[1][:len(x)])
	}
	return res, nil
}

// reluMul sets dst[i] = v[i] · (x[i] ≥ 0 ? 1 : 0): ReLU when v is x, its
// gradient when v is dy. x and v must be as long as dst.
func reluMul(dst, x, v []float32) {
	n := reluMulVec(dst, x, v)
	const one = 0x3f800000 // float32 1
	x, v = x[n:len(dst)], v[n:len(dst)]
	for i, xi := range x {
		dst[n+i] = v[i] * math.Float32frombits(one&mask(xi >= 0))
	}
}

// DiffWRT implements G.SDOp.
func (op *reluOp) DiffWRT(inputs int) []bool {
	if op.grad {
		return make([]bool, inputs)
	}
	return []bool{true}
}

// SymDiff implements G.SDOp.
func (op *reluOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if op.grad {
		return nil, fmt.Errorf("models: %v is not differentiable", op)
	}
	dx, err := G.ApplyOp(&reluOp{grad: true, shape: op.shape}, inputs[0], grad)
	return G.Nodes{dx}, err
}

// relu applies reluOp to x.
func relu(x *G.Node) (*G.Node, error) {
	return G.ApplyOp(&reluOp{shape: x.Shape().Clone()}, x)
}

// lower implements lowerer: a product and a bias, or one gradient.
func (op *denseOp) lower(l *lowering, node *G.Node, in []engine.Buffer) (engine.Buffer, error) {
	out, err := l.out(node)
	if err != nil {
		return nil, err
	}
	n, i, o := op.n, op.i, op.o
	switch op.kind {
	case denseForward:
		x, w, b := in[0], in[1], in[2]
		l.emit(op, func(e engine.Engine) error {
			if err := e.Gemm(false, false, n, o, i, 1, x, w, 0, out); err != nil {
				return err
			}
			return e.AddRowVector(out, b, n, o)
		})
	case denseGradX:
		dy, w := in[0], in[1]
		l.emit(op, func(e engine.Engine) error { return e.Gemm(false, true, n, i, o, 1, dy, w, 0, out) })
	case denseGradW:
		x, dy := in[0], in[1]
		l.emit(op, func(e engine.Engine) error { return e.Gemm(true, false, i, o, n, 1, x, dy, 0, out) })
	case denseGradB:
		dy := in[0]
		l.emit(op, func(e engine.Engine) error { return e.SumRows(out, dy, n, o) })
	}
	return out, nil
}

// lower implements lowerer. The gradient zeroes dy where x ≤ 0, where
// the CPU op zeroes it where x < 0: they differ only at x = 0 exactly,
// which an input reaches through another ReLU or a pooled convolution,
// whose own gradients are zero there.
func (op *reluOp) lower(l *lowering, node *G.Node, in []engine.Buffer) (engine.Buffer, error) {
	out, err := l.out(node)
	if err != nil {
		return nil, err
	}
	if !op.grad {
		x := in[0]
		l.emit(op, func(e engine.Engine) error {
			if err := e.Copy(out, x); err != nil {
				return err
			}
			return e.ReLU(out)
		})
		return out, nil
	}
	x, dy := in[0], in[1]
	l.emit(op, func(e engine.Engine) error {
		if err := e.Copy(out, dy); err != nil {
			return err
		}
		return e.ReLUGrad(out, x)
	})
	return out, nil
}
