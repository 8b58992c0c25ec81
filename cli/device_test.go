package cli

import (
	"strings"
	"testing"
)

// TestDeviceFlag: without the vtcuda tag, asking for a GPU fails in one
// clear line with exit 1; a malformed --device is a usage error.
func TestDeviceFlag(t *testing.T) {
	for _, args := range [][]string{
		{"train", "--device", "cuda", "--steps", "1"},
		{"bench", "step", "--device", "cuda:1", "--steps", "1"},
		{"node", "--spec", "../examples/run.toml", "--device", "cuda"},
	} {
		code, _, stderr := vtrain(t, args...)
		if code != 1 || !strings.Contains(stderr, "without CUDA support") {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
		oneLine(t, strings.Join(args, " "), stderr)
	}
	for _, args := range [][]string{
		{"train", "--device", "gpu"},
		{"bench", "step", "--device", "cuda:x"},
		{"train", "--model", "logreg", "--privacy", "zk", "--device", "cuda"},
	} {
		if code, _, stderr := vtrain(t, args...); code != 2 {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
	}
	code, out, _ := vtrain(t, "bench", "step", "--device", "cpu", "--model", "logreg", "--steps", "2", "--warmup", "0", "--json")
	if code != 0 || !strings.Contains(out, `"device":"cpu"`) {
		t.Errorf("bench step on the cpu: exit %d, %q", code, out)
	}
}
