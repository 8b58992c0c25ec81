package models

import (
	"github.com/vtrain/vtrain/internal/openblas"
	G "gorgonia.org/gorgonia"
)

func init() {
	if openblas.Available {
		G.Use(blasImpl())
	}
}

// BLAS names the matrix-product backend compiled in: "openblas" with the
// openblas build tag, otherwise "gonum" (pure Go).
func BLAS() string {
	if openblas.Available {
		return "openblas"
	}
	return "gonum"
}

// SetBLASThreads sets the BLAS thread count where the backend has one
// (OpenBLAS); gonum's BLAS sizes its own parallelism.
func SetBLASThreads(n int) { openblas.SetThreads(n) }
