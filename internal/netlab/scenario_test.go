package netlab

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vtrain/vtrain/node"
)

// The scenarios run whole vtrain runs (real `vtrain node` processes, one
// per namespace) and take minutes of CPU each: they run only with
// VTRAIN_NETLAB=1 (benchmarks/netlab.sh), and write what they measured to
// $VTRAIN_NETLAB_OUT (a directory) when it is set. VTRAIN_NETLAB_ROUNDS
// sets the rounds (default 10), VTRAIN_NETLAB_STEPS the inner steps (default:
// the spec's 400).
func scenarios(t *testing.T) {
	t.Helper()
	if os.Getenv("VTRAIN_NETLAB") != "1" {
		t.Skip("a whole run in network namespaces (minutes of CPU): set VTRAIN_NETLAB=1, or run benchmarks/netlab.sh")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// repoRoot is the module's directory (this package is two below it).
func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// buildVtrain builds the binary once per test.
func buildVtrain(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vtrain")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/vtrain")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// peer is one node of a scenario.
type peer struct {
	name    string
	host    *Host
	founder bool
	id      string // peer ID
	idDir   string // holds its identity, copied into each run's out dir
}

// writeSpec writes the example spec with these rounds, inner steps (0:
// the spec's) and founders, each with a voting seat.
func writeSpec(t *testing.T, path string, rounds, steps int, founders []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "run.toml"))
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`(?m)^rounds = \d+`).ReplaceAllString(string(b), fmt.Sprintf("rounds = %d", rounds))
	if steps > 0 {
		s = regexp.MustCompile(`(?m)^steps = \d+`).ReplaceAllString(s, fmt.Sprintf("steps = %d", steps))
	}
	q := make([]string, len(founders))
	for i, f := range founders {
		q[i] = strconv.Quote(f)
	}
	s = regexp.MustCompile(`(?m)^genesis = \[\]`).ReplaceAllString(s, "genesis = ["+strings.Join(q, ", ")+"]")
	if len(founders) > 4 {
		s = regexp.MustCompile(`(?m)^voters = \d+`).ReplaceAllString(s, fmt.Sprintf("voters = %d", len(founders)))
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// outcome is what one node reported.
type outcome struct {
	Name     string              `json:"name"`
	Where    string              `json:"where"`
	Rounds   int                 `json:"rounds"`
	Final    string              `json:"final_hash"`
	Accuracy float64             `json:"test_accuracy"`
	Reach    node.Summary        `json:"-"`
	Reachab  any                 `json:"reachability"`
	Events   []string            `json:"events"`
	Reports  []*node.RoundReport `json:"-"`
	Seconds  float64             `json:"seconds"`
}

// runResult is a run's outcome over all its nodes.
type runResult struct {
	Network     string     `json:"network"`
	Rounds      int        `json:"rounds"`
	Agreed      bool       `json:"agreed"` // every node ended on the same hash
	Accuracy    float64    `json:"test_accuracy"`
	MedianRound float64    `json:"median_round_seconds"` // the first founder's
	Seconds     float64    `json:"seconds"`
	Nodes       []*outcome `json:"nodes"`
}

// running is a run in progress.
type running struct {
	peers []*peer
	procs []*Proc
	outs  []string
	start time.Time
}

// launch starts the peers of a run on their hosts (listening where listen
// says). The first founder starts the run; everyone else joins through it.
func launch(t *testing.T, bin, dir, spec string, peers []*peer, listen func(*peer) string) *running {
	t.Helper()
	r := &running{peers: peers, procs: make([]*Proc, len(peers)), outs: make([]string, len(peers)), start: time.Now()}
	var joinAddr, runID string
	for i, p := range peers {
		r.outs[i] = filepath.Join(dir, p.name)
		if err := os.MkdirAll(r.outs[i], 0o755); err != nil {
			t.Fatal(err)
		}
		key, err := os.ReadFile(filepath.Join(p.idDir, node.IdentityFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.outs[i], node.IdentityFile), key, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"node", "--out", r.outs[i], "--json", "--linger", "10s", "--listen", listen(p)}
		if i == 0 {
			args = append(args, "--spec", spec)
		} else {
			args = append(args, "--join", joinAddr, "--run", runID)
		}
		pr, err := p.host.Start(dir, p.name, bin, args...)
		if err != nil {
			t.Fatal(err)
		}
		r.procs[i] = pr
		if i == 0 {
			line, err := pr.WaitLine(`"event":"listening","msg":"join: /ip4/`, 2*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			var ev struct {
				Addr  string `json:"addr"`
				RunID string `json:"run_id"`
			}
			json.Unmarshal([]byte(line), &ev)
			joinAddr = ev.Addr
			first, err := pr.WaitLine(`"event":"started"`, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			json.Unmarshal([]byte(first), &ev)
			if regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ev.RunID) {
				runID = ev.RunID
			} else {
				t.Fatalf("no run ID in %q", first)
			}
		}
	}
	return r
}

// wait waits for every node to end and collects what they reported.
func (r *running) wait(t *testing.T, timeout time.Duration) *runResult {
	t.Helper()
	res := &runResult{}
	for i, pr := range r.procs {
		err := pr.Wait(max(timeout-time.Since(r.start), time.Second))
		o := parseOutput(r.peers[i], pr.Lines())
		o.Seconds = time.Since(r.start).Seconds()
		res.Nodes = append(res.Nodes, o)
		if err != nil {
			t.Errorf("%s: %v (its log: %s.err)", r.peers[i].name, err, r.peers[i].name)
		}
		var sum node.Summary
		if b, err := os.ReadFile(filepath.Join(r.outs[i], "summary.json")); err == nil && json.Unmarshal(b, &sum) == nil {
			o.Final, o.Accuracy, o.Reachab = sum.FinalHash, sum.TestAccuracy, sum.Reachability
		}
	}
	res.Seconds = time.Since(r.start).Seconds()
	res.Agreed = true
	for _, o := range res.Nodes {
		res.Agreed = res.Agreed && o.Final != "" && o.Final == res.Nodes[0].Final
	}
	res.Accuracy = res.Nodes[0].Accuracy
	res.Rounds = res.Nodes[0].Rounds
	res.MedianRound = medianRound(res.Nodes[0].Reports)
	return res
}

// startRun launches a run and waits for it to end.
func startRun(t *testing.T, bin, dir, spec string, peers []*peer, listen func(*peer) string, timeout time.Duration) *runResult {
	t.Helper()
	return launch(t, bin, dir, spec, peers, listen).wait(t, timeout)
}

func parseOutput(p *peer, lines []string) *outcome {
	o := &outcome{Name: p.name, Where: p.host.IP}
	if p.host.NAT != nil {
		o.Where = fmt.Sprintf("%s behind %s NAT %s (%s)", p.host.IP, p.host.NAT.Kind, p.host.NAT.Name, p.host.NAT.WAN)
	}
	for _, line := range lines {
		var ev struct{ Event, Msg string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event != "" && ev.Event != node.EventRound {
			if ev.Event != node.EventListening {
				o.Events = append(o.Events, ev.Msg)
			}
			continue
		}
		rep := &node.RoundReport{}
		if json.Unmarshal([]byte(line), rep) == nil && rep.Hash != "" {
			o.Reports = append(o.Reports, rep)
			o.Rounds = int(rep.Round) + 1
		}
	}
	return o
}

// medianRound is the median time between consecutive decided rounds.
func medianRound(reps []*node.RoundReport) float64 {
	var d []float64
	for i := 1; i < len(reps); i++ {
		if reps[i].Round == reps[i-1].Round+1 {
			d = append(d, reps[i].Seconds-reps[i-1].Seconds)
		}
	}
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// identities makes each peer's identity once, in its own directory.
func identities(t *testing.T, peers []*peer) []string {
	t.Helper()
	var founders []string
	for _, p := range peers {
		p.idDir = filepath.Join(t.TempDir(), p.name)
		_, id, err := node.LoadIdentity(p.idDir)
		if err != nil {
			t.Fatal(err)
		}
		p.id = id.String()
		if p.founder {
			founders = append(founders, p.id)
		}
	}
	return founders
}

func record(t *testing.T, name string, v any) {
	t.Helper()
	b, _ := json.MarshalIndent(v, "", "  ")
	t.Logf("%s: %s", name, b)
	if dir := os.Getenv("VTRAIN_NETLAB_OUT"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644)
		}
	}
}

func logDir(t *testing.T, name string) string {
	if dir := os.Getenv("VTRAIN_NETLAB_OUT"); dir != "" {
		d := filepath.Join(dir, name)
		os.RemoveAll(d)
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

// TestNATScenario: 5 peers, 3 public founders and 2 joiners behind two
// different NATs (no public address of their own), train the default spec;
// the same peers then train the same spec on loopback. It reports how the
// NATed peers were reached (hole punching or relay), and both accuracies.
// VTRAIN_NETLAB_NAT2=symmetric puts the second behind a symmetric NAT;
// VTRAIN_NETLAB_LOOPBACK=0 skips the loopback run.
func TestNATScenario(t *testing.T) {
	scenarios(t)
	l := lab(t)
	bin := buildVtrain(t)
	rounds, steps := envInt("VTRAIN_NETLAB_ROUNDS", 10), envInt("VTRAIN_NETLAB_STEPS", 0)
	kind2 := Cone
	if os.Getenv("VTRAIN_NETLAB_NAT2") == "symmetric" {
		kind2 = Symmetric
	}
	var peers []*peer
	for i := 1; i <= 3; i++ {
		h, err := l.Public(fmt.Sprintf("f%d", i))
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, &peer{name: h.Name, host: h, founder: true})
	}
	for i, kind := range []NATKind{Cone, kind2} {
		nat, err := l.NAT(fmt.Sprintf("nat%d", i+1), kind)
		if err != nil {
			t.Fatal(err)
		}
		h, err := nat.Host(fmt.Sprintf("n%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, &peer{name: h.Name, host: h})
	}
	founders := identities(t, peers)
	dir := logDir(t, "nat")
	spec := filepath.Join(dir, "spec.toml")
	writeSpec(t, spec, rounds, steps, founders)
	timeout := time.Duration(rounds)*3*time.Minute + 5*time.Minute

	natRun := startRun(t, bin, dir, spec, peers, func(p *peer) string {
		return fmt.Sprintf("/ip4/%s/tcp/4001", p.host.IP)
	}, timeout)
	natRun.Network = fmt.Sprintf("namespaces: 3 public, n1 behind a cone NAT, n2 behind a %v NAT", kind2)
	record(t, "nat", natRun)
	if !natRun.Agreed {
		t.Errorf("the NAT run's nodes ended on different hashes")
	}
	for _, o := range natRun.Nodes {
		if o.Rounds < rounds {
			t.Errorf("%s (%s) saw %d of %d rounds", o.Name, o.Where, o.Rounds, rounds)
		}
	}
	if os.Getenv("VTRAIN_NETLAB_LOOPBACK") == "0" {
		return
	}

	loop, err := l.Public("loop")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		p.host = loop
	}
	ldir := logDir(t, "loopback")
	loopRun := startRun(t, bin, ldir, spec, peers, func(*peer) string { return "/ip4/127.0.0.1/tcp/0" }, timeout)
	loopRun.Network = "loopback (one namespace)"
	record(t, "loopback", loopRun)
	t.Logf("accuracy: NAT run %.4f, loopback %.4f (difference %.2f points)", natRun.Accuracy, loopRun.Accuracy, 100*(natRun.Accuracy-loopRun.Accuracy))
}

// TestPartitionScenario: 7 public founders (7 voters) train; once round 1 is
// decided, 2 of them are cut off from the other 5 for 60 s (VTRAIN_NETLAB_CUT
// seconds). The 5 hold more than two thirds of the votes and go on; the 2
// cannot decide and say why; after the partition heals the 2 catch up by
// certificates, and all 7 must be on the same hash within 2 rounds.
func TestPartitionScenario(t *testing.T) {
	scenarios(t)
	l := lab(t)
	bin := buildVtrain(t)
	rounds, steps := envInt("VTRAIN_NETLAB_ROUNDS", 10), envInt("VTRAIN_NETLAB_STEPS", 0)
	cutFor := time.Duration(envInt("VTRAIN_NETLAB_CUT", 60)) * time.Second
	var peers []*peer
	for i := 1; i <= 7; i++ {
		h, err := l.Public(fmt.Sprintf("p%d", i))
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, &peer{name: h.Name, host: h, founder: true})
	}
	founders := identities(t, peers)
	dir := logDir(t, "partition")
	spec := filepath.Join(dir, "spec.toml")
	writeSpec(t, spec, rounds, steps, founders)
	timeout := time.Duration(rounds)*3*time.Minute + 5*time.Minute + cutFor
	run := launch(t, bin, dir, spec, peers, func(p *peer) string { return fmt.Sprintf("/ip4/%s/tcp/4001", p.host.IP) })
	if _, err := run.procs[0].WaitLine(`"round":1,`, timeout); err != nil {
		t.Fatal(err)
	}
	minority := []*Host{peers[5].host, peers[6].host}
	decided := func(i int) int { return len(parseOutput(peers[i], run.procs[i].Lines()).Reports) }
	before := []int{decided(0), decided(5), decided(6)}
	heal, err := l.Partition(minority...)
	if err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	time.Sleep(cutFor)
	during := []int{decided(0) - before[0], decided(5) - before[1], decided(6) - before[2]}
	healRound := parseOutput(peers[0], run.procs[0].Lines()).Rounds - 1 // the majority's last decided round
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	healedAt := time.Now()
	res := run.wait(t, timeout)
	res.Network = fmt.Sprintf("namespaces: 7 public founders; p6 and p7 cut off for %v after round 1", cutFor)

	type side struct {
		Name          string   `json:"name"`
		DecidedDuring int      `json:"rounds_decided_during_partition"`
		Said          []string `json:"said_during_partition,omitempty"`
		SameHashAt    int      `json:"same_hash_from_round"` // first round after healing on the majority's hash
		Restored      bool     `json:"caught_up_by_certificate"`
	}
	hashes := map[uint64]string{}
	for _, rep := range res.Nodes[0].Reports {
		hashes[rep.Round] = rep.Hash
	}
	report := struct {
		Run             *runResult `json:"run"`
		HealRound       int        `json:"majority_round_at_heal"`
		MajorityDecided int        `json:"majority_rounds_decided_during_partition"`
		Minority        []side     `json:"minority"`
		Cut             string     `json:"cut"`
	}{Run: res, HealRound: healRound, MajorityDecided: during[0], Cut: fmt.Sprintf("%v (%s to %s)", cutFor, cutAt.UTC().Format(time.TimeOnly), healedAt.UTC().Format(time.TimeOnly))}
	for k, i := range []int{5, 6} {
		o := res.Nodes[i]
		s := side{Name: o.Name, DecidedDuring: during[k+1], SameHashAt: -1}
		for _, e := range o.Events {
			if strings.Contains(e, "waiting for a quorum") || strings.Contains(e, "deciding again") {
				s.Said = append(s.Said, e)
			}
		}
		// The first round after the cut that it reports on the majority's
		// hash: one it decided after healing, or one it adopted by
		// certificate (a restored round up to healRound).
		for _, rep := range o.Reports[before[k+1]:] {
			if rep.Hash == hashes[rep.Round] && (int(rep.Round) > healRound || rep.Restored) {
				s.SameHashAt, s.Restored = int(rep.Round), rep.Restored
				break
			}
		}
		report.Minority = append(report.Minority, s)
		if s.DecidedDuring > 1 {
			t.Errorf("%s decided %d rounds while cut off from a quorum", o.Name, s.DecidedDuring)
		}
		if len(s.Said) == 0 {
			t.Errorf("%s never said why it stopped deciding", o.Name)
		}
		if s.SameHashAt < 0 || s.SameHashAt > healRound+2 {
			t.Errorf("%s on the majority's hash from round %d; the partition healed at round %d", o.Name, s.SameHashAt, healRound)
		}
	}
	record(t, "partition", report)
	if during[0] == 0 {
		t.Errorf("the majority decided no round during the partition")
	}
	if !res.Agreed {
		t.Errorf("the nodes ended on different hashes")
	}
}

// TestLinksScenario: 5 public founders train with every host's packets
// delayed 100 ms ± 30 ms (so every link has that one-way latency) and 5%
// of them lost, then the same peers and spec on loopback: accuracy and
// median round time side by side. VTRAIN_NETLAB_DELAY_MS, _JITTER_MS and
// _LOSS_PCT change the link.
func TestLinksScenario(t *testing.T) {
	scenarios(t)
	l := lab(t)
	bin := buildVtrain(t)
	rounds, steps := envInt("VTRAIN_NETLAB_ROUNDS", 10), envInt("VTRAIN_NETLAB_STEPS", 0)
	delay := time.Duration(envInt("VTRAIN_NETLAB_DELAY_MS", 100)) * time.Millisecond
	jitter := time.Duration(envInt("VTRAIN_NETLAB_JITTER_MS", 30)) * time.Millisecond
	loss := float64(envInt("VTRAIN_NETLAB_LOSS_PCT", 5)) / 100
	var peers []*peer
	how := ""
	for i := 1; i <= 5; i++ {
		h, err := l.Public(fmt.Sprintf("l%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if how, err = h.Delay(delay, jitter, uint64(i)); err != nil {
			t.Fatal(err)
		}
		if err := h.Shape("", loss); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, &peer{name: h.Name, host: h, founder: true})
	}
	founders := identities(t, peers)
	dir := logDir(t, "links")
	spec := filepath.Join(dir, "spec.toml")
	writeSpec(t, spec, rounds, steps, founders)
	timeout := time.Duration(rounds)*3*time.Minute + 5*time.Minute
	shaped := startRun(t, bin, dir, spec, peers, func(p *peer) string { return fmt.Sprintf("/ip4/%s/tcp/4001", p.host.IP) }, timeout)
	shaped.Network = fmt.Sprintf("namespaces: 5 public founders, every host's packets delayed %v ± %v (%s) and %.0f%% lost", delay, jitter, how, 100*loss)
	record(t, "links", shaped)
	loop, err := l.Public("loop")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		p.host = loop
	}
	loopRun := startRun(t, bin, logDir(t, "links-loopback"), spec, peers, func(*peer) string { return "/ip4/127.0.0.1/tcp/0" }, timeout)
	loopRun.Network = "loopback (one namespace)"
	record(t, "links-loopback", loopRun)
	if !shaped.Agreed {
		t.Errorf("the shaped run's nodes ended on different hashes")
	}
	t.Logf("accuracy: shaped %.4f, loopback %.4f (difference %.2f points); median round %.1f s against %.1f s",
		shaped.Accuracy, loopRun.Accuracy, 100*(shaped.Accuracy-loopRun.Accuracy), shaped.MedianRound, loopRun.MedianRound)
}

// TestSlowLinkScenario: 5 public founders train the default spec, one of
// them behind a slow link (1 Mbit/s each way by token buckets, its packets
// delayed 300 ms), then the same peers and spec with plain links. It
// reports both median round times, the deadlines the rounds agreed, and
// in how many rounds the slow peer's update was aggregated (how many of
// them late: its update of the round before) and in how many it was
// reported late. VTRAIN_NETLAB_SLOW_KBIT and _SLOW_MS change the
// slow link.
func TestSlowLinkScenario(t *testing.T) {
	scenarios(t)
	l := lab(t)
	bin := buildVtrain(t)
	rounds, steps := envInt("VTRAIN_NETLAB_ROUNDS", 10), envInt("VTRAIN_NETLAB_STEPS", 0)
	rate := fmt.Sprintf("%dkbit", envInt("VTRAIN_NETLAB_SLOW_KBIT", 1000))
	delay := time.Duration(envInt("VTRAIN_NETLAB_SLOW_MS", 300)) * time.Millisecond
	var peers []*peer
	for i := 1; i <= 5; i++ {
		h, err := l.Public(fmt.Sprintf("s%d", i))
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, &peer{name: h.Name, host: h, founder: true})
	}
	slow := peers[4] // not the first founder: it starts the run, the others join through it
	how, err := slow.host.Delay(delay, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.host.Shape(rate, 0); err != nil {
		t.Fatal(err)
	}
	if err := slow.host.ShapeIn(rate); err != nil {
		t.Fatal(err)
	}
	founders := identities(t, peers)
	dir := logDir(t, "slowlink")
	spec := filepath.Join(dir, "spec.toml")
	writeSpec(t, spec, rounds, steps, founders)
	timeout := time.Duration(rounds)*3*time.Minute + 5*time.Minute
	listen := func(p *peer) string { return fmt.Sprintf("/ip4/%s/tcp/4001", p.host.IP) }
	shaped := startRun(t, bin, dir, spec, peers, listen, timeout)
	shaped.Network = fmt.Sprintf("namespaces: 5 public founders, %s at %s each way and its packets delayed %v (%s)", slow.name, rate, delay, how)
	st := slowStats(shaped.Nodes[0].Reports, slow.id)
	record(t, "slowlink", struct {
		*runResult
		Slow slowLink `json:"slow_peer"`
	}{shaped, st})
	for i := range peers {
		h, err := l.Public(fmt.Sprintf("f%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		peers[i].host = h
	}
	plain := startRun(t, bin, logDir(t, "slowlink-plain"), spec, peers, listen, timeout)
	plain.Network = "namespaces: the same 5 founders, plain links"
	pst := slowStats(plain.Nodes[0].Reports, slow.id)
	record(t, "slowlink-plain", struct {
		*runResult
		Slow slowLink `json:"slow_peer"`
	}{plain, pst})
	if !shaped.Agreed {
		t.Errorf("the shaped run's nodes ended on different hashes")
	}
	t.Logf("median round %.1f s with the slow link, %.1f s without (%.2fx); the slow peer's update aggregated in %d of %d rounds (%d of them late), reported late in %d; deadline median %.1f s (plain: %.1f s)",
		shaped.MedianRound, plain.MedianRound, shaped.MedianRound/plain.MedianRound, st.Aggregated, st.Rounds, st.LateIn, st.Late, st.Deadline, pst.Deadline)
}

// slowLink is what the first founder's reports say of the slow peer.
type slowLink struct {
	Rounds     int     `json:"rounds"`          // decided (not adopted) rounds
	Aggregated int     `json:"aggregated"`      // rounds that aggregated its update (of the round, or late)
	LateIn     int     `json:"aggregated_late"` // of those, rounds that aggregated its update of the round before (late)
	Late       int     `json:"late"`            // rounds that reported it late
	Deadline   float64 `json:"median_deadline_seconds"`
}

func slowStats(reps []*node.RoundReport, id string) slowLink {
	var s slowLink
	var ds []float64
	for _, r := range reps {
		if r.Restored {
			continue
		}
		s.Rounds++
		if slices.Contains(r.Authors, id) {
			s.Aggregated++
		}
		if slices.Contains(r.LateIn, id) {
			s.LateIn++
		}
		if slices.Contains(r.Late, id) {
			s.Late++
		}
		ds = append(ds, r.DeadlineSeconds)
	}
	if len(ds) > 0 {
		slices.Sort(ds)
		s.Deadline = ds[len(ds)/2]
	}
	return s
}
