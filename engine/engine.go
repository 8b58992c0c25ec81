// Package engine is the seam between vtrain's models and the device that
// runs them. An Engine owns float32 buffers on its device and runs the
// handful of kernels that vtrain's models need: matrix products, bias,
// ReLU and tanh, elementwise sums and copies, softmax cross-entropy,
// column sums, im2col and its adjoint, fused ReLU and 2×2 max-pooling, and
// the SGD and AdamW updates (Optimizer runs those on device buffers).
//
// The engine knows no model: package models lowers a model's
// differentiated Gorgonia graph onto these kernels (models.Compile), so
// that a model is defined once, as a graph, and every engine runs that
// graph.
//
// CPU is the reference implementation, in plain Go. The CUDA engine
// (package cuda, build tag vtcuda) implements the same interface on
// gorgonia.org/cu. enginetest holds the conformance suite that both must
// pass, including lowered graphs against Gorgonia's own VM.
package engine

import (
	"errors"
	"fmt"
)

// Errors.
var (
	// ErrShape is wrapped by errors about buffer sizes that do not match
	// an operation's dimensions: a caller's mistake, reported rather than
	// risked as a stray write on a device.
	ErrShape = errors.New("engine: shape mismatch")
	// ErrDevice is wrapped by errors from a device (allocation, launch,
	// copy, no device at all).
	ErrDevice = errors.New("engine: device error")
)

// Buffer is an engine's float32 array. A buffer belongs to the engine that
// made it; passing it to another engine is a caller's mistake.
type Buffer interface {
	// Len is the number of float32 elements.
	Len() int
	// Slice returns elements [off, off+n) as a buffer that shares memory.
	// It panics if the window is out of range (a caller's mistake).
	Slice(off, n int) Buffer
}

// Engine runs kernels on one device. Operations are ordered: each sees the
// effects of the ones before it. Download and Sync wait for them to finish.
// Goroutines that work on buffers of their own may share an engine (a node
// trains a round while it replays a challenged segment on its one device):
// each one's operations keep their order, and nothing but the buffers is
// shared (enginetest.Concurrent). Two goroutines on one buffer are a
// caller's mistake.
type Engine interface {
	// Name says what the engine runs on, e.g. "cpu" or "cuda:0 (NVIDIA H100)".
	Name() string
	// Alloc returns a zeroed buffer of n elements (n ≥ 1).
	Alloc(n int) (Buffer, error)
	// Free releases a buffer made by Alloc (not a slice of one).
	Free(b Buffer)
	// Upload copies src into dst; the lengths must match.
	Upload(dst Buffer, src []float32) error
	// Download copies src into dst; the lengths must match.
	Download(dst []float32, src Buffer) error

	// Gemm computes C = alpha·op(A)·op(B) + beta·C on row-major matrices,
	// with op(A) m×k, op(B) k×n and C m×n; op transposes when asked, so A is
	// stored k×m when transA. With beta = 0, C's old contents (even NaN) do
	// not matter.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a, b Buffer, beta float32, c Buffer) error
	// AddRowVector adds v (cols) to every row of y (rows×cols).
	AddRowVector(y, v Buffer, rows, cols int) error
	// SumRows sets dst (cols) to the column sums of x (rows×cols).
	SumRows(dst, x Buffer, rows, cols int) error
	// Copy copies src into dst; the lengths must match.
	Copy(dst, src Buffer) error
	// Add sets dst = a + b elementwise; dst may be a or b.
	Add(dst, a, b Buffer) error
	// Tanh sets y = tanh(x) elementwise; y may be x.
	Tanh(y, x Buffer) error
	// TanhGrad sets dx = dy·(1 − y²) elementwise, where y is Tanh's
	// output; dx may be dy.
	TanhGrad(dx, dy, y Buffer) error
	// ReLU replaces y by max(y, 0) in place.
	ReLU(y Buffer) error
	// ReLUGrad zeroes dy where y ≤ 0 (y is the ReLU's output).
	ReLUGrad(dy, y Buffer) error
	// SoftmaxCrossEntropy takes logits (rows×cols) and labels (rows class
	// indices stored as floats). It writes each row's loss −log softmax(z)[y]
	// into loss (rows) and the gradient of the mean loss,
	// (softmax(z) − onehot(y)) / rows, into dlogits (rows×cols).
	SoftmaxCrossEntropy(dlogits, loss, logits, labels Buffer, rows, cols int) error
	// SGD is one step of SGD with momentum (PyTorch's form):
	// g += wd·θ; buf = momentum·buf + g; θ −= lr·(nesterov ? g + momentum·buf : buf).
	SGD(params, grads, buf Buffer, lr, momentum, wd float32, nesterov bool) error
	// AdamW is one step of AdamW (PyTorch's form) with the step's scalars
	// precomputed: m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
	// θ = θ·decay − stepSize·m / (√v / sqrtBC2 + eps).
	AdamW(params, grads, m, v Buffer, beta1, beta2, eps, decay, stepSize, sqrtBC2 float32) error

	// Im2Col writes x (N·C·H·W) as the [C·K·K, N·H'·W'] matrix cols, whose
	// column n·H'·W' + p holds the zero-padded patch under output pixel p
	// of sample n; row (c·K + ki)·K + kj is input channel c at kernel
	// offset (ki, kj).
	Im2Col(cols, x Buffer, g ConvGeom) error
	// Col2Im sets dx (N·C·H·W) to the adjoint of Im2Col applied to cols.
	Col2Im(dx, cols Buffer, g ConvGeom) error
	// FromCNP sets y[n, c, p] = t[c, n·hw + p] + bias[c]: a product laid out
	// channel-major back to NCHW, with the bias added.
	FromCNP(y, t, bias Buffer, n, c, hw int) error
	// ToCNP sets t[c, n·hw + p] = y[n, c, p].
	ToCNP(t, y Buffer, n, c, hw int) error
	// ReLUPool sets y (planes × h/2 × w/2) to the maximum of each 2×2
	// window of x (planes × h × w) and 0; h and w are even.
	ReLUPool(y, x Buffer, planes, h, w int) error
	// ReLUPoolGrad sets dx (planes × h × w) to ReLUPool's gradient: each
	// window's dy goes to its first maximum (in the order top-left,
	// top-right, bottom-left, bottom-right) when that maximum is positive;
	// every other element is zero.
	ReLUPoolGrad(dx, dy, x Buffer, planes, h, w int) error

	// Sync waits for every operation so far.
	Sync() error
	// Close releases the engine and everything it allocated.
	Close() error
}

