package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtrain/vtrain/internal/testenv"
)

// clangPrelude stands in for what NVRTC provides built in, so that clang's
// CUDA front end can check the kernels on a machine without a CUDA toolkit.
const clangPrelude = `
#include <__clang_cuda_builtin_vars.h>
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __syncthreads() __nvvm_bar_sync(0)
__device__ inline float expf(float x) { return __builtin_expf(x); }
__device__ inline float logf(float x) { return __builtin_logf(x); }
__device__ inline float sqrtf(float x) { return __builtin_sqrtf(x); }
__device__ inline float fmaxf(float a, float b) { return __builtin_fmaxf(a, b); }
__device__ inline float tanhf(float x) { return __builtin_tanhf(x); }
__device__ inline float __fmul_rn(float a, float b) { return a * b; }
__device__ inline float __int_as_float(int x) { return __builtin_bit_cast(float, x); }
`

// TestKernelsCompile compiles the kernel source to LLVM IR with clang's
// CUDA front end (warnings are errors) and checks that every kernel the
// engine loads is there. It needs clang (CI installs clang-14); without it
// the test is skipped (it fails under CI=true, see internal/testenv), and
// NVRTC compiles the kernels when an engine opens.
func TestKernelsCompile(t *testing.T) {
	var clang string
	for _, c := range []string{"clang-14", "clang"} {
		if p, err := exec.LookPath(c); err == nil {
			clang = p
			break
		}
	}
	testenv.Require(t, clang != "", "clang not installed (apt-get install clang-14)")
	dir := t.TempDir()
	src, pre, out := filepath.Join(dir, "k.cu"), filepath.Join(dir, "prelude.h"), filepath.Join(dir, "k.ll")
	if err := os.WriteFile(src, []byte(kernelSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pre, []byte(clangPrelude), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(clang, "-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_80", "-nocudainc", "-nocudalib",
		"-std=c++11", "-O2", "-Wall", "-Wextra", "-Werror", "-include", pre, "-emit-llvm", "-S", "-o", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	ir, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kernelNames {
		if !strings.Contains(string(ir), "@"+k+"(") {
			t.Errorf("kernel %s is not in the compiled module", k)
		}
	}
}
