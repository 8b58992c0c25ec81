package consensus

import (
	"fmt"
	"time"
)

// The agreement of one round: Tendermint's algorithm (Buchman, Kwon,
// Milosevic, "The latest gossip on BFT consensus", 2018, Algorithm 1), with
// views for its rounds (a training round is its height). The comments
// name the lines of Algorithm 1 that each rule implements.

type step int

const (
	stepPropose step = iota
	stepPrevote
	stepPrecommit
)

// voteSet is the votes of one kind in one view: each voter's, and a
// second one when a voter equivocates. Counting a value counts every voter
// that signed a vote for it, equivocators included: that is safe (two
// quorums still share an honest voter, and honest voters never
// equivocate), and it is what lets a node confirm a quorum that others saw
// through an equivocator's other vote.
type voteSet map[PeerID][]*Vote

// add records v; it returns false for a duplicate, and the voter's other
// vote when v conflicts with it.
func (s voteSet) add(v *Vote) (added bool, conflict *Vote) {
	prev := s[v.From]
	for _, x := range prev {
		if x.Value == v.Value {
			return false, nil
		}
	}
	if len(prev) > 0 {
		conflict = prev[0]
		if len(prev) >= 2 {
			return false, conflict
		}
	}
	s[v.From] = append(prev, v)
	return true, conflict
}

// count returns how many voters signed a vote for id.
func (s voteSet) count(id Hash) int {
	n := 0
	for _, vs := range s {
		for _, v := range vs {
			if v.Value == id {
				n++
				break
			}
		}
	}
	return n
}

// sigs returns the signatures of the votes for id, sorted by signer.
func (s voteSet) sigs(id Hash) []Signature {
	var out []Signature
	for p, vs := range s {
		for _, v := range vs {
			if v.Value == id {
				out = append(out, Signature{From: p, Sig: v.Sig})
				break
			}
		}
	}
	sortSigs(out)
	return out
}

type viewVotes struct {
	prevotes   voteSet
	precommits voteSet
}

type agreement struct {
	view       uint32
	step       step
	locked     *Value
	lockedView int32
	valid      *Value
	validView  int32

	proposals  map[uint32]*Proposal     // the proposer's proposal of each view
	proposalAt map[uint32]time.Duration // when each view's proposal reached this node, after the round's start (not for one kept from before)
	values     map[Hash]*Value          // values seen this round, by ID
	checks     map[Hash]*check          // validity of the values, by ID
	asked      map[Hash]time.Duration   // when the updates a value names were last asked for
	votes      map[uint32]*viewVotes
	heard      map[uint32]map[PeerID]bool // voters heard from in each view

	// The current view's timeouts (0: not scheduled) and once-only rules.
	tPropose, tPrevote, tPrecommit time.Duration
	prevoteTimer, precommitTimer   bool
	lockedOnce                     bool
	proposed                       bool

	mine    []Message       // own proposals and votes of the round, for retransmission
	mineAt  []time.Duration // when each was last sent
	decided *Commit
	relayed map[string]time.Duration // when each proposal or vote (by signature) was last forwarded
}

func newAgreement() *agreement {
	return &agreement{lockedView: -1, validView: -1, proposals: map[uint32]*Proposal{}, proposalAt: map[uint32]time.Duration{}, values: map[Hash]*Value{},
		checks: map[Hash]*check{}, asked: map[Hash]time.Duration{}, votes: map[uint32]*viewVotes{}, heard: map[uint32]map[PeerID]bool{},
		relayed: map[string]time.Duration{}}
}

// again answers a copy of a proposal or vote of the current round that
// this engine already holds. Its author re-sends what it said every commit
// timeout while the round is undecided, for peers that missed it (a
// validator that timed out under load, a mesh still forming); such a peer
// may be reachable only through this node, and pubsub takes a re-sent
// message for a new one, so a relay forwards a copy again, once per half
// commit timeout: a flood of copies travels no faster than that.
func (e *Engine) again(sig []byte, what string) Decision {
	k := string(sig)
	if t, ok := e.ag.relayed[k]; ok && e.now < t+e.spec.Rounds.CommitTimeout.Duration/2 {
		return ignore("duplicate %s", what)
	}
	e.ag.relayed[k] = e.now
	return Decision{Verdict: Accept, Reason: "duplicate " + what + " re-sent: forwarded again"}
}

