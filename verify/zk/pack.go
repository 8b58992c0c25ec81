package zk

import (
	"errors"
	"math/big"
	"math/bits"

	"github.com/consensys/gnark/frontend"
)

// Packed products. The forward and backward passes multiply every pixel by
// every class's weight or error: Features·Classes products per sample, one
// R1CS constraint each. Here a pixel multiplies a field element that packs
// several classes' values in lanes of fixed width, so one constraint makes
// several products, and the lanes are taken apart only where the values
// are needed.
//
// Why this is sound: a lane value is a non-negative integer below 2^L, so
// the packed sum Σ_k v_k·2^(kL) of K lanes, with K·L ≤ packBits < log2(p),
// is an integer below p: the field equation the circuit checks is an
// equation between integers, and two such sums are equal only if every
// lane is (the lowest differing lane would differ by a multiple of 2^L,
// which a difference below 2^L in size cannot be). Every bound below
// follows from values the circuit range-checks: θ + 2^30 ∈ [0, 2^31),
// pixels ∈ [0, 2^8), p_j ∈ [0, 2^17).

// packBits bounds the bits of a packed element: 2^253 < p for BN254.
const packBits = 252

// fwdLanes returns the lane width and lanes per element of the forward
// pass: a lane sums F products (θ + 2^30)·x < 2^31·2^8.
func fwdLanes(features int) (width, lanes int) {
	width = thetaBits + FracX + bits.Len(uint(features))
	return width, packBits / width
}

// bwdLanes returns the lane width and lanes per element of the backward
// pass and update (see packedUpdate): a lane must hold, with its sign,
// q·div + r for |q| < 2^31, div = B·2^20 and r < div, that is values of
// magnitude below B·2^51 + B·2^20 < 2^(bits(B)+51): bits(B) + 53 bits
// holds them below 2^(width−1) with a bit to spare.
func bwdLanes(batch int) (width, lanes int) {
	width = bits.Len(uint(batch)) + thetaBits + updateShift + 2
	return width, packBits / width
}

// hintLanes: (t, width, n) ↦ the n lanes of t in base 2^width, little end
// first; the last takes what is left.
func hintLanes(_ *big.Int, in, out []*big.Int) error {
	if len(in) != 2 || !in[1].IsInt64() || in[1].Int64() < 1 || in[1].Int64() > 253 {
		return errors.New("lanes: want t and a width")
	}
	w := uint(in[1].Int64())
	t := new(big.Int).Set(in[0])
	mask := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), w), big.NewInt(1))
	for k := range out {
		if k == len(out)-1 {
			out[k].Set(t)
			break
		}
		out[k].And(t, mask)
		t.Rsh(t, w)
	}
	return nil
}

// packedForward returns, for every class j, Σ_i (θ_ij + 2^30)·x_i, for
// range-checked θ and pixels px.
func (g *gadgets) packedForward(p Params, theta, px []frontend.Variable) []frontend.Variable {
	api, C := g.api, p.Classes
	width, lanes := fwdLanes(p.Features)
	sums := make([]frontend.Variable, 0, C)
	for j0 := 0; j0 < C; j0 += lanes {
		j1 := min(j0+lanes, C)
		var t frontend.Variable = 0
		for i, x := range px {
			var w frontend.Variable = 0
			for j := j0; j < j1; j++ {
				w = api.Add(w, api.Mul(api.Add(theta[i*C+j], ThetaBound), pow2(width*(j-j0))))
			}
			t = api.Add(t, api.Mul(x, w))
		}
		// Each lane of t is a sum of F products below 2^39, below 2^width;
		// the hinted lanes are range-checked to width bits and must add up
		// to t: they are t's lanes (see the package comment above).
		ls, err := api.Compiler().NewHint(hintLanes, j1-j0, t, width)
		if err != nil {
			panic(err) // a registered hint: unreachable
		}
		var sum frontend.Variable = 0
		for k, l := range ls {
			g.rg.check(l, width)
			sum = api.Add(sum, api.Mul(l, pow2(width*k)))
		}
		assertZero(api, api.Sub(sum, t))
		sums = append(sums, ls...)
	}
	return sums
}

