package models

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"

	"github.com/chewxy/hm"
	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/vtrain/vtrain/engine"
)

// convGeom is a 2-D convolution with square kernels, stride 1 and equal
// padding on every side, on NCHW tensors, with OIHW weights (PyTorch's
// layouts).
//
// The convolution runs as im2col and a matrix product, with "wide" columns
// that make im2col a few long copies: a sample is first copied into a
// zero-bordered buffer of hp×wp, and output position (y, x) is computed at
// wide position y·wp + x for x in [0, wp), of which only x < outW is kept.
// Column row (c, ki, kj) is then the contiguous run of the padded sample
// that starts at ki·wp + kj. The extra positions cost a few percent more
// arithmetic and save hundreds of short copies per sample.
type convGeom struct {
	N, C, H, W int // input
	O, K, P    int // output channels, kernel side, padding
}

func (g convGeom) outH() int { return g.H + 2*g.P - g.K + 1 }
func (g convGeom) outW() int { return g.W + 2*g.P - g.K + 1 }
func (g convGeom) ckk() int  { return g.C * g.K * g.K }
func (g convGeom) hw() int   { return g.outH() * g.outW() }
func (g convGeom) hp() int   { return g.H + 2*g.P }
func (g convGeom) wp() int   { return g.W + 2*g.P }

// wide is the number of wide output positions of one sample, up to and
// including the last one that is kept.
func (g convGeom) wide() int { return (g.outH()-1)*g.wp() + g.outW() }

// adjoint is the geometry of the input gradient as a convolution: dy
// (O channels) with the flipped, transposed kernel, padded by K−1−P.
func (g convGeom) adjoint() convGeom {
	return convGeom{N: g.N, C: g.O, H: g.outH(), W: g.outW(), O: g.C, K: g.K, P: g.K - 1 - g.P}
}

// pad copies sample n of x into xp (C × hp × wp), whose border stays zero.
func (g convGeom) pad(x []float32, n int, xp []float32) {
	hw, wp, plane := g.H*g.W, g.wp(), g.hp()*g.wp()
	for c := 0; c < g.C; c++ {
		src := x[(n*g.C+c)*hw:][:hw]
		dst := xp[c*plane:][:plane]
		for y := 0; y < g.H; y++ {
			copy(dst[(y+g.P)*wp+g.P:][:g.W], src[y*g.W:][:g.W])
		}
	}
}

// im2col writes the wide columns of the padded sample xp into cols, row r
// at cols[r·ld:][:wide].
func (g convGeom) im2col(xp, cols []float32, ld int) {
	L, wp, plane := g.wide(), g.wp(), g.hp()*g.wp()
	r := 0
	for c := 0; c < g.C; c++ {
		for ki := 0; ki < g.K; ki++ {
			for kj := 0; kj < g.K; kj++ {
				copy(cols[r*ld:][:L], xp[c*plane+ki*wp+kj:][:L])
				r++
			}
		}
	}
}

// narrow copies the kept positions of a wide [O × wide] result (row
// stride ld) into sample n of the NCHW tensor y.
func (g convGeom) narrow(wide []float32, ld int, n int, y []float32) {
	oh, ow, wp, hw := g.outH(), g.outW(), g.wp(), g.hw()
	for o := 0; o < g.O; o++ {
		src := wide[o*ld:]
		dst := y[(n*g.O+o)*hw:][:hw]
		for r := 0; r < oh; r++ {
			copy(dst[r*ow:][:ow], src[r*wp:][:ow])
		}
	}
}

func sgemm() blas.Float32 { return G.WhichBLAS() }

func f32s(v G.Value) ([]float32, error) {
	d, ok := v.(*tensor.Dense)
	if !ok {
		return nil, fmt.Errorf("models: op input: want a dense tensor, got %T", v)
	}
	if d.RequiresIterator() {
		d = tensor.Materialize(d).(*tensor.Dense)
	}
	s, ok := d.Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("models: op input: want float32 data, got %T", d.Data())
	}
	return s, nil
}

