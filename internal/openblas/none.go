//go:build !(openblas && cgo)

// Package openblas routes single-precision matrix products to OpenBLAS
// through cgo when built with the "openblas" tag. In this build it is
// absent and vtrain uses gonum's pure-Go BLAS.
package openblas

// Available reports whether this build links OpenBLAS.
const Available = false

// Threads returns 0: there is no OpenBLAS in this build.
func Threads() int { return 0 }

// SetThreads does nothing in this build.
func SetThreads(int) {}

// Core returns "": there is no OpenBLAS in this build.
func Core() string { return "" }
