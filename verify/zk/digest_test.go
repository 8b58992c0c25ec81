package zk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consensys/gnark-crypto/ecc"
	groth16bn254 "github.com/consensys/gnark/backend/groth16/bn254"
	"github.com/consensys/gnark/constraint"
	cs "github.com/consensys/gnark/constraint/bn254"
	"github.com/consensys/gnark/frontend"
	"github.com/consensys/gnark/frontend/cs/r1cs"
)

// pairCircuit is X·Y = Z with a coefficient and an order of wires that
// its variants change without changing a count.
type pairCircuit struct {
	X, Y frontend.Variable
	Z    frontend.Variable `gnark:",public"`
	k    int               // X·k·Y = Z
	swap bool              // X·k·Z = Y instead
}

func (c *pairCircuit) Define(api frontend.API) error {
	if c.swap {
		api.AssertIsEqual(api.Mul(c.X, c.k, c.Z), c.Y)
	} else {
		api.AssertIsEqual(api.Mul(c.X, c.k, c.Y), c.Z)
	}
	return nil
}

func compilePair(t *testing.T, k int, swap bool) constraint.ConstraintSystem {
	t.Helper()
	ccs, err := frontend.Compile(ecc.BN254.ScalarField(), r1cs.NewBuilder, &pairCircuit{k: k, swap: swap})
	if err != nil {
		t.Fatal(err)
	}
	return ccs
}

// TestCircuitDigest: the digest is the same for two compilations of one
// circuit and differs for circuits of the same counts whose constraints
// differ in a coefficient or a wire, and for another circuit's parameters.
func TestCircuitDigest(t *testing.T) {
	base := compilePair(t, 2, false)
	d := func(ccs constraint.ConstraintSystem) string {
		t.Helper()
		s, err := CircuitDigest(ccs)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if a, b := d(base), d(compilePair(t, 2, false)); a != b {
		t.Fatalf("two compilations of one circuit: digests %s and %s", a, b)
	}
	for _, v := range []struct {
		name string
		ccs  constraint.ConstraintSystem
	}{{"another coefficient", compilePair(t, 3, false)}, {"another wire", compilePair(t, 2, true)}} {
		if ccsWires(v.ccs) != ccsWires(base) || v.ccs.GetNbConstraints() != base.GetNbConstraints() {
			t.Fatalf("%s: the variant changes a count", v.name)
		}
		if d(v.ccs) == d(base) {
			t.Errorf("%s: the same digest", v.name)
		}
	}

	a, err := Compile(small)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(small)
	if err != nil {
		t.Fatal(err)
	}
	if d(a) != d(b) {
		t.Fatal("two compilations of the small circuit: different digests")
	}
	committed := b.(*cs.R1CS).CommitmentInfo.(constraint.Groth16Commitments)
	if len(committed) == 0 || len(committed[0].PrivateCommitted) == 0 {
		t.Fatal("the small circuit commits to no private wire")
	}
	committed[0].PrivateCommitted[0]++
	if d(a) == d(b) {
		t.Error("another committed wire: the same digest")
	}
	other := small
	other.LR++
	c, err := Compile(other)
	if err != nil {
		t.Fatal(err)
	}
	if d(a) == d(c) {
		t.Error("another learning rate: the same digest")
	}
}

// TestLoadProverRefusesOtherBuild: keys made for a constraint system that
// differs from the one this build compiles for the same parameters (a
// gadget's coefficient changed, the wire count kept, which the wire check
// alone lets through), or whose circuit.json is altered or missing, are
// refused when loaded.
func TestLoadProverRefusesOtherBuild(t *testing.T) {
	ccs, err := Compile(small)
	if err != nil {
		t.Fatal(err)
	}
	r := ccs.(*cs.R1CS)
	last := &r.Coefficients[len(r.Coefficients)-1]
	last.Add(last, last)
	stale, err := SetupCompiled(small, ccs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(stale.PK.(*groth16bn254.ProvingKey).InfinityA), ccsWires(keysForSmall(t).CCS); got != want {
		t.Fatalf("the altered circuit's proving key has %d wires, this build's %d: the test needs the same count", got, want)
	}
	dir := t.TempDir()
	if err := stale.Save(dir); err != nil {
		t.Fatal(err)
	}
	_, err = LoadProver(dir, "")
	if !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "another build of the circuit") || !strings.Contains(err.Error(), "make the keys again") {
		t.Fatalf("keys of an altered constraint system: %v, want ErrKeys saying they are another build's", err)
	}

	good := t.TempDir()
	if err := keysForSmall(t).Save(good); err != nil {
		t.Fatal(err)
	}
	k, err := LoadProver(good, "")
	if err != nil {
		t.Fatalf("the keys as saved: %v", err)
	}
	if k.PK == nil || k.CCS == nil {
		t.Fatal("LoadProver: no proving key or constraint system")
	}

	// The stale keys' circuit.json with this build's proving key: refused
	// too (the file names what the keys were made for).
	if err := os.Rename(filepath.Join(dir, CircuitFile), filepath.Join(good, CircuitFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadProver(good, ""); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "another build") {
		t.Fatalf("another circuit's circuit.json: %v", err)
	}

	for _, bad := range []struct{ name, content, want string }{
		{"not hex", `{"r1cs_sha256": "xyz", "constraints": 1, "wires": 1}`, "64 hex digits"},
		{"unknown field", `{"r1cs_sha256": "` + strings.Repeat("0", 64) + `", "extra": 1}`, "unknown field"},
		{"too long", `{"r1cs_sha256": "` + strings.Repeat(" ", maxCircuitFile) + `"}`, "over"},
	} {
		if err := os.WriteFile(filepath.Join(good, CircuitFile), []byte(bad.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadProver(good, ""); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("circuit.json %s: %v, want ErrKeys with %q", bad.name, err, bad.want)
		}
	}

	// Keys written before circuit.json existed: refused, with what to do.
	if err := os.Remove(filepath.Join(good, CircuitFile)); err != nil {
		t.Fatal(err)
	}
	_, err = LoadProver(good, "")
	if !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "older vtrain") {
		t.Fatalf("keys without circuit.json: %v, want ErrKeys naming an older vtrain", err)
	}
}

// TestSaveNeedsCircuit: keys with a proving key and no constraint system
// cannot be saved (circuit.json could not name their circuit); a
// verifying key alone can.
func TestSaveNeedsCircuit(t *testing.T) {
	k := keysForSmall(t)
	if err := (&Keys{Params: k.Params, PK: k.PK, VK: k.VK}).Save(t.TempDir()); !errors.Is(err, ErrKeys) {
		t.Fatalf("a proving key without its constraint system: %v", err)
	}
	dir := t.TempDir()
	if err := (&Keys{Params: k.Params, VK: k.VK}).Save(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, CircuitFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a verifying key alone: %s written (%v)", CircuitFile, err)
	}
}
