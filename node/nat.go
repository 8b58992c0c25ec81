package node

import "slices"

// noteReachability says how this node is reachable (gossip.Reachability:
// public or behind NAT, through which relays, directly connected to how
// many of its peers) whenever that changes, checked at each decided
// round, and offers its relay addresses as join addresses once it has
// them (a peer behind NAT has no other).
func (n *node) noteReachability() {
	r := n.tr.Reachability()
	if s := r.String(); s != n.lastReach {
		n.lastReach = s
		n.say("reachability: %s", s)
	}
	for _, a := range r.RelayAddrs {
		if !slices.Contains(n.relayJoins, a) {
			n.relayJoins = append(n.relayJoins, a)
			n.say("join: %s", a)
		}
	}
}
