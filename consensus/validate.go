package consensus

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
)

// check is a value's validity here: valid, invalid with a reason, or
// pending (updates it names are still being fetched). A valid value keeps
// what applying it gives, computed once.
type check struct {
	ok, pending bool
	reason      string
	theta, mom  []float32
	next        Members
}

func bad(format string, a ...any) *check { return &check{reason: fmt.Sprintf(format, a...)} }

// check returns the validity of v in the current round, computing it once
// (valid(v) in Algorithm 1). Every honest member computes the same answer
// from the same certified state and the same updates, because everything a
// value relies on is in it or bound by the IDs it names.
func (e *Engine) check(v *Value) *check {
	c := e.checkValue(v)
	if !c.ok || c.pending {
		return c
	}
	if r := e.checkRulings(v); r != nil {
		return r
	}
	return c
}

// checkValue is check without this node's rulings: what a decided value
// must pass to be applied here (its quorum refereed its verdicts).
func (e *Engine) checkValue(v *Value) *check {
	a := e.ag
	id := v.ID(e.run)
	if c, ok := a.checks[id]; ok && !c.pending {
		return c
	}
	c := e.validate(v)
	a.checks[id] = c
	return c
}

// checkRulings returns nil when this node's referee upholds every failed
// verdict the value acts on and overturns every verdict it calls false
// (beyond those false on their face); else why not, or pending while the
// referee works. A verdict first seen in the value is taken in and
// refereed now.
func (e *Engine) checkRulings(v *Value) *check {
	pending := 0
	need := func(x *VerdictMsg, want Ruling) *check {
		r, ok := e.rulings[x.key()]
		if !ok {
			e.intake(x)
			r, ok = e.rulings[x.key()]
		}
		switch {
		case !ok:
			return bad("verdict by %s on %s: not refereed here", x.From, x.Accused)
		case r == Pending:
			pending++
		case r != want:
			return bad("verdict by %s on %s: %s here, the value says %s", x.From, x.Accused, r, want)
		}
		return nil
	}
	for i := range v.Verdicts {
		x := &v.Verdicts[i]
		if e.unverifiedPass(x) {
			return bad("pass by %s on %s's update %s: this node cannot verify its proof (it does not hold the update)", x.From, x.Accused, x.Update.Short())
		}
		if !x.Pass {
			if c := need(x, Upheld); c != nil {
				return c
			}
		}
	}
	for i := range v.Overturned {
		x := &v.Overturned[i]
		if plain, _ := e.checkLie(x); !plain {
			if c := need(x, Overturned); c != nil {
				return c
			}
		}
	}
	if pending > 0 {
		return &check{pending: true, reason: fmt.Sprintf("%d verdicts being refereed", pending)}
	}
	return nil
}

