package consensus

import (
	"fmt"
	"slices"

	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// record is a decided round as the engine keeps it for a while: to check
// verdicts and equivocation proofs about it, and to help peers that lag.
type record struct {
	commit  Commit
	voters  []PeerID
	next    []PeerID // the next round's voters, when they changed
	beacon  Hash
	draws   map[drawKey]spot.Challenge // the challenges drawn, by update and challenger
	updates map[Hash]*Update           // the aggregated updates (nil for a decision adopted, not applied)
}

type drawKey struct {
	update     Hash
	challenger PeerID
}

// Ruling is a referee's finding on a failed verdict.
type Ruling uint8

// Rulings.
const (
	// Pending: the referee's check is running.
	Pending Ruling = iota
	// Upheld: the accused is at fault; a value may exclude it.
	Upheld
	// Overturned: the claim is false; a value may exclude its signer.
	Overturned
	// Lapsed: nobody is proven at fault here (the accused answered this
	// referee where the challenger said it was silent, or this node
	// cannot judge: it adopted that round rather than applying it, or no
	// longer holds what the check needs). The verdict acts on no one.
	Lapsed
)

func (r Ruling) String() string {
	return [...]string{"pending", "upheld", "overturned", "lapsed"}[r]
}

// RefereeRequest asks the driver to referee a failed verdict (see Fault)
// on Update, an update of a round this engine applied, and to report with
// [Engine.Rule].
type RefereeRequest struct {
	Verdict *VerdictMsg
	Update  *Update
	Beacon  Hash // of the verdict's round: it drew the residual blocks a link claim rests on
}

// SpotPolicy returns the run's challenge policy.
func (e *Engine) SpotPolicy() spot.Policy { return SpotPolicyOf(e.spec) }

// SpotPolicyOf returns a spec's challenge policy.
func SpotPolicyOf(spec runspec.Spec) spot.Policy {
	v := spec.Verify
	p := spot.Policy{Rate: v.Rate, NewcomerRate: v.NewcomerRate, Challengers: v.Challengers}
	for _, pp := range spec.Privacy.Peers {
		if spec.Privacy.Mode == "zk" {
			p.Proven = append(p.Proven, pp.Peer)
		}
	}
	return p
}

// Draw returns the beacon of a decided value and the challenges it draws:
// each aggregated update at its author's rate (the newcomer rate during
// probation, as the value states and its voters checked), and for each
// drawn update verify.challengers distinct challengers among the round's
// other authors, each with a segment. Every honest node and every auditor
// computes the same draw from the value alone.
func Draw(v *Value, p spot.Policy) (Hash, []spot.Challenge) {
	ids := make([]spot.Hash, len(v.Updates))
	cands := make([]spot.Candidate, len(v.Updates))
	for i, r := range v.Updates {
		ids[i] = r.ID
		cands[i] = spot.Candidate{Update: r.ID, Peer: string(r.From), Newcomer: r.Newcomer, Proven: slices.Contains(p.Proven, string(r.From))}
	}
	b := spot.Beacon(v.Round, v.Next, ids)
	return b, spot.Select(b, cands, p)
}

// remember files a decided round in the history, with its updates when
// this engine applied it (updates is nil for a decision adopted).
func (e *Engine) remember(c *Commit, voters []PeerID, updates map[Hash]*held) {
	beacon, chs := Draw(c.Value, e.SpotPolicy())
	rec := &record{commit: *c, voters: voters, beacon: beacon, draws: map[drawKey]spot.Challenge{}}
	for _, ch := range chs {
		rec.draws[drawKey{Hash(ch.Update), PeerID(ch.Challenger)}] = ch
	}
	if updates != nil {
		rec.updates = map[Hash]*Update{}
		for _, r := range c.Value.Updates {
			if h := updates[r.ID]; h != nil {
				rec.updates[r.ID] = h.u
			}
		}
	}
	e.history[c.Value.Round] = rec
	// The slowest voters' votes arrive just after the quorum's, and their
	// senders decide from the same gossip: a voter lags only if it still
	// speaks of the round half a commit timeout on (its votes are re-sent
	// every commit timeout), so the first help is due then, not at once.
	// Every node publishing the commit at every decision cost more bytes
	// than all the round's votes.
	e.helped[c.Value.Round] = e.now - e.spec.Rounds.CommitTimeout.Duration/2
	for r := range e.history {
		if r+keptHistory < c.Value.Round {
			delete(e.history, r)
		}
	}
	for r := range e.helped {
		if e.history[r] == nil {
			delete(e.helped, r)
		}
	}
}

// decidedVerdict reports whether a decided value in the history already
// carries a verdict on the challenge k.
func (e *Engine) decidedVerdict(k verdictKey) bool {
	for _, rec := range e.history {
		for i := range rec.commit.Value.Verdicts {
			if rec.commit.Value.Verdicts[i].key() == k {
				return true
			}
		}
		for i := range rec.commit.Value.Overturned {
			if rec.commit.Value.Overturned[i].key() == k {
				return true
			}
		}
	}
	return false
}

// checkDraw checks a verdict against the draw of its round: the beacon
// drew that update and that challenger, and a failure's answer is the
// accused's signed answer on the verdict's segment (the first that missed
// its root, which the challenger found), with a step inside it. A signed verdict that fails it is a lie its signer
// told (see StepVerdict). It needs the round in the history.
func (e *Engine) checkDraw(x *VerdictMsg, rec *record) error {
	ch, ok := rec.draws[drawKey{x.Update, x.From}]
	switch {
	case !ok:
		return fmt.Errorf("the beacon of round %d did not draw %s to check update %s", x.Round, x.From, x.Update.Short())
	case PeerID(ch.Peer) != x.Accused:
		return fmt.Errorf("update %s of round %d is %s's", x.Update.Short(), x.Round, ch.Peer)
	}
	if a := x.Answer; a != nil {
		if a.Round != x.Round || a.Update != x.Update || a.Segment != x.Segment || !e.checkSig(x.Accused, AnswerSignBytes(e.run, a), a.Sig) {
			return fmt.Errorf("the answer it carries is not %s's answer to this challenge", x.Accused)
		}
	}
	if e.spec.IsPrivate(string(x.Accused)) {
		return e.checkPrivateDraw(x, rec)
	}
	switch {
	case x.Answer != nil && (x.Pass || len(x.Answer.Proof) > 0):
		return fmt.Errorf("a proof or an answer on a pass, for a peer that does not prove its work")
	case x.Segment >= e.spec.Segments():
		return fmt.Errorf("segment %d of %d", x.Segment, e.spec.Segments())
	case e.spec.Verify.Tolerance > 0 && x.Fault == FaultStep:
		// Across engines no step is bit-exact: a dispute rests on the round.
		return fmt.Errorf("a step claim in a run with a tolerance (engines differ step by step)")
	case e.spec.Verify.Tolerance == 0 && x.Fault == FaultSegment:
		return fmt.Errorf("a tolerance claim in a bit-exact run")
	}
	if x.Fault == FaultStep {
		if lo, hi := e.spec.SegmentSteps(x.Segment); x.Step <= lo || x.Step > hi {
			return fmt.Errorf("step %d is outside segment %d (steps %d..%d)", x.Step, x.Segment, lo+1, hi)
		}
	}
	return nil
}

// Contradicts reports whether the accused's signed step hashes a of
// segment seg contradict its update's commitment: the wrong number of
// leaves, or a last leaf that is not the segment's committed root. That is
// the accused's own signed word against its own signed update: no
// computation needed.
func Contradicts(spec runspec.Spec, u *Update, seg int, a *Answer) bool {
	lo, hi := spec.SegmentSteps(seg)
	return len(a.Leaves) != hi-lo || seg < 0 || seg >= len(u.Segments) || a.Leaves[len(a.Leaves)-1] != u.Segments[seg]
}

// checkVerdict checks what a value's verdict must be whatever this node's
// rulings: signed, of a recent decided round, true to the draw, and not
// already decided.
func (e *Engine) checkVerdict(x *VerdictMsg, sig bool) error {
	rec := e.history[x.Round]
	if err := x.shape(); err != nil {
		return err
	}
	if rec == nil {
		return fmt.Errorf("round %d is not in this node's history", x.Round)
	}
	if err := e.checkDraw(x, rec); err != nil {
		return err
	}
	if e.decidedVerdict(x.key()) {
		return fmt.Errorf("a decided round already carries a verdict on it")
	}
	if sig && !e.checkSig(x.From, VerdictSignBytes(e.run, x), x.Sig) {
		return fmt.Errorf("bad signature")
	}
	return nil
}

// checkLie checks what a value's overturned verdict must be whatever this
// node's rulings: signed by a member not excluded, a failure or a claim
// about a recent decided round, not already decided. It reports whether
// the verdict is false on its face (against the draw), needing no referee.
func (e *Engine) checkLie(x *VerdictMsg) (plain bool, err error) {
	rec := e.history[x.Round]
	switch {
	case x.shape() != nil:
		return false, x.shape()
	case rec == nil:
		return false, fmt.Errorf("round %d is not in this node's history", x.Round)
	case !e.members.Has(x.From):
		return false, fmt.Errorf("its signer %s is not a member", x.From)
	case e.decidedVerdict(x.key()):
		return false, fmt.Errorf("a decided round already carries it")
	case !e.checkSig(x.From, VerdictSignBytes(e.run, x), x.Sig):
		return false, fmt.Errorf("bad signature")
	}
	if e.checkDraw(x, rec) != nil {
		return true, nil
	}
	if x.Pass {
		return false, fmt.Errorf("a pass true to the draw is no lie")
	}
	return false, nil
}

// StepVerdict processes a challenger's verdict. A pass the beacon drew is
// kept for the next value (the ledger records it). A failure the beacon
// drew is refereed (see Fault): upheld, the next value excludes the
// accused; overturned, it excludes the signer. A signed verdict that the
// draw contradicts (an update not drawn, another challenger, another
// segment, an answer the accused did not sign) is a lie on its face: it is
// forwarded as the proof, and the next value excludes its signer.
func (e *Engine) StepVerdict(x *VerdictMsg) Decision {
	if err := x.shape(); err != nil {
		return invalid("%v", err)
	}
	if !e.checkSig(x.From, VerdictSignBytes(e.run, x), x.Sig) {
		return invalid("bad signature on a verdict from %s", x.From)
	}
	if x.Round >= e.round {
		if x.Round > e.round || len(e.lateVerdicts) >= 4*maxPeers {
			return ignore("verdict on round %d, now %d", x.Round, e.round)
		}
		// Kept on a signature alone: only the round's authors (members)
		// are drawn to check it, each for one update per member at most.
		if !e.members.Has(x.From) {
			return junk("verdict on round %d from %s, not a member", x.Round, x.From)
		}
		n := 0
		for _, y := range e.lateVerdicts {
			if y.From == x.From {
				n++
			}
		}
		if n >= len(e.members.List) {
			return ignore("verdict on round %d: %d of %s's kept already", x.Round, n, x.From)
		}
		// The challenger decided that round before this node: judged
		// once this node decides it too.
		e.lateVerdicts = append(e.lateVerdicts, x)
		return kept("verdict on round %d: not decided here yet (kept)", x.Round)
	}
	d := e.intake(x)
	if d.OK() {
		e.progress()
	}
	return d
}

// intake files a verdict whose signature is checked.
func (e *Engine) intake(x *VerdictMsg) Decision {
	rec := e.history[x.Round]
	if rec == nil {
		return ignore("verdict on round %d: not in this node's history", x.Round)
	}
	k := x.key()
	if prev, ok := e.verdicts[k]; ok {
		if string(VerdictSignBytes(e.run, prev)) == string(VerdictSignBytes(e.run, x)) {
			return ignore("duplicate verdict")
		}
		return reject("conflicting verdict from %s on update %s", x.From, x.Update.Short())
	}
	if l, ok := e.lies[x.From]; ok && l.key() == k {
		return ignore("duplicate verdict")
	}
	if e.decidedVerdict(k) {
		return ignore("verdict already decided")
	}
	if err := e.checkDraw(x, rec); err != nil {
		if !e.members.Has(x.From) {
			return reject("verdict from %s, not a member: %v", x.From, err)
		}
		if e.lies[x.From] != nil {
			// One is the proof that excludes it; more, one signature
			// each, would only be relayed by every member.
			return reject("another false verdict from %s: %v", x.From, err)
		}
		e.lies[x.From] = x
		e.logf("round %d: %s signed a false verdict: %v", e.round, x.From, err)
		return accept()
	}
	if len(e.verdicts) >= 4*maxPeers {
		return ignore("verdicts: full")
	}
	e.verdicts[k] = x
	if !x.Pass {
		u := rec.updates[x.Update]
		switch {
		case u == nil:
			e.rulings[k] = Lapsed // adopted that round, not applied: nothing to judge with
		case x.Fault == FaultProof && e.proofs == nil:
			e.rulings[k] = Lapsed // no key to verify the proof with here
		case x.Fault == FaultProof:
			e.rulings[k] = Upheld // checkDraw verified that its proof fails
		case x.Answer != nil && Contradicts(e.spec, u, x.Segment, x.Answer):
			e.rulings[k] = Upheld
		case x.Fault == FaultAnswer:
			e.rule(x, Overturned)
		default:
			e.rulings[k] = Pending
			e.referee = append(e.referee, RefereeRequest{Verdict: x, Update: u, Beacon: rec.beacon})
		}
		e.logf("round %d: %s says %s failed the challenge of its round-%d update (segment %d, %s): %s; %s", e.round, x.From, x.Accused, x.Round, x.Segment, x.Fault, x.Reason, e.rulings[k])
	}
	return accept()
}

// Rule reports the driver's finding on a RefereeRequest's verdict.
func (e *Engine) Rule(x *VerdictMsg, r Ruling) {
	if e.rulings[x.key()] != Pending || r == Pending {
		return
	}
	e.rule(x, r)
	e.logf("round %d: refereed %s's verdict on %s's round-%d update: %s", e.round, x.From, x.Accused, x.Round, r)
	e.progress()
}

func (e *Engine) rule(x *VerdictMsg, r Ruling) {
	e.rulings[x.key()] = r
	if r == Overturned && e.lies[x.From] == nil && e.members.Has(x.From) {
		e.lies[x.From] = x
	}
}

// Ruled returns this engine's ruling on a verdict, and whether it has one.
func (e *Engine) Ruled(x *VerdictMsg) (Ruling, bool) {
	r, ok := e.rulings[x.key()]
	return r, ok
}

// SubmitVerdict signs and publishes this node's verdict on a challenge it
// was drawn for.
func (e *Engine) SubmitVerdict(x *VerdictMsg) Decision {
	x.From = e.self
	x.Sig = e.sign(VerdictSignBytes(e.run, x))
	d := e.StepVerdict(x)
	if d.Verdict != Reject {
		e.out = append(e.out, Message{Verdict: x})
	}
	return d
}

func (e *Engine) takeLateVerdicts() []*VerdictMsg {
	var now, keep []*VerdictMsg
	for _, x := range e.lateVerdicts {
		switch {
		case x.Round < e.round:
			now = append(now, x)
		case x.Round == e.round:
			keep = append(keep, x)
		}
	}
	e.lateVerdicts = keep
	return now
}

// StepEvidence processes a proof that a member equivocated.
func (e *Engine) StepEvidence(q *Equivocation) Decision {
	if err := q.check(); err != nil {
		return invalid("malformed equivocation proof: %v", err)
	}
	if _, ok := e.equivs[q.A.From]; ok {
		return ignore("equivocation of %s already known", q.A.From)
	}
	if !e.members.Has(q.A.From) {
		return ignore("equivocation proof against %s, not a member", q.A.From)
	}
	if err := e.checkEquivocation(q); err != nil {
		if q.A.Round+keptHistory < e.round || q.A.Round > e.round {
			return ignore("equivocation proof: %v", err)
		}
		return reject("equivocation proof: %v", err)
	}
	e.equivs[q.A.From] = q
	e.logf("round %d: proof that %s equivocated", e.round, q.A.From)
	e.progress()
	return accept()
}
