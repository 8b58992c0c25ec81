package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"google.golang.org/protobuf/proto"
)

type stubServer struct{ spec runspec.Spec }

func (s stubServer) Spec() []byte                                 { return s.spec.Canonical() }
func (s stubServer) State(consensus.Hash) (consensus.State, bool) { return consensus.State{}, false }
func (s stubServer) Updates(ids []consensus.Hash) [][]byte        { return nil }
func (s stubServer) Proof(uint64) *consensus.Proof                { return &consensus.Proof{} }
func (s stubServer) Blob(BlobRequest) (*trainer.Snapshot, bool)   { return nil, false }
func (s stubServer) Evidence(uint64, consensus.Hash, []int) (trainer.Evidence, error) {
	return trainer.Evidence{}, errors.New("no evidence held")
}
func (s stubServer) Answer(uint64, consensus.Hash, int) (*consensus.Answer, error) {
	return nil, errors.New("no evidence held")
}

func testSpec(t testing.TB) runspec.Spec {
	s := runspec.Default()
	s.Model = runspec.Model{Kind: "logreg"}
	s.Data.Source = "synthetic"
	s.Rounds.MaxMessage = 64 << 10
	s = s.WithFounders("12D3KooWGRUVh8HRgx3jsD5Y8NK5zEhAqXHtgyM6n8Mbz1j7Bg4X")
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func newKey(t testing.TB) crypto.PrivKey {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startTransport starts a transport for a test, closed when the test ends.
func startTransport(ctx context.Context, t testing.TB, cfg Config, srv Server) *Transport {
	t.Helper()
	tr, err := New(ctx, cfg, srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func pidOf(k crypto.PrivKey) consensus.PeerID {
	id, _ := peer.IDFromPrivateKey(k)
	return consensus.PeerID(id.String())
}

// signedUpdate is an update of round by k's peer, signed and framed.
func signedUpdate(t testing.TB, k crypto.PrivKey, run runspec.ID, round uint64, payload []byte) []byte {
	t.Helper()
	u := &consensus.Update{Round: round, From: pidOf(k), Payload: payload, Samples: 1}
	u.Sig = Signer(k)(consensus.UpdateSignBytes(run, u))
	b, err := Encode(k, run, consensus.Message{Update: u})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// outcomes collects pubsub's validation outcomes by message data, so that
// a test waits on the event it expects instead of on a clock.
type outcomes struct {
	pubsub.RawTracer
	mu   sync.Mutex
	seen map[string]string // message data → "reject", "ignore" or "deliver"
	log  []string
	ch   chan struct{}
}

func newOutcomes() *outcomes {
	return &outcomes{seen: map[string]string{}, ch: make(chan struct{}, 1024)}
}

func (o *outcomes) note(msg *pubsub.Message, what string) {
	o.mu.Lock()
	o.seen[string(msg.Data)] = what
	o.mu.Unlock()
	select {
	case o.ch <- struct{}{}:
	default:
	}
}

func (o *outcomes) RejectMessage(msg *pubsub.Message, reason string) {
	if reason == pubsub.RejectValidationIgnored {
		o.note(msg, "ignore")
	} else {
		o.note(msg, "reject")
	}
}
func (o *outcomes) DeliverMessage(msg *pubsub.Message) { o.note(msg, "deliver") }
func (o *outcomes) AddPeer(peer.ID, protocol.ID)       {}
func (o *outcomes) RemovePeer(peer.ID)                 {}
func (o *outcomes) Join(string)                        {}
func (o *outcomes) Leave(string)                       {}
func (o *outcomes) Graft(peer.ID, string)              {}
func (o *outcomes) Prune(peer.ID, string)              {}
func (o *outcomes) ValidateMessage(*pubsub.Message)    {}
func (o *outcomes) DuplicateMessage(m *pubsub.Message) { o.event("duplicate") }
func (o *outcomes) ThrottlePeer(p peer.ID)             { o.event("throttled " + p.ShortString()) }
func (o *outcomes) RecvRPC(r *pubsub.RPC) {
	o.event(fmt.Sprintf("rpc: %d messages", len(r.GetPublish())))
}
func (o *outcomes) SendRPC(*pubsub.RPC, peer.ID)         {}
func (o *outcomes) DropRPC(*pubsub.RPC, peer.ID)         {}
func (o *outcomes) UndeliverableMessage(*pubsub.Message) {}

func (o *outcomes) event(e string) {
	o.mu.Lock()
	o.log = append(o.log, e)
	o.mu.Unlock()
}

// noTrace is a RawTracer that ignores everything.
type noTrace struct{}

func (noTrace) AddPeer(peer.ID, protocol.ID)          {}
func (noTrace) RemovePeer(peer.ID)                    {}
func (noTrace) Join(string)                           {}
func (noTrace) Leave(string)                          {}
func (noTrace) Graft(peer.ID, string)                 {}
func (noTrace) Prune(peer.ID, string)                 {}
func (noTrace) ValidateMessage(*pubsub.Message)       {}
func (noTrace) DeliverMessage(*pubsub.Message)        {}
func (noTrace) RejectMessage(*pubsub.Message, string) {}
func (noTrace) DuplicateMessage(*pubsub.Message)      {}
func (noTrace) ThrottlePeer(peer.ID)                  {}
func (noTrace) RecvRPC(*pubsub.RPC)                   {}
func (noTrace) SendRPC(*pubsub.RPC, peer.ID)          {}
func (noTrace) DropRPC(*pubsub.RPC, peer.ID)          {}
func (noTrace) UndeliverableMessage(*pubsub.Message)  {}

// peerAdded closes ch when the router adds peer want.
type peerAdded struct {
	noTrace
	want peer.ID
	ch   chan struct{}
	once sync.Once
}

func (a *peerAdded) AddPeer(p peer.ID, _ protocol.ID) {
	if p == a.want {
		a.once.Do(func() { close(a.ch) })
	}
}

// wait returns the outcome of the message with data raw once there is one.
func (o *outcomes) wait(t *testing.T, what string, raw []byte, limit time.Duration) string {
	t.Helper()
	deadline := time.After(limit)
	for {
		o.mu.Lock()
		got, ok := o.seen[string(raw)]
		o.mu.Unlock()
		if ok {
			return got
		}
		select {
		case <-o.ch:
		case <-deadline:
			o.mu.Lock()
			t.Fatalf("%s: no validation outcome within %v; events %v", what, limit, o.log[max(0, len(o.log)-12):])
		}
	}
}

// TestFakePeerRawBytes: fake peers speak raw bytes to a real node's
// gossipsub router. Every malformed, forged, wrong-run or junk message is
// rejected (or, if the protocol says so, ignored) by the validator before
// it could be forwarded, an envelope signed by pubsub (the node's peers
// send them unsigned) is rejected before it, and an oversize RPC is
// dropped before any validator runs; the node neither crashes nor stops
// accepting valid messages. An author's message that another peer
// publishes is the author's message: delivered, and the author's own copy
// is its duplicate. Every verdict is awaited as an event.
func TestFakePeerRawBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	run := spec.RunID()
	tr := newOutcomes()
	var judgedMu sync.Mutex
	var judged []string
	judge := func(m *Msg) consensus.Decision {
		judgedMu.Lock()
		judged = append(judged, m.Kind())
		judgedMu.Unlock()
		if m.Round < 10 {
			return consensus.Decision{Verdict: consensus.Ignore, Reason: "stale"}
		}
		if m.Join != nil && m.Round == 10 {
			return consensus.Decision{Verdict: consensus.Reject, Reason: "made-up invalid message", Invalid: true}
		}
		if m.Join != nil {
			// Refused for what this node has seen: not forwarded, and
			// the relay is not penalised (pubsub sees Ignore).
			return consensus.Decision{Verdict: consensus.Reject, Reason: "made-up refusal"}
		}
		return consensus.Decision{Verdict: consensus.Accept}
	}
	node := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec, Judge: judge, Tracer: tr}, stubServer{spec})

	// A fake peer: a plain libp2p host with a permissive gossipsub, joined
	// to the node's topic. Each attack comes from a fresh one, since
	// gossipsub rightly graylists a peer after invalid messages.
	type fake struct {
		key   crypto.PrivKey
		topic *pubsub.Topic
	}
	newFake := func(policy pubsub.MessageSignaturePolicy) fake {
		k := newKey(t)
		fh, err := libp2p.New(libp2p.Identity(k), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fh.Close() })
		added := &peerAdded{want: node.ID(), ch: make(chan struct{})}
		fps, err := pubsub.NewGossipSub(ctx, fh, pubsub.WithMaxMessageSize(4<<20), pubsub.WithFloodPublish(true), pubsub.WithRawTracer(added),
			pubsub.WithMessageSignaturePolicy(policy), pubsub.WithMessageIdFn(msgID))
		if err != nil {
			t.Fatal(err)
		}
		ft, err := fps.Join(TopicName(run))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := ft.EventHandler()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ft.Subscribe(); err != nil {
			t.Fatal(err)
		}
		if err := fh.Connect(ctx, peer.AddrInfo{ID: node.ID(), Addrs: node.Host().Addrs()}); err != nil {
			t.Fatal(err)
		}
		for { // the node's subscription reaches the fake: an event, not a poll
			e, err := ev.NextPeerEvent(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if e.Type == pubsub.PeerJoin && e.Peer == node.ID() {
				break
			}
		}
		// and the fake's router has the node as a peer it can send to
		select {
		case <-added.ch:
		case <-ctx.Done():
			t.Fatal("the fake's router never added the node")
		}
		return fake{k, ft}
	}

	m, _ := spec.ModelSpec()
	enc, _ := compress.NewEncoder(spec.CompressParams(), m.NumParams())
	payload, _ := enc.Encode(make([]float32, m.NumParams()), nil)
	forged := func(fk crypto.PrivKey) []byte {
		// A body that names another peer as author, signed by the fake.
		other := newKey(t)
		u := &consensus.Update{Round: 10, From: pidOf(other), Payload: payload}
		raw := signedUpdate(t, other, run, 10, payload)
		var s pb.Signed
		proto.Unmarshal(raw, &s)
		s.Signature, _ = fk.Sign(consensus.UpdateSignBytes(run, u))
		b, _ := proto.Marshal(&s)
		return b
	}
	joinAt := func(round uint64) func(k crypto.PrivKey) []byte {
		return func(k crypto.PrivKey) []byte {
			j := &consensus.JoinRequest{Round: round, From: pidOf(k)}
			j.Sig = Signer(k)(consensus.JoinSignBytes(run, j))
			b, _ := Encode(k, run, consensus.Message{Join: j})
			return b
		}
	}
	var otherRun runspec.ID
	otherRun[0] = 1
	attacks := []struct {
		name   string
		want   string
		raw    func(k crypto.PrivKey) []byte
		policy pubsub.MessageSignaturePolicy // the fake's: unsigned envelopes unless said
	}{
		{"garbage", "reject", func(crypto.PrivKey) []byte { return []byte("\x08\x96\x01 not a message") }, 0},
		{"empty", "reject", func(crypto.PrivKey) []byte { return nil }, 0},
		{"forged signature", "reject", forged, 0},
		{"wrong run", "reject", func(k crypto.PrivKey) []byte { return signedUpdate(t, k, otherRun, 10, payload) }, 0},
		{"a valid message in an envelope pubsub signed", "reject", func(k crypto.PrivKey) []byte { return signedUpdate(t, k, run, 10, payload) }, pubsub.StrictSign},
		{"another author's message, relayed", "deliver", func(crypto.PrivKey) []byte { return signedUpdate(t, newKey(t), run, 10, payload) }, 0},
		{"malformed payload", "reject", func(k crypto.PrivKey) []byte { return signedUpdate(t, k, run, 10, []byte{1, 2, 3}) }, 0},
		{"truncated", "reject", func(k crypto.PrivKey) []byte { return signedUpdate(t, k, run, 10, payload)[:40] }, 0},
		{"stale round (the protocol ignores it)", "ignore", func(k crypto.PrivKey) []byte { return signedUpdate(t, k, run, 3, payload) }, 0},
		{"invalid to the protocol", "reject", joinAt(10), 0},
		{"refused by the protocol's state", "ignore", joinAt(11), 0},
	}
	for _, a := range attacks {
		policy := a.policy
		if policy == 0 {
			policy = pubsub.StrictNoSign
		}
		f := newFake(policy)
		raw := a.raw(f.key)
		if err := f.topic.Publish(ctx, raw); err != nil {
			t.Fatalf("%s: fake publish: %v", a.name, err)
		}
		if got := tr.wait(t, a.name, raw, 10*time.Second); got != a.want {
			t.Fatalf("%s: %s, want %s", a.name, got, a.want)
		}
	}
	// Larger than the run's message limit: the router drops the RPC
	// (resets the stream) before any validator runs. A fake writes the
	// length prefix on a raw gossipsub stream and sees the reset.
	fh, err := libp2p.New(libp2p.Identity(newKey(t)), libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := fh.Connect(ctx, peer.AddrInfo{ID: node.ID(), Addrs: node.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := fh.NewStream(ctx, node.ID(), pubsub.GossipSubID_v11)
	if err != nil {
		t.Fatal(err)
	}
	s.Write(binary.AppendUvarint(nil, uint64(spec.Rounds.MaxMessage)+1))
	s.Write(bytes.Repeat([]byte{7}, 1024))
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(s); err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) {
		t.Fatalf("oversize RPC: read %v, want the stream reset", err)
	}

	// An honest peer's message after the attacks is judged and delivered.
	honestKey := newKey(t)
	added := &peerAdded{want: node.ID(), ch: make(chan struct{})}
	honest := startTransport(ctx, t, Config{Key: honestKey, Spec: spec, Tracer: added}, stubServer{spec})
	ev, err := honest.topic.EventHandler()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := honest.Connect(ctx, node.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	for {
		e, err := ev.NextPeerEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == pubsub.PeerJoin && e.Peer == node.ID() {
			break
		}
	}
	select {
	case <-added.ch:
	case <-ctx.Done():
		t.Fatal("the honest peer's router never added the node")
	}
	valid := signedUpdate(t, honestKey, run, 10, payload)
	// A copy of it published first by another peer: envelopes name no
	// publisher, so the copy is the author's very message. It is judged
	// as the original and delivered (the ID of its bytes cannot shadow
	// the original with a refused copy), the author's own publication is
	// its duplicate, and the author pays nothing.
	copier := newFake(pubsub.StrictNoSign)
	if err := copier.topic.Publish(ctx, valid); err != nil {
		t.Fatal(err)
	}
	if got := tr.wait(t, "a copy published by another peer", valid, 10*time.Second); got != "deliver" {
		t.Fatalf("a copy published by another peer: %s, want deliver", got)
	}
	// The honest peer may have it from the node already (pubsub then
	// refuses to publish it again); if not, the node drops it as a
	// duplicate: either way it is not judged twice.
	_ = honest.Publish(ctx, "update", valid)
	next := signedUpdate(t, honestKey, run, 11, payload)
	if err := honest.Publish(ctx, "update", next); err != nil {
		t.Fatal(err)
	}
	if got := tr.wait(t, "the next valid update", next, 10*time.Second); got != "deliver" {
		t.Fatalf("the honest peer's next update after the attacks: %s", got)
	}
	judgedMu.Lock()
	defer judgedMu.Unlock()
	// Only what passed decoding, signatures and the payload check reached
	// the protocol: the relayed update, the stale update, the two joins,
	// the copied update (once: the author's own copy was its duplicate)
	// and the next one.
	if want := []string{"update", "update", "join", "join", "update", "update"}; !slices.Equal(judged, want) {
		t.Fatalf("judged %v, want %v", judged, want)
	}
	if node.Penalty(peer.ID(pidFromString(t, pidOf(honestKey)))) != 0 {
		t.Fatal("the honest peer carries a penalty")
	}
	tr.mu.Lock()
	t.Logf("after %d attacks: %+v; %d tracer events", len(attacks)+1, node.Stats(), len(tr.log))
	tr.mu.Unlock()
}

func pidFromString(t *testing.T, p consensus.PeerID) peer.ID {
	id, err := peer.Decode(string(p))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestJunkCostsTheSender: junk the protocol flags (here: every message)
// costs its author score; a flooder goes below the graylist threshold and
// pubsub stops accepting its messages, while its debt decays.
func TestJunkCostsTheSender(t *testing.T) {
	var ps penalties
	ps.by = map[peer.ID]*penalty{}
	id := peer.ID("flooder")
	for range 99 {
		ps.add(id, junkPenalty)
	}
	if s := ps.score(id); s > -900 || s < -1000 {
		t.Fatalf("99 junk messages: score %v", s)
	}
	for range 2 {
		ps.add(id, junkPenalty)
	}
	if s := ps.score(id); s > -1000 {
		t.Fatalf("101 junk messages: score %v, want below the graylist threshold", s)
	}
	ps.by[id].at = ps.by[id].at.Add(-10 * penaltyHalfLife)
	if s := ps.score(id); s < -1.1 {
		t.Fatalf("after ten half-lives: score %v", s)
	}
	if ps.score("honest") != 0 {
		t.Fatal("a peer with no junk has a penalty")
	}
}

func TestVerifyRejects(t *testing.T) {
	spec := testSpec(t)
	run := spec.RunID()
	k := newKey(t)
	good := signedUpdate(t, k, run, 1, []byte{1})
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
	for _, m := range sampleMessages(f, k, run) {
		b, err := Encode(k, run, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Verify(raw, run, 1<<20)
		if err == nil && m.Head == nil && m.Message.Kind() == "empty" {
			t.Fatal("verified a message with no body")
		}
	})
}

// sampleMessages is one signed message of every kind, by k's peer.
func sampleMessages(t testing.TB, k crypto.PrivKey, run runspec.ID) []consensus.Message {
	t.Helper()
	sign := Signer(k)
	self := pidOf(k)
	other := pidOf(newKey(t))
	u := &consensus.Update{Round: 4, Base: consensus.Hash{1}, From: self, Samples: 64, Loss: 0.5,
		Payload: []byte{1, 2}, Seed: 77, Segments: []consensus.Hash{{2}, {3}}, ResidualIn: consensus.Hash{4}, ResidualOut: consensus.Hash{5}}
	u.Sig = sign(consensus.UpdateSignBytes(run, u))
	vote := func(kind consensus.VoteKind, id consensus.Hash) consensus.Vote {
		v := consensus.Vote{Kind: kind, Round: 4, View: 2, Value: id, ValidView: -1, From: self}
		v.Sig = sign(consensus.VoteSignBytes(run, &v))
		return v
	}
	x := consensus.VerdictMsg{Round: 3, Update: consensus.Hash{8}, Accused: other, Segment: 5, From: self, Reason: "challenge failed: x"}
	x.Sig = sign(consensus.VerdictSignBytes(run, &x))
	j := consensus.JoinRequest{Round: 4, From: other, Sig: []byte("a joiner's signature")}
	val := &consensus.Value{Round: 4, Base: consensus.Hash{1}, Voters: consensus.Hash{2}, Next: consensus.Hash{3}, NextVoters: consensus.Hash{4},
		Updates:  []consensus.UpdateRef{{ID: u.ID(run), From: self, Newcomer: true}},
		Admit:    []consensus.JoinRequest{j},
		Verdicts: []consensus.VerdictMsg{x},
		Evidence: []consensus.Equivocation{{A: vote(consensus.KindPrevote, consensus.Hash{5}), B: vote(consensus.KindPrevote, consensus.Hash{})}}}
	prop := &consensus.Proposal{Vote: consensus.Vote{Kind: consensus.KindProposal, Round: 4, View: 3, Value: val.ID(run), ValidView: 1, From: self}, Value: val,
		POL: []consensus.Signature{{From: self, Sig: []byte("pol")}}}
	prop.Vote.Sig = sign(consensus.VoteSignBytes(run, &prop.Vote))
	pv := vote(consensus.KindPrecommit, val.ID(run))
	commit := &consensus.Commit{Value: val, Cert: consensus.Certificate{Round: 4, View: 2, Value: val.ID(run), Sigs: []consensus.Signature{{From: self, Sig: pv.Sig}}}}
	own := consensus.JoinRequest{Round: 4, From: self}
	own.Sig = sign(consensus.JoinSignBytes(run, &own))
	nilVote := vote(consensus.KindPrevote, consensus.Hash{})
	return []consensus.Message{
		{Update: u}, {Proposal: prop}, {Vote: &pv}, {Vote: &nilVote}, {Commit: commit}, {Join: &own}, {Verdict: &x},
		{Evidence: &val.Evidence[0]},
	}
}

func describe(m consensus.Message) string { return fmt.Sprintf("%s of round %d", m.Kind(), m.Round()) }

// grafted closes ch when the router grafts want into its mesh.
type grafted struct {
	noTrace
	want peer.ID
	ch   chan struct{}
	once sync.Once
}

func (g *grafted) Graft(p peer.ID, _ string) {
	if p == g.want {
		g.once.Do(func() { close(g.ch) })
	}
}

// TestRelayNotBlamedForRefusal: an author A reaches node N only through an
// honest relay R. The messages N refuses for what it has seen (the second
// half of an equivocation, a word from a peer N knows is excluded) look
// valid to R, which forwards them in good faith: N must charge their author,
// not R. Were R charged as for invalid messages, a misbehaving member could
// make honest nodes cut each other off by sending different nodes different
// versions of its vote; here, after 30 such messages, R's own message
// still reaches N.
func TestRelayNotBlamedForRefusal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	run := spec.RunID()
	tr := newOutcomes()
	refuse := func(m *Msg) consensus.Decision {
		if m.Join != nil {
			return consensus.Decision{Verdict: consensus.Reject, Reason: "refused: the author is excluded here"}
		}
		return consensus.Decision{Verdict: consensus.Accept}
	}
	accept := func(*Msg) consensus.Decision { return consensus.Decision{Verdict: consensus.Accept} }
	n := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec, Judge: refuse, Tracer: tr}, stubServer{spec})
	rKey := newKey(t)
	rIn := &grafted{want: n.ID(), ch: make(chan struct{})}
	r := startTransport(ctx, t, Config{Key: rKey, Spec: spec, Judge: accept, Tracer: rIn}, stubServer{spec})
	aKey := newKey(t)
	aIn := &grafted{want: r.ID(), ch: make(chan struct{})}
	a := startTransport(ctx, t, Config{Key: aKey, Spec: spec, Tracer: aIn}, stubServer{spec})
	if _, err := r.Connect(ctx, n.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Connect(ctx, r.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*grafted{rIn, aIn} {
		select {
		case <-g.ch:
		case <-ctx.Done():
			t.Fatal("the mesh did not form")
		}
	}
	for i := range 30 {
		j := &consensus.JoinRequest{Round: uint64(10 + i), From: pidOf(aKey)}
		j.Sig = Signer(aKey)(consensus.JoinSignBytes(run, j))
		raw, err := Encode(aKey, run, consensus.Message{Join: j})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Publish(ctx, "join", raw); err != nil {
			t.Fatal(err)
		}
		if got := tr.wait(t, fmt.Sprintf("refusal %d", i), raw, 10*time.Second); got != "ignore" {
			t.Fatalf("refusal %d: pubsub saw %s, want ignore (not forwarded, relay not blamed)", i, got)
		}
	}
	m, _ := spec.ModelSpec()
	enc, _ := compress.NewEncoder(spec.CompressParams(), m.NumParams())
	payload, _ := enc.Encode(make([]float32, m.NumParams()), nil)
	own := signedUpdate(t, rKey, run, 10, payload)
	if err := r.Publish(ctx, "update", own); err != nil {
		t.Fatal(err)
	}
	if got := tr.wait(t, "the relay's own update", own, 10*time.Second); got != "deliver" {
		t.Fatalf("the relay's own update after the refusals: %s", got)
	}
	if p := n.Penalty(r.ID()); p != 0 {
		t.Fatalf("the relay carries a penalty of %v", p)
	}
	if p := n.Penalty(a.ID()); p < 30*rejectPenalty*0.9 {
		t.Fatalf("the author's penalty is %v, want about %v", p, 30*rejectPenalty)
	}
}