// heardFirst notes when a proposal or vote was first forwarded (see again).
func (e *Engine) heardFirst(sig []byte) { e.ag.relayed[string(sig)] = e.now }

func (a *agreement) votesOf(view uint32) *viewVotes {
	vv := a.votes[view]
	if vv == nil {
		vv = &viewVotes{prevotes: voteSet{}, precommits: voteSet{}}
		a.votes[view] = vv
	}
	return vv
}

// timeouts: view 0's proposal waits for the round's training and the
// proposer's collection and one more commit timeout: the collection is
// twice the round's agreed deadline (deadline.go) when it follows known
// paces, at most rounds.timeout; every later step waits commit_timeout ×
// (view+1), so that after the network stabilises the timeouts outgrow its
// delays (partial synchrony).
func (e *Engine) timeoutPropose(view uint32) time.Duration {
	ct := e.spec.Rounds.CommitTimeout.Duration
	if view == 0 {
		if e.paced {
			return min(e.spec.Rounds.Timeout.Duration, 2*e.deadline) + ct
		}
		return e.spec.Rounds.Timeout.Duration + ct
	}
	return ct * time.Duration(view+1)
}

func (e *Engine) timeoutVote(view uint32) time.Duration {
	return e.spec.Rounds.CommitTimeout.Duration * time.Duration(view+1)
}

// startView is StartRound (lines 11-21).
func (e *Engine) startView(view uint32) {
	a := e.ag
	a.view, a.step = view, stepPropose
	a.prevoteTimer, a.precommitTimer, a.lockedOnce, a.proposed = false, false, false, false
	a.tPrevote, a.tPrecommit = 0, 0
	if view == 0 {
		a.tPropose = e.startAt + e.timeoutPropose(0)
	} else {
		a.tPropose = e.now + e.timeoutPropose(view)
	}
	for w := range a.heard {
		if w <= view {
			delete(a.heard, w)
		}
	}
	e.tryPropose()
}

// expected is the updates the proposer waits for in view 0: the voters',
// those of the members that contributed to the last round, and those of
// the private peers the rounds wait for (Policy.Private). A member just
// admitted, or one that skipped a round, is not waited for (its update is
// taken if it comes in time).
func (e *Engine) expected() []PeerID {
	var out []PeerID
	for _, m := range e.members.List {
		if e.policy.expects(m, e.round) {
			out = append(out, m.ID)
		}
	}
	return out
}

// collected reports whether the proposer of view 0 has waited long
// enough: every expected update is in (but those of known stragglers:
// members whose agreed pace is past the deadline), or a quorum of the
// voters' is and the round's agreed deadline has passed (deadline.go), or
// the collection timeout has passed. Before any pace is known, the
// deadline is the proposer's own: a grace period after the quorum (half
// the time the quorum took, at least one commit timeout: a round waits at
// most half as long again for a straggler).
func (e *Engine) collected() bool {
	if e.now >= e.startAt+e.spec.Rounds.Timeout.Duration {
		return true
	}
	all := true
	for _, p := range e.expected() {
		if !e.takeable(p) && !e.straggler(p) {
			all = false
			break
		}
	}
	if all {
		return true
	}
	if !e.enoughUpdates() {
		return false
	}
	if e.paced {
		return e.now >= e.startAt+e.deadline
	}
	if e.quorumAt == 0 {
		e.quorumAt = e.now
	}
	grace := max(e.spec.Rounds.CommitTimeout.Duration, (e.quorumAt-e.startAt)/2)
	return e.now >= e.quorumAt+grace
}

