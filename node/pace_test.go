package node_test

import (
	"sync/atomic"
	"time"

	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/node"
)

// pacer lets a test keep the other nodes of a cluster from running ahead
// of one node (the paced one): on a loaded machine (CI runs packages side
// by side on two cores, the race detector slows everything) that node
// could otherwise fall behind and catch up from a fetched state, which
// the protocol allows but a test of what that node does in the run
// cannot use. Only the others' training waits (follower): their loops go
// on judging and forwarding what they hear. (Holding their loops in
// Config.OnRound instead left a member that heard the run through one of
// them without the round's commit: a deadlock of the test's making.)
type pacer struct {
	at   atomic.Int64  // rounds the paced node has decided (or adopted)
	gone chan struct{} // closed once the paced node is stopped: nothing waits for it then
}

func newPacer() *pacer { return &pacer{gone: make(chan struct{})} }

// lead configures the paced node: it notes the rounds it decides, and
// trains on the engine the others do (follow), since a spec with
// verify.tolerance 0 holds every peer to bit-exact re-execution: a
// follower on the engine and a node on Gorgonia's CPU VM would fail each
// other's checks.
func (p *pacer) lead(cfg *node.Config) {
	cfg.Device = engine.CPU()
	cfg.OnRound = func(r node.RoundReport, _ int) { storeMax(&p.at, int64(r.Round)+1) }
}

// stopped says that the paced node is gone.
func (p *pacer) stopped() { close(p.gone) }

// wait blocks until the paced node has decided n rounds or is gone, a
// minute at most (the test's own waits fail first).
func (p *pacer) wait(n int64) {
	for give := time.Now().Add(time.Minute); p.at.Load() < n && time.Now().Before(give); {
		select {
		case <-p.gone:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// follow makes a node's training (and the replays of its checks) wait, at
// every inner step, until the paced node has decided every round this
// node has: this node trains round r+1 only once the paced node has
// decided round r. The steps it takes once it has decided last rounds
// also wait until the paced node is gone.
func (p *pacer) follow(cfg *node.Config, last int64) {
	f := &follower{Engine: engine.CPU(), p: p, last: last}
	cfg.Device = f
	cfg.OnRound = func(r node.RoundReport, _ int) { storeMax(&f.decided, int64(r.Round)+1) }
}

type follower struct {
	engine.Engine
	p       *pacer
	last    int64
	decided atomic.Int64 // rounds its own node has decided
}

func (f *follower) SoftmaxCrossEntropy(dlogits, loss, logits, labels engine.Buffer, rows, cols int) error {
	n := f.decided.Load()
	f.p.wait(n)
	if n >= f.last {
		select {
		case <-f.p.gone:
		case <-time.After(time.Minute):
		}
	}
	return f.Engine.SoftmaxCrossEntropy(dlogits, loss, logits, labels, rows, cols)
}

// storeMax raises v to x.
func storeMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}
