package trainer

import (
	"container/heap"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"strings"

	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// The simulated network: engines exchange messages through a seeded event
// queue with per-message delay, drop and duplication, and partitions that
// cut links for a while. Local training is a cheap deterministic function
// of (θ, seed), so hundreds of rounds run in milliseconds.

type simEvent struct {
	at   time.Duration
	seq  int
	to   int
	msg  any // *UpdateMsg, *CommitMsg, trained, fetchReply, stateReply
	from int
}

type trained struct {
	work Work
	ev   *toyEvidence
}

// verdictDone is a finished challenge, delivered to its challenger.
type verdictDone struct{ v *VerdictMsg }

type stateReply struct{ st State }

type eventQueue []*simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simNet struct {
	t       *testing.T
	rng     *prng.Source
	engines []*Engine
	ids     []PeerID
	q       eventQueue
	seq     int
	now     time.Duration

	drop, dup float64
	maxDelay  time.Duration
	cut       func(a, b int, now time.Duration) bool // partition: link a→b down
	down      map[int]bool                           // crashed peers
	trainTime time.Duration

	decided []map[uint64]Hash // per engine: round → result
	msgs    int
	debug   bool
	log     []string

	onPublish func(payloadBytes int)

	// Verification: misbehaving peers, each peer's evidence for its
	// updates (what it would serve a challenger), and the verdicts.
	behave   map[int]string
	evidence map[Hash]*toyEvidence
	pubs     map[uint64][]*UpdateMsg // updates published per round
	thetas   []map[uint64][]float32  // per peer: the base of each round it trained
	verdicts []*VerdictMsg
	excluded map[PeerID]uint64 // first round a peer was excluded in (any engine)
}

func simSpec(t testing.TB) runspec.Spec {
	s := runspec.Default()
	s.Model = runspec.Model{Kind: "logreg"}
	s.Data.Source = "synthetic"
	s.Run.Rounds = 0
	s.Compression = runspec.Compression{Fraction: 0.05, Bits: 8, Chunk: 64}
	s.Rounds.Timeout = runspec.Duration{Duration: 2 * time.Second}
	s.Rounds.CommitTimeout = runspec.Duration{Duration: time.Second}
	// The agreement tests run without spot-checks; TestSimChallenges adds
	// them.
	s.Verify.Rate, s.Verify.NewcomerRate = 0, 0
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func newSimNet(t *testing.T, n int, seed uint64, spec runspec.Spec) *simNet {
	sn := &simNet{t: t, rng: prng.New(seed), maxDelay: 50 * time.Millisecond, trainTime: 500 * time.Millisecond, down: map[int]bool{}}
	g, err := Genesis(spec)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		id := PeerID(fmt.Sprintf("peer%02d", i))
		sn.ids = append(sn.ids, id)
		g.Members = nil
		e, err := NewEngine(EngineConfig{Spec: spec, Self: id}, g)
		if err != nil {
			t.Fatal(err)
		}
		sn.engines = append(sn.engines, e)
		sn.decided = append(sn.decided, map[uint64]Hash{})
		sn.thetas = append(sn.thetas, map[uint64][]float32{})
	}
	sn.behave, sn.evidence, sn.pubs, sn.excluded = map[int]string{}, map[Hash]*toyEvidence{}, map[uint64][]*UpdateMsg{}, map[PeerID]uint64{}
	return sn
}

func (sn *simNet) push(at time.Duration, to, from int, msg any) {
	sn.seq++
	heap.Push(&sn.q, &simEvent{at: at, seq: sn.seq, to: to, from: from, msg: msg})
}

func (sn *simNet) delay() time.Duration {
	return time.Duration(sn.rng.Float64() * float64(sn.maxDelay))
}

// toyReplayer is the simulation's local work: each inner step moves a few
// coordinates by a deterministic function of the state, the seed and the
// step, so that states depend on every update and re-execution is cheap.
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
	starts   []Snapshot // segment start states
	final    Snapshot
	residual []float32
}

