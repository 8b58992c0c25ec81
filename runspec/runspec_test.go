package runspec

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/vtrain/vtrain/models"
	G "gorgonia.org/gorgonia"
	"os"
	"strings"
	"testing"
	"time"
)

func TestExampleParsesToDefaults(t *testing.T) {
	b, err := os.ReadFile("../examples/run.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	d.Run.Name = "fashion-mlp"
	d.Data.Shards = 1
	if string(s.Canonical()) != string(d.Canonical()) {
		t.Fatalf("example differs from defaults:\n%s\n%s", s.Canonical(), d.Canonical())
	}
	if s.Rounds.Timeout.Duration != 60*time.Second || s.Compression.Bits != 1 {
		t.Fatalf("parsed %+v", s)
	}
}

func TestEmptySpecIsDefault(t *testing.T) {
	s, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.RunID() != Default().RunID() {
		t.Fatal("empty spec is not the default")
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	for src, key := range map[string]string{
		"bogus = 1":                                          "bogus",
		"[inner]\nlrr = 0.1":                                 "inner.lrr",
		"[inner]\nlr = -1.0":                                 "inner.lr",
		"[inner]\nbatch = 0":                                 "inner.batch",
		"[inner]\noptimizer = \"lamb\"":                      "inner.optimizer",
		"[outer]\nmomentum = 1.0":                            "outer.momentum",
		"[model]\nkind = \"resnet\"":                         "model",
		"[model]\nhidden = [0]":                              "model",
		"[compression]\nbits = 12":                           "compression",
		"[compression]\nfraction = 0.0":                      "compression",
		"[aggregation]\nrule = \"vote\"":                     "aggregation.rule",
		"[aggregation]\nrule = \"trimmed_mean\"\ntrim = 0.5": "aggregation.trim",
		"[rounds]\ntimeout = \"1ms\"":                        "rounds.timeout",
		"[rounds]\ntimeout = \"soon\"":                       "timeout",
		"[rounds]\nquorum = 0":                               "rounds.quorum",
		"[rounds]\nmax_message = 10":                         "rounds.max_message",
		"[data]\nsource = \"imagenet\"":                      "data.source",
		"[run]\nrounds = -3":                                 "run.rounds",
		"version = 2":                                        "version",
		"[inner]\nsteps = \"many\"":                          "steps",
		"[inner\nsteps = 1":                                  "",
		"[verify]\nrate = 1.5":                               "verify.rate",
		"[verify]\nrate = 0.5\nnewcomer_rate = 0.2":          "verify.newcomer_rate",
		"[verify]\nsegment = 401":                            "verify.segment",
		"[verify]\ntimeout = \"10ms\"":                       "verify.timeout",
		"[verify]\ntolerance = -1.0":                         "verify.tolerance",
		"[verify]\nprobation = -1":                           "verify.probation",
	} {
		_, err := Parse([]byte(src))
		if !errors.Is(err, ErrSpec) {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %q does not name %q", src, err, key)
		}
	}
}

func TestRunIDAndCanonical(t *testing.T) {
	a := Default()
	b := Default()
	b.Inner.LR = 2e-3
	if a.RunID() == b.RunID() {
		t.Fatal("different specs share a run ID")
	}
	s, err := FromCanonical(a.Canonical(), a.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if s.RunID() != a.RunID() {
		t.Fatal("canonical round trip changes the ID")
	}
	if _, err := FromCanonical(b.Canonical(), a.RunID()); !errors.Is(err, ErrSpec) {
		t.Fatalf("spec of another run accepted: %v", err)
	}
	// A tampered spec whose ID is recomputed to match still must be valid
	// and canonical.
	steps := fmt.Sprintf(`"steps":%d`, a.Inner.Steps)
	if !strings.Contains(string(a.Canonical()), steps) {
		t.Fatalf("canonical form lacks %s", steps)
	}
	bad := []byte(strings.Replace(string(a.Canonical()), steps, `"steps":0`, 1))
	if _, err := FromCanonical(bad, ID(sha256sum(bad))); !errors.Is(err, ErrSpec) {
		t.Fatalf("invalid canonical spec accepted: %v", err)
	}
	spaced := append([]byte(" "), a.Canonical()...)
	if _, err := FromCanonical(spaced, ID(sha256sum(spaced))); !errors.Is(err, ErrSpec) {
		t.Fatalf("non-canonical spec accepted: %v", err)
	}
}

func sha256sum(b []byte) [32]byte { return sha256.Sum256(b) }

const zkSpec = `
[model]
kind = "logreg"
[inner]
optimizer = "sgd"
momentum = 0.0
lr = 0.005
batch = 4
[privacy]
mode = "zk"
vk_sha256 = "` + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" + `"
`

func TestPrivacyZK(t *testing.T) {
	s, err := Parse([]byte(zkSpec))
	if err != nil {
		t.Fatal(err)
	}
	p := s.ZKParams()
	if p.Batch != 4 || p.Depth != 16 || p.Features != 784 || p.Classes != 10 || p.LR != 328 {
		t.Fatalf("circuit %+v", p)
	}
	if !strings.Contains(string(s.Canonical()), `"privacy":{"mode":"zk","depth":16,"vk_sha256":"0011`) {
		t.Fatalf("canonical form lacks the privacy section: %s", s.Canonical())
	}
	if strings.Contains(string(Default().Canonical()), "privacy") {
		t.Fatal("a spec without privacy names it in its canonical form (run IDs would change)")
	}
	other := s
	other.Privacy.VKSHA256 = strings.Repeat("f", 64)
	if other.RunID() == s.RunID() {
		t.Fatal("the verifying key hash is not part of the run ID")
	}
	for edit, key := range map[string]string{
		`kind = "logreg"`:   "model.kind",
		`momentum = 0.0`:    "inner",
		`mode = "zk"`:       "privacy.mode",
		`vk_sha256 = "00`:   "privacy.vk_sha256",
		`batch = 4`:         "privacy",
		`optimizer = "sgd"`: "inner",
	} {
		repl := map[string]string{
			`kind = "logreg"`:   `kind = "mlp"`,
			`momentum = 0.0`:    `momentum = 0.9`,
			`mode = "zk"`:       `mode = "secret"`,
			`vk_sha256 = "00`:   `vk_sha256 = "zz`,
			`batch = 4`:         `batch = 1000`,
			`optimizer = "sgd"`: `optimizer = "adamw"`,
		}[edit]
		_, err := Parse([]byte(strings.Replace(zkSpec, edit, repl, 1)))
		if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s → %s: %v (want an error naming %s)", edit, repl, err, key)
		}
	}
	if _, err := Parse([]byte("[privacy]\nvk_sha256 = \"00\"")); !errors.Is(err, ErrSpec) {
		t.Errorf("a key without mode zk accepted: %v", err)
	}
	if _, err := Parse([]byte("[privacy]\nwait = false")); !errors.Is(err, ErrSpec) {
		t.Errorf("wait without mode zk accepted: %v", err)
	}
}

// TestPrivacyWait: a zk run waits for its private peers unless it says
// wait = false; an explicit wait = true is the default and names the same
// run, and the opt-out is part of the run ID.
func TestPrivacyWait(t *testing.T) {
	def, err := Parse([]byte(zkSpec))
	if err != nil {
		t.Fatal(err)
	}
	yes, err := Parse([]byte(zkSpec + "wait = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	no, err := Parse([]byte(zkSpec + "wait = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !def.WaitsForPrivate() || !yes.WaitsForPrivate() || no.WaitsForPrivate() || Default().WaitsForPrivate() {
		t.Fatalf("waits: default %v, wait = true %v, wait = false %v, no privacy %v", def.WaitsForPrivate(), yes.WaitsForPrivate(), no.WaitsForPrivate(), Default().WaitsForPrivate())
	}
	if yes.RunID() != def.RunID() || no.RunID() == def.RunID() {
		t.Fatalf("run IDs: default %s, wait = true %s, wait = false %s", def.RunID().Short(), yes.RunID().Short(), no.RunID().Short())
	}
	tr := true
	set := def
	set.Privacy.Wait = &tr
	if set.RunID() != def.RunID() {
		t.Fatal("a spec built with wait = true in code names another run")
	}
	back, err := FromCanonical(no.Canonical(), no.RunID())
	if err != nil || back.WaitsForPrivate() {
		t.Fatalf("wait = false does not survive the canonical form: %v", err)
	}
}

// userModel registers a small model of the test's own: x → tanh(x·W+b) → dense.
func userModel(name string, act func(*G.Node) (*G.Node, error)) models.Definition {
	return models.Definition{
		Name: name,
		Params: func(s models.Spec) ([]models.ParamDef, error) {
			in := s.Rows * s.Cols
			return []models.ParamDef{
				{Name: "a.weight", Shape: []int{in, 8}, FanIn: in, Transposed: true}, {Name: "a.bias", Shape: []int{8}, FanIn: in},
				{Name: "o.weight", Shape: []int{8, s.Classes}, FanIn: 8, Transposed: true}, {Name: "o.bias", Shape: []int{s.Classes}, FanIn: 8},
			}, nil
		},
		Forward: func(x *G.Node, p []*G.Node, s models.Spec) (*G.Node, error) {
			h, err := models.Dense(x, p[0], p[1])
			if err != nil {
				return nil, err
			}
			if h, err = act(h); err != nil {
				return nil, err
			}
			return models.Dense(h, p[2], p[3])
		},
	}
}

func init() {
	models.MustRegister(userModel("spec-test-model", models.Tanh))
	models.MustRegister(userModel("spec-test-relu", models.ReLU))
}

// A user's model is pinned by its definition hash, which the run ID
// covers: the pin is filled in when the file leaves it out, a peer whose
// binary has another definition (or none) cannot take the spec, and
// built-in models are not pinned (their run IDs are as before).
func TestUserModelDefinition(t *testing.T) {
	s, err := Parse([]byte("[model]\nkind = \"spec-test-model\"\nhidden = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := s.ModelSpec()
	want, err := m.Definition()
	if err != nil || s.Model.Definition != want || len(want) != 64 {
		t.Fatalf("pinned %q, the model's definition %q (%v)", s.Model.Definition, want, err)
	}
	if !strings.Contains(string(s.Canonical()), want) {
		t.Fatalf("the canonical spec does not carry the definition: %s", s.Canonical())
	}
	if got, err := FromCanonical(s.Canonical(), s.RunID()); err != nil || got.RunID() != s.RunID() {
		t.Fatalf("round trip: %v", err)
	}
	// The same spec under another definition is another run.
	other, err := Parse([]byte("[model]\nkind = \"spec-test-relu\"\nhidden = []\n"))
	if err != nil || other.Model.Definition == want || other.RunID() == s.RunID() {
		t.Fatalf("another model: %v, definition %q", err, other.Model.Definition)
	}
	// A peer whose binary's model differs: the spec it receives pins
	// another hash (here, one edited in), and it says what to do.
	forged := s
	forged.Model.Definition = strings.Repeat("ab", 32)
	if _, err := FromCanonical(forged.Canonical(), forged.RunID()); !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), "build vtrain with the run's version of the model") {
		t.Errorf("another definition: %v", err)
	}
	if _, err := Parse([]byte("[model]\nkind = \"spec-test-model\"\ndefinition = \"" + strings.Repeat("ab", 32) + "\"\n")); err == nil || !strings.Contains(err.Error(), "model.definition") {
		t.Errorf("a file pinning another definition: %v", err)
	}
	// A peer whose binary lacks the model.
	missing := s
	missing.Model.Kind = "spec-test-absent"
	if _, err := FromCanonical(missing.Canonical(), missing.RunID()); !errors.Is(err, models.ErrUnknownModel) || !strings.Contains(err.Error(), "not built into this vtrain binary") {
		t.Errorf("an absent model: %v", err)
	}
	// Built-in models are not pinned.
	if _, err := Parse([]byte("[model]\nkind = \"mlp\"\ndefinition = \"" + want + "\"\n")); err == nil || !strings.Contains(err.Error(), "model.definition") {
		t.Errorf("a pinned built-in: %v", err)
	}
	if strings.Contains(string(Default().Canonical()), "definition") {
		t.Errorf("a built-in model's canonical spec names a definition: %s", Default().Canonical())
	}
}

// TestPrivacyZKSteps: a private update carries a commitment per inner
// step and the start (32 bytes each), and a verdict on it names the step
// the beacon drew: a zk run whose inner steps a verdict cannot name, or
// whose commitments alone do not fit in a message, is refused at once
// (such a run started, and its honest challengers' verdicts were refused
// as malformed, or its private peers' updates as oversize).
func TestPrivacyZKSteps(t *testing.T) {
	for _, tc := range []struct {
		steps, maxMessage int
		key               string // "": valid
	}{
		{20, 1 << 20, ""},
		{40000, 4 << 20, ""},
		{MaxPrivateSteps, 4 << 20, ""},
		{MaxPrivateSteps + 1, 64 << 20, "inner.steps"},
		{100000, 64 << 20, "inner.steps"},
		{40000, 1 << 20, "rounds.max_message"},
	} {
		spec := strings.Replace(zkSpec, "batch = 4", fmt.Sprintf("batch = 4\nsteps = %d", tc.steps), 1) +
			fmt.Sprintf("[rounds]\nmax_message = %d\n", tc.maxMessage)
		_, err := Parse([]byte(spec))
		switch {
		case tc.key == "" && err != nil:
			t.Errorf("%d steps, max_message %d: %v", tc.steps, tc.maxMessage, err)
		case tc.key != "" && (!errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tc.key)):
			t.Errorf("%d steps, max_message %d: %v, want an error naming %s", tc.steps, tc.maxMessage, err, tc.key)
		}
	}
}