// hintUpdate: (u, xtot, lr, div, width, n) ↦ for each of the n lanes, q_k
// then the limbs of r_k (limbWidths of bitsBelow(div)), with u_k lane k of u
// in base 2^width, G_k = u_k − 2^16·xtot and lr·G_k + div/2 = q_k·div + r_k,
// 0 ≤ r_k < div.
func hintUpdate(field *big.Int, in, out []*big.Int) error {
	if len(in) != 5 || !in[4].IsInt64() || in[4].Int64() < 1 || in[4].Int64() > 253 || in[3].Sign() <= 0 {
		return errors.New("update: want u, xtot, lr, a positive div and a width")
	}
	lr, div := in[2], in[3]
	nb := bitsBelow(div)
	per := 1 + len(limbWidths(nb))
	if len(out)%per != 0 {
		return errors.New("update: outputs are not whole lanes")
	}
	n := len(out) / per
	lanes := make([]*big.Int, n)
	for k := range lanes {
		lanes[k] = new(big.Int)
	}
	if err := hintLanes(field, []*big.Int{in[0], in[4]}, lanes); err != nil {
		return err
	}
	off := new(big.Int).Lsh(in[1], FracP)
	half := new(big.Int).Rsh(div, 1)
	for k, u := range lanes {
		num := new(big.Int).Sub(u, off)
		num.Mul(num, lr).Add(num, half)
		q, r := new(big.Int), new(big.Int)
		q.DivMod(num, div, r) // Euclidean: 0 ≤ r < div
		out[per*k].Mod(q, field)
		limbsOf(r, nb, out[per*k+1:per*(k+1)])
	}
	return nil
}

// packedUpdate returns q_k = ⌊(lr·G_k + div/2)/div⌋ for the n classes
// packed in u (lanes of width bits u_k = Σ_b (d_bk + 2^16)·x_bi, so
// G_k = u_k − 2^16·xtot). The caller must bound q (|q| < 2^31, by range
// checking θ − q).
//
// One constraint checks all n divisions at once:
//
//	lr·u + Σ_k 2^(k·width)·(div/2 − lr·2^16·xtot) = Σ_k 2^(k·width)·(q_k·div + r_k)
//
// Lane k of the left side is v_k = lr·G_k + div/2, an integer of
// magnitude below 2^16·B·2^26 + div (u_k < B·2^26 as d + 2^16 < 2^18 and
// x < 2^8); lane k of the right side is w_k = q_k·div + r_k with r_k
// range-checked to [0, div) and |q_k| < 2^31, so |w_k| < B·2^52. With
// width = bits(B) + 53 both are below 2^(width−1) in size (TestLaneBounds),
// their difference below 2^width, and n·width ≤ 252: the equation holds over the integers
// and lane by lane, so v_k = w_k, the division each parameter's update
// would check alone.
func (g *gadgets) packedUpdate(p Params, u, xtot frontend.Variable, n, width int) []frontend.Variable {
	api := g.api
	div := int64(p.Batch) << updateShift
	bound := big.NewInt(div)
	per := 1 + len(limbWidths(bitsBelow(bound)))
	qr, err := api.Compiler().NewHint(hintUpdate, per*n, u, xtot, p.LR, div, width)
	if err != nil {
		panic(err) // a registered hint: unreachable
	}
	lhs := api.Mul(u, p.LR)
	var rhs frontend.Variable = 0
	perLane := api.Sub(div/2, api.Mul(xtot, p.LR<<FracP))
	q := make([]frontend.Variable, n)
	for k := range n {
		shift := pow2(width * k)
		lhs = api.Add(lhs, api.Mul(perLane, shift))
		q[k] = qr[per*k]
		r := g.remainder(qr[per*k+1:per*(k+1)], bound)
		rhs = api.Add(rhs, api.Mul(api.Add(api.Mul(q[k], div), r), shift))
	}
	assertZero(api, api.Sub(lhs, rhs))
	return q
}
