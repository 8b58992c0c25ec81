package monitor_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/vtrain/vtrain/internal/testenv"
	"github.com/vtrain/vtrain/monitor"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/node/nodetest"
)

// watched is a cluster whose nodes each have a monitor served on
// loopback, as `vtrain node --http 127.0.0.1:0` does.
type watched struct {
	*nodetest.Cluster
	mu   sync.Mutex
	urls map[string]string // by peer ID: the monitor's base URL
}

// startWatched starts n founders of a run of rounds rounds, each node
// evaluating the agreed model every round and serving its monitor.
func startWatched(t *testing.T, n, rounds int, opts ...nodetest.Option) *watched {
	t.Helper()
	w := &watched{urls: map[string]string{}}
	w.Cluster = nodetest.Start(t, n, rounds, nil, append(opts, nodetest.WithConfig(func(id string, cfg *node.Config) {
		m := monitor.New()
		srv, err := monitor.Serve("127.0.0.1:0", m, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		cfg.Observer, cfg.EvalEvery = m, 1
		w.mu.Lock()
		w.urls[id] = srv.URL()
		w.mu.Unlock()
	}))...)
	return w
}

func (w *watched) url(n *nodetest.Node) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.urls[n.ID]
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// scrape is one /metrics exposition, parsed.
type scrape struct {
	raw  []byte
	fams map[string]*dto.MetricFamily
}

func scrapeOf(t *testing.T, url string) scrape {
	t.Helper()
	raw := get(t, url+"metrics")
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse %smetrics: %v", url, err)
	}
	return scrape{raw, fams}
}

// value sums the family's samples whose labels include want (name=value
// pairs); ok is false if the family or such a sample is absent.
func (s scrape) value(name string, want ...string) (float64, bool) {
	f := s.fams[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum, found
}

func (s scrape) must(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	v, ok := s.value(name, want...)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, want)
	}
	return v
}

// promtoolCheck runs `promtool check metrics` on an exposition: it parses
// it and lints names, types, units and help texts.
func promtoolCheck(t *testing.T, promtool string, raw []byte) {
	t.Helper()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestMetricsOfLiveNodes runs three nodes, each serving its monitor over
// HTTP, scrapes /metrics from each twice, a few rounds apart, checks each
// scrape with promtool, and checks the values: the round advances, bytes
// grow, the members, decisions, evaluations and checks are there, and
// each node has its own registry (its own peer in vtrain_info).
func TestMetricsOfLiveNodes(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	testenv.Require(t, err == nil, "promtool not found (apt-get install prometheus)")
	w := startWatched(t, 3, 6)
	first := map[string]scrape{}
	for _, n := range w.Nodes {
		n.WaitRound(t, 1)
		first[n.ID] = scrapeOf(t, w.url(n))
	}
	for _, n := range w.Nodes {
		n.WaitRound(t, 3)
		s := scrapeOf(t, w.url(n))
		promtoolCheck(t, promtool, s.raw)
		f := first[n.ID]
		if r0, r1 := f.must(t, "vtrain_round"), s.must(t, "vtrain_round"); r1 <= r0 || r1 < 4 {
			t.Errorf("node %s: vtrain_round %v then %v, want it to advance to 4 or more", n.ID, r0, r1)
		}
		for _, dir := range []string{"in", "out"} {
			b0, b1 := f.must(t, "vtrain_wire_bytes_total", "direction", dir), s.must(t, "vtrain_wire_bytes_total", "direction", dir)
			if b1 <= b0 || b0 <= 0 {
				t.Errorf("node %s: %s bytes %v then %v, want them to grow", n.ID, dir, b0, b1)
			}
		}
		if u0, u1 := f.must(t, "vtrain_wire_bytes_total", "direction", "out", "category", "updates"), s.must(t, "vtrain_wire_bytes_total", "direction", "out", "category", "updates"); u1 <= u0 {
			t.Errorf("node %s: update bytes out %v then %v, want them to grow", n.ID, u0, u1)
		}
		if v := s.must(t, "vtrain_members"); v != 3 {
			t.Errorf("node %s: vtrain_members %v, want 3", n.ID, v)
		}
		// Connected: node 0 at least (the others joined through it; they
		// meet each other in the background).
		if v := s.must(t, "vtrain_peers"); v < 1 || v > 2 {
			t.Errorf("node %s: vtrain_peers %v, want 1 or 2", n.ID, v)
		}
		if v := s.must(t, "vtrain_info", "peer", n.ID, "run_id", w.Spec.RunID().String()); v != 1 {
			t.Errorf("node %s: vtrain_info %v", n.ID, v)
		}
		if d := s.must(t, "vtrain_rounds_decided_total"); d < 4 {
			t.Errorf("node %s: %v rounds decided, want 4 or more", n.ID, d)
		}
		if a := s.must(t, "vtrain_agreed_accuracy_ratio"); a <= 0 || a > 1 {
			t.Errorf("node %s: agreed accuracy %v", n.ID, a)
		}
		if l := s.must(t, "vtrain_agreed_loss"); l <= 0 {
			t.Errorf("node %s: agreed loss %v", n.ID, l)
		}
		if u := s.must(t, "vtrain_updates_aggregated_total"); u < 4 {
			t.Errorf("node %s: %v updates aggregated", n.ID, u)
		}
		if k := s.must(t, "vtrain_train_steps_total"); k < float64(4*w.Spec.Inner.Steps) {
			t.Errorf("node %s: %v train steps", n.ID, k)
		}
		for _, h := range []string{"vtrain_round_duration_seconds", "vtrain_certificate_latency_seconds", "vtrain_train_step_seconds"} {
			if c := s.must(t, h); c < 2 {
				t.Errorf("node %s: %s has %v observations", n.ID, h, c)
			}
		}
		for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "vtrain_state_sync_seconds", "vtrain_rejected_messages_total", "vtrain_challenges_total"} {
			if _, ok := s.fams[name]; !ok && name != "vtrain_rejected_messages_total" {
				t.Errorf("node %s: no %s", n.ID, name)
			}
		}
		// Each peer of the run has its own series, as a member.
		for _, p := range w.Nodes {
			if v, ok := s.value("vtrain_peer_updates_aggregated_total", "peer", p.ID); !ok || v < 1 {
				t.Errorf("node %s: peer %s aggregated %v (%v)", n.ID, p.ID, v, ok)
			}
		}
	}
	w.Wait()
}