// toyWork runs a round's inner steps from base with the toy replayer,
// returning the work and its evidence.
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

func (sn *simNet) process(i int) {
	e := sn.engines[i]
	rd := e.Ready()
	if sn.debug {
		for _, ev := range rd.Events {
			sn.log = append(sn.log, fmt.Sprintf("%6.1fs peer %d: %s", sn.now.Seconds(), i, ev))
		}
		for _, res := range rd.Decided {
			sn.log = append(sn.log, fmt.Sprintf("%6.1fs peer %d: decided round %d → %s (%d updates, %d votes)", sn.now.Seconds(), i, res.Round, res.Result.Short(), len(res.Updates), res.Votes))
		}
	}
	for _, res := range rd.Decided {
		for _, x := range res.Excluded {
			if _, ok := sn.excluded[x.Peer]; !ok {
				sn.excluded[x.Peer] = res.Round + 1
			}
		}
		for _, c := range res.Challenges {
			if c.Challenger == string(sn.ids[i]) {
				sn.challenge(i, res, c)
			}
		}
		if len(res.Updates) == 0 {
			// A restore: this engine was in a minority (or behind). A
			// minority decision it made is superseded by the majority
			// state it now adopts; it can span the round before the one
			// restored (the minority learns it is one from the next
			// round's traffic), so those views are dropped.
			delete(sn.decided[i], res.Round-1)
		}
		if prev, ok := sn.decided[i][res.Round]; ok && prev != res.Result {
			// A restore may overwrite a round decided in the minority.
			if sn.debug {
				sn.t.Logf("peer %d: round %d re-decided %s → %s", i, res.Round, prev.Short(), res.Result.Short())
			}
		}
		sn.decided[i][res.Round] = res.Result
	}
	for _, o := range rd.Publish {
		if o.Update != nil && sn.onPublish != nil {
			sn.onPublish(len(o.Update.Payload))
		}
		if o.Update != nil {
			sn.pubs[o.Update.Round] = append(sn.pubs[o.Update.Round], o.Update)
		}
		for j := range sn.engines {
			if j == i {
				continue
			}
			var m any
			switch {
			case o.Update != nil:
				m = o.Update
			case o.Commit != nil:
				m = o.Commit
			case o.Verdict != nil:
				m = o.Verdict
			default:
				m = o.Hello
			}
			sn.send(i, j, m)
		}
	}
	if rd.Train != nil {
		sn.thetas[i][rd.Train.Round] = rd.Train.Theta
		delete(sn.thetas[i], rd.Train.Round-3)
		at := sn.now + sn.trainTime + sn.delay()
		if sn.behave[i] == "replay" {
			at += sn.trainTime / 2 // after the others, to copy one
		}
		w, ev := sn.work(i, rd.Train)
		sn.push(at, i, i, &trained{w, ev})
	}
	if f := rd.FetchUpdates; f != nil && len(f.From) > 0 {
		j := sn.index(f.From[sn.rng.Intn(len(f.From))])
		if !sn.down[j] && !sn.linkCut(i, j) {
			for _, u := range sn.engines[j].ServeUpdates(f.IDs) {
				sn.push(sn.now+sn.delay(), i, j, u)
			}
		}
	}
	if s := rd.FetchState; s != nil && len(s.From) > 0 {
		j := sn.index(s.From[sn.rng.Intn(len(s.From))])
		if !sn.down[j] && !sn.linkCut(i, j) {
			if st, ok := sn.engines[j].ServeState(s.Hash); ok {
				sn.push(sn.now+sn.delay(), i, j, &stateReply{st})
			}
		}
	}
}

func (sn *simNet) index(p PeerID) int {
	for i, id := range sn.ids {
		if id == p {
			return i
		}
	}
	sn.t.Fatalf("unknown peer %s", p)
	return -1
}

func (sn *simNet) linkCut(a, b int) bool { return sn.cut != nil && sn.cut(a, b, sn.now) }

