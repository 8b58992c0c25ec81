//go:build !(openblas && cgo)

package models

import G "gorgonia.org/gorgonia"

func blasImpl() G.BLAS { return G.WhichBLAS() }
