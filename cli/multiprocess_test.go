package cli

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
	"github.com/vtrain/vtrain/verify/audit"
)

// proc is a node process whose JSON lines are followed; waiters are woken
// on every line (no polling).
type proc struct {
	cmd     *exec.Cmd
	dir     string
	mu      sync.Mutex
	round   int64 // last decided round, -1 before any
	join    string
	changed chan struct{} // closed and replaced on every change
	done    chan struct{}
	err     error
}

func startNode(t *testing.T, bin, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{dir: dir, round: -1, done: make(chan struct{}), changed: make(chan struct{})}
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
				Addr  string `json:"addr"`
				Round *int64 `json:"round"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			p.mu.Lock()
			if ev.Event == node.EventListening && p.join == "" {
				p.join = ev.Addr
			}
			if ev.Event == node.EventRound && ev.Round != nil {
				p.round = *ev.Round
			}
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *proc) get() (int64, string, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.round, p.join, p.changed
}

// waitFor waits until cond holds, re-checking whenever one of the
// processes prints a line (or exits), up to limit.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool, ps ...*proc) {
	t.Helper()
	deadline := time.After(limit)
	for {
		var wake []<-chan struct{}
		for _, p := range ps {
			_, _, ch := p.get()
			wake = append(wake, ch, p.done)
		}
		if cond() {
			return
		}
		// Wait for any line or exit of any process, or the deadline.
		any := make(chan struct{})
		stop := make(chan struct{})
		for _, ch := range wake {
			go func(ch <-chan struct{}) {
				select {
				case <-ch:
					select {
					case any <- struct{}{}:
					default:
					}
				case <-stop:
				}
			}(ch)
		}
		select {
		case <-any:
			close(stop)
		case <-deadline:
			close(stop)
			var state []string
			for i, p := range ps {
				r, _, _ := p.get()
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
	}
}

// buildBinary builds vtrain into a temporary directory, for tests that
// start node processes; with race, under the race detector (where cgo
// allows it).
func buildBinary(t *testing.T, race bool) (dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "vtrain")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, "github.com/vtrain/vtrain/cmd/vtrain")...).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return dir, bin
}

// founders makes the identities of n nodes in dir/p0, dir/p1, … and
// returns their peer IDs as a TOML list.
func founders(t *testing.T, dir string, n int) string {
	t.Helper()
	var ids []string
	for i := range n {
		_, id, err := node.LoadIdentity(filepath.Join(dir, fmt.Sprintf("p%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprintf("%q", id))
	}
	return "[" + strings.Join(ids, ", ") + "]"
}

func readSummaries(t *testing.T, ps []*proc) []*node.Summary {
	t.Helper()
	var sums []*node.Summary
	for i, p := range ps {
		s, err := readSummary(filepath.Join(p.dir, "summary.json"))
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		sums = append(sums, s)
	}
	return sums
}

// TestMultiProcessKillAndJoin runs real node processes on loopback: four
// founders start, the first (the one the others joined through) is killed
// with SIGKILL mid-run, the other three go on (three of four seats are a
// quorum), a fifth peer joins at round 5 or later and is admitted, the
// killed one restarts from its checkpoint, and all end on one state. Every
// ledger passes the audit, alone and together.
func TestMultiProcessKillAndJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	tmp, bin := buildBinary(t, false)
	spec := filepath.Join(tmp, "run.toml")
	os.WriteFile(spec, []byte(`
[run]
rounds = 30
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
[members]
genesis = `+founders(t, tmp, 4)+`
`), 0o644)
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.cmd.Process.Kill()
		}
	}()
	ps = append(ps, startNode(t, bin, filepath.Join(tmp, "p0"), "--spec", spec))
	waitFor(t, "node 0's join address", 60*time.Second, func() bool { _, j, _ := ps[0].get(); return j != "" }, ps...)
	_, join0, _ := ps[0].get()
	for i := 1; i < 4; i++ {
		ps = append(ps, startNode(t, bin, filepath.Join(tmp, fmt.Sprintf("p%d", i)), "--join", join0))
	}
	waitFor(t, "every node at round 3", 120*time.Second, func() bool {
		for _, p := range ps {
			if r, _, _ := p.get(); r < 3 {
				return false
			}
		}
		return true
	}, ps...)
	if err := ps[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ps[0].done
	r1, _, _ := ps[1].get()
	t.Logf("killed node 0 at round %d", r1)
	_, join2, _ := ps[2].get()
	// The killed node restarts from its own checkpoint (same directory:
	// same identity and state) and catches up.
	ps = append(ps, startNode(t, bin, filepath.Join(tmp, "p0"), "--join", join2))
	waitFor(t, "round 5 without node 0", 120*time.Second, func() bool { r, _, _ := ps[2].get(); return r >= 5 }, ps...)
	ps = append(ps, startNode(t, bin, filepath.Join(tmp, "p4"), "--join", join2))
	live := ps[1:]
	for i, p := range live {
		select {
		case <-p.done:
		case <-time.After(240 * time.Second):
			t.Fatalf("node %d did not finish", i+1)
		}
		if p.err != nil {
			t.Fatalf("node %d: %v", i+1, p.err)
		}
	}
	sums := readSummaries(t, live)
	if ok, bad := agreement(sums, 30); !ok {
		t.Fatalf("nodes disagree: %v", bad)
	}
	if joiner := sums[len(sums)-1]; !joiner.Member || len(sums[0].Admitted) == 0 {
		t.Fatalf("the joiner was not admitted (member %v, admitted %v)", joiner.Member, sums[0].Admitted)
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
	t.Logf("final hash %s; the restarted node saw %d of 30 decisions, the joiner %d", sums[0].FinalHash[:12], seen(sums[len(sums)-2]), seen(sums[len(sums)-1]))

	// Every ledger, the killed and restarted one's and the joiner's
	// included, passes the audit; together, they hold one certified
	// decision per round.
	args := []string{"audit", "--json", "--data", "synthetic"}
	for _, p := range live {
		args = append(args, filepath.Join(p.dir, audit.LedgerFile))
	}
	code, out, errOut := vtrain(t, args...)
	var rep audit.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || len(rep.Cross) == 0 {
		t.Fatalf("audit exit %d: %s %s", code, out, errOut)
	}
	for i, lr := range rep.Ledgers {
		if lr.Replay.Certs == 0 || lr.Keeper != sums[i].Peer || lr.Rounds > 30 || len(lr.Peers) < 2 {
			t.Fatalf("node %d: audit of keeper %s with %d rounds, %s", i+1, lr.Keeper, lr.Rounds, lr.Replay)
		}
		t.Logf("node %d: %s", i+1, lr.Replay)
	}
	// Node 1 ran the whole run: every segment of every update re-executes.
	code, out, errOut = vtrain(t, "audit", "--json", "--data", "synthetic", "--full", filepath.Join(live[0].dir, audit.LedgerFile))
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Ledgers[0].Replay.Segments == 0 || rep.Ledgers[0].Replay.Links == 0 {
		t.Fatalf("full audit exit %d: %s %s", code, out, errOut)
	}
	auditMutations(t, filepath.Join(live[0].dir, audit.LedgerFile), 40)
}
