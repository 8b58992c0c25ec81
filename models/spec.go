// Package models defines vtrain's models on Gorgonia: softmax (logistic)
// regression, a multi-layer perceptron and a small CNN for 28×28 images,
// and the users' own models ([Definition], [Register]): Gorgonia graphs
// built from the ops in ops_api.go, differentiated by Gorgonia.
//
// # The flat parameter vector
//
// Every model's parameters live in one []float32, the vector that
// compression, hashing, commitments and proofs work on. Its order is
// [Spec.Layout]: layers from input to output, and within a layer the weight
// then the bias, each row-major. The layer names are PyTorch's
// (state_dict names of the equivalent torch.nn modules), and so are the
// shapes, with one documented exception: a dense layer's weight is stored
// as [in, out] (so that the forward pass is x·W without a transpose), which
// is the transpose of torch.nn.Linear's [out, in]. [Param.Transposed] marks
// those; checkpoint export writes PyTorch's shape.
//
// # Initialisation
//
// [Init] draws every parameter from U(−1/√fan_in, 1/√fan_in), which is the
// distribution PyTorch's default Linear/Conv2d initialisation produces.
// Each tensor has its own internal/prng stream derived from (seed, tensor
// name), drawn element by element in flat order, so the same seed gives the
// same bytes on every machine and changing one layer's shape leaves the
// others' initial values alone.
package models

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/vtrain/vtrain/internal/prng"
)

// Model kinds.
const (
	LogReg = "logreg"
	MLP    = "mlp"
	CNN    = "cnn"
)

// Kinds lists the model kinds, for help texts.
var Kinds = []string{LogReg, MLP, CNN}

// ErrSpec is wrapped by every error about an invalid model spec.
var ErrSpec = errors.New("models: invalid model spec")

// Spec names a model and its shape.
type Spec struct {
	Kind     string `json:"kind"`
	Hidden   []int  `json:"hidden,omitempty"`   // MLP hidden widths
	Channels []int  `json:"channels,omitempty"` // CNN conv channels (two)
	Rows     int    `json:"rows"`
	Cols     int    `json:"cols"`
	Classes  int    `json:"classes"`
}

// DefaultHidden and DefaultChannels apply when a Spec leaves them empty.
var (
	DefaultHidden   = []int{256}
	DefaultChannels = []int{8, 16}
)

// NewSpec returns a validated spec for 28×28 10-class images.
func NewSpec(kind string, hidden []int) (Spec, error) {
	s := Spec{Kind: kind, Hidden: hidden, Rows: 28, Cols: 28, Classes: 10}
	s = s.WithDefaults()
	return s, s.Validate()
}

// WithDefaults fills in what the spec leaves out: a 28×28 10-class input,
// the MLP's hidden widths, the CNN's channels, a user's model's own
// defaults.
func (s Spec) WithDefaults() Spec {
	if s.Rows == 0 {
		s.Rows = 28
	}
	if s.Cols == 0 {
		s.Cols = 28
	}
	if s.Classes == 0 {
		s.Classes = 10
	}
	switch s.Kind {
	case MLP:
		if len(s.Hidden) == 0 {
			s.Hidden = append([]int(nil), DefaultHidden...)
		}
	case CNN:
		if len(s.Channels) == 0 {
			s.Channels = append([]int(nil), DefaultChannels...)
		}
	default:
		if d, ok := lookup(s.Kind); ok && d.Defaults != nil {
			s = s.userDefaults(d)
		}
	}
	return s
}

// Validate reports whether the spec describes a model vtrain can build.
func (s Spec) Validate() error {
	switch s.Kind {
	case LogReg:
		if len(s.Hidden) != 0 || len(s.Channels) != 0 {
			return fmt.Errorf("%w: logreg takes no hidden layers or channels", ErrSpec)
		}
	case MLP:
		if len(s.Hidden) == 0 || len(s.Hidden) > 8 {
			return fmt.Errorf("%w: mlp needs 1 to 8 hidden layers, got %d", ErrSpec, len(s.Hidden))
		}
		for _, h := range s.Hidden {
			if h < 1 || h > 1<<16 {
				return fmt.Errorf("%w: hidden width %d out of range 1..65536", ErrSpec, h)
			}
		}
	case CNN:
		if len(s.Channels) != 2 {
			return fmt.Errorf("%w: cnn needs 2 channel counts, got %d", ErrSpec, len(s.Channels))
		}
		for _, c := range s.Channels {
			if c < 1 || c > 1024 {
				return fmt.Errorf("%w: channel count %d out of range 1..1024", ErrSpec, c)
			}
		}
		if s.Rows%4 != 0 || s.Cols%4 != 0 {
			return fmt.Errorf("%w: cnn needs image sides divisible by 4, got %dx%d", ErrSpec, s.Rows, s.Cols)
		}
	case "":
		return fmt.Errorf("%w: no model kind (want one of %s, or a registered model)", ErrSpec, strings.Join(Kinds, ", "))
	default:
		if err := s.validateUser(); err != nil {
			return err
		}
	}
	if s.Rows < 1 || s.Cols < 1 || s.Rows*s.Cols > 1<<20 || s.Classes < 2 || s.Classes > 1<<16 {
		return fmt.Errorf("%w: input %dx%d with %d classes", ErrSpec, s.Rows, s.Cols, s.Classes)
	}
	return nil
}