// tryPropose is the proposer's side of StartRound: re-propose the valid
// value, or propose the updates held once enough are in.
func (e *Engine) tryPropose() {
	a := e.ag
	if a.step != stepPropose || a.proposed || a.decided != nil || e.Done() || Proposer(e.round, a.view, e.voters) != e.self {
		return
	}
	var v *Value
	vr := int32(-1)
	if a.valid != nil {
		v, vr = a.valid, a.validView
	} else {
		if a.view == 0 && !e.collected() {
			return // still collecting
		}
		if !e.enoughUpdates() {
			return
		}
		var c *check
		if v, c = e.buildValue(); v == nil {
			return
		}
		a.checks[v.ID(e.run)] = c
	}
	a.proposed = true
	id := v.ID(e.run)
	a.values[id] = v
	p := &Proposal{Vote: Vote{Kind: KindProposal, Round: e.round, View: a.view, Value: id, ValidView: vr, From: e.self}, Value: v}
	p.Vote.Sig = e.sign(VoteSignBytes(e.run, &p.Vote))
	if vr >= 0 {
		p.POL = a.votesOf(uint32(vr)).prevotes.sigs(id)
	}
	a.proposals[a.view] = p
	m := Message{Proposal: p}
	a.mine, a.mineAt = append(a.mine, m), append(a.mineAt, e.now)
	e.out = append(e.out, m)
	e.logf("round %d view %d: proposing %s", e.round, a.view, v)
}

// enoughUpdates reports whether the updates held make a valid value: a
// quorum of the voters' and the spec's minimum.
func (e *Engine) enoughUpdates() bool {
	n, all := 0, 0
	var gated []PeerID
	for p := range e.byAuthor {
		if !e.takeable(p) {
			if e.members.Has(p) {
				gated = append(gated, p)
			}
			continue
		}
		all++
		if e.voterSet[p] {
			n++
		}
	}
	waived := e.gateWaived(n, all) // the gated updates the quorums need count
	for _, p := range gated {
		if waived(p) {
			all++
			if e.voterSet[p] {
				n++
			}
		}
	}
	return n >= quorumOf(len(e.voters)) && all >= e.spec.Rounds.Quorum
}

// takeable reports whether this node holds an update of p for the round
// that a value may aggregate now: not one of a private member still
// waiting for the pass on its last update (Members.Gated), as far as the
// verdicts held go (a proposal carries those it holds).
func (e *Engine) takeable(p PeerID) bool {
	if _, ok := e.byAuthor[p]; !ok {
		return false
	}
	m, ok := e.members.Find(p)
	if !ok {
		return false
	}
	return e.members.Gated(m, e.round, e.policy, e.passHeld) == ""
}

// passHeld reports whether this node holds a pass verdict on update h
// that its value may carry.
func (e *Engine) passHeld(h Hash) bool {
	for _, x := range e.verdicts {
		if x.Pass && x.Update == h && !e.unverifiedPass(x) {
			return true
		}
	}
	return false
}

// castVote signs and publishes this node's prevote or precommit, if it
// votes this round.
func (e *Engine) castVote(kind VoteKind, id Hash) {
	a := e.ag
	if !e.voterSet[e.self] {
		return
	}
	v := &Vote{Kind: kind, Round: e.round, View: a.view, Value: id, ValidView: -1, From: e.self}
	v.Sig = e.sign(VoteSignBytes(e.run, v))
	vv := a.votesOf(a.view)
	if kind == KindPrevote {
		vv.prevotes.add(v)
	} else {
		vv.precommits.add(v)
	}
	m := Message{Vote: v}
	a.mine, a.mineAt = append(a.mine, m), append(a.mineAt, e.now)
	e.out = append(e.out, m)
}

// prevote and precommit cast a vote and move to the next step.
func (e *Engine) prevote(id Hash) {
	e.castVote(KindPrevote, id)
	e.ag.step = stepPrevote
}

func (e *Engine) precommit(id Hash) {
	e.castVote(KindPrecommit, id)
	e.ag.step = stepPrecommit
}

