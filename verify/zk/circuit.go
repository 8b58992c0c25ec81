package zk

import (
	"errors"
	"fmt"
	"math/big"
	"math/bits"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark/constraint/solver"
	"github.com/consensys/gnark/frontend"
	"github.com/consensys/gnark/std/permutation/poseidon2"
)

// StepCircuit proves that ThetaOut commits to Params.Step(θ, batch) where
// ThetaIn commits to θ and sample b of the batch lies under DataRoot at
// leaf Leaves[b]. The context (run, round, peer) is public so that a proof
// is valid for one contribution only, and the leaves are public so that it
// is valid for the batch the run's sampler drew only (see Draw). θ and the
// samples stay private.
type StepCircuit struct {
	ThetaIn  frontend.Variable   `gnark:",public"`
	ThetaOut frontend.Variable   `gnark:",public"`
	DataRoot frontend.Variable   `gnark:",public"`
	RunHi    frontend.Variable   `gnark:",public"`
	RunLo    frontend.Variable   `gnark:",public"`
	Round    frontend.Variable   `gnark:",public"`
	Peer     frontend.Variable   `gnark:",public"`
	Leaves   []frontend.Variable `gnark:",public"` // Batch: each sample's leaf index

	Theta    [][]frontend.Variable // NumParams × thetaLimbs: the limbs of θ + ThetaBound
	Pixels   [][]frontend.Variable // Batch × Features
	Labels   []frontend.Variable   // Batch
	Indices  [][]frontend.Variable // Batch × Depth: bit l of the sample's leaf index
	Siblings [][]frontend.Variable // Batch × Depth

	P Params `gnark:"-"`
}

// NewCircuit returns the circuit's shape for compilation (and for
// assignments to fill).
func NewCircuit(p Params) *StepCircuit {
	c := &StepCircuit{
		P:        p,
		Leaves:   make([]frontend.Variable, p.Batch),
		Theta:    make([][]frontend.Variable, p.NumParams()),
		Pixels:   make([][]frontend.Variable, p.Batch),
		Labels:   make([]frontend.Variable, p.Batch),
		Indices:  make([][]frontend.Variable, p.Batch),
		Siblings: make([][]frontend.Variable, p.Batch),
	}
	for i := range c.Theta {
		c.Theta[i] = make([]frontend.Variable, thetaLimbs)
	}
	for b := range p.Batch {
		c.Pixels[b] = make([]frontend.Variable, p.Features)
		c.Indices[b] = make([]frontend.Variable, p.Depth)
		c.Siblings[b] = make([]frontend.Variable, p.Depth)
	}
	return c
}

func init() {
	solver.RegisterHint(hintFloorDiv, hintDivLimbs, hintMax, hintBelow, hintLanes, hintUpdate)
}

// signed maps a field element to the integer in (−p/2, p/2] it stands for.
func signed(field, x *big.Int) *big.Int {
	v := new(big.Int).Set(x)
	half := new(big.Int).Rsh(field, 1)
	if v.Cmp(half) > 0 {
		v.Sub(v, field)
	}
	return v
}

// hintFloorDiv: (n, d) ↦ (⌊n/d⌋, n mod d) for signed n and d > 0.
func hintFloorDiv(field *big.Int, in, out []*big.Int) error {
	if len(in) != 2 || len(out) != 2 {
		return errors.New("floordiv: want 2 inputs and 2 outputs")
	}
	n, d := signed(field, in[0]), signed(field, in[1])
	if d.Sign() <= 0 {
		return errors.New("floordiv: divisor not positive")
	}
	q, r := new(big.Int), new(big.Int)
	q.DivMod(n, d, r) // Euclidean: 0 ≤ r < d, so q = ⌊n/d⌋ for d > 0
	out[0].Mod(q, field)
	out[1].Set(r)
	return nil
}

