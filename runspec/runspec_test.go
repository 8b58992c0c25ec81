package runspec

import (
	"crypto/sha256"
	"errors"
	"fmt"
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
}