// TestStateOfLiveNodes reads /api/state of a live run: the full run ID,
// the certified members, a curve point per decided round with the agreed
// accuracy, and a contribution row per member.
func TestStateOfLiveNodes(t *testing.T) {
	w := startWatched(t, 3, 3)
	n := w.Nodes[1]
	n.WaitRound(t, 1)
	var s monitor.State
	if err := json.Unmarshal(get(t, w.url(n)+"api/state"), &s); err != nil {
		t.Fatal(err)
	}
	if s.RunID != w.Spec.RunID().String() || len(s.RunID) != 64 || s.Peer != n.ID {
		t.Errorf("run %q peer %q, want %s and %s", s.RunID, s.Peer, w.Spec.RunID(), n.ID)
	}
	if len(s.Members) != 3 || s.Decided < 1 || len(s.Rounds) < 2 {
		t.Fatalf("members %d, decided %d, %d rounds", len(s.Members), s.Decided, len(s.Rounds))
	}
	for _, r := range s.Rounds {
		if r.AgreedAccuracy == nil || r.InnerLoss == nil || r.BytesOut == 0 {
			t.Errorf("round %d: %+v", r.Round, r)
		}
	}
	var later monitor.State
	if err := json.Unmarshal(get(t, w.url(n)+"api/state?since=0"), &later); err != nil {
		t.Fatal(err)
	}
	if len(later.Rounds) == 0 || later.Rounds[0].Round != 1 {
		t.Errorf("?since=0 gave rounds %+v, want those from round 1", later.Rounds)
	}
	resp, err := http.Get(w.url(n) + "api/state?since=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("?since=x: %s, want 400 Bad Request", resp.Status)
	}
	rows := map[string]monitor.Contributor{}
	for _, c := range s.Contributors {
		rows[c.Peer] = c
	}
	for _, p := range w.Nodes {
		c, ok := rows[p.ID]
		if !ok || !c.Member || !c.Founder || c.Aggregated < 1 || c.Seen < c.Aggregated || c.Acceptance == nil || c.WaitRounds == nil || c.Credit == 0 {
			t.Errorf("peer %s: %+v", p.ID, c)
		}
	}
	w.Wait()
	if err := json.Unmarshal(get(t, w.url(n)+"api/state"), &s); err != nil || s.Stopped == nil {
		t.Errorf("after the run: stopped %v (%v)", s.Stopped, err)
	}
	if !strings.Contains(string(get(t, w.url(n))), "app.js") {
		t.Error("the dashboard page does not load its script")
	}
}

// TestLateUpdatesShown runs a member that hands in every update only
// after its round was decided (the "late" behaviour: a slow link): an
// honest node's state and metrics count it a straggler, and count the
// updates later rounds took late.
func TestLateUpdatesShown(t *testing.T) {
	// Four voters: a quorum (three) decides without the slow one.
	w := startWatched(t, 4, 6, nodetest.WithBehave(3, "late"))
	w.Wait()
	slow := w.Nodes[3]
	for _, n := range w.Nodes[:3] {
		var s monitor.State
		if err := json.Unmarshal(get(t, w.url(n)+"api/state"), &s); err != nil {
			t.Fatal(err)
		}
		for _, c := range s.Contributors {
			switch {
			case c.Peer == slow.ID && (c.Late < 3 || c.TakenLate < 1 || c.TakenLate > c.Late):
				t.Errorf("%s sees the slow member late in %d rounds, %d taken late; want 3 or more, and at least one taken", n.ID, c.Late, c.TakenLate)
			case c.Peer != slow.ID && c.TakenLate != 0:
				t.Errorf("%s sees %s's updates taken late %d times", n.ID, c.Peer, c.TakenLate)
			}
		}
		sc := scrapeOf(t, w.url(n))
		if late, taken := sc.must(t, "vtrain_stragglers_total"), sc.must(t, "vtrain_updates_taken_late_total"); late < 3 || taken < 1 {
			t.Errorf("%s: vtrain_stragglers_total %v, vtrain_updates_taken_late_total %v", n.ID, late, taken)
		}
	}
}

// TestExampleScrapeConfig checks examples/prometheus.yml with promtool.
func TestExampleScrapeConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	testenv.Require(t, err == nil, "promtool not found (apt-get install prometheus)")
	out, err := exec.Command(promtool, "check", "config", "../examples/prometheus.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}
