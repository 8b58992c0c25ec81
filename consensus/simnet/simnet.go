// Package simnet is a simulated network for package consensus, in the
// manner of etcd's rafttest: engines exchange messages through a seeded
// event queue with per-message delay, loss and duplication, partitions that
// cut links for a while, crashes, and Byzantine actors (actors.go) that
// send what they like to whom they like. Local training is a cheap
// deterministic function and the application a toy unless a test plugs in
// real ones (trainer's challenge simulation does), and signatures are
// keyed hashes, so a run of many rounds takes milliseconds.
//
// The harness records every decision every honest engine ever makes, never
// overwritten, and checks them all: no round decided two ways (safety),
// every decision backed by a certificate of the round's voters checked
// independently of the engine, every adopted state the one a decision
// names, and every honest engine at the target round by a deadline
// (liveness).
package simnet

import (
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

type (
	PeerID  = consensus.PeerID
	Hash    = consensus.Hash
	Message = consensus.Message
)

// Sign is the simulation's signature scheme for p: a keyed hash. Honest
// code signs only as itself; Byzantine actors may claim another's
// signature only by making it up.
func Sign(p PeerID) func([]byte) []byte {
	k := sha256.Sum256([]byte("simkey/" + p))
	return func(msg []byte) []byte {
		h := sha256.New()
		h.Write(k[:])
		h.Write(msg)
		return h.Sum(nil)[:16]
	}
}

// Verify checks a simulated signature.
func Verify(p PeerID, msg, sig []byte) bool { return string(Sign(p)(msg)) == string(sig) }

type toyPair struct {
	i int
	v float32
}

// ToyApp is the default application: a payload is up to 16 (index uint32,
// value float32) pairs; the step is their mean, applied with momentum.
type ToyApp struct{ D int }

// ToyPayload is a toy update of d parameters from seed.
func ToyPayload(d int, seed uint64) []byte {
	r := prng.New(seed)
	var b []byte
	for range 8 {
		b = binary.BigEndian.AppendUint32(b, uint32(r.Intn(d)))
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(float32(r.Norm()*1e-2)))
	}
	return b
}

// CheckUpdate implements consensus.App.
func (a ToyApp) CheckUpdate(u *consensus.Update) (any, error) {
	if len(u.Payload)%8 != 0 || len(u.Payload) > 16*8 || len(u.Payload) == 0 {
		return nil, errors.New("malformed: payload size")
	}
	var out []toyPair
	for o := 0; o < len(u.Payload); o += 8 {
		i := int(binary.BigEndian.Uint32(u.Payload[o:]))
		v := math.Float32frombits(binary.BigEndian.Uint32(u.Payload[o+4:]))
		if i >= a.D {
			return nil, errors.New("malformed: index out of range")
		}
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1 {
			return nil, errors.New("bad norm: value out of bounds")
		}
		out = append(out, toyPair{i, v})
	}
	return out, nil
}

// Step implements consensus.App.
func (a ToyApp) Step(theta, mom []float32, dec []any) ([]float32, []float32, error) {
	agg := map[int]float32{}
	for _, d := range dec {
		for _, p := range d.([]toyPair) {
			agg[p.i] += p.v / float32(len(dec))
		}
	}
	t, m := slices.Clone(theta), slices.Clone(mom)
	for i, g := range agg {
		m[i] = float32(0.5*m[i]) + g
		t[i] -= m[i]
	}
	return t, m, nil
}

