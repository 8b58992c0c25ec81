package gossip

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestListenWithQUIC(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		{[]string{"/ip4/127.0.0.1/tcp/0"}, []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}},
		{[]string{"/ip4/10.0.0.2/tcp/4001", "/ip6/::1/tcp/5"}, []string{"/ip4/10.0.0.2/tcp/4001", "/ip6/::1/tcp/5", "/ip4/10.0.0.2/udp/4001/quic-v1", "/ip6/::1/udp/5/quic-v1"}},
		// A UDP address of its own on that IP: left as given.
		{[]string{"/ip4/10.0.0.2/tcp/4001", "/ip4/10.0.0.2/udp/9/quic-v1"}, []string{"/ip4/10.0.0.2/tcp/4001", "/ip4/10.0.0.2/udp/9/quic-v1"}},
		// TCP with more than a port (websockets): no twin.
		{[]string{"/ip4/10.0.0.2/tcp/80/ws"}, []string{"/ip4/10.0.0.2/tcp/80/ws"}},
	} {
		got, err := ListenWithQUIC(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ListenWithQUIC(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := ListenWithQUIC([]string{"/ip4/10.0.0.2/tcp/4001", "tcp:4001"}); err == nil || !strings.Contains(err.Error(), `"tcp:4001"`) {
		t.Errorf("a malformed address: error %v", err)
	}
}

func TestReachabilityString(t *testing.T) {
	for _, tc := range []struct {
		r    Reachability
		want string
	}{
		{Reachability{Status: "private", Relays: []string{"12D3KooWRelayAAAAAAAAxyz123"}, Peers: 4, Direct: 3, Relayed: 1, HolePunched: 1, HolePunchFailed: 2},
			"behind NAT, reachable via relay 12D3…xyz123, direct to 3 of 4 peers (1 through a relay; hole punches 1 succeeded, 2 failed; 0 upgraded by a direct dial)"},
		{Reachability{Status: "private", Peers: 2, Direct: 2}, "behind NAT, no relay slot yet, direct to 2 of 2 peers"},
		{Reachability{Status: "public", Reachable: []string{"/ip4/11.44.0.1/tcp/4001"}, Peers: 4, Direct: 4},
			"publicly reachable at /ip4/11.44.0.1/tcp/4001, direct to 4 of 4 peers"},
		{Reachability{Status: "unknown"}, "reachability unknown (no public address, or AutoNAT has not decided yet), direct to 0 of 0 peers"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

// TestRelayACL: a node's relay serves the peers of its run's topic and no
// one else; on loopback, where libp2p finds no public address, the NAT
// stack stays idle and reports so.
func TestRelayACL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	a := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	b := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	if _, err := b.Connect(ctx, a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	outsider, err := peer.IDFromPrivateKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	acl := relayACL{a.nat}
	for !slices.Contains(a.topic.ListPeers(), b.ID()) {
		select {
		case <-ctx.Done():
			t.Fatal("b never appeared on a's topic")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !acl.AllowReserve(b.ID(), nil) || !acl.AllowConnect(outsider, nil, b.ID()) {
		t.Error("the relay refuses a peer of its run")
	}
	if acl.AllowReserve(outsider, nil) || acl.AllowConnect(b.ID(), nil, outsider) {
		t.Error("the relay serves a peer that is not on its run's topic")
	}
	r := a.Reachability()
	if r.Status != "unknown" || r.Peers != 1 || r.Direct != 1 || len(r.Relays) != 0 {
		t.Errorf("on loopback: %+v", r)
	}
	if got := peerAddrs(a.Host(), b.ID()); len(got) == 0 {
		t.Error("no address of a connected peer")
	}
}

// TestRedial: a peer whose connection died is dialed again at the address
// the peerstore kept, past libp2p's dial backoff.
func TestRedial(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	a := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	b := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	if _, err := b.Connect(ctx, a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.Host().Network().ClosePeer(a.ID()); err != nil {
		t.Fatal(err)
	}
	unknown, err := peer.IDFromPrivateKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := b.Redial(ctx, []peer.ID{a.ID(), b.ID(), unknown}); n != 1 {
		t.Fatalf("Redial reached %d peers, want 1 (a; itself and a peer of no known address are skipped)", n)
	}
	if n := b.Redial(ctx, []peer.ID{a.ID()}); n != 0 {
		t.Errorf("Redial of a connected peer: %d", n)
	}
}