// voteDecision classifies a vote or proposal of round by its round and
// sender before it is counted: Accept when it belongs to the current
// round's agreement.
func (e *Engine) voteDecision(v *Vote, m Message) (Decision, bool) {
	switch {
	case v.Round < e.round:
		return e.behind(v.From, v.Round), false
	case v.Round == e.round+1:
		if !e.members.Has(v.From) {
			return ignore("%s of round %d from %s, not a member of round %d", v.Kind, v.Round, v.From, e.round), false
		}
		return e.keepEarly(m, fmtKey(v)), false
	case v.Round > e.round+1:
		return e.aheadOf(v.From, v.Round), false
	}
	if e.members.IsExcluded(v.From) {
		return reject("excluded: %s was excluded from the run", v.From), false
	}
	if !e.voterSet[v.From] {
		return junk("%s from %s, not a voter of round %d", v.Kind, v.From, v.Round), false
	}
	if e.Done() {
		return ignore("the run is over"), false
	}
	if v.View > e.ag.view+maxViewAhead {
		return ignore("view %d is too far ahead of %d", v.View, e.ag.view), false
	}
	return accept(), true
}

func fmtKey(v *Vote) string { return fmt.Sprintf("%d/%s/%d", v.Kind, v.From, v.View) }

// StepProposal processes a proposal.
func (e *Engine) StepProposal(p *Proposal) Decision {
	v := &p.Vote
	if v.Kind != KindProposal || v.From == "" || p.Value == nil {
		return invalid("malformed proposal")
	}
	if v.ValidView < -1 || v.ValidView >= int32(v.View) {
		return invalid("malformed proposal: valid view %d in view %d", v.ValidView, v.View)
	}
	if !e.checkSig(v.From, VoteSignBytes(e.run, v), v.Sig) {
		return invalid("bad signature on a proposal from %s", v.From)
	}
	id := p.Value.ID(e.run)
	if id != v.Value || p.Value.Round != v.Round {
		return invalid("proposal from %s: the value does not match the signed ID", v.From)
	}
	d, ok := e.voteDecision(v, Message{Proposal: p})
	if !ok {
		return d
	}
	if want := Proposer(v.Round, v.View, e.voters); v.From != want {
		return reject("proposal from %s in view %d: the proposer is %s", v.From, v.View, want)
	}
	a := e.ag
	if prev := a.proposals[v.View]; prev != nil {
		if prev.Vote.Value == v.Value && prev.Vote.ValidView == v.ValidView {
			return e.again(v.Sig, "proposal")
		}
		e.equivocation(&prev.Vote, v)
		return reject("equivocation: %s proposed twice in view %d of round %d", v.From, v.View, v.Round)
	}
	if err := p.Value.checkShape(); err != nil {
		return invalid("malformed value: %v", err)
	}
	if v.ValidView >= 0 {
		// A re-proposal carries the prevotes that made its value valid.
		pol := &Certificate{Round: v.Round, View: uint32(v.ValidView), Value: v.Value, Sigs: p.POL}
		if err := e.verifyVotes(pol, KindPrevote, e.voters); err != nil {
			return reject("re-proposal from %s: %v", v.From, err)
		}
		set := a.votesOf(uint32(v.ValidView)).prevotes
		for _, s := range p.POL {
			set.add(pol.vote(KindPrevote, s))
		}
	} else if len(p.POL) > 0 {
		return invalid("malformed proposal: prevotes without a valid view")
	}
	a.proposals[v.View] = p
	if !e.replaying {
		a.proposalAt[v.View] = e.now - e.startAt
	}
	a.values[id] = p.Value
	e.heardFirst(v.Sig)
	e.hear(v)
	e.progress()
	return accept()
}

