package models

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// reluPoolOp is ReLU followed by 2×2 max-pooling with stride 2 on NCHW
// tensors with even sides, fused: y = max(0, max of each window). Its
// gradient op (grad true) takes (x, y, dy) and routes each dy to the first
// maximum of its window in row-major order when that maximum is positive:
// the first element of the window equal to y, when y > 0 (no branches:
// which element wins is random, and mispredicted branches cost more than
// the arithmetic). It replaces Gorgonia's Rectify + MaxPool2D, which cost
// a quarter of a CNN step.
type reluPoolOp struct {
	grad       bool
	n, c, h, w int // input shape
	out        outBuf
}

func (op *reluPoolOp) Arity() int {
	if op.grad {
		return 3
	}
	return 1
}

func (op *reluPoolOp) Type() hm.Type {
	t := G.TensorType{Dims: 4, Of: hm.TypeVariable('a')}
	if op.grad {
		return hm.NewFnType(t, t, t, t)
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

// mask is all ones when b holds and zero otherwise (compiled to a SETcc,
// not a branch).
func mask(b bool) uint32 {
	var u uint32
	if b {
		u = 1
	}
	return -u
}

func (op *reluPoolOp) UsePreallocDo(_ G.Value, inputs ...G.Value) (G.Value, error) {
	if len(inputs) != op.Arity() {
		return nil, fmt.Errorf("models: %v takes %d inputs, got %d", op, op.Arity(), len(inputs))
	}
	var in [3][]float32
	for i, v := range inputs {
		var err error
		if in[i], err = f32s(v); err != nil {
			return nil, err
		}
	}
	shape, _ := op.InferShape()
	res, dst := op.out.get(shape...)
	oh, ow, w := op.h/2, op.w/2, op.w
	x := in[0]
	if !op.grad {
		for p := 0; p < op.n*op.c; p++ {
			src := x[p*op.h*w:][:op.h*w]
			out := dst[p*oh*ow:][:oh*ow]
			for y := 0; y < oh; y++ {
				top, bot := src[2*y*w:][:w], src[(2*y+1)*w:][:w]
				row := out[y*ow:][:ow]
				for j := range row {
					row[j] = max(top[2*j], top[2*j+1], bot[2*j], bot[2*j+1], 0)
				}
			}
		}
		return res, nil
	}
	yv, dy := in[1], in[2]
	for p := 0; p < op.n*op.c; p++ {
		src := x[p*op.h*w:][:op.h*w]
		dx := dst[p*op.h*w:][:op.h*w]
		ys, gs := yv[p*oh*ow:][:oh*ow], dy[p*oh*ow:][:oh*ow]
		for y := 0; y < oh; y++ {
			top, bot := src[2*y*w:][:w], src[(2*y+1)*w:][:w]
			dtop, dbot := dx[2*y*w:][:w], dx[(2*y+1)*w:][:w]
			yr, gr := ys[y*ow:][:ow], gs[y*ow:][:ow]
			for j := range yr {
				m := yr[j]
				g := math.Float32bits(gr[j]) & mask(m > 0)
				k := mask(top[2*j] == m)
				dtop[2*j] = math.Float32frombits(g & k)
				g &^= k
				k = mask(top[2*j+1] == m)
				dtop[2*j+1] = math.Float32frombits(g & k)
				g &^= k
				k = mask(bot[2*j] == m)
				dbot[2*j] = math.Float32frombits(g & k)
				g &^= k
				dbot[2*j+1] = math.Float32frombits(g & mask(bot[2*j+1] == m))
			}
		}
	}
	return res, nil
}

// DiffWRT implements G.SDOp.
func (op *reluPoolOp) DiffWRT(inputs int) []bool {
	if op.grad {
		return make([]bool, inputs)
	}
	return []bool{true}
}

// SymDiff implements G.SDOp.
func (op *reluPoolOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if op.grad {
		return nil, fmt.Errorf("models: %v is not differentiable", op)
	}
	g := &reluPoolOp{grad: true, n: op.n, c: op.c, h: op.h, w: op.w}
	dx, err := G.ApplyOp(g, inputs[0], output, grad)
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
