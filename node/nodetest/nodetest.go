// Package nodetest runs vtrain nodes in one process for tests, in the
// manner of net/http/httptest: real libp2p hosts on loopback, real
// gossipsub, real ledgers on disk, the nodes' goroutines visible to the
// race detector. A cluster of founders runs a small run on synthetic data
// to its end; joiners and outsiders can be added while it runs.
package nodetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/audit"
)

// Spec returns a small run's spec: logistic regression on synthetic data,
// rounds rounds of 20 inner steps, short timeouts, the given founders.
// The time a challenged peer has to answer is the exception: a peer that
// does not answer in time is excluded, and an honest node on a busy test
// machine (the race detector, parallel packages) must never be; the
// timeout only costs time when a peer is down or gone.
func Spec(t testing.TB, rounds int, founders []string) runspec.Spec {
	s := runspec.Default()
	s.Run.Rounds = rounds
	s.Model = runspec.Model{Kind: "logreg"}
	s.Data.Source = "synthetic"
	s.Inner.Steps, s.Inner.Batch = 20, 32
	s.Compression.Fraction = 0.05
	s.Rounds.Timeout = runspec.Duration{Duration: 5 * time.Second}
	s.Rounds.CommitTimeout = runspec.Duration{Duration: time.Second}
	s.Verify.Timeout = runspec.Duration{Duration: time.Minute}
	s = s.WithFounders(founders...)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Node is one node of a cluster: one run of node.Run (Restart starts a
// new one in the same directory). Summary and Err are set once Done is
// closed.
type Node struct {
	Dir     string
	ID      string
	Behave  string
	Summary *node.Summary
	Err     error
	Done    chan struct{}
	out     *lines
	logs    *lines // the node's log (info level): dumped when a test fails on it
	cancel  context.CancelFunc
}

// Ledger is the node's ledger file.
func (n *Node) Ledger() string { return filepath.Join(n.Dir, audit.LedgerFile) }

// JoinAddr waits for the node's join address.
func (n *Node) JoinAddr(t testing.TB) string {
	t.Helper()
	var addr string
	n.out.wait(t, n.Done, "a join address", func(s string) bool {
		var e struct {
			Event, Addr string
		}
		if json.Unmarshal([]byte(s), &e) != nil || e.Event != node.EventListening || e.Addr == "" {
			return false
		}
		addr = e.Addr
		return true
	})
	return addr
}

// Output returns the node's output lines so far (JSON objects).
func (n *Node) Output() []string { return n.out.lines() }

// WaitEvent waits for an event line that starts with prefix and returns
// what follows the prefix. It fails the test if the node ends without
// one.
func (n *Node) WaitEvent(t testing.TB, prefix string) string {
	t.Helper()
	var rest string
	n.out.wait(t, n.Done, fmt.Sprintf("an event %q", prefix), func(s string) bool {
		e, ok := event(s)
		if !ok || !strings.HasPrefix(e, prefix) {
			return false
		}
		rest = e[len(prefix):]
		return true
	})
	return rest
}

// Events returns the node's event lines so far that start with prefix.
func (n *Node) Events(prefix string) []string {
	var out []string
	for _, s := range n.out.lines() {
		if e, ok := event(s); ok && strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// Rounds returns the node's round reports so far, in order.
func (n *Node) Rounds() []node.RoundReport {
	var out []node.RoundReport
	for _, s := range n.out.lines() {
		var x node.RoundReport
		if kind(s) == node.EventRound && json.Unmarshal([]byte(s), &x) == nil && x.Hash != "" {
			out = append(out, x)
		}
	}
	return out
}

// WaitRound waits until the node has decided (or adopted) round r or a
// later one and returns that round's report. It fails the test if the
// node ends first.
func (n *Node) WaitRound(t testing.TB, r uint64) node.RoundReport {
	t.Helper()
	var rep node.RoundReport
	n.out.wait(t, n.Done, fmt.Sprintf("round %d", r), func(s string) bool {
		var x node.RoundReport
		if kind(s) != node.EventRound || json.Unmarshal([]byte(s), &x) != nil || x.Hash == "" || x.Round < r {
			return false
		}
		rep = x
		return true
	})
	return rep
}

// Stop stops the node and waits for it to end.
func (n *Node) Stop() {
	n.cancel()
	<-n.Done
}

// event returns the text of an event line other than a round's.
func event(line string) (string, bool) {
	var e struct {
		Event string `json:"event"`
		Msg   string `json:"msg"`
	}
	if json.Unmarshal([]byte(line), &e) != nil || e.Event == "" || e.Event == node.EventRound {
		return "", false
	}
	return e.Msg, true
}

// kind returns the event kind of a line ("" if it is not an event).
func kind(line string) string {
	var e struct {
		Event string `json:"event"`
	}
	if json.Unmarshal([]byte(line), &e) != nil {
		return ""
	}
	return e.Event
}

// Cluster is a set of in-process nodes of one run.
type Cluster struct {
	T        testing.TB
	Spec     runspec.Spec
	Data     *data.Set
	Nodes    []*Node
	tune     func(id string, cfg *node.Config)
	ctx      context.Context
	stop     context.CancelFunc
	minPeers int // the first founder's node.Config.MinPeers
	wg       sync.WaitGroup
}

// Option configures a cluster.
type Option func(*options)

type options struct {
	behave    map[int]string
	outsiders []string
	minPeers  int
	config    func(id string, cfg *node.Config)
}

// WithMinPeers makes the first founder hold round 0 until n peers of the
// run are connected (node.Config.MinPeers).
func WithMinPeers(n int) Option {
	return func(o *options) { o.minPeers = n }
}

// WithConfig lets f adjust every node's configuration (an Observer, the
// evaluation interval) before it starts; id is the node's peer ID.
func WithConfig(f func(id string, cfg *node.Config)) Option {
	return func(o *options) { o.config = f }
}

// WithBehave makes founder i misbehave as behave says: one of
// node.Behaviours that a member can have (not an outsider's).
func WithBehave(i int, behave string) Option {
	return func(o *options) { o.behave[i] = behave }
}

// WithOutsiders starts outsiders (node.Outsiders) once the first founder
// runs, and the other founders only once each outsider has sent its first
// messages: the whole run is under attack. They follow the founders in
// Cluster.Nodes.
func WithOutsiders(behaves ...string) Option {
	return func(o *options) { o.outsiders = append(o.outsiders, behaves...) }
}

// Start starts n founders of a run of the given rounds (tune adjusts the
// spec): the first with the spec, the others joining through it.
func Start(t testing.TB, n, rounds int, tune func(*runspec.Spec), opts ...Option) *Cluster {
	t.Helper()
	o := options{behave: map[int]string{}}
	for _, opt := range opts {
		opt(&o)
	}
	for i, b := range o.behave {
		if name, _, err := node.ParseBehave(b); err != nil || name == "" || i < 0 || i >= n || outsider(name) {
			t.Fatalf("nodetest: founder %d of %d cannot behave %q", i, n, b)
		}
	}
	for _, b := range o.outsiders {
		if !outsider(b) {
			t.Fatalf("nodetest: %q is not an outsider's behaviour", b)
		}
	}
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
	// A cluster gives up after 5 minutes, or before the test binary's own
	// deadline, so that a stuck run fails with every node's logs.
	deadline := time.Now().Add(5 * time.Minute)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := d.Deadline(); ok && td.Add(-15*time.Second).Before(deadline) {
			deadline = td.Add(-15 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	c := &Cluster{T: t, Spec: spec, Data: data.Synthetic(spec.Run.Seed, 1024, 256), ctx: ctx, stop: cancel, minPeers: o.minPeers, tune: o.config}
	t.Cleanup(func() {
		if t.Failed() {
			c.dump() // whatever failed: a wait, an assertion, a hang
		}
		c.stop()
		c.wg.Wait()
	})
	c.Nodes = append(c.Nodes, c.launch(dirs[0], ids[0], "", o.behave[0]))
	join := c.Nodes[0].JoinAddr(t)
	outsiders := c.attack(join, o.outsiders)
	for i := 1; i < n; i++ {
		c.Nodes = append(c.Nodes, c.launch(dirs[i], ids[i], join, o.behave[i]))
	}
	c.Nodes = append(c.Nodes, outsiders...)
	return c
}

// Join starts another node that joins through node 0 (a joiner, or an
// outsider when behave is one of node.Outsiders).
func (c *Cluster) Join(behave string) *Node {
	c.T.Helper()
	n := c.joiner(behave, c.Nodes[0].JoinAddr(c.T))
	c.Nodes = append(c.Nodes, n)
	return n
}

func (c *Cluster) joiner(behave, via string) *Node {
	c.T.Helper()
	d := filepath.Join(c.T.TempDir(), "joiner")
	_, id, err := node.LoadIdentity(d)
	if err != nil {
		c.T.Fatal(err)
	}
	return c.launch(d, id.String(), via, behave)
}

// attack starts outsiders and returns once each has published: they join
// through a watcher connected to the node at join, which sees what they
// send (the node judges, and forwards nothing an outsider sends but its
// join requests).
func (c *Cluster) attack(join string, behaves []string) []*Node {
	c.T.Helper()
	if len(behaves) == 0 {
		return nil
	}
	w := c.watch(join)
	defer w.close()
	var out []*Node
	for _, b := range behaves {
		out = append(out, c.joiner(b, w.addr))
	}
	for _, x := range out {
		w.waitFrom(c.T, x)
	}
	return out
}

// Restart starts node i again in its directory, after Stop: it resumes
// from its checkpoint there and joins through another running honest
// node. The new run replaces c.Nodes[i].
func (c *Cluster) Restart(i int) *Node {
	c.T.Helper()
	old := c.Nodes[i]
	if running(old) {
		c.T.Fatalf("nodetest: restart of node %d, which is running", i)
	}
	var via *Node
	for j, n := range c.Nodes {
		if j != i && n.Behave == "" && running(n) {
			via = n
			break
		}
	}
	if via == nil {
		c.T.Fatalf("nodetest: no running node to restart node %d through", i)
	}
	c.Nodes[i] = c.launch(old.Dir, old.ID, via.JoinAddr(c.T), old.Behave)
	return c.Nodes[i]
}

// Resume starts node i again in its directory, after Stop, as an
// operator would: with neither a spec nor a join address, from what the
// directory holds (its checkpoint, the run, the peers it knew). The new
// run replaces c.Nodes[i].
func (c *Cluster) Resume(i int) *Node {
	c.T.Helper()
	old := c.Nodes[i]
	if running(old) {
		c.T.Fatalf("nodetest: resume of node %d, which is running", i)
	}
	c.Nodes[i] = c.launch(old.Dir, old.ID, resume, old.Behave)
	return c.Nodes[i]
}

// resume, as launch's join address, starts a node from its directory.
const resume = "\x00resume"

func running(n *Node) bool {
	select {
	case <-n.Done:
		return false
	default:
		return true
	}
}

func (c *Cluster) launch(dir, id, join, behave string) *Node {
	ctx, cancel := context.WithCancel(c.ctx)
	n := &Node{Dir: dir, ID: id, Behave: behave, Done: make(chan struct{}), out: newLines(), logs: newLines(), cancel: cancel}
	cfg := node.Config{Join: join, RunID: c.Spec.RunID(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Data: c.Data, OutDir: dir,
		Out: n.out, JSONLines: true, Linger: 5 * time.Second, JoinPatience: time.Minute, Tick: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	switch join {
	case "":
		s := c.Spec
		cfg.Spec, cfg.RunID, cfg.MinPeers = &s, runspec.ID{}, c.minPeers
	case resume:
		cfg.Join = ""
	}
	if behave != "" && behave != "honest" {
		cfg.Behave = behave
	}
	if c.tune != nil {
		c.tune(id, &cfg)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(n.Done)
		defer cancel()
		n.Summary, n.Err = node.Run(ctx, cfg)
	}()
	return n
}

// Wait waits for every honest node to finish, and fails the test if one
// failed. Then it stops the others: outsiders run until stopped, and a
// misbehaving member ends when it learns that the run excluded it, which
// nobody owes it (its Err says which).
func (c *Cluster) Wait() {
	c.T.Helper()
	for _, n := range c.Nodes {
		if n.Behave != "" {
			continue
		}
		select {
		case <-n.Done:
		case <-c.ctx.Done():
			c.T.Fatalf("node %s did not finish: %v (%s)", n.ID, c.ctx.Err(), c.states())
		}
		if n.Err != nil {
			c.T.Fatalf("node %s: %v", n.ID, n.Err)
		}
	}
	c.stop()
	c.wg.Wait()
}

// states says where each node is: running, or ended and how (a node
// that ended early before logging anything shows up only here).
func (c *Cluster) states() string {
	var out []string
	for i, n := range c.Nodes {
		st := "running"
		if !running(n) {
			st = fmt.Sprintf("ended: %v", n.Err)
		}
		out = append(out, fmt.Sprintf("node %d %s %s: %s", i, n.ID[len(n.ID)-6:], n.Behave, st))
	}
	return strings.Join(out, "; ")
}

// dump logs every node's last output and log lines, for a failure (the
// cluster's cleanup calls it when the test failed).
func (c *Cluster) dump() {
	for _, n := range c.Nodes {
		for _, l := range []*lines{n.out, n.logs} {
			l.mu.Lock()
			// The repeated stall reports of a stuck node would push out
			// what led to the stall: keep the last three of them.
			var all []string
			waits := 0
			for i := len(l.all) - 1; i >= 0 && len(all) < 60; i-- {
				if strings.Contains(l.all[i], `"event":"waiting"`) {
					if waits++; waits > 3 {
						continue
					}
				}
				all = append(all, l.all[i])
			}
			slices.Reverse(all)
			for _, s := range all {
				c.T.Logf("%s %s: %s", n.ID[len(n.ID)-6:], n.Behave, s)
			}
			l.mu.Unlock()
		}
	}
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

// lines returns a copy of the lines so far.
func (l *lines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

// wait waits for a line that match accepts. It fails the test when done
// is closed (the node ended: no line follows) without one, or after a
// minute without one, a guard against a hang rather than a timing
// assertion.
func (l *lines) wait(t testing.TB, done <-chan struct{}, what string, match func(string) bool) {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	seen := 0
	for {
		l.mu.Lock()
		all, ch := l.all, l.changed
		l.mu.Unlock()
		for ; seen < len(all); seen++ {
			if match(all[seen]) {
				return
			}
		}
		select {
		case <-ch:
		case <-done:
			// The node wrote all it will write before it ended.
			l.mu.Lock()
			more := len(l.all) > seen
			l.mu.Unlock()
			if !more {
				t.Fatalf("nodetest: the node ended without %s", what)
			}
		case <-deadline.C:
			t.Fatalf("nodetest: no %s within a minute", what)
		}
	}
}

// watcher is a peer of the test's own on a run's topic. It judges
// nothing, so every validly signed message that reaches it is delivered
// to it, and it tells who sent one. It serves the run's spec to joiners,
// and nothing else.
type watcher struct {
	tr      *gossip.Transport
	addr    string
	spec    []byte
	cancel  context.CancelFunc
	mu      sync.Mutex
	authors map[peer.ID]bool
	changed chan struct{}
}

// watch starts a watcher connected to the node at join.
func (c *Cluster) watch(join string) *watcher {
	c.T.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		c.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	w := &watcher{spec: c.Spec.Canonical(), cancel: cancel, authors: map[peer.ID]bool{}, changed: make(chan struct{})}
	if w.tr, err = gossip.New(ctx, gossip.Config{Key: key, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Spec: c.Spec}, w); err != nil {
		cancel()
		c.T.Fatal(err)
	}
	// Connect returns once the node is identified: the watcher names it
	// to the peers that join through it.
	if _, err := w.tr.Connect(ctx, join); err != nil {
		w.close()
		c.T.Fatal(err)
	}
	w.addr = w.tr.Addrs()[0]
	go func() {
		for m := range w.tr.Messages() {
			w.mu.Lock()
			if !w.authors[m.Sender] {
				w.authors[m.Sender] = true
				close(w.changed)
				w.changed = make(chan struct{})
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watcher) close() {
	w.cancel()
	w.tr.Close()
}

// waitFrom waits until the watcher has received a message that n signed.
func (w *watcher) waitFrom(t testing.TB, n *Node) {
	t.Helper()
	id, err := peer.Decode(n.ID)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ok, ch := w.authors[id], w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-n.Done:
			t.Fatalf("nodetest: %s %s ended before it sent anything: %v", n.Behave, n.ID, n.Err)
		case <-deadline.C:
			t.Fatalf("nodetest: nothing from %s %s within a minute", n.Behave, n.ID)
		}
	}
}

// Spec implements gossip.Server.
func (w *watcher) Spec() []byte { return w.spec }

// State implements gossip.Server.
func (w *watcher) State(consensus.Hash) (consensus.State, bool) { return consensus.State{}, false }

// Updates implements gossip.Server.
func (w *watcher) Updates([]consensus.Hash) [][]byte { return nil }

// Evidence implements gossip.Server.
func (w *watcher) Evidence(uint64, consensus.Hash, []int) (trainer.Evidence, error) {
	return trainer.Evidence{}, errors.New("nodetest: a watcher holds no evidence")
}

// Answer implements gossip.Server.
func (w *watcher) Answer(uint64, consensus.Hash, int) (*consensus.Answer, error) {
	return nil, errors.New("nodetest: a watcher holds no evidence")
}

// Proof implements gossip.Server.
func (w *watcher) Proof(uint64) *consensus.Proof { return &consensus.Proof{} }
func (w *watcher) Blob(gossip.BlobRequest) (*trainer.Snapshot, bool) {
	return nil, false
}
