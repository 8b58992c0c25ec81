//go:build openblas && cgo

package models

import (
	"github.com/vtrain/vtrain/internal/openblas"
	G "gorgonia.org/gorgonia"
)

func blasImpl() G.BLAS { return openblas.Implementation{} }
