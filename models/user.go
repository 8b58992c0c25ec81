package models

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"sync"

	G "gorgonia.org/gorgonia"
)

// Definition is a model that vtrain does not build in: its parameter
// tensors and its forward pass, written as a Gorgonia graph from the ops
// that vtrain can run on every engine (Dense, ReLU, Tanh, Add, Conv).
// vtrain differentiates it with Gorgonia, trains it on the CPU by running
// the graph's ops in order (as Gorgonia's VM would), lowers it onto
// engines, and spot-checks it like a built-in model.
//
// Register a definition from an init function of the package that defines
// it, and build a vtrain binary that imports that package (see package
// cli: a main function of two lines). A run spec names the model by
// [Definition.Name] and pins its definition hash ([Spec.Definition]), which
// is part of the run ID: a peer whose binary lacks the model, or has a
// different definition under the same name, cannot join the run and is
// told which.
type Definition struct {
	// Name is the model kind that specs use: 1–32 lower-case letters,
	// digits and '-', starting with a letter, not a built-in kind.
	Name string
	// Params lists the model's parameter tensors for a spec, in the order
	// of the flat parameter vector. Names should be PyTorch's state_dict
	// names of the equivalent torch.nn modules, so that exported
	// checkpoints load there.
	Params func(s Spec) ([]ParamDef, error)
	// Forward builds the logits, a batch × s.Classes matrix, from x (a
	// batch × s.Rows·s.Cols matrix) and the parameter nodes, in Params'
	// order and shapes.
	Forward func(x *G.Node, params []*G.Node, s Spec) (*G.Node, error)
	// FLOPsPerSample is the floating-point operations of one training step
	// per sample, for reports (optional: zero when nil).
	FLOPsPerSample func(s Spec) float64
	// Defaults fills in what a spec leaves out, such as hidden widths
	// (optional). Specs are filled in before they are hashed into a run
	// ID, so the defaults become part of the run.
	Defaults func(s Spec) Spec
}

// ParamDef is one parameter tensor of a user's model. Every parameter is
// initialised from U(−1/√FanIn, 1/√FanIn), PyTorch's default for Linear
// and Conv2d (see [Init]).
type ParamDef struct {
	Name       string
	Shape      []int
	FanIn      int
	Transposed bool // a 2-D tensor stored as the transpose of PyTorch's shape
}

// ErrUnknownModel is wrapped by the error for a spec that names a model
// this binary does not have.
var ErrUnknownModel = errors.New("models: unknown model")

var (
	registryMu sync.RWMutex
	registry   = map[string]Definition{}
	modelName  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
)

