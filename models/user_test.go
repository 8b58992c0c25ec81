package models

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
)

// A test's own model: x → act(x·W1 + b1) (+ a residual block) → dense.
func testDefinition(name string, act func(*G.Node) (*G.Node, error), residual bool) Definition {
	return Definition{
		Name: name,
		Params: func(s Spec) ([]ParamDef, error) {
			w := 16
			if len(s.Hidden) > 0 {
				w = s.Hidden[0]
			}
			in := s.Rows * s.Cols
			ps := []ParamDef{{Name: "a.weight", Shape: []int{in, w}, FanIn: in, Transposed: true}, {Name: "a.bias", Shape: []int{w}, FanIn: in}}
			if residual {
				ps = append(ps, ParamDef{Name: "r.weight", Shape: []int{w, w}, FanIn: w, Transposed: true}, ParamDef{Name: "r.bias", Shape: []int{w}, FanIn: w})
			}
			return append(ps, ParamDef{Name: "o.weight", Shape: []int{w, s.Classes}, FanIn: w, Transposed: true}, ParamDef{Name: "o.bias", Shape: []int{s.Classes}, FanIn: w}), nil
		},
		Forward: func(x *G.Node, p []*G.Node, s Spec) (*G.Node, error) {
			h, err := Dense(x, p[0], p[1])
			if err != nil {
				return nil, err
			}
			if h, err = act(h); err != nil {
				return nil, err
			}
			if residual {
				r, err := Dense(h, p[2], p[3])
				if err != nil {
					return nil, err
				}
				if r, err = act(r); err != nil {
					return nil, err
				}
				if h, err = Add(h, r); err != nil {
					return nil, err
				}
			}
			return Dense(h, p[len(p)-2], p[len(p)-1])
		},
	}
}

func init() {
	MustRegister(testDefinition("test-tanh-res", Tanh, true))
	MustRegister(testDefinition("test-relu-res", ReLU, true))
	MustRegister(testDefinition("test-tanh", Tanh, false))
}

