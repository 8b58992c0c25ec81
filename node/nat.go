package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
)

// noteReachability says how this node is reachable (gossip.Reachability:
// public or behind NAT, through which relays, directly connected to how
// many of its peers) whenever that changes, checked at each decided
// round, and offers its relay addresses as join addresses once it has
// them (a peer behind NAT has no other).
func (n *node) noteReachability() {
	r := n.tr.Reachability()
	if s := r.String(); s != n.lastReach {
		n.lastReach = s
		n.event(EventReachable, []any{"reachability", s}, "reachability: %s", s)
	}
	for _, a := range r.RelayAddrs {
		if !slices.Contains(n.relayJoins, a) {
			n.relayJoins = append(n.relayJoins, a)
			n.event(EventListening, []any{"addr", a, "join", fmt.Sprintf("vtrain node --join %s --run %s", a, n.spec.RunID())}, "join: %s", a)
		}
	}
}

// explainStall says, once per reason, why this node has decided nothing for
// a while when the reason is the network: it reaches too few of the
// round's voters for a certificate (a partition, or its own link down), so
// it cannot decide. The first decision after such a report says the node
// decides again.
//
// While it reaches too few, it redials the voters it lost, in the
// background, at each call (every stallReport): connections across a
// partition die within a minute (keep-alives), and no decision comes to
// trigger discovery (see loop).
func (n *node) explainStall(ctx context.Context, since time.Duration) {
	voters := n.eng.Voters()
	need := consensus.Quorum(len(voters))
	nw := n.tr.Host().Network()
	reach := 0
	var lost []peer.ID
	for _, v := range voters {
		if v == n.self {
			reach++
			continue
		}
		id, err := peer.Decode(string(v))
		if err != nil {
			continue
		}
		if nw.Connectedness(id) == network.Connected {
			reach++
		} else {
			lost = append(lost, id)
		}
	}
	if reach >= need {
		return // it waits for votes (or for its own training): the log has the engine's status
	}
	if n.redialing.CompareAndSwap(false, true) {
		go func() {
			defer n.redialing.Store(false)
			if k := n.tr.Redial(ctx, lost); k > 0 {
				n.log.Info("reconnected to voters", "count", k)
			}
		}()
	}
	why := fmt.Sprintf("round %d: not deciding: this node reaches %d of the %d voters (itself included) and a decision needs %d; it waits for the network to heal, then catches up by certificates", n.eng.Round(), reach, len(voters), need)
	if why != n.stallWhy {
		// Said by stalled, once per deadline; noted here for decidingAgain.
		n.stallWhy = why
		n.stalledAt = time.Now().Add(-since)
	}
}

// decidingAgain reports the end of a stall that explainStall reported.
func (n *node) decidingAgain(round uint64) {
	if n.stallWhy == "" {
		return
	}
	after := time.Since(n.stalledAt).Round(time.Second)
	n.event(EventDeciding, []any{"round", round, "after_s", after.Seconds()}, "round %d: deciding again, after %v without a decision", round, after)
	n.stallWhy = ""
}
