package ledger

import (
	"errors"
	"fmt"
)

// Checked is a ledger that passed Check.
type Checked struct {
	Run     Hash
	Keeper  string // the peer whose ledger it is (the tree heads' signer)
	Raw     [][]byte
	Entries []Entry
	Heads   []uint64 // indices of the tree-head entries
}

// Check verifies a ledger file as an auditor does, from the file alone:
//
//   - every record is intact (length, checksum) and every entry decodes in
//     canonical form; entry 0 is the genesis;
//   - every tree-head entry is signed by one keeper, for this run, covers
//     a prefix that ends before it, never shrinks, and its root is the
//     Merkle root of exactly those entries;
//   - the log ends with a tree head that covers every entry before it, so
//     a log cut at a record boundary is caught too;
//   - when latest is given (a head the keeper published elsewhere, such as
//     its summary or its gossip), it verifies, and the file holds exactly the
//     entries it covers, plus that head itself.
//
// The first failure is a *CorruptError naming the entry: the damaged one,
// or, where only a root shows the damage (entries reordered or deleted),
// the first entry after the last tree head that still matched.
func Check(path string, latest *SignedTreeHead) (*Checked, error) {
	run, raw, err := Read(path)
	if err != nil {
		return nil, err
	}
	c := &Checked{Run: Hash(run), Raw: raw}
	bad := func(i uint64, format string, a ...any) error {
		return &CorruptError{Path: path, Index: i, Offset: -1, Reason: fmt.Sprintf(format, a...)}
	}
	if len(raw) == 0 {
		return nil, bad(0, "empty ledger: no genesis entry")
	}
	var tree Tree
	verified := uint64(0) // entries covered by the last good tree head
	for i, b := range raw {
		idx := uint64(i)
		e, err := DecodeEntry(b)
		if err != nil {
			return nil, bad(idx, "%v", err)
		}
		if (idx == 0) != (e.Kind == KindGenesis) {
			return nil, bad(idx, "the genesis must be entry 0, and only entry 0")
		}
		if e.Kind == KindTreeHead {
			h := e.Head
			switch {
			case h.Run != c.Run:
				return nil, bad(idx, "tree head for run %x", h.Run[:8])
			case c.Keeper != "" && h.Signer != c.Keeper:
				return nil, bad(idx, "tree head signed by %s, the ledger's keeper is %s", h.Signer, c.Keeper)
			case h.Size > idx:
				return nil, bad(verified, "the tree head at entry %d covers %d entries, only %d precede it (entries removed?)", idx, h.Size, idx)
			case h.Size < verified:
				return nil, bad(verified, "the tree head at entry %d covers %d entries, an earlier one covered %d (entries moved?)", idx, h.Size, verified)
			}
			if err := h.Verify(); err != nil {
				return nil, bad(idx, "%v", err)
			}
			if tree.Root(h.Size) != h.Root {
				return nil, bad(verified, "entries %d..%d do not match the tree head at entry %d (entries changed, reordered or removed)", verified, h.Size-1, idx)
			}
			c.Keeper = h.Signer
			verified = h.Size
			c.Heads = append(c.Heads, idx)
		}
		tree.Append(LeafHash(b))
		c.Entries = append(c.Entries, e)
	}
	n := uint64(len(raw))
	last := c.Entries[n-1]
	if last.Kind != KindTreeHead || last.Head.Size != n-1 {
		return nil, bad(verified, "the ledger does not end with a tree head covering its %d entries (cut short, or entries after the last tree head)", n)
	}
	if latest != nil {
		if err := latest.Verify(); err != nil {
			return nil, err
		}
		switch {
		case latest.Signer != c.Keeper || latest.Run != c.Run:
			return nil, errors.New("ledger: the published tree head is another keeper's or another run's")
		case latest.Size != n-1 || latest.Root != tree.Root(n-1):
			return nil, bad(min(latest.Size, n-1), "the keeper published a tree head of %d entries with root %x; the file has %d entries ending with a head of root %x",
				latest.Size, latest.Root[:8], n-1, last.Head.Root[:8])
		}
	}
	return c, nil
}

// Witnessed checks a tree head of this ledger's keeper that another peer
// received by gossip (and kept in its summary): signed by the keeper for
// this run, and the ledger's first Size entries have its root. A keeper
// that rewrote its ledger after gossiping a head is caught here, by a
// head it can no longer take back.
func (c *Checked) Witnessed(h SignedTreeHead) error {
	if err := h.Verify(); err != nil {
		return err
	}
	if h.Signer != c.Keeper || h.Run != c.Run {
		return fmt.Errorf("ledger: the witnessed tree head is %s's for run %x, this ledger is %s's for run %x", h.Signer, h.Run[:8], c.Keeper, c.Run[:8])
	}
	if h.Size > uint64(len(c.Raw)) {
		return &CorruptError{Index: uint64(len(c.Raw)), Offset: -1, Reason: fmt.Sprintf("the keeper gossiped a tree head of %d entries; the ledger has %d", h.Size, len(c.Raw))}
	}
	var t Tree
	for _, b := range c.Raw[:h.Size] {
		t.Append(LeafHash(b))
	}
	if t.Root(h.Size) != h.Root {
		return &CorruptError{Index: 0, Offset: -1, Reason: fmt.Sprintf("the ledger's first %d entries do not have the root %x the keeper gossiped in round %d (rewritten since)", h.Size, h.Root[:8], h.Round)}
	}
	return nil
}
