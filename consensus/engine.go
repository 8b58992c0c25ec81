package consensus

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// App is the application the protocol orders rounds for: what an update's
// payload means and how a decided set of updates changes the model. Both
// methods must be deterministic, so that every honest member computes the
// same state from the same decision.
type App interface {
	// CheckUpdate checks what the protocol cannot of an update: its payload
	// decodes within bounds, is finite and within the norm bound. It
	// returns the decoded form that Step is given. Its checks must not
	// depend on state: an error marks the update invalid for every node.
	CheckUpdate(u *Update) (any, error)
	// Step aggregates decoded updates (in update-ID order) and steps the
	// outer optimizer from theta and momentum, returning new vectors; it
	// does not modify its inputs.
	Step(theta, momentum []float32, decoded []any) ([]float32, []float32, error)
}

// Config configures an engine.
type Config struct {
	Spec runspec.Spec
	Self PeerID
	// Sign signs with this node's key (the key Self names). Verify checks
	// that sig is p's signature of msg. Both are pure computations; the
	// node uses libp2p's Ed25519 keys, simulations something cheaper.
	Sign   func(msg []byte) []byte
	Verify func(p PeerID, msg, sig []byte) bool
	App    App
	// Proofs verifies private peers' proofs (runspec.Privacy); a run with
	// private peers needs it (without, verdicts on their updates are taken
	// unverified, as in simulations).
	Proofs ProofChecker
}

// TrainRequest asks the driver to run the round's inner steps from Theta (a
// copy it may keep), build its update and hand it to [Engine.Trained].
type TrainRequest struct {
	Round uint64
	Base  Hash
	Theta []float32
	Seed  uint64 // batch-order seed for this peer and round
	Shard int    // the data shard this peer trains
}

// FetchRequest asks the driver to fetch updates by ID from any of the
// listed peers and pass them to [Engine.StepUpdate].
type FetchRequest struct {
	Round uint64
	IDs   []Hash
	From  []PeerID
}

// ProofRequest asks the driver to fetch, from any of the listed peers, the
// certified decisions from round Round on (a [Proof]) and pass it to
// [Engine.StepProof].
type ProofRequest struct {
	Round uint64
	From  []PeerID
}

// StateRequest asks the driver to fetch the state of Round with hash Hash
// (a hash a certificate vouches for) from any of the listed peers and pass
// it to [Engine.Restore].
type StateRequest struct {
	Round uint64
	Hash  Hash
	From  []PeerID
}

// Exclusion is a peer a decided round excluded, with the evidence.
type Exclusion struct {
	Peer     PeerID
	Verdict  *VerdictMsg   // a failed spot-check, refereed and upheld, or
	Lie      *VerdictMsg   // a verdict it signed, false on its face or overturned, or
	Evidence *Equivocation // conflicting votes
}

// Reason says why, in words.
func (x Exclusion) Reason() string {
	if x.Verdict != nil {
		return fmt.Sprintf("failed the challenge of its round-%d update (segment %d, challenger %s, %s fault upheld): %s", x.Verdict.Round, x.Verdict.Segment, x.Verdict.From, x.Verdict.Fault, x.Verdict.Reason)
	}
	if x.Lie != nil {
		return fmt.Sprintf("signed a false verdict on %s's round-%d update (segment %d, %s fault): %s", x.Lie.Accused, x.Lie.Round, x.Lie.Segment, x.Lie.Fault, x.Lie.Reason)
	}
	if x.Evidence != nil {
		return fmt.Sprintf("signed two %ss in view %d of round %d (%s and %s)", x.Evidence.A.Kind, x.Evidence.A.View, x.Evidence.A.Round, x.Evidence.A.Value.Short(), x.Evidence.B.Value.Short())
	}
	return "excluded"
}

