package consensus

import (
	"fmt"
	"slices"
	"time"
)

// The adaptive round deadline (package doc, "Deadlines").
//
// Each update a value names carries At: when its proposer received it,
// in milliseconds after the proposer entered the round (none in round 0,
// whose start each node took when it was launched). The decided value
// moves each aggregated member's Pace (Member.Pace, part of the agreed
// state) half way to its At, so every honest node holds the same paces
// at the same round, and from them derives the same deadline:
//
//	deadline = clamp(3/2 × the 3/4 quantile of the voters' paces,
//	                 rounds.commit_timeout / 2, rounds.timeout)
//
// The voters' paces, not every member's: the seats are the part of the
// membership that fresh identities cannot crowd (members.voters, filled by
// verified work), and more than two thirds of them are honest, so the
// quantile is an honest voter's pace or lies between two. A wave of
// members that send instant updates (or none) cannot pull the deadline
// below the honest voters' pace and so cut them off. Every expected
// member's update is taken if it comes by the deadline.
//
// An expected member the decision does not aggregate has its pace moved up
// by half (to at most rounds.timeout): its update came after the round
// closed, if at all. A member whose pace is past the deadline is a known
// straggler: its update is taken if it is there, but not waited for. One
// whose pace is unknown is waited for (see straggler).
//
// The view-0 proposer closes the round at the deadline (earlier when every
// expected update but the known stragglers' is in; later only while it
// lacks a quorum), and every voter's view-0 propose timeout is
// min(rounds.timeout, 2 × deadline) plus a commit timeout, so a silent
// proposer costs a few deadlines, not rounds.timeout. Before any pace is
// known (rounds 0 and 1) the rule is the proposer's own: a quorum, then
// half the time the quorum took again (at least a commit timeout).
//
// Private peers (runspec's privacy.wait, on by default in a zk run;
// Policy.Private). A private peer's update comes at the pace of its
// proofs: it trains once at most one drawn step is left to prove
// (node/private.go, maxBacklog), so its pace is about a proof's time,
// seconds, where a public peer's update may take a fraction of one. Left
// to the rule above, one private voter in four would be past the
// deadline, a known straggler: rounds would close without it, its updates
// would come rounds after the state they build on (stale, not even taken
// late), and it would contribute only when it happened to be quick; and
// a forger's proof, judged seconds after its update, would be judged
// after the run had moved on by tens of rounds, or ended. So in a run
// that waits for them, every private member is expected in every round
// (Policy.expects) and the deadline counts each one's pace in full, not
// through the quantile: deadline ≥ 3/2 × its pace (unless clamped to
// rounds.timeout), so it is never a known straggler for its proof pace,
// and the rounds follow the slowest private member. A private member
// that misses a round has its pace moved up by half as any expected
// member (or, with none known, set just past the deadline), so the next
// deadline waits longer for it: its pace cannot settle past the deadline
// as a slow public member's does. A private member's first update after
// it missed the rounds' start-up is so waited for, however quick the
// public rounds were.
//
// Like every rule here this one is agreed: the private peers are named in
// the spec (founders with pinned data roots: no fresh identity becomes
// one, so no wave of them can be raised), and their paces are part of the
// certified state, so every honest node derives the same deadline; no
// node's local timing enters it. What it costs is the point of it: the
// run goes at its slowest private peer's pace, up to rounds.timeout a
// round. A Byzantine private peer can so slow the rounds to at most
// rounds.timeout each, no more than a slow honest one would; one that
// goes silent costs rising deadlines (its pace × 3/2 per missed round, up
// to rounds.timeout) until it is dropped after members.absent rounds
// without an aggregated update. A run that prefers speed to its private
// peers' contributions says privacy.wait = false.
//
// A Byzantine proposer's reach is bounded: a voter prevotes nil on a
// fresh view-0 proposal whose At for an update it got by gossip strays
// from its own arrival time by more than two commit timeouts, once the
// skew between the two nodes' round starts is taken out (checkPace); At
// is clamped to
// rounds.timeout; and an observation counts for at most twice and at least
// half the pace it updates, half way (nextPace). The deadline stays in
// [commit_timeout/2, rounds.timeout] whatever is said.
const (
	paceQuantileNum, paceQuantileDen = 3, 4 // the quantile of the paces
	paceMarginNum, paceMarginDen     = 3, 2 // the margin on it
	paceWeight                       = 2    // a pace moves 1/paceWeight of the way to each observation
)

