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

func (cpu) Sync() error  { return nil }
func (cpu) Close() error { return nil }