// StepVote processes a prevote or precommit.
func (e *Engine) StepVote(v *Vote) Decision {
	if v.Kind != KindPrevote && v.Kind != KindPrecommit || v.From == "" || v.ValidView != -1 {
		return invalid("malformed vote")
	}
	if !e.checkSig(v.From, VoteSignBytes(e.run, v), v.Sig) {
		return invalid("bad signature on a %s from %s", v.Kind, v.From)
	}
	d, ok := e.voteDecision(v, Message{Vote: v})
	if !ok {
		return d
	}
	vv := e.ag.votesOf(v.View)
	set := vv.prevotes
	if v.Kind == KindPrecommit {
		set = vv.precommits
	}
	added, conflict := set.add(v)
	if conflict != nil {
		e.equivocation(conflict, v)
	}
	if !added {
		if conflict != nil {
			return ignore("duplicate %s", v.Kind)
		}
		return e.again(v.Sig, v.Kind.String())
	}
	e.heardFirst(v.Sig)
	e.hear(v)
	e.progress()
	if conflict != nil {
		return reject("equivocation: %s signed two %ss in view %d of round %d", v.From, v.Kind, v.View, v.Round)
	}
	return accept()
}

// hear notes a voter's message in a view above the current one (line 55).
func (e *Engine) hear(v *Vote) {
	a := e.ag
	if v.View <= a.view {
		return
	}
	if a.heard[v.View] == nil {
		a.heard[v.View] = map[PeerID]bool{}
	}
	a.heard[v.View][v.From] = true
}

// equivocation files proof of two conflicting signed votes, gossips it
// once, and keeps it for the next value.
func (e *Engine) equivocation(a, b *Vote) {
	if _, ok := e.equivs[a.From]; ok || !e.members.Has(a.From) {
		return
	}
	q := &Equivocation{A: *a, B: *b}
	e.equivs[a.From] = q
	e.out = append(e.out, Message{Evidence: q})
	e.logf("round %d: %s equivocated: %s and %s", e.round, a.From, a, b)
}

// progress applies the algorithm's upon-rules until none fires.
func (e *Engine) progress() {
	for range 16 {
		if e.want != nil || e.Done() || !e.progressOnce() {
			return
		}
	}
}

func (e *Engine) progressOnce() bool {
	a := e.ag
	if a.decided != nil {
		return e.tryApply()
	}
	q := quorumOf(len(e.voters))
	view := a.view
	vv := a.votesOf(view)
	p := a.proposals[view]
	e.tryPropose()

	// Decide (line 49): a quorum of precommits for a value in any view.
	for w, ws := range a.votes {
		for _, vs := range ws.precommits {
			for _, v := range vs {
				if v.Value.IsZero() || ws.precommits.count(v.Value) < q {
					continue
				}
				val := a.values[v.Value]
				if val == nil {
					// The value was never proposed to this node: ask the
					// signers for the decision.
					e.askProof(sigSigners(ws.precommits.sigs(v.Value)))
					continue
				}
				e.decide(val, Certificate{Round: e.round, View: w, Value: v.Value, Sigs: ws.precommits.sigs(v.Value)})
				return true
			}
		}
	}
	// Lines 22 and 28: prevote on the proposal.
	if p != nil && a.step == stepPropose {
		vr := p.Vote.ValidView
		if vr == -1 || vr >= 0 && a.votesOf(uint32(vr)).prevotes.count(p.Vote.Value) >= q {
			c := e.check(p.Value)
			if c.pending {
				return false
			}
			id := p.Vote.Value
			lockOK := a.lockedView == -1 || a.locked.ID(e.run) == id
			if vr >= 0 {
				lockOK = a.lockedView <= vr || a.locked.ID(e.run) == id
			}
			if c.ok && vr == -1 {
				// A fresh proposal's arrival times, held against this
				// node's own (a re-proposal's were prevoted by a quorum).
				if pc := e.checkPace(p.Value, view); pc != nil {
					c = pc
				}
			}
			if c.ok && lockOK {
				e.prevote(id)
			} else {
				if !c.ok {
					e.logf("round %d view %d: prevoting nil on %s's proposal: %s", e.round, view, p.Vote.From, c.reason)
				}
				e.prevote(Hash{})
			}
			return true
		}
	}
	// Line 34: a quorum of prevotes of any kind starts the prevote timer.
	if a.step == stepPrevote && !a.prevoteTimer && len(vv.prevotes) >= q {
		a.prevoteTimer = true
		a.tPrevote = e.now + e.timeoutVote(view)
	}
	// Line 36: a quorum of prevotes for the valid proposal locks it.
	if p != nil && a.step >= stepPrevote && !a.lockedOnce && vv.prevotes.count(p.Vote.Value) >= q {
		c := e.check(p.Value)
		if c.ok {
			a.lockedOnce = true
			if a.step == stepPrevote {
				a.locked, a.lockedView = p.Value, int32(view)
				e.precommit(p.Vote.Value)
			}
			a.valid, a.validView = p.Value, int32(view)
			return true
		}
	}
	// Line 44: a quorum of nil prevotes.
	if a.step == stepPrevote && vv.prevotes.count(Hash{}) >= q {
		e.precommit(Hash{})
		return true
	}
	// Line 47: a quorum of precommits of any kind starts the precommit timer.
	if !a.precommitTimer && len(vv.precommits) >= q {
		a.precommitTimer = true
		a.tPrecommit = e.now + e.timeoutVote(view)
	}
	// Line 55: more than a third of the voters are in a later view.
	var jump uint32
	for w, ps := range a.heard {
		if w > view && len(ps) >= third(len(e.voters)) && w > jump {
			jump = w
		}
	}
	if jump > 0 {
		e.startView(jump)
		return true
	}
	return false
}

