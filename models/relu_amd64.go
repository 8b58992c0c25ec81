package models

import "golang.org/x/sys/cpu"

// hasAVX2 selects the vector ReLU loop. Per lane it computes what the
// scalar loop computes: the comparison v ≥ 0 (ordered: false for NaN) as
// a mask, the mask AND the bits of 1 as the factor, and one product, so
// that ±0, NaN and infinities come out with the same bits
// (TestReLUVectorMatchesScalar).
var hasAVX2 = cpu.X86.HasAVX2

// reluMulAVX2 sets dst[i] = v[i] · (x[i] ≥ 0 ? 1 : 0) for i < len(dst) &^ 7;
// x and v must be at least as long as dst.
//
//go:noescape
func reluMulAVX2(dst, x, v []float32)

// reluMulVec runs the vector loop where the CPU has one and returns how
// many elements it wrote.
func reluMulVec(dst, x, v []float32) int {
	if !hasAVX2 || len(x) < len(dst) || len(v) < len(dst) {
		return 0
	}
	reluMulAVX2(dst, x, v)
	return len(dst) &^ 7
}
