package gossip

import (
	"context"
	"reflect"
	"testing"
	"time"

	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/runspec"
)

// A message published while a peer was not there reaches it when the
// author re-sends it: the re-send is a new copy, not a duplicate that
// every seen cache drops (the author's own first).
func TestResendReachesLatePeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	spec.Rounds.CommitTimeout = runspec.Duration{Duration: 400 * time.Millisecond}
	run := spec.RunID()
	// No judge: b delivers what it verifies (Messages).
	a := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	b := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	msgs := sampleMessages(t, newKey(t), run)
	vote := msgs[2]
	raw, err := Encode(newKey(t), run, vote)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, "vote", raw); err != nil { // nobody there
		t.Fatal(err)
	}
	if _, err := b.Connect(ctx, a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	for a.Stats().Peers == 0 || b.Stats().Peers == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the peers never joined each other's topic")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := a.Publish(ctx, "vote", raw); err != nil {
		t.Fatalf("the re-send was refused: %v", err)
	}
	select {
	case m := <-b.Messages():
		if !reflect.DeepEqual(m.Vote, vote.Vote) {
			t.Fatalf("got %+v, want the vote", m)
		}
		var s pb.Signed
		if err := proto.Unmarshal(m.Raw, &s); err != nil || s.Copy != 1 {
			t.Fatalf("the re-send arrived as copy %d (%v), want 1", s.Copy, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the re-sent vote never reached the peer that joined late")
	}
}

func TestResendNumbersCopies(t *testing.T) {
	spec := testSpec(t)
	run := spec.RunID()
	k := newKey(t)
	raw, err := Encode(k, run, sampleMessages(t, k, run)[2])
	if err != nil {
		t.Fatal(err)
	}
	c := newCopies(time.Second)
	if got := c.resend(raw); string(got) != string(raw) {
		t.Fatal("the first send is not the bytes as framed")
	}
	for want := uint32(1); want <= 3; want++ {
		got := c.resend(raw)
		m, err := Verify(got, run, 1<<20)
		if err != nil {
			t.Fatalf("copy %d does not verify: %v", want, err)
		}
		var s pb.Signed
		proto.Unmarshal(got, &s)
		if s.Copy != want || msgID(&pubsubpb.Message{Data: got}) == msgID(&pubsubpb.Message{Data: raw}) {
			t.Fatalf("copy %d numbered %d", want, s.Copy)
		}
		if m.Vote == nil {
			t.Fatal("the copy lost its vote")
		}
	}
}

// Copies of a held message: dropped within half a commit timeout, let
// through after it, and refused from a peer that sends more than honest
// re-sending and relaying can.
func TestCopiesReceived(t *testing.T) {
	spec := testSpec(t)
	run := spec.RunID()
	k := newKey(t)
	raw, _ := Encode(k, run, sampleMessages(t, k, run)[2])
	other, _ := Encode(k, run, sampleMessages(t, k, run)[3])
	c := newCopies(2 * time.Second) // window 1 s
	p, q := peer.ID("relay-p"), peer.ID("relay-q")
	t0 := time.Unix(1000, 0)
	key, v := c.received(raw, p, t0)
	if v != copyCheck {
		t.Fatalf("a new message: %v", v)
	}
	if _, v := c.received(raw, q, t0); v != copyCheck {
		t.Fatalf("a message not yet held is judged again: %v", v)
	}
	c.held(key, p, t0)
	if _, v := c.received(c.resend(c.resend(raw)), q, t0.Add(300*time.Millisecond)); v != copyDrop {
		t.Fatalf("a copy within the window: %v", v)
	}
	if _, v := c.received(other, q, t0.Add(300*time.Millisecond)); v != copyCheck {
		t.Fatalf("another message: %v", v)
	}
	if _, v := c.received(raw, q, t0.Add(1100*time.Millisecond)); v != copyCheck {
		t.Fatalf("a copy after the window: %v", v)
	}
	if _, v := c.received(raw, q, t0.Add(1200*time.Millisecond)); v != copyDrop {
		t.Fatalf("a copy right after one let through: %v", v)
	}
	// p has delivered 1; q 3 so far. Flood from q.
	if _, v := c.received(raw, q, t0.Add(1300*time.Millisecond)); v != copyDrop {
		t.Fatalf("q's 4th copy: %v", v)
	}
	if _, v := c.received(raw, q, t0.Add(1400*time.Millisecond)); v != copyFlood {
		t.Fatalf("q's 5th copy within a commit timeout: %v", v)
	}
	if _, v := c.received(raw, p, t0.Add(1400*time.Millisecond)); v != copyDrop {
		t.Fatalf("p's 2nd copy: %v", v)
	}
	// A new counting window forgives.
	if _, v := c.received(raw, q, t0.Add(4500*time.Millisecond)); v != copyCheck {
		t.Fatalf("q after the counting window: %v", v)
	}
	if _, v := c.received([]byte("not protobuf \xff\xff"), q, t0); v != copyCheck {
		t.Fatalf("junk goes to the full check: %v", v)
	}
}
