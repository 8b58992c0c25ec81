//go:build openblas && cgo

// Package openblas routes single-precision matrix products to OpenBLAS
// through cgo. It is compiled only with the "openblas" build tag (needs
// libopenblas-dev); everything it does not override falls back to gonum's
// pure-Go BLAS, which it embeds.
package openblas

/*
#cgo LDFLAGS: -lopenblas
// Declared here rather than through cblas.h, whose location differs between
// distributions; the enum arguments are ints in the CBLAS ABI.
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
                 float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);
void cblas_sgemv(int order, int trans, int m, int n, float alpha,
                 const float *a, int lda, const float *x, int incx,
                 float beta, float *y, int incy);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);
char* openblas_get_corename(void);
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);

#include <stdlib.h>

// reselect_core makes OpenBLAS pick its kernels again after
// OPENBLAS_CORETYPE was set. Only meaningful for DYNAMIC_ARCH builds (all
// distribution builds), whose constructor chose a core before Go started.
static void reselect_core(const char *core) {
	setenv("OPENBLAS_CORETYPE", core, 1);
	gotoblas_dynamic_quit();
	gotoblas_dynamic_init();
}
*/
import "C"

import (
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/cpu"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// OpenBLAS chooses its kernels from the CPU model at load time. On CPUs it
// does not know (virtual machines often report a generic model) it falls
// back to "Prescott", plain SSE3 kernels that run a 64×784×256 product 4×
// slower than its AVX-512 ones on the same machine. When that happened and
// the user did not choose a core with OPENBLAS_CORETYPE, re-select the
// kernels that the CPU's features (as the OS enables them) support.
func init() {
	if _, set := os.LookupEnv("OPENBLAS_CORETYPE"); set {
		return
	}
	if !strings.EqualFold(Core(), "Prescott") {
		return
	}
	var core string
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL:
		core = "SkylakeX"
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		core = "Haswell"
	default:
		return
	}
	cs := C.CString(core)
	defer C.free(unsafe.Pointer(cs))
	C.reselect_core(cs)
}

// Core returns the name of the kernel set OpenBLAS uses (e.g. "SkylakeX").
func Core() string { return C.GoString(C.openblas_get_corename()) }

// Available reports whether this build links OpenBLAS.
const Available = true

const rowMajor = 101 // CblasRowMajor

// cblasTrans maps gonum's transpose flags ('N', 'T', 'C') to CBLAS's enum.
func cblasTrans(t blas.Transpose) C.int {
	switch t {
	case blas.Trans:
		return 112
	case blas.ConjTrans:
		return 113
	default:
		return 111
	}
}

// Implementation is gonum's BLAS with Sgemm and Sgemv served by OpenBLAS.
type Implementation struct {
	gonum.Implementation
}

// Sgemm computes C = alpha * op(A) * op(B) + beta * C in row-major order,
// a large product in pieces of at most about maxPiece multiply-adds.
func (Implementation) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || len(a) == 0 || len(b) == 0 {
		gonum.Implementation{}.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if m*n*k <= 2*maxPiece {
		sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if n <= m {
		// Pieces of C's rows: all of op(B), packed again for each piece.
		if pieceAlign*n*k > 2*maxPiece {
			sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
			return
		}
		rows := max(pieceAlign, maxPiece/(n*k)/pieceAlign*pieceAlign)
		for i := 0; i < m; i += rows {
			off := i * lda
			if tA != blas.NoTrans {
				off = i
			}
			sgemm(tA, tB, min(rows, m-i), n, k, alpha, a[off:], lda, b, ldb, beta, c[i*ldc:], ldc)
		}
		return
	}
	// Pieces of C's columns: all of op(A), packed again for each piece.
	if pieceAlign*m*k > 2*maxPiece {
		sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	cols := max(pieceAlign, maxPiece/(m*k)/pieceAlign*pieceAlign)
	for j := 0; j < n; j += cols {
		off := j
		if tB != blas.NoTrans {
			off = j * ldb
		}
		sgemm(tA, tB, m, min(cols, n-j), k, alpha, a, lda, b[off:], ldb, beta, c[j:], ldc)
	}
}

// maxPiece bounds the multiply-adds of one cgo call: Sgemm cuts a product
// of more than 2·maxPiece into pieces of C's rows or columns, pieceAlign
// or a multiple of it wide (about 10 µs each here), because of how Go
// schedules a thread in a long cgo call. The scheduler's monitor (sysmon,
// which ticks every 20 µs or more while it finds work) takes the processor
// (P) from a thread that it sees in the same cgo call at two ticks in a
// row and, when no P is idle (GOMAXPROCS=1), hands it to another thread: a
// futex wake-up, a thread that spins looking for work, a wake-up of the
// monitor when the call returns, and the monitor back at its fastest tick.
// A 64×784×256 product (300 µs) paid that every time, twice per MLP step,
// for 10–20% of the step's CPU time spent on other threads. A call
// shorter than a tick is never taken. Products of up to 2·maxPiece (the
// CNN's per-sample products, about 1M multiply-adds) stay whole; the MLP's
// ran 4% faster in pieces of maxPiece than of 2·maxPiece. So do products
// whose narrowest piece, pieceAlign wide, would exceed 2·maxPiece: their
// pieces would be long anyway, and each would pack a large operand again
// (the MLP's first product at batch 256 took 10% longer in such pieces).
//
// Each piece computes its elements of C as the whole product would, but
// for one path: on one thread OpenBLAS computes NoTrans·NoTrans products
// with α = 1, β = 0 and fewer than 7.3M multiply-adds with its "direct"
// SkylakeX kernel, whose roundings differ, and such pieces take it where
// the whole product did not. Results still depend only on the shapes, the
// build and the thread count.
const (
	maxPiece   = 1 << 19
	pieceAlign = 16
)

// sgemm is one cgo call of cblas_sgemm.
func sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	C.cblas_sgemm(rowMajor, cblasTrans(tA), cblasTrans(tB), C.int(m), C.int(n), C.int(k),
		C.float(alpha), (*C.float)(&a[0]), C.int(lda), (*C.float)(&b[0]), C.int(ldb),
		C.float(beta), (*C.float)(&c[0]), C.int(ldc))
}

// Sgemv computes y = alpha * op(A) * x + beta * y in row-major order.
func (Implementation) Sgemv(tA blas.Transpose, m, n int, alpha float32, a []float32, lda int, x []float32, incX int, beta float32, y []float32, incY int) {
	if m == 0 || n == 0 || incX <= 0 || incY <= 0 {
		gonum.Implementation{}.Sgemv(tA, m, n, alpha, a, lda, x, incX, beta, y, incY)
		return
	}
	C.cblas_sgemv(rowMajor, cblasTrans(tA), C.int(m), C.int(n), C.float(alpha),
		(*C.float)(&a[0]), C.int(lda), (*C.float)(&x[0]), C.int(incX),
		C.float(beta), (*C.float)(&y[0]), C.int(incY))
}

// Threads returns OpenBLAS's thread count.
func Threads() int { return int(C.openblas_get_num_threads()) }

// SetThreads sets OpenBLAS's thread count. Results of a matrix product can
// depend on it, so bit-exact replay needs the same count.
func SetThreads(n int) {
	if n > 0 {
		C.openblas_set_num_threads(C.int(n))
	}
}