func (sn *simNet) send(from, to int, m any) {
	if sn.down[to] || sn.linkCut(from, to) || sn.rng.Float64() < sn.drop {
		return
	}
	sn.msgs++
	sn.push(sn.now+sn.delay(), to, from, m)
	if sn.rng.Float64() < sn.dup {
		sn.push(sn.now+sn.delay(), to, from, m)
	}
}

// run advances the simulation until every live engine decided `rounds`
// rounds or the time limit passes.
func (sn *simNet) run(rounds uint64, limit time.Duration) {
	for i := range sn.engines {
		sn.process(i)
	}
	const tick = 100 * time.Millisecond
	nextTick := tick
	for sn.now < limit {
		done := true
		for i, e := range sn.engines {
			// Two rounds past the checked ones: a divergence in round r
			// shows (and heals) in round r+1's traffic, as in a live run.
			if !sn.down[i] && sn.behave[i] == "" && e.Round() < rounds+2 {
				done = false
			}
		}
		if done {
			return
		}
		if len(sn.q) == 0 || sn.q[0].at > nextTick {
			sn.now = nextTick
			nextTick += tick
			for i, e := range sn.engines {
				if !sn.down[i] {
					e.Tick(tick)
					sn.process(i)
				}
			}
			continue
		}
		ev := heap.Pop(&sn.q).(*simEvent)
		sn.now = ev.at
		if sn.down[ev.to] {
			continue
		}
		e := sn.engines[ev.to]
		switch m := ev.msg.(type) {
		case *UpdateMsg:
			e.Step(m)
		case *CommitMsg:
			e.StepCommit(m)
		case *HelloMsg:
			e.StepHello(m)
		case *VerdictMsg:
			e.StepVerdict(m)
		case *verdictDone:
			sn.verdicts = append(sn.verdicts, m.v)
			e.StepVerdict(m.v)
			for j := range sn.engines {
				if j != ev.to {
					sn.send(ev.to, j, m.v)
				}
			}
		case *trained:
			sn.trained(ev.to, m.work, m.ev)
		case *stateReply:
			if err := e.Restore(m.st); err != nil {
				if sn.debug {
					sn.t.Logf("peer %d: restore: %v", ev.to, err)
				}
			}
		}
		sn.process(ev.to)
	}
}

// agreed checks that every live engine decided the same result for every
// round below `rounds` (engines run on past it, so later rounds may still
// be settling), and returns the agreed result of round rounds-1.
func (sn *simNet) agreed(rounds uint64) Hash {
	sn.t.Helper()
	var ref map[uint64]Hash
	refPeer := -1
	for i := range sn.engines {
		if sn.down[i] {
			continue
		}
		if sn.engines[i].Round() < rounds {
			sn.t.Fatalf("peer %d reached round %d of %d", i, sn.engines[i].Round(), rounds)
		}
		if ref == nil {
			ref, refPeer = sn.decided[i], i
			continue
		}
		for r := uint64(0); r < rounds; r++ {
			a, okA := ref[r]
			b, okB := sn.decided[i][r]
			if okA && okB && a != b {
				sn.t.Fatalf("round %d: peer %d decided %s, peer %d decided %s", r, refPeer, a.Short(), i, b.Short())
			}
		}
	}
	return ref[rounds-1]
}

func TestSimAgreementReliable(t *testing.T) {
	sn := newSimNet(t, 5, 1, simSpec(t))
	sn.run(10, 10*time.Minute)
	sn.agreed(10)
	for i := range sn.engines {
		for r := uint64(0); r < 10; r++ {
			if _, ok := sn.decided[i][r]; !ok {
				t.Fatalf("peer %d has no decision for round %d", i, r)
			}
		}
	}
}

func TestSimAgreementDropsDelaysDuplicates(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		sn := newSimNet(t, 6, seed, simSpec(t))
		sn.drop, sn.dup = 0.1, 0.1
		sn.maxDelay = 800 * time.Millisecond
		sn.run(12, 30*time.Minute)
		sn.agreed(12)
	}
}