// Decided is a decided round as this engine took it.
type Decided struct {
	Round   uint64
	Value   *Value
	Cert    Certificate
	Peers   []PeerID // the authors of the aggregated updates, in update-ID order
	Samples uint64
	Loss    float32 // mean of the aggregated updates' training losses

	Beacon     Hash             // the round's challenge randomness (spot.Beacon)
	Challenges []spot.Challenge // drawn from the beacon
	Excluded   []Exclusion
	Admitted   []PeerID
	Dropped    []PeerID // members absent too long
	// Late are the members the round expected (voters, and those aggregated
	// the round before) whose update of the round it did not aggregate:
	// stragglers it did not wait for past its deadline (or that sent
	// nothing). Their update may still be taken late by the next round
	// (LateIn there). Deadline
	// is the round's agreed collection deadline (Engine.Deadline) and Paced
	// whether it followed the members' paces.
	Late     []PeerID
	Deadline time.Duration
	Paced    bool
	// LateIn are the members whose late update (of the round before,
	// which did not aggregate one of theirs) this decision aggregates
	// (late.go), sorted: their work credited one round late.
	LateIn []PeerID
	// Restored: the engine adopted the state this decision leads to from a
	// peer (its certificate checked), rather than applying the updates;
	// Links is the chain of certified decisions it checked to get there
	// (the last is this one).
	Restored bool
	Links    []Link
}

// Ready is what the engine wants done; see [Engine.Ready].
type Ready struct {
	Publish      []Message
	Train        *TrainRequest
	FetchUpdates *FetchRequest
	FetchProof   *ProofRequest
	FetchState   *StateRequest
	Referee      []RefereeRequest
	Decided      []Decided
	Events       []string
}

// held is an accepted update of the current round with its decoded form.
type held struct {
	u   *Update
	dec any
}

// Engine is one peer's round protocol as a pure state machine, in the
// manner of etcd's raft RawNode: the Step methods take messages, [Engine.Tick]
// advances a logical clock, [Engine.Trained] reports local work, and
// [Engine.Ready] hands back what to publish, train or fetch. It does no
// I/O, starts no goroutine and reads no clock, so a simulated network
// drives many engines deterministically. It is not safe for concurrent
// use. The protocol is described in the package documentation.
type Engine struct {
	spec   runspec.Spec
	run    RunID
	self   PeerID
	sign   func([]byte) []byte
	verify func(PeerID, []byte, []byte) bool
	app    App
	proofs ProofChecker
	policy Policy
	d      int
	now    time.Duration

	// The agreed state of the current round.
	round      uint64
	theta, mom []float32
	members    Members
	hash       Hash
	voters     []PeerID
	voterSet   map[PeerID]bool
	votersHash Hash
	startAt    time.Duration          // when this round started here
	deadline   time.Duration          // the round's agreed collection deadline (deadline.go)
	paced      bool                   // whether it follows known paces
	arrived    map[Hash]time.Duration // when each update first came by gossip, after startAt
	replaying  bool                   // replaying messages kept from before the round began
	quorumAt   time.Duration          // when the proposer first held a quorum of the voters' updates (0: not yet)
	progressAt time.Duration          // the last decision or restore

	updates   map[Hash]*held  // every update held this round, by ID (late ones too)
	byAuthor  map[PeerID]Hash // each author's first that carries in its mark
	versions  map[PeerID]int  // further updates held per author
	ownSent   *Update         // own update of this round
	ownSentAt time.Duration   // when it was last sent
	prev      map[Hash]*held

	// Late updates (late.go): updates of the round before that it did not
	// aggregate, each author's first (lateBy) and further ones counted;
	// this node's own (ownLate); and the updates of the round just decided
	// that it did not aggregate on time, stepped again as late ones when
	// the next round starts (carry).
	lateBy       map[PeerID]Hash
	lateVersions map[PeerID]int
	ownLate      *Update
	ownLateAt    time.Duration
	carry        []*Update
	// When each late update first came by gossip, after the start of its
	// own round here (prevStart; prevRan: that round ran here, it was not
	// skipped by a restore): the arrival time a late update's reference
	// reports (arrivalOfLate). carryAt holds those of the carried updates.
	lateArrived map[Hash]time.Duration
	carryAt     map[Hash]time.Duration
	prevStart   time.Duration
	prevRan     bool

	ag *agreement

	early    []Message // messages of the next round
	earlyKey map[string]bool

	// Evidence to propose: join requests, verdicts, equivocation proofs.
	joins    map[PeerID]*JoinRequest
	verdicts map[verdictKey]*VerdictMsg
	rulings  map[verdictKey]Ruling  // this node's findings on failed verdicts
	lies     map[PeerID]*VerdictMsg // a false verdict per signer: proof to exclude it
	equivs   map[PeerID]*Equivocation
	ownJoin  *JoinRequest
	// verdicts of rounds not decided here yet
	lateVerdicts []*VerdictMsg

	history map[uint64]*record // recent decided rounds
	chain   []Link             // decisions that changed the voter set, for proofs
	states  []State            // the last few agreed states, to serve syncs
	hashes  []Hash
	helped  map[uint64]time.Duration // when Commit(round) was last published for laggards (see remember)

	// Catch-up.
	pending   *Commit       // decided here, updates still missing
	pendingAt time.Duration // when the missing updates were first asked for
	links     []Link        // certified decisions verified from a proof, not yet applied
	want      *StateRequest // the certified state being fetched
	wantAt    time.Duration
	proofAt   time.Duration // when a proof was last asked for
	aheadAt   uint64        // the latest round a commit (its shape checked) was gossiped for while this node was behind
	heard     *heardDecided // a member's word that it decided this round or a later one (HeardDecided)
	retryAt   time.Duration // when to re-send what this node said this round (retransmit)
	retries   int           // re-sends so far this round

	sigs map[[32]byte]bool // signatures verified, by hash of (signer, message, signature)

	out         []Message
	train       *TrainRequest
	fetch       *FetchRequest
	fetchProof  *ProofRequest
	fetchState  *StateRequest
	referee     []RefereeRequest
	decided     []Decided
	events      []string
	trainedOnce bool
}