// tick fires the current view's timeouts (lines 57-65).
func (a *agreement) tick(e *Engine) {
	if a.decided != nil {
		return
	}
	if a.step != stepPropose {
		a.tPropose = 0
	}
	switch {
	case a.step == stepPropose && a.tPropose > 0 && e.now >= a.tPropose:
		a.tPropose = 0
		e.prevote(Hash{})
	case a.step == stepPrevote && a.tPrevote > 0 && e.now >= a.tPrevote:
		a.tPrevote = 0
		e.precommit(Hash{})
	}
	if a.tPrecommit > 0 && e.now >= a.tPrecommit {
		a.tPrecommit = 0
		e.startView(a.view + 1)
	}
}

// retransmit re-publishes this node's proposals and votes of the round
// that were last sent at least a commit timeout ago: the algorithm assumes
// that every message an honest node sends reaches every honest node
// eventually, which gossip alone does not promise.
func (a *agreement) retransmit(e *Engine) {
	if a.decided != nil {
		return
	}
	for i, m := range a.mine {
		if e.now-a.mineAt[i] >= e.spec.Rounds.CommitTimeout.Duration {
			e.out = append(e.out, m)
			a.mineAt[i] = e.now
		}
	}
}

func sigSigners(sigs []Signature) []PeerID {
	out := make([]PeerID, len(sigs))
	for i, s := range sigs {
		out[i] = s.From
	}
	return out
}

// decide records the round's decision and applies it (line 49).
func (e *Engine) decide(v *Value, cert Certificate) {
	a := e.ag
	if a.decided != nil {
		return
	}
	a.decided = &Commit{Value: v, Cert: cert}
	a.tPropose, a.tPrevote, a.tPrecommit = 0, 0, 0
	e.tryApply()
}

// tryApply applies the decided value once every update it names is held;
// until then it asks for the missing ones (and, if they do not come, for
// the state the certificate vouches for).
func (e *Engine) tryApply() bool {
	c := e.ag.decided
	var missing []Hash
	for _, r := range c.Value.Updates {
		if _, ok := e.updates[r.ID]; !ok {
			missing = append(missing, r.ID)
		}
	}
	if len(missing) > 0 {
		if e.pending == nil {
			e.pending, e.pendingAt = c, e.now
			e.fetch = &FetchRequest{Round: e.round, IDs: missing, From: certSigners(&c.Cert)}
		}
		return false
	}
	chk := e.checkValue(c.Value)
	if !chk.ok || chk.pending {
		// Certified by a quorum, yet it does not compute here: this node's
		// state is not the round's (or more than a third are Byzantine).
		// Fetch the state the certificate vouches for.
		e.logf("round %d: the decided value does not apply here (%s): fetching its state", e.round, chk.reason)
		e.wantState(c.Value.Round+1, c.Value.Next, certSigners(&c.Cert))
		e.links = []Link{{Commit: *c}}
		return false
	}
	e.apply(c, chk)
	return true
}

