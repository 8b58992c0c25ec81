// Package nodetest runs vtrain nodes in one process for tests, in the
// manner of net/http/httptest: real libp2p hosts on loopback, real
// gossipsub, real ledgers on disk, the nodes' goroutines visible to the
// race detector. A cluster of founders runs a small run on synthetic data
// to its end; joiners and outsiders can be added while it runs.
package nodetest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/audit"
)

// Spec returns a small run's spec: logistic regression on synthetic data,
// rounds rounds of 20 inner steps, short timeouts, the given founders.
func Spec(t testing.TB, rounds int, founders []string) runspec.Spec {
	s := runspec.Default()
	s.Run.Rounds = rounds
	s.Model = runspec.Model{Kind: "logreg"}
	s.Data.Source = "synthetic"
	s.Inner.Steps, s.Inner.Batch = 20, 32
	s.Compression.Fraction = 0.05
	s.Rounds.Timeout = runspec.Duration{Duration: 5 * time.Second}
	s.Rounds.CommitTimeout = runspec.Duration{Duration: time.Second}
	s.Verify.Timeout = runspec.Duration{Duration: 5 * time.Second}
	s = s.WithFounders(founders...)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Node is one node of a cluster.
type Node struct {
	Dir     string
	ID      string
	Behave  string
	Summary *node.Summary
	Err     error
	Done    chan struct{}
	out     *lines
}

// Ledger is the node's ledger file.
func (n *Node) Ledger() string { return filepath.Join(n.Dir, audit.LedgerFile) }

// JoinAddr waits for the node's join address.
func (n *Node) JoinAddr(t testing.TB) string {
	t.Helper()
	return n.out.wait(t, "join: ")
}

// Cluster is a set of in-process nodes of one run.
type Cluster struct {
	T     testing.TB
	Spec  runspec.Spec
	Data  *data.Set
	Nodes []*Node
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// Start starts n founders of a run of the given rounds (tune adjusts the
// spec): the first with the spec, the others joining through it.
func Start(t testing.TB, n, rounds int, tune func(*runspec.Spec)) *Cluster {
	t.Helper()
	dir := t.TempDir()
	var ids []string
	var dirs []string
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("peer%02d", i))
		_, id, err := node.LoadIdentity(d)
		if err != nil {
			t.Fatal(err)
		}
		ids, dirs = append(ids, id.String()), append(dirs, d)
	}
	spec := Spec(t, rounds, ids)
	if tune != nil {
		tune(&spec)
		if err := spec.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	c := &Cluster{T: t, Spec: spec, Data: data.Synthetic(spec.Run.Seed, 1024, 256), ctx: ctx, stop: cancel}
	t.Cleanup(func() { c.stop(); c.wg.Wait() })
	first := c.launch(dirs[0], ids[0], "", "")
	join := first.JoinAddr(t)
	for i := 1; i < n; i++ {
		c.launch(dirs[i], ids[i], join, "")
	}
	return c
}

// Join starts another node that joins through node 0 (a joiner, or an
// outsider when behave is one of node.Outsiders).
func (c *Cluster) Join(behave string) *Node {
	c.T.Helper()
	d := filepath.Join(c.T.TempDir(), "joiner")
	_, id, err := node.LoadIdentity(d)
	if err != nil {
		c.T.Fatal(err)
	}
	return c.launch(d, id.String(), c.Nodes[0].JoinAddr(c.T), behave)
}

func (c *Cluster) launch(dir, id, join, behave string) *Node {
	n := &Node{Dir: dir, ID: id, Behave: behave, Done: make(chan struct{}), out: newLines()}
	cfg := node.Config{Join: join, RunID: c.Spec.RunID(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Data: c.Data, OutDir: dir,
		Out: n.out, JSONLines: true, Linger: 2 * time.Second, Tick: 20 * time.Millisecond}
	if join == "" {
		s := c.Spec
		cfg.Spec, cfg.RunID = &s, runspec.ID{}
	}
	if behave != "" && behave != "honest" {
		cfg.Behave = behave
	}
	c.Nodes = append(c.Nodes, n)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(n.Done)
		n.Summary, n.Err = node.Run(c.ctx, cfg)
	}()
	return n
}

// Wait waits for every node to finish (outsiders are stopped once the
// others have), and fails the test if an honest one failed.
func (c *Cluster) Wait() {
	c.T.Helper()
	for _, n := range c.Nodes {
		if outsider(n.Behave) {
			continue
		}
		select {
		case <-n.Done:
		case <-c.ctx.Done():
			c.T.Fatalf("node %s did not finish: %v", n.ID, c.ctx.Err())
		}
		if n.Err != nil && n.Behave == "" {
			c.T.Fatalf("node %s: %v", n.ID, n.Err)
		}
	}
	c.stop()
	c.wg.Wait()
}

func outsider(b string) bool {
	for _, o := range node.Outsiders {
		if b == o {
			return true
		}
	}
	return false
}

// lines collects a node's output and lets a test wait for a line.
type lines struct {
	mu      sync.Mutex
	buf     strings.Builder
	all     []string
	changed chan struct{}
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	s := l.buf.String()
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		l.all = append(l.all, s[:i])
		s = s[i+1:]
	}
	l.buf.Reset()
	l.buf.WriteString(s)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// wait returns what follows prefix in the first event line that has it.
func (l *lines) wait(t testing.TB, prefix string) string {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		l.mu.Lock()
		for _, s := range l.all {
			if i := strings.Index(s, `"event":"`+prefix); i >= 0 {
				rest := s[i+len(`"event":"`+prefix):]
				l.mu.Unlock()
				return rest[:strings.IndexByte(rest, '"')]
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %q line within a minute", prefix)
		}
	}
}
