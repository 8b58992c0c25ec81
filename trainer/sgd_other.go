//go:build !amd64

package trainer

// sgdMomentumVec updates nothing: there is no vector loop on this
// architecture, and the scalar loop does all the work.
func sgdMomentumVec(params, grads, buf []float32, mu, eta float32) int { return 0 }

func hasVectorSGD() bool { return false }
