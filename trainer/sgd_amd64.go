package trainer

import "golang.org/x/sys/cpu"

// hasAVX2 selects the vector SGD loop. It computes the same operations in
// the same order on each element as the scalar loop (IEEE arithmetic is
// per lane, and no product is fused), so results do not depend on it.
var hasAVX2 = cpu.X86.HasAVX2

// sgdMomentumAVX2 runs the SGD-momentum update (no weight decay, not
// Nesterov) on the first len(grads) &^ 7 elements; params and buf must be
// at least as long as grads.
//
//go:noescape
func sgdMomentumAVX2(params, grads, buf []float32, mu, eta float32)

// sgdMomentumVec runs the vector loop where the CPU has one and returns
// how many elements it updated.
func sgdMomentumVec(params, grads, buf []float32, mu, eta float32) int {
	if !hasAVX2 || len(params) < len(grads) || len(buf) < len(grads) {
		return 0
	}
	sgdMomentumAVX2(params, grads, buf, mu, eta)
	return len(grads) &^ 7
}

func hasVectorSGD() bool { return hasAVX2 }
