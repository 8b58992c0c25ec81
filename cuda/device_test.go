package cuda

import "testing"

func TestParseDevice(t *testing.T) {
	for s, want := range map[string][2]int{"cpu": {0, 0}, "cuda": {1, 0}, "cuda:3": {1, 3}} {
		c, n, err := ParseDevice(s)
		if err != nil || (c != (want[0] == 1)) || n != want[1] {
			t.Errorf("%s: %v %d %v", s, c, n, err)
		}
	}
	for _, s := range []string{"", "gpu", "cuda:", "cuda:-1", "cuda:x", "CUDA", "cuda:99999"} {
		if _, _, err := ParseDevice(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