func TestSimPartitionHeals(t *testing.T) {
	sn := newSimNet(t, 5, 7, simSpec(t))
	// Peers 0-1 are cut from 2-4 between 5s and 20s.
	sn.cut = func(a, b int, now time.Duration) bool {
		if now < 5*time.Second || now > 20*time.Second {
			return false
		}
		return (a < 2) != (b < 2)
	}
	sn.run(15, 30*time.Minute)
	sn.agreed(15)
}

func TestSimCrashedPeerRunGoesOn(t *testing.T) {
	spec := simSpec(t)
	spec.Rounds.Quorum = 3
	sn := newSimNet(t, 5, 3, spec)
	sn.run(3, 10*time.Minute)
	sn.down[4] = true // crash
	sn.run(8, 30*time.Minute)
	sn.agreed(8)
}

func TestSimOutputIsDeterministic(t *testing.T) {
	var hs []Hash
	for i := 0; i < 2; i++ {
		sn := newSimNet(t, 4, 11, simSpec(t))
		sn.drop = 0.05
		sn.run(6, 10*time.Minute)
		hs = append(hs, sn.agreed(6))
	}
	if hs[0] != hs[1] {
		t.Fatal("same seed, different outcome")
	}
}

func TestAggregateRules(t *testing.T) {
	us := [][]float32{{1, -5, 0}, {2, 0, 0}, {3, 100, 0}, {4, 1, 0}, {100, 2, 1}}
	dst := make([]float32, 3)
	if err := Aggregate(runspec.AggMean, 0, us, dst); err != nil || dst[0] != 22 {
		t.Fatalf("mean %v %v", dst, err)
	}
	Aggregate(runspec.AggMedian, 0, us, dst)
	if dst[0] != 3 || dst[1] != 1 || dst[2] != 0 {
		t.Fatalf("median %v", dst)
	}
	Aggregate(runspec.AggTrimmedMean, 0.2, us, dst)
	if dst[0] != 3 || dst[1] != 1 {
		t.Fatalf("trimmed mean %v", dst)
	}
	if err := Aggregate("vote", 0, us, dst); err == nil {
		t.Fatal("unknown rule accepted")
	}
	if math.IsNaN(float64(dst[0])) {
		t.Fatal("nan")
	}
}

// TestSimStress: 100 seeded runs of 2..8 peers with a majority quorum under
// 20% message loss, 10% duplication and delays up to 1.5 s (longer than the
// commit timeout). Every run must finish 10 rounds with every peer agreeing
// on every round.
func TestSimStress(t *testing.T) {
	if testing.Short() {
		t.Skip("100 simulated runs")
	}
	// A known weakness of the one-phase commit vote: under heavy loss a
	// peer can revise its commit (grow it toward the union) after another
	// peer counted its first one, so two sets can each see a majority and
	// a round is decided two ways for a moment; the minority then follows
	// the majority's state (the engines converge, checked below). The test
	// bounds how often that happens rather than hiding it.
	splits := 0
	for seed := uint64(100); seed < 200; seed++ {
		n := 2 + int(seed%7)
		spec := simSpec(t)
		spec.Rounds.Quorum = n/2 + 1
		sn := newSimNet(t, n, seed, spec)
		sn.drop, sn.dup = 0.2, 0.1
		sn.maxDelay = 1500 * time.Millisecond
		sn.run(10, 60*time.Minute)
		if r, ok := sn.split(10); ok {
			splits++
			t.Logf("seed %d (%d peers): round %d decided two ways before the minority converged", seed, n, r)
		}
		sn.converged()
	}
	if splits > 2 {
		t.Fatalf("%d of 100 runs decided a round two ways", splits)
	}
}

// split reports the first round below rounds that two engines decided
// differently.
func (sn *simNet) split(rounds uint64) (uint64, bool) {
	for r := uint64(0); r < rounds; r++ {
		var ref Hash
		for i := range sn.engines {
			if h, ok := sn.decided[i][r]; ok && !sn.down[i] {
				if ref == (Hash{}) {
					ref = h
				} else if h != ref {
					return r, true
				}
			}
		}
	}
	return 0, false
}

