//go:build vtcuda

package cuda

import (
	"testing"

	"github.com/vtrain/vtrain/engine/enginetest"
)

// TestConformance runs the engine conformance suite on GPU 0: every
// kernel against a float64 reference, and the lowered training graphs of
// softmax regression, MLPs, the CNN and 240 random graphs against
// Gorgonia's CPU VM within 1e-4.
func TestConformance(t *testing.T) {
	e, err := Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	t.Logf("engine %s", e.Name())
	enginetest.Run(t, e)
}

func TestNoSuchDevice(t *testing.T) {
	if _, err := Open(1000); err == nil {
		t.Fatal("opened device 1000")
	}
}
