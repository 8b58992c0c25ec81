package consensus

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// Late updates (package doc, "Late updates").
//
// An update of round r−1 that round r−1 did not aggregate is taken in
// round r, with staleness 1: a value of round r may name it instead of
// its author's round-r update (one update per author per value), and the
// aggregation applies its delta to θ_r with the same weight as any other.
// It is valid in round r when
//
//   - its author is a member of round r that was one in round r−1 (not
//     admitted by round r−1's decision), and round r−1's decision named no
//     update of round r−1 by it (it may have named a late one of round
//     r−2: each round's work counts at most once);
//   - it builds on round r−1's certified state (the Base that decision
//     names) and commits to its author's seed of round r−1;
//   - it carries in its author's residual mark, as every update a value
//     names does: the mark moves only when an update is aggregated, so two
//     aggregated updates of one author never carry in the same mark.
//
// Updates of earlier rounds are stale and dropped. What a late update is
// valid against (round r−1's decision, the marks of round r's state) is
// certified, so every honest node judges it alike; the value names it as
// late (UpdateRef.Late, in the value's ID) and binds it by ID (which binds
// its round), and the state hash covers what it changed.

// lateBar says why member m's update of the round before may not be
// aggregated in this round ("" when it may).
func (e *Engine) lateBar(m *Member) string {
	if e.round == 0 {
		return "round 0 has no round before it"
	}
	rec := e.history[e.round-1]
	if rec == nil {
		return fmt.Sprintf("round %d's decision is not held here", e.round-1)
	}
	if m.Since >= e.round {
		return fmt.Sprintf("%s was not a member in round %d", m.ID, e.round-1)
	}
	for _, r := range rec.commit.Value.Updates {
		if r.From == m.ID && !r.Late {
			return fmt.Sprintf("round %d aggregated %s's update of that round", e.round-1, m.ID)
		}
	}
	return ""
}

// stepLate processes an update of the round before the current one.
func (e *Engine) stepLate(u *Update) Decision {
	e.behind(u.From, u.Round) // its author may lag: the commit helps it
	if e.members.IsExcluded(u.From) {
		return reject("excluded: %s was excluded from the run", u.From)
	}
	m, ok := e.members.Find(u.From)
	if !ok {
		return ignore("stale: update of round %d from %s, not a member of round %d", u.Round, u.From, e.round)
	}
	if e.Done() {
		return ignore("the run is over")
	}
	id := u.ID(e.run)
	if _, ok := e.updates[id]; ok {
		return ignore("duplicate update %s", id.Short())
	}
	if why := e.lateBar(m); why != "" {
		return ignore("stale: late update of round %d from %s: %s", u.Round, u.From, why)
	}
	if base := e.history[u.Round].commit.Value.Base; u.Base != base {
		return reject("wrong base: %s's late update builds on %s, round %d's state is %s", u.From, u.Base.Short(), u.Round, base.Short())
	}
	_, second := e.lateBy[u.From]
	if second && !e.named(id) && e.lateVersions[u.From] >= maxVersions {
		return junk("%s sent more than %d late updates of round %d", u.From, maxVersions, u.Round)
	}
	if d := e.checkCommitments(u, m.Residual); !d.OK() {
		if d.Invalid {
			return d
		}
		// Its author signed it before knowing which of its updates the
		// run would take: stale, not a lie.
		return ignore("stale: %s's late update carries in %s, its mark is %s (its chain moved on)", u.From, u.ResidualIn.Short(), m.Residual.Short())
	}
	dec, err := e.app.CheckUpdate(u)
	if err != nil {
		return invalid("%v", err)
	}
	if e.spec.IsPrivate(string(u.From)) {
		base := e.stateTheta(u.Base)
		if base == nil {
			return ignore("stale: %s's late update builds on %s, a state no longer held here", u.From, u.Base.Short())
		}
		if err := e.checkLink(u, dec, base); err != nil {
			return invalid("%v", err)
		}
	}
	e.updates[id] = &held{u: u, dec: dec}
	e.noteLateArrival(id)
	if second {
		e.lateVersions[u.From]++
		e.progress()
		return kept("second late update from %s of round %d (kept)", u.From, u.Round)
	}
	e.lateBy[u.From] = id
	e.logf("round %d: late update %s of round %d from %s", e.round, id.Short(), u.Round, u.From)
	e.progress()
	return accept()
}

// continuesLate reports whether u, an update of the current round whose
// residual is not its author's mark, carries in what its author's late
// update held this round kept, with its other commitments right: an
// honest author that continued from its late update (CarryIn). Such an
// update can be aggregated only once the late one is, so in the next
// round, as a late update itself.
func (e *Engine) continuesLate(u *Update) bool {
	id, ok := e.lateBy[u.From]
	if !ok {
		return false
	}
	out := e.updates[id].u.ResidualOut
	return u.ResidualIn == out && e.checkCommitments(u, out).OK()
}