// opInputs checks that op got as many inputs as its arity and puts their
// float32 data in in (which holds at least that many).
func opInputs(op G.Op, inputs []G.Value, in [][]float32) error {
	if len(inputs) != op.Arity() || len(inputs) > len(in) {
		return fmt.Errorf("models: %v takes %d inputs, got %d", op, op.Arity(), len(inputs))
	}
	for i, v := range inputs {
		var err error
		if in[i], err = f32s(v); err != nil {
			return err
		}
	}
	return nil
}

// opHashcode is an op's Hashcode: FNV-1a of what its WriteHash writes.
func opHashcode(op interface{ WriteHash(hash.Hash) }) uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

// outBuf is an op's output tensor: allocated by the first call and
// reused by every later one, so that a step allocates nothing. The value
// lives until the op runs again, which in a Net is the next step.
type outBuf struct{ d *tensor.Dense }

func (b *outBuf) get(shape ...int) (*tensor.Dense, []float32) {
	if b.d == nil {
		b.d = tensor.New(tensor.WithShape(shape...), tensor.Of(tensor.Float32))
	} else if !b.d.Shape().Eq(shape) {
		// A consumer (Reshape) may have reshaped it in place.
		if err := b.d.Reshape(shape...); err != nil {
			panic(err) // same size by construction
		}
	}
	return b.d, b.d.Data().([]float32)
}

// bind makes dst the output's backing array (it must have the output's
// size): a gradient op then writes straight into the net's gradient vector.
func (b *outBuf) bind(dst []float32, shape tensor.Shape) {
	b.d = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(dst))
}

// outBinder is an op whose output can live in a caller's array.
type outBinder interface {
	bindOut(dst []float32) bool
}

func (op *convOp) bindOut(dst []float32) bool {
	if len(dst) != op.shape().TotalSize() {
		return false
	}
	op.out.bind(dst, op.shape())
	return true
}

// convKind selects what a convOp computes.
type convKind int

const (
	convForward convKind = iota // (x, w, b) → y
	convGradW                   // (x, dy) → dw
	convGradB                   // (dy) → db
	convGradX                   // (w, dy) → dx
	convUnpool                  // (y, dy) → d(conv output), for a pooled forward op
)

// poolCodes records, for each pooling window of a pooled forward op, which
// of its four elements was the first maximum (0..3, row-major), or 4 when
// the pooled value is not positive (ReLU passes no gradient). The forward
// op writes it and the unpool op of the same step reads it; the unpool op
// takes the forward op's output as an input, so it always runs after it.
type poolCodes struct {
	used  bool // the forward op was differentiated: record codes
	codes []uint8
}

// convOp is vtrain's convolution for Gorgonia: per sample, im2col into
// wide columns (see convGeom) and one matrix product, bias included, then
// (with pool) ReLU and max-pooling; its gradients are more convOps (an
// unpool op first when pooled, then dx, dw, db). The input gradient is a
// convolution of dy with the flipped kernel; the weight gradient is
// accumulated over the samples as dwᵀ += cols · dyᵀ, a product whose
// operands need no transposition inside the BLAS (the faster form for
// these shapes). Everything is done per sample so that the columns stay in
// the core's cache; outputs and scratch buffers are allocated once. Every
// loop runs in a fixed order, so results are deterministic.
type convOp struct {
	kind convKind
	g    convGeom
	// pool (forward and unpool ops): ReLU and 2×2 max-pooling with stride
	// 2 are fused into the forward op, y = max(0, max of each window) read
	// straight from the product, which saves writing and reading back the
	// unpooled output.
	pool *poolCodes

	out  outBuf
	xp   []float32 // scratch: one padded sample
	cols []float32 // scratch: columns of one sample
	wide []float32 // scratch: one sample's wide output, or its wide dyᵀ
	wt   []float32 // scratch: the flipped kernel, or dwᵀ
	tmp  []float32 // scratch: one sample's dwᵀ
}

func newConvOp(kind convKind, g convGeom) *convOp {
	return &convOp{kind: kind, g: g}
}

func grow(s *[]float32, n int) []float32 {
	if len(*s) != n {
		*s = make([]float32, n)
	}
	return *s
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

// pooled reports whether the op's output is pooled.
func (op *convOp) pooled() bool { return op.pool != nil && op.kind == convForward }

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
		if op.pooled() {
			return tensor.Shape{g.N, g.O, g.outH() / 2, g.outW() / 2}
		}
		return tensor.Shape{g.N, g.O, g.outH(), g.outW()}
	case convUnpool:
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
	return fmt.Sprintf("vtrain.conv%d{%+v pool=%v}", op.kind, op.g, op.pool != nil)
}
func (op *convOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op *convOp) Hashcode() uint32      { return opHashcode(op) }

