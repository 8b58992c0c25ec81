package node_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/node/nodetest"
	"github.com/vtrain/vtrain/runspec"
)

// lagging is a CPU engine whose trainings, once armed, each end only after
// its node decided the round they train for: the node trains slower than
// the run decides. A training starts with buffers allocated (the first
// Alloc after inner steps) for the round after those decided by then; its
// middle inner step (one loss each) waits until that round is decided, and
// the steps after it are where a cancelled training stops. Unarmed, each
// step takes pace at least (the others' training is not instant: the
// late update comes before the next proposal, as with real models).
type lagging struct {
	engine.Engine
	steps   int
	pace    time.Duration
	armed   atomic.Bool
	decided atomic.Int64 // rounds the node decided

	mu    sync.Mutex
	taken int   // inner steps of the training under way
	round int64 // the round it trains for
}

func (l *lagging) Alloc(n int) (engine.Buffer, error) {
	l.mu.Lock()
	if l.taken > 0 || l.round == 0 {
		l.taken, l.round = 0, l.decided.Load()
	}
	l.mu.Unlock()
	return l.Engine.Alloc(n)
}

func (l *lagging) SoftmaxCrossEntropy(dlogits, loss, logits, labels engine.Buffer, rows, cols int) error {
	l.mu.Lock()
	step, round := l.taken, l.round
	l.taken++
	l.mu.Unlock()
	switch {
	case !l.armed.Load():
		time.Sleep(l.pace)
	case step == l.steps/2:
		for l.decided.Load() <= round {
			time.Sleep(time.Millisecond)
		}
	}
	return l.Engine.SoftmaxCrossEntropy(dlogits, loss, logits, labels, rows, cols)
}

// TestSlowTrainerCounts: a member without a seat whose training of every
// round ends just after the run decided that round (a CPU among faster
// peers) still contributes: it finishes that training rather than drop it
// for the next round's, and the next round takes its update late
// (consensus/late.go). Dropped, its work would never count, and the run
// would in the end drop it as absent.
func TestSlowTrainerCounts(t *testing.T) {
	const rounds, steps = 8, 10
	engines := map[string]*lagging{}
	c := nodetest.Start(t, 4, rounds, func(s *runspec.Spec) {
		s.Members.Voters = 3
		s.Inner.Steps = steps
		s.Verify.Rate, s.Verify.NewcomerRate = 0, 0 // the engines count training steps only
	}, nodetest.WithMinPeers(4), nodetest.WithConfig(func(id string, cfg *node.Config) {
		l := &lagging{Engine: engine.CPU(), steps: steps, pace: 5 * time.Millisecond}
		engines[id] = l
		cfg.OnRound = func(r node.RoundReport, _ int) { l.decided.Store(max(l.decided.Load(), int64(r.Round)+1)) }
		cfg.Device = l
	}))
	voters, others := seats(t, c)
	if len(others) != 1 {
		t.Fatalf("%d members without a seat, want 1", len(others))
	}
	slow := others[0]
	engines[slow.ID].armed.Store(true)
	c.Wait()
	agreed(t, c, c.Nodes)
	taken := 0
	for _, rep := range voters[0].Rounds() {
		if slices.Contains(rep.LateIn, slow.ID) {
			taken++
		}
	}
	if taken < rounds/2 {
		t.Errorf("the slow member's updates were taken late in %d of %d rounds, want %d or more", taken, rounds, rounds/2)
	}
	t.Logf("the slow member's updates were taken late in %d of %d rounds", taken, rounds)
}
