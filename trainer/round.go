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
}

// ID is the update's content ID: SHA-256 over a fixed encoding of every
// field and the run ID, so the same update in another run, round or under
// another sender has another ID.
func (u *UpdateMsg) ID(run runspec.ID) Hash {
	h := sha256.New()
	h.Write([]byte("vtrain/update/v1\x00"))
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

// Decision is a verdict with its reason.
type Decision struct {
	Verdict Verdict
	Reason  string
}

func accept() Decision                        { return Decision{Verdict: Accept} }
func reject(format string, a ...any) Decision { return Decision{Reject, fmt.Sprintf(format, a...)} }
func ignore(format string, a ...any) Decision { return Decision{Ignore, fmt.Sprintf(format, a...)} }
func (d Decision) String() string             { return d.Verdict.String() + ": " + d.Reason }
func (d Decision) OK() bool                   { return d.Verdict == Accept }
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
}

// StateHash is the identity of an agreed state: SHA-256 over the round,
// the parameters and the outer momentum (little-endian float32).
func StateHash(round uint64, theta, momentum []float32) Hash {
	h := sha256.New()
	h.Write([]byte("vtrain/state/v1\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], round)
	h.Write(b[:])
	buf := make([]byte, 0, 4096)
	for _, v := range [][]float32{theta, momentum} {
		binary.BigEndian.PutUint64(b[:], uint64(len(v)))
		h.Write(b[:])
		for i, x := range v {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			if len(buf) == cap(buf) || i == len(v)-1 {
				h.Write(buf)
				buf = buf[:0]
			}
		}
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
	Update *UpdateMsg
	Commit *CommitMsg
	Hello  *HelloMsg
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
}

// Ready is what the engine wants done; see [Engine.Ready].
type Ready struct {
	Publish      []Outbound
	Train        *TrainRequest
	FetchUpdates *FetchRequest
	FetchState   *StateRequest
	Decided      []RoundResult
	Events       []string // human-readable notes (rejections, resyncs)
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
	states      []keptState         // the last few agreed states, to serve syncs

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
		shard: int(prng.String64(string(cfg.Self)) % uint64(cfg.Spec.Shards())),
		seen:  map[PeerID]uint64{},
	}
	e.restore(st)
	return e, nil
}

// StepHello processes a peer's announcement.
func (e *Engine) StepHello(h *HelloMsg) Decision {
	if h.From == "" {
		return reject("malformed: hello without sender")
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
	e.hash = StateHash(e.round, e.theta, e.outer.buf)
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
			Seed: prng.Derive(e.spec.Run.Seed, prng.String64("round"), e.round, prng.String64(string(e.self))), Shard: e.shard}
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
	st := State{Round: e.round, Theta: append([]float32(nil), e.theta...), Momentum: append([]float32(nil), e.outer.buf...)}
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
		if p != e.self && r+1 >= e.round {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

func (e *Engine) heard(p PeerID, round uint64) {
	if _, ok := e.seen[p]; ok || len(e.seen) < maxPeers {
		e.seen[p] = max(e.seen[p], round)
	}
}

// Trained reports the local inner steps of round: delta = θ_r − θ_local.
// The engine compresses it (with error feedback) and publishes the update.
func (e *Engine) Trained(round uint64, delta []float32, samples uint64, loss float32) error {
	if round != e.round || e.phase != phaseTrain {
		return nil // a stale result after a resync: dropped
	}
	payload, err := e.enc.Encode(delta, nil)
	if err != nil {
		return fmt.Errorf("trainer: round %d: %w", round, err)
	}
	u := &UpdateMsg{Round: round, Base: e.hash, From: e.self, Samples: samples, Loss: loss, Payload: payload}
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
		return ignore("early: round %d, now %d (kept)", u.Round, e.round)
	case u.Round > e.round+1:
		e.heard(u.From, u.Round)
		return ignore("future: round %d, now %d", u.Round, e.round)
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
		return ignore("early commit: round %d (kept)", c.Round)
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
	if len(c.Updates) == 0 || len(c.Updates) > maxPeers {
		return reject("malformed: commit with %d updates", len(c.Updates))
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
		// A revised commit may only add updates.
		if len(c.Updates) <= len(prev.Updates) || !isSubset(prev.Updates, c.Updates) {
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
	n, exp := len(e.bases[base]), len(e.expected())
	heardAll := n+len(mine) >= exp
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
	return ignore("other base: %s builds on %s, this peer on %s", from, base.Short(), e.hash.Short())
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
		if _, ok := e.byPeer[p]; !ok {
			all = false
			break
		}
	}
	if !all && e.now < e.deadline {
		return
	}
	ids := make([]Hash, 0, len(e.updates))
	for id := range e.updates {
		ids = append(ids, id)
	}
	sortHashes(ids)
	if !e.commitTo(ids) {
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
// this engine's commit to the result. It reports false if aggregation
// failed (an update missing).
func (e *Engine) commitTo(ids []Hash) bool {
	theta, mom, err := e.apply(ids)
	if err != nil {
		e.logf("round %d: aggregate: %v", e.round, err)
		return false
	}
	e.mine = &CommitMsg{Round: e.round, Base: e.hash, From: e.self, Updates: ids, Result: StateHash(e.round+1, theta, mom)}
	e.commits[e.self] = e.mine
	e.publish(nil, e.mine)
	return true
}

// apply aggregates the given updates (sorted IDs) and steps the outer
// optimizer on copies of the state.
func (e *Engine) apply(ids []Hash) (theta, mom []float32, err error) {
	dense := make([][]float32, len(ids))
	for i, id := range ids {
		s, ok := e.decoded[id]
		if !ok {
			return nil, nil, fmt.Errorf("update %s missing", id.Short())
		}
		dense[i] = make([]float32, e.d)
		s.Dense(dense[i])
	}
	agg := make([]float32, e.d)
	if err := Aggregate(e.spec.Aggregation.Rule, e.spec.Aggregation.Trim, dense, agg); err != nil {
		return nil, nil, err
	}
	theta = append([]float32(nil), e.theta...)
	opt := NewSGD(e.d, e.spec.Outer.Momentum, 0, e.spec.Outer.Optimizer == "nesterov")
	copy(opt.buf, e.outer.buf)
	opt.Step(theta, agg, e.spec.Outer.LR)
	return theta, opt.buf, nil
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
	// Grow toward the union of the committed sets.
	union := map[Hash]bool{}
	for _, c := range e.commits {
		for _, id := range c.Updates {
			union[id] = true
		}
	}
	missing := 0
	for id := range union {
		if _, ok := e.decoded[id]; !ok {
			missing++
		}
	}
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
	if !equalHashes(ids, e.mine.Updates) {
		if !e.commitTo(ids) {
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
		if theta, mom, err := e.apply(c.Updates); err == nil && StateHash(e.round+1, theta, mom) == r {
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
		res.Peers = append(res.Peers, u.From)
		res.Samples += u.Samples
		lossSum += float64(u.Loss)
	}
	res.Loss = float32(lossSum / float64(len(c.Updates)))
	copy(e.theta, theta)
	copy(e.outer.buf, mom)
	e.prevUpdates = e.updates
	e.round++
	e.hash = c.Result
	e.decided = append(e.decided, res)
	e.startRound()
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
	if h := StateHash(st.Round, st.Theta, st.Momentum); h != e.want.Hash || st.Round != e.want.Round {
		return fmt.Errorf("trainer: state of round %d hashes to %s, wanted round %d %s", st.Round, h.Short(), e.want.Round, e.want.Hash.Short())
	}
	e.logf("restored state of round %d (%s)", st.Round, e.want.Hash.Short())
	if st.Round > 0 {
		e.decided = append(e.decided, RoundResult{Round: st.Round - 1, Result: e.want.Hash})
	}
	if st.Round == e.round {
		e.otherReplay = e.other
	}
	e.restore(st)
	return nil
}

// Ready returns and clears what the engine wants done.
func (e *Engine) Ready() Ready {
	r := Ready{Publish: e.out, Train: e.train, FetchUpdates: e.fetch, FetchState: e.fetchStateOut, Decided: e.decided, Events: e.events}
	e.out, e.train, e.fetch, e.fetchStateOut, e.decided, e.events = nil, nil, nil, nil, nil, nil
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
