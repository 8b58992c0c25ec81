package gossip

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/trainer"
)

// TestWireCarriesVerification: the commitments of an update, the
// exclusions of a commit and a verdict survive signing and verification
// unchanged.
func TestWireCarriesVerification(t *testing.T) {
	spec := testSpec(t)
	run := spec.RunID()
	k, other := newKey(t), newKey(t)
	self, _ := peer.IDFromPrivateKey(k)
	acc, _ := peer.IDFromPrivateKey(other)
	u := &trainer.UpdateMsg{Round: 4, Base: trainer.Hash{1}, From: trainer.PeerID(self.String()), Samples: 64, Loss: 0.5,
		Payload: []byte{1, 2}, Seed: 77, Segments: []trainer.Hash{{2}, {3}}, ResidualIn: trainer.Hash{4}, ResidualOut: trainer.Hash{5}}
	c := &trainer.CommitMsg{Round: 4, Base: trainer.Hash{1}, From: u.From, Updates: []trainer.Hash{{6}}, Result: trainer.Hash{7},
		Excluded: []trainer.PeerID{trainer.PeerID(acc.String())}}
	v := &trainer.VerdictMsg{Round: 3, Update: trainer.Hash{8}, Accused: trainer.PeerID(acc.String()), Segment: 5, From: u.From, Reason: "challenge failed: x"}
	for _, o := range []trainer.Outbound{{Update: u}, {Commit: c}, {Verdict: v}} {
		raw, err := Sign(k, run, o)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Verify(raw, run, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case o.Update != nil && !reflect.DeepEqual(m.Update, u):
			t.Errorf("update: got %+v, want %+v", m.Update, u)
		case o.Commit != nil && !reflect.DeepEqual(m.Commit, c):
			t.Errorf("commit: got %+v, want %+v", m.Commit, c)
		case o.Verdict != nil && !reflect.DeepEqual(m.Verdict, v):
			t.Errorf("verdict: got %+v, want %+v", m.Verdict, v)
		}
	}
}

type evidenceServer struct {
	stubServer
	ev trainer.Evidence
}

func (s evidenceServer) Evidence(round uint64, id trainer.Hash, seg int) (trainer.Evidence, error) {
	if round != 2 || id != (trainer.Hash{9}) || seg != 1 {
		return trainer.Evidence{}, errors.New("no such segment")
	}
	return s.ev, nil
}

// TestFetchEvidence: a challenger fetches the evidence behind a segment
// over a real libp2p stream; a peer that holds none refuses, which the
// challenger can tell from a peer it cannot reach.
func TestFetchEvidence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	m, _ := spec.ModelSpec()
	d := m.NumParams()
	vec := func(x float32) []float32 {
		v := make([]float32, d)
		for i := range v {
			v[i] = x + float32(i)
		}
		return v
	}
	ev := trainer.Evidence{
		Start:      &trainer.Snapshot{Step: 5, Params: vec(1), Opt: map[string][]float32{"m": vec(2), "v": vec(3)}, OptSteps: 5},
		Final:      trainer.Snapshot{Step: 20, Params: vec(4), Opt: map[string][]float32{"m": vec(5), "v": vec(6)}, OptSteps: 20},
		ResidualIn: vec(7),
	}
	a, err := New(ctx, Config{Key: newKey(t), Spec: spec}, evidenceServer{stubServer{spec}, ev})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(ctx, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Connect(ctx, a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	got, err := b.FetchEvidence(ctx, a.ID(), 2, trainer.Hash{9}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatal("evidence changed on the way")
	}
	if _, err := b.FetchEvidence(ctx, a.ID(), 2, trainer.Hash{9}, 0); !errors.Is(err, ErrRefused) {
		t.Fatalf("a segment the peer does not hold: %v, want a refusal", err)
	}
	if _, err := a.FetchEvidence(ctx, b.ID(), 2, trainer.Hash{9}, 1); !errors.Is(err, ErrRefused) {
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
		tr, err := New(ctx, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		ts = append(ts, tr)
	}
	for _, tr := range ts[1:] {
		if _, err := tr.Connect(ctx, ts[0].Addrs()[0]); err != nil {
			t.Fatal(err)
		}
	}
	if ts[1].Host().Network().Connectedness(ts[2].ID()) == network.Connected {
		t.Fatal("connected before discovery")
	}
	// A node discovers after every round; a peer is listed once the
	// libp2p identify exchange has told the lister it runs vtrain's sync
	// protocol, a moment after connecting.
	for try := 0; ts[1].Host().Network().Connectedness(ts[2].ID()) != network.Connected; try++ {
		if try == 100 {
			t.Fatal("Discover never connected the two peers that joined through a third")
		}
		ts[1].Discover(ctx)
		time.Sleep(20 * time.Millisecond)
	}
}
