package node

import (
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
)

// judgement is a message the transport's validator hands the node's loop
// for the engine to judge before the message is forwarded.
type judgement struct {
	m     *gossip.Msg
	reply chan consensus.Decision
}

// judgeWait bounds how long a validator waits for the loop: a message the
// loop cannot take in time is ignored (not forwarded, not penalised), and
// the protocol's retransmissions make up for it.
const judgeWait = 5 * time.Second

// judge implements gossip.Judge: it runs on pubsub's validation
// goroutines and waits for the loop's decision.
func (n *node) judge(m *gossip.Msg) consensus.Decision {
	j := judgement{m: m, reply: make(chan consensus.Decision, 1)}
	t := time.NewTimer(judgeWait)
	defer t.Stop()
	select {
	case n.judging <- j:
	case <-t.C:
		return consensus.Decision{Verdict: consensus.Ignore, Reason: "node busy"}
	}
	select {
	case d := <-j.reply:
		return d
	case <-t.C:
		return consensus.Decision{Verdict: consensus.Ignore, Reason: "node busy"}
	}
}

// step hands a verified message to the engine and records what it did.
func (n *node) step(m *gossip.Msg) consensus.Decision {
	d := n.eng.Step(m.Message)
	if u := m.Update; u != nil {
		if d.OK() || d.Kept {
			n.mu.Lock()
			n.raws[u.ID(n.eng.RunID())] = m.Raw
			n.mu.Unlock()
		}
		if !d.Invalid && n.eng.Members().Has(u.From) {
			// Signed by a member (the engine checks an update's signature
			// before anything else): it takes part in the run, whether or
			// not a round aggregates it, even if it came after this node
			// moved on (unfinished). Replayed, it says no more than its
			// author did (heard).
			n.heard(string(u.From), u.Round+1)
		}
	}
	if p := m.Proposal; p != nil && (d.OK() || d.Kept) {
		n.proposed = max(n.proposed, p.Vote.Round+1)
	}
	if d.Verdict == consensus.Reject {
		n.log.Info("rejected", "msg", m, "reason", d.Reason)
	}
	n.recordMsg(m, d)
	return d
}
