package cli

import (
	"flag"
	"fmt"

	"github.com/vtrain/vtrain/cuda"
	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/trainer"
)

func addDeviceFlag(fs *flag.FlagSet) *string {
	return fs.String("device", "cpu", "where to compute: cpu, cuda (GPU 0) or cuda:N (needs a -tags vtcuda build)")
}

// openDevice opens the engine --device names: nil for the CPU. A build
// without CUDA, or a machine without the GPU, is an error (exit 1).
func openDevice(s string) (engine.Engine, error) {
	isCUDA, ordinal, err := cuda.ParseDevice(s)
	if err != nil {
		return nil, usagef("--device: %v", err)
	}
	if !isCUDA {
		return nil, nil
	}
	e, err := cuda.Open(ordinal)
	if err != nil {
		return nil, fmt.Errorf("--device %s: %w", s, err)
	}
	return e, nil
}

// trainerOptions puts an opened engine into trainer options.
func trainerOptions(e engine.Engine) []trainer.Option {
	if e == nil {
		return nil
	}
	return []trainer.Option{trainer.WithEngine(e)}
}