// mayContinueLate says why an update of p's that carries in neither its
// mark nor what its late update held here kept may still be honest ("" if
// it may not): p may have a late update this round would take that has not
// reached this node yet (gossip does not keep order), which the update
// continues. It is dropped, not held against p; p re-sends it.
func (e *Engine) mayContinueLate(p PeerID) string {
	m, ok := e.members.Find(p)
	if _, held := e.lateBy[p]; !ok || held || e.lateBar(m) != "" {
		return ""
	}
	return fmt.Sprintf("%s's update may continue a late update of round %d not held here", p, e.round-1)
}

// trainedLate takes this node's update of the round before, finished
// after that round was decided without it: it is published as a late
// update if this round may take it, else dropped.
func (e *Engine) trainedLate(u *Update) error {
	m, ok := e.members.Find(e.self)
	if !ok || e.ownLate != nil || e.Done() || e.lateBar(m) != "" {
		return nil
	}
	u.From = e.self
	u.Sig = e.sign(UpdateSignBytes(e.run, u))
	d := e.StepUpdate(u)
	switch {
	case d.Verdict == Reject:
		return fmt.Errorf("consensus: own late update rejected: %s", d)
	case !d.OK():
		return nil
	}
	e.ownLate, e.ownLateAt = u, e.now
	e.out = append(e.out, Message{Update: u})
	return nil
}

// carryOver returns the updates of the round v decides that v does not
// aggregate, of authors it aggregates no update of that round of: the
// next round's late candidates, in ID order, and when those that came by
// gossip arrived.
func (e *Engine) carryOver(v *Value) ([]*Update, map[Hash]time.Duration) {
	onTime := map[PeerID]bool{}
	for _, r := range v.Updates {
		if !r.Late {
			onTime[r.From] = true
		}
	}
	var out []*Update
	at := map[Hash]time.Duration{}
	for id, h := range e.updates {
		if h.u.Round == v.Round && !onTime[h.u.From] {
			out = append(out, h.u)
			if t, ok := e.arrived[id]; ok {
				at[id] = t
			}
		}
	}
	slices.SortFunc(out, func(a, b *Update) int { ia, ib := a.ID(e.run), b.ID(e.run); return bytes.Compare(ia[:], ib[:]) })
	return out, at
}

// noteLateArrival records when a late update first reached this node by
// gossip, after the start of its own round here (see arrivalOfLate).
func (e *Engine) noteLateArrival(id Hash) {
	if _, ok := e.lateArrived[id]; ok || e.replaying || !e.prevRan || e.named(id) {
		return
	}
	e.lateArrived[id] = e.now - e.prevStart
}

// arrivalOfLate is the At a proposer reports for a late update: when it
// reached the proposer after the start of its own round there, as
// arrivalOf measures an update of the round (so a late update is a pace
// observation, and a member that was late once and is fast again is seen
// to be: its pace comes down, it stops being a straggler and its updates
// are taken on time again), or 0 when unknown (the proposer's own, an
// update of round 0, one fetched, or the round before not run here).
func (e *Engine) arrivalOfLate(id Hash) uint32 {
	at, ok := e.lateArrived[id]
	if h := e.updates[id]; !ok || h == nil || h.u.From == e.self || e.round <= 1 {
		return 0
	}
	return max(paceMillis(min(at, e.spec.Rounds.Timeout.Duration)), 1)
}

// stepCarried steps the carried-over updates again, now as late ones; this
// node's own becomes its late update (re-sent while the round lasts).
func (e *Engine) stepCarried(us []*Update) {
	for _, u := range us {
		if d := e.StepUpdate(u); d.OK() && u.From == e.self && e.ownLate == nil {
			e.ownLate, e.ownLateAt = u, e.now
		}
	}
}

// CarryIn is the residual root this node's update of round must carry
// in: its mark (ResidualMark), except that a known straggler (its agreed
// pace past the deadline: its update will likely miss this round too)
// whose own late update of the round before is held continues from what
// that one kept. Its update of this round is then valid only once the late
// one is aggregated, as a late update of the next round; if the late one
// is not taken, the node falls back to the mark (the encoder's residual
// is reset to it, and the speculative update is dropped as stale).
func (e *Engine) CarryIn(round uint64) Hash {
	mark := e.ResidualMark(e.self)
	if round != e.round || !e.straggler(e.self) {
		return mark
	}
	if id, ok := e.lateBy[e.self]; ok {
		return e.updates[id].u.ResidualOut
	}
	return mark
}

// LateIn returns the authors whose late updates v aggregates, sorted.
func (v *Value) LateIn() []PeerID {
	var out []PeerID
	for _, r := range v.Updates {
		if r.Late {
			out = append(out, r.From)
		}
	}
	slices.Sort(out)
	return out
}
