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
	if s.Rounds.Timeout.Duration != 60*time.Second || s.Compression.Bits != 2 {
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