// converged checks that the run heals: the newest round every live
// engine has decided is decided the same by all (running on a few rounds
// when the run stopped right after a split).
func (sn *simNet) converged() {
	sn.t.Helper()
	for try := 0; try < 5; try++ {
		last := ^uint64(0)
		for i, e := range sn.engines {
			if !sn.down[i] {
				last = min(last, e.Round()-1)
			}
		}
		var ref Hash
		same := true
		for i := range sn.engines {
			if h, ok := sn.decided[i][last]; ok && !sn.down[i] {
				if ref == (Hash{}) {
					ref = h
				}
				same = same && h == ref
			}
		}
		if same {
			return
		}
		sn.run(last+2, sn.now+10*time.Minute)
	}
	sn.t.Fatalf("the peers did not converge on one state")
}

func TestEngineRejectsBadUpdates(t *testing.T) {
	spec := simSpec(t)
	spec.Rounds.MaxUpdateNorm = 1
	g, _ := Genesis(spec)
	e, err := NewEngine(EngineConfig{Spec: spec, Self: "me"}, g)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := spec.ModelSpec()
	enc, _ := compress.NewEncoder(spec.CompressParams(), m.NumParams())
	big := make([]float32, m.NumParams())
	for i := range big {
		big[i] = 50
	}
	payload, _ := enc.Encode(big, nil)
	for name, u := range map[string]*UpdateMsg{
		"bad norm":   {Round: 0, Base: e.Hash(), From: "p", Payload: payload},
		"malformed":  {Round: 0, Base: e.Hash(), From: "q", Payload: []byte{1, 2}},
		"non-finite": {Round: 0, Base: e.Hash(), From: "r", Payload: payload, Loss: float32(math.Inf(1))},
		"no sender":  {Round: 0, Base: e.Hash(), Payload: payload},
		"oversize":   {Round: 0, Base: e.Hash(), From: "s", Payload: make([]byte, spec.Rounds.MaxMessage+1)},
	} {
		if d := e.Step(u); d.Verdict != Reject || !strings.Contains(d.Reason, strings.Split(name, " ")[0]) {
			t.Errorf("%s: %s", name, d)
		}
	}
	if d := e.Step(&UpdateMsg{Round: 5, From: "p"}); d.Verdict != Ignore {
		t.Errorf("future round: %s", d)
	}
}

// TestSimFrozenPeersCatchUp: peers freeze (long pauses) while the rest run
// on as a majority of the peers they still hear from, far enough that no one
// holds the states the frozen ones were waiting for. Back, the frozen peers
// must catch up to the newest round and agree with the rest. (Here they
// do so through the majority paths; the stalled-engine rule in catchUp is
// exercised by real runs, where a peer can be aged out by the others.)
func TestSimFrozenPeersCatchUp(t *testing.T) {
	spec := simSpec(t)
	spec.Rounds.Quorum = 2
	sn := newSimNet(t, 5, 21, spec)
	sn.run(2, 10*time.Minute)
	advance := func(n uint64) {
		t.Helper()
		target := sn.engines[2].Round() + n
		for sn.engines[2].Round() < target && sn.now < 60*time.Minute {
			sn.run(sn.engines[2].Round()+1, sn.now+time.Minute)
		}
		if sn.engines[2].Round() < target {
			t.Fatalf("live peers stalled at round %d", sn.engines[2].Round())
		}
	}
	sn.down[0], sn.down[1] = true, true // 3 of 5 live: a majority
	advance(6)
	sn.down[4] = true // 2 of the 3 still heard from: a majority
	advance(6)
	sn.down[0], sn.down[1], sn.down[4] = false, false, false
	target := sn.engines[2].Round() + 4
	sn.run(target, sn.now+30*time.Minute)
	sn.agreed(target)
}

