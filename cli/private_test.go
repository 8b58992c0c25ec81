package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoPrivate runs the demo with private peers as a user would: four
// peers, the last two training on private data and proving their steps
// (real Groth16 proofs of the 784×10 circuit, keys from a single-party
// setup cached in the user cache directory), the last of them forging its
// proofs (a proof of another batch's step). Every honest peer verifies the
// honest private peer's proofs and refuses the forger's; the forger is
// excluded, no honest peer is, the honest peers agree, and the honest
// ledgers pass the audit together, every proof in them verified again
// from the ledger's key.
func TestDemoPrivate(t *testing.T) {
	if testing.Short() {
		t.Skip("a Groth16 setup (minutes, once per machine) and four node processes")
	}
	tmp, bin := buildBinary(t, false)
	// The prover takes every core it is given; other packages' tests run
	// beside this one (go test ./... -p 2) and some of them keep time.
	t.Setenv("GOMAXPROCS", "1")
	res := demoJSON(t, bin, "--peers", "4", "--private", "2", "--byzantine", "forge-proof", "--rounds", "12",
		"--data", "synthetic", "--out", filepath.Join(tmp, "demo"))
	if !res.Agreed || len(res.HonestExcluded) != 0 || res.FalseChallenges != 0 {
		t.Fatalf("agreed %v, honest excluded %v, %d false challenges", res.Agreed, res.HonestExcluded, res.FalseChallenges)
	}
	var forger, honest demoOutcome
	for _, o := range res.PeerOutcomes {
		switch {
		case o.Behave == "forge-proof":
			forger = o
		case o.Private:
			honest = o
		}
	}
	if !forger.Private || !honest.Private || honest.ProofsMade == 0 {
		t.Fatalf("private peers: forger %+v, honest %+v", forger, honest)
	}
	if forger.ExcludedFrom == nil {
		t.Fatalf("the forger was not excluded: %+v (excluded %v)", forger, res.Excluded)
	}
	for _, x := range res.Excluded {
		if x.Peer == forger.Peer && !strings.Contains(x.Reason, "proof") {
			t.Errorf("the forger is excluded for %q, want its proof", x.Reason)
		}
	}
	verified := -1
	for _, o := range res.PeerOutcomes {
		if o.Behave != "" {
			continue
		}
		// Every honest peer verified the honest private peer's proofs in
		// the verdicts it took, the same ones (a step drawn for the forger
		// to check is checked by nobody once it is gone), and refused the
		// forger's.
		if 2*o.ProofsVerified < honest.ProofsMade || o.ProofsVerified > honest.ProofsMade || o.ProofsRefused == 0 {
			t.Errorf("peer %d verified %d proofs (the honest private peer made %d) and refused %d", o.Index, o.ProofsVerified, honest.ProofsMade, o.ProofsRefused)
		}
		if verified >= 0 && o.ProofsVerified != verified {
			t.Errorf("peer %d verified %d proofs, another honest peer %d", o.Index, o.ProofsVerified, verified)
		}
		verified = o.ProofsVerified
	}
	rep := auditAll(t, res.Ledgers)
	for _, lr := range rep.Ledgers {
		if lr.Replay.Proofs == 0 || lr.Replay.ProofsFailed == 0 {
			t.Errorf("audit %s: %d proofs verified, %d refused", lr.Ledger, lr.Replay.Proofs, lr.Replay.ProofsFailed)
		}
		for _, p := range lr.Peers {
			if p.Peer == honest.Peer && (p.Samples == 0 || p.Failed > 0 || p.Passed == 0) {
				t.Errorf("audit %s: the honest private peer %+v", lr.Ledger, p)
			}
			if p.Peer == forger.Peer && (p.Excluded == nil || p.Failed == 0) {
				t.Errorf("audit %s: the forger %+v", lr.Ledger, p)
			}
		}
	}
}
