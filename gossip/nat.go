package gossip

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// NAT traversal, with libp2p's own parts:
//
//   - AutoNAT (v1 for the node's overall reachability, which drives the
//     relay client and service below; v2 for each address) tells a node
//     whether others can dial it. Every node offers the AutoNAT service to
//     its peers.
//   - A node that AutoNAT finds public offers a circuit relay v2 (the
//     relay service starts only then), with the resource limits of
//     relayResources and only to the run's peers (relayACL).
//   - A node behind NAT reserves a slot with up to two relays among the
//     run's peers it is connected to (auto-relay, fed by relayCandidates,
//     not by a DHT: a run's members are the only relays it needs) and
//     advertises the relay addresses; the peers it tells (identify, and
//     Discover's peer lists) reach it through them.
//   - Hole punching (DCUtR) then upgrades each relayed connection to a
//     direct one where the NATs allow it; the relayed connection is closed
//     once a direct one is up, so that gossip moves to the direct one.
//   - QUIC beside TCP (ListenWithQUIC): UDP hole punching succeeds behind
//     NATs where TCP's does not.
//
// A relayed connection has no per-connection data or time limit (a limited
// one would carry no gossip: libp2p opens streams only on unlimited
// connections unless a protocol asks otherwise), so that a peer whose NAT
// defeats hole punching still trains through the relay; the relay bounds
// what it gives by the number of slots and circuits instead.
//
// libp2p treats only public IP addresses as candidates for all of this
// (AutoNAT, relay reservations and hole punching skip private, loopback and
// documentation ranges): on loopback, as in tests and the demo, the stack
// stays idle.

// relayResources are the limits of the relay a public node offers: slots
// for a run's worth of NATed peers, few circuits each, small buffers.
func relayResources() relayv2.Resources {
	return relayv2.Resources{
		Limit:                 nil, // see above: a limited connection carries no gossip
		ReservationTTL:        time.Hour,
		MaxReservations:       64,
		MaxCircuits:           16,
		BufferSize:            4096,
		MaxReservationsPerIP:  8,
		MaxReservationsPerASN: 32,
	}
}

// natState is a transport's share of the NAT machinery: it feeds the relay
// client with candidates, decides whom the relay serves, and keeps what
// the node reports about its reachability.
type natState struct {
	mu          sync.Mutex
	t           *Transport // set once the transport exists
	status      network.Reachability
	reachable   []ma.Multiaddr // AutoNAT v2's confirmed public addresses
	punched     int            // hole punches that gave a direct connection
	punchFailed int
	dialed      int            // DCUtR's direct dials that made a hole punch unnecessary
	via         map[string]int // the transports of the direct connections hole punching made
}

// hostOptions returns the libp2p options of a transport's host.
func (ns *natState) hostOptions(cfg Config, bw metrics.Reporter) []libp2p.Option {
	return []libp2p.Option{
		libp2p.Identity(cfg.Key),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.BandwidthReporter(bw),
		libp2p.EnableNATService(),
		libp2p.EnableAutoNATv2(),
		libp2p.EnableRelayService(relayv2.WithResources(relayResources()), relayv2.WithACL(relayACL{ns})),
		libp2p.EnableAutoRelayWithPeerSource(ns.relayCandidates,
			autorelay.WithMinCandidates(1), autorelay.WithNumRelays(2),
			autorelay.WithBootDelay(0), autorelay.WithBackoff(30*time.Second), autorelay.WithMinInterval(10*time.Second)),
		libp2p.EnableHolePunching(holepunch.WithTracer(ns)),
	}
}