// keptHistory is how many decided rounds an engine keeps to check verdicts
// and evidence against, and to help peers that lag.
const keptHistory = 16

// keptStates is how many agreed states an engine keeps to serve peers.
const keptStates = 3

// maxViewAhead bounds the views above the current one whose messages are
// kept.
const maxViewAhead = 8

// NewEngine returns an engine starting from st: the genesis, or a state
// the node trusts (its own checkpoint), with the chain of certified
// decisions it holds (nil at genesis).
func NewEngine(cfg Config, st State, chain []Link) (*Engine, error) {
	if err := cfg.Spec.Validate(); err != nil {
		return nil, err
	}
	if cfg.Self == "" || cfg.Sign == nil || cfg.Verify == nil || cfg.App == nil {
		return nil, fmt.Errorf("consensus: incomplete configuration")
	}
	m, _ := cfg.Spec.ModelSpec()
	d := m.NumParams()
	if len(st.Theta) != d || len(st.Momentum) != d {
		return nil, fmt.Errorf("consensus: state has %d/%d values, model %s has %d", len(st.Theta), len(st.Momentum), m, d)
	}
	if err := st.Members.Validate(st.Round); err != nil {
		return nil, err
	}
	if len(st.Members.Voters()) == 0 {
		return nil, fmt.Errorf("consensus: the state of round %d has no voters", st.Round)
	}
	e := &Engine{spec: cfg.Spec, run: cfg.Spec.RunID(), self: cfg.Self, sign: cfg.Sign, verify: cfg.Verify, app: cfg.App, proofs: cfg.Proofs,
		policy: PolicyOf(cfg.Spec), d: d,
		joins: map[PeerID]*JoinRequest{}, verdicts: map[verdictKey]*VerdictMsg{}, equivs: map[PeerID]*Equivocation{},
		rulings: map[verdictKey]Ruling{}, lies: map[PeerID]*VerdictMsg{},
		history: map[uint64]*record{}, helped: map[uint64]time.Duration{}, sigs: map[[32]byte]bool{},
	}
	if err := e.loadChain(st, chain); err != nil {
		return nil, err
	}
	e.adopt(st.Clone())
	return e, nil
}