// paceLie, set only by a test (export_test.go), makes chosen engines
// report other arrival times as proposers: a Byzantine proposer's lies.
var paceLie func(self PeerID, r UpdateRef) (uint32, bool)

// paceMillis is a duration in whole milliseconds, clamped to what a pace
// or an arrival time holds.
func paceMillis(d time.Duration) uint32 {
	return uint32(min(max(d.Milliseconds(), 0), 1<<31))
}

// nextPace is a member's pace after an observation at (ms; 0: none):
// the first observation sets it; a later one, taken at no less than half
// and no more than twice the pace, moves it half way. A lie so moves a
// pace by a half at most (up) or a quarter (down), however large, and the
// next honest observation takes half of that back: with one proposer in
// three lying the same way every turn, a pace settles between about 0.92
// and 1.2 of what the honest proposers see. (A smaller step would follow
// a slower cluster more slowly, and leave each lie longer in the pace.)
func nextPace(pace, at uint32) uint32 {
	if at == 0 {
		return pace
	}
	if pace == 0 {
		return at
	}
	at = min(max(at, pace/2), 2*min(pace, 1<<30))
	p := int64(pace) + (int64(at)-int64(pace))/paceWeight
	return uint32(max(p, 1))
}

// Deadline is the collection deadline of the round whose members are ms
// under policy p (see Engine.Deadline): clamp(margin × max(the quantile
// of the voters' known paces, the slowest known pace of p's private
// members), half a commit timeout, rounds.timeout). ok is false when none
// of them has a pace yet. The floor keeps ordinary message delays (a
// commit timeout bounds them) from cutting members off when training is
// quick; the margin does the same for a spread of training times.
func (ms *Members) Deadline(p Policy) (d time.Duration, ok bool) {
	timeout := time.Duration(p.Timeout) * time.Millisecond
	commitTimeout := time.Duration(p.Commit) * time.Millisecond
	var paces []uint32
	for _, id := range ms.Voters() {
		if m, found := ms.Find(id); found && m.Pace > 0 {
			paces = append(paces, m.Pace)
		}
	}
	var q uint32
	if len(paces) > 0 {
		slices.Sort(paces)
		k := (len(paces)*paceQuantileNum + paceQuantileDen - 1) / paceQuantileDen // nearest rank
		q = paces[max(k, 1)-1]
	}
	for _, id := range p.Private {
		if m, found := ms.Find(id); found {
			q = max(q, m.Pace) // private members' paces count in full
		}
	}
	if q == 0 {
		return timeout, false
	}
	d = time.Duration(q) * time.Millisecond * paceMarginNum / paceMarginDen
	return min(max(d, commitTimeout/2), timeout), true
}

// Deadline returns the current round's agreed collection deadline, after
// the round's start, and whether it follows known paces (false: the round
// has none yet and uses rounds.timeout, with the proposer's quorum grace).
func (e *Engine) Deadline() (time.Duration, bool) { return e.deadline, e.paced }

// noteArrival records when an update first reached this node by gossip,
// after it entered the round: not one a value named before it came (it
// was fetched for that value), nor one kept from before the round began.
func (e *Engine) noteArrival(id Hash) {
	if e.replaying || e.named(id) {
		return
	}
	e.arrived[id] = e.now - e.startAt
}

// arrivalOf is the At a proposer reports for an update it holds: when it
// came by gossip (at least 1 ms, at most rounds.timeout), or 0 (no
// observation) when it came some other way or is the proposer's own (its
// own update reaches it at once, whatever its links: counting that would
// make a member behind a slow link look fast in the rounds it proposes),
// and in round 0 (each node starts it when it is launched, so arrival
// times then say when the others were started, not how fast they are).
func (e *Engine) arrivalOf(id Hash) uint32 {
	at, ok := e.arrived[id]
	if h := e.updates[id]; !ok || h == nil || h.u.From == e.self || e.round == 0 {
		return 0
	}
	return max(paceMillis(min(at, e.spec.Rounds.Timeout.Duration)), 1)
}

