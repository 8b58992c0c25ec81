package node

import (
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/trainer"
)

// Behaviours a node can be told to have (vtrain node --behave): honest,
// the misbehaviours of a member that spot-checks or the protocol must
// catch, and the attacks of an outsider (Outsiders) that must have no
// effect. A member's misbehaviour may start later: "lazy+10" trains
// honestly in rounds 0..9 and lazily from round 10 on.
//
//   - lazy, noise, replay, scaled, stale: cheat at training (see misbehave);
//   - flip: trains honestly and sends the negated update (sign flip);
//   - alie: trains honestly and shifts every coordinate against its own
//     sign by one standard deviation (a little is enough: an update the
//     size of an honest one, pointing the wrong way);
//   - ipm: inner-product manipulation: trains honestly, waits for the
//     round's other updates and sends the negated mean of those it has
//     seen (of its own update when it has seen none), so that its inner
//     product with the honest aggregate is negative;
//   - accuse: as a challenger, fails every check it is drawn for, with a
//     made-up step dispute;
//   - accuse-any: accuse, and also signs failures of updates the beacon
//     did not draw it for;
//   - collude: as a challenger, passes every check without looking;
//   - forge, equivocate: bad signatures, conflicting votes;
//   - late: no misbehaviour: it trains honestly but hands each update to
//     the run only once its round was decided without it, like a peer
//     behind a slow link; its updates are aggregated late, a round after
//     their own (consensus/late.go);
//   - tardy: no misbehaviour either: it hands each update over only once
//     it has seen a proposal of the round after the update's, too late
//     for any round to take (as a late update, it can join only that
//     round's value): a peer a little slower than the run, whose signed
//     updates the others accept but never aggregate;
//   - forge-proof: a private peer (runspec.Privacy) that answers the step
//     its update was drawn for with a proof of another statement: one step
//     from the same state on the batch of another step, a proof that
//     verifies for that statement but not for the drawn one.
var Behaviours = []string{"honest", "lazy", "noise", "replay", "scaled", "stale", "flip", "alie", "ipm", "accuse", "accuse-any", "collude",
	"forge", "equivocate", "hijack", "sybil", "future", "flood", "late", "tardy", "forge-proof"}

// TrainingCheats are the misbehaviours that send bad updates (the others
// lie as challengers, or about signatures and votes).
var TrainingCheats = []string{"lazy", "noise", "replay", "scaled", "stale", "flip", "alie", "ipm"}

// ParseBehave splits a --behave value into the misbehaviour and the round
// it starts at ("lazy+10": lazy from round 10).
func ParseBehave(s string) (string, uint64, error) {
	name, from, ok := strings.Cut(s, "+")
	var r uint64
	if ok {
		v, err := strconv.ParseUint(from, 10, 32)
		if err != nil || slices.Contains(Outsiders, name) {
			return "", 0, fmt.Errorf("behaviour %q: want NAME or NAME+ROUND (a member's misbehaviour from that round on)", s)
		}
		r = v
	}
	if s != "" && !slices.Contains(Behaviours, name) {
		return "", 0, fmt.Errorf("behaviour %q: want one of %s (a member's may end in +ROUND)", s, strings.Join(Behaviours, ", "))
	}
	if name == "honest" {
		name = ""
	}
	return name, r, nil
}

