package gossip

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"google.golang.org/protobuf/proto"
)

// TestWireRoundTrip: every kind of protocol message survives framing and
// verification unchanged, signatures included.
func TestWireRoundTrip(t *testing.T) {
	spec := testSpec(t)
	run := spec.RunID()
	k := newKey(t)
	for _, m := range sampleMessages(t, k, run) {
		raw, err := Encode(k, run, m)
		if err != nil {
			t.Fatalf("%s: %v", describe(m), err)
		}
		got, err := Verify(raw, run, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", describe(m), err)
		}
		if !reflect.DeepEqual(got.Message, m) {
			t.Errorf("%s: got %+v, want %+v", describe(m), got.Message, m)
		}
		if got.Round != m.Round() {
			t.Errorf("%s: round %d", describe(m), got.Round)
		}
	}
}

// TestWireNamesPeersPlainly: a message with a spoilt signature is refused with
// an error that names its sender as the CLI prints peers, without Go's
// "<peer.ID …>" (a rough edge users saw).
func TestWireNamesPeersPlainly(t *testing.T) {
	spec := testSpec(t)
	k := newKey(t)
	raw, err := Encode(k, spec.RunID(), sampleMessages(t, k, spec.RunID())[0])
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1 // the signature's last byte
	_, err = Verify(raw, spec.RunID(), 1<<20)
	id, _ := peer.IDFromPrivateKey(k)
	if err == nil || strings.Contains(err.Error(), "<peer.ID") || !strings.Contains(err.Error(), ShortID(id)) {
		t.Fatalf("error %v; want it to name %s plainly", err, ShortID(id))
	}
}

// TestSyncServesCertifiedState: a peer serves a state with its membership,
// a proof, and updates over a real stream; the client checks the state's
// hash and refuses one that does not match.
func TestSyncServesCertifiedState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	run := spec.RunID()
	k := newKey(t)
	g, err := consensus.Genesis(spec)
	if err != nil {
		t.Fatal(err)
	}
	g.Round = 3
	g.Members.List = append(g.Members.List, consensus.Member{ID: pidOf(k), Since: 2, Work: 1, Last: 2})
	slices.SortFunc(g.Members.List, func(a, b consensus.Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	g.Members.Excluded = []consensus.PeerID{pidOf(newKey(t))}
	msgs := sampleMessages(t, k, run)
	raw, _ := Encode(k, run, msgs[0])
	srv := &syncServer{stubServer: stubServer{spec}, st: g, upd: raw, id: msgs[0].Update.ID(run),
		proof: &consensus.Proof{Links: []consensus.Link{{Commit: *msgs[4].Commit, NextVoters: []consensus.PeerID{pidOf(k)}}}}}
	a := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, srv)
	b := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	if _, err := b.Connect(ctx, a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	st, err := b.FetchState(ctx, a.ID(), g.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, g) {
		t.Fatalf("state changed on the way: %+v", st.Members)
	}
	if _, err := b.FetchState(ctx, a.ID(), consensus.Hash{1}); !errors.Is(err, ErrRefused) {
		t.Fatalf("a state not held: %v", err)
	}
	srv.lie = true
	if _, err := b.FetchState(ctx, a.ID(), g.Hash()); err == nil || errors.Is(err, ErrRefused) {
		t.Fatalf("a state that does not hash to the request: %v", err)
	}
	p, err := b.FetchProof(ctx, a.ID(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, srv.proof) {
		t.Fatalf("proof changed on the way")
	}
	us, err := b.FetchUpdates(ctx, a.ID(), 4, []consensus.Hash{srv.id})
	if err != nil || len(us) != 1 || !reflect.DeepEqual(us[0].Update, msgs[0].Update) {
		t.Fatalf("updates: %v %v", us, err)
	}
}

type syncServer struct {
	stubServer
	st    consensus.State
	lie   bool
	upd   []byte
	id    consensus.Hash
	proof *consensus.Proof
}

func (s *syncServer) State(h consensus.Hash) (consensus.State, bool) {
	if h != s.st.Hash() {
		return consensus.State{}, false
	}
	if s.lie {
		st := s.st.Clone()
		st.Theta[0]++
		return st, true
	}
	return s.st, true
}

func (s *syncServer) Proof(uint64) *consensus.Proof { return s.proof }
func (s *syncServer) Blob(BlobRequest) (*trainer.Snapshot, bool) {
	return nil, false
}

func (s *syncServer) Updates(ids []consensus.Hash) [][]byte {
	if len(ids) == 1 && ids[0] == s.id {
		return [][]byte{s.upd}
	}
	return nil
}

type evidenceServer struct {
	stubServer
	ev trainer.Evidence
}

func (s evidenceServer) Evidence(round uint64, id consensus.Hash, blocks []int) (trainer.Evidence, error) {
	if round != 2 || id != (consensus.Hash{9}) || len(blocks) != len(s.ev.Openings) {
		return trainer.Evidence{}, errors.New("no such update")
	}
	return s.ev, nil
}

// evidenceOf is what a challenged peer of a spec's model answers: its
// residual opened on blocks (the last one shorter), and in runs with a
// tolerance its light final state.
func evidenceOf(t *testing.T, spec runspec.Spec, blocks []int) trainer.Evidence {
	t.Helper()
	m, _ := spec.ModelSpec()
	d := m.NumParams()
	vec := func(x float32) []float32 {
		v := make([]float32, d)
		for i := range v {
			v[i] = x + float32(i)
		}
		return v
	}
	ops, err := trainer.Open(spec, vec(7), vec(8), blocks)
	if err != nil {
		t.Fatal(err)
	}
	// The final state goes light: its parameters and the buffers' digest.
	fin := (&trainer.Snapshot{Step: 20, Params: vec(4), Opt: map[string][]float32{"m": vec(5), "v": vec(6)}, OptSteps: 20}).Light()
	return trainer.Evidence{Final: &fin, Openings: ops}
}

// TestFetchEvidence: a challenger fetches the evidence behind an update
// over a real libp2p stream; a peer that holds none refuses, which the
// challenger can tell from a peer it cannot reach; asking more blocks
// than the run opens is refused.
func TestFetchEvidence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	m, _ := spec.ModelSpec()
	last := trainer.ResidualBlocks(spec, m.NumParams()) - 1
	blocks := []int{0, 3, last}
	ev := evidenceOf(t, spec, blocks)
	a := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, evidenceServer{stubServer{spec}, ev})
	b := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	if _, err := b.Connect(ctx, a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	got, err := b.FetchEvidence(ctx, a.ID(), 2, consensus.Hash{9}, blocks)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatal("evidence changed on the way")
	}
	if _, err := b.FetchEvidence(ctx, a.ID(), 2, consensus.Hash{8}, blocks); !errors.Is(err, ErrRefused) {
		t.Fatalf("an update the peer does not hold: %v, want a refusal", err)
	}
	if _, err := b.FetchEvidence(ctx, a.ID(), 2, consensus.Hash{9}, make([]int, spec.Verify.Openings+1)); !errors.Is(err, ErrRefused) {
		t.Fatalf("more blocks than the run opens: %v, want a refusal", err)
	}
	if _, err := a.FetchEvidence(ctx, b.ID(), 2, consensus.Hash{9}, blocks); !errors.Is(err, ErrRefused) {
		t.Fatalf("a peer without evidence: %v, want a refusal", err)
	}
}

