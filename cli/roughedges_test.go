package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vtrain/vtrain/history"
	"github.com/vtrain/vtrain/node"
)

// The rough edges a new user hit (issue 14), one regression test each
// (some in the packages that own them: node's TestStalledNodeSaysWhy,
// TestMinPeers and TestRestartResumes; ledger's
// TestCorruptErrorNamesNoUnknownByte; gossip's TestWireNamesPeersPlainly).

const someAddr = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWNpNvXTNUoxWHVryHkVMEfzmna7LYoxfpz1ZuXgznqoni"

// TestRoughEdgeUsageErrors: inputs that were accepted, or failed with
// exit 1, are usage errors (exit 2, one line) before anything starts.
func TestRoughEdgeUsageErrors(t *testing.T) {
	zero := strings.Repeat("0", 64)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "--spec", "x.toml", "--linger", "-5s"}, "--linger must not be negative"},
		{[]string{"node", "--spec", "x.toml", "--linger-max", "-1m"}, "--linger-max must not be negative"},
		{[]string{"node", "--join", someAddr, "--join-patience", "-1s"}, "--join-patience must not be negative"},
		{[]string{"node", "--spec", "x.toml", "--join-patience", "1m"}, "--join-patience applies to --join"},
		{[]string{"train", "--steps", "0"}, "--steps must be positive"},
		{[]string{"node", "--join", "garbage"}, `--join "garbage" is not a peer's address`},
		{[]string{"node", "--join", "/ip4/127.0.0.1/tcp/1"}, "is not a peer's address"},
		{[]string{"node", "--join", someAddr, "--run", zero}, "names no run"},                              // all zeros joined any run
		{[]string{"node", "--join", someAddr, "--run", "e9dacee5"}, "give all 64 hex digits when joining"}, // a prefix checks nothing against the dialed peer
		{[]string{"node", "--join", someAddr, "--run", "xyz"}, "is not a run ID"},
		{[]string{"node", "--spec", "x.toml", "--run", strings.Repeat("ab", 32)}, "--run applies to joining"},
		{[]string{"node"}, "give --spec to start a run, --join to join one, or --out DIR"},
		{[]string{"node", "--out", "/nonexistent/vtrain-dir"}, "no run to resume"},
		{[]string{"node", "--spec", "x.toml", "--log-level", "loud"}, "--log-level must be"},
		{[]string{"node", "--join", someAddr, "--min-peers", "3"}, "--min-peers applies to the node that starts a run"},
		{[]string{"demo", "--log-level", "loud"}, "--log-level must be"},
		{[]string{"demo", "--peers", "3", "--private", "3"}, "--private must be 0..2"},
		{[]string{"demo", "--private", "-2"}, "--private must be"},
		{[]string{"demo", "--zk-keys", "keys"}, "--zk-keys applies with --private"},
	} {
		code, _, stderr := vtrain(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
		oneLine(t, strings.Join(tc.args, " "), stderr)
	}
}

// TestRoughEdgeMessages: an error wrapped through layers names each
// prefix once ("node: node: ledger: ledger:" was seen), and a ledger that
// is not one is one plain line.
func TestRoughEdgeMessages(t *testing.T) {
	for in, want := range map[string]string{
		"node: node: ledger: ledger: x.vtl: entry 0: bad": "ledger: x.vtl: entry 0: bad",
		"node: checkpoint c is of run a, not b":           "checkpoint c is of run a, not b",
		"gossip: connecting to A: failed to dial":         "gossip: connecting to A: failed to dial",
	} {
		if got := message("node", errors.New(in)); got != want {
			t.Errorf("message(%q) = %q, want %q", in, got, want)
		}
	}
	dir := t.TempDir()
	spec := oneNodeSpec(t, 3)
	os.WriteFile(filepath.Join(dir, "ledger.vtl"), []byte("not a ledger"), 0o644)
	code, _, stderr := vtrain(t, "node", "--spec", spec, "--out", dir, "--data", "synthetic")
	if code != 1 || !strings.Contains(stderr, "ledger: ") || repeats(stderr) || strings.Contains(stderr, "<peer.ID") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	oneLine(t, "a bad ledger", stderr)
}

