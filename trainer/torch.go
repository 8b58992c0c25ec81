package trainer

import (
	"fmt"

	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/models"
)

// TorchTensors views a flat vector laid out as spec.Layout() as PyTorch
// tensors: the same names (prefixed), PyTorch's shapes, and dense weights
// transposed from vtrain's [in, out] to torch.nn.Linear's [out, in].
func TorchTensors(spec models.Spec, flat []float32, prefix string) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, p := range spec.Layout() {
		src := flat[p.Offset : p.Offset+p.Size]
		var d []float32
		if p.Transposed {
			in, o := p.Shape[0], p.Shape[1]
			d = make([]float32, p.Size)
			for i := 0; i < in; i++ {
				for j := 0; j < o; j++ {
					d[j*in+i] = src[i*o+j]
				}
			}
		} else {
			d = append([]float32(nil), src...)
		}
		out = append(out, safetensors.Tensor{Name: prefix + p.Name, Shape: p.TorchShape(), Data: d})
	}
	return out
}

// FromTorchTensors is the inverse of [TorchTensors]: it writes the named
// tensors of f into a flat vector laid out as spec.Layout(), checking that
// every parameter is present with PyTorch's shape.
func FromTorchTensors(spec models.Spec, f *safetensors.File, prefix string) ([]float32, error) {
	flat := make([]float32, spec.NumParams())
	for _, p := range spec.Layout() {
		t, ok := f.Get(prefix + p.Name)
		if !ok {
			return nil, fmt.Errorf("%w: tensor %q missing", ErrCheckpoint, prefix+p.Name)
		}
		want := p.TorchShape()
		if !equalInts(t.Shape, want) {
			return nil, fmt.Errorf("%w: tensor %q has shape %v, %s needs %v", ErrCheckpoint, p.Name, t.Shape, spec, want)
		}
		dst := flat[p.Offset : p.Offset+p.Size]
		if p.Transposed {
			in, o := p.Shape[0], p.Shape[1]
			for j := 0; j < o; j++ {
				for i := 0; i < in; i++ {
					dst[i*o+j] = t.Data[j*in+i]
				}
			}
		} else {
			copy(dst, t.Data)
		}
	}
	return flat, nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