// TestDiscover: peers that joined through one peer meet each other.
func TestDiscover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	var ts []*Transport
	for range 3 {
		tr := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
		ts = append(ts, tr)
	}
	// A peer is listed once the libp2p identify exchange has told the
	// lister that it runs vtrain's sync protocol, a moment after it
	// connects: wait for that event at the lister, for both.
	sub, err := ts[0].Host().EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for _, tr := range ts[1:] {
		if _, err := tr.Connect(ctx, ts[0].Addrs()[0]); err != nil {
			t.Fatal(err)
		}
	}
	for left := map[peer.ID]bool{ts[1].ID(): true, ts[2].ID(): true}; len(left) > 0; {
		select {
		case e := <-sub.Out():
			delete(left, e.(event.EvtPeerIdentificationCompleted).Peer)
		case <-ctx.Done():
			t.Fatal("identify never completed")
		}
	}
	if ts[1].Host().Network().Connectedness(ts[2].ID()) == network.Connected {
		t.Fatal("connected before discovery")
	}
	if n := ts[1].Discover(ctx); n != 1 || ts[1].Host().Network().Connectedness(ts[2].ID()) != network.Connected {
		t.Fatalf("Discover connected %d peers; the two peers that joined through a third are not connected", n)
	}
}

// statesServer serves a set of agreed states by hash.
type statesServer struct {
	stubServer
	states []consensus.State
}

func (s statesServer) State(h consensus.Hash) (consensus.State, bool) {
	for _, st := range s.states {
		if st.Hash() == h {
			return st, true
		}
	}
	return consensus.State{}, false
}