// work is peer i's answer to a train request, honest or as it misbehaves,
// with the evidence it keeps for challengers.
func (sn *simNet) work(i int, req *TrainRequest) (Work, *toyEvidence) {
	spec := sn.engines[i].spec
	w, ev := toyWork(spec, req.Round, req.Theta, req.Seed)
	r := prng.New(prng.Derive(req.Seed, 99))
	switch sn.behave[i] {
	case "lazy":
		for j := range w.Delta {
			w.Delta[j] = float32(r.Norm() * 1e-4)
		}
		for j := range w.Segments {
			w.Segments[j] = sha256.Sum256(fmt.Appendf(nil, "lazy %d %d", req.Seed, j))
		}
		return w, nil
	case "noise", "scaled":
		var n2 float64
		for _, x := range w.Delta {
			n2 += float64(x) * float64(x)
		}
		for j := range w.Delta {
			if sn.behave[i] == "scaled" {
				w.Delta[j] *= 50
			} else {
				w.Delta[j] = float32(r.Norm() * math.Sqrt(n2/float64(len(w.Delta))))
			}
		}
	case "stale":
		if old, ok := sn.thetas[i][req.Round-2]; ok && req.Round >= 2 {
			w, ev = toyWork(spec, req.Round, old, req.Seed)
		}
	}
	return w, ev
}

// trained hands peer i's work to its engine, keeping its evidence under
// the update's ID (what it serves challengers).
func (sn *simNet) trained(i int, w Work, ev *toyEvidence) {
	e := sn.engines[i]
	if sn.behave[i] == "replay" {
		// Copy the update of the first honest peer (always the same
		// victim, so that the copied residuals chain).
		w.Tamper = func(u *UpdateMsg) {
			for _, v := range sn.pubs[u.Round] {
				if v.From == sn.ids[sn.victim()] && v.Base == u.Base {
					u.Payload, u.Samples, u.Loss, u.Segments = v.Payload, v.Samples, v.Loss, v.Segments
					u.ResidualIn, u.ResidualOut = v.ResidualIn, v.ResidualOut
					ev = nil // it holds nothing behind a copy
					return
				}
			}
		}
	}
	if ev != nil {
		ev.residual = slices.Clone(e.Residual())
	}
	if err := e.Trained(w); err != nil && sn.behave[i] == "" {
		sn.t.Fatal(err) // a cheater's engine may refuse its own forgery
	}
	if id, ok := e.byPeer[e.self]; ok && ev != nil && e.round == w.Round {
		sn.evidence[id] = ev
	}
}

// challenge runs challenge c of round res at its challenger i: it takes
// the accused's evidence (what the accused would serve), judges it, and
// delivers the verdict after a while.
func (sn *simNet) challenge(i int, res RoundResult, c spot.Challenge) {
	j := sn.index(PeerID(c.Peer))
	var u *UpdateMsg
	for _, v := range sn.pubs[res.Round] {
		if v.ID(sn.engines[i].RunID()) == Hash(c.Update) {
			u = v
		}
	}
	base := sn.thetas[i][res.Round]
	if u == nil || base == nil {
		return // restored past that round: it cannot check it
	}
	spec := sn.engines[i].spec
	var ev Evidence
	if k := sn.evidence[Hash(c.Update)]; k != nil && !sn.down[j] {
		ev = Evidence{Final: k.final, ResidualIn: k.residual}
		if c.Segment > 0 {
			ev.Start = &k.starts[c.Segment]
		}
	}
	err := Judge(spec, base, u, c.Segment, ev, toyReplayer{RoundSeed(spec, res.Round, u.From)})
	if err != nil && !errors.Is(err, ErrChallenge) {
		sn.t.Fatal(err)
	}
	v := &VerdictMsg{Round: res.Round, Update: Hash(c.Update), Accused: PeerID(c.Peer), Segment: c.Segment, From: sn.ids[i], Pass: err == nil}
	if err != nil {
		v.Reason = err.Error()
	}
	sn.push(sn.now+sn.trainTime/4+sn.delay(), i, i, &verdictDone{v})
}

func (sn *simNet) victim() int {
	for i := range sn.engines {
		if sn.behave[i] == "" {
			return i
		}
	}
	return 0
}