func (e *Engine) validate(v *Value) *check {
	if err := v.checkShape(); err != nil {
		return bad("%v", err)
	}
	switch {
	case v.Round != e.round:
		return bad("value of round %d, this is round %d", v.Round, e.round)
	case v.Base != e.hash:
		return bad("base %s, round %d's state is %s", v.Base.Short(), e.round, e.hash.Short())
	case v.Voters != e.votersHash:
		return bad("the value names another voter set")
	}
	// The updates: held (or fetched), each a member's, one per member,
	// each carrying in its author's mark; late ones of the round before
	// from members that round did not aggregate (late.go), not counted
	// towards the quorums.
	var missing []Hash
	authors := map[PeerID]bool{}
	voters, onTime := 0, 0
	dec := make([]any, 0, len(v.Updates))
	passes := v.passes()
	type gatedRef struct {
		r   UpdateRef
		why string
	}
	var gated []gatedRef
	for _, r := range v.Updates {
		m, ok := e.members.Find(r.From)
		if !ok {
			return bad("update %s by %s, not a member", r.ID.Short(), r.From)
		}
		if authors[r.From] {
			return bad("two updates by %s", r.From)
		}
		authors[r.From] = true
		why := e.members.Gated(m, e.round, e.policy, func(h Hash) bool { return passes[h] })
		if why != "" {
			if r.Late {
				return bad("update %s: %s", r.ID.Short(), why)
			}
			gated = append(gated, gatedRef{r, why})
		}
		if r.Newcomer != m.Newcomer(e.round, e.policy.Probation) {
			return bad("update %s: %s's probation is misstated", r.ID.Short(), r.From)
		}
		round := e.round
		if r.Late {
			if why := e.lateBar(m); why != "" {
				return bad("late update %s: %s", r.ID.Short(), why)
			}
			round--
		} else if why == "" {
			onTime++
			if e.voterSet[r.From] {
				voters++
			}
		}
		h, ok := e.updates[r.ID]
		if !ok {
			missing = append(missing, r.ID)
			continue
		}
		switch {
		case h.u.From != r.From:
			return bad("update %s is %s's, the value says %s's", r.ID.Short(), h.u.From, r.From)
		case h.u.Round != round:
			return bad("update %s is of round %d, the value names it as one of round %d", r.ID.Short(), h.u.Round, round)
		case h.u.ResidualIn != m.Residual:
			return bad("update %s carries in %s, %s's mark is %s", r.ID.Short(), h.u.ResidualIn.Short(), r.From, m.Residual.Short())
		}
		dec = append(dec, h.dec)
	}
	// Gated updates count only where the round's quorums fall short
	// without them (gateWaived).
	waived := e.gateWaived(voters, onTime)
	for _, g := range gated {
		if !waived(g.r.From) {
			return bad("update %s: %s", g.r.ID.Short(), g.why)
		}
		onTime++
		if e.voterSet[g.r.From] {
			voters++
		}
	}
	if q := quorumOf(len(e.voters)); voters < q {
		return bad("updates of %d voters, a quorum is %d", voters, q)
	}
	if onTime < e.spec.Rounds.Quorum {
		return bad("%d updates, rounds.quorum is %d", onTime, e.spec.Rounds.Quorum)
	}
	if len(v.Admit) > e.policy.Admit || len(e.members.List)+len(v.Admit) > e.policy.Max {
		return bad("%d admissions (at most %d per round, %d members)", len(v.Admit), e.policy.Admit, e.policy.Max)
	}
	for i := range v.Admit {
		if err := e.checkJoin(&v.Admit[i]); err != nil {
			return bad("admission of %s: %v", v.Admit[i].From, err)
		}
	}
	for i := range v.Verdicts {
		if err := e.checkVerdict(&v.Verdicts[i], true); err != nil {
			return bad("verdict on %s: %v", v.Verdicts[i].Accused, err)
		}
	}
	liars := map[PeerID]bool{}
	for i := range v.Overturned {
		x := &v.Overturned[i]
		if liars[x.From] {
			return bad("two false verdicts by %s", x.From)
		}
		liars[x.From] = true
		if _, err := e.checkLie(x); err != nil {
			return bad("false verdict by %s: %v", x.From, err)
		}
	}
	for i := range v.Evidence {
		if err := e.checkEquivocation(&v.Evidence[i]); err != nil {
			return bad("equivocation proof against %s: %v", v.Evidence[i].A.From, err)
		}
	}
	if len(missing) > 0 {
		e.fetchMissing(v, missing)
		return &check{pending: true, reason: fmt.Sprintf("%d updates missing", len(missing))}
	}
	theta, mom, err := e.app.Step(e.theta, e.mom, dec)
	if err != nil {
		return bad("aggregation: %v", err)
	}
	next := e.members.Next(e.round, v, e.policy, e.residuals(v))
	if got := StateHash(e.round+1, ParamsDigest(theta, mom), next.Digest()); got != v.Next {
		return bad("the updates lead to %s, the value says %s", got.Short(), v.Next.Short())
	}
	if VotersDigest(next.Voters()) != v.NextVoters {
		return bad("the value misstates the next voters")
	}
	if len(next.Voters()) == 0 {
		return bad("the value leaves no voters")
	}
	return &check{ok: true, theta: theta, mom: mom, next: next}
}