// acts returns the misbehaviour the node has in round r: "" when honest.
func (n *node) acts(r uint64) string {
	if r < n.behaveFrom {
		return ""
	}
	return n.behave
}

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
	switch n.acts(req.Round) {
	case "flip":
		for i := range w.Delta {
			w.Delta[i] = -w.Delta[i]
		}
	case "alie":
		// Each coordinate moved against its sign by z = 1 standard
		// deviation (its own update's RMS standing in for the spread of
		// the honest updates): small coordinates flip, large ones shrink,
		// and the norm stays that of an honest update.
		s := float32(norm(w.Delta) / math.Sqrt(float64(len(w.Delta))))
		for i := range w.Delta {
			w.Delta[i] -= s * sign(w.Delta[i])
		}
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

// ipm replaces delta with the negated mean of the other members' updates
// of the same round that the node has seen (delta itself when none).
func (n *node) ipm(round uint64, delta []float32) {
	dec, err := compress.NewDecoder(len(delta))
	if err != nil {
		return
	}
	defer dec.Close()
	mean := make([]float32, len(delta))
	seen := 0
	for _, v := range n.eng.Updates() {
		if v.From == n.self || v.Round != round {
			continue
		}
		if sp, err := dec.Decode(v.Payload); err == nil {
			sp.AddTo(mean, 1)
			seen++
		}
	}
	if seen == 0 {
		for i := range delta {
			delta[i] = -delta[i]
		}
		return
	}
	for i := range delta {
		delta[i] = -mean[i] / float32(seen)
	}
}

// tamper alters a finished update: replay re-signs another member's update
// as its own, keeping what the run checks without re-execution (its own
// seed, which the run assigns, and the residual the run certified for it,
// which every engine requires it to carry in: a replay that copied that too
// would be refused at validation, sent for nothing). It claims the copied
// residual out, so its chain goes on from the copy. Its evidence is its own
// honest work, which does not match the copied roots: only a check
// catches it.
func (n *node) tamper(u *consensus.Update) {
	if n.acts(u.Round) != "replay" {
		return
	}
	u.ResidualIn = n.eng.ResidualMark(u.From) // with no update to copy yet, it sends its own work on a claimed residual
	for _, v := range n.eng.Updates() {
		if v.From != u.From && v.Base == u.Base {
			u.Payload, u.Samples, u.Loss, u.Segments = v.Payload, v.Samples, v.Loss, v.Segments
			u.ResidualOut = v.ResidualOut
			return
		}
	}
}

// twist returns what the node publishes for one of its engine's messages:
// the message, and for equivocate a conflicting twin of every vote and
// proposal, signed too (every peer sees both, and the pair is proof).
func (n *node) twist(m consensus.Message) []consensus.Message {
	if n.acts(n.eng.Round()) != "equivocate" {
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
	if n.acts(n.eng.Round()) != "forge" || m.Update == nil && m.Verdict == nil {
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

func sign(x float32) float32 {
	if x < 0 {
		return -1
	}
	return 1
}

// collude makes a colluding challenger's finding a pass, whatever it
// found; accuse makes an accuser's a made-up step dispute.
func (n *node) collude(f *trainer.Finding, round uint64, ask func(seg int) *consensus.Answer) {
	switch n.acts(round) {
	case "collude":
		*f = trainer.Finding{}
	case "accuse", "accuse-any":
		if f.Fault != consensus.FaultNone {
			return
		}
		seg := int(round) % n.spec.Segments()
		a := ask(seg)
		if a == nil {
			return
		}
		lo, _ := trainer.SegmentSteps(n.spec, seg)
		*f = trainer.Finding{Fault: consensus.FaultStep, Segment: seg, Step: lo + 1, Answer: a, Reason: fmt.Sprintf("%v: step %d does not follow (made up)", trainer.ErrChallenge, lo+1)}
	}
}

// accuseAny signs failed verdicts on a decided round's updates the beacon
// did not draw this node for (accuse-any): lies any member can see.
func (n *node) accuseAny(res consensus.Decided) {
	if n.acts(res.Round) != "accuse-any" || res.Restored {
		return
	}
	drawn := map[consensus.Hash]bool{}
	for _, c := range res.Challenges {
		if consensus.PeerID(c.Challenger) == n.self {
			drawn[consensus.Hash(c.Update)] = true
		}
	}
	for _, r := range res.Value.Updates {
		if r.From == n.self || drawn[r.ID] {
			continue
		}
		x := &consensus.VerdictMsg{Round: res.Round, Update: r.ID, Accused: r.From, Fault: consensus.FaultSilent, Reason: "made up: no answer"}
		n.eng.SubmitVerdict(x)
		return // one is proof enough
	}
}
