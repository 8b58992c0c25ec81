//go:build linux

package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// nodesUnder returns the pids of the processes whose command line names
// dir (the demo's nodes, started with --out dir/peerNN).
func nodesUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte("node\x00")) && bytes.Contains(b, []byte(dir)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDemoNodesDieWithDemo: a demo killed outright (SIGKILL, or a crash:
// no deferred cleanup runs) takes its nodes with it. A member dies anyway
// at its next round event on the closed pipe to the demo (SIGPIPE), but
// an outsider writes none: one ran for half an hour after a test binary
// that started its demo was stopped.
func TestDemoNodesDieWithDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	tmp, bin := buildBinary(t, false)
	spec := filepath.Join(tmp, "run.toml")
	if err := os.WriteFile(spec, []byte(smallSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "demo")
	demo := exec.Command(bin, "demo", "--spec", spec, "--data", "synthetic", "--peers", "3", "--byzantine", "hijack", "--log-level", "error", "--rounds", "100000", "--out", out)
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	defer demo.Process.Kill()
	deadline := time.Now().Add(60 * time.Second)
	for len(nodesUnder(out)) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the demo's 3 members and its outsider did not start within 60 s (found %v)", nodesUnder(out))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := demo.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	demo.Wait()
	killed := time.Now()
	deadline = killed.Add(12 * time.Second)
	for {
		left := nodesUnder(out)
		if len(left) == 0 {
			t.Logf("the nodes were gone %v after the demo was killed", time.Since(killed).Round(100*time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
			t.Fatalf("12 s after the demo was killed, its nodes %v still run (left alone, they stop on their own some 20 s later, or never)", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