// loadChain checks the chain a node kept with its checkpoint from the
// genesis voters on, and keeps it: the voter-set changes to serve proofs,
// the last decisions to check verdicts against.
func (e *Engine) loadChain(st State, chain []Link) error {
	g := GenesisMembers(e.spec)
	links, err := e.verifyLinks(0, g.Voters(), chain)
	if err != nil {
		return fmt.Errorf("consensus: the kept chain: %w", err)
	}
	for _, l := range links {
		v := l.Commit.Value
		if v.Round >= st.Round {
			return fmt.Errorf("consensus: the kept chain reaches round %d, the state is of round %d", v.Round, st.Round)
		}
		if v.Round+1 == st.Round && v.Next != st.Hash() {
			return fmt.Errorf("consensus: the kept chain does not lead to the state of round %d", st.Round)
		}
		if v.NextVoters != v.Voters {
			e.chain = append(e.chain, l.Link)
		}
		if v.Round+keptHistory >= st.Round {
			e.remember(&l.Commit, l.voters, nil)
			if v.NextVoters != v.Voters {
				e.history[v.Round].next = l.NextVoters
			}
		}
	}
	return nil
}

// adopt makes st the current state and starts its round.
func (e *Engine) adopt(st State) {
	e.round = st.Round
	e.theta, e.mom = st.Theta, st.Momentum
	e.members = st.Members
	e.hash = st.Hash()
	e.states = append(e.states, st)
	e.hashes = append(e.hashes, e.hash)
	if len(e.states) > keptStates {
		e.states = e.states[len(e.states)-keptStates:]
		e.hashes = e.hashes[len(e.hashes)-keptStates:]
	}
	e.progressAt = e.now
	e.enterRound()
}

// enterRound starts the current round: fresh tables, training if this node
// is a member, a join request if it is not, and view 0.
func (e *Engine) enterRound() {
	e.voters = e.members.Voters()
	e.voterSet = map[PeerID]bool{}
	for _, p := range e.voters {
		e.voterSet[p] = true
	}
	e.votersHash = VotersDigest(e.voters)
	e.startAt, e.quorumAt = e.now, 0
	e.updates, e.byAuthor, e.versions = map[Hash]*held{}, map[PeerID]Hash{}, map[PeerID]int{}
	e.lateBy, e.lateVersions, e.ownLate = map[PeerID]Hash{}, map[PeerID]int{}, nil
	e.lateArrived, e.carryAt = e.carryAt, nil
	if e.lateArrived == nil {
		e.lateArrived = map[Hash]time.Duration{}
	}
	e.arrived = map[Hash]time.Duration{}
	e.deadline, e.paced = e.members.Deadline(e.policy)
	e.ownSent = nil
	e.pending, e.want = nil, nil
	e.ag = newAgreement()
	e.retryAt, e.retries = e.now+e.spec.Rounds.CommitTimeout.Duration, 0
	for id, j := range e.joins {
		if e.members.Has(id) || e.members.IsExcluded(id) || j.Round+joinWindow < e.round {
			delete(e.joins, id)
		}
	}
	for k := range e.verdicts {
		if k.round+keptHistory < e.round {
			delete(e.verdicts, k)
		}
	}
	for k := range e.rulings {
		if k.round+keptHistory < e.round {
			delete(e.rulings, k)
		}
	}
	for p, x := range e.lies {
		if !e.members.Has(p) || x.Round+keptHistory < e.round {
			delete(e.lies, p)
		}
	}
	for p := range e.equivs {
		if !e.members.Has(p) {
			delete(e.equivs, p)
		}
	}
	if e.Done() {
		return
	}
	switch {
	case e.members.Has(e.self):
		e.train = &TrainRequest{Round: e.round, Base: e.hash, Theta: slices.Clone(e.theta),
			Seed: RoundSeed(e.spec, e.round, e.self), Shard: ShardOf(e.spec, e.self)}
		e.ownJoin = nil
	case !e.members.IsExcluded(e.self):
		e.requestJoin()
	}
	early, carry := e.early, e.carry
	e.early, e.earlyKey, e.carry = nil, nil, nil
	e.startView(0)
	e.replaying = true
	e.stepCarried(carry)
	for _, m := range early {
		e.Step(m)
	}
	e.replaying = false
	for _, v := range e.takeLateVerdicts() {
		e.StepVerdict(v)
	}
}

// requestJoin publishes this node's request to become a member.
func (e *Engine) requestJoin() {
	j := &JoinRequest{Round: e.round, From: e.self}
	j.Sig = e.sign(JoinSignBytes(e.run, j))
	e.ownJoin = j
	e.out = append(e.out, Message{Join: j})
}

