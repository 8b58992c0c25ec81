package node

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
)

// evidenceNode is a node that published update id of round 0 (its
// receipt on disk, its evidence in memory) and nothing else.
func evidenceNode(t *testing.T) (*node, consensus.Hash, runspec.Spec) {
	t.Helper()
	spec, set, g, self, starts, final := trainedRound(t)
	res := make([]float32, len(g.Theta))
	for i := range res {
		res[i] = float32(i%5) * 1e-4
	}
	_, kept, err := trainer.Link(spec, g.Theta, final.Params, res)
	if err != nil {
		t.Fatal(err)
	}
	id := consensus.Hash{1}
	n := &node{spec: spec, self: self, cfg: Config{Data: set, OutDir: t.TempDir()}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		evidence: map[consensus.Hash]*evidence{}, blobs: map[consensus.Hash]blob{}, openings: map[consensus.Hash]opened{}, started: true}
	n.keepEvidence(id, &evidence{round: 0, starts: starts, final: final, residual: res, kept: kept}, g.Theta)
	return n, id, spec
}

// TestAttackEvidenceOpensAnyBlocks: node.Evidence (gossip's evidence
// request) opens whatever blocks the asker names, to anyone, for any of
// its recent updates: no check that a challenge was drawn, that the asker
// is its challenger or a referee, or that the blocks are the beacon's
// draw. An outsider reads the whole residual carried in and kept, verify
// .openings blocks a request (here 25 requests for the test model; 796 at
// the default model), and with the public payload the peer's exact
// training delta, up to rounding: delta = ResidualOut + Dense(payload) − ResidualIn. The
// residual is the one thing the commit calls "private to it"; the delta
// is what privacy modes (DP noise, zk) are meant to hide. It also makes
// each request cost two Merkle trees over the whole model (trainer.Open
// rebuilds them every time).
//
// Fix: node.Evidence must answer only for an own update that the beacon
// drew for a challenge (the engine's record of the round: draws), and
// only with blocks == spot.Blocks(beacon, id, c, n, m) for a challenger c
// drawn for it (the same sets referees ask for); anything else is
// refused. Build the two residual trees once per update (in evidence).
func TestAttackEvidenceOpensAnyBlocks(t *testing.T) {
	n, id, spec := evidenceNode(t)
	ev := n.evidence[id]
	d := len(ev.residual)
	nb := trainer.ResidualBlocks(spec, d)
	got := make([]float32, 0, d)
	for lo := 0; lo < nb; lo += spec.Verify.Openings {
		var blocks []int
		for b := lo; b < min(lo+spec.Verify.Openings, nb); b++ {
			blocks = append(blocks, b)
		}
		e, err := n.Evidence(0, id, blocks)
		if err != nil {
			return // refused: the defence holds
		}
		for _, op := range e.Openings {
			got = append(got, op.In...)
		}
	}
	if slices.Equal(got, ev.residual) {
		t.Errorf("an outsider read the node's whole residual (%d values) in %d evidence requests for blocks nobody drew", d, (nb+spec.Verify.Openings-1)/spec.Verify.Openings)
	}
}

// TestAttackEvidenceRecomputesForAnyone: a request for evidence of an own
// update no longer in memory (the node keeps 4 rounds in memory, 6
// receipts on disk, so the updates of 4 and 5 rounds ago at any time)
// makes the node re-run that round's training (node.recompute), for any
// asker and with no check that the update was challenged; concurrent
// requests each re-run it (nothing deduplicates), and after the next
// publish evicts it the same request costs a round again. A request for
// an update the node never published costs nothing (no receipt), which
// holds.
//
// Fix: recompute only for an update drawn for a challenge or named by a
// pending verdict (as above), behind a per-update singleflight; and
// Answer (each uncached segment a traced re-execution) and Blob
// (StateAt, uncached) likewise only for drawn updates, computed once.
func TestAttackEvidenceRecomputesForAnyone(t *testing.T) {
	n, id, spec := evidenceNode(t)
	delete(n.evidence, id) // evicted: older than keptEvidence rounds
	if _, err := n.Evidence(0, consensus.Hash{2}, []int{0}); err == nil {
		t.Error("evidence of an update the node never published was served")
	}
	if _, err := n.Evidence(0, id, []int{0}); err != nil {
		t.Logf("refused: %v", err)
	}
	if n.evidence[id] != nil {
		t.Errorf("an evidence request from nobody in particular re-ran a round of training (%d steps)", spec.Inner.Steps)
	}
}

// TestEvidenceServesTheDraw: for an own update the beacon drew, the node
// opens exactly the blocks a drawn challenger (or a referee of its claim)
// asks for, and answers its step hashes; other blocks, or a challenger
// the beacon did not draw, are refused.
func TestEvidenceServesTheDraw(t *testing.T) {
	n, id, spec := evidenceNode(t)
	ev := n.evidence[id]
	g, _ := consensus.Genesis(spec)
	payload, _, err := trainer.Link(spec, g.Theta, ev.final.Params, ev.residual)
	if err != nil {
		t.Fatal(err)
	}
	u := &consensus.Update{Round: 0, Payload: payload}
	beacon := consensus.Hash{7}
	n.model, _ = spec.ModelSpec()
	n.drawn = map[consensus.Hash]*drawnCheck{id: {round: 0, beacon: beacon, u: u, challengers: []consensus.PeerID{"12D3KooWchallenger"}}}
	d := len(ev.residual)
	blocks, err := trainer.DrawBlocks(spec, beacon, u, id, "12D3KooWchallenger", d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.Evidence(0, id, blocks)
	if err != nil || len(got.Openings) != len(blocks) {
		t.Fatalf("the drawn blocks: %v, %d openings", err, len(got.Openings))
	}
	other, _ := trainer.DrawBlocks(spec, beacon, u, id, "12D3KooWsomeoneelse", d)
	if _, err := n.Evidence(0, id, other); err == nil {
		t.Error("the blocks of a challenger the beacon did not draw were opened")
	}
	if _, err := n.Evidence(1, id, blocks); err == nil {
		t.Error("the drawn blocks were opened for another round")
	}
}

// TestAttackEvidenceForFutureRoundsIsRefusedAtOnce: a request naming a
// round far ahead is refused without waiting for its decision (only the
// round being decided now waits, a few seconds at most).
func TestAttackEvidenceForFutureRoundsIsRefusedAtOnce(t *testing.T) {
	n, id, _ := evidenceNode(t)
	n.eng = &consensus.Engine{} // a running node: waiting is possible
	start := time.Now()
	if _, err := n.Evidence(1<<40, id, []int{0}); err == nil {
		t.Fatal("evidence of a future round was served")
	}
	if time.Since(start) >= drawWait {
		t.Errorf("a request for a future round waited %v", time.Since(start))
	}
}