// gateWaived returns which gated on-time updates (Members.Gated) a value
// may aggregate, given the on-time updates it aggregates besides them
// (onTime of them, voters of which are voters'): a voter's when those fall
// short of the voters' quorum, anyone's when they fall short of
// rounds.quorum, none otherwise (a late one never: it counts towards no
// quorum).
// A private voter whose drawn challenger fell silent (crashed, or the
// run's one Byzantine voter) would otherwise hold the round without a
// quorum for good: the gate lifts by round number, and no round would be
// decided. The price: a forger that proposes may leave honest voters'
// updates out to make its own needed, one forged update in the rounds it
// proposes, each judged when its proof comes.
func (e *Engine) gateWaived(voters, onTime int) func(PeerID) bool {
	short, few := voters < quorumOf(len(e.voters)), onTime < e.spec.Rounds.Quorum
	return func(p PeerID) bool { return few || short && e.voterSet[p] }
}

// fetchMissing asks for the updates a value names that this node lacks,
// from its proposer (or the certificate's signers) and the voters.
func (e *Engine) fetchMissing(v *Value, missing []Hash) {
	id := v.ID(e.run)
	if t, ok := e.ag.asked[id]; e.fetch != nil || ok && e.now < t+e.spec.Rounds.CommitTimeout.Duration {
		return
	}
	e.ag.asked[id] = e.now
	var from []PeerID
	if p := e.ag.proposerOf(id); p != "" {
		from = append(from, p)
	}
	if c := e.ag.decided; c != nil {
		from = append(from, certSigners(&c.Cert)...)
	}
	for _, p := range e.voters {
		if p != e.self && !slices.Contains(from, p) {
			from = append(from, p)
		}
	}
	sortHashes(missing)
	e.fetch = &FetchRequest{Round: e.round, IDs: missing, From: from}
}

func (a *agreement) proposerOf(id Hash) PeerID {
	for _, p := range a.proposals {
		if p.Vote.Value == id {
			return p.Vote.From
		}
	}
	return ""
}

// checkJoin checks a join request for admission this round.
func (e *Engine) checkJoin(j *JoinRequest) error {
	switch {
	case e.members.IsExcluded(j.From):
		return fmt.Errorf("excluded from the run")
	case e.members.Has(j.From):
		return fmt.Errorf("already a member")
	case j.Round+joinWindow < e.round || j.Round > e.round+1:
		return fmt.Errorf("request of round %d is stale", j.Round)
	case !e.checkSig(j.From, JoinSignBytes(e.run, j), j.Sig):
		return fmt.Errorf("bad signature")
	}
	return nil
}

// checkEquivocation checks a proof of equivocation against a member.
func (e *Engine) checkEquivocation(q *Equivocation) error {
	if err := q.check(); err != nil {
		return err
	}
	switch {
	case !e.members.Has(q.A.From):
		return fmt.Errorf("not a member")
	case q.A.Round+keptHistory < e.round || q.A.Round > e.round:
		return fmt.Errorf("votes of round %d, now %d", q.A.Round, e.round)
	case !e.checkSig(q.A.From, VoteSignBytes(e.run, &q.A), q.A.Sig) || !e.checkSig(q.B.From, VoteSignBytes(e.run, &q.B), q.B.Sig):
		return fmt.Errorf("bad signature")
	}
	return nil
}

