package zk

import (
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/consensys/gnark/constraint/solver"
	"github.com/consensys/gnark/frontend"
	"github.com/consensys/gnark/std/multicommit"
)

// Range checks by log-derivative lookups, in the circuit's own tables.
//
// A value v claimed to lie in [0, 2^nb) is split into limbs of limbBits
// bits, the top one narrower, and each limb is looked up in the table of
// its width: [0, 2^w) for w ≤ limbBits. The lookups of each table are
// proven at once with a log-derivative argument (Haböck, "Multivariate
// lookups based on logarithmic derivatives", 2022): for a challenge r,
//
//	Σ_queries 1/(r − q) = Σ_{t ∈ table} m_t/(r − t)
//
// with m_t the number of times t is queried (hinted). As rational functions
// in r the two sides are equal only if every query is in the table (the
// number of queries is far below the field's characteristic), so at a
// random r the equation fails for a query outside the table except with
// probability below (queries + table)/p. r is the hash of a commitment, in
// the proof, to every wire the queries and multiplicities are made of
// (gnark's multicommit, BSB22 commitments in Groth16), so the prover fixes
// them before it learns r. Every table shares that one r; each table's
// equation stands alone.
//
// Why not gnark's std/rangecheck: it uses one table of a single width for
// every check, so the top limb of a 31-bit value (9 bits with 11-bit limbs)
// costs a second lookup of the limb shifted to 11 bits, and a value is
// always a wire with a recomposition constraint. Here a top limb is one
// lookup in the table of its width (the small tables cost 2^w constraints
// each, a few thousand in all), a value of at most limbBits bits is looked
// up whole, and a value the circuit defines by its limbs (θ, the hinted
// remainders) is the linear combination of its limbs, with no wire and no
// recomposition constraint of its own. The cost per range-checked value:
// one constraint per limb, plus one for the recomposition of a value that
// exists before its limbs.

// limbBits is the width of the widest table. 11 bits balance the 2^11
// table entries against one more limb per 31-bit value (as gnark's own
// choice for this circuit found).
const limbBits = 11

func init() {
	solver.RegisterHint(hintLimbs, hintCounts)
}

// limbWidths returns the widths of the limbs of an nb-bit value, low first.
func limbWidths(nb int) []int {
	var ws []int
	for ; nb > limbBits; nb -= limbBits {
		ws = append(ws, limbBits)
	}
	return append(ws, nb)
}

// limbsOf splits a non-negative v below 2^nb into its limbs, low first. A
// value out of range keeps its excess in the top limb, which its table
// then refuses.
func limbsOf(v *big.Int, nb int, out []*big.Int) {
	t := new(big.Int).Set(v)
	mask := big.NewInt(1<<limbBits - 1)
	for i, w := range limbWidths(nb) {
		if i == len(out)-1 {
			out[i].Set(t)
			return
		}
		out[i].And(t, mask)
		t.Rsh(t, uint(w))
	}
}

// hintLimbs: (nb, v) ↦ the limbs of v (limbWidths(nb)).
func hintLimbs(_ *big.Int, in, out []*big.Int) error {
	if len(in) != 2 || !in[0].IsInt64() || len(out) != len(limbWidths(int(in[0].Int64()))) {
		return errors.New("limbs: want a width and a value")
	}
	limbsOf(in[1], int(in[0].Int64()), out)
	return nil
}

// hintCounts: (size, queries…) ↦ for each t < size, how many queries are t.
// A query outside [0, size) leaves the witness unsolvable.
func hintCounts(_ *big.Int, in, out []*big.Int) error {
	if len(in) < 1 || !in[0].IsInt64() || int64(len(out)) != in[0].Int64() {
		return errors.New("counts: want the table's size and the queries")
	}
	counts := make([]int64, len(out))
	for _, q := range in[1:] {
		if !q.IsInt64() || q.Int64() >= int64(len(out)) {
			return fmt.Errorf("counts: %v is not below %d", q, len(out))
		}
		counts[q.Int64()]++
	}
	for t, c := range counts {
		out[t].SetInt64(c)
	}
	return nil
}

// ranges collects the circuit's lookups and proves them when the circuit
// is complete (Compiler().Defer).
type ranges struct {
	api     frontend.API
	queries map[int][]frontend.Variable // width → values claimed in [0, 2^width)
	closed  bool
}