// hintDivLimbs: (n, d, nb) ↦ (⌊n/d⌋, the limbs of n mod d as an nb-bit
// value) for signed n and d > 0.
func hintDivLimbs(field *big.Int, in, out []*big.Int) error {
	if len(in) != 3 || !in[2].IsInt64() || len(out) != 1+len(limbWidths(int(in[2].Int64()))) {
		return errors.New("divlimbs: want n, d, a width and 1 + its limbs outputs")
	}
	qr := []*big.Int{out[0], new(big.Int)}
	if err := hintFloorDiv(field, in[:2], qr); err != nil {
		return err
	}
	limbsOf(qr[1], int(in[2].Int64()), out[1:])
	return nil
}

// hintMax: the largest of the signed inputs.
func hintMax(field *big.Int, in, out []*big.Int) error {
	if len(in) == 0 || len(out) != 1 {
		return errors.New("max: want inputs and 1 output")
	}
	m := signed(field, in[0])
	for _, x := range in[1:] {
		if v := signed(field, x); v.Cmp(m) > 0 {
			m = v
		}
	}
	out[0].Mod(m, field)
	return nil
}

// hintBelow: 1 if the signed input is below the signed bound, else 0.
func hintBelow(field *big.Int, in, out []*big.Int) error {
	if len(in) != 2 || len(out) != 1 {
		return errors.New("below: want 2 inputs and 1 output")
	}
	out[0].SetUint64(0)
	if signed(field, in[0]).Cmp(signed(field, in[1])) < 0 {
		out[0].SetUint64(1)
	}
	return nil
}

// gadgets bundles the API with the range checks and the hash.
type gadgets struct {
	api  frontend.API
	rg   *ranges
	hash *poseidon2.Permutation // width 2: compress
}

// spongeVars is sponge of hash.go in the circuit.
func (g *gadgets) spongeVars(xs ...frontend.Variable) frontend.Variable {
	s := make([]frontend.Variable, wideWidth)
	s[0] = len(xs)
	for i := 1; i < wideWidth; i++ {
		s[i] = 0
	}
	for i := 0; i < len(xs); i += wideRate {
		for k := 0; k < wideRate && i+k < len(xs); k++ {
			s[1+k] = g.api.Add(s[1+k], xs[i+k])
		}
		widePermuteVars(g.api, s)
	}
	return s[1]
}

// checkRange asserts 0 ≤ v < bound for a constant bound ≥ 1.
func (g *gadgets) checkRange(v frontend.Variable, bound *big.Int) {
	nb := bitsBelow(bound)
	g.rg.check(v, nb)
	g.checkTop(v, bound, nb)
}

// bitsBelow is the width of the values below bound ≥ 1.
func bitsBelow(bound *big.Int) int { return new(big.Int).Sub(bound, big.NewInt(1)).BitLen() }

// checkTop completes a check of v < 2^nb to v < bound when bound is not a
// power of two: bound − 1 − v < 2^nb too.
func (g *gadgets) checkTop(v frontend.Variable, bound *big.Int, nb int) {
	if pow2(nb).Cmp(bound) != 0 {
		g.rg.check(g.api.Sub(new(big.Int).Sub(bound, big.NewInt(1)), v), nb)
	}
}

// remainder is a hinted remainder below bound, given by its limbs: the
// value with its range checked.
func (g *gadgets) remainder(limbs []frontend.Variable, bound *big.Int) frontend.Variable {
	nb := bitsBelow(bound)
	r := g.rg.join(limbs, nb)
	g.checkTop(r, bound, nb)
	return r
}

// thetaOut range-checks a parameter of θ′ and returns it as the sum of
// its limbs, the same value: the commitment then hashes small limbs where
// θ − q would bring the update q, a full-size field element when it is
// negative, into the sponge's first multiplications (and so into the
// prover's A and B multi-scalar multiplications).
func (g *gadgets) thetaOut(v frontend.Variable) frontend.Variable {
	return g.api.Sub(g.rg.check(g.api.Add(v, ThetaBound), thetaBits), ThetaBound)
}

// checkSigned asserts −2^(nb−1) ≤ v < 2^(nb−1).
func (g *gadgets) checkSigned(v frontend.Variable, nb int) {
	g.rg.check(g.api.Add(v, pow2(nb-1)), nb)
}