// buildValue makes the proposer's value: every update held, the joiners
// next in this round's order, and the verdicts and proofs pending.
func (e *Engine) buildValue() (*Value, *check) {
	v := &Value{Round: e.round, Base: e.hash, Voters: e.votersHash}
	for k, x := range e.verdicts {
		if e.checkVerdict(x, true) == nil && len(v.Verdicts) < 4*maxPeers && (x.Pass && !e.unverifiedPass(x) || e.rulings[k] == Upheld) {
			v.Verdicts = append(v.Verdicts, *x)
		}
	}
	slices.SortFunc(v.Verdicts, func(a, b VerdictMsg) int { return verdictCmp(&a, &b) })
	// The updates, but a private member's while the pass on its last one
	// is still to come (Members.Gated): the verdicts above are what this
	// value carries.
	passes := v.passes()
	passed := func(h Hash) bool { return passes[h] }
	onTime := func(p PeerID, m *Member) UpdateRef {
		id := e.byAuthor[p]
		return UpdateRef{ID: id, From: p, Newcomer: m.Newcomer(e.round, e.policy.Probation), At: e.arrivalOf(id)}
	}
	var gated []*Member
	voters := 0
	for p := range e.byAuthor {
		m, _ := e.members.Find(p)
		if e.members.Gated(m, e.round, e.policy, passed) != "" {
			gated = append(gated, m)
			continue
		}
		if e.voterSet[p] {
			voters++
		}
		v.Updates = append(v.Updates, onTime(p, m))
	}
	// The gated ones the round's quorums need (gateWaived).
	waived := e.gateWaived(voters, len(v.Updates))
	for _, m := range gated {
		if waived(m.ID) {
			v.Updates = append(v.Updates, onTime(m.ID, m))
		}
	}
	// Late updates of the members without one of this round (late.go).
	for p, id := range e.lateBy {
		if _, ok := e.byAuthor[p]; ok {
			continue
		}
		if m, ok := e.members.Find(p); ok && e.lateBar(m) == "" && e.members.Gated(m, e.round, e.policy, passed) == "" {
			v.Updates = append(v.Updates, UpdateRef{ID: id, From: p, Newcomer: m.Newcomer(e.round, e.policy.Probation), At: e.arrivalOfLate(id), Late: true})
		}
	}
	if paceLie != nil {
		for i := range v.Updates {
			if v.Updates[i].Late {
				continue
			}
			if at, ok := paceLie(e.self, v.Updates[i]); ok {
				v.Updates[i].At = at
			}
		}
	}
	slices.SortFunc(v.Updates, func(a, b UpdateRef) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	// Joiners in an order that no one knows before the round's state is:
	// a flood of requests cannot buy the first places.
	var joins []*JoinRequest
	for _, j := range e.joins {
		if e.checkJoin(j) == nil {
			joins = append(joins, j)
		}
	}
	rank := func(j *JoinRequest) [32]byte { return sha256.Sum256(append(e.hash[:], j.From...)) }
	slices.SortFunc(joins, func(a, b *JoinRequest) int { ra, rb := rank(a), rank(b); return bytes.Compare(ra[:], rb[:]) })
	room := min(e.policy.Admit, e.policy.Max-len(e.members.List))
	for _, j := range joins[:max(0, min(room, len(joins)))] {
		v.Admit = append(v.Admit, *j)
	}
	slices.SortFunc(v.Admit, func(a, b JoinRequest) int { return cmpPeer(a.From, b.From) })
	for _, x := range e.lies {
		if _, err := e.checkLie(x); err == nil {
			v.Overturned = append(v.Overturned, *x)
		}
	}
	slices.SortFunc(v.Overturned, func(a, b VerdictMsg) int { return verdictCmp(&a, &b) })
	for _, q := range e.equivs {
		if e.checkEquivocation(q) == nil {
			v.Evidence = append(v.Evidence, *q)
		}
	}
	slices.SortFunc(v.Evidence, func(a, b Equivocation) int { return cmpPeer(a.A.From, b.A.From) })
	dec := make([]any, len(v.Updates))
	for i, r := range v.Updates {
		dec[i] = e.updates[r.ID].dec
	}
	theta, mom, err := e.app.Step(e.theta, e.mom, dec)
	if err != nil {
		e.logf("round %d: aggregation: %v", e.round, err)
		return nil, nil
	}
	next := e.members.Next(e.round, v, e.policy, e.residuals(v))
	nv := next.Voters()
	if len(nv) == 0 {
		return nil, nil
	}
	v.Next = StateHash(e.round+1, ParamsDigest(theta, mom), next.Digest())
	v.NextVoters = VotersDigest(nv)
	return v, &check{ok: true, theta: theta, mom: mom, next: next}
}

func cmpPeer(a, b PeerID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// residuals is what each update a value aggregates kept of its author's
// residual (its ResidualOut), from the updates this node holds.
func (e *Engine) residuals(v *Value) map[PeerID]Hash {
	out := make(map[PeerID]Hash, len(v.Updates))
	for _, r := range v.Updates {
		if h, ok := e.updates[r.ID]; ok {
			out[r.From] = h.u.ResidualOut
		}
	}
	return out
}
