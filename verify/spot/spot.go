// Package spot draws spot-check challenges from a round's beacon. After a
// round is decided, every peer computes the same beacon from the decided
// commit (the next state's hash and the sorted update IDs) and, from it
// alone, which aggregated updates are challenged, which other peers check
// each, and which blocks of the accused's residual each checker opens. Nothing here is secret or negotiated:
// a peer cannot steer the draw without changing the agreed state, and an
// auditor recomputes it from the ledger.
package spot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
)

// Hash is a SHA-256 digest (a state hash, an update ID, a beacon).
type Hash = [32]byte

// Beacon is the randomness of round's challenges: SHA-256 over the round,
// the decided next-state hash and the sorted IDs of the aggregated updates.
func Beacon(round uint64, result Hash, updates []Hash) Hash {
	h := sha256.New()
	h.Write([]byte("vtrain/beacon/v1\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], round)
	h.Write(b[:])
	h.Write(result[:])
	ids := slices.Clone(updates)
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	for _, id := range ids {
		h.Write(id[:])
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// draw is a uniform value in [0, 1) and a 64-bit integer, derived from the
// beacon, the update and a label.
func draw(beacon, update Hash, label string) (float64, uint64) {
	h := sha256.New()
	h.Write([]byte("vtrain/draw/v1\x00"))
	h.Write(beacon[:])
	h.Write(update[:])
	h.Write([]byte(label))
	var s [32]byte
	h.Sum(s[:0])
	x := binary.BigEndian.Uint64(s[:8])
	return float64(x>>11) / (1 << 53), binary.BigEndian.Uint64(s[8:16])
}

// Policy is the challenge policy of a run (runspec's [verify]).
type Policy struct {
	Rate         float64 // established peers
	NewcomerRate float64 // during probation
	// Challengers is how many distinct peers check a drawn update (at
	// least 1): one colluding challenger cannot shield a cheater while
	// another honest one is drawn.
	Challengers int
	// Proven lists the peers that prove their work (private peers):
	// every update of theirs is drawn.
	Proven []string
}

// Candidate is an aggregated update that may be challenged.
type Candidate struct {
	Update   Hash
	Peer     string
	Newcomer bool // the peer is on probation (the drawing peer's view)
	// Proven: the peer proves its work (a private peer): every update of
	// its is checked (rate 1), by proof of a step the beacon draws.
	Proven bool
}

// Challenge is a drawn spot-check: Challenger re-executes Peer's update
// Update (its round's inner steps, from the agreed state) and checks its
// payload on the residual blocks Blocks draws.
type Challenge struct {
	Update     Hash
	Peer       string
	Challenger string
}

// Draw reports whether update (by peer) is challenged at the given rate.
func Draw(beacon, update Hash, rate float64) bool {
	x, _ := draw(beacon, update, "challenged")
	return x < rate
}

// Assign returns the challenger of a challenge on update by peer, drawn
// from the other peers of the round (sorted), so every peer that decided
// the round agrees on it. It returns false when no other peer took part.
func Assign(beacon, update Hash, peer string, peers []string) (challenger string, ok bool) {
	var others []string
	for _, p := range peers {
		if p != peer && !slices.Contains(others, p) {
			others = append(others, p)
		}
	}
	if len(others) == 0 {
		return "", false
	}
	slices.Sort(others)
	_, c := draw(beacon, update, "challenger")
	return others[c%uint64(len(others))], true
}

// More returns the further challengers of a drawn update beyond the first
// (Assign's): up to k-1 distinct other peers, drawn without replacement
// from those not drawn yet.
func More(beacon, update Hash, peer, first string, peers []string, k int) []Challenge {
	var others []string
	for _, p := range peers {
		if p != peer && p != first && !slices.Contains(others, p) {
			others = append(others, p)
		}
	}
	slices.Sort(others)
	var out []Challenge
	for j := 1; j < k && len(others) > 0; j++ {
		_, c := draw(beacon, update, fmt.Sprintf("challenger/%d", j))
		i := int(c % uint64(len(others)))
		out = append(out, Challenge{Update: update, Peer: peer, Challenger: others[i]})
		others = slices.Delete(others, i, i+1)
	}
	return out
}

// Select returns the challenges of a decided round: each candidate is
// challenged with its rate, by p.Challengers distinct peers among the
// other candidates' (fewer when there are fewer).
func Select(beacon Hash, cands []Candidate, p Policy) []Challenge {
	peers := make([]string, len(cands))
	for i, c := range cands {
		peers[i] = c.Peer
	}
	var out []Challenge
	for _, c := range cands {
		rate := p.Rate
		if c.Newcomer {
			rate = p.NewcomerRate
		}
		if c.Proven {
			rate = 1
		}
		if !Draw(beacon, c.Update, rate) {
			continue
		}
		who, ok := Assign(beacon, c.Update, c.Peer, peers)
		if !ok {
			continue
		}
		out = append(out, Challenge{Update: c.Update, Peer: c.Peer, Challenger: who})
		out = append(out, More(beacon, c.Update, c.Peer, who, peers, p.Challengers)...)
	}
	return out
}

// Blocks returns the m distinct blocks (ascending, of n) of the accused's
// residual that challenger opens when it checks update: drawn from the
// beacon, which the accused cannot know when it commits to its residual,
// and from the challenger, so that two challengers of one update open
// different blocks. Half of them (rounded up) are drawn among the blocks
// that hold the payload's sent coordinates (sent: the block of each sent
// coordinate, repeats allowed, so a block is drawn in proportion to what
// it sends), so that a lie on a share g of the sent values is caught with
// probability 1 − (1 − g)^⌈m/2⌉ however sparse the payload; the rest
// uniformly over all n, which catches a residual kept falsely anywhere.
// Referees and auditors draw the same.
func Blocks(beacon, update Hash, challenger string, n, m int, sent []int) []int {
	m = min(max(m, 0), n)
	out := make([]int, 0, m)
	distinct := map[int]bool{}
	for _, b := range sent {
		if b >= 0 && b < n {
			distinct[b] = true
		}
	}
	ms := min((m+1)/2, len(distinct))
	for j := 0; len(out) < ms; j++ {
		_, x := draw(beacon, update, fmt.Sprintf("sent/%s/%d", challenger, j))
		if b := sent[x%uint64(len(sent))]; b >= 0 && b < n && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	for j := 0; len(out) < m; j++ {
		_, x := draw(beacon, update, fmt.Sprintf("block/%s/%d", challenger, j))
		if b := int(x % uint64(n)); !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out
}
