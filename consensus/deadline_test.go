package consensus_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/consensus/simnet"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// paced is the simulation's spec for the deadline tests: rounds.timeout
// six times the commit timeout, as in the default spec (60 s and 10 s),
// so that a fixed deadline would show; members that miss rounds are kept
// (members.absent), so that the tests see every round they are late in.
func paced(s *runspec.Spec) {
	s.Rounds.Timeout = runspec.Duration{Duration: 6 * time.Second}
	s.Rounds.CommitTimeout = runspec.Duration{Duration: time.Second}
	s.Members.Absent = 1000
}

// deadlineRun is what a deadline test reads off a simulation: each honest
// engine's deadline and late members per round, and the round times seen
// by one engine.
type deadlineRun struct {
	sn        *simnet.Net
	deadlines map[uint64]map[time.Duration]int // round → deadline → engines that had it
	late      map[uint64]map[consensus.PeerID]int
	decided   map[uint64]int
}

func newDeadlineRun(t *testing.T, n int, seed uint64) *deadlineRun {
	dr := &deadlineRun{sn: simnet.New(t, n, seed, paced), deadlines: map[uint64]map[time.Duration]int{},
		late: map[uint64]map[consensus.PeerID]int{}, decided: map[uint64]int{}}
	dr.sn.OnDecided = func(sn *simnet.Net, i int, d consensus.Decided) {
		if !sn.Honest(i) || d.Restored {
			return
		}
		if dr.deadlines[d.Round] == nil {
			dr.deadlines[d.Round], dr.late[d.Round] = map[time.Duration]int{}, map[consensus.PeerID]int{}
		}
		dr.deadlines[d.Round][d.Deadline]++
		for _, p := range d.Late {
			dr.late[d.Round][p]++
		}
		dr.decided[d.Round]++
	}
	return dr
}

// run runs to round `rounds` and checks safety, liveness and that every
// honest engine had the same deadline in every round.
func (dr *deadlineRun) run(t *testing.T, rounds uint64) {
	t.Helper()
	dr.sn.Run(rounds, 30*time.Minute)
	dr.sn.Finish(rounds)
	for r, ds := range dr.deadlines {
		if len(ds) != 1 {
			t.Fatalf("round %d: honest engines disagree on the deadline: %v", r, ds)
		}
	}
}

