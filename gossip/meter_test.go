package gossip

import (
	"context"
	"testing"
	"time"

	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/verify/ledger"
)

// TestTrafficCategories: each kind of message lands in its category, own
// messages apart from relays, duplicates moved out of their kind, and
// everything an RPC carries besides messages counted as control, so that
// the categories add up to the RPC's bytes on the stream.
func TestTrafficCategories(t *testing.T) {
	spec := testSpec(t)
	run := spec.RunID()
	me, other := newKey(t), newKey(t)
	meID, _ := peer.IDFromPrivateKey(me)
	enc := func(m consensus.Message) []byte {
		b, err := Encode(me, run, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	head, err := SignHead(me, run, ledger.SignedTreeHead{TreeHead: ledger.TreeHead{Run: ledger.Hash(run), Size: 3}, Signer: meID.String(), Sig: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		BytesUpdates:   signedUpdate(t, me, run, 1, []byte{1, 2, 3}),
		BytesConsensus: enc(consensus.Message{Vote: &consensus.Vote{Kind: consensus.KindPrevote, Round: 1, From: pidOf(me), Sig: []byte{1}}}),
		BytesVerdicts:  enc(consensus.Message{Verdict: &consensus.VerdictMsg{Round: 1, Accused: pidOf(other), From: pidOf(me), Sig: []byte{1}}}),
		BytesHeads:     head,
		BytesControl:   []byte("not a vtrain message"),
	}
	for want, data := range cases {
		if got := kindCategory(data); got != want {
			t.Errorf("%s message counted as %s", want, got)
		}
	}
	m := newMeter(meID)
	// Envelopes are unsigned (StrictNoSign): a message is the node's own
	// when its body names the node as sender.
	vote, err := Encode(other, run, consensus.Message{Vote: &consensus.Vote{Kind: consensus.KindPrevote, Round: 1, From: pidOf(other), Sig: []byte{1}}})
	if err != nil {
		t.Fatal(err)
	}
	own := &pubsubpb.Message{Data: cases[BytesUpdates]}
	relay := &pubsubpb.Message{Data: vote}
	rpc := &pubsubpb.RPC{Publish: []*pubsubpb.Message{own, relay},
		Control: &pubsubpb.ControlMessage{Ihave: []*pubsubpb.ControlIHave{{MessageIDs: []string{"a", "b"}}}}}
	m.rpc(rpc, true)
	m.rpc(rpc, false)
	tr := m.read()
	if tr.Out[BytesUpdates] != uint64(own.Size()) || tr.Out[BytesRelays] != uint64(relay.Size()) || tr.Out[BytesConsensus] != 0 {
		t.Fatalf("out %v: want the own update and a relay", tr.Out)
	}
	if tr.In[BytesUpdates] != uint64(own.Size()) || tr.In[BytesConsensus] != uint64(relay.Size()) {
		t.Fatalf("in %v: want each message by kind", tr.In)
	}
	onStream := rpc.Size() + 2 // and its length prefix
	if int(tr.TotalOut()) != onStream || int(tr.TotalIn()) != onStream {
		t.Fatalf("categories add up to %d out, %d in; the RPC is %d bytes", tr.TotalOut(), tr.TotalIn(), onStream)
	}
}

// TestTrafficOfSync: both ends of a challenge's evidence fetch count the
// same bytes, as evidence, and they are the evidence's size and a little
// framing: a few kilobytes for the openings, the model's size more for a
// final state (runs with a tolerance).
func TestTrafficOfSync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	m, _ := spec.ModelSpec()
	d := m.NumParams()
	blocks := []int{1, 2, 5, 8}
	ev := evidenceOf(t, spec, blocks)
	a := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, evidenceServer{stubServer{spec}, ev})
	b := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	if _, err := b.Connect(ctx, a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FetchEvidence(ctx, a.ID(), 2, consensus.Hash{9}, blocks); err != nil {
		t.Fatal(err)
	}
	// The server counts a stream when its handler returns, which may be
	// after the client has read the whole answer.
	sa, sb := a.Stats().Traffic, b.Stats().Traffic
	for end := time.Now().Add(10 * time.Second); sa.Out[BytesEvidence] < sb.In[BytesEvidence] && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		sa = a.Stats().Traffic
	}
	if sa.Out[BytesEvidence] != sb.In[BytesEvidence] || sa.In[BytesEvidence] != sb.Out[BytesEvidence] {
		t.Fatalf("server out %d in %d, client in %d out %d", sa.Out[BytesEvidence], sa.In[BytesEvidence], sb.In[BytesEvidence], sb.Out[BytesEvidence])
	}
	// The final state's parameters (4d) and the openings: 4 values and two
	// paths of 32-byte hashes per block.
	var want int
	for _, op := range ev.Openings {
		want += 4*len(op.In) + 32*(len(op.InPath)+len(op.OutPath))
	}
	if n := sb.In[BytesEvidence]; n < uint64(4*d+want) || n > uint64(4*d+want+1024) {
		t.Fatalf("evidence of a %d-value state and %d bytes of openings counted as %d bytes", d, want, n)
	}
	// The wire totals hold those bytes at once, not a sweep of libp2p's
	// meters later: a node that ends right after a transfer reports them.
	if st := b.Stats(); st.WireIn < int64(sb.In[BytesEvidence]) || st.Traffic.TotalIn() != uint64(st.WireIn) {
		t.Fatalf("wire in %d B right after the fetch; the categories count %d B, %d B of it evidence", st.WireIn, st.Traffic.TotalIn(), sb.In[BytesEvidence])
	}
}
