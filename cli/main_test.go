package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
)

func vtrain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// oneLine asserts an error is a single line that names vtrain and is not a
// Go panic.
func oneLine(t *testing.T, what, stderr string) {
	t.Helper()
	s := strings.TrimRight(stderr, "\n")
	if strings.Contains(s, "\n") || !strings.HasPrefix(s, "vtrain") || strings.Contains(s, "panic") || strings.Contains(s, "goroutine") {
		t.Errorf("%s: want a one-line error, got %q", what, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"train", "--model", "resnet"},
		{"train", "--batch", "-4"},
		{"train", "--batch", "0"},
		{"train", "--epochs", "-1"},
		{"train", "--lr", "-0.1"},
		{"train", "--optimizer", "lamb"},
		{"train", "--hidden", "12,x"},
		{"train", "--no-such-flag"},
		{"train", "stray"},
		{"bench", "step", "--model", "transformer"},
		{"bench", "step", "--steps", "0"},
		{"bench", "nope"},
		{"export", "--out", "x.safetensors"},
		{"demo", "--byzantine", "evil"},
		{"demo", "--byzantine", "honest"},
		{"demo", "--peers", "2", "--byzantine", "lazy,replay"},
		{"demo", "--http-base", "-1"},
		{"demo", "--http-base", "65535"},
		{"node", "--spec", "x.toml", "--http", "9100"},
		{"node", "--spec", "x.toml", "--behave", "sneaky"},
		{"audit", "--full", "x.vtl"},
	} {
		code, _, stderr := vtrain(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		oneLine(t, strings.Join(args, " "), stderr)
	}
	if code, _, _ := vtrain(t, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	if code, _, _ := vtrain(t); code != 2 {
		t.Errorf("no command: exit %d", code)
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	code, _, stderr := vtrain(t, "train", "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, f := range []string{"-model", "-hidden", "-data", "-epochs", "-batch", "-lr", "-optimizer", "-seed", "-out", "-json", "-resume"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("train --help does not mention %s", f)
		}
	}
}

func TestTruncatedIDXIsAnError(t *testing.T) {
	dir := t.TempDir()
	imgs := data.EncodeIDX([]int{10, 28, 28}, make([]byte, 10*784))
	lbls := data.EncodeIDX([]int{10}, make([]byte, 10))
	for name, b := range map[string][]byte{
		"train-images-idx3-ubyte": imgs[:len(imgs)-50], // truncated
		"train-labels-idx1-ubyte": lbls,
		"t10k-images-idx3-ubyte":  imgs,
		"t10k-labels-idx1-ubyte":  lbls,
	} {
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	code, _, stderr := vtrain(t, "train", "--data", dir, "--steps", "1")
	if code != 1 || !strings.Contains(stderr, "truncated") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	oneLine(t, "truncated IDX", stderr)
}

func TestTrainCheckpointResumeExport(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	code, out, stderr := vtrain(t, "train", "--model", "mlp", "--hidden", "32", "--data", "synthetic", "--steps", "40", "--batch", "32", "--out", ck, "--json")
	if code != 0 {
		t.Fatalf("train exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not JSON: %q", lines[len(lines)-1])
	}
	for _, k := range []string{"test_accuracy", "test_loss", "steps", "samples", "seconds"} {
		if _, ok := res[k]; !ok {
			t.Errorf("JSON lacks %s: %v", k, res)
		}
	}
	if res["steps"].(float64) != 40 || res["samples"].(float64) != 40*32 {
		t.Errorf("steps/samples %v/%v", res["steps"], res["samples"])
	}
	// Resume for 20 more steps equals 60 uninterrupted steps.
	_, out2, _ := vtrain(t, "train", "--resume", ck, "--data", "synthetic", "--steps", "20", "--json")
	_, out3, _ := vtrain(t, "train", "--model", "mlp", "--hidden", "32", "--data", "synthetic", "--steps", "60", "--batch", "32", "--json")
	var r2, r3 map[string]any
	json.Unmarshal([]byte(strings.TrimSpace(out2)), &r2)
	json.Unmarshal([]byte(strings.TrimSpace(out3)), &r3)
	if r2["param_sha256"] == nil || r2["param_sha256"] != r3["param_sha256"] {
		t.Errorf("resumed %v, uninterrupted %v", r2["param_sha256"], r3["param_sha256"])
	}
	// Export gives a safetensors file with PyTorch shapes.
	st := filepath.Join(dir, "m.safetensors")
	if code, _, stderr := vtrain(t, "export", "--checkpoint", ck, "--out", st); code != 0 {
		t.Fatalf("export exit %d: %s", code, stderr)
	}
	f, err := safetensors.ReadFile(st, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := f.Get("fc1.weight")
	if !ok || w.Shape[0] != 32 || w.Shape[1] != 784 {
		t.Fatalf("fc1.weight %v", w.Shape)
	}
	// A corrupt checkpoint is a one-line error, exit 1.
	mf := filepath.Join(ck, "model.safetensors")
	b, _ := os.ReadFile(mf)
	b[len(b)/2] ^= 0x40
	os.WriteFile(mf, b, 0o644)
	for _, args := range [][]string{
		{"export", "--checkpoint", ck, "--out", st},
		{"train", "--resume", ck, "--data", "synthetic", "--steps", "1"},
	} {
		code, _, stderr := vtrain(t, args...)
		if code != 1 || !strings.Contains(stderr, "corrupt") {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
		oneLine(t, "corrupt checkpoint", stderr)
	}
}

func TestBenchStepJSON(t *testing.T) {
	code, out, stderr := vtrain(t, "bench", "step", "--model", "logreg", "--steps", "3", "--warmup", "1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &res); err != nil {
		t.Fatal(err)
	}
	if res["ms_per_step"].(float64) <= 0 || res["gflops"].(float64) <= 0 {
		t.Fatalf("figures %v", res)
	}
}

// TestBinaryExitCode runs the real binary once, for the process exit code.
func TestBinaryExitCode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "vtrain")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vtrain/vtrain/cmd/vtrain").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "train", "--batch", "-1")
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v", err)
	}
	// gnark logs its compile and setup to stdout unless told not to (it
	// keeps quiet on its own only in test binaries): keygen's stdout is
	// its two lines, without zerolog's.
	out, err := exec.Command(bin, "keygen", "--features", "4", "--classes", "2", "--batch", "1", "--depth", "2", "--out", filepath.Join(t.TempDir(), "keys")).Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "keys in ") || !strings.HasPrefix(lines[1], "verifying key sha256 ") {
		t.Fatalf("keygen: %v, stdout %q", err, out)
	}
}

func TestSpecTOMLRoundTrip(t *testing.T) {
	s := runspec.Default()
	s.Run.Rounds, s.Data.Source, s.Rounds.Quorum = 7, "synthetic", 3
	s.Model = runspec.Model{Kind: "cnn", Channels: []int{4, 8}}
	s = s.WithFounders("12D3KooWBDGiDWHgoe9GZoNeGgZLEEK5wHythEFnqssTzWzzw11X", "12D3KooWNJuVaPJTCRHSup731onkVKBNRJm34b1AvPASLMdiLgmv")
	s.Members.Admit = 3
	back, err := runspec.Parse([]byte(specTOML(s)))
	if err != nil {
		t.Fatal(err)
	}
	if back.RunID() != s.RunID() {
		t.Fatalf("spec changes through TOML:\n%s\n%s", s.Canonical(), back.Canonical())
	}
	// With private peers (demo --private).
	s = provableSpec(s, 2)
	s.Privacy = runspec.Privacy{Mode: "zk", Depth: 16, VKSHA256: strings.Repeat("ab", 32),
		Peers: []runspec.PrivatePeer{{Peer: s.Members.Genesis[1], DataRoot: strings.Repeat("0", 63) + "7", DataSize: 30000}}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if back, err = runspec.Parse([]byte(specTOML(s))); err != nil || back.RunID() != s.RunID() {
		t.Fatalf("a spec with private peers changes through TOML (%v):\n%s\n%s", err, s.Canonical(), back.Canonical())
	}
	s.Privacy.Wait = new(bool) // privacy.wait = false: another run
	if back, err = runspec.Parse([]byte(specTOML(s))); err != nil || back.RunID() != s.RunID() || back.WaitsForPrivate() {
		t.Fatalf("a spec that does not wait for its private peers changes through TOML (%v):\n%s\n%s", err, s.Canonical(), back.Canonical())
	}
}