// ConvGeom is a 2-D convolution with square K×K kernels, stride 1 and P
// zeros of padding on every side, from N·C·H·W inputs to N·O·H'·W'
// outputs (PyTorch's NCHW and OIHW layouts).
type ConvGeom struct {
	N, C, H, W int
	O, K, P    int
}

// OutH is the output height H'.
func (g ConvGeom) OutH() int { return g.H + 2*g.P - g.K + 1 }

// OutW is the output width W'.
func (g ConvGeom) OutW() int { return g.W + 2*g.P - g.K + 1 }

// CKK is the patch size C·K·K.
func (g ConvGeom) CKK() int { return g.C * g.K * g.K }

// NHW is the number of output pixels over the batch, N·H'·W'.
func (g ConvGeom) NHW() int { return g.N * g.OutH() * g.OutW() }

// CheckConv validates Im2Col's and Col2Im's buffers.
func CheckConv(op string, cols, x Buffer, g ConvGeom) error {
	if g.N < 1 || g.C < 1 || g.H < 1 || g.W < 1 || g.O < 1 || g.K < 1 || g.P < 0 || g.OutH() < 1 || g.OutW() < 1 {
		return shapeErr(op, "geometry %+v", g)
	}
	if cols.Len() != g.CKK()*g.NHW() || x.Len() != g.N*g.C*g.H*g.W {
		return shapeErr(op, "%+v with buffers of %d and %d", g, cols.Len(), x.Len())
	}
	return nil
}

// CheckCNP validates FromCNP's and ToCNP's buffers (bias may be nil).
func CheckCNP(op string, y, t, bias Buffer, n, c, hw int) error {
	if n < 1 || c < 1 || hw < 1 || y.Len() != n*c*hw || t.Len() != n*c*hw || (bias != nil && bias.Len() != c) {
		return shapeErr(op, "%d×%d×%d with buffers of %d and %d", n, c, hw, y.Len(), t.Len())
	}
	return nil
}

// CheckPool validates ReLUPool's and ReLUPoolGrad's buffers.
func CheckPool(op string, small, big Buffer, planes, h, w int) error {
	if planes < 1 || h < 2 || w < 2 || h%2 != 0 || w%2 != 0 || big.Len() != planes*h*w || small.Len() != planes*(h/2)*(w/2) {
		return shapeErr(op, "%d planes of %d×%d with buffers of %d and %d", planes, h, w, small.Len(), big.Len())
	}
	return nil
}

func shapeErr(op string, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrShape, op, fmt.Sprintf(format, a...))
}

// CheckGemm validates Gemm's dimensions against the buffers' lengths.
func CheckGemm(m, n, k int, a, b, c Buffer) error {
	if m < 1 || n < 1 || k < 1 {
		return shapeErr("gemm", "dimensions %d×%d×%d", m, n, k)
	}
	if a.Len() != m*k || b.Len() != k*n || c.Len() != m*n {
		return shapeErr("gemm", "%d×%d·%d×%d→%d×%d with buffers of %d, %d, %d", m, k, k, n, m, n, a.Len(), b.Len(), c.Len())
	}
	return nil
}

// CheckRows validates a rows×cols matrix x and a cols vector v.
func CheckRows(op string, x, v Buffer, rows, cols int) error {
	if rows < 1 || cols < 1 || x.Len() != rows*cols || v.Len() != cols {
		return shapeErr(op, "%d×%d with buffers of %d and %d", rows, cols, x.Len(), v.Len())
	}
	return nil
}

// CheckSame validates buffers that must have one length.
func CheckSame(op string, bs ...Buffer) error {
	for _, b := range bs[1:] {
		if b.Len() != bs[0].Len() {
			return shapeErr(op, "buffers of %d and %d elements", bs[0].Len(), b.Len())
		}
	}
	return nil
}

// CheckSoftmax validates SoftmaxCrossEntropy's buffers.
func CheckSoftmax(dlogits, loss, logits, labels Buffer, rows, cols int) error {
	if rows < 1 || cols < 1 || logits.Len() != rows*cols || dlogits.Len() != rows*cols || loss.Len() != rows || labels.Len() != rows {
		return shapeErr("softmax", "%d×%d with buffers of %d, %d, %d, %d", rows, cols, dlogits.Len(), loss.Len(), logits.Len(), labels.Len())
	}
	return nil
}
