package trainer

import (
	"fmt"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/ledger"
	"github.com/vtrain/vtrain/verify/spot"
)

// A peer's error-feedback residual is as large as the model and private to
// it, yet its payload follows from it: a checker must see the residual to
// check the payload. The update therefore commits to the residual it
// carried in and the one it kept as Merkle roots over blocks of
// verify.residual_block values (RFC 6962 trees, as the ledger's), and a
// challenged peer opens a few blocks drawn by the beacon (verify.openings):
// the values it carried in there and both inclusion paths. The challenger,
// which has re-executed the round and so holds the delta, re-encodes those
// coordinates (compress.Sparse.CheckRange) and checks that the residual
// kept there is the committed one. A few kilobytes stand in for the
// residual's megabytes; what that leaves unchecked is in consensus's doc
// ("What a check covers").

// ResidualTree is the Merkle tree of a residual's blocks.
type ResidualTree struct {
	t     ledger.Tree
	block int
	d     int
}

// NewResidualTree builds the tree of v in blocks of block values (the last
// one shorter).
func NewResidualTree(v []float32, block int) *ResidualTree {
	t := &ResidualTree{block: max(block, 1), d: len(v)}
	t.t = *consensus.ResidualTree(v, t.block)
	return t
}

// Path is block b's inclusion proof.
func (t *ResidualTree) Path(b int) ([]Hash, error) {
	p, err := t.t.InclusionProof(uint64(b), t.t.Size())
	if err != nil {
		return nil, err
	}
	out := make([]Hash, len(p))
	for i, h := range p {
		out[i] = Hash(h)
	}
	return out, nil
}

// ResidualRoot is the commitment to a residual under a spec: the root of
// its blocks' tree (consensus.ResidualRoot).
func ResidualRoot(spec runspec.Spec, v []float32) Hash { return consensus.ResidualRoot(spec, v) }

// ResidualBlocks is how many blocks a residual of d values has.
func ResidualBlocks(spec runspec.Spec, d int) int {
	b := max(spec.Verify.ResidualBlock, 1)
	return (d + b - 1) / b
}

// DrawBlocks is the residual blocks challenger opens of update u in a round
// with that beacon (spot.Blocks, half among the blocks its payload sends
// from). d is the model's size; the payload must decode.
func DrawBlocks(spec runspec.Spec, beacon Hash, u *consensus.Update, id Hash, challenger PeerID, d int) ([]int, error) {
	dec, err := compress.NewDecoder(d)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	s, err := dec.Decode(u.Payload)
	if err != nil {
		return nil, fmt.Errorf("trainer: the payload does not decode: %w", err)
	}
	sent := make([]int, len(s.Idx))
	for j, i := range s.Idx {
		sent[j] = int(i) / max(spec.Verify.ResidualBlock, 1)
	}
	return spot.Blocks(beacon, id, string(challenger), ResidualBlocks(spec, d), spec.Verify.Openings, sent), nil
}

// blockRange is block b's coordinates [lo, hi).
func blockRange(spec runspec.Spec, d, b int) (lo, hi int) {
	lo = b * spec.Verify.ResidualBlock
	return lo, min(lo+spec.Verify.ResidualBlock, d)
}

// Opening is one block of a challenged peer's residual: the values it
// carried into the round's encoding there, with the block's inclusion
// paths under the update's ResidualIn and, for the residual it kept (which
// the checker recomputes), under ResidualOut.
type Opening struct {
	Block   int
	In      []float32
	InPath  []Hash
	OutPath []Hash
}

// Open returns the openings of blocks of the residuals in (carried in) and
// out (kept).
func Open(spec runspec.Spec, in, out []float32, blocks []int) ([]Opening, error) {
	if len(in) != len(out) {
		return nil, fmt.Errorf("trainer: residuals of %d and %d values", len(in), len(out))
	}
	ti, to := NewResidualTree(in, spec.Verify.ResidualBlock), NewResidualTree(out, spec.Verify.ResidualBlock)
	var ops []Opening
	for _, b := range blocks {
		ip, err := ti.Path(b)
		if err != nil {
			return nil, fmt.Errorf("trainer: no residual block %d: %w", b, err)
		}
		op, _ := to.Path(b)
		lo, hi := blockRange(spec, len(in), b)
		ops = append(ops, Opening{Block: b, In: in[lo:hi], InPath: ip, OutPath: op})
	}
	return ops, nil
}

