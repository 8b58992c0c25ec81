package zk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr/poseidon2"
)

// The in-circuit hashes are Poseidon and Poseidon2 on BN254.
//
// The data tree's nodes use gnark-crypto's Poseidon2 with its default
// parameters for 2-to-1 compression (width 2, 6 full and 50 partial
// rounds) with feed-forward (compress). In R1CS one compression costs 62
// S-boxes of 3 constraints, 186 per element.
//
// The parameter commitment, which hashes about a thousand elements twice
// per proof, and the sample leaves (28 elements each at 784 pixels) use the original Poseidon with width 17 (x⁵, 8 full and 68
// partial rounds, circomlib's instance; see poseidon.go) as a sponge of
// rate 16 and capacity 1 (see sponge): 204 S-boxes, 612 constraints per 16
// elements, 38.25 per element. Both keep one 254-bit element that the
// input never sets directly (the compression's chaining value, the
// sponge's capacity), so both offer about 127 bits of collision
// resistance.
const (
	poseidonWidth    = 2
	poseidonFull     = 6
	poseidonPartial  = 50
	thetaPerElement  = 8  // 8 × 31 bits = 248 bits < log2(p)
	pixelsPerElement = 31 // 31 bytes = 248 bits
)

// Domain tags, the first element of each hash, so that a parameter
// commitment, a sample leaf and a context can never be confused.
var (
	tagTheta = tag("vtrain/zk/theta/v3") // v3: the width-17 sponge
	tagLeaf  = tag("vtrain/zk/leaf/v2")  // v2: the width-17 sponge
)

func tag(s string) fr.Element {
	var e fr.Element
	e.SetBytes([]byte(s)) // < 31 bytes: canonical
	return e
}

var perm = sync.OnceValue(func() *poseidon2.Permutation {
	return poseidon2.NewPermutation(poseidonWidth, poseidonFull, poseidonPartial)
})

// sponge hashes a sequence of elements with the width-17 Poseidon
// permutation P (widePermute): the state starts as (n, 0, …, 0) for n
// elements; each block of 16 elements is added into state[1..16] (the
// last block of n not a multiple of 16 is padded with zeros) and the state
// is permuted; the digest is state[1].
//
// Why this is injective and collision resistant: for a given n the blocks
// are the elements followed by a fixed number of zeros, so two inputs of
// the same length give the same blocks only if they are equal, and inputs
// of different lengths start from different capacities (n < p). The
// construction is therefore the plain sponge of Bertoni et al. on an
// injective encoding of the input (the length in the initial capacity,
// the padding fixed by it), whose collision resistance with a random
// permutation is about 2^(c/2) for a c-bit capacity: with c = 254 bits
// and a 254-bit digest, about 2^127 work, the same as the width-2
// compression's. State[0], where n is placed, is never written by the
// input, and the tag, Features and Classes that CommitTheta puts first
// keep a commitment apart from any other use of the sponge.
func sponge(xs ...fr.Element) fr.Element {
	var s [wideWidth]fr.Element
	s[0].SetUint64(uint64(len(xs)))
	for i := 0; i < len(xs); i += wideRate {
		for k := 0; k < wideRate && i+k < len(xs); k++ {
			s[1+k].Add(&s[1+k], &xs[i+k])
		}
		widePermute(&s)
	}
	return s[1]
}

// compress is Poseidon2's 2-to-1 compression with feed-forward, the same as
// the circuit's Compress.
func compress(l, r fr.Element) fr.Element {
	x := [2]fr.Element{l, r}
	if err := perm().Permutation(x[:]); err != nil {
		panic(err) // width is fixed at 2: unreachable
	}
	x[1].Add(&x[1], &r)
	return x[1]
}

// packTheta packs 8 parameters per field element, each offset by 2^30 into
// 31 bits, little end first.
func packTheta(t Theta) []fr.Element {
	out := make([]fr.Element, 0, (len(t)+thetaPerElement-1)/thetaPerElement)
	var acc, v big.Int
	for i := 0; i < len(t); i += thetaPerElement {
		acc.SetUint64(0)
		for k := min(i+thetaPerElement, len(t)) - 1; k >= i; k-- {
			acc.Lsh(&acc, thetaBits)
			acc.Add(&acc, v.SetInt64(t[k]+ThetaBound))
		}
		var e fr.Element
		e.SetBigInt(&acc)
		out = append(out, e)
	}
	return out
}

// CommitTheta is the commitment to a parameter vector:
// sponge(tag, features, classes, packed θ). It panics if a parameter is out of
// range, a caller's mistake (Step never returns such a vector).
func (p Params) CommitTheta(t Theta) fr.Element {
	if len(t) != p.NumParams() {
		panic("zk: CommitTheta: wrong number of parameters")
	}
	for _, v := range t {
		if v <= -ThetaBound || v >= ThetaBound {
			panic("zk: CommitTheta: parameter out of range")
		}
	}
	xs := []fr.Element{tagTheta, fr.NewElement(uint64(p.Features)), fr.NewElement(uint64(p.Classes))}
	return sponge(append(xs, packTheta(t)...)...)
}