func (op *convOp) Do(inputs ...G.Value) (G.Value, error) { return op.UsePreallocDo(nil, inputs...) }

func (op *convOp) UsePreallocDo(_ G.Value, inputs ...G.Value) (G.Value, error) {
	var in [3][]float32
	if err := opInputs(op, inputs, in[:]); err != nil {
		return nil, err
	}
	res, dst := op.out.get(op.shape()...)
	switch op.kind {
	case convForward:
		op.forward(in[0], in[1], in[2], dst)
	case convGradW:
		op.gradW(in[0], in[1], dst)
	case convGradB:
		op.gradB(in[0], dst)
	case convGradX:
		op.gradX(in[0], in[1], dst)
	case convUnpool:
		op.unpool(in[1], dst)
	}
	return res, nil
}

// conv computes y = w ⊛ x (+ bias[o] when bias is not nil) for geometry g
// sample by sample.
func (op *convOp) conv(g convGeom, x, w, bias, y []float32) {
	ckk, L := g.ckk(), g.wide()
	xp := grow(&op.xp, g.C*g.hp()*g.wp())
	wide := grow(&op.wide, g.O*L)
	cols := grow(&op.cols, ckk*L)
	b := sgemm()
	for n := 0; n < g.N; n++ {
		g.pad(x, n, xp)
		g.im2col(xp, cols, L)
		beta := float32(0)
		if bias != nil {
			for o := 0; o < g.O; o++ {
				row := wide[o*L : (o+1)*L]
				for i := range row {
					row[i] = bias[o]
				}
			}
			beta = 1
		}
		b.Sgemm(blas.NoTrans, blas.NoTrans, g.O, L, ckk, 1, w, ckk, cols, L, beta, wide, L)
		if op.pooled() {
			op.poolWide(wide, n, y)
		} else {
			g.narrow(wide, L, n, y)
		}
	}
}

// poolWide writes sample n's pooled output from its wide product (bias
// included), and the windows' codes when the op was differentiated.
func (op *convOp) poolWide(wide []float32, n int, y []float32) {
	g := op.g
	L, wp, ow := g.wide(), g.wp(), g.outW()
	ph, pw := g.outH()/2, ow/2
	var codes []uint8
	if op.pool.used {
		if len(op.pool.codes) != g.N*g.O*ph*pw {
			op.pool.codes = make([]uint8, g.N*g.O*ph*pw)
		}
		codes = op.pool.codes
	}
	for o := 0; o < g.O; o++ {
		src := wide[o*L:][:L]
		dst := y[(n*g.O+o)*ph*pw:][:ph*pw]
		var cd []uint8
		if codes != nil {
			cd = codes[(n*g.O+o)*ph*pw:][:ph*pw]
		}
		for r := 0; r < ph; r++ {
			top, bot := src[2*r*wp:][:ow], src[(2*r+1)*wp:][:ow]
			row := dst[r*pw:][:pw]
			for j := range row {
				m, k := pool4(top[2*j], top[2*j+1], bot[2*j], bot[2*j+1])
				row[j] = m
				if cd != nil {
					cd[r*pw+j] = k
				}
			}
		}
	}
}

// pool4 returns max(a, b, c, d, 0) with Go's semantics for max (NaN if
// any is NaN, and +0 above −0) and the window code: the index of the
// first of a, b, c, d equal to it when it is positive, 4 otherwise.
// Positive floats order as their bits do, and negative ones (−0 included)
// have the sign bit set, so without NaNs this is an integer max of the
// bits and 0: conditional moves, no branches on the data.
func pool4(a, b, c, d float32) (float32, uint8) {
	if a != a || b != b || c != c || d != d {
		return max(a, b, c, d, 0), 4
	}
	ia, ib, ic, id := int32(math.Float32bits(a)), int32(math.Float32bits(b)), int32(math.Float32bits(c)), int32(math.Float32bits(d))
	m := max(ia, ib, ic, id, 0)
	k := uint8(3)
	if ic == m {
		k = 2
	}
	if ib == m {
		k = 1
	}
	if ia == m {
		k = 0
	}
	if m == 0 {
		k = 4
	}
	return math.Float32frombits(uint32(m)), k
}

