package trainer

import (
	"testing"
	"time"

	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/runspec"
)

// misbehaviours the simulation plays (forged signatures never reach an
// engine: the gossip layer rejects them, see gossip's tests).
var misbehaviours = []string{"lazy", "noise", "replay", "scaled", "stale"}

// TestSimChallenges runs many seeded simulated runs with always-cheating
// peers at the default verification policy and checks the two promises of
// spot-checking: no honest peer ever gets a fail verdict, and every cheater
// is excluded by every honest peer within 30 rounds of joining.
func TestSimChallenges(t *testing.T) {
	runs := 1000
	if testing.Short() {
		runs = 50
	}
	caught := map[string][]uint64{}
	for seed := range uint64(runs) {
		r := prng.New(prng.Derive(seed, 7))
		n := 4 + r.Intn(5) // 4..8 peers
		cheaters := 1 + r.Intn(2)
		spec := simSpec(t)
		spec.Verify = runspec.Default().Verify
		spec.Model = runspec.Model{Kind: "mlp", Hidden: []int{1}} // 805 parameters: fast
		spec.Rounds.Quorum = n/2 + 1
		sn := newSimNet(t, n, seed, spec)
		sn.maxDelay = 100 * time.Millisecond
		for c := 0; c < cheaters; c++ {
			sn.behave[n-1-c] = misbehaviours[r.Intn(len(misbehaviours))]
		}
		sn.run(31, 2*time.Hour)
		for _, v := range sn.verdicts {
			if !v.Pass && sn.behave[sn.index(v.Accused)] == "" {
				t.Fatalf("seed %d: honest %s failed a challenge: %s", seed, v.Accused, v.Reason)
			}
		}
		for i, b := range sn.behave {
			p := sn.ids[i]
			at, ok := sn.excluded[p]
			if !ok || at > 30 {
				t.Fatalf("seed %d: %s peer %s not excluded within 30 rounds (excluded at %d, %v)", seed, b, p, at, ok)
			}
			for j, e := range sn.engines {
				if sn.behave[j] == "" && !e.isExcluded(p) {
					t.Fatalf("seed %d: honest peer %d does not exclude %s %s", seed, j, b, p)
				}
			}
			caught[b] = append(caught[b], at)
		}
		honest := -1
		for i := range sn.engines {
			if sn.behave[i] == "" {
				if honest >= 0 && sn.engines[i].Hash() != sn.engines[honest].Hash() && sn.engines[i].Round() == sn.engines[honest].Round() {
					t.Fatalf("seed %d: honest peers %d and %d disagree", seed, honest, i)
				}
				honest = i
			}
		}
	}
	for _, b := range misbehaviours {
		ats := caught[b]
		var sum, worst uint64
		for _, a := range ats {
			sum += a
			worst = max(worst, a)
		}
		if len(ats) > 0 {
			t.Logf("%-7s %4d cheaters: excluded after %.2f rounds on average, %d at worst", b, len(ats), float64(sum)/float64(len(ats)), worst)
		}
	}
}
