package engine_test

import (
	"testing"

	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/engine/enginetest"
)

// TestCPUConformance runs the conformance suite against the CPU engine,
// with lowered training graphs held to enginetest.RefTol; the cuda package
// runs the same suite against the GPU.
func TestCPUConformance(t *testing.T) { enginetest.RunReference(t, engine.CPU()) }