// TestRoughEdgeDemoRatios: a demo whose peers sent nothing prints "n/a",
// not "0x" or "+Infx".
func TestRoughEdgeDemoRatios(t *testing.T) {
	var b bytes.Buffer
	printDemo(&b, demoResult{Peers: 2, Rounds: 1, DenseBytesPerRound: 31400})
	if s := b.String(); strings.Contains(s, "Inf") || regexp.MustCompile(`\b0(\.0)?x`).MatchString(s) || !strings.Contains(s, "n/a") {
		t.Errorf("summary with nothing sent:\n%s", s)
	}
	b.Reset()
	printDemo(&b, demoResult{Peers: 2, Rounds: 1, DenseBytesPerRound: 31400, CompressionRatio: 615.4, PayloadBytes: 51, BytesSentPerPeerRound: 3140})
	if s := b.String(); !strings.Contains(s, "615.4x below dense") || !strings.Contains(s, "10.0x (updates") {
		t.Errorf("summary:\n%s", s)
	}
}

// TestRoughEdgeTrainHeaderFirst: train names what it trains before it
// trains, not after (its notes during training come after the header).
func TestRoughEdgeTrainHeaderFirst(t *testing.T) {
	var both bytes.Buffer
	code := run([]string{"train", "--model", "logreg", "--data", "synthetic", "--steps", "4", "--eval-every", "2"}, &both, &both)
	s := both.String()
	h, n := strings.Index(s, "model logreg"), strings.Index(s, "step 2 (epoch")
	if code != 0 || h < 0 || n < 0 || h > n || strings.Count(s, "model logreg") != 1 {
		t.Fatalf("exit %d, output:\n%s", code, s)
	}
}

// oneNodeSpec writes a one-founder spec (the node that starts it) of a
// small, fast run.
func oneNodeSpec(t *testing.T, rounds int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "run.toml")
	os.WriteFile(p, []byte(fmt.Sprintf(`
[run]
rounds = %d
[model]
kind = "logreg"
[data]
source = "synthetic"
[inner]
steps = 10
[rounds]
timeout = "5s"
commit_timeout = "1s"
`, rounds)), 0o644)
	return p
}

type jsonLine map[string]any

func jsonLines(t *testing.T, out string) []jsonLine {
	t.Helper()
	var ls []jsonLine
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l jsonLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		ls = append(ls, l)
	}
	return ls
}

// TestNodeScriptableOutput runs a short one-node run with --json and
// checks what a script reads: typed events with timestamps, the full run
// ID and the join command at start, round lines that say which loss is
// the inner one and carry the agreed model's figures where evaluated, one
// metrics.jsonl line per round, peer counts that agree with summary.json,
// and a plot of the run. Then it restarts the node with its --out alone
// and a run-ID prefix.
func TestNodeScriptableOutput(t *testing.T) {
	dir := t.TempDir()
	code, out, stderr := vtrain(t, "node", "--spec", oneNodeSpec(t, 3), "--out", dir, "--data", "synthetic", "--json", "--linger", "0s", "--eval-every", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(stderr, "level=") {
		t.Errorf("log lines in a clean run's output: %q", stderr)
	}
	ls := jsonLines(t, out)
	full := regexp.MustCompile(`^[0-9a-f]{64}$`)
	var runID string
	var rounds []jsonLine
	for i, l := range ls {
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["t"])); err != nil {
			t.Errorf("line %d has no time: %v", i, l)
		}
		switch l["event"] {
		case node.EventStarted:
			runID = fmt.Sprint(l["run_id"])
			if i != 0 || !full.MatchString(runID) || l["out"] != dir {
				t.Errorf("start event %v", l)
			}
		case node.EventListening:
			if want := fmt.Sprintf("vtrain node --join %s --run %s", l["addr"], runID); l["join"] != want {
				t.Errorf("join command %q, want %q", l["join"], want)
			}
		case node.EventRound:
			rounds = append(rounds, l)
		case nil, "":
			t.Errorf("line %d is not typed: %v", i, l)
		}
	}
	if len(rounds) != 3 {
		t.Fatalf("%d round lines", len(rounds))
	}
	for i, r := range rounds {
		_, inner := r["inner_loss"]
		_, acc := r["agreed_accuracy"]
		if !inner || acc != (i == 1 || i == 2) {
			t.Errorf("round %d line %v: want inner_loss, agreed_accuracy in rounds 1 and 2", i, r)
		}
	}
	recs, err := history.Read(dir)
	if err != nil || len(recs) != 3 || recs[2].AgreedAccuracy == nil || recs[0].AgreedAccuracy != nil || recs[2].Decision.Hash == "" {
		t.Fatalf("metrics.jsonl: %v %+v", err, recs)
	}
	sum, err := readSummary(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if last := rounds[2]["peers"].(float64); int(last) != sum.Stats.Peers || recs[2].Peers != sum.Stats.Peers {
		t.Errorf("peers: round line %v, metrics.jsonl %d, summary.json %d", last, recs[2].Peers, sum.Stats.Peers)
	}
	// The plot of the run.
	img := filepath.Join(t.TempDir(), "curves.png")
	if code, _, stderr := vtrain(t, "plot", dir, "--out", img); code != 0 {
		t.Fatalf("plot exit %d: %s", code, stderr)
	}
	checkPlot(t, img)
	// Restarted with its --out alone (and a prefix of its run's ID, which
	// its own disk cannot confuse): it resumes at the end of the run.
	code, out, stderr = vtrain(t, "node", "--out", dir, "--run", runID[:8], "--json", "--linger", "0s")
	if code != 0 {
		t.Fatalf("restart exit %d: %s", code, stderr)
	}
	if l := jsonLines(t, out)[0]; l["event"] != node.EventStarted || l["round"].(float64) != 3 || l["run_id"] != runID {
		t.Errorf("restart: %v", l)
	}
	if s, _ := readSummary(filepath.Join(dir, "summary.json")); s == nil || s.Restarts != 1 || s.UpdatesSent != sum.UpdatesSent {
		t.Errorf("summary after the restart: %+v", s)
	}
	code, _, stderr = vtrain(t, "node", "--out", dir, "--run", "deadbeef")
	if code != 2 || !strings.Contains(stderr, "holds run "+runID) {
		t.Errorf("a wrong prefix: exit %d, %q", code, stderr)
	}
}

