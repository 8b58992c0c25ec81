// Package cuda is vtrain's GPU engine: engine.Engine on an NVIDIA GPU
// through gorgonia.org/cu (driver API: contexts, plain device allocations,
// modules and launches), cuBLAS for matrix products, and the remaining
// kernels in CUDA C compiled for the device by NVRTC when the engine opens.
//
// It is built only with the cuda build tag, against a CUDA toolkit (or the
// build kit from ../shared/scripts/cuda-sdk.sh on a machine without one).
// Without the tag, Open says so and fails; CPU builds never link CUDA.
//
// Note that gorgonia.org/cu initialises the driver in its package init and
// exits the process if that fails, so a binary built with the tag runs
// only where an NVIDIA driver is installed. The portable binary is the
// default, untagged build.
package cuda

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNotBuilt is returned by Open in a build without the cuda tag.
var ErrNotBuilt = errors.New("this vtrain was built without CUDA support (rebuild with -tags vtcuda against a CUDA toolkit)")

// ParseDevice reads a --device value: "cpu", "cuda" (device 0) or
// "cuda:N". It returns cuda = false for the CPU.
func ParseDevice(s string) (cuda bool, ordinal int, err error) {
	switch {
	case s == "cpu":
		return false, 0, nil
	case s == "cuda":
		return true, 0, nil
	case strings.HasPrefix(s, "cuda:"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "cuda:"))
		if err != nil || n < 0 || n > 1023 {
			return false, 0, fmt.Errorf("device %q: the ordinal must be a number 0..1023", s)
		}
		return true, n, nil
	}
	return false, 0, fmt.Errorf("device %q: want cpu, cuda or cuda:N", s)
}