// Round returns the current round; Hash the hash of its state; Theta the
// agreed parameters (a view: do not modify).
func (e *Engine) Round() uint64     { return e.round }
func (e *Engine) Hash() Hash        { return e.hash }
func (e *Engine) Theta() []float32  { return e.theta }
func (e *Engine) RunID() RunID      { return e.run }
func (e *Engine) Self() PeerID      { return e.self }
func (e *Engine) Members() *Members { return &e.members }

// Voters returns the current round's voters (a view: do not modify).
func (e *Engine) Voters() []PeerID { return e.voters }

// Done reports whether the run's last round has been decided.
func (e *Engine) Done() bool {
	return e.spec.Run.Rounds > 0 && e.round >= uint64(e.spec.Run.Rounds)
}

// State returns a copy of the agreed state of the current round.
func (e *Engine) State() State {
	return State{Round: e.round, Theta: slices.Clone(e.theta), Momentum: slices.Clone(e.mom), Members: e.members.Clone()}
}

// Tick advances the engine's clock by d and fires due timeouts.
func (e *Engine) Tick(d time.Duration) {
	e.now += d
	ct := e.spec.Rounds.CommitTimeout.Duration
	if e.now >= e.retryAt {
		// Re-sends back off: a commit timeout, then twice, four, eight
		// times as long while the round stays undecided (a stalled round
		// re-sends a few times, not every commit timeout).
		e.retries++
		e.retryAt = e.now + ct<<min(e.retries, 3)
		e.retransmit()
	}
	e.catchUpTick()
	if !e.Done() && e.want == nil {
		e.ag.tick(e)
	}
	e.progress()
}

// retransmit re-publishes what this node said this round: gossip may have
// lost it, and the protocol's liveness needs every honest message to reach
// every honest node eventually.
func (e *Engine) retransmit() {
	if e.Done() || e.want != nil {
		return
	}
	if e.ownSent != nil && e.ag.decided == nil && e.now-e.ownSentAt >= e.spec.Rounds.CommitTimeout.Duration {
		e.out = append(e.out, Message{Update: e.ownSent})
		e.ownSentAt = e.now
	}
	if e.ownLate != nil && e.ag.decided == nil && e.now-e.ownLateAt >= e.spec.Rounds.CommitTimeout.Duration {
		e.out = append(e.out, Message{Update: e.ownLate})
		e.ownLateAt = e.now
	}
	e.ag.retransmit(e)
	if e.ownJoin != nil && !e.members.Has(e.self) {
		e.requestJoin()
	}
}

// Ready returns and clears what the engine wants done.
func (e *Engine) Ready() Ready {
	r := Ready{Publish: e.out, Train: e.train, FetchUpdates: e.fetch, FetchProof: e.fetchProof, FetchState: e.fetchState,
		Referee: e.referee, Decided: e.decided, Events: e.events}
	e.out, e.train, e.fetch, e.fetchProof, e.fetchState, e.referee, e.decided, e.events = nil, nil, nil, nil, nil, nil, nil, nil
	return r
}

func (e *Engine) logf(format string, a ...any) {
	e.events = append(e.events, fmt.Sprintf(format, a...))
}

// checkSig verifies p's signature of msg, remembering what it verified.
func (e *Engine) checkSig(p PeerID, msg, sig []byte) bool {
	if len(sig) == 0 || len(sig) > 1024 {
		return false
	}
	h := sha256.New()
	h.Write([]byte(p))
	h.Write([]byte{0})
	h.Write(msg)
	h.Write(sig)
	var k [32]byte
	h.Sum(k[:0])
	if e.sigs[k] {
		return true
	}
	if !e.verify(p, msg, sig) {
		return false
	}
	if len(e.sigs) > 1<<16 {
		clear(e.sigs)
	}
	e.sigs[k] = true
	return true
}

// Step processes any message (see the Step methods).
func (e *Engine) Step(m Message) Decision {
	switch {
	case m.Update != nil:
		return e.StepUpdate(m.Update)
	case m.Proposal != nil:
		return e.StepProposal(m.Proposal)
	case m.Vote != nil:
		return e.StepVote(m.Vote)
	case m.Commit != nil:
		return e.StepCommit(m.Commit)
	case m.Join != nil:
		return e.StepJoin(m.Join)
	case m.Verdict != nil:
		return e.StepVerdict(m.Verdict)
	case m.Evidence != nil:
		return e.StepEvidence(m.Evidence)
	}
	return invalid("malformed: empty message")
}

