//go:build vtcuda

package cuda

/*
#cgo LDFLAGS: -lcublas
#include <cublas_v2.h>

// Row-major C (m×n) = alpha·op(A)·op(B) + beta·C is column-major
// Cᵀ = alpha·op(B)ᵀ·op(A)ᵀ + beta·Cᵀ: swap the operands.
static int vt_sgemm(cublasHandle_t h, int ta, int tb, int m, int n, int k, float alpha,
		unsigned long long a, unsigned long long b, float beta, unsigned long long c) {
	int lda = ta ? m : k;
	int ldb = tb ? k : n;
	return (int)cublasSgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
		n, m, k, &alpha, (const float*)b, ldb, (const float*)a, lda, &beta, (float*)c, n);
}
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"gorgonia.org/cu"
	"gorgonia.org/cu/nvrtc"

	"github.com/vtrain/vtrain/engine"
)

// buf is a window of device memory.
type buf struct {
	ptr cu.DevicePtr
	n   int
}

func (b buf) Len() int { return b.n }

func (b buf) Slice(off, n int) engine.Buffer {
	if off < 0 || n < 0 || off+n > b.n {
		panic(fmt.Sprintf("cuda: Slice(%d, %d) of %d elements", off, n, b.n))
	}
	return buf{ptr: b.ptr + cu.DevicePtr(4*off), n: n}
}

func dev(b engine.Buffer) buf {
	d, ok := b.(buf)
	if !ok {
		panic(fmt.Sprintf("cuda: a %T passed to the CUDA engine", b))
	}
	return d
}

// Engine runs engine.Engine's kernels on one NVIDIA GPU: plain device
// allocations (never managed memory), cuBLAS for products, NVRTC-compiled
// kernels for the rest, all on the context's default stream so that they
// run in order.
type Engine struct {
	mu     sync.Mutex // one operation at a time: node trains on a goroutine of its own
	name   string
	ctx    cu.CUContext
	blas   C.cublasHandle_t
	mod    cu.Module
	fns    map[string]cu.Function
	allocs map[cu.DevicePtr]bool
}

// Open makes a context on device ordinal, compiles the kernels for it and
// creates a cuBLAS handle.
func Open(ordinal int) (engine.Engine, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", engine.ErrDevice, err)
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("%w: no CUDA device %d (%d found)", engine.ErrDevice, ordinal, n)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d, err := cu.GetDevice(ordinal)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", engine.ErrDevice, err)
	}
	name, _ := d.Name()
	major, minor, err := d.ComputeCapability()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", engine.ErrDevice, err)
	}
	ctx, err := d.MakeContext(cu.SchedAuto)
	if err != nil {
		return nil, fmt.Errorf("%w: context on device %d: %v", engine.ErrDevice, ordinal, err)
	}
	e := &Engine{name: fmt.Sprintf("cuda:%d (%s, sm_%d%d)", ordinal, name, major, minor), ctx: ctx,
		fns: map[string]cu.Function{}, allocs: map[cu.DevicePtr]bool{}}
	fail := func(err error) (engine.Engine, error) {
		e.ctx.Destroy()
		return nil, err
	}
	prog, err := nvrtc.CreateProgram(kernelSource, "vtrain_kernels.cu")
	if err != nil {
		return fail(fmt.Errorf("%w: nvrtc: %v", engine.ErrDevice, err))
	}
	defer prog.Destroy()
	if err := prog.Compile(fmt.Sprintf("--gpu-architecture=compute_%d%d", major, minor), "--std=c++11"); err != nil {
		log, _ := prog.GetLog()
		return fail(fmt.Errorf("%w: nvrtc: %v: %s", engine.ErrDevice, err, log))
	}
	ptx, err := prog.GetPTX()
	if err != nil {
		return fail(fmt.Errorf("%w: nvrtc: %v", engine.ErrDevice, err))
	}
	if e.mod, err = cu.LoadData(ptx); err != nil {
		return fail(fmt.Errorf("%w: loading kernels: %v", engine.ErrDevice, err))
	}
	for _, k := range kernelNames {
		if e.fns[k], err = e.mod.Function(k); err != nil {
			return fail(fmt.Errorf("%w: kernel %s: %v", engine.ErrDevice, k, err))
		}
	}
	if st := C.cublasCreate(&e.blas); st != C.CUBLAS_STATUS_SUCCESS {
		return fail(fmt.Errorf("%w: cublasCreate: status %d", engine.ErrDevice, int(st)))
	}
	return e, nil
}

// enter makes the engine's context current on a locked OS thread: the
// driver API's current context is per thread, and goroutines move.
func (e *Engine) enter() error {
	e.mu.Lock()
	runtime.LockOSThread()
	if err := cu.SetCurrentContext(e.ctx); err != nil {
		runtime.UnlockOSThread()
		e.mu.Unlock()
		return fmt.Errorf("%w: %v", engine.ErrDevice, err)
	}
	return nil
}

func (e *Engine) exit() {
	runtime.UnlockOSThread()
	e.mu.Unlock()
}

func (e *Engine) Name() string { return e.name }

func (e *Engine) Alloc(n int) (engine.Buffer, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: alloc: %d elements", engine.ErrShape, n)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	p, err := cu.MemAlloc(int64(4 * n))
	if err != nil {
		return nil, fmt.Errorf("%w: allocating %d bytes: %v", engine.ErrDevice, 4*n, err)
	}
	if err := cu.MemsetD32(p, 0, int64(n)); err != nil {
		cu.MemFree(p)
		return nil, fmt.Errorf("%w: %v", engine.ErrDevice, err)
	}
	e.allocs[p] = true
	return buf{ptr: p, n: n}, nil
}

func (e *Engine) Free(b engine.Buffer) {
	d := dev(b)
	if e.enter() != nil {
		return
	}
	defer e.exit()
	if e.allocs[d.ptr] {
		cu.MemFree(d.ptr)
		delete(e.allocs, d.ptr)
	}
}

func (e *Engine) Upload(dst engine.Buffer, src []float32) error {
	d := dev(dst)
	if d.n != len(src) {
		return fmt.Errorf("%w: upload: %d elements into %d", engine.ErrShape, len(src), d.n)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := cu.MemcpyHtoD(d.ptr, unsafe.Pointer(&src[0]), int64(4*len(src))); err != nil {
		return fmt.Errorf("%w: upload: %v", engine.ErrDevice, err)
	}
	return nil
}

func (e *Engine) Download(dst []float32, src engine.Buffer) error {
	s := dev(src)
	if s.n != len(dst) {
		return fmt.Errorf("%w: download: %d elements into %d", engine.ErrShape, s.n, len(dst))
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := cu.MemcpyDtoH(unsafe.Pointer(&dst[0]), s.ptr, int64(4*len(dst))); err != nil {
		return fmt.Errorf("%w: download: %v", engine.ErrDevice, err)
	}
	return nil
}

// arg is one kernel argument in an 8-byte slot.
type arg = uint64

func ptrArg(b engine.Buffer) arg { return arg(dev(b).ptr) }
func intArg(v int) arg           { return arg(int64(v)) }
func f32Arg(v float32) arg       { return arg(math.Float32bits(v)) }

const block = 256

// launch runs kernel name on enough blocks of 256 threads to cover n, or
// on grid blocks when grid > 0.
func (e *Engine) launch(name string, n, grid int, args ...arg) error {
	if grid == 0 {
		grid = (n + block - 1) / block
	}
	params := make([]unsafe.Pointer, len(args))
	for i := range args {
		params[i] = unsafe.Pointer(&args[i])
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := e.fns[name].Launch(grid, 1, 1, block, 1, 1, 0, cu.Stream{}, params); err != nil {
		return fmt.Errorf("%w: launching %s: %v", engine.ErrDevice, name, err)
	}
	return nil
}

func (e *Engine) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b engine.Buffer, beta float32, c engine.Buffer) error {
	if err := engine.CheckGemm(m, n, k, a, b, c); err != nil {
		return err
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	ta, tb := C.int(0), C.int(0)
	if transA {
		ta = 1
	}
	if transB {
		tb = 1
	}
	st := C.vt_sgemm(e.blas, ta, tb, C.int(m), C.int(n), C.int(k), C.float(alpha),
		C.ulonglong(dev(a).ptr), C.ulonglong(dev(b).ptr), C.float(beta), C.ulonglong(dev(c).ptr))
	if st != 0 {
		return fmt.Errorf("%w: cublasSgemm: status %d", engine.ErrDevice, int(st))
	}
	return nil
}

func (e *Engine) AddRowVector(y, v engine.Buffer, rows, cols int) error {
	if err := engine.CheckRows("add-row-vector", y, v, rows, cols); err != nil {
		return err
	}
	return e.launch("add_row_vector", rows*cols, 0, ptrArg(y), ptrArg(v), intArg(rows), intArg(cols))
}

func (e *Engine) SumRows(dst, x engine.Buffer, rows, cols int) error {
	if err := engine.CheckRows("sum-rows", x, dst, rows, cols); err != nil {
		return err
	}
	return e.launch("sum_rows", cols, 0, ptrArg(dst), ptrArg(x), intArg(rows), intArg(cols))
}

func (e *Engine) Copy(dst, src engine.Buffer) error {
	if err := engine.CheckSame("copy", dst, src); err != nil {
		return err
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := cu.MemcpyDtoD(dev(dst).ptr, dev(src).ptr, int64(4*dst.Len())); err != nil {
		return fmt.Errorf("%w: copy: %v", engine.ErrDevice, err)
	}
	return nil
}

func (e *Engine) Add(dst, a, b engine.Buffer) error {
	if err := engine.CheckSame("add", dst, a, b); err != nil {
		return err
	}
	return e.launch("add", dst.Len(), 0, ptrArg(dst), ptrArg(a), ptrArg(b), intArg(dst.Len()))
}

func (e *Engine) Tanh(y, x engine.Buffer) error {
	if err := engine.CheckSame("tanh", y, x); err != nil {
		return err
	}
	return e.launch("tanh_fwd", y.Len(), 0, ptrArg(y), ptrArg(x), intArg(y.Len()))
}

func (e *Engine) TanhGrad(dx, dy, y engine.Buffer) error {
	if err := engine.CheckSame("tanh-grad", dx, dy, y); err != nil {
		return err
	}
	return e.launch("tanh_grad", dx.Len(), 0, ptrArg(dx), ptrArg(dy), ptrArg(y), intArg(dx.Len()))
}

func (e *Engine) ReLU(y engine.Buffer) error {
	return e.launch("relu", y.Len(), 0, ptrArg(y), intArg(y.Len()))
}

func (e *Engine) ReLUGrad(dy, y engine.Buffer) error {
	if err := engine.CheckSame("relu-grad", dy, y); err != nil {
		return err
	}
	return e.launch("relu_grad", y.Len(), 0, ptrArg(dy), ptrArg(y), intArg(y.Len()))
}

// SoftmaxCrossEntropy checks labels on the host before the launch: a label
// outside [0, cols) must not become an out-of-bounds read on the device.
func (e *Engine) SoftmaxCrossEntropy(dlogits, loss, logits, labels engine.Buffer, rows, cols int) error {
	if err := engine.CheckSoftmax(dlogits, loss, logits, labels, rows, cols); err != nil {
		return err
	}
	ys := make([]float32, rows)
	if err := e.Download(ys, labels); err != nil { // before the launch takes the lock
		return err
	}
	for r, y := range ys {
		if y < 0 || int(y) >= cols || float32(int(y)) != y {
			return fmt.Errorf("%w: softmax: label %v in row %d is not a class of %d", engine.ErrShape, y, r, cols)
		}
	}
	return e.launch("softmax_xent", 0, rows, ptrArg(dlogits), ptrArg(loss), ptrArg(logits), ptrArg(labels), intArg(rows), intArg(cols))
}

func convArgs(g engine.ConvGeom) []arg {
	return []arg{intArg(g.N), intArg(g.C), intArg(g.H), intArg(g.W), intArg(g.K), intArg(g.P), intArg(g.OutH()), intArg(g.OutW())}
}

func (e *Engine) Im2Col(cols, x engine.Buffer, g engine.ConvGeom) error {
	if err := engine.CheckConv("im2col", cols, x, g); err != nil {
		return err
	}
	return e.launch("im2col", cols.Len(), 0, append([]arg{ptrArg(cols), ptrArg(x)}, convArgs(g)...)...)
}

func (e *Engine) Col2Im(dx, cols engine.Buffer, g engine.ConvGeom) error {
	if err := engine.CheckConv("col2im", cols, dx, g); err != nil {
		return err
	}
	return e.launch("col2im", dx.Len(), 0, append([]arg{ptrArg(dx), ptrArg(cols)}, convArgs(g)...)...)
}

func (e *Engine) FromCNP(y, t, bias engine.Buffer, n, c, hw int) error {
	if bias == nil {
		return fmt.Errorf("%w: from-cnp: a bias is required", engine.ErrShape)
	}
	if err := engine.CheckCNP("from-cnp", y, t, bias, n, c, hw); err != nil {
		return err
	}
	return e.launch("from_cnp", y.Len(), 0, ptrArg(y), ptrArg(t), ptrArg(bias), intArg(n), intArg(c), intArg(hw))
}

func (e *Engine) ToCNP(t, y engine.Buffer, n, c, hw int) error {
	if err := engine.CheckCNP("to-cnp", y, t, nil, n, c, hw); err != nil {
		return err
	}
	return e.launch("to_cnp", t.Len(), 0, ptrArg(t), ptrArg(y), intArg(n), intArg(c), intArg(hw))
}

func (e *Engine) ReLUPool(y, x engine.Buffer, planes, h, w int) error {
	if err := engine.CheckPool("relu-pool", y, x, planes, h, w); err != nil {
		return err
	}
	return e.launch("relu_pool", y.Len(), 0, ptrArg(y), ptrArg(x), intArg(planes), intArg(h), intArg(w))
}

func (e *Engine) ReLUPoolGrad(dx, dy, x engine.Buffer, planes, h, w int) error {
	if err := engine.CheckPool("relu-pool-grad", dy, x, planes, h, w); err != nil {
		return err
	}
	if err := engine.CheckSame("relu-pool-grad", dx, x); err != nil {
		return err
	}
	return e.launch("relu_pool_grad", dx.Len(), 0, ptrArg(dx), ptrArg(dy), ptrArg(x), intArg(planes), intArg(h), intArg(w))
}

func (e *Engine) SGD(params, grads, mom engine.Buffer, lr, momentum, wd float32, nesterov bool) error {
	if err := engine.CheckSame("sgd", params, grads, mom); err != nil {
		return err
	}
	nest := 0
	if nesterov {
		nest = 1
	}
	n := params.Len()
	return e.launch("sgd", n, 0, ptrArg(params), ptrArg(grads), ptrArg(mom), intArg(n),
		f32Arg(lr), f32Arg(momentum), f32Arg(wd), intArg(nest))
}

func (e *Engine) AdamW(params, grads, m, v engine.Buffer, beta1, beta2, eps, decay, stepSize, sqrtBC2 float32) error {
	if err := engine.CheckSame("adamw", params, grads, m, v); err != nil {
		return err
	}
	n := params.Len()
	return e.launch("adamw", n, 0, ptrArg(params), ptrArg(grads), ptrArg(m), ptrArg(v), intArg(n),
		f32Arg(beta1), f32Arg(beta2), f32Arg(eps), f32Arg(decay), f32Arg(stepSize), f32Arg(sqrtBC2))
}

func (e *Engine) Sync() error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := cu.Synchronize(); err != nil {
		return fmt.Errorf("%w: %v", engine.ErrDevice, err)
	}
	return nil
}

func (e *Engine) Close() error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	for p := range e.allocs {
		cu.MemFree(p)
	}
	e.allocs = nil
	C.cublasDestroy(e.blas)
	e.mod.Unload()
	return e.ctx.Destroy()
}
