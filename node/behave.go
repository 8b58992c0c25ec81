package node

import (
	"crypto/sha256"
	"fmt"
	"math"
	"slices"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/trainer"
)

// Behaviours a node can be told to have (vtrain node --behave): honest,
// the misbehaviours of a member that spot-checks or the protocol must
// catch, and the attacks of an outsider (Outsiders) that must have no
// effect.
var Behaviours = []string{"honest", "lazy", "noise", "replay", "scaled", "stale", "forge", "equivocate", "hijack", "sybil", "future", "flood"}

// Outsiders are the behaviours of a node that never joins the run: it
// listens, and attacks (see attack.go).
var Outsiders = []string{"hijack", "sybil", "future", "flood"}

// misbehave alters honest work as the node's --behave says.
func (n *node) misbehave(req *consensus.TrainRequest, w *trainer.Work, ev **evidence) {
	r := prng.New(prng.Derive(req.Seed, prng.String64("misbehave")))
	norm := func(v []float32) float64 {
		var s float64
		for _, x := range v {
			s += float64(x) * float64(x)
		}
		return math.Sqrt(s)
	}
	switch n.cfg.Behave {
	case "lazy": // no inner steps: a small random update and made-up roots
		for i := range w.Delta {
			w.Delta[i] = float32(r.Norm() * 1e-4)
		}
		for i := range w.Segments {
			for j := range w.Segments[i] {
				w.Segments[i][j] = byte(r.Uint64())
			}
		}
		*ev = nil
	case "noise": // Gaussian noise of the honest update's norm
		s := norm(w.Delta) / math.Sqrt(float64(len(w.Delta)))
		for i := range w.Delta {
			w.Delta[i] = float32(r.Norm() * s)
		}
	case "scaled":
		for i := range w.Delta {
			w.Delta[i] *= 50
		}
	}
}

// tamper alters a finished update: replay re-signs another member's update
// as its own (keeping its own seed, which the run assigns). Its evidence is
// its own honest work, which does not match the copied roots.
func (n *node) tamper(u *consensus.Update) {
	if n.cfg.Behave != "replay" {
		return
	}
	for _, v := range n.eng.Updates() {
		if v.From != u.From && v.Base == u.Base {
			u.Payload, u.Samples, u.Loss, u.Segments = v.Payload, v.Samples, v.Loss, v.Segments
			u.ResidualIn, u.ResidualOut = v.ResidualIn, v.ResidualOut
			return
		}
	}
}

// twist returns what the node publishes for one of its engine's messages:
// the message, and for equivocate a conflicting twin of every vote and
// proposal, signed too (every peer sees both, and the pair is proof).
func (n *node) twist(m consensus.Message) []consensus.Message {
	if n.cfg.Behave != "equivocate" {
		return []consensus.Message{m}
	}
	run := n.eng.RunID()
	sign := gossip.Signer(n.key)
	switch {
	case m.Vote != nil:
		v := *m.Vote
		if v.Value.IsZero() {
			v.Value = sha256.Sum256(fmt.Appendf(nil, "twin %d %d %d", v.Kind, v.Round, v.View))
		} else {
			v.Value = consensus.Hash{}
		}
		v.Sig = sign(consensus.VoteSignBytes(run, &v))
		return []consensus.Message{m, {Vote: &v}}
	case m.Proposal != nil && len(m.Proposal.Value.Updates) > 1:
		val := *m.Proposal.Value
		val.Updates = slices.Clone(val.Updates[:len(val.Updates)-1])
		p := &consensus.Proposal{Vote: m.Proposal.Vote, Value: &val}
		p.Vote.Value, p.Vote.ValidView = val.ID(run), -1
		p.Vote.Sig = sign(consensus.VoteSignBytes(run, &p.Vote))
		return []consensus.Message{m, {Proposal: p}}
	}
	return []consensus.Message{m}
}

// spoil breaks the signature of a forger's updates and verdicts: its
// messages never pass gossip validation.
func (n *node) spoil(m consensus.Message, raw []byte) []byte {
	if n.cfg.Behave != "forge" || m.Update == nil && m.Verdict == nil {
		return raw
	}
	bad := slices.Clone(raw)
	bad[len(bad)-1] ^= 0xff // the signature is the last field
	return bad
}

// staleBase returns the oldest agreed state the node still holds (for
// --behave stale), or nil.
func (n *node) staleBase(round uint64) []float32 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var best *consensus.State
	for _, st := range n.states {
		if st.Round < round && (best == nil || st.Round < best.Round) {
			s := st
			best = &s
		}
	}
	if best == nil {
		return nil
	}
	return best.Theta
}
