package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoPrivate runs the demo with a private peer as a user would:
// four peers, the last training on private data and proving the steps
// drawn (real Groth16 proofs of the 784×10 circuit, keys from a
// single-party setup cached in the user cache directory), and forging
// them (a proof of another batch's step). It is the one private peer of
// four: past the public voters' pace by a proof's time, it would be a
// known straggler, the public rounds would take a fraction of a second
// and the run could end before its first proof was judged; the run waits
// for its private peers (privacy.wait), so its forged proof is judged
// within the run. Every honest peer refuses the same forged proofs and
// verifies the same (none); the forger is excluded for its proof within
// the run, no honest peer is, the honest peers agree, and the honest
// ledgers pass the audit together, every proof in them checked again
// from the ledger's key.
func TestDemoPrivate(t *testing.T) {
	if testing.Short() {
		t.Skip("a Groth16 setup (minutes, once per machine) and four node processes")
	}
	tmp, bin := buildBinary(t, false)
	// The prover takes every core it is given; other packages' tests run
	// beside this one (go test ./... -p 2) and some of them keep time.
	t.Setenv("GOMAXPROCS", "1")
	const rounds = 10
	res := demoJSON(t, bin, "--peers", "4", "--private", "1", "--byzantine", "forge-proof", "--rounds", fmt.Sprint(rounds),
		"--data", "synthetic", "--out", filepath.Join(tmp, "demo"))
	if !res.Agreed || len(res.HonestExcluded) != 0 || res.FalseChallenges != 0 {
		t.Fatalf("agreed %v, honest excluded %v, %d false challenges", res.Agreed, res.HonestExcluded, res.FalseChallenges)
	}
	var forger demoOutcome
	for _, o := range res.PeerOutcomes {
		if o.Behave == "forge-proof" {
			forger = o
		}
	}
	if !forger.Private || forger.ProofsMade == 0 {
		t.Fatalf("the forger: %+v", forger)
	}
	if forger.ExcludedFrom == nil || *forger.ExcludedFrom >= rounds {
		t.Fatalf("the forger was not excluded within the %d rounds: %+v (excluded %v)", rounds, forger, res.Excluded)
	}
	for _, x := range res.Excluded {
		if x.Peer == forger.Peer && !strings.Contains(x.Reason, "proof") {
			t.Errorf("the forger is excluded for %q, want its proof", x.Reason)
		}
	}
	honest := 0
	for _, o := range res.PeerOutcomes {
		if o.Behave != "" {
			continue
		}
		// Every honest peer took the same verdicts, so it verified and
		// refused the same proofs: none verified, the forger's refused.
		honest++
		if o.Private || o.ProofsVerified != 0 || o.ProofsRefused == 0 || o.ProofsRefused > forger.ProofsMade {
			t.Errorf("peer %d: private %v, verified %d proofs and refused %d (the forger made %d)", o.Index, o.Private, o.ProofsVerified, o.ProofsRefused, forger.ProofsMade)
		}
		if o.ProofsRefused != res.PeerOutcomes[0].ProofsRefused || o.ProofsVerified != res.PeerOutcomes[0].ProofsVerified {
			t.Errorf("peer %d verified %d and refused %d proofs, peer 0 %d and %d", o.Index, o.ProofsVerified, o.ProofsRefused, res.PeerOutcomes[0].ProofsVerified, res.PeerOutcomes[0].ProofsRefused)
		}
	}
	if honest != 3 {
		t.Fatalf("%d honest peers, want 3", honest)
	}
	rep := auditAll(t, res.Ledgers)
	for _, lr := range rep.Ledgers {
		if lr.Replay.ProofsFailed == 0 || lr.Replay.Proofs != 0 {
			t.Errorf("audit %s: %d proofs verified, %d refused", lr.Ledger, lr.Replay.Proofs, lr.Replay.ProofsFailed)
		}
		for _, p := range lr.Peers {
			if p.Peer == forger.Peer && (p.Excluded == nil || p.Failed == 0) {
				t.Errorf("audit %s: the forger %+v", lr.Ledger, p)
			}
			if p.Peer != forger.Peer && p.Failed > 0 {
				t.Errorf("audit %s: honest peer %+v failed a check", lr.Ledger, p)
			}
		}
	}
}
