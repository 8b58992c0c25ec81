package consensus

import (
	"encoding/binary"
	"math"

	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/ledger"
)

// ResidualLeaf is the leaf hash of one block of a residual's commitment:
// its values, little-endian float32, under a domain prefix.
func ResidualLeaf(v []float32) ledger.Hash {
	buf := make([]byte, 0, len("vtrain/residual/v1\x00")+4*len(v))
	buf = append(buf, "vtrain/residual/v1\x00"...)
	for _, x := range v {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
	}
	return ledger.LeafHash(buf)
}

// ResidualTree builds the Merkle tree (RFC 6962, as the ledger's) of v's
// blocks of block values, the last one shorter: the commitment an
// update's ResidualIn and ResidualOut are the roots of.
func ResidualTree(v []float32, block int) *ledger.Tree {
	block = max(block, 1)
	var t ledger.Tree
	for lo := 0; lo < len(v); lo += block {
		t.Append(ResidualLeaf(v[lo:min(lo+block, len(v))]))
	}
	return &t
}

// ResidualRoot is the commitment to a residual under a spec: the zero
// hash for the zero residual (every bit zero: what a member's first update
// carries in, opened without paths), else the root of its blocks' tree.
func ResidualRoot(spec runspec.Spec, v []float32) Hash {
	if IsZeroResidual(v) {
		return Hash{}
	}
	t := ResidualTree(v, spec.Verify.ResidualBlock)
	return Hash(t.Root(t.Size()))
}

// IsZeroResidual reports whether every value's bits are zero.
func IsZeroResidual(v []float32) bool {
	for _, x := range v {
		if math.Float32bits(x) != 0 {
			return false
		}
	}
	return true
}
