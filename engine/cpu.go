package engine

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// cpuBuf is a window on a Go slice.
type cpuBuf struct{ d []float32 }

func (b cpuBuf) Len() int { return len(b.d) }

func (b cpuBuf) Slice(off, n int) Buffer {
	if off < 0 || n < 0 || off+n > len(b.d) {
		panic(fmt.Sprintf("engine: Slice(%d, %d) of %d elements", off, n, len(b.d)))
	}
	return cpuBuf{b.d[off : off+n : off+n]}
}

// cpu is the reference engine: plain Go loops, and gonum's BLAS for Gemm.
type cpu struct{}

// CPU returns the reference engine.
func CPU() Engine { return cpu{} }

func data(b Buffer) []float32 {
	c, ok := b.(cpuBuf)
	if !ok {
		panic(fmt.Sprintf("engine: a %T passed to the CPU engine", b))
	}
	return c.d
}

func (cpu) Name() string { return "cpu" }

func (cpu) Alloc(n int) (Buffer, error) {
	if n < 1 {
		return nil, shapeErr("alloc", "%d elements", n)
	}
	return cpuBuf{make([]float32, n)}, nil
}

func (cpu) Free(Buffer) {}

func (cpu) Upload(dst Buffer, src []float32) error {
	if dst.Len() != len(src) {
		return shapeErr("upload", "%d elements into %d", len(src), dst.Len())
	}
	copy(data(dst), src)
	return nil
}

func (cpu) Download(dst []float32, src Buffer) error {
	if src.Len() != len(dst) {
		return shapeErr("download", "%d elements into %d", src.Len(), len(dst))
	}
	copy(dst, data(src))
	return nil
}

func (cpu) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b Buffer, beta float32, c Buffer) error {
	if err := CheckGemm(m, n, k, a, b, c); err != nil {
		return err
	}
	ta, lda := blas.NoTrans, k
	if transA {
		ta, lda = blas.Trans, m
	}
	tb, ldb := blas.NoTrans, n
	if transB {
		tb, ldb = blas.Trans, k
	}
	cd := data(c)
	if beta == 0 {
		clear(cd) // BLAS would compute 0·NaN
	}
	blas32.Implementation().Sgemm(ta, tb, m, n, k, alpha, data(a), lda, data(b), ldb, beta, cd, n)
	return nil
}

func (cpu) AddRowVector(y, v Buffer, rows, cols int) error {
	if err := CheckRows("add-row-vector", y, v, rows, cols); err != nil {
		return err
	}
	yd, vd := data(y), data(v)
	for r := range rows {
		row := yd[r*cols : (r+1)*cols]
		for c, x := range vd {
			row[c] += x
		}
	}
	return nil
}

func (cpu) SumRows(dst, x Buffer, rows, cols int) error {
	if err := CheckRows("sum-rows", x, dst, rows, cols); err != nil {
		return err
	}
	dd, xd := data(dst), data(x)
	clear(dd)
	for r := range rows {
		for c, v := range xd[r*cols : (r+1)*cols] {
			dd[c] += v
		}
	}
	return nil
}

func (cpu) Copy(dst, src Buffer) error {
	if err := CheckSame("copy", dst, src); err != nil {
		return err
	}
	copy(data(dst), data(src))
	return nil
}

func (cpu) Add(dst, a, b Buffer) error {
	if err := CheckSame("add", dst, a, b); err != nil {
		return err
	}
	dd, ad, bd := data(dst), data(a), data(b)
	for i, v := range ad {
		dd[i] = v + bd[i]
	}
	return nil
}

func (cpu) Tanh(y, x Buffer) error {
	if err := CheckSame("tanh", y, x); err != nil {
		return err
	}
	yd := data(y)
	for i, v := range data(x) {
		yd[i] = float32(math.Tanh(float64(v)))
	}
	return nil
}

func (cpu) TanhGrad(dx, dy, y Buffer) error {
	if err := CheckSame("tanh-grad", dx, dy, y); err != nil {
		return err
	}
	dd, gd := data(dx), data(dy)
	for i, v := range data(y) {
		dd[i] = gd[i] * (1 - v*v)
	}
	return nil
}

func (cpu) ReLU(y Buffer) error {
	yd := data(y)
	for i, v := range yd {
		if !(v > 0) {
			yd[i] = 0
		}
	}
	return nil
}

func (cpu) ReLUGrad(dy, y Buffer) error {
	if err := CheckSame("relu-grad", dy, y); err != nil {
		return err
	}
	dd, yd := data(dy), data(y)
	for i, v := range yd {
		if !(v > 0) {
			dd[i] = 0
		}
	}
	return nil
}

func (cpu) SoftmaxCrossEntropy(dlogits, loss, logits, labels Buffer, rows, cols int) error {
	if err := CheckSoftmax(dlogits, loss, logits, labels, rows, cols); err != nil {
		return err
	}
	dd, ld, zd, yd := data(dlogits), data(loss), data(logits), data(labels)
	inv := 1 / float32(rows)
	for r := range rows {
		z := zd[r*cols : (r+1)*cols]
		d := dd[r*cols : (r+1)*cols]
		y := int(yd[r])
		if y < 0 || y >= cols || float32(y) != yd[r] {
			return shapeErr("softmax", "label %v in row %d is not a class of %d", yd[r], r, cols)
		}
		m := z[0]
		for _, v := range z[1:] {
			m = max(m, v)
		}
		var s float32
		for c, v := range z {
			e := float32(math.Exp(float64(v - m)))
			d[c] = e
			s += e
		}
		ld[r] = float32(math.Log(float64(s))) - (z[y] - m)
		for c := range d {
			d[c] = d[c] / s * inv
		}
		d[y] -= inv
	}
	return nil
}

