//go:build openblas && cgo

package openblas

import (
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/blas"
)

// lcg fills v with values in [-1, 1) from a seeded generator.
func lcg(seed uint64, v []float32) {
	for i := range v {
		seed = seed*6364136223846793005 + 1442695040888963407
		v[i] = float32(int32(seed>>32)) / (1 << 31)
	}
}

// TestSgemm holds OpenBLAS's Sgemm to a float64 reference for every
// transpose combination, with strides wider than the matrices: C's
// padding starts as NaN and must stay NaN (no stray writes), and each
// entry must be within float32 rounding of the reference. The last two
// sizes are cut into pieces (maxPiece): of C's columns and of its rows.
func TestSgemm(t *testing.T) {
	trans := []blas.Transpose{blas.NoTrans, blas.Trans}
	for _, sz := range [][3]int{{1, 1, 1}, {7, 5, 9}, {64, 33, 300}, {20, 300, 200}, {700, 40, 50}} {
		m, n, k := sz[0], sz[1], sz[2]
		for _, tA := range trans {
			for _, tB := range trans {
				name := fmt.Sprintf("%dx%dx%d/%c%c", m, n, k, tA, tB)
				// op(A) is m×k, op(B) is k×n; stored row-major with 3 spare columns.
				ar, ac := m, k
				if tA == blas.Trans {
					ar, ac = k, m
				}
				br, bc := k, n
				if tB == blas.Trans {
					br, bc = n, k
				}
				lda, ldb, ldc := ac+3, bc+3, n+3
				a, b, c := make([]float32, ar*lda), make([]float32, br*ldb), make([]float32, m*ldc)
				lcg(1, a)
				lcg(2, b)
				lcg(3, c)
				for i := 0; i < m; i++ {
					for j := n; j < ldc; j++ {
						c[i*ldc+j] = float32(math.NaN())
					}
				}
				at := func(i, p int) float32 {
					if tA == blas.Trans {
						return a[p*lda+i]
					}
					return a[i*lda+p]
				}
				bt := func(p, j int) float32 {
					if tB == blas.Trans {
						return b[j*ldb+p]
					}
					return b[p*ldb+j]
				}
				const alpha, beta = 1.5, -0.5
				want, scale := make([]float64, m*n), make([]float64, m*n)
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						s, abs := 0.0, 0.0
						for p := 0; p < k; p++ {
							x := float64(at(i, p)) * float64(bt(p, j))
							s, abs = s+x, abs+math.Abs(x)
						}
						cij := float64(c[i*ldc+j])
						want[i*n+j] = alpha*s + beta*cij
						scale[i*n+j] = alpha*abs + math.Abs(beta*cij)
					}
				}
				Implementation{}.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
				for i := 0; i < m; i++ {
					for j := 0; j < ldc; j++ {
						got := float64(c[i*ldc+j])
						if j >= n {
							if !math.IsNaN(got) {
								t.Fatalf("%s: wrote C[%d][%d] = %v outside the matrix", name, i, j, got)
							}
							continue
						}
						tol := 2 * float64(k+2) * 0x1p-24 * scale[i*n+j]
						if d := math.Abs(got - want[i*n+j]); !(d <= tol) {
							t.Fatalf("%s: C[%d][%d] = %v, want %v (off by %.3g, tolerance %.3g)", name, i, j, got, want[i*n+j], d, tol)
						}
					}
				}
			}
		}
	}
}

// TestSgemv holds OpenBLAS's Sgemv to a float64 reference, both ways
// round and with unit and wider strides on x and y (y's gaps start as
// NaN and must stay NaN).
func TestSgemv(t *testing.T) {
	const m, n, lda = 37, 300, 303
	a := make([]float32, m*lda)
	lcg(4, a)
	for _, tA := range []blas.Transpose{blas.NoTrans, blas.Trans} {
		for _, inc := range []int{1, 2} {
			name := fmt.Sprintf("%c/inc=%d", tA, inc)
			lx, ly := n, m
			if tA == blas.Trans {
				lx, ly = m, n
			}
			x, y := make([]float32, lx*inc), make([]float32, ly*inc)
			lcg(5, x)
			lcg(6, y)
			for i := range y {
				if i%inc != 0 {
					y[i] = float32(math.NaN())
				}
			}
			const alpha, beta = 0.75, 2
			want, scale := make([]float64, ly), make([]float64, ly)
			for i := 0; i < ly; i++ {
				s, abs := 0.0, 0.0
				for j := 0; j < lx; j++ {
					var aij float32
					if tA == blas.Trans {
						aij = a[j*lda+i]
					} else {
						aij = a[i*lda+j]
					}
					v := float64(aij) * float64(x[j*inc])
					s, abs = s+v, abs+math.Abs(v)
				}
				yi := float64(y[i*inc])
				want[i] = alpha*s + beta*yi
				scale[i] = alpha*abs + math.Abs(beta*yi)
			}
			Implementation{}.Sgemv(tA, m, n, alpha, a, lda, x, inc, beta, y, inc)
			for i, got := range y {
				if i%inc != 0 {
					if !math.IsNaN(float64(got)) {
						t.Fatalf("%s: wrote y[%d] = %v between elements", name, i, got)
					}
					continue
				}
				tol := 2 * float64(lx+2) * 0x1p-24 * scale[i/inc]
				if d := math.Abs(float64(got) - want[i/inc]); !(d <= tol) {
					t.Fatalf("%s: y[%d] = %v, want %v (off by %.3g, tolerance %.3g)", name, i/inc, got, want[i/inc], d, tol)
				}
			}
		}
	}
}

// TestLibrary checks that the linked OpenBLAS answers: a kernel set and a
// thread count that SetThreads changes.
func TestLibrary(t *testing.T) {
	if !Available {
		t.Fatal("the openblas build does not report OpenBLAS available")
	}
	if Core() == "" {
		t.Error("OpenBLAS names no kernel set")
	}
	old := Threads()
	if old < 1 {
		t.Fatalf("OpenBLAS reports %d threads", old)
	}
	defer SetThreads(old)
	SetThreads(1)
	if got := Threads(); got != 1 {
		t.Errorf("after SetThreads(1), %d threads", got)
	}
	t.Logf("OpenBLAS core %s, %d threads", Core(), old)
}
