package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestDemoByzantine runs the demo as a user would, with three misbehaving
// peers among six: the two that send bad work are excluded, the one that
// forges signatures never gets a message past gossip validation (and its
// rejections are in the ledgers), no honest peer fails a challenge, the
// honest peers agree, and every honest ledger passes the audit (with its
// challenges re-executed on the data) and reports the same exclusions.
func TestDemoByzantine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	tmp, bin := buildBinary(t)
	spec := filepath.Join(tmp, "run.toml")
	os.WriteFile(spec, []byte(`
[model]
kind = "mlp"
hidden = [32]
[data]
source = "synthetic"
[inner]
steps = 40
[compression]
fraction = 0.05
[rounds]
timeout = "20s"
commit_timeout = "5s"
[verify]
timeout = "10s"
`), 0o644)
	out := filepath.Join(tmp, "demo")
	cmd := exec.Command(bin, "demo", "--peers", "6", "--byzantine", "noise,stale,forge", "--rounds", "12", "--spec", spec, "--data", "synthetic", "--out", out, "--json")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var res demoResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Agreed || res.FalseChallenges != 0 || len(res.Byzantine) != 3 {
		t.Fatalf("demo: agreed %v, %d false challenges, %d byzantine", res.Agreed, res.FalseChallenges, len(res.Byzantine))
	}
	var excluded []string
	forger := ""
	for _, b := range res.Byzantine {
		if b.Behave == "forge" {
			forger = b.Peer
		}
	}
	for _, x := range res.Excluded {
		if x.Behave == "" {
			t.Fatalf("honest peer %d excluded: %s", x.Index, x.Reason)
		}
		excluded = append(excluded, x.Peer)
	}
	if len(excluded) != 2 {
		t.Fatalf("excluded %v, want both misbehaving peers", res.Excluded)
	}
	slices.Sort(excluded)
	for _, l := range res.Ledgers {
		code, o, e := vtrain(t, "audit", "--json", "--data", "synthetic", l)
		var rep auditReport
		if code != 0 || json.Unmarshal([]byte(o), &rep) != nil || !rep.OK {
			t.Fatalf("audit %s: exit %d: %s %s", l, code, o, e)
		}
		var got []string
		forged := 0
		for _, p := range rep.Peers {
			if p.Excluded != nil {
				got = append(got, p.Peer)
			}
			for why, n := range p.Rejected {
				if p.Peer == forger && strings.Contains(why, "bad signature") {
					forged += n
				}
			}
			if p.Failed > 0 && !slices.Contains(excluded, p.Peer) {
				t.Errorf("audit %s: honest %s failed %d challenges", l, p.Peer, p.Failed)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, excluded) || rep.Replay.Recomputed == 0 || forged == 0 {
			t.Errorf("audit %s: excluded %v (demo: %v), %d forged messages, %s", l, got, excluded, forged, rep.Replay)
		}
	}
}