// roundDiv returns q = ⌊(n + d/2)/d⌋ for a constant even d > 0. The
// remainder is range-checked here; the caller must bound q (a range check
// or a check on a value q feeds) so that q·d + r = n + d/2 cannot wrap.
func (g *gadgets) roundDiv(n frontend.Variable, d int64) frontend.Variable {
	num := g.api.Add(n, d/2)
	bound := big.NewInt(d)
	nb := bitsBelow(bound)
	qr, err := g.api.Compiler().NewHint(hintDivLimbs, 1+len(limbWidths(nb)), num, d, nb)
	if err != nil {
		panic(err) // a registered hint with fixed arity: unreachable
	}
	q, r := qr[0], g.remainder(qr[1:], bound)
	assertZero(g.api, g.api.Sub(g.api.Add(g.api.Mul(q, d), r), num))
	return q
}

func bigOf(e fr.Element) *big.Int { return e.BigInt(new(big.Int)) }

func pow2(n int) *big.Int { return new(big.Int).Lsh(big.NewInt(1), uint(n)) }

// Define implements frontend.Circuit.
func (c *StepCircuit) Define(api frontend.API) error {
	p := c.P
	if err := p.Validate(); err != nil {
		return err
	}
	if len(c.Theta) != p.NumParams() || len(c.Pixels) != p.Batch || len(c.Labels) != p.Batch || len(c.Leaves) != p.Batch ||
		len(c.Indices) != p.Batch || len(c.Siblings) != p.Batch {
		return fmt.Errorf("%w: circuit shape does not match its parameters", ErrParams)
	}
	h, err := poseidon2.NewPoseidon2FromParameters(api, poseidonWidth, poseidonFull, poseidonPartial)
	if err != nil {
		return err
	}
	g := &gadgets{api: api, rg: newRanges(api), hash: h}
	C, F, B := p.Classes, p.Features, p.Batch
	nw := F * C

	// The context takes part in a constraint, so that the proof is bound
	// to it (as Tornado Cash binds its recipient with a square).
	for _, v := range []frontend.Variable{c.RunHi, c.RunLo, c.Round, c.Peer} {
		api.Mul(v, v)
	}

	// θ: in range by its limbs, and committed.
	theta := make([]frontend.Variable, len(c.Theta))
	for i, limbs := range c.Theta {
		if len(limbs) != thetaLimbs {
			return fmt.Errorf("%w: parameter %d has %d limbs, not %d", ErrParams, i, len(limbs), thetaLimbs)
		}
		theta[i] = api.Sub(g.rg.join(limbs, thetaBits), ThetaBound)
	}
	api.AssertIsEqual(g.commitTheta(p, theta), c.ThetaIn)

	// Logits need (bits of F+1) + 30 + 8 − 12 bits and a sign.
	zBits := bits.Len(uint(F+1)) + 26 + 1
	clamp := int64(expClamp) << FracZ
	sBound := new(big.Int).Lsh(big.NewInt(int64(2*C)), FracE) // 2·Σu ≤ 2·C·2^26

	// The weights' gradients, packed: gradW[i][g] holds, for the classes
	// j of group g, lanes of bwdL bits u_ij = Σ_b (d_bj + 2^16)·x_bi, and
	// xtot[i] = Σ_b x_bi, so that G_ij = u_ij − 2^16·xtot[i] (see
	// packedUpdate). The biases' gradients are plain.
	bwdL, bwdK := bwdLanes(B)
	var groups []int
	for j0 := 0; j0 < C; j0 += bwdK {
		groups = append(groups, j0)
	}
	gradW := make([][]frontend.Variable, F)
	xtot := make([]frontend.Variable, F)
	for i := range gradW {
		gradW[i] = make([]frontend.Variable, len(groups))
		for gi := range groups {
			gradW[i][gi] = 0
		}
		xtot[i] = 0
	}
	gradBias := make([]frontend.Variable, C)
	for j := range gradBias {
		gradBias[j] = 0
	}
	e := make([]frontend.Variable, C)
	for b := range B {
		px := c.Pixels[b]
		if len(px) != F || len(c.Indices[b]) != p.Depth || len(c.Siblings[b]) != p.Depth {
			return fmt.Errorf("%w: sample %d shape does not match its parameters", ErrParams, b)
		}
		// The sample: pixels are bytes, the label one-hot, the leaf under the root.
		for _, x := range px {
			g.rg.lookup(x, 8)
		}
		onehot := make([]frontend.Variable, C)
		var sum, idx frontend.Variable = 0, 0
		for j := range C {
			onehot[j] = api.IsZero(api.Sub(c.Labels[b], j))
			sum = api.Add(sum, onehot[j])
			idx = api.Add(idx, api.Mul(onehot[j], j))
		}
		api.AssertIsEqual(sum, 1) // label ∈ [0, C)
		api.AssertIsEqual(idx, c.Labels[b])
		leaf := g.leaf(px, c.Labels[b])
		api.AssertIsEqual(g.rootFromPath(leaf, c.Indices[b], c.Siblings[b]), c.DataRoot)
		// The path's bits are the drawn leaf's index (rootFromPath checks
		// they are bits; Depth bits of a public index below 2^Depth make
		// the decomposition unique).
		var at frontend.Variable = 0
		for l, bit := range c.Indices[b] {
			at = api.Add(at, api.Mul(bit, pow2(l)))
		}
		api.AssertIsEqual(at, c.Leaves[b])

		// Forward: the products θ_ij·x_i with several classes packed in a
		// field element (packedForward): one constraint per pixel and
		// group of classes instead of one per pixel and class.
		var xsum frontend.Variable = 0
		for _, x := range px {
			xsum = api.Add(xsum, x)
		}
		sums := g.packedForward(p, theta, px)
		z := make([]frontend.Variable, C)
		for j := range C {
			// Σ_i θ_ij·x_i = Σ_i (θ_ij + 2^30)·x_i − 2^30·Σ_i x_i
			acc := api.Add(api.Mul(theta[nw+j], 1<<FracX), sums[j], api.Mul(xsum, -ThetaBound))
			z[j] = g.roundDiv(acc, 1<<accShift)
			g.checkSigned(z[j], zBits)
		}
		// Softmax: the maximum is one of the logits and no logit exceeds it.
		mm, err := api.Compiler().NewHint(hintMax, 1, z...)
		if err != nil {
			return err
		}
		m := mm[0]
		var prod frontend.Variable = 1
		for j := range C {
			diff := api.Sub(m, z[j])
			g.rg.check(diff, zBits+1)
			prod = api.Mul(prod, diff)
		}
		api.AssertIsEqual(prod, 0)
		u := make([]frontend.Variable, C)
		var s frontend.Variable = 0
		for j := range C {
			t := api.Sub(z[j], m) // ≤ 0
			below, err := api.Compiler().NewHint(hintBelow, 1, t, -clamp)
			if err != nil {
				return err
			}
			cb := below[0]
			api.AssertIsBoolean(cb)
			// cb = 1: t ≤ −clamp; cb = 0: t ≥ −clamp. Either way t' = max(t, −clamp).
			g.rg.check(api.Select(cb, api.Sub(-clamp, t), api.Add(t, clamp)), zBits+1)
			t = api.Select(cb, -clamp, t)
			e := api.Add(1<<FracE, api.Mul(t, 1<<(FracE-FracZ-expSquarings)))
			for range expSquarings {
				e = g.roundDiv(api.Mul(e, e), 1<<FracE)
				g.rg.check(e, FracE+1) // honest values are ≤ 2^26
			}
			u[j] = e
			s = api.Add(s, e)
		}
		twoS := api.Mul(s, 2)
		for j := range C {
			num := api.Add(api.Mul(u[j], 1<<(FracP+1)), s)
			pr, err := api.Compiler().NewHint(hintFloorDiv, 2, num, twoS)
			if err != nil {
				return err
			}
			pj, r := pr[0], pr[1]
			assertZero(api, api.Sub(api.Add(api.Mul(pj, twoS), r), num))
			g.checkRange(r, sBound)
			g.checkRange(api.Sub(api.Sub(twoS, 1), r), sBound) // r < 2s
			g.rg.check(pj, FracP+1)                            // honest values are ≤ 2^16
			d := api.Sub(pj, api.Mul(onehot[j], 1<<FracP))
			// Backward: e = d + 2^16 ∈ [0, 2^18) (pj < 2^17, onehot a
			// bit), packed bwdK classes to an element; the bias gradient
			// accumulates d·2^8.
			e[j] = api.Add(d, 1<<FracP)
			gradBias[j] = api.Add(gradBias[j], api.Mul(d, 1<<FracX))
		}
		for gi, j0 := range groups {
			var packed frontend.Variable = 0
			for j := j0; j < min(j0+bwdK, C); j++ {
				packed = api.Add(packed, api.Mul(e[j], pow2(bwdL*(j-j0))))
			}
			for i, x := range px {
				gradW[i][gi] = api.Add(gradW[i][gi], api.Mul(x, packed))
			}
		}
		for i, x := range px {
			xtot[i] = api.Add(xtot[i], x)
		}
	}

	// Update: θ' = θ − round(η·G / (B·2^20)), in range, and committed.
	out := make([]frontend.Variable, len(theta))
	div := int64(B) << updateShift
	for i := range F {
		for gi, j0 := range groups {
			j1 := min(j0+bwdK, C)
			q := g.packedUpdate(p, gradW[i][gi], xtot[i], j1-j0, bwdL)
			for j := j0; j < j1; j++ {
				out[i*C+j] = api.Sub(theta[i*C+j], q[j-j0])
				out[i*C+j] = g.thetaOut(out[i*C+j]) // bounds q too: |q| < 2^31
			}
		}
	}
	for j, gr := range gradBias {
		q := g.roundDiv(api.Mul(gr, p.LR), div)
		out[nw+j] = api.Sub(theta[nw+j], q)
		out[nw+j] = g.thetaOut(out[nw+j])
	}
	api.AssertIsEqual(g.commitTheta(p, out), c.ThetaOut)
	return nil
}

