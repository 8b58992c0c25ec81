package models

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// convGeom is a 2-D convolution with square kernels, stride 1 and equal
// padding on every side, on NCHW tensors, with OIHW weights (PyTorch's
// layouts).
type convGeom struct {
	N, C, H, W int // input
	O, K, P    int // output channels, kernel side, padding
}

func (g convGeom) outH() int { return g.H + 2*g.P - g.K + 1 }
func (g convGeom) outW() int { return g.W + 2*g.P - g.K + 1 }
func (g convGeom) ckk() int  { return g.C * g.K * g.K }
func (g convGeom) hw() int   { return g.outH() * g.outW() }

// span returns the output columns [x0, x1) whose input column x+kj-P lies
// inside [0, W), so that the inner loops run without bounds tests.
func (g convGeom) span(kj int) (x0, x1 int) {
	x0 = max(0, g.P-kj)
	x1 = min(g.outW(), g.W+g.P-kj)
	return x0, max(x0, x1)
}

// im2col writes sample n of x as a [C·K·K, H'·W'] matrix into cols.
func (g convGeom) im2col(x []float32, n int, cols []float32) {
	oh, ow := g.outH(), g.outW()
	hw := oh * ow
	for c := 0; c < g.C; c++ {
		src := x[(n*g.C+c)*g.H*g.W : (n*g.C+c+1)*g.H*g.W]
		for ki := 0; ki < g.K; ki++ {
			for kj := 0; kj < g.K; kj++ {
				row := cols[((c*g.K+ki)*g.K+kj)*hw : ((c*g.K+ki)*g.K+kj+1)*hw]
				x0, x1 := g.span(kj)
				for y := 0; y < oh; y++ {
					iy := y + ki - g.P
					dst := row[y*ow : (y+1)*ow]
					if iy < 0 || iy >= g.H {
						clear(dst)
						continue
					}
					clear(dst[:x0])
					copy(dst[x0:x1], src[iy*g.W+x0+kj-g.P:iy*g.W+x1+kj-g.P])
					clear(dst[x1:])
				}
			}
		}
	}
}

// col2im adds a [C·K·K, H'·W'] matrix into sample n of dx (the adjoint of
// im2col), in a fixed order.
func (g convGeom) col2im(cols []float32, n int, dx []float32) {
	oh, ow := g.outH(), g.outW()
	hw := oh * ow
	for c := 0; c < g.C; c++ {
		dst := dx[(n*g.C+c)*g.H*g.W : (n*g.C+c+1)*g.H*g.W]
		for ki := 0; ki < g.K; ki++ {
			for kj := 0; kj < g.K; kj++ {
				row := cols[((c*g.K+ki)*g.K+kj)*hw : ((c*g.K+ki)*g.K+kj+1)*hw]
				x0, x1 := g.span(kj)
				for y := 0; y < oh; y++ {
					iy := y + ki - g.P
					if iy < 0 || iy >= g.H {
						continue
					}
					line := dst[iy*g.W+x0+kj-g.P : iy*g.W+x1+kj-g.P]
					src := row[y*ow+x0 : y*ow+x1]
					for i, v := range src {
						line[i] += v
					}
				}
			}
		}
	}
}

func sgemm() blas.Float32 { return G.WhichBLAS() }

func f32s(v G.Value) ([]float32, error) {
	d, ok := v.(*tensor.Dense)
	if !ok {
		return nil, fmt.Errorf("models: conv: want a dense tensor, got %T", v)
	}
	if d.RequiresIterator() {
		d = tensor.Materialize(d).(*tensor.Dense)
	}
	s, ok := d.Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("models: conv: want float32 data, got %T", d.Data())
	}
	return s, nil
}

func out(prealloc G.Value, shape ...int) (*tensor.Dense, []float32) {
	if d, ok := prealloc.(*tensor.Dense); ok && d.Shape().TotalSize() == tensor.Shape(shape).TotalSize() {
		return d, d.Data().([]float32)
	}
	d := tensor.New(tensor.WithShape(shape...), tensor.Of(tensor.Float32))
	return d, d.Data().([]float32)
}

// convKind selects what a convOp computes.
type convKind int

const (
	convForward convKind = iota // (x, w, b) → y
	convGradW                   // (x, dy) → dw
	convGradB                   // (dy) → db
	convGradX                   // (w, dy) → dx
)

// convOp is vtrain's fused convolution for Gorgonia: per sample, im2col
// into a reused buffer and one matrix product straight into the NCHW
// output, bias included; its gradients are three more convOps. Gorgonia's
// own Conv2d materialises the whole batch's columns, transposes the result
// and allocates 46 MB per CNN step; this one allocates nothing but its
// outputs. Every loop runs in a fixed order, so results are deterministic.
type convOp struct {
	kind convKind
	g    convGeom
	cols []float32 // scratch: one sample's columns
}

func newConvOp(kind convKind, g convGeom) *convOp {
	return &convOp{kind: kind, g: g, cols: make([]float32, g.ckk()*g.hw())}
}

func (op *convOp) Arity() int {
	switch op.kind {
	case convForward:
		return 3
	case convGradB:
		return 1
	default:
		return 2
	}
}

