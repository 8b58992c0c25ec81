package data

import (
	"testing"

	"github.com/vtrain/vtrain/internal/testenv"
)

// TestInstalledFashionMNIST reads the Fashion-MNIST that CI installs
// (Debian's dataset-fashion-mnist) and checks its shape: 60,000 training
// and 10,000 test images of 28x28, every class equally often. It runs
// under -short too (about a second), so that a broken install fails every
// CI step that sets CI=true; without the data set it skips.
func TestInstalledFashionMNIST(t *testing.T) {
	dir, err := Find()
	testenv.Require(t, err == nil, "Fashion-MNIST not installed: %v", err)
	set, err := LoadFashionMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		d *Dataset
		n int
	}{{set.Train, 60000}, {set.Test, 10000}} {
		if c.d.Len() != c.n || c.d.Rows != 28 || c.d.Cols != 28 || c.d.Classes != 10 {
			t.Fatalf("%s: %d samples of %dx%d in %d classes, want %d of 28x28 in 10", c.d.Name, c.d.Len(), c.d.Rows, c.d.Cols, c.d.Classes, c.n)
		}
		var count [10]int
		for _, l := range c.d.Labels {
			count[l]++
		}
		for k, m := range count {
			if m != c.n/10 {
				t.Errorf("%s: class %d has %d samples, want %d", c.d.Name, k, m, c.n/10)
			}
		}
	}
}
