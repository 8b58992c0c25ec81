package cli

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vtrain/vtrain/verify/audit"
)

const smallSpec = `
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
`

// runDemo runs the demo binary and returns its JSON result.
func runDemoJSON(t *testing.T, bin, tmp string, args ...string) demoResult {
	t.Helper()
	spec := filepath.Join(tmp, "run.toml")
	os.WriteFile(spec, []byte(smallSpec), 0o644)
	res := demoJSON(t, bin, append([]string{"--spec", spec, "--data", "synthetic", "--out", filepath.Join(tmp, "demo")}, args...)...)
	checkTraffic(t, &res)
	// The demo plots its run.
	if res.Plot == "" {
		t.Error("the demo wrote no plot")
	} else {
		checkPlot(t, res.Plot)
	}
	return res
}

// demoJSON runs vtrain demo --json with args and returns its result.
func demoJSON(t *testing.T, bin string, args ...string) demoResult {
	t.Helper()
	b, err := exec.Command(bin, append([]string{"demo", "--json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var res demoResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// checkTraffic: the demo's byte categories account for what the peers
// put on the wire (libp2p's own counter), with little left to libp2p's
// other protocols, and its ratios are the dense size over those bytes.
func checkTraffic(t *testing.T, res *demoResult) {
	t.Helper()
	var sum float64
	for _, b := range res.WireByCategory {
		sum += b
	}
	if w := res.WireBytesPerPeerRound; w <= 0 || math.Abs(sum-w) > 0.01*w {
		t.Errorf("categories add up to %.0f B per peer-round, the wire counter says %.0f B", sum, w)
	}
	if tr := res.WireByCategory["transport"]; tr > 0.1*res.WireBytesPerPeerRound {
		t.Errorf("%.0f of %.0f B per peer-round not accounted to a category", tr, res.WireBytesPerPeerRound)
	}
	if res.WireByCategory["updates"] <= 0 || res.Challenges.Run > 0 && res.WireByCategory["challenge_evidence"] <= 0 {
		t.Errorf("no update or evidence bytes: %v", res.WireByCategory)
	}
	dense := float64(res.DenseBytesPerRound)
	if res.PayloadBytes <= 0 || math.Abs(res.CompressionRatio-dense/res.PayloadBytes) > 1e-6*res.CompressionRatio ||
		math.Abs(res.WireCompressionRatio-dense/res.WireBytesPerPeerRound) > 1e-6*res.WireCompressionRatio ||
		res.SteadyWireBytesPerPeerRound <= 0 || math.Abs(res.SteadyWireCompressionRatio-dense/res.SteadyWireBytesPerPeerRound) > 1e-6*res.SteadyWireCompressionRatio {
		t.Errorf("ratios: payload %.0f B %.1fx, wire %.0f B %.2fx, steady %.0f B %.2fx (dense %d B)", res.PayloadBytes, res.CompressionRatio,
			res.WireBytesPerPeerRound, res.WireCompressionRatio, res.SteadyWireBytesPerPeerRound, res.SteadyWireCompressionRatio, res.DenseBytesPerRound)
	}
}

// auditAll audits the honest ledgers of a demo together, with the data.
func auditAll(t *testing.T, ledgers []string) *audit.Report {
	t.Helper()
	code, o, e := vtrain(t, append([]string{"audit", "--json", "--data", "synthetic"}, ledgers...)...)
	var rep audit.Report
	if code != 0 || json.Unmarshal([]byte(o), &rep) != nil || !rep.OK {
		t.Fatalf("audit: exit %d: %s %s", code, o, e)
	}
	return &rep
}

// TestDemoByzantine runs the demo as a user would, with three misbehaving
// members among six: the two that send bad work are excluded, the one that
// forges signatures never gets a message past gossip validation (and its
// rejections are in the ledgers), no honest peer fails a challenge or is
// excluded, the honest peers agree, and the honest ledgers pass the audit
// together (with the challenges re-executed on the data) and report the
// same exclusions.
func TestDemoByzantine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	tmp, bin := buildBinary(t, false)
	res := runDemoJSON(t, bin, tmp, "--peers", "6", "--byzantine", "noise,stale,forge", "--rounds", "12")
	if !res.Agreed || res.FalseChallenges != 0 || len(res.Byzantine) != 3 || len(res.HonestExcluded) != 0 {
		t.Fatalf("demo: agreed %v, %d false challenges, %d byzantine, honest excluded %v", res.Agreed, res.FalseChallenges, len(res.Byzantine), res.HonestExcluded)
	}
	var excluded []string
	forger := ""
	for _, b := range res.Byzantine {
		if b.Behave == "forge" {
			forger = b.Peer
		}
	}
	for _, x := range res.Excluded {
		excluded = append(excluded, x.Peer)
	}
	if len(excluded) != 2 {
		t.Fatalf("excluded %v, want both misbehaving peers", res.Excluded)
	}
	slices.Sort(excluded)
	rep := auditAll(t, res.Ledgers)
	for _, lr := range rep.Ledgers {
		var got []string
		forged := 0
		for _, p := range lr.Peers {
			if p.Excluded != nil && strings.HasPrefix(p.Reason, "excluded") {
				got = append(got, p.Peer)
			}
			for why, n := range p.Rejected {
				if p.Peer == forger && strings.Contains(why, "bad signature") {
					forged += n
				}
			}
			if p.Failed > 0 && !slices.Contains(excluded, p.Peer) {
				t.Errorf("audit %s: honest %s failed %d challenges", lr.Ledger, p.Peer, p.Failed)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, excluded) || lr.Replay.Recomputed == 0 || forged == 0 {
			t.Errorf("audit %s: excluded %v (demo: %v), %d forged messages, %s", lr.Ledger, got, excluded, forged, lr.Replay)
		}
	}
}

// TestDemoOutsiders runs nodes built with the race detector through the
// attacks of outsiders and of an equivocating member: an outsider offers a
// forged next state (hijack), seven fresh identities ask to join and flood
// the round with votes and commits (sybil), and a member signs conflicting
// votes. The run goes on, every honest node on one state, the equivocator
// is excluded by a certified decision and no honest peer is, the outsiders
// have no effect, and the honest ledgers pass the audit together.
func TestDemoOutsiders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	tmp, bin := buildBinary(t, true)
	res := runDemoJSON(t, bin, tmp, "--peers", "4", "--byzantine", "equivocate,hijack,sybil", "--rounds", "8")
	if !res.Agreed || len(res.HonestExcluded) != 0 {
		t.Fatalf("demo: agreed %v (%v), honest excluded %v", res.Agreed, res.Disagreements, res.HonestExcluded)
	}
	if len(res.Excluded) != 1 || res.Excluded[0].Behave != "equivocate" {
		t.Fatalf("excluded %+v, want the equivocator", res.Excluded)
	}
	for _, o := range res.PeerOutcomes {
		switch {
		case o.Outsider && o.Sent == 0:
			t.Errorf("outsider %s sent nothing", o.Behave)
		case !o.Outsider && o.Behave == "" && (o.FinalHash != res.FinalHash || !o.Member):
			t.Errorf("honest peer %d ends on %s (member %v), the run on %s", o.Index, o.FinalHash, o.Member, res.FinalHash)
		}
	}
	auditAll(t, res.Ledgers)
}

// TestDemoRefereed runs the demo with a false accuser (fails every check
// it is drawn for, with a made-up step dispute), an accuser of updates it
// was not drawn for, and a member that trains honestly for two rounds and
// then sends its updates negated. Every member referees the disputes
// before voting: both accusers are excluded for their false verdicts, the
// flipper for its upheld link fault (within 10 rounds of its first
// flipped update), no honest peer is, the honest ledgers pass the audit
// together with the data, and the audit reports the accusers' false
// verdicts and revokes all of the flipper's credit.
func TestDemoRefereed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	tmp, bin := buildBinary(t, false)
	res := runDemoJSON(t, bin, tmp, "--peers", "6", "--byzantine", "accuse,accuse-any,flip+2", "--rounds", "10")
	if !res.Agreed || res.FalseChallenges != 0 || len(res.HonestExcluded) != 0 {
		t.Fatalf("demo: agreed %v, %d false challenges, honest excluded %v", res.Agreed, res.FalseChallenges, res.HonestExcluded)
	}
	byz := map[string]string{}
	for _, o := range res.PeerOutcomes {
		if o.Behave == "" {
			continue
		}
		byz[o.Peer] = o.Behave
		switch {
		case o.ExcludedFrom == nil:
			t.Errorf("%s was not excluded", o.Behave)
		case o.Behave == "flip+2" && (o.RoundsToExclusion == nil || *o.RoundsToExclusion > 10):
			t.Errorf("the flipper was excluded %v rounds after it started", o.RoundsToExclusion)
		}
	}
	for _, x := range res.Excluded {
		want := "signed a false verdict"
		if x.Behave == "flip+2" {
			want = "fault upheld"
		}
		if !strings.Contains(x.Reason, want) {
			t.Errorf("%s excluded because %q, want %q", x.Behave, x.Reason, want)
		}
	}
	rep := auditAll(t, res.Ledgers)
	for _, lr := range rep.Ledgers {
		if lr.Replay.Overturned < 2 || lr.Replay.Upheld < 1 {
			t.Errorf("audit %s: %d verdicts overturned, %d upheld", lr.Ledger, lr.Replay.Overturned, lr.Replay.Upheld)
		}
		for _, p := range lr.Peers {
			switch b := byz[p.Peer]; {
			case strings.HasPrefix(b, "accuse") && p.FalseVerdicts == 0:
				t.Errorf("audit %s: %s's false verdicts not reported", lr.Ledger, b)
			case b == "flip+2" && (p.Revoked != p.Aggregated || p.Contamination == 0 || p.FirstProvenBad == nil || p.Credit != 0):
				t.Errorf("audit %s: the flipper's credit %.0f of %d samples, %d updates revoked", lr.Ledger, p.Credit, p.Samples, p.Revoked)
			case b == "" && (p.Revoked != 0 || p.FalseVerdicts != 0):
				t.Errorf("audit %s: honest %s has %d updates revoked, %d false verdicts", lr.Ledger, p.Peer, p.Revoked, p.FalseVerdicts)
			}
		}
	}
}
