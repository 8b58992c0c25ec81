//go:build !vtcuda

package cuda

import "github.com/vtrain/vtrain/engine"

// Open fails: this build has no CUDA support.
func Open(ordinal int) (engine.Engine, error) { return nil, ErrNotBuilt }
