package trainer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/consensus/simnet"
	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// The challenge simulation: the round protocol (package consensus, on its
// simulated network) with this package's application, payload encoding
// and Judge, and a toy replayer for the inner steps so that hundreds of
// runs take seconds.

// toyReplayer: each inner step moves a few coordinates by a deterministic
// function of the state, the seed and the step, so that states depend on
// every update and re-execution is cheap.
type toyReplayer struct{ seed uint64 }

func (toyReplayer) Start(base []float32) (Snapshot, error) {
	return Snapshot{Params: slices.Clone(base), Opt: map[string][]float32{}}, nil
}

func (r toyReplayer) Run(from Snapshot, steps int) (Snapshot, error) {
	s := Snapshot{Step: from.Step, Params: slices.Clone(from.Params), Opt: map[string][]float32{}, OptSteps: from.OptSteps}
	for range steps {
		g := prng.New(prng.Derive(r.seed, uint64(s.Step)))
		for range 8 {
			j := g.Intn(len(s.Params))
			s.Params[j] -= 0.01*s.Params[j] + float32(g.Norm()*1e-3)
		}
		s.Step++
		s.OptSteps++
	}
	return s, nil
}

// toyEvidence is what a peer keeps to answer challenges on one update.
type toyEvidence struct {
	starts   []Snapshot
	final    Snapshot
	residual []float32
}

func toyWork(spec runspec.Spec, round uint64, base []float32, seed uint64) (Work, *toyEvidence) {
	r := toyReplayer{seed}
	st, _ := r.Start(base)
	ev := &toyEvidence{}
	var segs []Hash
	for seg := range spec.Segments() {
		lo, hi := SegmentSteps(spec, seg)
		ev.starts = append(ev.starts, st)
		st, _ = r.Run(st, hi-lo)
		segs = append(segs, st.Hash())
	}
	ev.final = st
	delta := make([]float32, len(base))
	for i := range delta {
		delta[i] = base[i] - st.Params[i]
	}
	return Work{Round: round, Delta: delta, Samples: uint64(spec.Inner.Steps * spec.Inner.Batch), Loss: 1, Segments: segs}, ev
}

// misbehaviours the simulation plays (forged signatures never reach an
// engine: the gossip layer rejects them, see gossip's tests).
var misbehaviours = []string{"lazy", "noise", "replay", "scaled", "stale"}

// challengeSim is a simulated run in which some members cheat at training.
type challengeSim struct {
	*simnet.Net
	behave   map[int]string
	enc      map[int]*Encoder
	bases    map[int]map[uint64][]float32 // per peer: the base of each round it trained
	evidence map[Hash]*toyEvidence        // behind each published update
	pub      map[Hash]*consensus.Update
	verdicts []*consensus.VerdictMsg
	excluded map[consensus.PeerID]uint64 // first round each peer is excluded from
}