// checkPlot checks that a PNG decodes to a plot of a useful size with
// curves on it: a fair number of distinct colours, not a blank canvas.
func checkPlot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	colours := map[[3]uint32]int{}
	nonWhite := 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}]++
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				nonWhite++
			}
		}
	}
	if b.Dx() < 600 || b.Dy() < 600 || len(colours) < 20 || nonWhite < b.Dx()*b.Dy()/4/100 {
		t.Errorf("%s: %v, %d colours, %d of %d sampled pixels drawn", path, b, len(colours), nonWhite, b.Dx()*b.Dy()/4)
	}
}

// TestNodeTextOutput: in text mode the node says where it writes when
// --out is not given, prints the full run ID and the join command, labels
// the inner loss, and prints no log record among its lines; a node whose
// run fails leaves no temporary directory behind.
func TestNodeTextOutput(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	code, out, stderr := vtrain(t, "node", "--spec", oneNodeSpec(t, 2), "--data", "synthetic", "--linger", "0s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !regexp.MustCompile(`run [0-9a-f]{64} .*; output in `+regexp.QuoteMeta(tmp)+`/vtrain-node-`).MatchString(out) ||
		!regexp.MustCompile(`to join: vtrain node --join /ip4/\S+ --run [0-9a-f]{64}\n`).MatchString(out) ||
		!strings.Contains(out, "inner loss ") || strings.Contains(out+stderr, "level=") {
		t.Errorf("output:\n%s\nstderr:\n%s", out, stderr)
	}
	kept, _ := filepath.Glob(filepath.Join(tmp, "vtrain-node-*"))
	if len(kept) != 1 {
		t.Fatalf("a finished run keeps its directory: %v", kept)
	}
	os.RemoveAll(kept[0])
	// Nothing listens at someAddr: the join fails, and takes its
	// directory with it.
	code, _, stderr = vtrain(t, "node", "--join", someAddr, "--data", "synthetic")
	if code != 1 {
		t.Fatalf("a failed join: exit %d, %q", code, stderr)
	}
	oneLine(t, "a failed join", stderr)
	if left, _ := filepath.Glob(filepath.Join(tmp, "vtrain-node-*")); len(left) != 0 {
		t.Errorf("a failed run left %v", left)
	}
}

// repeats reports whether a message repeats a prefix ("a: a: " or
// "a: b: a: b: ").
func repeats(s string) bool {
	p := strings.Split(s, ": ")
	for i := 1; i < len(p); i++ {
		if p[i] == p[i-1] || i >= 3 && p[i] == p[i-2] && p[i-1] == p[i-3] {
			return true
		}
	}
	return false
}
