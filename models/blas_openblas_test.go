//go:build openblas

package models

import (
	"fmt"
	"testing"

	"github.com/vtrain/vtrain/internal/openblas"
	G "gorgonia.org/gorgonia"
)

// TestOpenBLASInUse fails a build with the openblas tag that does not use
// OpenBLAS: without cgo (CGO_ENABLED=0, or no C compiler) the tag is
// silently ignored and Gorgonia keeps gonum's pure-Go BLAS.
func TestOpenBLASInUse(t *testing.T) {
	if BLAS() != "openblas" {
		t.Fatalf("built with -tags openblas, but the backend is %q: is cgo enabled?", BLAS())
	}
	if impl := fmt.Sprintf("%T", G.WhichBLAS()); impl != "openblas.Implementation" {
		t.Fatalf("Gorgonia multiplies with %s, not OpenBLAS", impl)
	}
	t.Logf("OpenBLAS core %s, %d threads", openblas.Core(), openblas.Threads())
}