func newChallengeSim(t *testing.T, n int, seed uint64) *challengeSim {
	cs := &challengeSim{behave: map[int]string{}, enc: map[int]*Encoder{}, bases: map[int]map[uint64][]float32{},
		evidence: map[Hash]*toyEvidence{}, pub: map[Hash]*consensus.Update{}, excluded: map[consensus.PeerID]uint64{}}
	cs.Net = simnet.New(t, n, seed, func(s *runspec.Spec) {
		s.Verify = runspec.Default().Verify
		s.Model = runspec.Model{Kind: "mlp", Hidden: []int{1}} // 805 parameters: fast
	})
	cs.MaxDelay = 100 * time.Millisecond
	cs.App = func(spec runspec.Spec) consensus.App {
		a, err := NewApp(spec)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	cs.TrainFor = func(sn *simnet.Net, i int) time.Duration {
		if cs.behave[i] == "replay" {
			return sn.TrainTime * 3 / 2 // after the others, to copy one
		}
		return sn.TrainTime
	}
	cs.Work = cs.work
	cs.Judge = cs.judge
	cs.OnDecided = func(sn *simnet.Net, i int, d consensus.Decided) {
		for _, x := range d.Excluded {
			if _, ok := cs.excluded[x.Peer]; !ok {
				cs.excluded[x.Peer] = d.Round + 1
			}
		}
	}
	return cs
}

// work is peer i's update for a request, honest or as it misbehaves, with
// the evidence it keeps for challengers.
func (cs *challengeSim) work(sn *simnet.Net, i int, req *consensus.TrainRequest) *consensus.Update {
	spec := sn.Spec
	if cs.bases[i] == nil {
		cs.bases[i] = map[uint64][]float32{}
	}
	cs.bases[i][req.Round] = req.Theta
	w, ev := toyWork(spec, req.Round, req.Theta, req.Seed)
	r := prng.New(prng.Derive(req.Seed, 99))
	switch cs.behave[i] {
	case "lazy":
		for j := range w.Delta {
			w.Delta[j] = float32(r.Norm() * 1e-4)
		}
		for j := range w.Segments {
			w.Segments[j] = sha256.Sum256(fmt.Appendf(nil, "lazy %d %d", req.Seed, j))
		}
		ev = nil
	case "noise", "scaled":
		var n2 float64
		for _, x := range w.Delta {
			n2 += float64(x) * float64(x)
		}
		for j := range w.Delta {
			if cs.behave[i] == "scaled" {
				w.Delta[j] *= 50
			} else {
				w.Delta[j] = float32(r.Norm() * math.Sqrt(n2/float64(len(w.Delta))))
			}
		}
	case "stale":
		if old, ok := cs.bases[i][req.Round-2]; ok && req.Round >= 2 {
			w, ev = toyWork(spec, req.Round, old, req.Seed)
		}
	}
	if cs.enc[i] == nil {
		e, err := NewEncoder(spec)
		if err != nil {
			cs.T.Fatal(err)
		}
		cs.enc[i] = e
	}
	if ev != nil {
		ev.residual = slices.Clone(cs.enc[i].Residual())
	}
	u, err := cs.enc[i].Update(req, w)
	if err != nil {
		cs.T.Fatal(err)
	}
	u.From = sn.IDs[i]
	if cs.behave[i] == "replay" {
		// Re-sign the first honest peer's update (always the same victim,
		// so that the copied residuals chain); it holds nothing behind it.
		for _, v := range sn.Engines[i].Updates() {
			if v.From == sn.IDs[cs.victim()] {
				u.Payload, u.Samples, u.Loss, u.Segments = v.Payload, v.Samples, v.Loss, v.Segments
				u.ResidualIn, u.ResidualOut = v.ResidualIn, v.ResidualOut
				ev = nil
			}
		}
	}
	id := u.ID(sn.Spec.RunID())
	cs.pub[id] = u
	if ev != nil {
		cs.evidence[id] = ev
	}
	return u
}

func (cs *challengeSim) victim() int {
	for i := range cs.Engines {
		if cs.behave[i] == "" {
			return i
		}
	}
	return 0
}

// judge runs challenge ch of decided round d at its challenger i with this
// package's Judge on what the accused would serve.
func (cs *challengeSim) judge(sn *simnet.Net, i int, d consensus.Decided, ch spot.Challenge) (*consensus.VerdictMsg, time.Duration) {
	u, base := cs.pub[ch.Update], cs.bases[i][d.Round]
	if u == nil || base == nil {
		return nil, 0 // it did not train that round (restored past it): it cannot check
	}
	var ev Evidence
	if k := cs.evidence[ch.Update]; k != nil && !sn.Down[sn.Index(consensus.PeerID(ch.Peer))] {
		ev = Evidence{Final: k.final, ResidualIn: k.residual}
		if ch.Segment > 0 {
			ev.Start = &k.starts[ch.Segment]
		}
	}
	err := Judge(sn.Spec, base, u, ch.Segment, ev, toyReplayer{RoundSeed(sn.Spec, d.Round, u.From)})
	if err != nil && !errors.Is(err, ErrChallenge) {
		sn.T.Fatal(err)
	}
	v := &consensus.VerdictMsg{Round: d.Round, Update: ch.Update, Accused: consensus.PeerID(ch.Peer), Segment: ch.Segment, Pass: err == nil}
	if err != nil {
		v.Reason = err.Error()
	}
	cs.verdicts = append(cs.verdicts, v)
	return v, sn.TrainTime / 4
}

// TestSimChallenges runs many seeded simulated runs with always-cheating
// members at the default verification policy and checks the two promises
// of spot-checking: no honest member ever gets a fail verdict, and every
// cheater is excluded by every honest member within 30 rounds.
func TestSimChallenges(t *testing.T) {
	runs := 200
	if testing.Short() {
		runs = 30
	}
	if s := os.Getenv("VTRAIN_SIM_SEEDS"); s != "" {
		fmt.Sscan(s, &runs) // the full sweep benchmarks/README.md reports
	}
	caught := map[string][]uint64{}
	for seed := range uint64(runs) {
		r := prng.New(prng.Derive(seed, 7))
		n := 4 + r.Intn(5) // 4..8 members
		cheaters := 1 + r.Intn(2)
		cs := newChallengeSim(t, n, seed)
		for c := 0; c < cheaters; c++ {
			cs.behave[n-1-c] = misbehaviours[r.Intn(len(misbehaviours))]
		}
		cs.Run(31, 2*time.Hour)
		cs.Finish(31)
		for _, v := range cs.verdicts {
			if !v.Pass && cs.behave[cs.Index(v.Accused)] == "" {
				t.Fatalf("seed %d: honest %s failed a challenge: %s", seed, v.Accused, v.Reason)
			}
		}
		for i, b := range cs.behave {
			p := cs.IDs[i]
			at, ok := cs.excluded[p]
			if !ok || at > 30 {
				t.Fatalf("seed %d: %s peer %s not excluded within 30 rounds (excluded at %d, %v)", seed, b, p, at, ok)
			}
			for j, e := range cs.Engines {
				if cs.behave[j] == "" && !e.Members().IsExcluded(p) {
					t.Fatalf("seed %d: honest peer %d does not exclude %s %s", seed, j, b, p)
				}
			}
			caught[b] = append(caught[b], at)
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