// roundTimes returns the time between peer i's consecutive decisions from
// round `from` on.
func (dr *deadlineRun) roundTimes(i int, from, to uint64) []time.Duration {
	var out []time.Duration
	for r := from; r < to; r++ {
		a, b := dr.sn.All[i][r-1], dr.sn.All[i][r]
		if len(a) == 0 || len(b) == 0 {
			continue
		}
		out = append(out, b[0].At-a[0].At)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// lateIn counts the rounds in [from, to) that every honest engine reported
// p late in.
func (dr *deadlineRun) lateIn(p consensus.PeerID, from, to uint64) int {
	n := 0
	for r := from; r < to; r++ {
		if dr.decided[r] > 0 && dr.late[r][p] == dr.decided[r] {
			n++
		}
	}
	return n
}

// deadlineOf returns the deadline every honest engine had in round r.
func (dr *deadlineRun) deadlineOf(r uint64) time.Duration {
	for d := range dr.deadlines[r] {
		return d
	}
	return 0
}

// TestDeadlineSlowLink: five founders, one behind a slow link. A member a
// little slower than the rest is waited for (its work counts in most
// rounds); one far slower is not, and is reported late instead: the
// median round time stays within 1.5× the run without a slow link, and
// once the far member's pace is past the deadline (a known straggler) the
// rounds close as soon as the others' updates are in (1.2×). Under
// the rule before the agreed deadline (a quorum, then half its time again,
// at least a commit timeout) the far slower member made every round wait a
// commit timeout past the quorum: 2.5× the fast run.
func TestDeadlineSlowLink(t *testing.T) {
	const rounds = 30
	slow := 4
	link := func(lag time.Duration) func(a, b int) time.Duration {
		return func(a, b int) time.Duration {
			if a == slow || b == slow {
				return lag
			}
			return 0
		}
	}
	for seed := uint64(1); seed <= 3; seed++ {
		fast := newDeadlineRun(t, 5, seed)
		fast.run(t, rounds)
		base := median(fast.roundTimes(0, 5, rounds))

		mild := newDeadlineRun(t, 5, seed)
		mild.sn.Lag = link(100 * time.Millisecond)
		mild.run(t, rounds)
		mt := median(mild.roundTimes(0, 5, rounds))
		if n := mild.lateIn(mild.sn.IDs[slow], 5, rounds); n > (rounds-5)/4 {
			t.Fatalf("seed %d: a member 100 ms away was late in %d of %d rounds: want it waited for", seed, n, rounds-5)
		}

		far := newDeadlineRun(t, 5, seed)
		far.sn.Lag = link(1500 * time.Millisecond)
		far.run(t, rounds)
		ft := median(far.roundTimes(0, 5, rounds))
		if n := far.lateIn(far.sn.IDs[slow], 5, rounds); n < (rounds-5)*3/4 {
			t.Fatalf("seed %d: a member 1.5 s away was reported late in %d of %d rounds", seed, n, rounds-5)
		}
		for _, x := range []time.Duration{mt, ft} {
			if 2*x > 3*base {
				t.Fatalf("seed %d: median round %v with a slow link, %v without: more than 1.5×", seed, x, base)
			}
		}
		// A member that keeps missing the deadline is a known straggler:
		// the others' rounds close as soon as their own updates are in.
		if 5*ft > 6*base {
			t.Fatalf("seed %d: median round %v with a member far away, %v without: the rounds still wait for it", seed, ft, base)
		}
		if d := far.deadlineOf(rounds - 1); d >= far.sn.Spec.Rounds.Timeout.Duration/2 {
			t.Fatalf("seed %d: deadline %v: it did not follow the members' pace", seed, d)
		}
		t.Logf("seed %d: median round %v fast, %v with a member 100 ms away, %v with one 1.5 s away (deadline %v)", seed, base, mt, ft, far.deadlineOf(rounds-1))
	}
}

// TestDeadlineSilentProposer: a voter that says nothing costs the rounds
// it should propose a few deadlines (the voters' propose timeout follows
// the agreed deadline), not rounds.timeout.
func TestDeadlineSilentProposer(t *testing.T) {
	const rounds = 24
	dr := newDeadlineRun(t, 4, 7)
	dr.sn.Byz[3] = simnet.Withholder{}
	dr.run(t, rounds)
	ct := dr.sn.Spec.Rounds.CommitTimeout.Duration
	var worst time.Duration
	for _, x := range dr.roundTimes(0, 4, rounds) {
		worst = max(worst, x)
	}
	d := dr.deadlineOf(rounds - 1)
	if worst > 2*d+3*ct || worst >= dr.sn.Spec.Rounds.Timeout.Duration {
		t.Fatalf("slowest round %v with a silent proposer, deadline %v: want at most 2×deadline + 3 commit timeouts, under rounds.timeout %v", worst, d, dr.sn.Spec.Rounds.Timeout.Duration)
	}
	if n := dr.lateIn(dr.sn.IDs[3], 4, rounds); n != rounds-4 {
		t.Fatalf("the silent voter was reported late in %d of %d rounds", n, rounds-4)
	}
	t.Logf("slowest round %v (deadline %v, rounds.timeout %v)", worst, d, dr.sn.Spec.Rounds.Timeout.Duration)
}

// TestDeadlineLyingProposer: a Byzantine voter reports false arrival times
// when it proposes. Reports it shifts all at once (every update at
// rounds.timeout, or at 1 ms) pass the voters' checks, and the paces bound
// what they do: the deadline stays within a small factor of the honest
// run's, the run stays live and safe, and every honest engine has the same
// deadline every round. A report that singles out one member (its arrival
// far from the others') is refused: no such value is decided in view 0.
func TestDeadlineLyingProposer(t *testing.T) {
	const rounds = 30
	honest := newDeadlineRun(t, 4, 11)
	honest.run(t, rounds)
	want := honest.deadlineOf(rounds - 1)
	timeout := uint32(paced2().Rounds.Timeout.Milliseconds())
	lies := []struct {
		name string
		lie  func(r consensus.UpdateRef) uint32
		lo   int // the deadline at the end, in quarters of the honest one, at least
		hi   int // and at most
	}{
		{"inflate", func(consensus.UpdateRef) uint32 { return timeout }, 4, 10},
		{"deflate", func(consensus.UpdateRef) uint32 { return 1 }, 3, 4},
	}
	for _, lc := range lies {
		t.Run(lc.name, func(t *testing.T) {
			dr := newDeadlineRun(t, 4, 11)
			liar := dr.sn.IDs[3]
			dr.sn.Byz[3] = simnet.HonestActor{}
			defer consensus.LiePaceForTest(func(self consensus.PeerID, r consensus.UpdateRef) (uint32, bool) {
				return lc.lie(r), self == liar
			})()
			dr.run(t, rounds)
			got := dr.deadlineOf(rounds - 1)
			if 4*got < time.Duration(lc.lo)*want || 4*got > time.Duration(lc.hi)*want {
				t.Fatalf("deadline %v with a liar, %v without: want between %d/4 and %d/4 of it", got, want, lc.lo, lc.hi)
			}
			t.Logf("deadline %v with the liar, %v without", got, want)
		})
	}
	t.Run("single-out", func(t *testing.T) {
		dr := newDeadlineRun(t, 4, 11)
		liar, victim := dr.sn.IDs[3], dr.sn.IDs[1]
		dr.sn.Byz[3] = simnet.HonestActor{}
		defer consensus.LiePaceForTest(func(self consensus.PeerID, r consensus.UpdateRef) (uint32, bool) {
			return timeout, self == liar && r.From == victim
		})()
		var byLiar int
		dr.sn.OnDecided = func(sn *simnet.Net, i int, d consensus.Decided) {
			if i != 0 || d.Restored {
				return
			}
			if consensus.Proposer(d.Round, d.Cert.View, sn.Engines[0].Voters()) == liar && d.Cert.View == 0 {
				byLiar++
			}
		}
		dr.run(t, rounds)
		if byLiar > 0 {
			t.Fatalf("%d values of the liar that single out %s were decided in view 0", byLiar, victim)
		}
		if m, _ := dr.sn.Engines[0].Members().Find(victim); time.Duration(m.Pace)*time.Millisecond > want {
			t.Fatalf("%s's pace %d ms: the liar moved it", victim, m.Pace)
		}
	})
}

func paced2() runspec.Spec {
	s := runspec.Default()
	paced(&s)
	return s
}

// TestDeadlinePrivatePeer: four founders, the last a private peer whose
// updates come at the pace of its proofs, 3 s, where the others train in
// half a second. In a run that waits for its private peers (the default)
// the agreed deadline follows its pace: its update is aggregated on time
// in nearly every round, and every honest engine holds the same deadline
// every round. With privacy.wait = false it is a known straggler, as any
// member that slow: its updates come after their round closed, stale, and
// it contributes in few rounds (the rule this test is for: without it the
// waiting run is the same as this one).
func TestDeadlinePrivatePeer(t *testing.T) {
	const rounds, from, slow, proof = 30, 5, 3, 3 * time.Second
	for seed := uint64(1); seed <= uint64(simSeeds(2)); seed++ {
		for _, wait := range []bool{true, false} {
			sn := simnet.New(t, 4, seed, func(s *runspec.Spec) {
				paced(s)
				s.Inner.Optimizer, s.Inner.Momentum, s.Inner.WeightDecay, s.Inner.Steps = "sgd", 0, 0, 20
				s.Privacy = runspec.Privacy{Mode: "zk", Depth: 16, VKSHA256: strings.Repeat("0", 64),
					Peers: []runspec.PrivatePeer{{Peer: s.Members.Genesis[slow], DataRoot: strings.Repeat("0", 64), DataSize: 1000}}}
				if !wait {
					s.Privacy.Wait = new(bool)
				}
			})
			p := sn.IDs[slow]
			if !sn.Spec.IsPrivate(string(p)) || sn.Spec.WaitsForPrivate() != wait {
				t.Fatalf("the spec's private peer is not %s (waits %v)", p, sn.Spec.WaitsForPrivate())
			}
			sn.TrainFor = func(n *simnet.Net, i int) time.Duration {
				if i == slow {
					return proof
				}
				return n.TrainTime
			}
			sn.Judge = provenJudge(p, proof)
			sn.Work = func(n *simnet.Net, i int, req *consensus.TrainRequest) *consensus.Update {
				u := simnet.ToyWork(n, i, req)
				if i == slow {
					// A private update carries a commitment per inner step
					// and the one before them, in place of segment roots.
					u.Segments = make([]consensus.Hash, n.Spec.Inner.Steps+1)
					for k := range u.Segments {
						u.Segments[k][0], u.Segments[k][1] = byte(k), byte(req.Round)
					}
				}
				return u
			}
			dr := &deadlineRun{sn: sn, deadlines: map[uint64]map[time.Duration]int{}, late: map[uint64]map[consensus.PeerID]int{}, decided: map[uint64]int{}}
			sn.OnDecided = func(sn *simnet.Net, i int, d consensus.Decided) {
				if !sn.Honest(i) || d.Restored {
					return
				}
				if dr.deadlines[d.Round] == nil {
					dr.deadlines[d.Round], dr.late[d.Round] = map[time.Duration]int{}, map[consensus.PeerID]int{}
				}
				dr.deadlines[d.Round][d.Deadline]++
				dr.decided[d.Round]++
			}
			lr := watchLate(sn, from)
			dr.run(t, rounds)
			got := lr.onTime[p]
			t.Logf("seed %d wait %v: the private peer on time in %d of %d rounds, late in %d; deadline %v in round %d", seed, wait, got, lr.decided, lr.late[p], dr.deadlineOf(rounds-1), rounds-1)
			switch {
			case wait && 10*got < 9*lr.decided:
				t.Errorf("seed %d: waiting for it, the private peer's update was on time in %d of %d rounds", seed, got, lr.decided)
			case wait && dr.deadlineOf(rounds-1) < proof:
				t.Errorf("seed %d: waiting for it, the deadline %v is under its pace %v", seed, dr.deadlineOf(rounds-1), proof)
			case !wait && 4*(got+lr.late[p]) > lr.decided:
				t.Errorf("seed %d: not waiting for it, the private peer still contributed in %d of %d rounds", seed, got+lr.late[p], lr.decided)
			}
		}
	}
}

// provenJudge is the challengers' side of a private peer's proofs: its
// drawn step proven after prove (the simulation's engines check no proof:
// their ProofChecker is nil), and a pass on every other update drawn.
func provenJudge(private consensus.PeerID, prove time.Duration) func(*simnet.Net, int, consensus.Decided, spot.Challenge) (*consensus.VerdictMsg, time.Duration) {
	return func(n *simnet.Net, i int, d consensus.Decided, ch spot.Challenge) (*consensus.VerdictMsg, time.Duration) {
		if consensus.PeerID(ch.Peer) != private {
			return honestPass(n, i, d, ch)
		}
		id := consensus.Hash(ch.Update)
		step := consensus.PrivateStep(d.Beacon, id, n.Spec.Inner.Steps)
		a := &consensus.Answer{Round: d.Round, Update: id, Segment: step, Proof: []byte("a proof")}
		a.Sig = simnet.Sign(private)(consensus.AnswerSignBytes(n.Spec.RunID(), a))
		return &consensus.VerdictMsg{Round: d.Round, Update: id, Accused: private, Segment: step, Pass: true, Answer: a}, prove
	}
}

// TestDeadlineSilentPrivatePeer: a private peer that the run waits for
// and that never sends an update costs rising deadlines only until it is
// dropped as absent (members.absent rounds), then the rounds go at the
// public peers' pace again; every honest engine agrees on every deadline.
func TestDeadlineSilentPrivatePeer(t *testing.T) {
	const rounds, slow = 20, 3
	for seed := uint64(1); seed <= uint64(simSeeds(2)); seed++ {
		sn := simnet.New(t, 4, seed, func(s *runspec.Spec) {
			paced(s)
			s.Members.Absent = 4
			s.Inner.Optimizer, s.Inner.Momentum, s.Inner.WeightDecay, s.Inner.Steps = "sgd", 0, 0, 20
			s.Privacy = runspec.Privacy{Mode: "zk", Depth: 16, VKSHA256: strings.Repeat("0", 64),
				Peers: []runspec.PrivatePeer{{Peer: s.Members.Genesis[slow], DataRoot: strings.Repeat("0", 64), DataSize: 1000}}}
		})
		sn.Down[slow] = true
		dr := &deadlineRun{sn: sn, deadlines: map[uint64]map[time.Duration]int{}, late: map[uint64]map[consensus.PeerID]int{}, decided: map[uint64]int{}}
		sn.OnDecided = func(sn *simnet.Net, i int, d consensus.Decided) {
			if !sn.Honest(i) || d.Restored {
				return
			}
			if dr.deadlines[d.Round] == nil {
				dr.deadlines[d.Round] = map[time.Duration]int{}
			}
			dr.deadlines[d.Round][d.Deadline]++
		}
		dr.run(t, rounds)
		if sn.Engines[0].Members().Has(sn.IDs[slow]) {
			t.Fatalf("seed %d: the silent private peer is still a member in round %d", seed, rounds)
		}
		var total time.Duration
		for r := uint64(1); r < rounds; r++ {
			total += dr.deadlineOf(r)
		}
		last := median(dr.roundTimes(0, rounds-8, rounds))
		t.Logf("seed %d: deadlines %v … %v, %v in all; median round at the end %v", seed, dr.deadlineOf(2), dr.deadlineOf(6), total, last)
		if last > 1500*time.Millisecond {
			t.Errorf("seed %d: median round %v once the silent private peer was dropped", seed, last)
		}
	}
}
