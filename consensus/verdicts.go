package consensus

import (
	"fmt"

	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// record is a decided round as the engine keeps it for a while: to check
// verdicts and equivocation proofs about it, and to help peers that lag.
type record struct {
	commit Commit
	voters []PeerID
	next   []PeerID // the next round's voters, when they changed
	beacon Hash
	draws  map[Hash]spot.Challenge // the challenges drawn, by update ID
}

// SpotPolicy returns the run's challenge policy.
func (e *Engine) SpotPolicy() spot.Policy { return SpotPolicyOf(e.spec) }

// SpotPolicyOf returns a spec's challenge policy.
func SpotPolicyOf(spec runspec.Spec) spot.Policy {
	v := spec.Verify
	return spot.Policy{Rate: v.Rate, NewcomerRate: v.NewcomerRate, Segments: spec.Segments()}
}

// Draw returns the beacon of a decided value and the challenges it draws:
// each aggregated update at its author's rate (the newcomer rate during
// probation, as the value states and its voters checked), a segment, and a
// challenger among the round's other authors. Every honest node and every
// auditor computes the same draw from the value alone.
func Draw(v *Value, p spot.Policy) (Hash, []spot.Challenge) {
	ids := make([]spot.Hash, len(v.Updates))
	cands := make([]spot.Candidate, len(v.Updates))
	for i, r := range v.Updates {
		ids[i] = r.ID
		cands[i] = spot.Candidate{Update: r.ID, Peer: string(r.From), Newcomer: r.Newcomer}
	}
	b := spot.Beacon(v.Round, v.Next, ids)
	return b, spot.Select(b, cands, p)
}

// remember files a decided round in the history.
func (e *Engine) remember(c *Commit, voters []PeerID) {
	beacon, chs := Draw(c.Value, e.SpotPolicy())
	rec := &record{commit: *c, voters: voters, beacon: beacon, draws: map[Hash]spot.Challenge{}}
	for _, ch := range chs {
		rec.draws[Hash(ch.Update)] = ch
	}
	e.history[c.Value.Round] = rec
	// The slowest voters' votes arrive just after the quorum's, and their
	// senders decide from the same gossip: a voter lags only if it still
	// speaks of the round half a commit timeout on (its votes are re-sent
	// every commit timeout), so the first help is due then, not at once.
	// Every node publishing the commit at every decision cost more bytes
	// than all the round's votes.
	e.helped[c.Value.Round] = e.now - e.spec.Rounds.CommitTimeout.Duration/2
	for r := range e.history {
		if r+keptHistory < c.Value.Round {
			delete(e.history, r)
		}
	}
	for r := range e.helped {
		if e.history[r] == nil {
			delete(e.helped, r)
		}
	}
}

// decidedVerdict reports whether a decided value in the history already
// carries a verdict on the challenge k.
func (e *Engine) decidedVerdict(k verdictKey) bool {
	for _, rec := range e.history {
		for i := range rec.commit.Value.Verdicts {
			if rec.commit.Value.Verdicts[i].key() == k {
				return true
			}
		}
	}
	return false
}

// checkVerdict checks a verdict against the draw of its round: the beacon
// drew that update, that segment and that challenger, no decided value
// carries a verdict on it yet, and the challenger signed it.
func (e *Engine) checkVerdict(x *VerdictMsg, sig bool) error {
	rec := e.history[x.Round]
	if rec == nil {
		return fmt.Errorf("round %d is not in this node's history", x.Round)
	}
	ch, ok := rec.draws[x.Update]
	switch {
	case !ok:
		return fmt.Errorf("the beacon of round %d did not draw update %s", x.Round, x.Update.Short())
	case PeerID(ch.Peer) != x.Accused:
		return fmt.Errorf("update %s of round %d is %s's", x.Update.Short(), x.Round, ch.Peer)
	case PeerID(ch.Challenger) != x.From || ch.Segment != x.Segment:
		return fmt.Errorf("the beacon drew %s for segment %d, not %s for segment %d", ch.Challenger, ch.Segment, x.From, x.Segment)
	case e.decidedVerdict(x.key()):
		return fmt.Errorf("a decided round already carries a verdict on it")
	case sig && !e.checkSig(x.From, VerdictSignBytes(e.run, x), x.Sig):
		return fmt.Errorf("bad signature")
	}
	return nil
}

// StepVerdict processes a challenger's verdict: accepted when it answers a
// challenge the beacon drew of a recent decided round, from the challenger
// drawn; the next value carries it (a failed one excludes the accused).
func (e *Engine) StepVerdict(x *VerdictMsg) Decision {
	if x.From == "" || x.Accused == "" || x.Segment < 0 || len(x.Reason) > MaxReason {
		return invalid("malformed verdict")
	}
	if !e.checkSig(x.From, VerdictSignBytes(e.run, x), x.Sig) {
		return invalid("bad signature on a verdict from %s", x.From)
	}
	if x.Round >= e.round {
		if x.Round > e.round || len(e.lateVerdicts) >= 4*maxPeers {
			return ignore("verdict on round %d, now %d", x.Round, e.round)
		}
		// The challenger decided that round before this node: judged
		// once this node decides it too.
		e.lateVerdicts = append(e.lateVerdicts, x)
		return kept("verdict on round %d: not decided here yet (kept)", x.Round)
	}
	if e.history[x.Round] == nil {
		return ignore("verdict on round %d: not in this node's history", x.Round)
	}
	if prev, ok := e.verdicts[x.key()]; ok {
		if prev.From == x.From && prev.Pass == x.Pass && prev.Reason == x.Reason {
			return ignore("duplicate verdict")
		}
		return reject("conflicting verdict from %s on update %s", x.From, x.Update.Short())
	}
	if err := e.checkVerdict(x, false); err != nil {
		if e.decidedVerdict(x.key()) {
			return ignore("verdict already decided")
		}
		return reject("verdict from %s: %v", x.From, err)
	}
	if len(e.verdicts) >= 4*maxPeers {
		return ignore("verdicts: full")
	}
	e.verdicts[x.key()] = x
	if !x.Pass {
		e.logf("round %d: %s failed the challenge of its round-%d update (segment %d): %s", e.round, x.Accused, x.Round, x.Segment, x.Reason)
	}
	e.progress()
	return accept()
}

// SubmitVerdict signs and publishes this node's verdict on a challenge it
// was drawn for.
func (e *Engine) SubmitVerdict(x *VerdictMsg) Decision {
	x.From = e.self
	x.Sig = e.sign(VerdictSignBytes(e.run, x))
	d := e.StepVerdict(x)
	if d.Verdict != Reject {
		e.out = append(e.out, Message{Verdict: x})
	}
	return d
}

func (e *Engine) takeLateVerdicts() []*VerdictMsg {
	var now, keep []*VerdictMsg
	for _, x := range e.lateVerdicts {
		switch {
		case x.Round < e.round:
			now = append(now, x)
		case x.Round == e.round:
			keep = append(keep, x)
		}
	}
	e.lateVerdicts = keep
	return now
}

// StepEvidence processes a proof that a member equivocated.
func (e *Engine) StepEvidence(q *Equivocation) Decision {
	if err := q.check(); err != nil {
		return invalid("malformed equivocation proof: %v", err)
	}
	if _, ok := e.equivs[q.A.From]; ok {
		return ignore("equivocation of %s already known", q.A.From)
	}
	if !e.members.Has(q.A.From) {
		return ignore("equivocation proof against %s, not a member", q.A.From)
	}
	if err := e.checkEquivocation(q); err != nil {
		if q.A.Round+keptHistory < e.round || q.A.Round > e.round {
			return ignore("equivocation proof: %v", err)
		}
		return reject("equivocation proof: %v", err)
	}
	e.equivs[q.A.From] = q
	e.logf("round %d: proof that %s equivocated", e.round, q.A.From)
	e.progress()
	return accept()
}