// unpool routes the pooled output's gradient dy to the window element its
// code names (zero elsewhere): the gradient at the product's output.
func (op *convOp) unpool(dy, dst []float32) {
	g := op.g
	oh, ow := g.outH(), g.outW()
	ph, pw := oh/2, ow/2
	codes := op.pool.codes[:g.N*g.O*ph*pw]
	for p := 0; p < g.N*g.O; p++ {
		gs, cs := dy[p*ph*pw:][:ph*pw], codes[p*ph*pw:][:ph*pw]
		d := dst[p*oh*ow:][:oh*ow]
		for r := 0; r < ph; r++ {
			dtop, dbot := d[2*r*ow:][:ow], d[(2*r+1)*ow:][:ow]
			gr, cr := gs[r*pw:][:pw], cs[r*pw:][:pw]
			for j, k := range cr {
				v := math.Float32bits(gr[j])
				dtop[2*j] = math.Float32frombits(v & mask(k == 0))
				dtop[2*j+1] = math.Float32frombits(v & mask(k == 1))
				dbot[2*j] = math.Float32frombits(v & mask(k == 2))
				dbot[2*j+1] = math.Float32frombits(v & mask(k == 3))
			}
		}
	}
}

func (op *convOp) forward(x, w, bias, y []float32) { op.conv(op.g, x, w, bias, y) }

// gradW computes dwᵀ = Σ_n cols_n · dy_nᵀ over wide positions (dy is zero
// on those that are not kept), then transposes it into dw.
func (op *convOp) gradW(x, dy, dw []float32) {
	g := op.g
	ckk, L, O := g.ckk(), g.wide(), g.O
	oh, ow, wp, hw := g.outH(), g.outW(), g.wp(), g.hw()
	xp := grow(&op.xp, g.C*g.hp()*g.wp())
	cols := grow(&op.cols, ckk*L)
	dyT := grow(&op.wide, L*O) // kept rows only are ever written
	dwT := grow(&op.wt, ckk*O)
	tmp := grow(&op.tmp, ckk*O)[:len(dwT)]
	b := sgemm()
	for n := 0; n < g.N; n++ {
		g.pad(x, n, xp)
		g.im2col(xp, cols, L)
		src := dy[n*O*hw:][:O*hw]
		for r := 0; r < oh; r++ {
			for j := 0; j < ow; j++ {
				dst := dyT[(r*wp+j)*O:][:O]
				at := r*ow + j
				for o := range dst {
					dst[o] = src[o*hw+at]
				}
			}
		}
		// Each sample's product goes to its own buffer and is then added:
		// accumulating in the product (β = 1) would make every weight's
		// gradient one chain of N·wide float32 additions, 4× less accurate
		// than this on the CNN's first layer.
		dst := dwT
		if n > 0 {
			dst = tmp
		}
		b.Sgemm(blas.NoTrans, blas.NoTrans, ckk, O, L, 1, cols, L, dyT, O, 0, dst, O)
		if n > 0 {
			for i, v := range tmp {
				dwT[i] += v
			}
		}
	}
	for o := 0; o < O; o++ {
		row := dw[o*ckk:][:ckk]
		for r := range row {
			row[r] = dwT[r*O+o]
		}
	}
}

// gradB computes db[o] = Σ_n (Σ_p dy[n,o,p]), each inner sum in order
// over p; four channels run side by side so that their sums' additions
// overlap instead of waiting on each other.
func (op *convOp) gradB(dy, db []float32) {
	g := op.g
	hw := g.hw()
	clear(db)
	for n := 0; n < g.N; n++ {
		o := 0
		for ; o+4 <= g.O; o += 4 {
			r0 := dy[(n*g.O+o)*hw:][:hw]
			r1 := dy[(n*g.O+o+1)*hw:][:len(r0)]
			r2 := dy[(n*g.O+o+2)*hw:][:len(r0)]
			r3 := dy[(n*g.O+o+3)*hw:][:len(r0)]
			var s0, s1, s2, s3 float32
			for i, v := range r0 {
				s0 += v
				s1 += r1[i]
				s2 += r2[i]
				s3 += r3[i]
			}
			db[o] += s0
			db[o+1] += s1
			db[o+2] += s2
			db[o+3] += s3
		}
		for ; o < g.O; o++ {
			s := float32(0)
			for _, v := range dy[(n*g.O+o)*hw:][:hw] {
				s += v
			}
			db[o] += s
		}
	}
}