// keepEarly stores a message of the next round once (bounded).
func (e *Engine) keepEarly(m Message, key string) Decision {
	if e.earlyKey == nil {
		e.earlyKey = map[string]bool{}
	}
	if e.earlyKey[key] {
		return ignore("duplicate of a kept message")
	}
	if len(e.early) >= 8*len(e.members.List)+64 {
		return ignore("early messages: full")
	}
	e.earlyKey[key] = true
	e.early = append(e.early, m)
	return kept("early: round %d, now %d (kept)", m.Round(), e.round)
}

// aheadOf notes that peer p speaks of a round beyond the next one: this
// engine lags, or p lies. A member's word triggers a fetch of certified
// decisions (rate-limited); it is never adopted as such. A non-member's is
// junk: a lagging node may misjudge a member admitted since, so the driver
// charges junk lightly, enough to stop a flood.
func (e *Engine) aheadOf(p PeerID, round uint64) Decision {
	if !e.members.Has(p) {
		return junk("round %d from %s, not a member of round %d", round, p, e.round)
	}
	e.askProof([]PeerID{p})
	return ignore("future: round %d, now %d", round, e.round)
}

// behind notes a message of a past round from p: if p was a voter of that
// round it lags, and the round's commit helps it catch up.
func (e *Engine) behind(p PeerID, round uint64) Decision {
	rec := e.history[round]
	if rec == nil {
		return ignore("stale: round %d, now %d", round, e.round)
	}
	// A voter of that round, or a member now (a joiner admitted since,
	// which adopted a state just before that round's decision went by:
	// it does not vote, so without this it would wait for a stall to ask,
	// and a run that ended would have gone by then).
	if !slices.Contains(rec.voters, p) && !e.members.Has(p) {
		return ignore("stale: round %d, now %d", round, e.round)
	}
	if e.now >= e.helped[round]+e.spec.Rounds.CommitTimeout.Duration {
		e.helped[round] = e.now
		c := rec.commit
		e.out = append(e.out, Message{Commit: &c})
	}
	return ignore("stale: round %d, now %d", round, e.round)
}

// StepUpdate processes an update from a peer (or this node's own).
func (e *Engine) StepUpdate(u *Update) Decision {
	if u.From == "" {
		return invalid("malformed: update without author")
	}
	if !e.checkSig(u.From, UpdateSignBytes(e.run, u), u.Sig) {
		return invalid("bad signature on an update from %s", u.From)
	}
	switch {
	case u.Round+1 == e.round:
		return e.stepLate(u)
	case u.Round < e.round:
		return e.behind(u.From, u.Round)
	case u.Round == e.round+1:
		if !e.members.Has(u.From) {
			return ignore("update of round %d from %s, not a member of round %d", u.Round, u.From, e.round)
		}
		return e.keepEarly(Message{Update: u}, fmt.Sprintf("u%s", u.From))
	case u.Round > e.round+1:
		return e.aheadOf(u.From, u.Round)
	}
	if e.members.IsExcluded(u.From) {
		return reject("excluded: %s was excluded from the run", u.From)
	}
	if !e.members.Has(u.From) {
		return junk("update from %s, not a member of round %d", u.From, u.Round)
	}
	if e.Done() {
		return ignore("the run is over")
	}
	id := u.ID(e.run)
	if _, ok := e.updates[id]; ok {
		return ignore("duplicate update %s", id.Short())
	}
	if u.Base != e.hash {
		return reject("wrong base: %s's update builds on %s, round %d's state is %s", u.From, u.Base.Short(), u.Round, e.hash.Short())
	}
	prev, second := e.byAuthor[u.From]
	if !e.named(id) && e.versions[u.From] >= maxVersions {
		return ignore("%s sent more than %d updates in round %d", u.From, maxVersions, u.Round)
	}
	spec := false // carries in what the author's late update kept (late.go)
	if d := e.checkCommitments(u, e.ResidualMark(u.From)); !d.OK() {
		if spec = e.continuesLate(u); !spec {
			if why := e.mayContinueLate(u.From); !d.Invalid && why != "" {
				return ignore("%s (its residual %s is not its mark)", why, u.ResidualIn.Short())
			}
			return d
		}
	}
	dec, err := e.app.CheckUpdate(u)
	if err != nil {
		return invalid("%v", err)
	}
	if err := e.checkLink(u, dec, e.theta); err != nil {
		return invalid("%v", err)
	}
	e.updates[id] = &held{u: u, dec: dec}
	e.noteArrival(id)
	if spec {
		// Valid only once its author's late update is aggregated: not
		// proposed this round, kept (and forwarded) to be taken late in
		// the next one.
		e.versions[u.From]++
		e.progress()
		return Decision{Verdict: Accept, Reason: fmt.Sprintf("%s's update continues its late update of round %d: kept for round %d", u.From, u.Round-1, u.Round+1)}
	}
	if second {
		// An author that sends different updates to different peers: a
		// value may name either (one per author), so each is kept (a few,
		// or any that a value names), but only the first is proposed
		// here and forwarded.
		e.versions[u.From]++
		e.logf("round %d: %s sent a second update (%s after %s)", e.round, u.From, id.Short(), prev.Short())
		e.progress()
		return kept("second update from %s in round %d (kept)", u.From, u.Round)
	}
	e.byAuthor[u.From] = id
	e.progress()
	return accept()
}

