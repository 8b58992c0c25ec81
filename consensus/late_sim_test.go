package consensus_test

import (
	"slices"
	"testing"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/consensus/simnet"
	"github.com/vtrain/vtrain/internal/prng"
)

// lateRun tallies, over rounds [from, to) as honest engine 0 decided them,
// how each watched member's work was aggregated: on time, late, and
// whether some round's work of it was taken twice (a late update of round
// r−1 after round r−1 took one of that round).
type lateRun struct {
	onTime, late map[consensus.PeerID]int
	twice        map[consensus.PeerID]int
	lastOnTime   map[consensus.PeerID]uint64
	decided      int
}

func watchLate(sn *simnet.Net, from uint64) *lateRun {
	lr := &lateRun{onTime: map[consensus.PeerID]int{}, late: map[consensus.PeerID]int{}, twice: map[consensus.PeerID]int{}, lastOnTime: map[consensus.PeerID]uint64{}}
	prev := sn.OnDecided
	sn.OnDecided = func(sn *simnet.Net, i int, d consensus.Decided) {
		if prev != nil {
			prev(sn, i, d)
		}
		if i != 0 || d.Restored {
			return
		}
		for _, r := range d.Value.Updates {
			if r.Late {
				if t, ok := lr.lastOnTime[r.From]; ok && t+1 == d.Round {
					lr.twice[r.From]++
				}
			} else {
				lr.lastOnTime[r.From] = d.Round
			}
		}
		if d.Round < from {
			return
		}
		lr.decided++
		for _, r := range d.Value.Updates {
			if r.Late {
				lr.late[r.From]++
			} else {
				lr.onTime[r.From]++
			}
		}
	}
	return lr
}

// TestSimLateUpdates: five founders, one 300 ms away (past the deadline's
// margin: before late updates its work counted only in the rounds it
// proposed, one in five). Its updates now miss their rounds and are
// aggregated in the next: its work counts in nearly every round, every
// honest engine agrees on every decision and deadline, and no round's
// work of it is taken twice. Then the same with a member that withholds
// its update every other round and replays and forges late updates
// (among them a second version of a round's update after that round took
// one: without the rule that refuses it, it had 11 rounds' work taken
// twice in 25): refused, the run goes on, and it gets no round's work in
// twice.
func TestSimLateUpdates(t *testing.T) {
	const rounds, from, slow = 30, 5, 4
	for seed := uint64(1); seed <= uint64(simSeeds(3)); seed++ {
		for _, byz := range []bool{false, true} {
			dr := newDeadlineRun(t, 5, seed)
			dr.sn.Lag = func(a, b int) time.Duration {
				if a == slow || b == slow {
					return 300 * time.Millisecond
				}
				return 0
			}
			if byz {
				dr.sn.Byz[1] = &simnet.LateReplayer{Rng: prng.New(seed)}
			}
			lr := watchLate(dr.sn, from)
			dr.run(t, rounds)
			p := dr.sn.IDs[slow]
			// (With the replayer withholding its update every other round,
			// those rounds wait for it until the deadline, and the slow
			// member comes in time more often.)
			if got := lr.onTime[p] + lr.late[p]; 10*got < 9*lr.decided || !byz && 2*lr.late[p] < lr.decided {
				t.Errorf("seed %d (replayer %v): the slow member's work counted in %d of %d rounds (%d late)", seed, byz, got, lr.decided, lr.late[p])
			}
			for q, n := range lr.twice {
				t.Errorf("seed %d (replayer %v): %s had a round's work taken twice %d times", seed, byz, q, n)
			}
			if byz {
				liar := dr.sn.IDs[1]
				if n := lr.onTime[liar] + lr.late[liar]; n > lr.decided {
					t.Errorf("seed %d: the replayer had %d updates aggregated in %d rounds", seed, n, lr.decided)
				}
			}
			t.Logf("seed %d (replayer %v): slow member on time %d, late %d of %d rounds; liar %d %d", seed, byz, lr.onTime[p], lr.late[p], lr.decided, lr.onTime[dr.sn.IDs[1]], lr.late[dr.sn.IDs[1]])
			if !slices.Contains(dr.sn.IDs, p) {
				t.Fatal("lost the slow member")
			}
		}
	}
}