// packPixels packs 31 pixels per field element, little end first.
func packPixels(px []byte) []fr.Element {
	out := make([]fr.Element, 0, (len(px)+pixelsPerElement-1)/pixelsPerElement)
	var buf [32]byte
	for i := 0; i < len(px); i += pixelsPerElement {
		chunk := px[i:min(i+pixelsPerElement, len(px))]
		buf = [32]byte{}
		for k, b := range chunk { // big-endian bytes of Σ b_k·2^(8k)
			buf[31-k] = b
		}
		var e fr.Element
		e.SetBytes(buf[:])
		out = append(out, e)
	}
	return out
}

// Leaf is the hash of one sample: sponge(tag, label, packed pixels). The
// width-17 sponge hashes a 784-pixel sample's 28 elements in 2
// permutations (408 S-boxes in the circuit) where the width-2 compressions
// took 28 (1,736).
func Leaf(s Sample) fr.Element {
	xs := []fr.Element{tagLeaf, fr.NewElement(uint64(s.Label))}
	return sponge(append(xs, packPixels(s.Pixels)...)...)
}

// ErrTree is wrapped by errors about data trees and paths.
var ErrTree = errors.New("zk: invalid data tree")

// Tree is a Merkle tree of fixed depth over sample leaves; absent leaves
// are zero. Nodes are compress(left, right). The depth is fixed by the
// circuit, so a node can never stand in for a leaf: the circuit hashes the
// leaf from the sample itself.
type Tree struct {
	depth  int
	levels [][]fr.Element // levels[0] are the leaves present
	zero   []fr.Element   // zero[l]: the root of an empty subtree of height l
}

// NewTree builds the tree over the leaves (at most 2^depth).
func NewTree(depth int, leaves []fr.Element) (*Tree, error) {
	if depth < 1 || depth > 32 || uint64(len(leaves)) > 1<<depth {
		return nil, fmt.Errorf("%w: %d leaves at depth %d", ErrTree, len(leaves), depth)
	}
	t := &Tree{depth: depth, zero: make([]fr.Element, depth+1)}
	for l := 1; l <= depth; l++ {
		t.zero[l] = compress(t.zero[l-1], t.zero[l-1])
	}
	cur := append([]fr.Element(nil), leaves...)
	t.levels = append(t.levels, cur)
	for l := 0; l < depth; l++ {
		next := make([]fr.Element, (len(cur)+1)/2)
		for i := range next {
			left, right := cur[2*i], t.zero[l]
			if 2*i+1 < len(cur) {
				right = cur[2*i+1]
			}
			next[i] = compress(left, right)
		}
		if len(next) == 0 {
			next = nil
		}
		t.levels = append(t.levels, next)
		cur = next
	}
	return t, nil
}

// Root is the data root.
func (t *Tree) Root() fr.Element {
	if len(t.levels[t.depth]) == 0 {
		return t.zero[t.depth]
	}
	return t.levels[t.depth][0]
}

// Path returns leaf i's siblings from the bottom up; bit l of i says
// whether the path goes right at level l.
func (t *Tree) Path(i int) ([]fr.Element, error) {
	if i < 0 || i >= len(t.levels[0]) {
		return nil, fmt.Errorf("%w: no leaf %d of %d", ErrTree, i, len(t.levels[0]))
	}
	sib := make([]fr.Element, t.depth)
	for l := 0; l < t.depth; l++ {
		j := (i >> l) ^ 1
		if j < len(t.levels[l]) {
			sib[l] = t.levels[l][j]
		} else {
			sib[l] = t.zero[l]
		}
	}
	return sib, nil
}

// RootFromPath recomputes the root from a leaf, its index and its path.
func RootFromPath(leaf fr.Element, index uint64, sib []fr.Element) fr.Element {
	cur := leaf
	for l, s := range sib {
		if index>>l&1 == 1 {
			cur = compress(s, cur)
		} else {
			cur = compress(cur, s)
		}
	}
	return cur
}

// Context is what a proof is bound to, so that it cannot be replayed for
// another run, round or peer.
type Context struct {
	Run   [32]byte // the run ID
	Round uint64
	Peer  string // the peer's ID (libp2p peer ID string)
}

// elements returns the context's public inputs: the run ID's two 128-bit
// halves, the round, and the peer as the first 31 bytes of
// SHA-256("vtrain/zk/peer\0" || peer).
func (c Context) elements() (hi, lo, round, peer fr.Element) {
	hi.SetBytes(c.Run[:16])
	lo.SetBytes(c.Run[16:])
	round.SetUint64(c.Round)
	h := sha256.Sum256(append([]byte("vtrain/zk/peer\x00"), c.Peer...))
	peer.SetBytes(h[:31])
	return
}

// Hex is a field element's canonical 32-byte big-endian hex.
func Hex(e fr.Element) string {
	b := e.Bytes()
	return hex.EncodeToString(b[:])
}

// ParseHex reads a canonical 32-byte big-endian field element.
func ParseHex(s string) (fr.Element, error) {
	var e fr.Element
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != fr.Bytes {
		return e, fmt.Errorf("zk: field element %q is not 64 hex digits", s)
	}
	if err := e.SetBytesCanonical(b); err != nil {
		return e, fmt.Errorf("zk: field element %q is not canonical", s)
	}
	return e, nil
}