// checkLink links a private update's payload to its commitments (Linker)
// against base, the agreed state its Base names.
func (e *Engine) checkLink(u *Update, dec any, base []float32) error {
	l, ok := e.app.(Linker)
	if !ok || !e.spec.IsPrivate(string(u.From)) {
		return nil
	}
	return l.CheckLink(u, dec, base)
}

// maxVersions bounds the updates kept per author and round beyond those a
// value names.
const maxVersions = 3

// named reports whether a value seen this round names update id.
func (e *Engine) named(id Hash) bool {
	for _, v := range e.ag.values {
		for _, r := range v.Updates {
			if r.ID == id {
				return true
			}
		}
	}
	return false
}

// ResidualMark is the residual root member p's next update must carry in:
// what its last aggregated update kept, or the zero residual's (the zero
// hash) before any (see Member.Residual).
func (e *Engine) ResidualMark(p PeerID) Hash {
	if m, ok := e.members.Find(p); ok {
		return m.Residual
	}
	return Hash{}
}

// checkCommitments checks what can be checked of an update's commitments
// without re-executing it: the seed, the number of segment roots, and that
// the residual it carries in is the one its author's last aggregated
// update kept (the membership's mark, certified with the state), or the
// zero residual before any.
func (e *Engine) checkCommitments(u *Update, mark Hash) Decision {
	if want := RoundSeed(e.spec, u.Round, u.From); u.Seed != want {
		return invalid("bad commitment: sampling seed %#x, the run assigns %s %#x in round %d", u.Seed, u.From, want, u.Round)
	}
	n := e.spec.Segments()
	if e.spec.IsPrivate(string(u.From)) {
		n = e.privateRoots()
	}
	if len(u.Segments) != n {
		return invalid("bad commitment: %d segment roots, want %d", len(u.Segments), n)
	}
	if e.members.Has(u.From) && u.ResidualIn != mark {
		return reject("bad commitment: residual %s does not continue %s's last aggregated one, %s", u.ResidualIn.Short(), u.From, mark.Short())
	}
	return accept()
}

// Trained hands the engine this node's update of the round (built by the
// driver from the work of a TrainRequest): the engine signs it, takes it
// and publishes it. A stale one (the round moved on) is dropped.
func (e *Engine) Trained(u *Update) error {
	if u.Round+1 == e.round {
		return e.trainedLate(u)
	}
	if u.Round != e.round || u.Base != e.hash || e.ownSent != nil || e.Done() || !e.members.Has(e.self) {
		return nil
	}
	u.From = e.self
	u.Sig = e.sign(UpdateSignBytes(e.run, u))
	if d := e.StepUpdate(u); !d.OK() {
		return fmt.Errorf("consensus: own update rejected: %s", d)
	}
	e.ownSent, e.ownSentAt = u, e.now
	e.out = append(e.out, Message{Update: u})
	e.progress()
	return nil
}