// gradX computes dx as the convolution of dy with the kernel flipped in
// both spatial axes and with its channel axes swapped.
func (op *convOp) gradX(w, dy, dx []float32) {
	g := op.g
	K := g.K
	wf := grow(&op.wt, g.O*g.ckk())
	for c := 0; c < g.C; c++ {
		for o := 0; o < g.O; o++ {
			for a := 0; a < K; a++ {
				for bb := 0; bb < K; bb++ {
					wf[((c*g.O+o)*K+a)*K+bb] = w[((o*g.C+c)*K+(K-1-a))*K+(K-1-bb)]
				}
			}
		}
	}
	op.conv(g.adjoint(), dy, wf, nil, dx)
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
	if op.pool != nil {
		op.pool.used = true
		up := newConvOp(convUnpool, op.g)
		up.pool = op.pool
		var err error
		if grad, err = G.ApplyOp(up, output, grad); err != nil {
			return nil, err
		}
	}
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

// conv2d applies vtrain's convolution with bias to x [N,C,H,W], followed,
// with pool, by ReLU and 2×2 max-pooling.
func conv2d(x, w, b *G.Node, pad int, pool bool) (*G.Node, error) {
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 4 || len(ws) != 4 || xs[1] != ws[1] || ws[2] != ws[3] {
		return nil, fmt.Errorf("models: conv2d shapes %v * %v", xs, ws)
	}
	if pad < 0 || pad >= ws[2] {
		return nil, fmt.Errorf("models: conv2d padding %d with kernel %d", pad, ws[2])
	}
	g := convGeom{N: xs[0], C: xs[1], H: xs[2], W: xs[3], O: ws[0], K: ws[2], P: pad}
	op := newConvOp(convForward, g)
	if pool {
		if g.outH()%2 != 0 || g.outW()%2 != 0 {
			return nil, fmt.Errorf("models: pooling needs even sides, got %dx%d", g.outH(), g.outW())
		}
		op.pool = &poolCodes{}
	}
	return G.ApplyOp(op, x, w, b)
}

// mask is all ones when b holds and zero otherwise (compiled to a SETcc,
// not a branch: which way these comparisons go is random).
func mask(b bool) uint32 {
	var u uint32
	if b {
		u = 1
	}
	return -u
}

// engineGeom is the geometry as engine.ConvGeom.
func (g convGeom) engineGeom() engine.ConvGeom {
	return engine.ConvGeom{N: g.N, C: g.C, H: g.H, W: g.W, O: g.O, K: g.K, P: g.P}
}

// lower implements lowerer, on whole-batch im2col: the forward op is
// Im2Col, one product W·cols into channel-major [O, N·H'·W'], FromCNP
// with the bias back to NCHW, then (pooled) ReLUPool, keeping the
// pre-pool output for the unpool op. The gradients share per graph node
// the input's columns and dy in channel-major order: dW = dyᶜ·colsᵀ,
// db = dyᶜ·1, and dx = Col2Im(Wᵀ·dyᶜ).
func (op *convOp) lower(l *lowering, node *G.Node, in []engine.Buffer) (engine.Buffer, error) {
	g := op.g.engineGeom()
	kids := children(node)
	hw, nhw, ckk := g.OutH()*g.OutW(), g.NHW(), g.CKK()
	type preKey struct{ fwd *G.Node }
	switch op.kind {
	case convForward:
		x, w, b := in[0], in[1], in[2]
		cols, err := l.im2col(kids[0], x, g)
		if err != nil {
			return nil, err
		}
		t, err := l.alloc(g.O * nhw)
		if err != nil {
			return nil, err
		}
		pre := t // the unpooled output, NCHW
		if op.pooled() {
			if pre, err = l.alloc(g.O * nhw); err != nil {
				return nil, err
			}
			l.memo[preKey{node}] = pre
		}
		out, err := l.out(node)
		if err != nil {
			return nil, err
		}
		if !op.pooled() {
			pre = out
		}
		pooled := op.pooled()
		l.emit(op, func(e engine.Engine) error {
			if err := e.Gemm(false, false, g.O, nhw, ckk, 1, w, cols, 0, t); err != nil {
				return err
			}
			if err := e.FromCNP(pre, t, b, g.N, g.O, hw); err != nil {
				return err
			}
			if !pooled {
				return nil
			}
			return e.ReLUPool(out, pre, g.N*g.O, g.OutH(), g.OutW())
		})
		return out, nil
	case convUnpool:
		pre, ok := l.memo[preKey{kids[0]}]
		if !ok {
			return nil, unsupported(node, "an unpool op whose first input is not its pooled convolution")
		}
		out, err := l.out(node)
		if err != nil {
			return nil, err
		}
		dy := in[1]
		l.emit(op, func(e engine.Engine) error { return e.ReLUPoolGrad(out, dy, pre, g.N*g.O, g.OutH(), g.OutW()) })
		return out, nil
	case convGradW:
		cols, err := l.im2col(kids[0], in[0], g)
		if err != nil {
			return nil, err
		}
		dt, err := l.toCNP(kids[1], in[1], g)
		if err != nil {
			return nil, err
		}
		out, err := l.out(node)
		if err != nil {
			return nil, err
		}
		l.emit(op, func(e engine.Engine) error { return e.Gemm(false, true, g.O, ckk, nhw, 1, dt, cols, 0, out) })
		return out, nil
	case convGradB:
		dt, err := l.toCNP(kids[0], in[0], g)
		if err != nil {
			return nil, err
		}
		ones, err := l.ones(nhw)
		if err != nil {
			return nil, err
		}
		out, err := l.out(node)
		if err != nil {
			return nil, err
		}
		l.emit(op, func(e engine.Engine) error { return e.Gemm(false, false, g.O, 1, nhw, 1, dt, ones, 0, out) })
		return out, nil
	case convGradX:
		w := in[0]
		dt, err := l.toCNP(kids[1], in[1], g)
		if err != nil {
			return nil, err
		}
		dcols, err := l.alloc(ckk * nhw)
		if err != nil {
			return nil, err
		}
		out, err := l.out(node)
		if err != nil {
			return nil, err
		}
		l.emit(op, func(e engine.Engine) error {
			if err := e.Gemm(true, false, ckk, nhw, g.O, 1, w, dt, 0, dcols); err != nil {
				return err
			}
			return e.Col2Im(out, dcols, g)
		})
		return out, nil
	}
	return nil, unsupported(node, "an unknown convolution kind")
}

// im2col returns the columns of x (node xn) for geometry g, emitting the
// Im2Col kernel the first time they are needed.
func (l *lowering) im2col(xn *G.Node, x engine.Buffer, g engine.ConvGeom) (engine.Buffer, error) {
	type key struct {
		x *G.Node
		g engine.ConvGeom
	}
	return l.memoize(key{xn, g}, func() (engine.Buffer, error) {
		cols, err := l.alloc(g.CKK() * g.NHW())
		if err != nil {
			return nil, err
		}
		l.emit(stringer("im2col"), func(e engine.Engine) error { return e.Im2Col(cols, x, g) })
		return cols, nil
	})
}

// toCNP returns dy (node dn, N·O·H'·W') in channel-major order, emitting
// the ToCNP kernel the first time it is needed.
func (l *lowering) toCNP(dn *G.Node, dy engine.Buffer, g engine.ConvGeom) (engine.Buffer, error) {
	type key struct {
		dy *G.Node
		g  engine.ConvGeom
	}
	return l.memoize(key{dn, g}, func() (engine.Buffer, error) {
		dt, err := l.alloc(g.O * g.NHW())
		if err != nil {
			return nil, err
		}
		l.emit(stringer("to-cnp"), func(e engine.Engine) error { return e.ToCNP(dt, dy, g.N, g.O, g.OutH()*g.OutW()) })
		return dt, nil
	})
}