// commitTheta is CommitTheta in the circuit; the values must be
// range-checked by the caller.
func (g *gadgets) commitTheta(p Params, t []frontend.Variable) frontend.Variable {
	xs := []frontend.Variable{bigOf(tagTheta), p.Features, p.Classes}
	for i := 0; i < len(t); i += thetaPerElement {
		var acc frontend.Variable = 0
		for k := i; k < min(i+thetaPerElement, len(t)); k++ {
			v := g.api.Add(t[k], ThetaBound)
			acc = g.api.Add(acc, g.api.Mul(v, pow2(thetaBits*(k-i))))
		}
		xs = append(xs, acc)
	}
	return g.spongeVars(xs...)
}

// leaf is Leaf in the circuit; the pixels must be range-checked bytes.
func (g *gadgets) leaf(px []frontend.Variable, label frontend.Variable) frontend.Variable {
	xs := []frontend.Variable{bigOf(tagLeaf), label}
	for i := 0; i < len(px); i += pixelsPerElement {
		var acc frontend.Variable = 0
		for k := i; k < min(i+pixelsPerElement, len(px)); k++ {
			acc = g.api.Add(acc, g.api.Mul(px[k], pow2(8*(k-i))))
		}
		xs = append(xs, acc)
	}
	return g.spongeVars(xs...)
}

// rootFromPath is RootFromPath in the circuit.
func (g *gadgets) rootFromPath(leaf frontend.Variable, index, sib []frontend.Variable) frontend.Variable {
	cur := leaf
	for l := range sib {
		g.api.AssertIsBoolean(index[l])
		left := g.api.Select(index[l], sib[l], cur)
		right := g.api.Select(index[l], cur, sib[l])
		cur = g.hash.Compress(left, right)
	}
	return cur
}