// start attaches ns to its transport and follows AutoNAT's findings until
// ctx ends.
func (ns *natState) start(ctx context.Context, t *Transport) error {
	ns.mu.Lock()
	ns.t = t
	ns.mu.Unlock()
	sub, err := t.h.EventBus().Subscribe([]any{new(event.EvtLocalReachabilityChanged), new(event.EvtHostReachableAddrsChanged)})
	if err != nil {
		return fmt.Errorf("gossip: reachability events: %w", err)
	}
	go func() {
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				ns.mu.Lock()
				switch e := e.(type) {
				case event.EvtLocalReachabilityChanged:
					ns.status = e.Reachability
				case event.EvtHostReachableAddrsChanged:
					ns.reachable = slices.Clone(e.Reachable)
				}
				ns.mu.Unlock()
			}
		}
	}()
	return nil
}

func (ns *natState) transport() *Transport {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.t
}

// relayCandidates is auto-relay's peer source: the peers this node is
// connected to directly over a public address (the run's members it
// joined through, and those it met since). Auto-relay keeps those that
// offer a relay.
func (ns *natState) relayCandidates(ctx context.Context, num int) <-chan peer.AddrInfo {
	t := ns.transport()
	var out []peer.AddrInfo
	if t != nil {
		for _, p := range t.h.Network().Peers() {
			if len(out) == num {
				break
			}
			if c := directConn(t.h, p); c != nil && manet.IsPublicAddr(c.RemoteMultiaddr()) {
				out = append(out, peer.AddrInfo{ID: p, Addrs: t.h.Peerstore().Addrs(p)})
			}
		}
	}
	ch := make(chan peer.AddrInfo, len(out))
	for _, ai := range out {
		ch <- ai
	}
	close(ch)
	return ch
}

// relayACL admits to this node's relay only peers of its run's topic: a
// public member relays for the run, not for anyone who finds it.
type relayACL struct{ ns *natState }

func (a relayACL) onTopic(p peer.ID) bool {
	t := a.ns.transport()
	return t != nil && t.topic != nil && slices.Contains(t.topic.ListPeers(), p)
}

