package zk

import (
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark/constraint/solver"
	"github.com/consensys/gnark/frontend"
)

// lyingCounts is hintCounts as a cheating prover would run it: a query
// outside the table is counted as the entry it equals modulo the table's
// size, instead of leaving the witness unsolvable, so that only the
// log-derivative equation can refuse it.
func lyingCounts(_ *big.Int, in, out []*big.Int) error {
	size := in[0].Int64()
	for _, o := range out {
		o.SetInt64(0)
	}
	for _, q := range in[1:] {
		t := new(big.Int).Mod(q, big.NewInt(size)).Int64()
		out[t].Add(out[t], big.NewInt(1))
	}
	return nil
}

// TestLookupRefusesLimbs: θ enters the circuit as limbs, and a witness
// whose limbs are out of their tables is refused even by a prover that
// lies in its multiplicities: the same θ with a carry moved into a lower
// limb (an 11-bit limb of 2^11 or more), and a parameter pushed out of its
// 31-bit lane (a top limb of 2^9 or more) with its neighbour lowered, which
// packs to the same commitment element.
func TestLookupRefusesLimbs(t *testing.T) {
	f := smallFixture(t)
	ccs, err := Compile(f.p)
	if err != nil {
		t.Fatal(err)
	}
	field := ecc.BN254.ScalarField()
	lie := solver.OverrideHint(solver.GetHintID(hintCounts), lyingCounts)
	solve := func(edit func(c *StepCircuit)) (honest, lying error) {
		a, err := assign(f.p, f.st, f.w)
		if err != nil {
			t.Fatal(err)
		}
		edit(a)
		w, err := frontend.NewWitness(a, field)
		if err != nil {
			t.Fatal(err)
		}
		return ccs.IsSolved(w), ccs.IsSolved(w, lie)
	}
	limb := func(c *StepCircuit, i, k int) *big.Int { return c.Theta[i][k].(*big.Int) }

	honest, lying := solve(func(*StepCircuit) {})
	if honest != nil || lying != nil {
		t.Fatalf("the honest witness: %v; with the lying counts (equal to the honest ones here): %v", honest, lying)
	}
	// Param 0's limbs with its top limb lowered by one and the middle limb
	// raised by 2^11: the same value.
	{
		honest, lying = solve(func(c *StepCircuit) {
			if limb(c, 0, 2).Sign() == 0 {
				t.Fatal("the fixture's θ₀ has a zero top limb")
			}
			limb(c, 0, 2).Sub(limb(c, 0, 2), big.NewInt(1))
			limb(c, 0, 1).Add(limb(c, 0, 1), big.NewInt(1<<limbBits))
		})
		if honest == nil || lying == nil {
			t.Errorf("a middle limb of 2^11 or more is accepted (honest counts: %v, lying counts: %v)", honest, lying)
		}
	}
	// θ₀ + 2^31 and θ₁ − 1: lanes 0 and 1 of the first packed element
	// borrow from each other, the packed element is unchanged.
	honest, lying = solve(func(c *StepCircuit) {
		limb(c, 0, 2).Add(limb(c, 0, 2), big.NewInt(1<<(thetaBits-2*limbBits)))
		l := limb(c, 1, 0)
		if l.Sign() == 0 {
			t.Fatal("the fixture's θ₁ has a zero low limb")
		}
		l.Sub(l, big.NewInt(1))
	})
	if honest == nil || lying == nil {
		t.Errorf("a parameter outside its lane is accepted (honest counts: %v, lying counts: %v)", honest, lying)
	}
}

func TestLimbWidths(t *testing.T) {
	for nb, want := range map[int][]int{1: {1}, 8: {8}, 11: {11}, 12: {11, 1}, 22: {11, 11}, 31: {11, 11, 9}, 49: {11, 11, 11, 11, 5}} {
		got := limbWidths(nb)
		if len(got) != len(want) {
			t.Errorf("limbWidths(%d) = %v, want %v", nb, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("limbWidths(%d) = %v, want %v", nb, got, want)
			}
		}
		v := new(big.Int).Sub(pow2(nb), big.NewInt(1))
		out := make([]*big.Int, len(want))
		for i := range out {
			out[i] = new(big.Int)
		}
		limbsOf(v, nb, out)
		back := new(big.Int)
		for i := len(out) - 1; i >= 0; i-- {
			if out[i].Cmp(pow2(want[i])) >= 0 {
				t.Errorf("limbsOf(2^%d − 1): limb %d = %v does not fit %d bits", nb, i, out[i], want[i])
			}
			back.Lsh(back, limbBits).Add(back, out[i])
		}
		if back.Cmp(v) != 0 {
			t.Errorf("limbsOf(2^%d − 1) recomposes to %v", nb, back)
		}
	}
}

// TestLoadProverRefusesOtherCircuit: a keys directory whose proving key is
// another circuit's (here: params.json says depth 4, the keys are depth
// 3's) is refused when it is loaded, not halfway through a proof.
func TestLoadProverRefusesOtherCircuit(t *testing.T) {
	keys := keysForSmall(t)
	dir := t.TempDir()
	if err := keys.Save(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadProver(dir, ""); err != nil {
		t.Fatalf("the keys as saved: %v", err)
	}
	other := keys.Params
	other.Depth++
	b, err := json.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ParamsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadProver(dir, "")
	if !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "wires") {
		t.Fatalf("keys of another circuit: %v, want ErrKeys naming the wires", err)
	}
}