// Spec is the simulation's default spec: logistic regression on synthetic
// data, 2 s collection, 1 s commit timeout, no spot-checks, the given
// founders.
func Spec(t testing.TB, founders []PeerID) runspec.Spec {
	s := runspec.Default()
	s.Model = runspec.Model{Kind: "logreg"}
	s.Data.Source = "synthetic"
	s.Run.Rounds = 0
	s.Rounds.Timeout = runspec.Duration{Duration: 2 * time.Second}
	s.Rounds.CommitTimeout = runspec.Duration{Duration: time.Second}
	s.Verify.Rate, s.Verify.NewcomerRate = 0, 0
	ids := make([]string, len(founders))
	for i, p := range founders {
		ids[i] = string(p)
	}
	s = s.WithFounders(ids...)
	s.Members.Voters = max(s.Members.Voters, len(ids)) // every founder votes, as these tests assume
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

type event struct {
	at   time.Duration
	seq  int
	to   int
	from int
	msg  any
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type trainedEv struct{ req *consensus.TrainRequest }
type updatesEv struct{ us []*consensus.Update }
type proofEv struct{ p *consensus.Proof }
type stateEv struct{ st consensus.State }
type verdictEv struct{ v *consensus.VerdictMsg }
type ruleEv struct {
	x *consensus.VerdictMsg
	r consensus.Ruling
}

// Decision is one recorded decision of one engine.
type Decision struct {
	At       time.Duration
	Next     Hash
	Value    Hash
	Restored bool
}

// Net is a simulated network of engines and actors.
type Net struct {
	T       testing.TB
	Seed    uint64
	Rng     *prng.Source
	Spec    runspec.Spec
	IDs     []PeerID
	Engines []*consensus.Engine // nil for actors that run no engine (outsiders)
	Byz     map[int]Actor

	Drop, Dup float64
	Relay     float64 // chance that an accepted vote or proposal is relayed to one more peer (gossip)
	MaxDelay  time.Duration
	Cut       func(a, b int, now time.Duration) bool // partition: link a→b down
	Down      map[int]bool                           // crashed peers
	TrainTime time.Duration
	HealAt    time.Duration // from then on the network is synchronous: no loss, cuts or long delays
	// Lag is extra one-way delay on the link from→to (a slow or distant
	// peer's links), healed or not: a slow link is no fault.
	Lag func(from, to int) time.Duration

	// Hooks. App builds each engine's application (default ToyApp);
	// TrainFor says how long a peer trains; Work
	// makes a member's update (default a toy); Judge answers a challenge
	// the engine is drawn for, returning the verdict to submit and when (a
	// nil verdict: none; default: none); Referee rules on a failed verdict
	// an engine asks about, and says when (default: lapsed, at once);
	// OnDecided sees every decision.
	App       func(spec runspec.Spec) consensus.App
	TrainFor  func(n *Net, i int) time.Duration // how long peer i trains (default TrainTime)
	Work      func(n *Net, i int, req *consensus.TrainRequest) *consensus.Update
	Judge     func(n *Net, i int, d consensus.Decided, ch spot.Challenge) (*consensus.VerdictMsg, time.Duration)
	Referee   func(n *Net, i int, r consensus.RefereeRequest) (consensus.Ruling, time.Duration)
	OnDecided func(n *Net, i int, d consensus.Decided)

	Now      time.Duration
	All      []map[uint64][]Decision   // every decision every engine made, never overwritten
	Voters   map[uint64][]PeerID       // each round's voters, as the first honest engine to enter it saw them
	Last     map[int]consensus.Decided // each engine's last decision
	Failures []string
	Msgs     int
	Debug    bool
	Log      []string

	q   eventQueue
	seq int
}

// Actor is a Byzantine participant. Members run a real engine and the
// actor twists what it publishes; outsiders run none.
type Actor interface {
	// Outgoing returns what to deliver to peer to instead of m (which the
	// actor's engine publishes).
	Outgoing(n *Net, self int, m Message, to int) []Message
	// Tick lets it send what it likes, every 100 ms of simulated time.
	Tick(n *Net, self int)
	// ServeState and ServeProof answer a fetch its way (nil: no answer);
	// false: honestly.
	ServeState(n *Net, self int, h Hash) (*consensus.State, bool)
	ServeProof(n *Net, self int, round uint64) (*consensus.Proof, bool)
}

// New returns a network of n founders (peer00, peer01, …), each running an
// engine from genesis; tune adjusts the spec first.
func New(t testing.TB, n int, seed uint64, tune func(*runspec.Spec)) *Net {
	sn := &Net{T: t, Seed: seed, Rng: prng.New(seed), MaxDelay: 50 * time.Millisecond, TrainTime: 500 * time.Millisecond,
		Down: map[int]bool{}, Byz: map[int]Actor{}, Voters: map[uint64][]PeerID{}, Last: map[int]consensus.Decided{}}
	for i := range n {
		sn.IDs = append(sn.IDs, PeerID(fmt.Sprintf("peer%02d", i)))
	}
	sn.Spec = Spec(t, sn.IDs)
	if tune != nil {
		tune(&sn.Spec)
		if err := sn.Spec.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	return sn
}

// Start starts an engine for every peer that has none yet (call after
// setting the hooks).
func (sn *Net) Start() {
	for i, id := range sn.IDs {
		if i >= len(sn.Engines) || sn.Engines[i] == nil && sn.Byz[i] == nil {
			sn.AddEngine(id)
		}
	}
}

// AddEngine starts an engine for id from genesis (a founder, or a joiner
// that catches up) and returns its index.
func (sn *Net) AddEngine(id PeerID) int {
	g, err := consensus.Genesis(sn.Spec)
	if err != nil {
		sn.T.Fatal(err)
	}
	var app consensus.App = ToyApp{len(g.Theta)}
	if sn.App != nil {
		app = sn.App(sn.Spec)
	}
	e, err := consensus.NewEngine(consensus.Config{Spec: sn.Spec, Self: id, Sign: Sign(id), Verify: Verify, App: app}, g, nil)
	if err != nil {
		sn.T.Fatal(err)
	}
	i := slices.Index(sn.IDs, id)
	if i < 0 {
		sn.IDs = append(sn.IDs, id)
		i = len(sn.IDs) - 1
	}
	sn.grow(i)
	sn.Engines[i] = e
	return i
}

func (sn *Net) grow(i int) {
	for len(sn.Engines) <= i {
		sn.Engines = append(sn.Engines, nil)
		sn.All = append(sn.All, map[uint64][]Decision{})
	}
}

// AddTwin starts a second engine with peer i's identity at a new index,
// and returns it: an equivocator that shows each side of a partition
// (Cut) a member that behaves honestly there. Both are Byzantine for the
// harness.
func (sn *Net) AddTwin(i int) int {
	g, err := consensus.Genesis(sn.Spec)
	if err != nil {
		sn.T.Fatal(err)
	}
	var app consensus.App = ToyApp{len(g.Theta)}
	if sn.App != nil {
		app = sn.App(sn.Spec)
	}
	id := sn.IDs[i]
	e, err := consensus.NewEngine(consensus.Config{Spec: sn.Spec, Self: id, Sign: Sign(id), Verify: Verify, App: app}, g, nil)
	if err != nil {
		sn.T.Fatal(err)
	}
	sn.IDs = append(sn.IDs, id)
	j := len(sn.IDs) - 1
	sn.grow(j)
	sn.Engines[j] = e
	sn.Byz[i], sn.Byz[j] = HonestActor{}, HonestActor{}
	return j
}

// AddOutsider adds an identity that runs no engine, played by a.
func (sn *Net) AddOutsider(id PeerID, a Actor) int {
	sn.IDs = append(sn.IDs, id)
	i := len(sn.IDs) - 1
	sn.grow(i)
	sn.Byz[i] = a
	return i
}

// Honest reports whether peer i runs an engine and no actor.
func (sn *Net) Honest(i int) bool {
	_, b := sn.Byz[i]
	return !b && i < len(sn.Engines) && sn.Engines[i] != nil
}

// Failf files a failure (Finish reports them).
func (sn *Net) Failf(format string, a ...any) {
	sn.Failures = append(sn.Failures, fmt.Sprintf("seed %d: ", sn.Seed)+fmt.Sprintf(format, a...))
}

func (sn *Net) push(at time.Duration, to, from int, msg any) {
	sn.seq++
	heap.Push(&sn.q, &event{at: at, seq: sn.seq, to: to, from: from, msg: msg})
}

func (sn *Net) healed() bool { return sn.HealAt > 0 && sn.Now >= sn.HealAt }

func (sn *Net) delay() time.Duration {
	d := sn.MaxDelay
	if sn.healed() {
		d = min(d, 50*time.Millisecond)
	}
	return time.Duration(sn.Rng.Float64() * float64(d))
}

func (sn *Net) lag(from, to int) time.Duration {
	if sn.Lag == nil {
		return 0
	}
	return sn.Lag(from, to)
}

// rtt is a fetch's round trip from i to j and back.
func (sn *Net) rtt(i, j int) time.Duration { return 2*sn.delay() + sn.lag(i, j) + sn.lag(j, i) }

func (sn *Net) linkCut(a, b int) bool {
	return sn.Cut != nil && !sn.healed() && sn.Cut(a, b, sn.Now)
}

// Send delivers m from peer from to peer to, subject to the network.
func (sn *Net) Send(from, to int, m Message) { sn.send(from, to, m) }

func (sn *Net) send(from, to int, m any) {
	if sn.Down[to] || sn.linkCut(from, to) {
		return
	}
	lossy := !sn.healed()
	if lossy && sn.Rng.Float64() < sn.Drop {
		return
	}
	sn.Msgs++
	sn.push(sn.Now+sn.delay()+sn.lag(from, to), to, from, m)
	if lossy && sn.Rng.Float64() < sn.Dup {
		sn.push(sn.Now+sn.delay()+sn.lag(from, to), to, from, m)
	}
}

// broadcast sends an engine's message to every other peer (through its
// actor when it has one).
func (sn *Net) broadcast(i int, m Message) {
	for j := range sn.IDs {
		if j == i {
			continue
		}
		if a, ok := sn.Byz[i]; ok {
			for _, x := range a.Outgoing(sn, i, m, j) {
				sn.send(i, j, x)
			}
			continue
		}
		sn.send(i, j, m)
	}
}

// Index returns the index of peer p, or -1.
func (sn *Net) Index(p PeerID) int { return slices.Index(sn.IDs, p) }

// pick returns a reachable peer of the list, at random, or -1.
func (sn *Net) pick(i int, from []PeerID) int {
	var ok []int
	for _, p := range from {
		if j := sn.Index(p); j >= 0 && j != i && !sn.Down[j] && !sn.linkCut(i, j) && !sn.linkCut(j, i) {
			ok = append(ok, j)
		}
	}
	if len(ok) == 0 {
		return -1
	}
	return ok[sn.Rng.Intn(len(ok))]
}

func (sn *Net) process(i int) {
	e := sn.Engines[i]
	if e == nil {
		return
	}
	rd := e.Ready()
	if sn.Debug {
		for _, ev := range rd.Events {
			sn.Log = append(sn.Log, fmt.Sprintf("%7.2fs %s: %s", sn.Now.Seconds(), sn.IDs[i], ev))
		}
	}
	for k, d := range rd.Decided {
		sn.record(i, e, d, k == len(rd.Decided)-1)
		if k > 0 && !d.Restored && d.Value.Base != rd.Decided[k-1].Value.Next && sn.Honest(i) {
			sn.Failf("%s decided round %d on %s after deciding %s", sn.IDs[i], d.Round, d.Value.Base.Short(), rd.Decided[k-1].Value.Next.Short())
		}
		sn.Last[i] = d
		if sn.OnDecided != nil {
			sn.OnDecided(sn, i, d)
		}
		if sn.Judge != nil && !d.Restored {
			for _, ch := range d.Challenges {
				if PeerID(ch.Challenger) == sn.IDs[i] {
					if v, after := sn.Judge(sn, i, d, ch); v != nil {
						sn.push(sn.Now+after, i, i, &verdictEv{v})
					}
				}
			}
		}
	}
	for _, r := range rd.Referee {
		ruling, after := consensus.Lapsed, time.Duration(0)
		if sn.Referee != nil {
			ruling, after = sn.Referee(sn, i, r)
		}
		sn.push(sn.Now+after, i, i, &ruleEv{r.Verdict, ruling})
	}
	for _, m := range rd.Publish {
		sn.broadcast(i, m)
	}
	if rd.Train != nil {
		d := sn.TrainTime
		if sn.TrainFor != nil {
			d = sn.TrainFor(sn, i)
		}
		sn.push(sn.Now+d+sn.delay(), i, i, &trainedEv{rd.Train})
	}
	if f := rd.FetchUpdates; f != nil {
		if j := sn.pick(i, f.From); j >= 0 && sn.Engines[j] != nil {
			sn.push(sn.Now+sn.rtt(i, j), i, j, &updatesEv{sn.Engines[j].ServeUpdates(f.IDs)})
		}
	}
	if f := rd.FetchProof; f != nil {
		if j := sn.pick(i, f.From); j >= 0 {
			var p *consensus.Proof
			ok := false
			if a, b := sn.Byz[j]; b {
				p, ok = a.ServeProof(sn, j, f.Round)
			}
			if !ok && sn.Engines[j] != nil {
				p = sn.Engines[j].ServeProof(f.Round)
			}
			if p != nil {
				sn.push(sn.Now+sn.rtt(i, j), i, j, &proofEv{p})
			}
		}
	}
	if f := rd.FetchState; f != nil {
		if j := sn.pick(i, f.From); j >= 0 {
			var st *consensus.State
			handled := false
			if a, b := sn.Byz[j]; b {
				st, handled = a.ServeState(sn, j, f.Hash)
			}
			if !handled && sn.Engines[j] != nil {
				if s, ok := sn.Engines[j].ServeState(f.Hash); ok {
					st = &s
				}
			}
			if st != nil {
				sn.push(sn.Now+sn.rtt(i, j), i, j, &stateEv{st.Clone()})
			}
		}
	}
}

// record files a decision and checks it: a certificate of the round's
// voters backs it, and (for the last of a batch) the engine holds the
// state it names.
func (sn *Net) record(i int, e *consensus.Engine, d consensus.Decided, last bool) {
	run := e.RunID()
	sn.All[i][d.Round] = append(sn.All[i][d.Round], Decision{At: sn.Now, Next: d.Value.Next, Value: d.Value.ID(run), Restored: d.Restored})
	if !sn.Honest(i) {
		return
	}
	if last && (e.Round() != d.Round+1 || e.Hash() != d.Value.Next) {
		sn.Failf("%s decided round %d → %s but holds round %d %s", sn.IDs[i], d.Round, d.Value.Next.Short(), e.Round(), e.Hash().Short())
	}
	voters, ok := sn.Voters[d.Round]
	if !ok {
		return // reached only by a restore: the engine checked its chain
	}
	if err := CheckCertificate(run, &d.Cert, d.Value, voters); err != nil {
		sn.Failf("%s decided round %d without a certificate: %v", sn.IDs[i], d.Round, err)
	}
}

// CheckCertificate is the harness's own certificate check, independent of
// the engine's: more than two thirds of voters precommitted the value.
func CheckCertificate(run consensus.RunID, c *consensus.Certificate, v *consensus.Value, voters []PeerID) error {
	if c.Value != v.ID(run) || c.Round != v.Round {
		return errors.New("certificate for another value")
	}
	n := 0
	seen := map[PeerID]bool{}
	for _, s := range c.Sigs {
		vote := consensus.Vote{Kind: consensus.KindPrecommit, Round: c.Round, View: c.View, Value: c.Value, ValidView: -1, From: s.From}
		if !slices.Contains(voters, s.From) || seen[s.From] || !Verify(s.From, consensus.VoteSignBytes(run, &vote), s.Sig) {
			continue
		}
		seen[s.From] = true
		n++
	}
	if n < consensus.Quorum(len(voters)) {
		return fmt.Errorf("%d valid precommits of %d voters", n, len(voters))
	}
	return nil
}

func (sn *Net) noteVoters() {
	for i, e := range sn.Engines {
		if e == nil || !sn.Honest(i) {
			continue
		}
		if _, ok := sn.Voters[e.Round()]; !ok {
			sn.Voters[e.Round()] = slices.Clone(e.Voters())
		}
	}
}

func (sn *Net) deliver(ev *event) {
	e := sn.Engines[ev.to]
	if e == nil || sn.Down[ev.to] {
		return
	}
	switch m := ev.msg.(type) {
	case Message:
		d := e.Step(m)
		// Gossip relays what it accepts: now and then a vote or proposal
		// reaches a peer through another, so conflicting versions meet.
		if d.OK() && (m.Vote != nil || m.Proposal != nil) && sn.Relay > 0 && sn.Rng.Float64() < sn.Relay {
			if j := sn.Rng.Intn(len(sn.IDs)); j != ev.to && j != ev.from {
				sn.send(ev.to, j, m)
			}
		}
	case *trainedEv:
		work := sn.Work
		if work == nil {
			work = ToyWork
		}
		if u := work(sn, ev.to, m.req); u != nil {
			if err := e.Trained(u); err != nil && sn.Honest(ev.to) {
				sn.Failf("%s: %v", sn.IDs[ev.to], err)
			}
		}
	case *updatesEv:
		for _, u := range m.us {
			e.StepUpdate(u)
		}
	case *proofEv:
		e.StepProof(m.p)
	case *stateEv:
		before := e.Round()
		if err := e.Restore(m.st); err == nil && sn.Honest(ev.to) && e.Round() <= before {
			sn.Failf("%s restored backwards", sn.IDs[ev.to])
		}
	case *verdictEv:
		e.SubmitVerdict(m.v)
	case *ruleEv:
		e.Rule(m.x, m.r)
	}
}

// ToyWork is the default update for a train request: a deterministic toy
// payload, made-up segment roots, and a residual chain: it carries in what
// the engine says (Engine.CarryIn: its mark, or what its late update kept)
// and keeps a made-up residual of its own.
func ToyWork(sn *Net, i int, req *consensus.TrainRequest) *consensus.Update {
	segs := make([]Hash, sn.Spec.Segments())
	for k := range segs {
		segs[k] = sha256.Sum256(fmt.Appendf(nil, "seg %d %d %s", req.Round, k, sn.IDs[i]))
	}
	var in Hash
	if e := sn.Engines[i]; e != nil {
		in = e.CarryIn(req.Round)
	}
	return &consensus.Update{Round: req.Round, Base: req.Base, Samples: 100, Loss: 1, Payload: ToyPayload(len(req.Theta), req.Seed),
		Seed: req.Seed, Segments: segs, ResidualIn: in, ResidualOut: sha256.Sum256(fmt.Appendf(nil, "residual %d %s", req.Round, sn.IDs[i]))}
}

// Run advances the simulation until every live honest engine reached round
// `rounds` (or is done) or the clock passes limit.
func (sn *Net) Run(rounds uint64, limit time.Duration) {
	sn.Start()
	for i := range sn.Engines {
		sn.process(i)
	}
	sn.noteVoters()
	const tick = 100 * time.Millisecond
	next := sn.Now + tick
	for sn.Now < limit {
		if sn.Reached(rounds) {
			return
		}
		if len(sn.q) == 0 || sn.q[0].at > next {
			sn.Now = next
			next += tick
			for i, e := range sn.Engines {
				if a, ok := sn.Byz[i]; ok && !sn.Down[i] {
					a.Tick(sn, i)
				}
				if e != nil && !sn.Down[i] {
					e.Tick(tick)
					sn.process(i)
				}
			}
			sn.noteVoters()
			continue
		}
		ev := heap.Pop(&sn.q).(*event)
		sn.Now = ev.at
		sn.deliver(ev)
		sn.process(ev.to)
		sn.noteVoters()
	}
}

// Reached reports whether every live honest engine is at round r or done.
func (sn *Net) Reached(r uint64) bool {
	for i, e := range sn.Engines {
		if sn.Honest(i) && !sn.Down[i] && e.Round() < r && !e.Done() {
			return false
		}
	}
	return true
}

// Safety checks every decision ever recorded: no round decided two ways by
// honest engines, whether by one engine twice or by two. It files a
// failure per round and returns how many rounds split.
func (sn *Net) Safety() int {
	type seen struct {
		next Hash
		who  PeerID
	}
	by := map[uint64]seen{}
	bad := map[uint64]bool{}
	for i := range sn.Engines {
		if !sn.Honest(i) {
			continue
		}
		for r, ds := range sn.All[i] {
			for _, d := range ds {
				s, ok := by[r]
				if !ok {
					by[r] = seen{d.Next, sn.IDs[i]}
					continue
				}
				if s.next != d.Next && !bad[r] {
					bad[r] = true
					sn.Failf("round %d decided two ways: %s by %s, %s by %s", r, s.next.Short(), s.who, d.Next.Short(), sn.IDs[i])
				}
			}
		}
	}
	return len(bad)
}

// Finish asserts safety and that every live honest engine reached round
// `rounds` (or is done), and fails the test with the first failure.
func (sn *Net) Finish(rounds uint64) {
	sn.T.Helper()
	sn.Safety()
	for i, e := range sn.Engines {
		if sn.Honest(i) && !sn.Down[i] && e.Round() < rounds && !e.Done() {
			sn.Failf("%s reached round %d of %d by %v (healed at %v)", sn.IDs[i], e.Round(), rounds, sn.Now, sn.HealAt)
		}
	}
	if len(sn.Failures) > 0 {
		if sn.Debug {
			for _, l := range sn.Log {
				sn.T.Log(l)
			}
		}
		sn.T.Fatal(sn.Failures[0], fmt.Sprintf(" (and %d more)", len(sn.Failures)-1))
	}
}

// CurrentRound is what an attacker listening to gossip knows: the highest
// round an honest engine is in.
func (sn *Net) CurrentRound() uint64 {
	var r uint64
	for i, e := range sn.Engines {
		if sn.Honest(i) && e.Round() > r {
			r = e.Round()
		}
	}
	return r
}

// honestView returns the voters and state hash of the current round as an
// honest engine there sees them.
func (sn *Net) honestView() ([]PeerID, Hash) {
	r := sn.CurrentRound()
	for i, e := range sn.Engines {
		if sn.Honest(i) && e.Round() == r {
			return e.Voters(), e.Hash()
		}
	}
	return nil, Hash{}
}