func (a relayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool { return a.onTopic(p) }

func (a relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dst peer.ID) bool {
	return a.onTopic(dst) // dst holds a slot, so it is on the topic; src is whoever reaches it
}

// Trace counts DCUtR's outcomes (holepunch.EventTracer) and, once a direct
// connection is up, closes the relayed ones to that peer so that gossip
// and sync move to the direct one (pubsub reopens its stream on the
// connection that stays).
func (ns *natState) Trace(evt *holepunch.Event) {
	var ok bool
	ns.mu.Lock()
	switch e := evt.Evt.(type) {
	case *holepunch.EndHolePunchEvt:
		if ok = e.Success; ok {
			ns.punched++
			if t := ns.t; t != nil {
				if c := directConn(t.h, evt.Remote); c != nil {
					if ns.via == nil {
						ns.via = map[string]int{}
					}
					ns.via[transportName(c.RemoteMultiaddr())]++
				}
			}
		} else {
			ns.punchFailed++
		}
	case *holepunch.DirectDialEvt:
		// A failed direct dial is followed by a hole punch.
		if ok = e.Success; ok {
			ns.dialed++
		}
	}
	t := ns.t
	ns.mu.Unlock()
	if ok && t != nil {
		go closeRelayed(t.h, evt.Remote)
	}
}

// closeRelayed closes p's relayed connections when a direct one exists.
func closeRelayed(h host.Host, p peer.ID) {
	if directConn(h, p) == nil {
		return
	}
	for _, c := range h.Network().ConnsToPeer(p) {
		if isRelayed(c.RemoteMultiaddr()) {
			c.Close()
		}
	}
}

// transportName is "quic" or "tcp" (or the address's second protocol).
func transportName(a ma.Multiaddr) string {
	if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil {
		return "quic"
	}
	if len(a) > 1 {
		return a[1].Protocol().Name
	}
	return a.String()
}

func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// maxAddrsPerPeer bounds the addresses KnownPeers gives per peer.
const maxAddrsPerPeer = 8

// peerAddrs returns up to maxAddrsPerPeer of p's known addresses: those of
// the connections this host has with p first (they work), then relay
// addresses, then the rest.
func peerAddrs(h host.Host, p peer.ID) []ma.Multiaddr {
	var out []ma.Multiaddr
	add := func(a ma.Multiaddr) {
		if len(out) < maxAddrsPerPeer && !slices.ContainsFunc(out, a.Equal) {
			out = append(out, a)
		}
	}
	for _, c := range h.Network().ConnsToPeer(p) {
		if !isRelayed(c.RemoteMultiaddr()) && !c.IsClosed() && c.Stat().Direction == network.DirOutbound {
			add(c.RemoteMultiaddr()) // an inbound connection's remote port is an ephemeral one
		}
	}
	known := h.Peerstore().Addrs(p)
	for _, a := range known {
		if isRelayed(a) {
			add(a)
		}
	}
	for _, a := range known {
		add(a)
	}
	return out
}

// directConn returns an open connection to p that does not go through a
// relay, or nil.
func directConn(h host.Host, p peer.ID) network.Conn {
	for _, c := range h.Network().ConnsToPeer(p) {
		if !isRelayed(c.RemoteMultiaddr()) && !c.IsClosed() {
			return c
		}
	}
	return nil
}

// Reachability is what a node knows of how others reach it.
type Reachability struct {
	// Status is AutoNAT's finding: "public", "private" (behind NAT or a
	// firewall) or "unknown" (not decided yet, or no peer offers AutoNAT:
	// so it stays on loopback).
	Status string `json:"status"`
	// Reachable are the public addresses AutoNAT v2 confirmed.
	Reachable []string `json:"reachable,omitempty"`
	// Relays are the peers this node holds a relay slot with, and
	// RelayAddrs its addresses through them (join addresses for peers that
	// cannot dial it directly).
	Relays     []string `json:"relays,omitempty"`
	RelayAddrs []string `json:"relay_addrs,omitempty"`
	// Peers counts the run's peers (on its topic) this node is connected
	// to: Direct of them over at least one direct connection, Relayed only
	// through a relay.
	Peers   int `json:"peers"`
	Direct  int `json:"direct"`
	Relayed int `json:"relayed"`
	// HolePunched and HolePunchFailed count DCUtR's hole punches on this
	// node; DirectDialed its upgrades by a plain direct dial (the other
	// peer was public), which need no hole.
	HolePunched     int `json:"hole_punched"`
	HolePunchFailed int `json:"hole_punch_failed"`
	DirectDialed    int `json:"direct_dialed"`
	// HolePunchedVia counts the punched connections by transport ("quic",
	// "tcp").
	HolePunchedVia map[string]int `json:"hole_punched_via,omitempty"`
}

// Reachability reports how this node is reachable now.
func (t *Transport) Reachability() Reachability {
	ns := t.nat
	ns.mu.Lock()
	r := Reachability{HolePunched: ns.punched, HolePunchFailed: ns.punchFailed, DirectDialed: ns.dialed, HolePunchedVia: maps.Clone(ns.via)}
	switch ns.status {
	case network.ReachabilityPublic:
		r.Status = "public"
	case network.ReachabilityPrivate:
		r.Status = "private"
	default:
		r.Status = "unknown"
	}
	for _, a := range ns.reachable {
		r.Reachable = append(r.Reachable, a.String())
	}
	ns.mu.Unlock()
	relays := map[string]bool{}
	for _, a := range t.h.Addrs() {
		if !isRelayed(a) {
			continue
		}
		r.RelayAddrs = append(r.RelayAddrs, a.String()+"/p2p/"+t.h.ID().String())
		if id, err := a.ValueForProtocol(ma.P_P2P); err == nil && !relays[id] {
			relays[id] = true
			r.Relays = append(r.Relays, id)
		}
	}
	slices.Sort(r.Relays)
	for _, p := range t.topic.ListPeers() {
		if len(t.h.Network().ConnsToPeer(p)) == 0 {
			continue
		}
		r.Peers++
		if directConn(t.h, p) != nil {
			r.Direct++
		} else {
			r.Relayed++
		}
	}
	return r
}

// String says it in a line: "behind NAT, reachable via relay 12D3…abcd,
// direct to 3 of 4 peers (1 through a relay; hole punching 2 succeeded, 0
// failed)".
func (r Reachability) String() string {
	var b strings.Builder
	switch r.Status {
	case "public":
		b.WriteString("publicly reachable")
		if len(r.Reachable) > 0 {
			fmt.Fprintf(&b, " at %s", strings.Join(r.Reachable, ", "))
		}
	case "private":
		b.WriteString("behind NAT")
	default:
		b.WriteString("reachability unknown (no public address, or AutoNAT has not decided yet)")
	}
	switch {
	case len(r.Relays) > 0:
		short := make([]string, len(r.Relays))
		for i, id := range r.Relays {
			short[i] = shortID(id)
		}
		fmt.Fprintf(&b, ", reachable via relay %s", strings.Join(short, " and "))
	case r.Status == "private":
		b.WriteString(", no relay slot yet")
	}
	fmt.Fprintf(&b, ", direct to %d of %d peers", r.Direct, r.Peers)
	if r.Relayed > 0 || r.HolePunched+r.HolePunchFailed+r.DirectDialed > 0 {
		fmt.Fprintf(&b, " (%d through a relay; hole punches %d succeeded, %d failed; %d upgraded by a direct dial)", r.Relayed, r.HolePunched, r.HolePunchFailed, r.DirectDialed)
	}
	return b.String()
}

func shortID(id string) string {
	if len(id) <= 10 {
		return id
	}
	return id[:4] + "…" + id[len(id)-6:]
}

// ListenWithQUIC returns the listen addresses with a QUIC twin
// (/udp/P/quic-v1 on the same IP and port number) for each TCP address
// that has none, so that a node listens on QUIC beside TCP unless told
// otherwise. Port 0 stays 0: each transport picks its own port.
func ListenWithQUIC(listen []string) ([]string, error) {
	out := slices.Clone(listen)
	have := map[string]bool{}
	var tcp []ma.Multiaddr
	for _, s := range listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("gossip: listen address %q: %w", s, err)
		}
		ip, rest := ma.SplitFirst(a)
		if ip == nil || len(rest) == 0 {
			continue
		}
		switch rest[0].Protocol().Code {
		case ma.P_UDP:
			have[ip.String()] = true
		case ma.P_TCP:
			tcp = append(tcp, a)
		}
	}
	for _, a := range tcp {
		ip, rest := ma.SplitFirst(a)
		if have[ip.String()] || len(rest) != 1 {
			continue
		}
		have[ip.String()] = true
		out = append(out, ip.String()+"/udp/"+rest[0].Value()+"/quic-v1")
	}
	return out, nil
}

// Redial dials, in parallel and for at most 10 s, the given peers this
// host is not connected to, at the addresses it last knew (the peerstore
// keeps them a while after a disconnection), past libp2p's dial backoff:
// after a partition heals, a node whose connections to the other side all
// died finds that side again without asking anyone (Discover asks
// connected peers, who may know no better). It returns how many it
// reached.
func (t *Transport) Redial(ctx context.Context, ids []peer.ID) int {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nw := t.h.Network()
	sw, _ := nw.(*swarm.Swarm)
	var wg sync.WaitGroup
	var n atomic.Int32
	for _, id := range ids {
		if id == t.h.ID() || nw.Connectedness(id) == network.Connected || len(t.h.Peerstore().Addrs(id)) == 0 {
			continue
		}
		if sw != nil {
			sw.Backoff().Clear(id) // the caller paces its calls
		}
		wg.Go(func() {
			if t.h.Connect(ctx, peer.AddrInfo{ID: id}) == nil {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}