// checkPace is a voter's own check of the arrival times a fresh proposal
// of view reports (nil: plausible): none past rounds.timeout, and in view
// 0, each consistent with this node's own. It holds them against what this node
// saw, so it is a local judgement, like a referee's ruling: it decides a
// prevote, never whether a certified value applies.
//
// Nodes enter a round at different times, so an arrival time here and at
// the proposer differ by that skew; the check estimates it as the median
// difference over the updates this node got by gossip, and asks each
// report to be within two commit timeouts of its own time plus the skew
// (one for delays, one for a copy that came only when re-sent), and no
// later than that after the proposal reached this node. A proposer so
// cannot move one member's pace against the others', nor claim to have
// waited longer than it did; what it can do to every report at once
// (shift them all), Members.Next bounds.
func (e *Engine) checkPace(v *Value, view uint32) *check {
	limit := e.spec.Rounds.Timeout.Duration
	for _, r := range v.Updates {
		if at := time.Duration(r.At) * time.Millisecond; at > limit {
			return bad("update %s of %s: arrival %v reported, past rounds.timeout %v", r.ID.Short(), r.From, at, limit)
		}
	}
	if view > 0 {
		// Past view 0 the round went wrong somewhere, and what each node
		// saw of it may differ for good: a check against it could refuse
		// every honest proposal from here on. Members.Next bounds a lie.
		return nil
	}
	own := func(id Hash) (time.Duration, bool) {
		t, ok := e.arrived[id]
		return min(t, limit), ok
	}
	var diffs []time.Duration
	for _, r := range v.Updates {
		if t, ok := own(r.ID); ok && r.At > 0 && !r.Late {
			diffs = append(diffs, time.Duration(r.At)*time.Millisecond-t)
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	slices.Sort(diffs)
	skew := diffs[len(diffs)/2]
	slack := 2 * e.spec.Rounds.CommitTimeout.Duration
	got, seen := e.ag.proposalAt[view]
	for _, r := range v.Updates {
		if r.At == 0 || r.Late {
			// A late update's arrival time is counted from the round
			// before, whose start skews otherwise: unchecked, bounded
			// like any report by Members.Next.
			continue
		}
		at := time.Duration(r.At)*time.Millisecond - skew // in this node's time of the round
		if seen && at > got+slack {
			return bad("update %s of %s: arrival %v reported (%v here, by the skew %v), the proposal reached this node at %v", r.ID.Short(), r.From, at+skew, at, skew, got)
		}
		if t, ok := own(r.ID); ok && (at > t+slack || at+slack < t) {
			return bad("update %s of %s: arrival %v reported (%v here, by the skew %v), %v here", r.ID.Short(), r.From, at+skew, at, skew, t)
		}
	}
	return nil
}

// Awaited returns the members the current round expects (voters, and
// those aggregated the round before) whose update this node does not hold
// yet: whom a proposer would still wait for until the deadline.
func (e *Engine) Awaited() []PeerID {
	var out []PeerID
	for _, p := range e.expected() {
		if _, ok := e.byAuthor[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

// straggler reports whether member p is a known straggler this round: its
// agreed pace is past the agreed deadline, so a proposer that holds every
// other expected update does not wait for its update until the deadline
// (it is taken if it is there). A member whose pace is unknown (no update
// of it was aggregated with an arrival time: its updates so far came in
// round 0 or in rounds it proposed itself, whose own update has none) is
// waited for: were it not, an honest voter that proposed round 1 would
// never be waited for, its pace would never be learned, and it would be
// dropped as absent after a few rounds of updates that came a little
// after the others'. A silent one costs each round the deadline until it
// is dropped.
func (e *Engine) straggler(p PeerID) bool {
	m, ok := e.members.Find(p)
	return ok && e.paced && m.Pace > 0 && time.Duration(m.Pace)*time.Millisecond > e.deadline
}

// late returns the members expected in the round that v does not
// aggregate an update of the round of: the stragglers the round did not
// wait for (those whose late update of the round before it takes
// included).
func (e *Engine) late(v *Value) []PeerID {
	in := map[PeerID]bool{}
	for _, r := range v.Updates {
		if !r.Late {
			in[r.From] = true
		}
	}
	var out []PeerID
	for _, p := range e.expected() {
		if !in[p] {
			out = append(out, p)
		}
	}
	return out
}

func fmtDeadline(d time.Duration, paced bool) string {
	if !paced {
		return fmt.Sprintf("%v (no paces yet: a quorum and its grace)", d)
	}
	return d.String()
}
