package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"google.golang.org/protobuf/proto"
)

type stubServer struct{ spec runspec.Spec }

func (s stubServer) Spec() []byte                             { return s.spec.Canonical() }
func (s stubServer) State(trainer.Hash) (trainer.State, bool) { return trainer.State{}, false }
func (s stubServer) Updates(ids []trainer.Hash) [][]byte      { return nil }
func (s stubServer) Evidence(uint64, trainer.Hash, int) (trainer.Evidence, error) {
	return trainer.Evidence{}, errors.New("no evidence held")
}

func testSpec(t *testing.T) runspec.Spec {
	s := runspec.Default()
	s.Model = runspec.Model{Kind: "logreg"}
	s.Data.Source = "synthetic"
	s.Rounds.MaxMessage = 64 << 10
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func newKey(t *testing.T) crypto.PrivKey {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestFakePeerRawBytes: a fake peer speaks raw bytes to a real node's
// gossipsub router. Every malformed, oversized, forged, wrong-run or stale
// message is rejected or ignored by the validator and never delivered; the
// node neither crashes nor stops delivering valid messages.
func TestFakePeerRawBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	run := spec.RunID()
	node, err := New(ctx, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	node.SetRound(10)

	// A fake peer: a plain libp2p host with a permissive gossipsub, joined
	// to the node's topic. Each attack comes from a fresh one, since
	// gossipsub rightly graylists a peer after a few invalid messages.
	type fake struct {
		key   crypto.PrivKey
		topic *pubsub.Topic
	}
	newFake := func() fake {
		k := newKey(t)
		fh, err := libp2p.New(libp2p.Identity(k), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fh.Close() })
		fps, err := pubsub.NewGossipSub(ctx, fh, pubsub.WithMaxMessageSize(4<<20), pubsub.WithFloodPublish(true))
		if err != nil {
			t.Fatal(err)
		}
		ft, err := fps.Join(TopicName(run))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ft.Subscribe(); err != nil {
			t.Fatal(err)
		}
		if err := fh.Connect(ctx, peer.AddrInfo{ID: node.ID(), Addrs: node.Host().Addrs()}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(ft.ListPeers()) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("fake peer never saw the node on the topic")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return fake{k, ft}
	}

	m, _ := spec.ModelSpec()
	enc, _ := compress.NewEncoder(spec.CompressParams(), m.NumParams())
	payload, _ := enc.Encode(make([]float32, m.NumParams()), nil)
	upd := func(round uint64, p []byte) trainer.Outbound {
		return trainer.Outbound{Update: &trainer.UpdateMsg{Round: round, Payload: p, Samples: 1}}
	}
	signedBy := func(k crypto.PrivKey, r runspec.ID, o trainer.Outbound) []byte {
		b, err := Sign(k, r, o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	forged := func(fk crypto.PrivKey) []byte {
		// A body that names another peer as sender, signed by the fake.
		oid, _ := peer.IDFromPrivateKey(newKey(t))
		body, _ := proto.Marshal(&pb.Body{Run: run[:RunPrefix], Round: 10, Sender: []byte(oid), Msg: &pb.Body_Hello{Hello: &pb.Hello{Base: make([]byte, 32)}}})
		sig, _ := fk.Sign(signed(run, body))
		b, _ := proto.Marshal(&pb.Signed{Body: body, Signature: sig})
		return b
	}
	var otherRun runspec.ID
	otherRun[0] = 1
	const reject, ignore, dropped = "reject", "ignore", "dropped"
	attacks := []struct {
		name string
		want string
		raw  func(k crypto.PrivKey) []byte
	}{
		{"garbage", reject, func(crypto.PrivKey) []byte { return []byte("\x08\x96\x01 not a message") }},
		{"empty", reject, func(crypto.PrivKey) []byte { return nil }},
		{"forged signature", reject, forged},
		{"wrong run", reject, func(k crypto.PrivKey) []byte { return signedBy(k, otherRun, upd(10, payload)) }},
		{"relayed sender", reject, func(crypto.PrivKey) []byte { return signedBy(newKey(t), run, upd(10, payload)) }},
		{"malformed payload", reject, func(k crypto.PrivKey) []byte { return signedBy(k, run, upd(10, []byte{1, 2, 3})) }},
		{"truncated", reject, func(k crypto.PrivKey) []byte { return signedBy(k, run, upd(10, payload))[:40] }},
		{"stale round", ignore, func(k crypto.PrivKey) []byte { return signedBy(k, run, upd(3, payload)) }},
		// Larger than the run's message limit: gossipsub drops the RPC
		// before any validator runs.
		{"oversize", dropped, func(k crypto.PrivKey) []byte { return signedBy(k, run, upd(10, bytes.Repeat([]byte{7}, 200<<10))) }},
	}
	for _, a := range attacks {
		f := newFake()
		before := node.Stats()
		if err := f.topic.Publish(ctx, a.raw(f.key)); err != nil {
			t.Fatalf("%s: fake publish: %v", a.name, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := node.Stats()
			got := dropped
			switch {
			case st.Rejected > before.Rejected:
				got = reject
			case st.Ignored > before.Ignored:
				got = ignore
			}
			if got == a.want && (got != dropped || time.Now().After(deadline.Add(-4500*time.Millisecond))) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: verdict %s, want %s", a.name, got, a.want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// An honest peer's message after the attacks must still arrive. (The
	// fake peer's own valid messages may not: its invalid ones cost it
	// score, and gossipsub graylists it.)
	honestKey := newKey(t)
	honest, err := New(ctx, Config{Key: honestKey, Spec: spec}, stubServer{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer honest.Close()
	if _, err := honest.Connect(ctx, node.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(honest.topic.ListPeers()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("honest peer never joined the node's topic")
		}
		time.Sleep(20 * time.Millisecond)
	}
	valid := signedBy(honestKey, run, trainer.Outbound{Hello: &trainer.HelloMsg{Round: 10}})
	if err := honest.Publish(ctx, valid); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-node.Messages():
		if got.Hello == nil || got.Round != 10 {
			t.Fatalf("delivered %+v, want the valid hello", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the valid message was not delivered after the attacks")
	}
	select {
	case got := <-node.Messages():
		t.Fatalf("an attack message was delivered: %+v", got.LogValue())
	case <-time.After(300 * time.Millisecond):
	}
	t.Logf("after %d attacks: %+v", len(attacks), node.Stats())
}

func TestVerifyRejects(t *testing.T) {
	spec := testSpec(t)
	run := spec.RunID()
	k := newKey(t)
	good, err := Sign(k, run, trainer.Outbound{Hello: &trainer.HelloMsg{Round: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(good, run, 1<<20); err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1
	for name, raw := range map[string][]byte{"flipped signature bit": flipped, "garbage": {0xff, 0xff}} {
		if _, err := Verify(raw, run, 1<<20); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := Verify(good, run, 10); err == nil {
		t.Error("oversize accepted")
	}
	var other runspec.ID
	if _, err := Verify(good, other, 1<<20); err == nil {
		t.Error("other run accepted")
	}
}

func FuzzVerify(f *testing.F) {
	spec := runspec.Default()
	run := spec.RunID()
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	for _, o := range []trainer.Outbound{
		{Hello: &trainer.HelloMsg{Round: 1}},
		{Commit: &trainer.CommitMsg{Round: 2, Updates: []trainer.Hash{{1}, {2}}}},
		{Update: &trainer.UpdateMsg{Round: 3, Payload: []byte{1, 2, 3}, Segments: []trainer.Hash{{1}}}},
		{Verdict: &trainer.VerdictMsg{Round: 3, Accused: "12D3KooWGRUVh8HRgx3jsD5Y8NK5zEhAqXHtgyM6n8Mbz1j7Bg4X", Reason: "x"}},
	} {
		b, _ := Sign(k, run, o)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Verify(raw, run, 1<<20)
		if err == nil && m.Update == nil && m.Commit == nil && m.Hello == nil && m.Verdict == nil {
			t.Fatal("verified a message with no body")
		}
	})
}
