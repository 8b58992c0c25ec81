package zk

import (
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark/frontend"
	"github.com/consensys/gnark/frontend/cs/r1cs"
	"github.com/consensys/gnark/test"
	iden3 "github.com/iden3/go-iden3-crypto/poseidon"
)

// widePermuteRounds is widePermute with the partial rounds taken one by
// one, as the paper writes them and the circuit computes them.
func widePermuteRounds(s *[wideWidth]fr.Element) {
	w := wide()
	for r := range wideFull + widePartial {
		if r < wideFull/2 || r >= wideFull/2+widePartial {
			w.fullRound(s, r)
			continue
		}
		for i := range s {
			s[i].Add(&s[i], &w.rc[r*wideWidth+i])
		}
		sbox(&s[0])
		w.mix(s)
	}
}

// TestPoseidonKnownAnswers checks the wide permutation, whose constants
// and matrix wide derives from the reference script's Grain LFSR, against
// an independent implementation with circomlib's hard-coded constants:
// iden3's HashWithStateEx puts the capacity element (initState) first and
// the 16 inputs after it, permutes, and returns the first nOuts elements
// of the state; asked for all 17 it is the whole permutation. Both
// widePermute and the rounds one by one must agree with it.
func TestPoseidonKnownAnswers(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 68))
	p := fr.Modulus()
	states := [][wideWidth]*big.Int{}
	var zero, small, top, random [wideWidth]*big.Int
	for i := range wideWidth {
		zero[i] = big.NewInt(0)
		small[i] = big.NewInt(int64(i))
		top[i] = new(big.Int).Sub(p, big.NewInt(int64(1+i)))
	}
	states = append(states, zero, small, top)
	for range 5 {
		for i := range wideWidth {
			var b [32]byte
			for k := range b {
				b[k] = byte(rng.Uint32())
			}
			random[i] = new(big.Int).Mod(new(big.Int).SetBytes(b[:]), p)
		}
		states = append(states, random)
	}
	for n, st := range states {
		want, err := iden3.HashWithStateEx(st[1:], st[0], wideWidth)
		if err != nil {
			t.Fatal(err)
		}
		var s [wideWidth]fr.Element
		for i := range s {
			s[i].SetBigInt(st[i])
		}
		plain := s
		widePermute(&s)
		widePermuteRounds(&plain)
		for i := range s {
			if got := s[i].BigInt(new(big.Int)); got.Cmp(want[i]) != 0 {
				t.Errorf("state %d, element %d: got %x, iden3 %x", n, i, got, want[i])
			}
			if got := plain[i].BigInt(new(big.Int)); got.Cmp(want[i]) != 0 {
				t.Errorf("state %d, element %d: round by round %x, iden3 %x", n, i, got, want[i])
			}
		}
	}
	// circomlib's published vector, Poseidon(1, …, 16) (its test suite's and
	// iden3's): capacity 0, inputs after it, output element 0.
	var s [wideWidth]fr.Element
	for i := 1; i < wideWidth; i++ {
		s[i].SetUint64(uint64(i))
	}
	widePermute(&s)
	if got, want := s[0].String(), "9989051620750914585850546081941653841776809718687451684622678807385399211877"; got != want {
		t.Errorf("Poseidon(1..16) = %s, circomlib %s", got, want)
	}
}

// spongeCircuit checks spongeVars of Xs against the public Digest.
type spongeCircuit struct {
	Xs     []frontend.Variable
	Digest frontend.Variable `gnark:",public"`
}

func (c *spongeCircuit) Define(api frontend.API) error {
	g := &gadgets{api: api}
	api.AssertIsEqual(g.spongeVars(c.Xs...), c.Digest)
	return nil
}

// TestSpongeCircuit checks the in-circuit sponge against the native one for
// lengths around the rate (one block, a full block, one more, several),
// refuses a wrong digest and a changed input, and counts the constraints:
// 612 per permutation and nothing else.
func TestSpongeCircuit(t *testing.T) {
	field := ecc.BN254.ScalarField()
	for _, n := range []int{1, 15, 16, 17, 33, 48} {
		xs := make([]fr.Element, n)
		for i := range xs {
			xs[i].SetUint64(uint64(1000*n + i))
		}
		xs[0].Neg(&xs[0]) // a large element too
		digest := sponge(xs...)
		assign := func(xs []fr.Element, d fr.Element) *spongeCircuit {
			c := &spongeCircuit{Xs: make([]frontend.Variable, len(xs)), Digest: bigOf(d)}
			for i := range xs {
				c.Xs[i] = bigOf(xs[i])
			}
			return c
		}
		shape := &spongeCircuit{Xs: make([]frontend.Variable, n)}
		if err := test.IsSolved(shape, assign(xs, digest), field); err != nil {
			t.Errorf("n=%d: the native digest does not satisfy the circuit: %v", n, err)
		}
		var wrong fr.Element
		wrong.SetOne()
		wrong.Add(&wrong, &digest)
		if err := test.IsSolved(shape, assign(xs, wrong), field); err == nil {
			t.Errorf("n=%d: a wrong digest satisfies the circuit", n)
		}
		changed := append([]fr.Element(nil), xs...)
		changed[n-1].SetUint64(7)
		if err := test.IsSolved(shape, assign(changed, digest), field); err == nil {
			t.Errorf("n=%d: a changed input satisfies the circuit", n)
		}
		ccs, err := frontend.Compile(field, r1cs.NewBuilder, shape)
		if err != nil {
			t.Fatal(err)
		}
		// 612 per permutation, less the first round's S-boxes of constant
		// elements (the capacity, and the zeros of a short first block:
		// gnark computes them at compile time), plus the equality.
		perms := (n + wideRate - 1) / wideRate
		constant := 1 + max(0, wideRate-n)
		want := perms*3*(wideFull*wideWidth+widePartial) - 3*constant + 1
		if got := ccs.GetNbConstraints(); got != want {
			t.Errorf("n=%d: %d constraints, want %d (%d permutations)", n, got, want, perms)
		}
	}
}

