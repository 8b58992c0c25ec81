package models

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// reluPoolOp is ReLU followed by 2×2 max-pooling with stride 2 on NCHW
// tensors with even sides, fused: y = max(0, max of each window). Its
// gradient op (grad true) takes (x, dy) and routes each dy to the first
// maximum of its window in row-major order when that maximum is positive,
// recomputed from x, so the two ops share no state. It replaces Gorgonia's
// Rectify + MaxPool2D, which cost a quarter of a CNN step.
type reluPoolOp struct {
	grad       bool
	n, c, h, w int // input shape
	out        outBuf
}

func (op *reluPoolOp) Arity() int {
	if op.grad {
		return 2
	}
	return 1
}

func (op *reluPoolOp) Type() hm.Type {
	t := G.TensorType{Dims: 4, Of: hm.TypeVariable('a')}
	if op.grad {
		return hm.NewFnType(t, t, t)
	}
	return hm.NewFnType(t, t)
}

func (op *reluPoolOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if op.grad {
		return tensor.Shape{op.n, op.c, op.h, op.w}, nil
	}
	return tensor.Shape{op.n, op.c, op.h / 2, op.w / 2}, nil
}

func (op *reluPoolOp) ReturnsPtr() bool     { return false }
func (op *reluPoolOp) CallsExtern() bool    { return false }
func (op *reluPoolOp) OverwritesInput() int { return -1 }
func (op *reluPoolOp) String() string {
	return fmt.Sprintf("vtrain.relupool{grad=%v %dx%dx%dx%d}", op.grad, op.n, op.c, op.h, op.w)
}
func (op *reluPoolOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *reluPoolOp) Hashcode() uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

func (op *reluPoolOp) Do(inputs ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, inputs...) }

// argmax returns the offset within x of the window's first maximum and its
// value; base is the window's top-left offset. Written as conditional
// assignments, which compile to conditional moves: the comparisons depend
// on the data and would mispredict as branches.
func (op *reluPoolOp) argmax(x []float32, base int) (int, float32) {
	w := x[base : base+op.w+2]
	a, b, c, d := w[0], w[1], w[op.w], w[op.w+1]
	i, v := base, a
	if b > v {
		i = base + 1
	}
	v = max(v, b)
	if c > v {
		i = base + op.w
	}
	v = max(v, c)
	if d > v {
		i = base + op.w + 1
	}
	return i, max(v, d)
}

func (op *reluPoolOp) UsePreallocDo(_ G.Value, inputs ...G.Value) (G.Value, error) {
	if len(inputs) != op.Arity() {
		return nil, fmt.Errorf("models: %v takes %d inputs, got %d", op, op.Arity(), len(inputs))
	}
	x, err := f32s(inputs[0])
	if err != nil {
		return nil, err
	}
	shape, _ := op.InferShape()
	res, dst := op.out.get(shape...)
	oh, ow := op.h/2, op.w/2
	if !op.grad {
		for p := 0; p < op.n*op.c; p++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					base := p*op.h*op.w + 2*y*op.w + 2*xx
					top, bot := x[base:base+2], x[base+op.w:base+op.w+2]
					dst[(p*oh+y)*ow+xx] = max(top[0], top[1], bot[0], bot[1], 0)
				}
			}
		}
		return res, nil
	}
	dy, err := f32s(inputs[1])
	if err != nil {
		return nil, err
	}
	clear(dst)
	for p := 0; p < op.n*op.c; p++ {
		for y := 0; y < oh; y++ {
			for xx := 0; xx < ow; xx++ {
				at, v := op.argmax(x, p*op.h*op.w+2*y*op.w+2*xx)
				if v > 0 {
					dst[at] = dy[(p*oh+y)*ow+xx]
				}
			}
		}
	}
	return res, nil
}

// DiffWRT implements G.SDOp.
func (op *reluPoolOp) DiffWRT(inputs int) []bool { return []bool{!op.grad} }

// SymDiff implements G.SDOp.
func (op *reluPoolOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if op.grad {
		return nil, fmt.Errorf("models: %v is not differentiable", op)
	}
	g := &reluPoolOp{grad: true, n: op.n, c: op.c, h: op.h, w: op.w}
	dx, err := G.ApplyOp(g, inputs[0], grad)
	return G.Nodes{dx}, err
}

// reluPool applies the fused ReLU and 2×2 max-pooling to x [N,C,H,W].
func reluPool(x *G.Node) (*G.Node, error) {
	s := x.Shape()
	if len(s) != 4 || s[2]%2 != 0 || s[3]%2 != 0 {
		return nil, fmt.Errorf("models: reluPool needs NCHW with even sides, got %v", s)
	}
	return G.ApplyOp(&reluPoolOp{n: s[0], c: s[1], h: s[2], w: s[3]}, x)
}