// StepJoin processes a peer's request to join.
func (e *Engine) StepJoin(j *JoinRequest) Decision {
	if j.From == "" {
		return invalid("malformed: join request without sender")
	}
	if !e.checkSig(j.From, JoinSignBytes(e.run, j), j.Sig) {
		return invalid("bad signature on a join request from %s", j.From)
	}
	switch {
	case e.members.IsExcluded(j.From):
		return reject("excluded: %s may not rejoin", j.From)
	case e.members.Has(j.From):
		return ignore("%s is a member", j.From)
	case j.Round+joinWindow < e.round || j.Round > e.round+1:
		return ignore("join request of round %d, now %d", j.Round, e.round)
	case e.Done():
		return ignore("the run is over")
	}
	if prev, ok := e.joins[j.From]; ok && prev.Round >= j.Round {
		return ignore("duplicate join request")
	}
	if _, ok := e.joins[j.From]; !ok && len(e.joins) >= maxJoins {
		return ignore("join requests: full")
	}
	e.joins[j.From] = j
	return accept()
}

// joinWindow is how many rounds a join request stays valid; maxJoins bounds
// the requests kept.
const (
	joinWindow = 32
	maxJoins   = 256
)

// Serve: what a node answers peers.

// ServeUpdates returns the updates with the given IDs that the engine holds
// (of the current or the last decided round), for a peer's FetchRequest.
func (e *Engine) ServeUpdates(ids []Hash) []*Update {
	var out []*Update
	for _, id := range ids {
		if h, ok := e.updates[id]; ok {
			out = append(out, h.u)
		} else if h, ok := e.prev[id]; ok {
			out = append(out, h.u)
		}
	}
	return out
}

// ServeState returns the agreed state with hash h if the engine still
// holds it, for a peer's StateRequest.
func (e *Engine) ServeState(h Hash) (State, bool) {
	for i := len(e.states) - 1; i >= 0; i-- {
		if e.hashes[i] == h {
			return e.states[i], true
		}
	}
	return State{}, false
}

// Latest returns the newest agreed state the engine holds and its hash.
func (e *Engine) Latest() (State, Hash) {
	return e.states[len(e.states)-1], e.hashes[len(e.hashes)-1]
}

// Updates returns the updates accepted so far in the current round, by
// author.
func (e *Engine) Updates() []*Update {
	out := make([]*Update, 0, len(e.updates))
	for _, h := range e.updates {
		out = append(out, h.u)
	}
	slices.SortFunc(out, func(a, b *Update) int {
		switch {
		case a.From < b.From:
			return -1
		case a.From > b.From:
			return 1
		}
		return 0
	})
	return out
}

// Status describes where the engine is in its round, for a node's logs
// when a round takes long: the view and step, the proposal, the votes
// held, and what it waits for.
func (e *Engine) Status() string {
	a := e.ag
	steps := [...]string{"propose", "prevote", "precommit"}
	s := fmt.Sprintf("round %d view %d (%s), %d voters, %d updates, deadline %s", e.round, a.view, steps[a.step], len(e.voters), len(e.updates), fmtDeadline(e.deadline, e.paced))
	if aw := e.Awaited(); len(aw) > 0 {
		s += fmt.Sprintf(" (awaited: %d)", len(aw))
	}
	if p := a.proposals[a.view]; p != nil {
		c := a.checks[p.Vote.Value]
		state := "unchecked"
		switch {
		case c == nil:
		case c.ok:
			state = "valid"
		case c.pending:
			state = "pending: " + c.reason
		default:
			state = "invalid: " + c.reason
		}
		s += fmt.Sprintf("; proposal %s from %s (%s)", p.Vote.Value.Short(), p.Vote.From, state)
	}
	vv := a.votesOf(a.view)
	s += fmt.Sprintf("; prevotes %d, precommits %d in this view", len(vv.prevotes), len(vv.precommits))
	if a.decided != nil {
		s += "; decided, applying"
	}
	if e.want != nil {
		s += fmt.Sprintf("; fetching the certified state of round %d", e.want.Round)
	}
	if e.pending != nil {
		s += "; fetching decided updates"
	}
	if e.Done() {
		s += "; the run is over"
	}
	return s
}