func (op *convOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	t4 := G.TensorType{Dims: 4, Of: a}
	switch op.kind {
	case convForward:
		return hm.NewFnType(t4, t4, G.TensorType{Dims: 1, Of: a}, t4)
	case convGradB:
		return hm.NewFnType(t4, G.TensorType{Dims: 1, Of: a})
	default:
		return hm.NewFnType(t4, t4, t4)
	}
}

func (op *convOp) shape() tensor.Shape {
	g := op.g
	switch op.kind {
	case convForward:
		return tensor.Shape{g.N, g.O, g.outH(), g.outW()}
	case convGradW:
		return tensor.Shape{g.O, g.C, g.K, g.K}
	case convGradB:
		return tensor.Shape{g.O}
	default:
		return tensor.Shape{g.N, g.C, g.H, g.W}
	}
}

func (op *convOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape(), nil }
func (op *convOp) ReturnsPtr() bool                               { return false }
func (op *convOp) CallsExtern() bool                              { return false }
func (op *convOp) OverwritesInput() int                           { return -1 }
func (op *convOp) String() string {
	return fmt.Sprintf("vtrain.conv%d{%+v}", op.kind, op.g)
}
func (op *convOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *convOp) Hashcode() uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

func (op *convOp) Do(inputs ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, inputs...) }

func (op *convOp) UsePreallocDo(prealloc G.Value, inputs ...G.Value) (G.Value, error) {
	if len(inputs) != op.Arity() {
		return nil, fmt.Errorf("models: %v takes %d inputs, got %d", op, op.Arity(), len(inputs))
	}
	in := make([][]float32, len(inputs))
	for i, v := range inputs {
		var err error
		if in[i], err = f32s(v); err != nil {
			return nil, err
		}
	}
	g := op.g
	ckk, hw := g.ckk(), g.hw()
	res, dst := out(prealloc, op.shape()...)
	b := sgemm()
	switch op.kind {
	case convForward:
		x, w, bias := in[0], in[1], in[2]
		for n := 0; n < g.N; n++ {
			g.im2col(x, n, op.cols)
			y := dst[n*g.O*hw : (n+1)*g.O*hw]
			for o := 0; o < g.O; o++ {
				row := y[o*hw : (o+1)*hw]
				for i := range row {
					row[i] = bias[o]
				}
			}
			b.Sgemm(blas.NoTrans, blas.NoTrans, g.O, hw, ckk, 1, w, ckk, op.cols, hw, 1, y, hw)
		}
	case convGradW:
		x, dy := in[0], in[1]
		clear(dst)
		for n := 0; n < g.N; n++ {
			g.im2col(x, n, op.cols)
			b.Sgemm(blas.NoTrans, blas.Trans, g.O, ckk, hw, 1, dy[n*g.O*hw:(n+1)*g.O*hw], hw, op.cols, hw, 1, dst, ckk)
		}
	case convGradB:
		dy := in[0]
		clear(dst)
		for n := 0; n < g.N; n++ {
			for o := 0; o < g.O; o++ {
				s := float32(0)
				for _, v := range dy[(n*g.O+o)*hw : (n*g.O+o+1)*hw] {
					s += v
				}
				dst[o] += s
			}
		}
	case convGradX:
		w, dy := in[0], in[1]
		clear(dst)
		for n := 0; n < g.N; n++ {
			b.Sgemm(blas.Trans, blas.NoTrans, ckk, hw, g.O, 1, w, ckk, dy[n*g.O*hw:(n+1)*g.O*hw], hw, 0, op.cols, hw)
			g.col2im(op.cols, n, dst)
		}
	}
	return res, nil
}

// DiffWRT implements G.SDOp for the forward op: x, w and b.
func (op *convOp) DiffWRT(inputs int) []bool {
	if op.kind != convForward {
		return make([]bool, inputs)
	}
	return []bool{true, true, true}
}

// SymDiff implements G.SDOp: the gradients of (x, w, b) given dL/dy.
func (op *convOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if op.kind != convForward {
		return nil, fmt.Errorf("models: %v is not differentiable", op)
	}
	x, w := inputs[0], inputs[1]
	dx, err := G.ApplyOp(newConvOp(convGradX, op.g), w, grad)
	if err != nil {
		return nil, err
	}
	dw, err := G.ApplyOp(newConvOp(convGradW, op.g), x, grad)
	if err != nil {
		return nil, err
	}
	db, err := G.ApplyOp(newConvOp(convGradB, op.g), grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dw, db}, nil
}

// conv2d applies vtrain's fused convolution with bias to x [N,C,H,W].
func conv2d(x, w, b *G.Node, pad int) (*G.Node, error) {
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 4 || len(ws) != 4 || xs[1] != ws[1] || ws[2] != ws[3] {
		return nil, fmt.Errorf("models: conv2d shapes %v * %v", xs, ws)
	}
	g := convGeom{N: xs[0], C: xs[1], H: xs[2], W: xs[3], O: ws[0], K: ws[2], P: pad}
	return G.ApplyOp(newConvOp(convForward, g), x, w, b)
}