func certSigners(c *Certificate) []PeerID {
	out := make([]PeerID, len(c.Sigs))
	for i, s := range c.Sigs {
		out[i] = s.From
	}
	return out
}

// apply makes the decided value's state the current one and starts the
// next round.
func (e *Engine) apply(c *Commit, chk *check) {
	v := c.Value
	res := Decided{Round: e.round, Value: v, Cert: c.Cert}
	var loss float64
	for _, r := range v.Updates {
		h := e.updates[r.ID]
		res.Peers = append(res.Peers, r.From)
		res.Samples += h.u.Samples
		loss += float64(h.u.Loss)
	}
	if len(v.Updates) > 0 {
		res.Loss = float32(loss / float64(len(v.Updates)))
	}
	res.Beacon, res.Challenges = Draw(v, e.SpotPolicy())
	res.Late, res.Deadline, res.Paced = e.late(v), e.deadline, e.paced
	res.LateIn = v.LateIn()
	if len(res.LateIn) > 0 {
		e.logf("round %d: aggregated late (updates of round %d): %v", e.round, e.round-1, res.LateIn)
	}
	if len(res.Late) > 0 {
		e.logf("round %d: late (not aggregated; deadline %s): %v", e.round, fmtDeadline(e.deadline, e.paced), res.Late)
	}
	seen := map[PeerID]bool{}
	for i := range v.Verdicts {
		x := &v.Verdicts[i]
		delete(e.verdicts, x.key())
		// A verdict on a peer excluded already (by a verdict on an earlier
		// update) is recorded, but excludes nobody new.
		if !x.Pass && !seen[x.Accused] && e.members.Has(x.Accused) {
			seen[x.Accused] = true
			res.Excluded = append(res.Excluded, Exclusion{Peer: x.Accused, Verdict: x})
		}
	}
	for i := range v.Overturned {
		x := &v.Overturned[i]
		delete(e.verdicts, x.key())
		delete(e.lies, x.From)
		if !seen[x.From] && e.members.Has(x.From) {
			seen[x.From] = true
			res.Excluded = append(res.Excluded, Exclusion{Peer: x.From, Lie: x})
		}
	}
	for i := range v.Evidence {
		q := &v.Evidence[i]
		if !seen[q.A.From] && e.members.Has(q.A.From) {
			seen[q.A.From] = true
			res.Excluded = append(res.Excluded, Exclusion{Peer: q.A.From, Evidence: q})
		}
	}
	for _, j := range v.Admit {
		res.Admitted = append(res.Admitted, j.From)
		delete(e.joins, j.From)
	}
	for _, m := range e.members.List {
		if !chk.next.Has(m.ID) && !seen[m.ID] {
			res.Dropped = append(res.Dropped, m.ID)
		}
	}
	for _, x := range res.Excluded {
		e.logf("round %d: %s excluded from round %d on: %s", e.round, x.Peer, e.round+1, x.Reason())
	}
	for _, p := range res.Dropped {
		e.logf("round %d: %s dropped: no update aggregated in %d rounds", e.round, p, absentFor(e.policy, len(e.voters), p))
	}
	e.remember(c, e.voters, e.updates)
	if v.NextVoters != v.Voters {
		nv := chk.next.Voters()
		e.chain = append(e.chain, Link{Commit: *c, NextVoters: nv})
		e.history[e.round].next = nv
	}
	e.prev = e.updates
	e.carry, e.carryAt = e.carryOver(v)
	e.prevStart, e.prevRan = e.startAt, true
	e.decided = append(e.decided, res)
	e.adopt(State{Round: e.round + 1, Theta: chk.theta, Momentum: chk.mom, Members: chk.next})
}
