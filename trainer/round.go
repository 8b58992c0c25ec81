package trainer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// Hash is a SHA-256 digest: of a model state, of an update.
type Hash [32]byte

// Short is the first 8 hex digits, for logs.
func (h Hash) Short() string { return fmt.Sprintf("%x", h[:4]) }

// PeerID names a peer (a libp2p peer ID in string form). The engine treats
// it as opaque; the transport authenticates it.
type PeerID string

// UpdateMsg is a peer's compressed pseudo-gradient for one round.
type UpdateMsg struct {
	Round   uint64
	Base    Hash // the state hash the update starts from
	From    PeerID
	Samples uint64  // samples the inner steps processed
	Loss    float32 // mean training loss of the inner steps
	Payload []byte  // gossip/compress message

	// Commitments to the work behind the payload (see Judge): the batch
	// order seed (RoundSeed of the round and sender), the hash of the
	// trainer's state (Snapshot.Hash) after every verify.segment inner
	// steps, the last one the final state, and the hashes of the
	// error-feedback residual before and after this payload was encoded.
	Seed        uint64
	Segments    []Hash
	ResidualIn  Hash
	ResidualOut Hash
}

// ID is the update's content ID: SHA-256 over a fixed encoding of every
// field and the run ID, so the same update in another run, round or under
// another sender has another ID.
func (u *UpdateMsg) ID(run runspec.ID) Hash {
	h := sha256.New()
	h.Write([]byte("vtrain/update/v2\x00"))
	h.Write(run[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], u.Round)
	h.Write(b[:])
	h.Write(u.Base[:])
	binary.BigEndian.PutUint64(b[:], uint64(len(u.From)))
	h.Write(b[:])
	h.Write([]byte(u.From))
	binary.BigEndian.PutUint64(b[:], u.Samples)
	h.Write(b[:])
	binary.BigEndian.PutUint32(b[:4], math.Float32bits(u.Loss))
	h.Write(b[:4])
	binary.BigEndian.PutUint64(b[:], u.Seed)
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(len(u.Segments)))
	h.Write(b[:])
	for _, s := range u.Segments {
		h.Write(s[:])
	}
	h.Write(u.ResidualIn[:])
	h.Write(u.ResidualOut[:])
	h.Write(u.Payload)
	var out Hash
	h.Sum(out[:0])
	return out
}

// CommitMsg is a peer's result for a round: the updates it aggregated
// (sorted IDs) and the state hash it reached.
type CommitMsg struct {
	Round   uint64
	Base    Hash
	From    PeerID
	Updates []Hash // sorted ascending
	Result  Hash
	// Excluded lists every peer excluded from the next round on (sorted):
	// those excluded before, and those a fail verdict this peer holds
	// names. It is part of the state that Result hashes.
	Excluded []PeerID
}

// VerdictMsg is a challenger's signed result of a spot-check: segment
// Segment of Accused's update Update of round Round, re-executed. A fail
// verdict from the drawn challenger excludes the accused from the rounds
// after the commit that carries it.
type VerdictMsg struct {
	Round   uint64
	Update  Hash
	Accused PeerID
	Segment int
	From    PeerID
	Pass    bool
	Reason  string
}

// HelloMsg announces that a peer starts a round from a state: receivers
// wait for its update, and a peer whose own state differs learns it early.
// Every engine publishes one when it starts, joins, or begins a round.
type HelloMsg struct {
	Round uint64
	Base  Hash
	From  PeerID
}

// Verdict is the engine's answer to a message, with pubsub's meaning:
// Accept (valid, forward it), Reject (invalid: penalise the sender), Ignore
// (stale or duplicate: drop without penalty).
type Verdict int

// Verdicts.
const (
	Accept Verdict = iota
	Reject
	Ignore
)

func (v Verdict) String() string { return [...]string{"accept", "reject", "ignore"}[v] }

// Decision is a verdict with its reason. Kept marks an ignored message
// the engine holds on to and may act on later (an early one, one on
// another base, a verdict on a round not decided yet): the node logs it.
type Decision struct {
	Verdict Verdict
	Reason  string
	Kept    bool
}

func accept() Decision { return Decision{Verdict: Accept} }
func reject(format string, a ...any) Decision {
	return Decision{Verdict: Reject, Reason: fmt.Sprintf(format, a...)}
}
func ignore(format string, a ...any) Decision {
	return Decision{Verdict: Ignore, Reason: fmt.Sprintf(format, a...)}
}
func kept(format string, a ...any) Decision {
	return Decision{Verdict: Ignore, Reason: fmt.Sprintf(format, a...), Kept: true}
}
func (d Decision) String() string { return d.Verdict.String() + ": " + d.Reason }
func (d Decision) OK() bool       { return d.Verdict == Accept }
func sortHashes(hs []Hash) {
	sort.Slice(hs, func(i, j int) bool { return bytes.Compare(hs[i][:], hs[j][:]) < 0 })
}
func hashLess(a, b Hash) bool      { return bytes.Compare(a[:], b[:]) < 0 }
func equalHashes(a, b []Hash) bool { return slices.Equal(a, b) }
func (e *Engine) logf(format string, a ...any) {
	e.events = append(e.events, fmt.Sprintf(format, a...))
}
func (e *Engine) publish(u *UpdateMsg, c *CommitMsg) {
	e.out = append(e.out, Outbound{Update: u, Commit: c})
}

// State is the agreed state at the start of a round: what a checkpoint
// holds and what a joining peer fetches.
type State struct {
	Round    uint64
	Theta    []float32
	Momentum []float32 // the outer optimizer's buffer
	Members  []PeerID  // peers that committed the previous round
	Excluded []PeerID  // peers excluded for failing a challenge (sorted)
}

// Hash returns the state's identity (see HashState).
func (st State) Hash() Hash { return HashState(st.Round, st.Theta, st.Momentum, st.Excluded) }

// HashState is StateHash extended with the sorted excluded peers; with
// none it is StateHash.
func HashState(round uint64, theta, momentum []float32, excluded []PeerID) Hash {
	h := StateHash(round, theta, momentum)
	if len(excluded) == 0 {
		return h
	}
	s := sha256.New()
	s.Write([]byte("vtrain/state+excluded/v1\x00"))
	s.Write(h[:])
	var b [8]byte
	for _, p := range excluded {
		binary.BigEndian.PutUint64(b[:], uint64(len(p)))
		s.Write(b[:])
		s.Write([]byte(p))
	}
	var out Hash
	s.Sum(out[:0])
	return out
}