// TestSpongeLength checks that the length is part of the digest: a zero
// appended (the padding value) changes it.
func TestSpongeLength(t *testing.T) {
	xs := make([]fr.Element, 15)
	for i := range xs {
		xs[i].SetUint64(uint64(i + 1))
	}
	a, b := sponge(xs...), sponge(append(xs, fr.Element{})...)
	if a == b {
		t.Error("appending a zero does not change the digest")
	}
}

// widePermuteVarsRef is widePermuteVars as the rounds are written, every
// linear layer through the builder: the reference the compiled system
// must match term for term.
func widePermuteVarsRef(api frontend.API, s []frontend.Variable) {
	w := wide()
	next := make([]frontend.Variable, wideWidth)
	for r := range wideFull + widePartial {
		for i := range s {
			s[i] = api.Add(s[i], bigOf(w.rc[r*wideWidth+i]))
		}
		if r < wideFull/2 || r >= wideFull/2+widePartial {
			for i := range s {
				s[i] = sboxVar(api, s[i])
			}
		} else {
			s[0] = sboxVar(api, s[0])
		}
		for i := range next {
			var acc frontend.Variable = 0
			for j := range s {
				acc = api.Add(acc, api.Mul(s[j], bigOf(w.mds[i][j])))
			}
			next[i] = acc
		}
		copy(s, next)
	}
}

// permuteCircuit chains two permutations of a state whose elements are
// constants, single wires and sums of wires, as a sponge's are.
type permuteCircuit struct {
	In  []frontend.Variable
	Out frontend.Variable `gnark:",public"`
	ref bool
}

func (c *permuteCircuit) Define(api frontend.API) error {
	s := make([]frontend.Variable, wideWidth)
	for i := range s {
		switch i % 3 {
		case 0:
			s[i] = i // a constant
		case 1:
			s[i] = c.In[i]
		default:
			s[i] = api.Add(c.In[i], api.Mul(c.In[i-1], 3), c.In[0])
		}
	}
	permute := widePermuteVars
	if c.ref {
		permute = widePermuteVarsRef
	}
	permute(api, s)
	s[1] = api.Add(s[1], c.In[5])
	permute(api, s)
	api.AssertIsEqual(api.Add(s[0], s[1], s[16]), c.Out)
	return nil
}

// TestWidePermuteVarsSameSystem: computing the linear layers on
// coefficients, the partial rounds in their sparse form, compiles to the
// very constraint system of the rounds as written (CircuitDigest: every
// constraint's terms and coefficients), so that keys made before it stay
// valid; and the circuit still computes the native permutation.
func TestWidePermuteVarsSameSystem(t *testing.T) {
	field := ecc.BN254.ScalarField()
	digest := func(ref bool) (string, int) {
		ccs, err := frontend.Compile(field, r1cs.NewBuilder, &permuteCircuit{In: make([]frontend.Variable, wideWidth), ref: ref}, frontend.WithCompressThreshold(0))
		if err != nil {
			t.Fatal(err)
		}
		d, err := CircuitDigest(ccs)
		if err != nil {
			t.Fatal(err)
		}
		return d, ccs.GetNbConstraints()
	}
	got, n := digest(false)
	want, wantN := digest(true)
	if got != want || n != wantN {
		t.Fatalf("constraint system %s (%d constraints), the rounds as written give %s (%d)", got, n, want, wantN)
	}

	// The output, natively.
	var in [wideWidth]fr.Element
	var s [wideWidth]fr.Element
	for i := range in {
		in[i].SetUint64(uint64(7*i + 1))
	}
	in[2].Neg(&in[2])
	var three, tmp fr.Element
	three.SetUint64(3)
	for i := range s {
		switch i % 3 {
		case 0:
			s[i].SetUint64(uint64(i))
		case 1:
			s[i] = in[i]
		default:
			tmp.Mul(&in[i-1], &three)
			s[i].Add(&in[i], &tmp)
			s[i].Add(&s[i], &in[0])
		}
	}
	widePermute(&s)
	s[1].Add(&s[1], &in[5])
	widePermute(&s)
	var out fr.Element
	out.Add(&s[0], &s[1])
	out.Add(&out, &s[16])
	assign := &permuteCircuit{In: make([]frontend.Variable, wideWidth), Out: bigOf(out)}
	for i := range in {
		assign.In[i] = bigOf(in[i])
	}
	if err := test.IsSolved(&permuteCircuit{In: make([]frontend.Variable, wideWidth)}, assign, field); err != nil {
		t.Fatalf("the native permutation does not satisfy the circuit: %v", err)
	}
	out.SetOne()
	assign.Out = bigOf(out)
	if err := test.IsSolved(&permuteCircuit{In: make([]frontend.Variable, wideWidth)}, assign, field); err == nil {
		t.Fatal("a wrong output satisfies the circuit")
	}
}