// TestStateSyncDelta: a node that holds an earlier agreed state receives
// the new one as a delta against it (the bit patterns XOR the old, zstd),
// a fraction of the full transfer, and ends on the same state; one that
// offers nothing the server holds gets the whole state. A delta against a
// base the asker did not offer, or one that does not decode to the model's
// size (or would inflate past it), is refused.
func TestStateSyncDelta(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	old, err := consensus.Genesis(spec)
	if err != nil {
		t.Fatal(err)
	}
	d := len(old.Theta)
	r := prng.New(5)
	for i := range old.Momentum {
		old.Momentum[i] = float32(r.Norm() * 1e-3)
	}
	// A few outer steps later: the momentum decayed everywhere (by a power
	// of two: its mantissas stay), sparse updates moved 2% of the
	// parameters, and the momentum moved all of them a little (their low
	// mantissa bits change: what the delta cannot save).
	next := old.Clone()
	next.Round = old.Round + 3
	for i := range next.Theta {
		next.Momentum[i] *= 0.125
		if r.Intn(50) == 0 {
			next.Theta[i] -= float32(r.Norm() * 1e-2)
		}
		next.Theta[i] -= next.Momentum[i]
	}
	a := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, statesServer{stubServer{spec}, []consensus.State{old, next}})
	b := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	if _, err := b.Connect(ctx, a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	in := func() uint64 { return b.Stats().Traffic.In[BytesStateSync] }
	before := in()
	got, err := b.FetchState(ctx, a.ID(), next.Hash(), old)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash() != next.Hash() || !slices.Equal(got.Theta, next.Theta) || !slices.Equal(got.Momentum, next.Momentum) {
		t.Fatal("the state sent as a delta changed on the way")
	}
	delta := in() - before
	before = in()
	stranger := old.Clone()
	stranger.Theta[0]++
	if got, err = b.FetchState(ctx, a.ID(), next.Hash(), stranger); err != nil || got.Hash() != next.Hash() {
		t.Fatalf("the whole state: %v", err)
	}
	full := in() - before
	if full < uint64(8*d) || delta > full*7/10 {
		t.Fatalf("a delta of %d bytes against the whole state's %d (%d parameters)", delta, full, d)
	}
	t.Logf("state of %d parameters: %d bytes whole, %d as a delta", d, full, delta)

	x, err := StateDeltaPB(&next, &old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StateFromDeltaPB(x, d, []consensus.State{stranger}); !errors.Is(err, ErrWire) {
		t.Errorf("a delta against a base not offered: %v", err)
	}
	bad := proto.Clone(x).(*pb.State)
	bad.Theta = []byte("not zstd")
	if _, err := StateFromDeltaPB(bad, d, []consensus.State{old}); !errors.Is(err, ErrWire) {
		t.Errorf("a delta that does not decode: %v", err)
	}
	bad.Theta = deltaEncoder().EncodeAll(make([]byte, 64*d), nil) // a bomb: 16 times the model
	if _, err := StateFromDeltaPB(bad, d, []consensus.State{old}); !errors.Is(err, ErrWire) {
		t.Errorf("a delta that inflates past the model: %v", err)
	}
	bad.Theta = deltaEncoder().EncodeAll(make([]byte, 4*d-4), nil)
	if _, err := StateFromDeltaPB(bad, d, []consensus.State{old}); !errors.Is(err, ErrWire) {
		t.Errorf("a delta one value short: %v", err)
	}
}

// TestMembersRoundTrip: a membership crosses the wire (states, checkpoints)
// with every field a member's digest covers, a private member's gate
// included, and a malformed gate is refused.
func TestMembersRoundTrip(t *testing.T) {
	a, b, x := pidOf(newKey(t)), pidOf(newKey(t)), pidOf(newKey(t))
	ms := consensus.Members{List: []consensus.Member{
		{ID: a, Founder: true, Seat: true, Work: 7, Last: 9, Residual: consensus.Hash{1}, Pace: 1500},
		{ID: b, Since: 3, Work: 2, Last: 8, Pace: 4800, Unproven: consensus.Hash{2, 3}},
	}, Excluded: []consensus.PeerID{x}}
	slices.SortFunc(ms.List, func(p, q consensus.Member) int { return strings.Compare(string(p.ID), string(q.ID)) })
	list, ex, err := MembersPB(&ms)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := proto.Marshal(&pb.State{Members: list, Excluded: ex})
	if err != nil {
		t.Fatal(err)
	}
	var back pb.State
	if err := proto.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	got, err := MembersFromPB(back.Members, back.Excluded)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ms) || got.Digest() != ms.Digest() {
		t.Fatalf("round trip: %+v, want %+v", got, ms)
	}
	for _, m := range back.Members {
		if len(m.Unproven) > 0 {
			m.Unproven = m.Unproven[:31]
		}
	}
	if _, err := MembersFromPB(back.Members, back.Excluded); err == nil || !strings.Contains(err.Error(), "unproven") {
		t.Fatalf("a 31-byte gate: %v, want an error naming it", err)
	}
}