// StateHash is the identity of an agreed state: SHA-256 over the round,
// the parameters and the outer momentum (little-endian float32).
func StateHash(round uint64, theta, momentum []float32) Hash {
	h := sha256.New()
	h.Write([]byte("vtrain/state/v1\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], round)
	h.Write(b[:])
	for _, v := range [][]float32{theta, momentum} {
		binary.BigEndian.PutUint64(b[:], uint64(len(v)))
		h.Write(b[:])
		writeFloats(h, v)
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// Genesis returns round 0's state for a spec: θ₀ from the seed, zero
// momentum.
func Genesis(spec runspec.Spec) (State, error) {
	m, err := spec.ModelSpec()
	if err != nil {
		return State{}, err
	}
	theta := models.Init(m, spec.Run.Seed)
	return State{Round: 0, Theta: theta, Momentum: make([]float32, len(theta))}, nil
}

// Outbound is a message to publish: exactly one field is set. The
// transport signs and gossips it.
type Outbound struct {
	Update  *UpdateMsg
	Commit  *CommitMsg
	Hello   *HelloMsg
	Verdict *VerdictMsg
}

// TrainRequest asks the driver to run the round's inner steps from Theta
// (a copy it may keep) and report with [Engine.Trained].
type TrainRequest struct {
	Round uint64
	Theta []float32
	Seed  uint64 // batch-order seed for this peer and round
	Shard int    // the data shard this peer trains
}

// FetchRequest asks the driver to fetch updates by ID from any of the
// listed peers and pass them to [Engine.Step].
type FetchRequest struct {
	Round uint64
	IDs   []Hash
	From  []PeerID
}

// StateRequest asks the driver to fetch the agreed state of Round with
// hash Hash from any of the listed peers and pass it to [Engine.Restore].
type StateRequest struct {
	Round uint64
	Hash  Hash
	From  []PeerID
}

// RoundResult is a decided round.
type RoundResult struct {
	Round   uint64
	Base    Hash
	Result  Hash
	Updates []Hash
	Peers   []PeerID // the peers whose updates were aggregated
	Votes   int      // commits that agreed
	Samples uint64
	Loss    float32 // mean of the aggregated updates' training losses

	Beacon     Hash             // the round's challenge randomness (spot.Beacon)
	Challenges []spot.Challenge // drawn from the beacon (this engine's view of probation)
	Excluded   []Exclusion      // peers excluded from the next round on, newly
	Exclusions []PeerID         // every peer excluded from the next round on
}

// Exclusion is a peer excluded from a run, with the verdict behind it
// (when this engine holds it).
type Exclusion struct {
	Peer    PeerID
	Verdict *VerdictMsg
}

// Ready is what the engine wants done; see [Engine.Ready].
type Ready struct {
	Publish      []Outbound
	Train        *TrainRequest
	FetchUpdates *FetchRequest
	FetchState   *StateRequest
	Decided      []RoundResult
	Events       []string      // human-readable notes (rejections, resyncs)
	Verdicts     []*VerdictMsg // verdicts kept until their round was decided here, now accepted
}

type phase int

const (
	phaseTrain   phase = iota // waiting for the local inner steps
	phaseCollect              // own update out; collecting the others'
	phaseCommit               // own commit out; collecting the others'
	phaseSync                 // waiting for a state from a peer
)

// EngineConfig configures an engine.
type EngineConfig struct {
	Spec runspec.Spec
	Self PeerID
}

// Engine is one peer's round protocol as a pure state machine, in the
// manner of etcd's raft RawNode: [Engine.Step] takes a message from a peer,
// [Engine.Tick] advances a logical clock, [Engine.Trained] reports local
// work, and [Engine.Ready] hands back what to publish, train or fetch. It
// does no I/O, starts no goroutine and reads no clock, so a simulated
// network can drive many engines deterministically. It is not safe for
// concurrent use.
type Engine struct {
	spec  runspec.Spec
	run   runspec.ID
	self  PeerID
	d     int
	dec   *compress.Decoder
	enc   *compress.Encoder
	shard int

	round    uint64
	theta    []float32
	outer    *SGD // outer optimizer; its buffer is the agreed momentum
	hash     Hash
	now      time.Duration
	deadline time.Duration
	phase    phase

	seen          map[PeerID]uint64 // last round each peer was heard from
	updates       map[Hash]*UpdateMsg
	decoded       map[Hash]*compress.Sparse
	byPeer        map[PeerID]Hash
	commits       map[PeerID]*CommitMsg
	mine          *CommitMsg
	next          []any // messages for round+1, replayed on advance
	want          *StateRequest
	fetchStateOut *StateRequest

	// Messages of this round that build on another base: kept so that, if
	// this engine turns out to be in the minority and adopts that base,
	// they are replayed rather than lost; bases counts their senders.
	other       map[Hash][]any
	bases       map[Hash]map[PeerID]bool
	otherReplay map[Hash][]any
	agree       map[PeerID]bool // peers that said hello from this engine's base
	fetchOut    bool            // a FetchRequest for this round is out
	retry       time.Duration
	ahead       *aheadVotes // commits of a later round (this engine is behind)
	nextKeys    map[string]bool

	prevUpdates map[Hash]*UpdateMsg // the last decided round's, to serve fetches

	// Verification: peers excluded for failing a challenge (agreed, part
	// of the state), fail verdicts not yet in an agreed commit, recent
	// decided rounds (to check verdicts against their draw), each peer's
	// first aggregated round (probation), and each peer's last residual.
	excluded  []PeerID
	pending   map[PeerID]*VerdictMsg
	history   map[uint64]*decidedRound
	first     map[PeerID]uint64
	lastResid map[PeerID]residMark
	verdicts  map[Hash]bool // verdicts seen, by (round, update, challenger)
	// peers whose update of a round (stored as round+1) the transport
	// refused: not waited for
	refused map[PeerID]uint64
	// verdicts on rounds not decided here yet, and those accepted once
	// their round was
	earlyVerdicts []*VerdictMsg
	lateVerdicts  []*VerdictMsg
	states        []keptState // the last few agreed states, to serve syncs

	out     []Outbound
	train   *TrainRequest
	fetch   *FetchRequest
	decided []RoundResult
	events  []string
}

// maxPeers bounds the per-round tables an engine keeps for peer input.
const maxPeers = 4096

// NewEngine returns an engine starting from st (genesis or a restored
// checkpoint).
func NewEngine(cfg EngineConfig, st State) (*Engine, error) {
	if err := cfg.Spec.Validate(); err != nil {
		return nil, err
	}
	m, _ := cfg.Spec.ModelSpec()
	d := m.NumParams()
	if len(st.Theta) != d || len(st.Momentum) != d {
		return nil, fmt.Errorf("trainer: state has %d/%d values, model %s has %d", len(st.Theta), len(st.Momentum), m, d)
	}
	dec, err := compress.NewDecoder(d)
	if err != nil {
		return nil, err
	}
	enc, err := compress.NewEncoder(cfg.Spec.CompressParams(), d)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		spec: cfg.Spec, run: cfg.Spec.RunID(), self: cfg.Self, d: d, dec: dec, enc: enc,
		shard: ShardOf(cfg.Spec, cfg.Self),
		seen:  map[PeerID]uint64{}, pending: map[PeerID]*VerdictMsg{}, history: map[uint64]*decidedRound{},
		first: map[PeerID]uint64{}, refused: map[PeerID]uint64{}, lastResid: map[PeerID]residMark{}, verdicts: map[Hash]bool{},
	}
	e.restore(st)
	return e, nil
}

// StepHello processes a peer's announcement.
func (e *Engine) StepHello(h *HelloMsg) Decision {
	if h.From == "" {
		return reject("malformed: hello without sender")
	}
	if e.isExcluded(h.From) {
		return ignore("excluded peer %s", h.From)
	}
	if h.Round+1 < e.round || h.Round > e.round+1 {
		return ignore("stale hello: round %d, now %d", h.Round, e.round)
	}
	e.heard(h.From, min(h.Round, e.round))
	if h.Round == e.round+1 {
		e.keepEarly(h)
		e.settle()
		return accept()
	}
	if h.Round == e.round && h.From != e.self {
		if h.Base == e.hash {
			e.agree[h.From] = true
		} else {
			e.otherBase(h.Base, h.From, h)
		}
	}
	return accept()
}

func (e *Engine) restore(st State) {
	e.ahead = nil
	e.round = st.Round
	e.theta = append(e.theta[:0], st.Theta...)
	e.outer = NewSGD(e.d, e.spec.Outer.Momentum, 0, e.spec.Outer.Optimizer == "nesterov")
	copy(e.outer.buf, st.Momentum)
	e.excluded = slices.Clone(st.Excluded)
	for _, p := range e.excluded {
		delete(e.pending, p)
		delete(e.seen, p)
	}
	e.hash = HashState(e.round, e.theta, e.outer.buf, e.excluded)
	for _, p := range st.Members {
		if st.Round > 0 {
			e.seen[p] = max(e.seen[p], st.Round-1)
		}
	}
	e.startRound()
}

// keptStates is how many agreed states an engine keeps to serve peers that
// fall behind.
const keptStates = 3

func (e *Engine) startRound() {
	e.states = append(e.states, keptState{e.State(), e.hash})
	if len(e.states) > keptStates {
		e.states = e.states[len(e.states)-keptStates:]
	}
	e.phase = phaseTrain
	e.updates = map[Hash]*UpdateMsg{}
	e.decoded = map[Hash]*compress.Sparse{}
	e.byPeer = map[PeerID]Hash{}
	e.commits = map[PeerID]*CommitMsg{}
	e.mine, e.want = nil, nil
	e.fetchOut = false
	e.other = map[Hash][]any{}
	e.bases = map[Hash]map[PeerID]bool{}
	e.agree = map[PeerID]bool{}
	e.deadline = 0
	// Announce the state every round: the earliest signal of a divergence
	// (before anyone's update is trained), and the only one after the run's
	// last round. About 100 bytes.
	e.out = append(e.out, Outbound{Hello: &HelloMsg{Round: e.round, Base: e.hash, From: e.self}})
	if e.spec.Run.Rounds == 0 || e.round < uint64(e.spec.Run.Rounds) {
		e.train = &TrainRequest{Round: e.round, Theta: append([]float32(nil), e.theta...),
			Seed: RoundSeed(e.spec, e.round, e.self), Shard: e.shard}
	}
	// Replay what arrived early.
	early := e.next
	e.next, e.nextKeys = nil, nil
	if kept, ok := e.otherReplay[e.hash]; ok {
		early = append(kept, early...)
	}
	e.otherReplay = nil
	for _, m := range early {
		switch m := m.(type) {
		case *UpdateMsg:
			e.Step(m)
		case *CommitMsg:
			e.StepCommit(m)
		case *HelloMsg:
			e.StepHello(m)
		}
	}
}

// Round returns the current round; Hash the hash of its starting state;
// Theta the agreed parameters (a view: do not modify).
func (e *Engine) Round() uint64     { return e.round }
func (e *Engine) Hash() Hash        { return e.hash }
func (e *Engine) Theta() []float32  { return e.theta }
func (e *Engine) RunID() runspec.ID { return e.run }

// Done reports whether the run's last round has been decided.
func (e *Engine) Done() bool {
	return e.spec.Run.Rounds > 0 && e.round >= uint64(e.spec.Run.Rounds)
}

// State returns a copy of the agreed state of the current round.
func (e *Engine) State() State {
	st := State{Round: e.round, Theta: append([]float32(nil), e.theta...), Momentum: append([]float32(nil), e.outer.buf...),
		Excluded: slices.Clone(e.excluded)}
	for p, r := range e.seen {
		if e.round > 0 && r+1 >= e.round {
			st.Members = append(st.Members, p)
		}
	}
	slices.Sort(st.Members)
	return st
}

// Residual returns the compression residual (for local checkpoints).
func (e *Engine) Residual() []float32 { return e.enc.Residual() }

// SetResidual restores the compression residual.
func (e *Engine) SetResidual(r []float32) error { return e.enc.SetResidual(r) }

// expected returns the peers whose messages this round waits for: self and
// every peer heard from in this round or the previous one.
func (e *Engine) expected() []PeerID {
	ps := []PeerID{e.self}
	for p, r := range e.seen {
		if p != e.self && r+1 >= e.round && !e.isExcluded(p) {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

func (e *Engine) heard(p PeerID, round uint64) {
	if e.isExcluded(p) {
		return
	}
	if _, ok := e.seen[p]; ok || len(e.seen) < maxPeers {
		e.seen[p] = max(e.seen[p], round)
	}
}

// Work is the result of a round's inner steps.
type Work struct {
	Round    uint64
	Delta    []float32 // θ_r − θ_local
	Samples  uint64
	Loss     float32
	Segments []Hash // Snapshot hashes every verify.segment steps
	// Tamper, when set, alters the finished update before it is published:
	// deliberate misbehaviour (vtrain node --behave), for demos and tests.
	Tamper func(u *UpdateMsg)
}

// Trained reports the local inner steps of a round. The engine compresses
// the delta (with error feedback), commits to the residual, and publishes
// the update.
func (e *Engine) Trained(w Work) error {
	round := w.Round
	if round != e.round || e.phase != phaseTrain {
		return nil // a stale result after a resync: dropped
	}
	if e.isExcluded(e.self) {
		return nil
	}
	in := ParamHash(e.enc.Residual())
	payload, err := e.enc.Encode(w.Delta, nil)
	if err != nil {
		return fmt.Errorf("trainer: round %d: %w", round, err)
	}
	u := &UpdateMsg{Round: round, Base: e.hash, From: e.self, Samples: w.Samples, Loss: w.Loss, Payload: payload,
		Seed: RoundSeed(e.spec, round, e.self), Segments: w.Segments, ResidualIn: in, ResidualOut: ParamHash(e.enc.Residual())}
	if w.Tamper != nil {
		w.Tamper(u)
	}
	if d := e.Step(u); !d.OK() {
		return fmt.Errorf("trainer: own update rejected: %s", d)
	}
	e.publish(u, nil)
	e.phase = phaseCollect
	e.deadline = e.now + e.spec.Rounds.Timeout.Duration
	e.maybeClose()
	return nil
}

// ValidateUpdate checks what can be checked of an update without the
// engine's state: sizes, decoding, finiteness and the norm. The gossip
// validator runs it before forwarding.
func ValidateUpdate(u *UpdateMsg, dec *compress.Decoder, maxPayload int, maxNorm float64) (*compress.Sparse, Decision) {
	if len(u.Payload) > maxPayload {
		return nil, reject("oversize: payload of %d bytes exceeds %d", len(u.Payload), maxPayload)
	}
	if u.From == "" {
		return nil, reject("malformed: no sender")
	}
	if math.IsNaN(float64(u.Loss)) || math.IsInf(float64(u.Loss), 0) {
		return nil, reject("non-finite: training loss %v", u.Loss)
	}
	s, err := dec.Decode(u.Payload)
	if err != nil {
		return nil, reject("malformed: %v", err)
	}
	var n2 float64
	for _, v := range s.Val {
		n2 += float64(v) * float64(v)
	}
	if n := math.Sqrt(n2); n > maxNorm {
		return nil, reject("bad norm: update norm %.4g exceeds %.4g", n, maxNorm)
	}
	return s, accept()
}

// Step processes an update from a peer (or from the engine's own driver)
// and returns its verdict.
func (e *Engine) Step(u *UpdateMsg) Decision {
	switch {
	case u.Round < e.round:
		return ignore("stale: round %d, now %d", u.Round, e.round)
	case u.Round == e.round+1:
		e.keepEarly(u)
		e.heard(u.From, u.Round)
		e.settle()
		return kept("early: round %d, now %d (kept)", u.Round, e.round)
	case u.Round > e.round+1:
		e.heard(u.From, u.Round)
		return ignore("future: round %d, now %d", u.Round, e.round)
	}
	if e.isExcluded(u.From) {
		return reject("excluded: %s failed a challenge", u.From)
	}
	id := u.ID(e.run)
	if _, ok := e.updates[id]; ok {
		return ignore("duplicate update %s", id.Short())
	}
	if u.Base != e.hash {
		e.heard(u.From, u.Round)
		return e.otherBase(u.Base, u.From, u)
	}
	if prev, ok := e.byPeer[u.From]; ok && !e.fetching(id) {
		return reject("equivocation: %s sent a second update (%s after %s) in round %d", u.From, id.Short(), prev.Short(), u.Round)
	}
	if e.phase >= phaseCommit && !e.fetching(id) {
		e.heard(u.From, u.Round)
		return ignore("late: round %d already closed", u.Round)
	}
	s, dec := ValidateUpdate(u, e.dec, e.spec.Rounds.MaxMessage, e.spec.Rounds.MaxUpdateNorm)
	if !dec.OK() {
		return dec
	}
	if d := e.checkCommitments(u); !d.OK() {
		return d
	}
	if len(e.updates) >= maxPeers {
		return ignore("full: %d updates this round", len(e.updates))
	}
	e.updates[id] = u
	e.decoded[id] = s
	e.byPeer[u.From] = id
	e.heard(u.From, u.Round)
	e.settle()
	return accept()
}

// fetching reports whether id is named by a commit of this round (so a
// late or fetched copy is wanted).
func (e *Engine) fetching(id Hash) bool {
	if e.phase == phaseSync {
		return false
	}
	for _, c := range e.commits {
		if slices.Contains(c.Updates, id) {
			return true
		}
	}
	return false
}

// StepCommit processes a commit from a peer.
func (e *Engine) StepCommit(c *CommitMsg) Decision {
	switch {
	case c.Round < e.round:
		return ignore("stale commit: round %d, now %d", c.Round, e.round)
	case c.Round == e.round+1:
		e.keepEarly(c)
		e.settle()
		return kept("early commit: round %d (kept)", c.Round)
	case c.Round > e.round+1:
		// Peers are rounds ahead: this engine missed them (a partition, a
		// restart). Once a strict majority of the expected peers commit the
		// same result for a later round, fetch that state.
		e.heard(c.From, c.Round)
		if e.ahead == nil || e.ahead.round != c.Round || e.ahead.result != c.Result {
			if e.ahead != nil && e.ahead.round > c.Round {
				return ignore("future commit: round %d, now %d", c.Round, e.round)
			}
			e.ahead = &aheadVotes{round: c.Round, result: c.Result, from: map[PeerID]bool{}}
		}
		e.ahead.from[c.From] = true
		e.catchUp()
		return ignore("future commit: round %d, now %d", c.Round, e.round)
	}
	if e.isExcluded(c.From) {
		return ignore("excluded peer %s", c.From)
	}
	if len(c.Updates) == 0 || len(c.Updates) > maxPeers || len(c.Excluded) > maxPeers {
		return reject("malformed: commit with %d updates, %d exclusions", len(c.Updates), len(c.Excluded))
	}
	for i := 1; i < len(c.Excluded); i++ {
		if c.Excluded[i-1] >= c.Excluded[i] {
			return reject("malformed: commit exclusions not strictly sorted")
		}
	}
	for i := 1; i < len(c.Updates); i++ {
		if !hashLess(c.Updates[i-1], c.Updates[i]) {
			return reject("malformed: commit update IDs not strictly sorted")
		}
	}
	if c.Base != e.hash {
		e.heard(c.From, c.Round)
		return e.otherBase(c.Base, c.From, c)
	}
	if prev, ok := e.commits[c.From]; ok {
		if prev.Result == c.Result && equalHashes(prev.Updates, c.Updates) {
			return ignore("duplicate commit from %s", c.From)
		}
		// A revised commit may only add updates or exclusions.
		grows := len(c.Updates) > len(prev.Updates) || len(c.Excluded) > len(prev.Excluded)
		if !grows || !isSubset(prev.Updates, c.Updates) || !isSubsetP(prev.Excluded, c.Excluded) {
			if isSubset(c.Updates, prev.Updates) {
				return ignore("superseded commit from %s", c.From)
			}
			return reject("equivocation: %s sent conflicting commits in round %d", c.From, c.Round)
		}
	}
	e.commits[c.From] = c
	e.heard(c.From, c.Round)
	e.settle()
	return accept()
}

// otherBase handles a message of this round that builds on another state
// than this engine's. That is not proof of misbehaviour (two honest peers
// can decide a round differently when messages are lost), so it is ignored,
// not rejected, and kept. If more peers build on that base than on this
// engine's (ties to the smaller hash), this engine is in the minority and
// fetches that state.
func (e *Engine) otherBase(base Hash, from PeerID, m any) Decision {
	if len(e.bases) >= 64 && e.bases[base] == nil {
		return ignore("other base %s: too many bases this round", base.Short())
	}
	if e.bases[base] == nil {
		e.bases[base] = map[PeerID]bool{}
	}
	e.bases[base][from] = true
	if len(e.other[base]) < 2*maxPeers {
		e.other[base] = append(e.other[base], m)
	}
	mine := map[PeerID]bool{e.self: true}
	for p := range e.byPeer {
		mine[p] = true
	}
	for p := range e.agree {
		mine[p] = true
	}
	for p := range e.commits {
		mine[p] = true
	}
	// Switch on a strict majority of the expected peers, or on outnumbering
	// this engine's base once every expected peer has been heard from
	// (ties to the smaller hash); never on a partial view.
	// Every expected peer heard from (on any base): follow the base most
	// of them build on. With three or more bases none may have a majority.
	heard := map[PeerID]bool{}
	for p := range mine {
		heard[p] = true
	}
	for b, ps := range e.bases {
		for p := range ps {
			heard[p] = true
		}
		if n := len(ps); n > len(e.bases[base]) || n == len(e.bases[base]) && hashLess(b, base) {
			base = b
		}
	}
	n, exp := len(e.bases[base]), len(e.expected())
	heardAll := len(heard) >= exp
	more := n > len(mine) || n == len(mine) && hashLess(base, e.hash)
	if e.phase != phaseSync && (2*n > exp || heardAll && more) {
		var from []PeerID
		for p := range e.bases[base] {
			from = append(from, p)
		}
		slices.Sort(from)
		e.logf("round %d: %d peers build on %s, %d on own %s: fetching their state", e.round, n, base.Short(), len(mine), e.hash.Short())
		e.requestState(e.round, base, from)
	}
	return kept("other base: %s builds on %s, this peer on %s", from, base.Short(), e.hash.Short())
}

// Tick advances the engine's clock by d and fires due timeouts.
func (e *Engine) Tick(d time.Duration) {
	e.now += d
	if e.phase == phaseSync {
		if e.deadline > 0 && e.now >= e.deadline && e.want != nil {
			// The wanted state may be gone (its holders moved on): follow a
			// newer round if one is known, else ask again.
			if e.ahead != nil && e.ahead.round+1 > e.want.Round {
				e.catchUp()
				return
			}
			e.deadline = e.now + e.spec.Rounds.CommitTimeout.Duration
			r := *e.want
			e.fetchState(&r)
		}
		return
	}
	if e.now >= e.retry {
		e.retry = e.now + e.spec.Rounds.CommitTimeout.Duration
		e.fetchOut = false
		if e.Done() {
			// The run is over here; peers still finishing the last round
			// learn its result from this.
			e.out = append(e.out, Outbound{Hello: &HelloMsg{Round: e.round, Base: e.hash, From: e.self}})
		}
		switch {
		case e.phase == phaseCommit:
			// Re-send the own commit: gossip may have lost it or a revision.
			e.publish(nil, e.mine)
		case e.phase == phaseCollect && e.now >= e.deadline:
			// Still collecting past the deadline: the own update may be
			// what the others lack.
			if id, ok := e.byPeer[e.self]; ok {
				e.publish(e.updates[id], nil)
			}
		}
	}
	e.settle()
	e.catchUp()
}

func (e *Engine) maybeClose() {
	if e.settleNext() || e.phase != phaseCollect {
		return
	}
	if len(e.updates) < e.spec.Rounds.Quorum {
		e.fetchCommitted()
		return
	}
	all := true
	for _, p := range e.expected() {
		if _, ok := e.byPeer[p]; !ok && e.refused[p] != e.round+1 && !e.elsewhere(p) {
			all = false
			break
		}
	}
	// A majority has closed the round already (a peer whose update never
	// reaches this one, say a forger that no honest peer relays, is not
	// worth waiting for).
	if !all && 2*len(e.commits) > len(e.expected()) {
		all = true
	}
	if !all && e.now < e.deadline {
		return
	}
	ids := make([]Hash, 0, len(e.updates))
	for id := range e.updates {
		ids = append(ids, id)
	}
	sortHashes(ids)
	if !e.commitTo(ids, e.vouched()) {
		return
	}
	e.phase = phaseCommit
	e.retry = e.now + e.spec.Rounds.CommitTimeout.Duration
	// Others may still be collecting (a peer that missed an update waits
	// up to the round timeout), so the commit phase waits that long too.
	e.deadline = e.now + e.spec.Rounds.Timeout.Duration + e.spec.Rounds.CommitTimeout.Duration
	e.maybeDecide()
}

// commitTo aggregates the updates ids (sorted), and publishes and records
// this engine's commit to the result with the exclusions excl (sorted). It
// reports false if aggregation failed (an update missing).
func (e *Engine) commitTo(ids []Hash, excl []PeerID) bool {
	theta, mom, err := e.apply(ids)
	if err != nil {
		e.logf("round %d: aggregate: %v", e.round, err)
		return false
	}
	e.mine = &CommitMsg{Round: e.round, Base: e.hash, From: e.self, Updates: ids, Excluded: excl,
		Result: HashState(e.round+1, theta, mom, excl)}
	e.commits[e.self] = e.mine
	e.publish(nil, e.mine)
	return true
}

// apply aggregates the given updates (sorted IDs) and steps the outer
// optimizer on copies of the state.
func (e *Engine) apply(ids []Hash) (theta, mom []float32, err error) {
	ups := make([]*compress.Sparse, len(ids))
	for i, id := range ids {
		s, ok := e.decoded[id]
		if !ok {
			return nil, nil, fmt.Errorf("update %s missing", id.Short())
		}
		ups[i] = s
	}
	return OuterStep(e.spec, e.theta, e.outer.buf, ups)
}

// OuterStep is a round's step: it aggregates the decoded updates (in the
// order given: sorted by ID) with the spec's rule and steps the outer
// optimizer from theta and its momentum, returning new vectors. An auditor
// replays a run with it.
func OuterStep(spec runspec.Spec, theta, momentum []float32, updates []*compress.Sparse) ([]float32, []float32, error) {
	d := len(theta)
	dense := make([][]float32, len(updates))
	for i, s := range updates {
		dense[i] = make([]float32, d)
		s.Dense(dense[i])
	}
	agg := make([]float32, d)
	if err := Aggregate(spec.Aggregation.Rule, spec.Aggregation.Trim, dense, agg); err != nil {
		return nil, nil, err
	}
	next := append([]float32(nil), theta...)
	opt := NewSGD(d, spec.Outer.Momentum, 0, spec.Outer.Optimizer == "nesterov")
	copy(opt.buf, momentum)
	opt.Step(next, agg, spec.Outer.LR)
	return next, opt.buf, nil
}

// keepEarly stores a message of the next round once.
func (e *Engine) keepEarly(m any) {
	var key string
	switch m := m.(type) {
	case *UpdateMsg:
		key = fmt.Sprintf("u%s%x%x", m.From, m.Base, sha256.Sum256(m.Payload))
	case *CommitMsg:
		key = fmt.Sprintf("c%s%x%x%d", m.From, m.Base, m.Result, len(m.Updates))
	case *HelloMsg:
		key = fmt.Sprintf("h%s%x", m.From, m.Base)
	}
	if e.nextKeys == nil {
		e.nextKeys = map[string]bool{}
	}
	if e.nextKeys[key] || len(e.next) >= 2*maxPeers {
		return
	}
	e.nextKeys[key] = true
	e.next = append(e.next, m)
}

// nextBase returns the result of this round that most peers build on in
// next-round messages, with the number of distinct peers (counting those
// that committed it here too).
func (e *Engine) nextBase() (Hash, int) {
	by := map[Hash]map[PeerID]bool{}
	add := func(h Hash, p PeerID) {
		if by[h] == nil {
			by[h] = map[PeerID]bool{}
		}
		by[h][p] = true
	}
	for _, m := range e.next {
		switch m := m.(type) {
		case *UpdateMsg:
			add(m.Base, m.From)
		case *CommitMsg:
			add(m.Base, m.From)
		case *HelloMsg:
			add(m.Base, m.From)
		}
	}
	var best Hash
	n := 0
	for h, ps := range by {
		for p, c := range e.commits {
			if c.Result == h {
				ps[p] = true
			}
		}
		if len(ps) > n || len(ps) == n && hashLess(h, best) {
			best, n = h, len(ps)
		}
	}
	return best, n
}

// isSubset reports whether sorted a ⊆ sorted b.
func isSubset(a, b []Hash) bool {
	j := 0
	for _, x := range a {
		for j < len(b) && hashLess(b[j], x) {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
	}
	return true
}

// commitFor returns a commit of this round with the given result.
func (e *Engine) commitFor(r Hash) *CommitMsg {
	var best *CommitMsg
	for _, c := range e.commits {
		if c.Result == r && (best == nil || c.From < best.From) {
			best = c
		}
	}
	return best
}

// peersOn lists the peers known to hold state r (committed it, or build on
// it in the next round).
func (e *Engine) peersOn(r Hash) []PeerID {
	set := map[PeerID]bool{}
	for p, c := range e.commits {
		if c.Result == r {
			set[p] = true
		}
	}
	for _, m := range e.next {
		switch m := m.(type) {
		case *UpdateMsg:
			if m.Base == r {
				set[m.From] = true
			}
		case *HelloMsg:
			if m.Base == r {
				set[m.From] = true
			}
		case *CommitMsg:
			if m.Base == r {
				set[m.From] = true
			}
		}
	}
	delete(set, e.self)
	out := make([]PeerID, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// catchUp fetches the state of a later round that peers committed: when a
// strict majority of the expected peers did, or when this engine is stalled
// (past its deadline) and any did. Peers that moved on never come back for
// this engine, and they keep only their newest states, so a stalled engine
// must follow the newest round it hears of rather than wait for a majority
// that may have aged it out.
func (e *Engine) catchUp() {
	if e.ahead == nil {
		return
	}
	stalled := e.deadline > 0 && e.now >= e.deadline
	if e.phase == phaseSync && !(stalled && e.want != nil && e.want.Round < e.ahead.round+1) {
		return
	}
	if 2*len(e.ahead.from) <= len(e.expected()) && !stalled {
		return
	}
	var from []PeerID
	for p := range e.ahead.from {
		from = append(from, p)
	}
	slices.Sort(from)
	e.logf("round %d: %d peers committed round %d → %s: fetching that state", e.round, len(from), e.ahead.round, e.ahead.result.Short())
	e.requestState(e.ahead.round+1, e.ahead.result, from)
}

type aheadVotes struct {
	round  uint64
	result Hash
	from   map[PeerID]bool
}

type vote struct {
	c     *CommitMsg
	count int
}

// winner returns the commit with the most votes; ties go to the larger
// update set, then to the smaller result hash, so every peer that saw the
// same commits picks the same one.
func (e *Engine) winner() vote {
	var vs []vote
	for _, c := range e.commits {
		found := false
		for i := range vs {
			if vs[i].c.Result == c.Result && equalHashes(vs[i].c.Updates, c.Updates) {
				vs[i].count++
				found = true
				break
			}
		}
		if !found {
			vs = append(vs, vote{c, 1})
		}
	}
	sort.Slice(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		if a.count != b.count {
			return a.count > b.count
		}
		if len(a.c.Updates) != len(b.c.Updates) {
			return len(a.c.Updates) > len(b.c.Updates)
		}
		return hashLess(a.c.Result, b.c.Result)
	})
	return vs[0]
}

// maybeDecide runs the commit phase. Commits converge on the union of the
// update sets peers committed: a peer that sees IDs it lacks fetches them
// and re-commits the union (a commit may only grow), so honest peers end
// on one set. A round is decided when a strict majority of the expected
// peers commit the same set and result, or when a majority has already
// moved on from a result (their next-round messages name it as base).
func (e *Engine) maybeDecide() {
	if e.settleNext() || e.phase != phaseCommit {
		return
	}
	exp := e.expected()
	// A set that a strict majority committed is decided, before anything
	// else: revising toward a larger set now could split the vote.
	if w := e.winner(); 2*w.count > len(exp) {
		if e.haveAll(w.c.Updates) {
			e.finish(w)
			return
		}
		e.fetchCommitted()
		return
	}
	// Grow toward the union of the committed sets, and of the exclusions
	// this engine holds a fail verdict for. Others wait like missing
	// updates (the verdict is on its way by gossip); past the deadline an
	// exclusion that most commits name is taken on their word (this engine
	// may have restored past the round the verdict is about).
	union := map[Hash]bool{}
	named := map[PeerID]int{}
	for _, c := range e.commits {
		for _, id := range c.Updates {
			union[id] = true
		}
		for _, p := range c.Excluded {
			named[p]++
		}
	}
	excl := e.vouched()
	unvouched := 0
	for p, k := range named {
		if slices.Contains(excl, p) {
			continue
		}
		if e.now >= e.deadline && 2*k > len(e.commits) {
			excl = append(excl, p)
		} else {
			unvouched++
		}
	}
	slices.Sort(excl)
	missing := 0
	for id := range union {
		if _, ok := e.decoded[id]; !ok {
			missing++
		}
	}
	missing += unvouched
	if missing > 0 {
		// Keep asking; past the deadline, go on without what is missing
		// (it joins the set if it arrives later).
		e.fetchCommitted()
		if e.now < e.deadline {
			return
		}
	}
	var ids []Hash
	for id := range union {
		if _, ok := e.decoded[id]; ok {
			ids = append(ids, id)
		}
	}
	sortHashes(ids)
	if !equalHashes(ids, e.mine.Updates) || !slices.Equal(excl, e.mine.Excluded) {
		if !e.commitTo(ids, excl) {
			return
		}
		e.fetchOut = false
	}
	agree := 0
	for _, c := range e.commits {
		if c.Result == e.mine.Result && equalHashes(c.Updates, e.mine.Updates) {
			agree++
		}
	}
	if 2*agree > len(exp) {
		e.finish(vote{e.mine, agree})
	}
}

// settle re-evaluates the current phase after news.
func (e *Engine) settle() {
	switch e.phase {
	case phaseTrain:
		e.settleNext()
	case phaseCollect:
		e.maybeClose()
	case phaseCommit:
		e.maybeDecide()
	}
}

// settleNext ends the round if a strict majority of the expected peers
// already build on one result in next-round messages: with their commit's
// updates if this engine holds them all and they reproduce the result,
// otherwise by fetching that state. It reports whether it acted.
func (e *Engine) settleNext() bool {
	if e.phase == phaseSync {
		return false
	}
	r, n := e.nextBase()
	// A majority moved on; or, past this round's deadline and with no
	// majority in sight, some peers did: they decided, and never revisit a
	// round, so following them is the only way the round ends.
	late := e.deadline > 0 && e.now >= e.deadline && (e.phase == phaseCollect || e.phase == phaseCommit)
	// Every other expected peer moved on: there is nobody left to wait for.
	allGone := n >= len(e.expected())-1
	if n == 0 || 2*n <= len(e.expected()) && !late && !allGone {
		return false
	}
	if e.mine != nil && r == e.mine.Result {
		e.finish(vote{e.mine, n})
		return true
	}
	if c := e.commitFor(r); c != nil && e.haveAll(c.Updates) {
		if theta, mom, err := e.apply(c.Updates); err == nil && HashState(e.round+1, theta, mom, c.Excluded) == r {
			e.finishWith(c, n, theta, mom)
			return true
		}
	}
	e.logf("round %d: %d peers moved on from %s: fetching that state", e.round, n, r.Short())
	e.requestState(e.round+1, r, e.peersOn(r))
	return true
}

// fetchCommitted asks for updates that other peers' commits name and this
// engine lacks (lost in gossip), at most once per retry period.
func (e *Engine) fetchCommitted() {
	if e.fetchOut {
		return
	}
	var missing []Hash
	seen := map[Hash]bool{}
	for _, c := range e.commits {
		for _, id := range c.Updates {
			if _, ok := e.decoded[id]; !ok && !seen[id] {
				seen[id] = true
				missing = append(missing, id)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	sortHashes(missing)
	e.fetchOut = true
	e.fetch = &FetchRequest{Round: e.round, IDs: missing, From: e.holders(missing)}
}

func (e *Engine) haveAll(ids []Hash) bool {
	for _, id := range ids {
		if _, ok := e.decoded[id]; !ok {
			return false
		}
	}
	return true
}

// holders lists the peers whose commits name any of ids.
func (e *Engine) holders(ids []Hash) []PeerID {
	var out []PeerID
	for p, c := range e.commits {
		if p == e.self {
			continue
		}
		for _, id := range ids {
			if slices.ContainsFunc(c.Updates, func(h Hash) bool { return h == id }) {
				out = append(out, p)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func (e *Engine) requestState(round uint64, h Hash, from []PeerID) {
	e.phase = phaseSync
	e.deadline = e.now + e.spec.Rounds.CommitTimeout.Duration
	e.fetchState(&StateRequest{Round: round, Hash: h, From: from})
}

func (e *Engine) fetchState(r *StateRequest) {
	e.want = r
	cp := *r
	e.fetchStateOut = &cp
}

func (e *Engine) finish(w vote) {
	theta, mom, err := e.apply(w.c.Updates)
	if err != nil {
		e.logf("round %d: %v", e.round, err)
		return
	}
	e.finishWith(w.c, w.count, theta, mom)
}

func (e *Engine) finishWith(c *CommitMsg, votes int, theta, mom []float32) {
	res := RoundResult{Round: e.round, Base: e.hash, Result: c.Result, Updates: c.Updates, Votes: votes}
	var lossSum float64
	for _, id := range c.Updates {
		u := e.updates[id]
		if _, ok := e.lastResid[u.From]; ok || len(e.lastResid) < maxPeers {
			e.lastResid[u.From] = residMark{u.Round, u.ResidualOut}
		}
		res.Peers = append(res.Peers, u.From)
		res.Samples += u.Samples
		lossSum += float64(u.Loss)
	}
	res.Loss = float32(lossSum / float64(len(c.Updates)))
	e.drawChallenges(&res)
	for _, p := range c.Excluded {
		if !e.isExcluded(p) {
			res.Excluded = append(res.Excluded, Exclusion{Peer: p, Verdict: e.pending[p]})
			reason := "in the agreed commit"
			if v := e.pending[p]; v != nil {
				reason = v.Reason
			}
			e.logf("round %d: %s excluded from round %d on: %s", e.round, p, e.round+1, reason)
		}
		delete(e.pending, p)
		delete(e.seen, p)
	}
	e.excluded = slices.Clone(c.Excluded)
	res.Exclusions = slices.Clone(c.Excluded)
	copy(e.theta, theta)
	copy(e.outer.buf, mom)
	e.prevUpdates = e.updates
	e.round++
	e.hash = c.Result
	e.decided = append(e.decided, res)
	e.startRound()
	e.replayVerdicts()
}

// Restore adopts a state fetched from a peer in answer to a StateRequest.
// It is refused unless it hashes to the requested hash.
func (e *Engine) Restore(st State) error {
	if e.want == nil {
		return fmt.Errorf("trainer: no state was requested")
	}
	if len(st.Theta) != e.d || len(st.Momentum) != e.d {
		return fmt.Errorf("trainer: state has %d/%d values, want %d", len(st.Theta), len(st.Momentum), e.d)
	}
	if h := st.Hash(); h != e.want.Hash || st.Round != e.want.Round {
		return fmt.Errorf("trainer: state of round %d hashes to %s, wanted round %d %s", st.Round, h.Short(), e.want.Round, e.want.Hash.Short())
	}
	e.logf("restored state of round %d (%s)", st.Round, e.want.Hash.Short())
	if st.Round > 0 {
		e.decided = append(e.decided, RoundResult{Round: st.Round - 1, Result: e.want.Hash})
	}
	if st.Round == e.round {
		e.otherReplay = e.other
	}
	clear(e.lastResid)
	e.restore(st)
	return nil
}

// Ready returns and clears what the engine wants done.
func (e *Engine) Ready() Ready {
	r := Ready{Publish: e.out, Train: e.train, FetchUpdates: e.fetch, FetchState: e.fetchStateOut, Decided: e.decided, Events: e.events, Verdicts: e.lateVerdicts}
	e.out, e.train, e.fetch, e.fetchStateOut, e.decided, e.events, e.lateVerdicts = nil, nil, nil, nil, nil, nil, nil
	return r
}

// ServeUpdates returns the updates with the given IDs that the engine holds
// (of the current or the last decided round), for a peer's FetchRequest.
func (e *Engine) ServeUpdates(ids []Hash) []*UpdateMsg {
	var out []*UpdateMsg
	for _, id := range ids {
		if u, ok := e.updates[id]; ok {
			out = append(out, u)
		} else if u, ok := e.prevUpdates[id]; ok {
			out = append(out, u)
		}
	}
	return out
}

// keptState is an agreed state with its hash, computed once.
type keptState struct {
	st   State
	hash Hash
}

// ServeState returns the agreed state with hash h if the engine still
// holds it, for a peer's StateRequest.
func (e *Engine) ServeState(h Hash) (State, bool) {
	for i := len(e.states) - 1; i >= 0; i-- {
		if e.states[i].hash == h {
			return e.states[i].st, true
		}
	}
	return State{}, false
}

// Latest returns the newest agreed state the engine holds and its hash.
func (e *Engine) Latest() (State, Hash) {
	k := e.states[len(e.states)-1]
	return k.st, k.hash
}

// isExcluded reports whether p is excluded from the run.
func (e *Engine) isExcluded(p PeerID) bool {
	_, ok := slices.BinarySearch(e.excluded, p)
	return ok
}

// elsewhere reports whether p builds on another base than this engine's
// this round: its update will not be one to aggregate here, so it is not
// waited for.
func (e *Engine) elsewhere(p PeerID) bool {
	if e.agree[p] {
		return false
	}
	for b, ps := range e.bases {
		if b != e.hash && ps[p] {
			return true
		}
	}
	return false
}

// Refused tells the engine that the transport refused a message from p in
// round (a forged signature, say): p's update of that round is not waited
// for. An honest peer's messages are never refused, so this only stops a
// peer that sends valid hellos and invalid updates from stalling every
// round until its timeout.
func (e *Engine) Refused(p PeerID, round uint64) {
	if _, ok := e.refused[p]; ok || len(e.refused) < maxPeers {
		e.refused[p] = round + 1
	}
	if round == e.round {
		e.settle()
	}
}

// Updates returns the updates accepted so far in the current round.
func (e *Engine) Updates() []*UpdateMsg {
	out := make([]*UpdateMsg, 0, len(e.updates))
	for _, u := range e.updates {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From < out[j].From })
	return out
}

// vouched returns the exclusions this engine can vouch for: the agreed
// ones and those of the fail verdicts it holds, sorted.
func (e *Engine) vouched() []PeerID {
	out := slices.Clone(e.excluded)
	for p := range e.pending {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func isSubsetP(a, b []PeerID) bool {
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			return false
		}
	}
	return true
}

// RoundSeed is the batch-order seed of peer's inner steps in round: what
// an update commits to as its Seed, and what a challenger re-executes.
func RoundSeed(spec runspec.Spec, round uint64, peer PeerID) uint64 {
	return prng.Derive(spec.Run.Seed, prng.String64("round"), round, prng.String64(string(peer)))
}

// ShardOf is the data shard a peer trains.
func ShardOf(spec runspec.Spec, peer PeerID) int {
	return int(prng.String64(string(peer)) % uint64(spec.Shards()))
}

// residMark is the residual a peer's update of round left behind.
type residMark struct {
	round uint64
	out   Hash
}

// checkCommitments checks what can be checked of an update's commitments
// without re-executing it: the seed, the number of segment roots, and that
// the residual continues the one the sender's update of the previous round
// left, when this engine aggregated that update (an honest peer encodes
// twice in one round only after adopting another base, which no engine
// that aggregated its first update shares without a restore).
func (e *Engine) checkCommitments(u *UpdateMsg) Decision {
	if want := RoundSeed(e.spec, u.Round, u.From); u.Seed != want {
		return reject("bad commitment: sampling seed %#x, the run assigns %s %#x in round %d", u.Seed, u.From, want, u.Round)
	}
	if n := e.spec.Segments(); len(u.Segments) != n {
		return reject("bad commitment: %d segment roots, want %d", len(u.Segments), n)
	}
	if m, ok := e.lastResid[u.From]; ok && m.round+1 == u.Round && m.out != u.ResidualIn {
		return reject("bad commitment: residual %s does not continue the %s of round %d", u.ResidualIn.Short(), m.out.Short(), m.round)
	}
	return accept()
}

// decidedRound is what checking a verdict on a round needs.
type decidedRound struct {
	beacon  Hash
	updates map[Hash]PeerID
	peers   []string
}

// keptHistory is how many decided rounds verdicts may refer to.
const keptHistory = 16

// drawChallenges computes the beacon and the challenges of a decided round
// (before the round's peers count as seen for probation), and keeps what
// checking its verdicts needs.
func (e *Engine) drawChallenges(res *RoundResult) {
	ids := make([]spot.Hash, len(res.Updates))
	for i, id := range res.Updates {
		ids[i] = id
	}
	res.Beacon = spot.Beacon(res.Round, res.Result, ids)
	d := &decidedRound{beacon: res.Beacon, updates: map[Hash]PeerID{}}
	cands := make([]spot.Candidate, len(res.Updates))
	for i, id := range res.Updates {
		p := res.Peers[i]
		d.updates[id] = p
		d.peers = append(d.peers, string(p))
		f, ok := e.first[p]
		cands[i] = spot.Candidate{Update: id, Peer: string(p), Newcomer: !ok || res.Round-f < uint64(e.spec.Verify.Probation)}
	}
	for _, p := range res.Peers {
		if _, ok := e.first[p]; !ok && len(e.first) < maxPeers {
			e.first[p] = res.Round
		}
	}
	res.Challenges = spot.Select(res.Beacon, cands, e.Policy())
	e.history[res.Round] = d
	delete(e.history, res.Round-keptHistory)
}

// replayVerdicts steps the kept verdicts whose round is now decided; those
// accepted are handed back by Ready.
func (e *Engine) replayVerdicts() {
	var keep []*VerdictMsg
	early := e.earlyVerdicts
	e.earlyVerdicts = nil
	for _, v := range early {
		if _, ok := e.history[v.Round]; ok {
			if e.StepVerdict(v).OK() {
				e.lateVerdicts = append(e.lateVerdicts, v)
			}
		} else if v.Round >= e.round {
			keep = append(keep, v)
		}
	}
	e.earlyVerdicts = append(keep, e.earlyVerdicts...)
}

// Policy returns the run's challenge policy.
func (e *Engine) Policy() spot.Policy {
	v := e.spec.Verify
	return spot.Policy{Rate: v.Rate, NewcomerRate: v.NewcomerRate, Segments: e.spec.Segments()}
}

// StepVerdict processes a challenger's verdict. It is accepted when it
// names an update this engine aggregated in a recent decided round and
// comes from the challenger the beacon drew for it; a fail verdict then
// puts the accused on the exclusion list of this engine's next commit.
func (e *Engine) StepVerdict(v *VerdictMsg) Decision {
	d, ok := e.history[v.Round]
	if !ok && v.Round >= e.round && v.Round <= e.round+1 && len(e.earlyVerdicts) < 4*maxPeers {
		// A challenger decided that round before this engine: judged
		// once this engine decides it too.
		e.earlyVerdicts = append(e.earlyVerdicts, v)
		return kept("verdict on round %d: not decided here yet (kept)", v.Round)
	}
	if !ok {
		return ignore("verdict on round %d: not decided here (or too old)", v.Round)
	}
	if p, ok := d.updates[v.Update]; !ok || p != v.Accused {
		return reject("verdict on %s by %s: not an update of round %d", v.Update.Short(), v.Accused, v.Round)
	}
	seg, who, ok := spot.Assign(d.beacon, v.Update, string(v.Accused), d.peers, e.spec.Segments())
	if !ok || who != string(v.From) || seg != v.Segment {
		return reject("verdict on %s from %s: the beacon drew %s for segment %d", v.Update.Short(), v.From, who, seg)
	}
	key := sha256.Sum256(fmt.Appendf(nil, "%d|%x|%s", v.Round, v.Update, v.From))
	if e.verdicts[key] {
		return ignore("duplicate verdict")
	}
	if len(e.verdicts) < 64*maxPeers {
		e.verdicts[key] = true
	}
	if v.Pass || e.isExcluded(v.Accused) {
		return accept()
	}
	if _, ok := e.pending[v.Accused]; !ok && len(e.pending) < maxPeers {
		e.pending[v.Accused] = v
		e.logf("round %d: %s failed the challenge of its round-%d update (segment %d): %s", e.round, v.Accused, v.Round, v.Segment, v.Reason)
	}
	e.settle()
	return accept()
}
