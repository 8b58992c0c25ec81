package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vtrain/vtrain/node"
)

// proc is a node process whose JSON lines are followed.
type proc struct {
	cmd   *exec.Cmd
	dir   string
	mu    sync.Mutex
	round int64 // last decided round, -1 before any
	join  string
	done  chan struct{}
	err   error
}

func startNode(t *testing.T, bin, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{dir: dir, round: -1, done: make(chan struct{})}
	base := []string{"node", "--out", dir, "--json", "--linger", "4s", "--data", "synthetic"}
	if os.Getenv("VTRAIN_TEST_VERBOSE") != "" {
		base = append(base, "-v")
	}
	p.cmd = exec.Command(bin, append(base, args...)...)
	p.cmd.Stderr = os.Stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev struct {
				Event string `json:"event"`
				Round *int64 `json:"round"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			p.mu.Lock()
			if a, ok := strings.CutPrefix(ev.Event, "join: "); ok && p.join == "" {
				p.join = a
			}
			if ev.Round != nil {
				p.round = *ev.Round
			}
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *proc) get() (int64, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.round, p.join
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool, ps ...*proc) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			var state []string
			for i, p := range ps {
				r, _ := p.get()
				status := "running"
				select {
				case <-p.done:
					status = fmt.Sprint("exited: ", p.err)
				default:
				}
				state = append(state, fmt.Sprintf("node %d at round %d (%s)", i, r, status))
			}
			t.Fatalf("timed out waiting for %s: %s", what, strings.Join(state, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buildBinary builds vtrain into a temporary directory, for tests that
// start node processes.
func buildBinary(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "vtrain")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return dir, bin
}

// TestMultiProcessKillAndJoin runs real node processes on loopback: four
// start, the first (the one the others joined through) is killed with
// SIGKILL mid-run, the other three go on, a fifth joins at round 5 or later,
// the killed one restarts from its checkpoint, and all end on one state.
func TestMultiProcessKillAndJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	tmp, bin := buildBinary(t)
	spec := filepath.Join(tmp, "run.toml")
	os.WriteFile(spec, []byte(`
[run]
rounds = 40
[model]
kind = "mlp"
hidden = [32]
[data]
source = "synthetic"
[inner]
steps = 30
[compression]
fraction = 0.05
[rounds]
timeout = "4s"
commit_timeout = "1s"
quorum = 2
`), 0o644)
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.cmd.Process.Kill()
		}
	}()
	ps = append(ps, startNode(t, bin, filepath.Join(tmp, "p0"), "--spec", spec))
	waitFor(t, "node 0's join address", 60*time.Second, func() bool { _, j := ps[0].get(); return j != "" })
	_, join0 := ps[0].get()
	for i := 1; i < 4; i++ {
		ps = append(ps, startNode(t, bin, filepath.Join(tmp, fmt.Sprintf("p%d", i)), "--join", join0))
	}
	// All four take part before node 0 goes.
	waitFor(t, "every node at round 3", 120*time.Second, func() bool {
		for _, p := range ps {
			if r, _ := p.get(); r < 3 {
				return false
			}
		}
		return true
	}, ps...)
	if err := ps[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ps[0].done
	t.Logf("killed node 0 at round %d", func() int64 { r, _ := ps[1].get(); return r }())
	_, join2 := ps[2].get()
	// The killed node restarts from its own checkpoint (same directory:
	// same identity and state) and catches up.
	ps = append(ps, startNode(t, bin, filepath.Join(tmp, "p0"), "--join", join2))
	waitFor(t, "round 5 without node 0", 120*time.Second, func() bool { r, _ := ps[2].get(); return r >= 5 }, ps...)
	ps = append(ps, startNode(t, bin, filepath.Join(tmp, "p4"), "--join", join2))
	for i, p := range ps[1:] {
		select {
		case <-p.done:
		case <-time.After(180 * time.Second):
			t.Fatalf("node %d did not finish", i+1)
		}
		if p.err != nil {
			t.Fatalf("node %d: %v", i+1, p.err)
		}
	}
	var sums []*node.Summary
	for i := 1; i < len(ps); i++ {
		b, err := os.ReadFile(filepath.Join(ps[i].dir, "summary.json"))
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		var s node.Summary
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, &s)
	}
	if ok, bad := agreement(sums, 40); !ok {
		t.Fatalf("nodes disagree: %v", bad)
	}
	seen := func(s *node.Summary) int {
		n := 0
		for _, h := range s.Hashes {
			if h != "" {
				n++
			}
		}
		return n
	}
	t.Logf("final hash %s; the restarted node saw %d of 40 decisions, the joiner %d", sums[0].FinalHash[:12], seen(sums[len(sums)-2]), seen(sums[len(sums)-1]))

	// Every node's ledger, the killed and restarted one's included, passes
	// the audit from genesis, and its decisions are the agreed hashes.
	for i := 1; i < len(ps); i++ {
		// Node 1 ran the whole run: its ledger replays from genesis with
		// every aggregate recomputed, and with the data every segment of
		// every update re-executed.
		args := []string{"audit", "--json", "--data", "synthetic"}
		if i == 1 {
			args = append(args, "--full")
		} else {
			// The others' ledgers also match the heads node 1 received
			// from their keepers by gossip.
			args = append(args, "--witness", filepath.Join(ps[1].dir, "summary.json"))
		}
		code, out, errOut := vtrain(t, append(args, filepath.Join(ps[i].dir, node.LedgerFile))...)
		var rep auditReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK {
			t.Fatalf("node %d: audit exit %d: %s %s", i, code, out, errOut)
		}
		if rep.Replay.Recomputed == 0 || i == 1 && (rep.Replay.Skipped > 0 || rep.Replay.Segments == 0 || rep.Replay.Links == 0) {
			t.Fatalf("node %d: the audit replayed %s", i, rep.Replay)
		}
		t.Logf("node %d: audit replayed %s", i, rep.Replay)
		// The ledger outlives a restart: it may hold more decided rounds
		// than the last process's summary saw.
		if rep.Keeper != sums[i-1].Peer || rep.Rounds < seen(sums[i-1]) || rep.Rounds > 40 || len(rep.Peers) < 2 {
			t.Fatalf("node %d: audit of keeper %s with %d rounds and %d peers; the node is %s and saw %d rounds",
				i, rep.Keeper, rep.Rounds, len(rep.Peers), sums[i-1].Peer, seen(sums[i-1]))
		}
	}
	auditMutations(t, filepath.Join(ps[1].dir, node.LedgerFile), 40)
}