func (cpu) SGD(params, grads, buf Buffer, lr, momentum, wd float32, nesterov bool) error {
	if err := CheckSame("sgd", params, grads, buf); err != nil {
		return err
	}
	p, g, b := data(params), data(grads), data(buf)
	for i := range p {
		gi := g[i] + wd*p[i]
		bi := momentum*b[i] + gi
		b[i] = bi
		if nesterov {
			bi = gi + momentum*bi
		}
		p[i] -= lr * bi
	}
	return nil
}

func (cpu) AdamW(params, grads, m, v Buffer, beta1, beta2, eps, decay, stepSize, sqrtBC2 float32) error {
	if err := CheckSame("adamw", params, grads, m, v); err != nil {
		return err
	}
	p, g, md, vd := data(params), data(grads), data(m), data(v)
	for i, gi := range g {
		mi := beta1*md[i] + (1-beta1)*gi
		vi := beta2*vd[i] + (1-beta2)*gi*gi
		md[i], vd[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))/sqrtBC2 + eps
		p[i] = p[i]*decay - stepSize*(mi/denom)
	}
	return nil
}

func (cpu) Im2Col(cols, x Buffer, g ConvGeom) error {
	if err := CheckConv("im2col", cols, x, g); err != nil {
		return err
	}
	cd, xd := data(cols), data(x)
	oh, ow, nhw := g.OutH(), g.OutW(), g.NHW()
	for c := range g.C {
		for ki := range g.K {
			for kj := range g.K {
				row := cd[((c*g.K+ki)*g.K+kj)*nhw:][:nhw]
				for n := range g.N {
					plane := xd[(n*g.C+c)*g.H*g.W:][:g.H*g.W]
					for oy := range oh {
						for ox := range ow {
							iy, ix := oy+ki-g.P, ox+kj-g.P
							v := float32(0)
							if iy >= 0 && iy < g.H && ix >= 0 && ix < g.W {
								v = plane[iy*g.W+ix]
							}
							row[(n*oh+oy)*ow+ox] = v
						}
					}
				}
			}
		}
	}
	return nil
}

func (cpu) Col2Im(dx, cols Buffer, g ConvGeom) error {
	if err := CheckConv("col2im", cols, dx, g); err != nil {
		return err
	}
	cd, dd := data(cols), data(dx)
	clear(dd)
	oh, ow, nhw := g.OutH(), g.OutW(), g.NHW()
	for c := range g.C {
		for ki := range g.K {
			for kj := range g.K {
				row := cd[((c*g.K+ki)*g.K+kj)*nhw:][:nhw]
				for n := range g.N {
					plane := dd[(n*g.C+c)*g.H*g.W:][:g.H*g.W]
					for oy := range oh {
						for ox := range ow {
							iy, ix := oy+ki-g.P, ox+kj-g.P
							if iy >= 0 && iy < g.H && ix >= 0 && ix < g.W {
								plane[iy*g.W+ix] += row[(n*oh+oy)*ow+ox]
							}
						}
					}
				}
			}
		}
	}
	return nil
}

func (cpu) FromCNP(y, t, bias Buffer, n, c, hw int) error {
	if bias == nil {
		return shapeErr("from-cnp", "a bias is required")
	}
	if err := CheckCNP("from-cnp", y, t, bias, n, c, hw); err != nil {
		return err
	}
	yd, td, bd := data(y), data(t), data(bias)
	for i := range n {
		for ch := range c {
			dst, src := yd[(i*c+ch)*hw:][:hw], td[(ch*n+i)*hw:][:hw]
			for p, v := range src {
				dst[p] = v + bd[ch]
			}
		}
	}
	return nil
}

func (cpu) ToCNP(t, y Buffer, n, c, hw int) error {
	if err := CheckCNP("to-cnp", y, t, nil, n, c, hw); err != nil {
		return err
	}
	yd, td := data(y), data(t)
	for i := range n {
		for ch := range c {
			copy(td[(ch*n+i)*hw:][:hw], yd[(i*c+ch)*hw:][:hw])
		}
	}
	return nil
}

// poolArgmax returns the offset of the first maximum of the 2×2 window at
// base in a plane of width w, and the maximum.
func poolArgmax(x []float32, base, w int) (int, float32) {
	at, v := base, x[base]
	for _, o := range [3]int{base + 1, base + w, base + w + 1} {
		if x[o] > v {
			at, v = o, x[o]
		}
	}
	return at, v
}

func (cpu) ReLUPool(y, x Buffer, planes, h, w int) error {
	if err := CheckPool("relu-pool", y, x, planes, h, w); err != nil {
		return err
	}
	yd, xd := data(y), data(x)
	oh, ow := h/2, w/2
	for p := range planes {
		for oy := range oh {
			for ox := range ow {
				_, v := poolArgmax(xd, p*h*w+2*oy*w+2*ox, w)
				yd[(p*oh+oy)*ow+ox] = max(v, 0)
			}
		}
	}
	return nil
}

func (cpu) ReLUPoolGrad(dx, dy, x Buffer, planes, h, w int) error {
	if err := CheckPool("relu-pool-grad", dy, x, planes, h, w); err != nil {
		return err
	}
	if err := CheckSame("relu-pool-grad", dx, x); err != nil {
		return err
	}
	dd, gd, xd := data(dx), data(dy), data(x)
	clear(dd)
	oh, ow := h/2, w/2
	for p := range planes {
		for oy := range oh {
			for ox := range ow {
				at, v := poolArgmax(xd, p*h*w+2*oy*w+2*ox, w)
				if v > 0 {
					dd[at] = gd[(p*oh+oy)*ow+ox]
				}
			}
		}
	}
	return nil
}

func (cpu) Sync() error  { return nil }
func (cpu) Close() error { return nil }
