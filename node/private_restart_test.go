package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/node/nodetest"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/zk"
)

// privateKeys returns the keys of circuit p from the user cache, where
// the demo keeps them (zk.DemoKeys: the same directory for the same
// circuit), made by a single-party Groth16 setup when absent (a minute or
// two, once per machine and circuit). A live run proves the 784×10
// circuit (runspec.ZKParams): no smaller one fits its model.
func privateKeys(t *testing.T, p zk.Params) *zk.Keys {
	t.Helper()
	keys, dir, err := zk.DemoKeys(p, "", func(dir string) { t.Logf("no keys for the circuit in %s: a Groth16 setup, cached there", dir) })
	if err != nil {
		t.Fatal(err)
	}
	if keys.PK == nil { // found, not made: the proving key from the directory
		if keys, err = zk.LoadProver(dir, ""); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// privateCluster starts a run of three founders, one of them (the last in
// the spec's genesis list) a private peer that proves its steps, every
// node with keys for the run's circuit. It returns the cluster, the
// private peer's index in it, and its log (info level).
func privateCluster(t *testing.T, rounds int) (*nodetest.Cluster, int, *syncBuffer) {
	t.Helper()
	if testing.Short() {
		t.Skip("Groth16 proofs of the 784×10 circuit (seconds each), and a setup of minutes on a machine without the demo's cached keys")
	}
	var priv string
	var keys *zk.Keys
	tune := func(s *runspec.Spec) {
		s.Inner.Optimizer, s.Inner.LR, s.Inner.Batch, s.Inner.Momentum, s.Inner.WeightDecay = "sgd", 0.05, 4, 0, 0
		s.Data.Shards = 3
		s.Privacy = runspec.Privacy{Mode: "zk", Depth: 16}
		keys = privateKeys(t, s.ZKParams())
		s.Privacy.VKSHA256 = zk.VKHash(keys.VK)
		priv = s.Members.Genesis[len(s.Members.Genesis)-1]
		// The cluster's data (nodetest.Start).
		root, size, err := node.PrivateData(*s, priv, data.Synthetic(s.Run.Seed, 1024, 256).Train)
		if err != nil {
			t.Fatal(err)
		}
		s.Privacy.Peers = []runspec.PrivatePeer{{Peer: priv, DataRoot: root, DataSize: size}}
	}
	log := &syncBuffer{}
	c := nodetest.Start(t, 3, rounds, tune, nodetest.WithConfig(func(id string, cfg *node.Config) {
		cfg.ZK = keys
		if id == priv {
			cfg.Logger = slog.New(slog.NewMultiHandler(cfg.Logger.Handler(), slog.NewTextHandler(log, nil)))
		}
	}))
	i := slices.IndexFunc(c.Nodes, func(n *nodetest.Node) bool { return n.ID == priv })
	return c, i, log
}

// syncBuffer is a log that a test reads while the node writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// verdictLine is a challenger's verdict event.
type verdictLine struct {
	Event   string `json:"event"`
	Round   uint64 `json:"round"`
	Peer    string `json:"peer"`
	Verdict string `json:"verdict"`
}

// verdicts returns the verdicts node n gave on peer's updates, by round.
func verdicts(n *nodetest.Node, peer string) map[uint64]string {
	out := map[uint64]string{}
	for _, s := range n.Output() {
		var v verdictLine
		if json.Unmarshal([]byte(s), &v) == nil && v.Event == node.EventVerdict && v.Peer == peer {
			out[v.Round] = v.Verdict
		}
	}
	return out
}

// proved returns the rounds whose drawn step node n proved.
func proved(n *nodetest.Node) []uint64 {
	var out []uint64
	for _, s := range n.Output() {
		var v verdictLine
		if json.Unmarshal([]byte(s), &v) == nil && v.Event == node.EventProof {
			out = append(out, v.Round)
		}
	}
	return out
}

// stopDrawn waits for the first round from 1 on whose decision
// aggregated private peer p's update (and so drew it for a check), and
// stops p at once, before it has proved the drawn step (a proof takes
// seconds). It calls decided, if not nil, at every round p decided
// before that one.
func stopDrawn(t *testing.T, p *nodetest.Node, decided func(round uint64)) uint64 {
	t.Helper()
	var drawn uint64
	for r := uint64(0); ; r++ {
		rep := p.WaitRound(t, r)
		if rep.Round > 0 && slices.Contains(rep.Authors, p.ID) {
			drawn = rep.Round
			break
		}
		r = rep.Round
		if decided != nil {
			decided(r)
		}
	}
	p.Stop()
	if slices.Contains(proved(p), drawn) {
		t.Fatalf("the private peer proved round %d's step before it stopped: nothing to test", drawn)
	}
	return drawn
}

// TestPrivatePeerAnswersAfterRestart: a private peer's update is
// aggregated and drawn for a check; the peer stops before it has made
// the proof (a proof takes seconds) and restarts from its --out. Its
// chain of states was in memory only: it rebuilds it from the round it
// kept on disk, checks that it gives the update it sent, and proves the
// drawn step; its challengers verify the proof, every member takes their
// pass, and the peer stays a member to the end of the run.
func TestPrivatePeerAnswersAfterRestart(t *testing.T) {
	if raceEnabled {
		t.Skip("proofs under the race detector take longer than the run's challengers wait (privacy.proof_timeout); TestPrivatePeerDamagedRecord runs the restart under it")
	}
	c, i, log := privateCluster(t, 8)
	p := c.Nodes[i]
	// The first round that aggregated its update: the decision drew its
	// check, and the node starts proving it now.
	drawn := stopDrawn(t, p, nil)
	p = c.Restart(i)
	answeredAfterRestart(t, c, i, drawn, log, true)
}

// TestPrivatePeerAnswersAfterRestartBehind: the same, the peer restarting
// from the checkpoint it saved before the decision that drew its update
// (it crashed before the next one, or its disk was restored from a
// backup): it learns of that decision only as it catches up, from the
// certified decisions of the others (and may adopt a state past it), and
// must still prove the step drawn. Which way it has the round is a race:
// it rebuilds it from disk when it learns of the decision first, and when
// it trains the round again from its checkpoint first (a node that starts
// in a second does), it makes the very update it sent and proves it from
// memory.
func TestPrivatePeerAnswersAfterRestartBehind(t *testing.T) {
	if raceEnabled {
		t.Skip("proofs under the race detector take longer than the run's challengers wait (privacy.proof_timeout); TestPrivatePeerDamagedRecord runs the restart under it")
	}
	c, i, log := privateCluster(t, 8)
	p := c.Nodes[i]
	files := []string{"chain.pb", "state.safetensors"}
	var old [][]byte
	drawn := stopDrawn(t, p, func(uint64) {
		old = old[:0]
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			old = append(old, b)
		}
	})
	for k, f := range files {
		if err := os.WriteFile(filepath.Join(p.Dir, f), old[k], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p = c.Restart(i)
	if start := p.WaitEvent(t, "vtrain node "+p.ID+": "); !strings.Contains(start, fmt.Sprintf(", round %d,", drawn)) {
		t.Fatalf("restarted as %q, want at round %d (before the decision that drew it)", start, drawn)
	}
	answeredAfterRestart(t, c, i, drawn, log, false)
}

// answeredAfterRestart runs the cluster to its end and checks that the
// restarted private peer c.Nodes[i] proved the step drawn of its update
// aggregated by round drawn's decision, after it rebuilt that round from
// disk (when rebuilt: a peer that restarted behind may have trained the
// round again instead); that its challengers passed it, and that the run
// excluded nobody and agreed, its ledgers passing the audit (every proof
// verified again).
func answeredAfterRestart(t *testing.T, c *nodetest.Cluster, i int, drawn uint64, log *syncBuffer, rebuilt bool) {
	t.Helper()
	p := c.Nodes[i]
	c.Wait()
	agreed(t, c, c.Nodes)
	if !slices.Contains(proved(p), drawn) {
		t.Errorf("the restarted private peer did not prove round %d's drawn step (proved %v)", drawn, proved(p))
	}
	if rebuilt && !strings.Contains(log.String(), "rebuilt a private round kept on disk") {
		t.Errorf("no rebuild in the restarted peer's log")
	}
	var checked bool
	for j, n := range c.Nodes {
		if j == i {
			continue
		}
		for r, v := range verdicts(n, p.ID) {
			if v != "passed" {
				t.Errorf("node %d: round %d: %s's update %s", j, r, p.ID, v)
			}
			checked = checked || r == drawn
		}
		for _, x := range n.Summary.Excluded {
			t.Errorf("node %d saw %s excluded from round %d: %s", j, x.Peer, x.Round, x.Reason)
		}
	}
	if !checked {
		t.Errorf("no challenger judged the private peer's update of round %d", drawn)
	}
	if p.Summary.Challenges.Proofs == 0 {
		t.Errorf("the restarted peer made no proof (%+v)", p.Summary.Challenges)
	}
	audited(t, c, c.Nodes)
}

// TestPrivatePeerDamagedRecord: the same, with the round the restarted
// peer kept on disk damaged (a flipped byte of its state). The peer says
// which file is damaged and why, refuses to prove (it cannot rebuild what
// it sent), and goes on: its challengers get a refusal, not a proof, and
// no node crashes or stalls on it.
func TestPrivatePeerDamagedRecord(t *testing.T) {
	c, i, log := privateCluster(t, 8)
	p := c.Nodes[i]
	drawn := stopDrawn(t, p, nil)
	files, err := filepath.Glob(filepath.Join(p.Dir, "private", "*.safetensors"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no private rounds kept in %s (%v)", p.Dir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-7] ^= 0x10
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p = c.Restart(i)
	// A challenger of the drawn update judges it: refused, not proved.
	deadline := time.Now().Add(3 * time.Minute) // a guard against a hang: a proof is waited for 2 minutes
	var verdict string
	for verdict == "" && time.Now().Before(deadline) {
		for j, n := range c.Nodes {
			if v, ok := verdicts(n, p.ID)[drawn]; ok && j != i {
				verdict = v
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if verdict == "" || verdict == "passed" || !strings.Contains(verdict, "damaged") {
		t.Errorf("the drawn update's verdict: %q, want a refusal that says the record is damaged", verdict)
	}
	if s := log.String(); !strings.Contains(s, "private round kept on disk") || !strings.Contains(s, "does not match its checksum (damaged)") || !strings.Contains(s, filepath.Join(p.Dir, "private")) {
		t.Errorf("the restarted peer did not log the damaged record clearly:\n%s", s)
	}
	if slices.Contains(proved(p), drawn) {
		t.Errorf("the restarted peer proved round %d's step from a damaged record", drawn)
	}
	// It goes on (or ends as excluded, which a peer that cannot answer
	// may be), without a crash: the test binary is still here.
	select {
	case <-p.Done:
		if p.Err != nil && !errors.Is(p.Err, node.ErrExcluded) {
			t.Errorf("the restarted peer ended: %v", p.Err)
		}
	default:
	}
}