func TestRegisterRejects(t *testing.T) {
	good := testDefinition("x", Tanh, false)
	for _, tc := range []struct {
		name string
		edit func(*Definition)
		want string
	}{
		{"bad name", func(d *Definition) { d.Name = "Res MLP" }, "lower-case"},
		{"empty name", func(d *Definition) { d.Name = "" }, "lower-case"},
		{"built-in", func(d *Definition) { d.Name = MLP }, "built-in"},
		{"taken", func(d *Definition) { d.Name = "test-tanh" }, "registered twice"},
		{"no forward", func(d *Definition) { d.Name = "fresh"; d.Forward = nil }, "needs Params and Forward"},
	} {
		d := good
		tc.edit(&d)
		if err := Register(d); err == nil || !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if r := strings.Join(Registered(), ","); !strings.Contains(r, "test-relu-res,test-tanh,test-tanh-res") || strings.Contains(r, "fresh") {
		t.Errorf("registered %v", r)
	}
}

func TestUserSpecErrors(t *testing.T) {
	if _, err := NewSpec("no-such-model", nil); !errors.Is(err, ErrUnknownModel) || !strings.Contains(err.Error(), "not built into this vtrain binary") {
		t.Errorf("unknown model: %v", err)
	}
	bad := func(name string, params func(Spec) ([]ParamDef, error)) error {
		d := testDefinition(name, Tanh, false)
		d.Params = params
		MustRegister(d)
		_, err := NewSpec(name, nil)
		return err
	}
	for name, params := range map[string]func(Spec) ([]ParamDef, error){
		"bad-panics": func(Spec) ([]ParamDef, error) { panic("oops") },
		"bad-error":  func(Spec) ([]ParamDef, error) { return nil, fmt.Errorf("no such width") },
		"bad-empty":  func(Spec) ([]ParamDef, error) { return nil, nil },
		"bad-zero":   func(Spec) ([]ParamDef, error) { return []ParamDef{{Name: "w", Shape: []int{0, 3}, FanIn: 1}}, nil },
		"bad-dup": func(Spec) ([]ParamDef, error) {
			return []ParamDef{{Name: "w", Shape: []int{3}, FanIn: 1}, {Name: "w", Shape: []int{3}, FanIn: 1}}, nil
		},
		"bad-fan": func(Spec) ([]ParamDef, error) { return []ParamDef{{Name: "w", Shape: []int{3}}}, nil },
		"bad-huge": func(Spec) ([]ParamDef, error) {
			return []ParamDef{{Name: "w", Shape: []int{1 << 15, 1 << 15}, FanIn: 1}}, nil
		},
	} {
		if err := bad(name, params); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: %v, want %v", name, err, ErrSpec)
		}
	}
	// Logits of the wrong shape fail when the net is built, naming both.
	d := testDefinition("bad-logits", Tanh, false)
	d.Forward = func(x *G.Node, p []*G.Node, s Spec) (*G.Node, error) { return Dense(x, p[0], p[1]) }
	MustRegister(d)
	s, err := NewSpec("bad-logits", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewTrainNet(s, 3, make([]float32, s.NumParams())); err == nil || !strings.Contains(err.Error(), "want [3 10]") {
		t.Errorf("wrong logits: %v", err)
	}
}

func TestUserLayoutAndName(t *testing.T) {
	s, err := NewSpec("test-tanh-res", []int{8})
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != "test-tanh-res-784-8-10" {
		t.Errorf("name %s", s)
	}
	want := []struct {
		name string
		off  int
	}{{"a.weight", 0}, {"a.bias", 784 * 8}, {"r.weight", 784*8 + 8}, {"r.bias", 784*8 + 8 + 64}, {"o.weight", 784*8 + 8 + 64 + 8}, {"o.bias", 784*8 + 8 + 64 + 8 + 80}}
	l := s.Layout()
	if len(l) != len(want) {
		t.Fatalf("layout %+v", l)
	}
	for i, w := range want {
		if l[i].Name != w.name || l[i].Offset != w.off {
			t.Errorf("param %d: %s at %d, want %s at %d", i, l[i].Name, l[i].Offset, w.name, w.off)
		}
	}
	if s.NumParams() != 784*8+8+64+8+80+10 || !l[0].Transposed || l[0].TorchShape()[0] != 8 {
		t.Errorf("%d parameters, %+v", s.NumParams(), l[0])
	}
}

// A user's model trains through Gorgonia's autodiff: its gradient agrees
// with finite differences (through tanh and the residual Add, where the
// gradient of h sums two paths), and a doubled gradient would not.
func TestUserGradientFiniteDifference(t *testing.T) {
	spec, err := NewSpec("test-tanh-res", []int{12})
	if err != nil {
		t.Fatal(err)
	}
	checkDirectional(t, spec, 5, 6, 1e-2, 0.05)
}

func TestDefinitionHash(t *testing.T) {
	hash := func(kind string, hidden []int) string {
		t.Helper()
		s, err := NewSpec(kind, hidden)
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.definition() // not the cached one: build it again
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a := hash("test-tanh-res", []int{8})
	if len(a) != 64 || a != hash("test-tanh-res", []int{8}) {
		t.Fatalf("hash %q is not stable", a)
	}
	for name, other := range map[string]string{
		"another width":      hash("test-tanh-res", []int{9}),
		"another activation": hash("test-relu-res", []int{8}),
		"no residual block":  hash("test-tanh", []int{8}),
		"a built-in MLP":     hash(MLP, []int{8}),
	} {
		if other == a {
			t.Errorf("%s hashes the same as the model", name)
		}
	}
	// The cached hash is the computed one.
	s, _ := NewSpec("test-tanh-res", []int{8})
	if h, err := s.Definition(); err != nil || h != a {
		t.Errorf("cached %q, %v; want %q", h, err, a)
	}
}

// A model built with an op the engines cannot run fails when its
// definition is taken (a spec, a run), with an error naming the op.
func TestUnsupportedOpNamed(t *testing.T) {
	d := testDefinition("test-sigmoid", G.Sigmoid, false)
	MustRegister(d)
	s, err := NewSpec("test-sigmoid", nil)
	if err != nil {
		t.Fatal(err) // the layout is fine: only the graph is not
	}
	_, err = s.Definition()
	if !errors.Is(err, ErrUnsupportedOp) || !strings.Contains(err.Error(), `"sigmoid"`) || !strings.Contains(err.Error(), "test-sigmoid") {
		t.Fatalf("a sigmoid model: %v", err)
	}
	// It still trains on the CPU graph (Gorgonia differentiates it), which
	// is what a local experiment may want; a run refuses it.
	if _, err := NewTrainNet(s, 2, Init(s, 1)); err != nil {
		t.Fatal(err)
	}
}

// A user's Defaults and FLOPsPerSample are called on specs that may come
// from peers: one that panics costs the spec its defaults (or the report
// its FLOPs), never the node.
func TestUserHooksThatPanic(t *testing.T) {
	d := testDefinition("test-panicky", Tanh, false)
	d.Defaults = func(Spec) Spec { panic("defaults") }
	d.FLOPsPerSample = func(Spec) float64 { panic("flops") }
	MustRegister(d)
	s, err := NewSpec("test-panicky", []int{4})
	if err != nil {
		t.Fatal(err)
	}
	if s.FLOPsPerSample() != 0 || len(s.Hidden) != 1 || s.Hidden[0] != 4 {
		t.Errorf("spec %+v, FLOPs %v", s, s.FLOPsPerSample())
	}
}
