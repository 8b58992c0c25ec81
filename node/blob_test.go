package node

import (
	"context"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
)

// trainedRound is round 0 of a small synthetic run trained by the
// founder 12D3KooWself: the spec, the data, the genesis state, the
// segments' start states and the final state.
func trainedRound(t *testing.T) (runspec.Spec, *data.Set, consensus.State, consensus.PeerID, []trainer.Snapshot, trainer.Snapshot) {
	t.Helper()
	spec := runspec.Default()
	spec.Model = runspec.Model{Kind: "mlp", Hidden: []int{8}}
	spec.Data.Source = "synthetic"
	spec.Inner.Steps, spec.Inner.Batch, spec.Verify.Segment = 12, 8, 4
	spec = spec.WithFounders("12D3KooWself")
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	set := data.Synthetic(1, 256, 1)
	g, _ := consensus.Genesis(spec)
	self := consensus.PeerID("12D3KooWself")
	req := &consensus.TrainRequest{Round: 0, Theta: g.Theta, Seed: consensus.RoundSeed(spec, 0, self), Shard: consensus.ShardOf(spec, self)}
	_, starts, final, err := trainer.TrainRound(context.Background(), spec, req, set.Train)
	if err != nil {
		t.Fatal(err)
	}
	return spec, set, g, self, starts, final
}

// TestBlobServesOnlySignedStates: anyone may ask a node for a state of its
// own update by hash (a referee needs them), so a state the node must
// recompute is served only when the node signed its hash in an answer:
// an outsider asking for other steps, even for their true hashes, gets
// nothing and costs nothing but a map lookup.
func TestBlobServesOnlySignedStates(t *testing.T) {
	spec, set, g, self, starts, final := trainedRound(t)
	id := consensus.Hash{1}
	ev := &evidence{round: 0, starts: starts, final: final, residual: make([]float32, len(g.Theta))}
	n := &node{spec: spec, self: self, cfg: Config{Data: set}, evidence: map[consensus.Hash]*evidence{id: ev}, blobs: map[consensus.Hash]blob{}}
	rep, err := trainer.NewReplayer(spec, 0, self, set.Train)
	if err != nil {
		t.Fatal(err)
	}
	const seg, step = 1, 6 // segment 1 is steps 4..8
	st, err := trainer.StateAt(spec, starts, step, rep)
	if err != nil {
		t.Fatal(err)
	}
	ask := gossip.BlobRequest{Hash: st.Hash(), Round: 0, Update: id, Step: step}
	if s, ok := n.Blob(ask); ok || s != nil {
		t.Fatal("a state of a step the node never signed was recomputed for whoever asked")
	}
	if s, ok := n.Blob(gossip.BlobRequest{Hash: starts[seg].Hash(), Update: id, Step: 4}); !ok || s.Hash() != starts[seg].Hash() {
		t.Fatal("a segment's start state was not served")
	}
	leaves, err := trainer.AnswerLeaves(spec, starts[seg], seg, rep)
	if err != nil {
		t.Fatal(err)
	}
	ev.answers = map[int]*consensus.Answer{seg: {Round: 0, Update: id, Segment: seg, Leaves: leaves}}
	if s, ok := n.Blob(ask); !ok || s.Hash() != st.Hash() {
		t.Fatal("the state behind a signed step hash was not served")
	}
	ask.Hash[0] ^= 1
	if _, ok := n.Blob(ask); ok {
		t.Fatal("a made-up hash of a signed step was served")
	}
}