// String is a short human-readable name such as "mlp-784-256-10".
func (s Spec) String() string {
	in := s.Rows * s.Cols
	switch s.Kind {
	case MLP:
		parts := []string{"mlp", strconv.Itoa(in)}
		for _, h := range s.Hidden {
			parts = append(parts, strconv.Itoa(h))
		}
		return strings.Join(append(parts, strconv.Itoa(s.Classes)), "-")
	case CNN:
		return fmt.Sprintf("cnn-%d-%d-%d", s.Channels[0], s.Channels[1], s.Classes)
	case LogReg:
		return fmt.Sprintf("%s-%d-%d", s.Kind, in, s.Classes)
	default:
		parts := []string{s.Kind, strconv.Itoa(in)}
		for _, v := range append(slices.Clone(s.Channels), s.Hidden...) {
			parts = append(parts, strconv.Itoa(v))
		}
		return strings.Join(append(parts, strconv.Itoa(s.Classes)), "-")
	}
}

// ParseHidden parses "256,128" into widths.
func ParseHidden(v string) ([]int, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%w: hidden width %q is not a positive integer", ErrSpec, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Param describes one tensor of the flat parameter vector.
type Param struct {
	Name       string // PyTorch state_dict name, e.g. "fc1.weight"
	Shape      []int  // shape in the flat vector
	Offset     int    // first element in the flat vector
	Size       int    // number of elements
	FanIn      int    // fan-in used by the initialisation
	Transposed bool   // stored as the transpose of PyTorch's 2-D shape
}

// TorchShape is the shape PyTorch gives this tensor.
func (p Param) TorchShape() []int {
	if p.Transposed {
		return []int{p.Shape[1], p.Shape[0]}
	}
	return append([]int(nil), p.Shape...)
}

// dense describes a fully connected layer.
type dense struct{ in, out int }

func (s Spec) denseLayers() []dense {
	var ds []dense
	switch s.Kind {
	case LogReg:
		ds = []dense{{s.Rows * s.Cols, s.Classes}}
	case MLP:
		in := s.Rows * s.Cols
		for _, h := range s.Hidden {
			ds = append(ds, dense{in, h})
			in = h
		}
		ds = append(ds, dense{in, s.Classes})
	case CNN:
		ds = []dense{{s.Channels[1] * (s.Rows / 4) * (s.Cols / 4), s.Classes}}
	}
	return ds
}

// CNN geometry: 5×5 kernels, padding 2, stride 1; 2×2 max-pooling.
const (
	convKernel = 5
	convPad    = 2
)

// Layout returns the parameters in flat-vector order.
func (s Spec) Layout() []Param {
	if !IsBuiltin(s.Kind) {
		return s.userLayout()
	}
	var ps []Param
	off := 0
	add := func(name string, shape []int, fanIn int, transposed bool) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		ps = append(ps, Param{Name: name, Shape: shape, Offset: off, Size: n, FanIn: fanIn, Transposed: transposed})
		off += n
	}
	if s.Kind == CNN {
		inC := 1
		for i, c := range s.Channels {
			fan := inC * convKernel * convKernel
			add(fmt.Sprintf("conv%d.weight", i+1), []int{c, inC, convKernel, convKernel}, fan, false)
			add(fmt.Sprintf("conv%d.bias", i+1), []int{c}, fan, false)
			inC = c
		}
	}
	for i, d := range s.denseLayers() {
		add(fmt.Sprintf("fc%d.weight", i+1), []int{d.in, d.out}, d.in, true)
		add(fmt.Sprintf("fc%d.bias", i+1), []int{d.out}, d.in, false)
	}
	return ps
}

// NumParams returns the length of the flat parameter vector.
func (s Spec) NumParams() int {
	n := 0
	for _, p := range s.Layout() {
		n += p.Size
	}
	return n
}

// FLOPsPerSample returns the floating-point operations one training step
// spends per sample, counted the usual way: 2 per multiply-accumulate in
// the forward pass and twice that in the backward pass, for the matrix
// products and convolutions only.
func (s Spec) FLOPsPerSample() float64 {
	if !IsBuiltin(s.Kind) {
		if d, ok := lookup(s.Kind); ok && d.FLOPsPerSample != nil {
			return s.userFLOPs(d)
		}
		return 0
	}
	macs := 0.0
	if s.Kind == CNN {
		h, w, inC := s.Rows, s.Cols, 1
		for _, c := range s.Channels {
			macs += float64(c * h * w * inC * convKernel * convKernel)
			h, w, inC = h/2, w/2, c
		}
	}
	for _, d := range s.denseLayers() {
		macs += float64(d.in * d.out)
	}
	return 6 * macs
}

// Init returns a freshly initialised flat parameter vector for the seed.
func Init(s Spec, seed uint64) []float32 {
	theta := make([]float32, s.NumParams())
	for _, p := range s.Layout() {
		rng := prng.New(prng.Derive(seed, prng.String64("init/"+p.Name)))
		bound := 1 / math.Sqrt(float64(p.FanIn))
		for i := range theta[p.Offset : p.Offset+p.Size] {
			theta[p.Offset+i] = float32(rng.Uniform(-bound, bound))
		}
	}
	return theta
}
