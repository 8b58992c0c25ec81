// Package ledger is vtrain's tamper-evident log: a Merkle tree in the
// manner of RFC 6962 and RFC 9162 (leaf and node hashes domain-separated)
// over an append-only file of entries, with inclusion and consistency
// proofs, signed tree heads, and a content-addressed store for payloads.
// Anyone holding the file can recompute every root; a signed tree head
// pins a prefix of the log to a peer's key, and a consistency proof shows
// that a later log extends an earlier one.
package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
)

// Hash is a SHA-256 digest: a leaf hash, a node hash or a tree root.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes the hash as hex (for JSON).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads 64 hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("ledger: a hash is 64 hex digits, got %d bytes", len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Domain separation as in RFC 6962 §2.1 (and RFC 9162 §2.1.1): a leaf hash
// and an interior node hash can never be confused.
const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// LeafHash is SHA-256(0x00 || entry).
func LeafHash(entry []byte) Hash {
	h := sha256.New()
	h.Write([]byte{leafPrefix})
	h.Write(entry)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash is SHA-256(0x01 || left || right).
func NodeHash(left, right Hash) Hash {
	var buf [65]byte
	buf[0] = nodePrefix
	copy(buf[1:], left[:])
	copy(buf[33:], right[:])
	return sha256.Sum256(buf[:])
}

// EmptyRoot is the root of the empty tree: SHA-256 of the empty string.
var EmptyRoot = Hash(sha256.Sum256(nil))

// ErrProof means an inclusion or consistency proof does not verify.
var ErrProof = errors.New("ledger: proof does not verify")

// split is the largest power of two smaller than n (n ≥ 2).
func split(n uint64) uint64 { return 1 << (bits.Len64(n-1) - 1) }

// Tree is an in-memory Merkle tree over leaf hashes that grows by
// appending. It keeps the leaf hashes and, for speed, the roots of the
// complete subtrees (a compact range), so that appending is O(log n) and
// the current root is O(log n).
type Tree struct {
	leaves []Hash
	// levels[l][i] is the root of the complete subtree of 2^l leaves
	// starting at leaf i·2^l.
	levels [][]Hash
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return uint64(len(t.leaves)) }

// Append adds a leaf hash.
func (t *Tree) Append(leaf Hash) {
	t.leaves = append(t.leaves, leaf)
	if len(t.levels) == 0 {
		t.levels = append(t.levels, nil)
	}
	t.levels[0] = append(t.levels[0], leaf)
	for l := 0; len(t.levels[l])%2 == 0; l++ {
		n := len(t.levels[l])
		h := NodeHash(t.levels[l][n-2], t.levels[l][n-1])
		if l+1 == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		t.levels[l+1] = append(t.levels[l+1], h)
	}
}

// Leaf returns leaf hash i.
func (t *Tree) Leaf(i uint64) Hash { return t.leaves[i] }

// subtree is MTH of leaves [lo, hi), using the stored complete subtrees.
func (t *Tree) subtree(lo, hi uint64) Hash {
	n := hi - lo
	if n == 0 {
		return EmptyRoot
	}
	if n&(n-1) == 0 && lo%n == 0 { // a complete, aligned subtree
		l := bits.TrailingZeros64(n)
		return t.levels[l][lo>>l]
	}
	k := split(n)
	return NodeHash(t.subtree(lo, lo+k), t.subtree(lo+k, hi))
}

// Root is the root of the first n leaves (n ≤ Size).
func (t *Tree) Root(n uint64) Hash { return t.subtree(0, n) }

// InclusionProof is PATH(m, D[0:n]) of RFC 6962 §2.1.1: the sibling hashes
// from leaf m up to the root of the first n leaves.
func (t *Tree) InclusionProof(m, n uint64) ([]Hash, error) {
	if m >= n || n > t.Size() {
		return nil, fmt.Errorf("ledger: no leaf %d in a tree of %d (of %d)", m, n, t.Size())
	}
	var path []Hash
	lo, hi := uint64(0), n
	for hi-lo > 1 {
		k := split(hi - lo)
		if m < lo+k {
			path = append(path, t.subtree(lo+k, hi))
			hi = lo + k
		} else {
			path = append(path, t.subtree(lo, lo+k))
			lo += k
		}
	}
	// Built top-down; the proof lists the bottom sibling first.
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path, nil
}

// ConsistencyProof is PROOF(m, D[0:n]) of RFC 6962 §2.1.2: what shows that
// the tree of n leaves extends the tree of its first m.
func (t *Tree) ConsistencyProof(m, n uint64) ([]Hash, error) {
	if m == 0 || m > n || n > t.Size() {
		return nil, fmt.Errorf("ledger: no consistency proof from %d to %d (of %d)", m, n, t.Size())
	}
	return t.subproof(m, 0, n, true), nil
}

// subproof is SUBPROOF(m, D[lo:hi], b).
func (t *Tree) subproof(m, lo, hi uint64, b bool) []Hash {
	n := hi - lo
	if m == n {
		if b {
			return nil
		}
		return []Hash{t.subtree(lo, hi)}
	}
	k := split(n)
	if m <= k {
		return append(t.subproof(m, lo, lo+k, b), t.subtree(lo+k, hi))
	}
	return append(t.subproof(m-k, lo+k, hi, false), t.subtree(lo, lo+k))
}

// VerifyInclusion checks that leaf (a leaf hash) is entry index of the tree
// of size n with the given root (RFC 9162 §2.1.3.2).
func VerifyInclusion(leaf Hash, index, n uint64, proof []Hash, root Hash) error {
	if index >= n {
		return fmt.Errorf("%w: index %d in a tree of %d", ErrProof, index, n)
	}
	fn, sn := index, n-1
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return fmt.Errorf("%w: inclusion proof too long", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("%w: inclusion proof too short", ErrProof)
	}
	if r != root {
		return fmt.Errorf("%w: entry %d is not in the tree of %d with root %x", ErrProof, index, n, root[:8])
	}
	return nil
}

// VerifyConsistency checks that the tree of size n with root2 extends the
// tree of size m with root1 (RFC 9162 §2.1.4.2).
func VerifyConsistency(m, n uint64, root1, root2 Hash, proof []Hash) error {
	switch {
	case m > n:
		return fmt.Errorf("%w: a tree of %d cannot extend one of %d", ErrProof, n, m)
	case m == n:
		if len(proof) != 0 || root1 != root2 {
			return fmt.Errorf("%w: equal sizes need equal roots and an empty proof", ErrProof)
		}
		return nil
	case m == 0:
		if len(proof) != 0 {
			return fmt.Errorf("%w: a proof from the empty tree must be empty", ErrProof)
		}
		return nil
	}
	if len(proof) == 0 {
		return fmt.Errorf("%w: empty consistency proof", ErrProof)
	}
	p := proof
	if m&(m-1) == 0 { // m is a power of two: prepend first_hash
		p = append([]Hash{root1}, proof...)
	}
	fn, sn := m-1, n-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := p[0], p[0]
	for _, c := range p[1:] {
		if sn == 0 {
			return fmt.Errorf("%w: consistency proof too long", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			fr = NodeHash(c, fr)
			sr = NodeHash(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = NodeHash(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("%w: consistency proof too short", ErrProof)
	}
	if fr != root1 || sr != root2 {
		return fmt.Errorf("%w: the tree of %d does not extend the tree of %d", ErrProof, n, m)
	}
	return nil
}
