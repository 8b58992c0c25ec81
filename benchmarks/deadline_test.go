package benchmarks

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/consensus/simnet"
	"github.com/vtrain/vtrain/runspec"
)

// BenchmarkDeadlineSlowMember runs the round protocol's simulation (five
// founders, training 500 ms, commit timeout 1 s, rounds.timeout 6 s: the
// default spec's ratio) with one member behind a link of growing one-way
// lag, 40 rounds a seed over 5 seeds, and reports in simulated time the
// median round, its ratio to the run without lag, the share of rounds that
// aggregated the slow member's update of the round (counted-%), the share
// that reported it late (late-%), the share that aggregated its update of
// the round before, late (latein-%: consensus/late.go), and the agreed
// deadline at the end: where the adaptive deadline stops waiting for a
// slow member, what that costs the others, and how much of the slow
// member's work still counts.
//
//	go test -run - -bench DeadlineSlowMember ./benchmarks/
func BenchmarkDeadlineSlowMember(b *testing.B) {
	const rounds, seeds, slow = 40, 5, 4
	var base time.Duration
	for _, lag := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond, time.Second, 2 * time.Second} {
		b.Run(fmt.Sprintf("lag=%v", lag), func(b *testing.B) {
			var times []time.Duration
			var counted, late, lateIn, decided int
			var deadline time.Duration
			for range b.N {
				times, counted, late, lateIn, decided = nil, 0, 0, 0, 0
				for seed := uint64(1); seed <= seeds; seed++ {
					sn := simnet.New(b, 5, seed, func(s *runspec.Spec) {
						s.Rounds.Timeout = runspec.Duration{Duration: 6 * time.Second}
						s.Rounds.CommitTimeout = runspec.Duration{Duration: time.Second}
						s.Members.Absent = 1000
					})
					sn.Lag = func(from, to int) time.Duration {
						if from == slow || to == slow {
							return lag
						}
						return 0
					}
					sn.OnDecided = func(sn *simnet.Net, i int, d consensus.Decided) {
						if i != 0 || d.Restored || d.Round < 5 {
							return
						}
						decided++
						if slices.Contains(d.LateIn, sn.IDs[slow]) {
							lateIn++
						} else if slices.Contains(d.Peers, sn.IDs[slow]) {
							counted++
						}
						if slices.Contains(d.Late, sn.IDs[slow]) {
							late++
						}
						deadline = d.Deadline
					}
					sn.Run(rounds, 30*time.Minute)
					sn.Finish(rounds)
					for r := uint64(5); r < rounds; r++ {
						a, c := sn.All[0][r-1], sn.All[0][r]
						if len(a) > 0 && len(c) > 0 {
							times = append(times, c[0].At-a[0].At)
						}
					}
				}
			}
			slices.Sort(times)
			med := times[len(times)/2]
			if lag == 0 {
				base = med
			}
			b.ReportMetric(med.Seconds(), "sim-s/round")
			if base > 0 {
				b.ReportMetric(float64(med)/float64(base), "x-no-lag")
			}
			b.ReportMetric(100*float64(counted)/float64(decided), "counted-%")
			b.ReportMetric(100*float64(late)/float64(decided), "late-%")
			b.ReportMetric(100*float64(lateIn)/float64(decided), "latein-%")
			b.ReportMetric(deadline.Seconds(), "deadline-s")
		})
	}
}