func newRanges(api frontend.API) *ranges {
	r := &ranges{api: api, queries: map[int][]frontend.Variable{}}
	api.Compiler().Defer(r.close)
	return r
}

// lookup claims 0 ≤ v < 2^w for 1 ≤ w ≤ limbBits.
func (r *ranges) lookup(v frontend.Variable, w int) {
	if r.closed || w < 1 || w > limbBits {
		panic(fmt.Sprintf("zk: lookup of width %d (closed: %v)", w, r.closed)) // a bug in the circuit's code
	}
	if w == 1 {
		r.api.AssertIsBoolean(v)
		return
	}
	r.queries[w] = append(r.queries[w], v)
}

// join returns the value of limbs low first (limbWidths(nb)), each looked
// up in its table: a value in [0, 2^nb) with no wire of its own.
func (r *ranges) join(limbs []frontend.Variable, nb int) frontend.Variable {
	ws := limbWidths(nb)
	if len(limbs) != len(ws) {
		panic(fmt.Sprintf("zk: %d limbs for %d bits", len(limbs), nb))
	}
	var v frontend.Variable = 0
	for i, l := range limbs {
		r.lookup(l, ws[i])
		v = r.api.Add(v, r.api.Mul(l, pow2(limbBits*i)))
	}
	return v
}

// check asserts 0 ≤ v < 2^nb and returns v, as the sum of its limbs when
// it has more than one.
func (r *ranges) check(v frontend.Variable, nb int) frontend.Variable {
	switch {
	case nb <= 0:
		r.api.AssertIsEqual(v, 0)
		return v
	case nb <= limbBits:
		r.lookup(v, nb)
		return v
	default:
		limbs, err := r.api.Compiler().NewHint(hintLimbs, len(limbWidths(nb)), nb, v)
		if err != nil {
			panic(err) // a registered hint with fixed arity: unreachable
		}
		joined := r.join(limbs, nb)
		assertZero(r.api, r.api.Sub(joined, v))
		return joined
	}
}

// close proves every table's lookups with one challenge.
func (r *ranges) close(api frontend.API) error {
	r.closed = true
	widths := make([]int, 0, len(r.queries))
	for w := range r.queries {
		widths = append(widths, w)
	}
	slices.Sort(widths) // a deterministic circuit
	if len(widths) == 0 {
		return nil
	}
	var toCommit []frontend.Variable
	counts := make(map[int][]frontend.Variable, len(widths))
	for _, w := range widths {
		qs := r.queries[w]
		m, err := api.Compiler().NewHint(hintCounts, 1<<w, append([]frontend.Variable{1 << w}, qs...)...)
		if err != nil {
			return err
		}
		counts[w] = m
		toCommit = append(toCommit, qs...)
		toCommit = append(toCommit, m...)
	}
	multicommit.WithCommitment(api, func(api frontend.API, ch frontend.Variable) error {
		for _, w := range widths {
			// Σ 1/(ch − q) − Σ m_t/(ch − t), summed in one call: the
			// circuit is compiled without gnark's compression of long
			// sums (see Compile), which would put every term in a B term.
			terms := []frontend.Variable{0, 0}
			for t, m := range counts[w] {
				terms = append(terms, api.Neg(api.DivUnchecked(m, api.Sub(ch, t))))
			}
			for _, q := range r.queries[w] {
				terms = append(terms, api.Inverse(api.Sub(ch, q)))
			}
			assertZero(api, api.Add(terms[0], terms[1], terms[2:]...))
		}
		return nil
	}, toCommit...)
	return nil
}

// thetaLimbs is how many limbs carry a parameter in the circuit.
var thetaLimbs = len(limbWidths(thetaBits))

// assertZero asserts v = 0 as the constraint 1·0 = v, so that v's wires
// are in its C term alone. AssertIsEqual(a, b) is 1·a = b and puts a's
// wires in the B term, and in Groth16 every wire that appears in a B term
// adds a point to the prover's two B multi-scalar multiplications (in G1
// and in G2, where an addition costs about three of G1's); a wire in C
// alone costs only its point in the K multiplication, which every private
// wire has. The sums of lookups' inverses, full-size field elements, are
// the largest such terms.
func assertZero(api frontend.API, v frontend.Variable) { api.AssertIsEqual(0, v) }
