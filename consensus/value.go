package consensus

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
)

// UpdateRef names an aggregated update: its ID, its author, whether
// the author was on probation that round (which sets its challenge rate),
// when it reached the proposer (At, milliseconds after the proposer
// entered the round: what the author's pace follows, deadline.go), and
// whether it is a late update of the round before (late.go; its At is 0).
type UpdateRef struct {
	ID       Hash
	From     PeerID
	Newcomer bool
	At       uint32
	Late     bool
}

// Value is what a round decides: the updates it aggregates (by ID), the
// joiners it admits, the spot-check verdicts and the equivocation proofs
// it acts on, and the state it leads to. Everything in it is
// self-contained evidence: join requests, verdicts and proofs carry their
// signers' signatures, and updates are bound by their IDs, so every
// member checks a proposed value by itself (see Engine).
type Value struct {
	Round      uint64
	Base       Hash        // the state hash of Round
	Voters     Hash        // VotersDigest of Round's voters: the set whose quorum certifies this value
	Updates    []UpdateRef // sorted by ID
	Admit      []JoinRequest
	Verdicts   []VerdictMsg   // passes and upheld failures, sorted by round, update, signer
	Overturned []VerdictMsg   // false verdicts (their signers are excluded), sorted likewise
	Evidence   []Equivocation // sorted by signer
	Next       Hash           // the state hash of Round+1
	NextVoters Hash           // VotersDigest of Round+1's voters
}

// ID is the value's identity, what votes and certificates name.
func (v *Value) ID(run RunID) Hash {
	e := newEnc("vtrain/value/v4\x00")
	e.b = append(e.b, run[:]...)
	e.u64(v.Round)
	e.hash(v.Base)
	e.hash(v.Voters)
	e.u64(uint64(len(v.Updates)))
	for _, u := range v.Updates {
		e.hash(u.ID)
		e.str(string(u.From))
		e.flag(u.Newcomer)
		e.u32(u.At)
		e.flag(u.Late)
	}
	e.u64(uint64(len(v.Admit)))
	for _, j := range v.Admit {
		e.u64(j.Round)
		e.str(string(j.From))
		e.bytes(j.Sig)
	}
	e.u64(uint64(len(v.Verdicts)))
	for i := range v.Verdicts {
		e.bytes(VerdictSignBytes(run, &v.Verdicts[i]))
		e.bytes(v.Verdicts[i].Sig)
	}
	e.u64(uint64(len(v.Overturned)))
	for i := range v.Overturned {
		e.bytes(VerdictSignBytes(run, &v.Overturned[i]))
		e.bytes(v.Overturned[i].Sig)
	}
	e.u64(uint64(len(v.Evidence)))
	for i := range v.Evidence {
		for _, x := range []*Vote{&v.Evidence[i].A, &v.Evidence[i].B} {
			e.bytes(VoteSignBytes(run, x))
			e.bytes(x.Sig)
		}
	}
	e.hash(v.Next)
	e.hash(v.NextVoters)
	return e.sum()
}

// Excluded returns the peers the value excludes, sorted: the accused of
// its failed verdicts, the signers of its overturned ones and the signers
// of its equivocation proofs.
func (v *Value) Excluded() []PeerID {
	var out []PeerID
	for _, x := range v.Verdicts {
		if !x.Pass {
			out = append(out, x.Accused)
		}
	}
	for _, x := range v.Overturned {
		out = append(out, x.From)
	}
	for _, q := range v.Evidence {
		out = append(out, q.A.From)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// maxPeers bounds every per-round table the engine keeps for peer input,
// and the lists a value may carry.
const maxPeers = 4096

// checkShape checks what can be checked of a value without the round's
// state: sizes, order and uniqueness.
// passes is the set of updates on which the value carries a pass.
func (v *Value) passes() map[Hash]bool {
	out := map[Hash]bool{}
	for i := range v.Verdicts {
		if v.Verdicts[i].Pass {
			out[v.Verdicts[i].Update] = true
		}
	}
	return out
}

func (v *Value) checkShape() error {
	if len(v.Updates) > maxPeers || len(v.Admit) > maxPeers || len(v.Verdicts) > 4*maxPeers || len(v.Overturned) > maxPeers || len(v.Evidence) > maxPeers {
		return fmt.Errorf("oversize value")
	}
	for i := 1; i < len(v.Updates); i++ {
		if !hashLess(v.Updates[i-1].ID, v.Updates[i].ID) {
			return fmt.Errorf("update IDs not strictly sorted")
		}
	}
	for i := 1; i < len(v.Admit); i++ {
		if v.Admit[i-1].From >= v.Admit[i].From {
			return fmt.Errorf("admissions not strictly sorted")
		}
	}
	for i := 1; i < len(v.Verdicts); i++ {
		if verdictCmp(&v.Verdicts[i-1], &v.Verdicts[i]) >= 0 {
			return fmt.Errorf("verdicts not strictly sorted")
		}
	}
	for i := 1; i < len(v.Overturned); i++ {
		if verdictCmp(&v.Overturned[i-1], &v.Overturned[i]) >= 0 {
			return fmt.Errorf("overturned verdicts not strictly sorted")
		}
	}
	seen := map[verdictKey]bool{}
	for i := range v.Verdicts {
		seen[v.Verdicts[i].key()] = true
	}
	for i := range v.Overturned {
		if seen[v.Overturned[i].key()] {
			return fmt.Errorf("a verdict both kept and overturned")
		}
	}
	for i := 1; i < len(v.Evidence); i++ {
		if v.Evidence[i-1].A.From >= v.Evidence[i].A.From {
			return fmt.Errorf("equivocation proofs not strictly sorted")
		}
	}
	return nil
}

func verdictCmp(a, b *VerdictMsg) int {
	if c := cmp.Compare(a.Round, b.Round); c != 0 {
		return c
	}
	if c := bytes.Compare(a.Update[:], b.Update[:]); c != 0 {
		return c
	}
	return cmpPeer(a.From, b.From)
}

func (v *Value) String() string {
	return fmt.Sprintf("round %d: %d updates (%d late), %d admitted, %d verdicts, %d overturned, %d equivocations → %s", v.Round, len(v.Updates), len(v.LateIn()), len(v.Admit), len(v.Verdicts), len(v.Overturned), len(v.Evidence), v.Next.Short())
}