// Register adds a user's model. It fails on a malformed or taken name and
// on missing functions.
func Register(d Definition) error {
	switch {
	case !modelName.MatchString(d.Name):
		return fmt.Errorf("%w: model name %q: want 1–32 lower-case letters, digits and '-', starting with a letter", ErrSpec, d.Name)
	case slices.Contains(Kinds, d.Name):
		return fmt.Errorf("%w: model name %q is a built-in model", ErrSpec, d.Name)
	case d.Params == nil || d.Forward == nil:
		return fmt.Errorf("%w: model %q needs Params and Forward", ErrSpec, d.Name)
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[d.Name]; ok {
		return fmt.Errorf("%w: model %q is registered twice", ErrSpec, d.Name)
	}
	registry[d.Name] = d
	return nil
}

// MustRegister is Register for init functions: it panics on an error.
func MustRegister(d Definition) {
	if err := Register(d); err != nil {
		panic(err)
	}
}

// Registered returns the names of the users' models in this binary, sorted.
func Registered() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func lookup(name string) (Definition, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	d, ok := registry[name]
	return d, ok
}

// IsBuiltin reports whether kind is one of vtrain's own models.
func IsBuiltin(kind string) bool { return slices.Contains(Kinds, kind) }

// userParams calls a definition's Params and checks what it returns, so
// that a user's mistake is an error rather than a panic in a layer below.
func (s Spec) userParams(d Definition) (ps []ParamDef, err error) {
	defer func() {
		if r := recover(); r != nil {
			ps, err = nil, fmt.Errorf("%w: model %q: Params panicked: %v", ErrSpec, d.Name, r)
		}
	}()
	if ps, err = d.Params(s); err != nil {
		return nil, fmt.Errorf("%w: model %q: %w", ErrSpec, d.Name, err)
	}
	if len(ps) == 0 || len(ps) > 256 {
		return nil, fmt.Errorf("%w: model %q has %d parameter tensors (want 1 to 256)", ErrSpec, d.Name, len(ps))
	}
	seen := map[string]bool{}
	total := 0
	for _, p := range ps {
		if p.Name == "" || seen[p.Name] {
			return nil, fmt.Errorf("%w: model %q: parameter name %q is empty or repeated", ErrSpec, d.Name, p.Name)
		}
		seen[p.Name] = true
		if len(p.Shape) < 1 || len(p.Shape) > 4 || (p.Transposed && len(p.Shape) != 2) {
			return nil, fmt.Errorf("%w: model %q: parameter %s has shape %v (1 to 4 dimensions; Transposed needs 2)", ErrSpec, d.Name, p.Name, p.Shape)
		}
		n := 1
		for _, dim := range p.Shape {
			if dim < 1 || dim > 1<<24 {
				return nil, fmt.Errorf("%w: model %q: parameter %s has shape %v", ErrSpec, d.Name, p.Name, p.Shape)
			}
			n *= dim
			if n > 1<<28 {
				return nil, fmt.Errorf("%w: model %q: parameter %s is too large (%v)", ErrSpec, d.Name, p.Name, p.Shape)
			}
		}
		if p.FanIn < 1 {
			return nil, fmt.Errorf("%w: model %q: parameter %s has fan-in %d", ErrSpec, d.Name, p.Name, p.FanIn)
		}
		if total += n; total > 1<<28 {
			return nil, fmt.Errorf("%w: model %q has more than 2^28 parameters", ErrSpec, d.Name)
		}
	}
	return ps, nil
}

// userDefaults calls a definition's Defaults; a spec it panics on (one
// from a peer, say) is left as it is, for Validate to reject.
func (s Spec) userDefaults(d Definition) (out Spec) {
	defer func() {
		if recover() != nil {
			out = s
		}
	}()
	return d.Defaults(s)
}

// userFLOPs calls a definition's FLOPsPerSample: 0 where it panics.
func (s Spec) userFLOPs(d Definition) (f float64) {
	defer func() {
		if recover() != nil {
			f = 0
		}
	}()
	return d.FLOPsPerSample(s)
}

// validateUser checks a spec that names a user's model.
func (s Spec) validateUser() error {
	d, ok := lookup(s.Kind)
	if !ok {
		have := "none"
		if names := Registered(); len(names) > 0 {
			have = fmt.Sprint(names)
		}
		return fmt.Errorf("%w %q: not built into this vtrain binary (built in: %v; users' models registered: %s); build a vtrain that imports the package defining it", ErrUnknownModel, s.Kind, Kinds, have)
	}
	for _, list := range [][]int{s.Hidden, s.Channels} {
		if len(list) > 8 {
			return fmt.Errorf("%w: model %q: at most 8 hidden widths or channel counts", ErrSpec, s.Kind)
		}
		for _, v := range list {
			if v < 1 || v > 1<<16 {
				return fmt.Errorf("%w: model %q: width %d out of range 1..65536", ErrSpec, s.Kind, v)
			}
		}
	}
	_, err := s.userParams(d)
	return err
}

func (s Spec) userLayout() []Param {
	d, ok := lookup(s.Kind)
	if !ok {
		return nil
	}
	defs, err := s.userParams(d)
	if err != nil {
		return nil
	}
	ps := make([]Param, len(defs))
	off := 0
	for i, p := range defs {
		n := 1
		for _, dim := range p.Shape {
			n *= dim
		}
		ps[i] = Param{Name: p.Name, Shape: slices.Clone(p.Shape), Offset: off, Size: n, FanIn: p.FanIn, Transposed: p.Transposed}
		off += n
	}
	return ps
}

// buildUser builds a user's forward pass on the net's graph.
func (n *Net) buildUser() (err error) {
	d, ok := lookup(n.spec.Kind)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownModel, n.spec.Kind)
	}
	params := make([]*G.Node, len(n.layout))
	for i := range n.layout {
		params[i] = n.param(i)
	}
	logits, err := d.Forward(n.x, params, n.spec)
	if err != nil {
		return fmt.Errorf("model %q: forward: %w", d.Name, err)
	}
	if logits == nil || !slices.Equal(logits.Shape(), []int{n.batch, n.spec.Classes}) {
		var shape []int
		if logits != nil {
			shape = logits.Shape()
		}
		return fmt.Errorf("model %q: forward returned logits of shape %v, want [%d %d]", d.Name, shape, n.batch, n.spec.Classes)
	}
	n.logits = logits
	return nil
}

// Definition returns the hash of the model's definition: of its parameter
// layout and of its differentiated training graph (every node's operation,
// type and shape and the nodes it reads, in the order the graph was
// built), built at batch size 2. Two binaries give the same hash exactly
// when they would compute the same training step, up to the code inside
// an operation; a run spec of a user's model pins it, so that the run ID
// covers the model's code. It also checks that every operation of the
// graph is one the engines can run (CheckLowerable): a model with another
// op fails here, naming it, before any run starts.
func (s Spec) Definition() (string, error) {
	key := fmt.Sprintf("%s %v %v %d %d %d", s.Kind, s.Hidden, s.Channels, s.Rows, s.Cols, s.Classes)
	if h, ok := definitions.Load(key); ok {
		return h.(string), nil
	}
	h, err := s.definition()
	if err == nil {
		definitions.Store(key, h)
	}
	return h, err
}

// definitions caches Definition: a spec's graph is the same every time it
// is built (a registered model cannot be replaced).
var definitions sync.Map

func (s Spec) definition() (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	net, err := NewTrainNet(s, 2, make([]float32, s.NumParams()))
	if err != nil {
		return "", err
	}
	defer net.Close()
	tg, err := net.TrainGraph()
	if err != nil {
		return "", err
	}
	if err := CheckLowerable(tg); err != nil {
		return "", fmt.Errorf("model %q cannot run on vtrain's engines: %w", s.Kind, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "vtrain model definition v1\n%s\n", s.Kind)
	for _, p := range s.Layout() {
		fmt.Fprintf(h, "param %s %v fan-in %d transposed %v\n", p.Name, p.Shape, p.FanIn, p.Transposed)
	}
	nodes := net.g.AllNodes()
	index := make(map[*G.Node]int, len(nodes))
	for i, node := range nodes {
		index[node] = i
	}
	for i, node := range nodes {
		op := "leaf " + node.Name()
		if node.Op() != nil {
			op = node.Op().String()
		}
		fmt.Fprintf(h, "%d %s : %v %v <-", i, op, node.Type(), node.Shape())
		for it := net.g.From(node.ID()); it.Next(); {
			fmt.Fprintf(h, " %d", index[it.Node().(*G.Node)])
		}
		fmt.Fprintln(h)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