// verifyPath checks that values are block b of the tree of a d-vector with
// root.
func verifyPath(spec runspec.Spec, d, b int, values []float32, path []Hash, root Hash) error {
	if root == (Hash{}) {
		// The zero residual commits to the zero hash: its blocks are
		// zeros, and need no path.
		if !consensus.IsZeroResidual(values) {
			return fmt.Errorf("values under the zero residual's commitment are not zero")
		}
		return nil
	}
	lp := make([]ledger.Hash, len(path))
	for i, h := range path {
		lp[i] = ledger.Hash(h)
	}
	return ledger.VerifyInclusion(consensus.ResidualLeaf(values), uint64(b), uint64(ResidualBlocks(spec, d)), lp, ledger.Hash(root))
}

// CheckOpenings checks that ops open exactly blocks (in order) of the
// update's residual ResidualIn, each of the right length, under a valid
// path: what the accused must answer before anything is re-encoded.
func CheckOpenings(spec runspec.Spec, u *consensus.Update, d int, blocks []int, ops []Opening) error {
	if len(ops) != len(blocks) {
		return fmt.Errorf("%d residual blocks opened, %d asked", len(ops), len(blocks))
	}
	for i, op := range ops {
		lo, hi := blockRange(spec, d, blocks[i])
		switch {
		case op.Block != blocks[i]:
			return fmt.Errorf("residual block %d opened, %d asked", op.Block, blocks[i])
		case lo >= hi || len(op.In) != hi-lo:
			return fmt.Errorf("residual block %d has %d values, want %d", op.Block, len(op.In), max(hi-lo, 0))
		}
		if err := verifyPath(spec, d, op.Block, op.In, op.InPath, u.ResidualIn); err != nil {
			return fmt.Errorf("residual block %d is not under the committed %s: %v", op.Block, u.ResidualIn.Short(), err)
		}
	}
	return nil
}

// LinkOpenings checks the payload on the opened blocks: with the final
// parameters (re-executed, or committed) and the residual carried in there,
// each block's coordinates must encode as the payload says and leave the
// residual that ResidualOut commits to (see compress.Sparse.CheckRange).
// The openings must have passed CheckOpenings. It returns nil or what does
// not hold.
func LinkOpenings(spec runspec.Spec, u *consensus.Update, base, final []float32, ops []Opening) error {
	dec, err := compress.NewDecoder(len(base))
	if err != nil {
		return err
	}
	defer dec.Close()
	s, err := dec.Decode(u.Payload)
	if err != nil {
		return fmt.Errorf("the payload does not decode: %v", err)
	}
	for _, op := range ops {
		lo, hi := blockRange(spec, len(base), op.Block)
		v, out := make([]float32, hi-lo), make([]float32, hi-lo)
		for j := range v {
			v[j] = (base[lo+j] - final[lo+j]) + op.In[j]
		}
		keptOf(s, lo, v, out)
		if err := s.CheckRange(lo, v, out); err != nil {
			return fmt.Errorf("residual block %d: %v", op.Block, err)
		}
		if err := verifyPath(spec, len(base), op.Block, out, op.OutPath, u.ResidualOut); err != nil {
			return fmt.Errorf("residual block %d: the residual kept is not the committed %s", op.Block, u.ResidualOut.Short())
		}
	}
	return nil
}

// keptOf writes into out what an encoder that sent s keeps of v on the
// coordinates from lo: v less what was sent.
func keptOf(s *compress.Sparse, lo int, v, out []float32) {
	copy(out, v)
	for j, i := range s.Idx {
		if int(i) >= lo && int(i) < lo+len(v) {
			out[int(i)-lo] = v[int(i)-lo] - s.Val[j]
		}
	}
}
