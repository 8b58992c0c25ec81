package consensus

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Link is one certified decision of a chain: its commit and, when the
// decision changes the voter set, the next round's voters (whose digest
// the value names).
type Link struct {
	Commit     Commit
	NextVoters []PeerID
}

// Proof is a chain of certified decisions: every decision that changed the
// voter set since the round asked for, and the last few decisions. A node
// checks it from a state it trusts (genesis, its own checkpoint, its
// current round): each link's certificate must carry a quorum of the voter
// set that the links before it establish. Rounds between links are
// skipped safely: an honest voter signs a value only when the value names
// its round's true voter set, so a link certified by the set the chain
// establishes proves that set was still the voters'.
type Proof struct {
	Links []Link
}

// verifiedLink is a link whose certificate checked, with its voters.
type verifiedLink struct {
	Link
	voters []PeerID
}

// verifyCert checks that c carries valid precommit signatures, sorted and
// distinct, of more than two thirds of voters.
func (e *Engine) verifyCert(c *Certificate, voters []PeerID) error {
	return verifyVotes(e.run, c, KindPrecommit, voters, e.checkSig)
}

// verifyVotes checks that c carries valid signatures of votes of kind,
// sorted and distinct, of more than two thirds of voters.
func (e *Engine) verifyVotes(c *Certificate, kind VoteKind, voters []PeerID) error {
	return verifyVotes(e.run, c, kind, voters, e.checkSig)
}

// VerifyCertificate checks a quorum certificate as every node does, for an
// auditor: the signatures are sorted and distinct, each is a valid
// precommit of one of voters for the certificate's value, and they are
// more than two thirds of voters.
func VerifyCertificate(run RunID, c *Certificate, voters []PeerID, verify func(p PeerID, msg, sig []byte) bool) error {
	return verifyVotes(run, c, KindPrecommit, voters, verify)
}

func verifyVotes(run RunID, c *Certificate, kind VoteKind, voters []PeerID, verify func(PeerID, []byte, []byte) bool) error {
	set := map[PeerID]bool{}
	for _, p := range voters {
		set[p] = true
	}
	if c.Value.IsZero() {
		return fmt.Errorf("%ss for nothing", kind)
	}
	for i, s := range c.Sigs {
		if i > 0 && c.Sigs[i-1].From >= s.From {
			return fmt.Errorf("%s signatures not sorted and distinct", kind)
		}
		if !set[s.From] {
			return fmt.Errorf("%s signed by %s, not a voter of round %d", kind, s.From, c.Round)
		}
		if !verify(s.From, VoteSignBytes(run, c.vote(kind, s)), s.Sig) {
			return fmt.Errorf("bad signature of %s on a %s", s.From, kind)
		}
	}
	if q := quorumOf(len(voters)); len(c.Sigs) < q {
		return fmt.Errorf("%d %ss, a quorum of round %d's %d voters is %d", len(c.Sigs), kind, c.Round, len(voters), q)
	}
	return nil
}

// CheckEquivocation checks a proof of equivocation for an auditor: two
// votes of one signer in one slot, both validly signed, for different
// values.
func CheckEquivocation(run RunID, q *Equivocation, verify func(p PeerID, msg, sig []byte) bool) error {
	if err := q.check(); err != nil {
		return err
	}
	if !verify(q.A.From, VoteSignBytes(run, &q.A), q.A.Sig) || !verify(q.B.From, VoteSignBytes(run, &q.B), q.B.Sig) {
		return fmt.Errorf("bad signature")
	}
	return nil
}

// checkCommit checks a commit's shape: the certificate is for its value.
func (e *Engine) checkCommit(c *Commit) error {
	if c.Value == nil {
		return fmt.Errorf("commit without a value")
	}
	if c.Cert.Round != c.Value.Round || c.Value.ID(e.run) != c.Cert.Value {
		return fmt.Errorf("the certificate is not for the value")
	}
	return c.Value.checkShape()
}

// StepCommit processes a decided round gossiped by a peer: for the current
// round it is the decision, once its certificate checks against this
// round's voters; for a later one it only makes this node ask for a proof.
func (e *Engine) StepCommit(c *Commit) Decision {
	if err := e.checkCommit(c); err != nil {
		return invalid("malformed commit: %v", err)
	}
	r := c.Value.Round
	switch {
	case r < e.round:
		return ignore("stale commit: round %d, now %d", r, e.round)
	case r > e.round:
		e.aheadAt = max(e.aheadAt, r)
		e.askProof(append(certSigners(&c.Cert), e.voters...))
		return ignore("commit of round %d, now %d: asking for a proof", r, e.round)
	case e.ag.decided != nil || e.Done():
		return ignore("round %d is decided here", r)
	}
	if c.Value.Voters != e.votersHash {
		return reject("commit of round %d names another voter set", r)
	}
	if err := e.verifyCert(&c.Cert, e.voters); err != nil {
		return reject("commit of round %d: %v", r, err)
	}
	e.ag.values[c.Cert.Value] = c.Value
	e.decide(c.Value, c.Cert)
	return accept()
}

// askProof asks for certified decisions from the current round on, at
// most once per commit timeout.
func (e *Engine) askProof(from []PeerID) {
	if e.proofAt > 0 && e.now < e.proofAt+e.spec.Rounds.CommitTimeout.Duration {
		return
	}
	var peers []PeerID
	for _, p := range from {
		if p != e.self && !slices.Contains(peers, p) {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return
	}
	e.proofAt = e.now
	e.fetchProof = &ProofRequest{Round: e.round, From: peers}
}

// StartCatchUp asks the given peers for certified decisions from the
// current round on: what a node that starts (a joiner, a restart) does.
func (e *Engine) StartCatchUp(from []PeerID) { e.proofAt = 0; e.askProof(from) }

// StepProof processes a chain of certified decisions fetched from a peer.
// It checks every link from the current round's voters on; the first link
// that does not check ends the chain. If the chain holds only the current
// round, its decision is applied as if its precommits had arrived;
// otherwise the engine asks for the state the last link vouches for.
func (e *Engine) StepProof(p *Proof) error {
	links, err := e.verifyLinks(e.round, e.voters, p.Links)
	if len(links) == 0 {
		return err
	}
	last := links[len(links)-1]
	if len(links) == 1 && last.Commit.Value.Round == e.round {
		if e.ag.decided == nil && !e.Done() {
			e.ag.values[last.Commit.Cert.Value] = last.Commit.Value
			e.decide(last.Commit.Value, last.Commit.Cert)
		}
		return err
	}
	if e.want != nil && e.want.Round >= last.Commit.Value.Round+1 {
		return err
	}
	e.links = nil
	for _, l := range links {
		e.links = append(e.links, l.Link)
	}
	e.logf("round %d: certified decisions up to round %d: fetching the state of round %d", e.round, last.Commit.Value.Round, last.Commit.Value.Round+1)
	e.wantState(last.Commit.Value.Round+1, last.Commit.Value.Next, certSigners(&last.Commit.Cert))
	return err
}

// verifyLinks checks links (ascending rounds) from round's voters and
// returns those that check, up to the first that does not, with its error.
func (e *Engine) verifyLinks(round uint64, voters []PeerID, links []Link) ([]verifiedLink, error) {
	var out []verifiedLink
	for i := range links {
		l := &links[i]
		if err := e.checkCommit(&l.Commit); err != nil {
			return out, fmt.Errorf("link %d: %v", i, err)
		}
		v := l.Commit.Value
		if v.Round < round {
			continue
		}
		if len(out) > 0 && v.Round <= out[len(out)-1].Commit.Value.Round {
			return out, fmt.Errorf("link %d: rounds not ascending", i)
		}
		if v.Voters != VotersDigest(voters) {
			return out, fmt.Errorf("link %d (round %d): the value names another voter set than the chain establishes", i, v.Round)
		}
		if err := e.verifyCert(&l.Commit.Cert, voters); err != nil {
			return out, fmt.Errorf("link %d: %v", i, err)
		}
		out = append(out, verifiedLink{Link: *l, voters: voters})
		if v.NextVoters != v.Voters {
			if VotersDigest(l.NextVoters) != v.NextVoters || !slices.IsSorted(l.NextVoters) || len(l.NextVoters) == 0 {
				return out, fmt.Errorf("link %d (round %d): the next voters do not match the value", i, v.Round)
			}
			voters = l.NextVoters
		}
	}
	return out, nil
}

// wantState asks for the state of round with hash h (certified).
func (e *Engine) wantState(round uint64, h Hash, from []PeerID) {
	e.want = &StateRequest{Round: round, Hash: h, From: slices.DeleteFunc(slices.Clone(from), func(p PeerID) bool { return p == e.self })}
	e.wantAt = e.now
	r := *e.want
	e.fetchState = &r
}

// catchUpTick retries fetches and notices a stall.
func (e *Engine) catchUpTick() {
	ct := e.spec.Rounds.CommitTimeout.Duration
	switch {
	case e.want != nil:
		if e.now >= e.wantAt+4*ct {
			// The holders may have moved on and dropped that state: ask
			// for newer decisions instead.
			e.want = nil
			e.askProof(e.voters)
		} else if e.now >= e.wantAt+ct && e.fetchState == nil {
			r := *e.want
			e.fetchState = &r
		}
	case e.pending != nil:
		c := e.pending
		if e.now >= e.pendingAt+2*ct {
			e.logf("round %d: the decided updates did not arrive: fetching the state", e.round)
			e.links = []Link{{Commit: *c}}
			e.wantState(c.Value.Round+1, c.Value.Next, certSigners(&c.Cert))
		} else if e.fetch == nil {
			e.pending = nil // ask again on the next try
			e.tryApply()
		}
	}
	if h := e.heard; h != nil {
		switch {
		case e.Done() || h.round < e.round:
			e.heard = nil // decided here meanwhile
		case e.now >= h.at+ct:
			e.heard = nil
			// The voters first: the head's keeper is a member, but its
			// word is unchecked, and a keeper that lies and then serves
			// slowly would delay the question.
			e.askProof(append(slices.Clone(e.voters), h.from))
		}
	}
	if stall := e.spec.Rounds.Timeout.Duration + 4*ct; !e.Done() && e.now >= e.progressAt+stall {
		e.askProof(e.voters)
	}
}

// heardDecided is a member's word that it decided a round this node has
// not: who said so, the round, and when it was heard.
type heardDecided struct {
	from  PeerID
	round uint64
	at    time.Duration
}

// HeardDecided notes that member p says (in its signed ledger head) that
// it has decided round r. If this node has not decided r a commit timeout
// later, it lags, or p lies: it asks p and the voters for certified
// decisions (the voters first), and adopts only what their certificates
// prove. This is how a
// member that missed the last commits of a run learns of them while the
// peers that finished still serve it, not a stall timeout later, when
// they may have gone. A non-member's word is ignored, and the question is
// rate-limited as every proof request is (askProof).
func (e *Engine) HeardDecided(p PeerID, r uint64) {
	if e.Done() || r < e.round || p == e.self || !e.members.Has(p) {
		return
	}
	if e.heard == nil {
		e.heard = &heardDecided{from: p, round: r, at: e.now}
	}
}

// Restore adopts a state fetched in answer to a StateRequest: it must hash
// to the state a checked certificate vouches for.
func (e *Engine) Restore(st State) error {
	w := e.want
	if w == nil {
		return fmt.Errorf("consensus: no state was requested")
	}
	if st.Round != w.Round {
		return fmt.Errorf("consensus: state of round %d, wanted round %d", st.Round, w.Round)
	}
	if len(st.Theta) != e.d || len(st.Momentum) != e.d {
		return fmt.Errorf("consensus: state has %d/%d values, want %d", len(st.Theta), len(st.Momentum), e.d)
	}
	if err := st.Members.Validate(st.Round); err != nil {
		return err
	}
	if h := st.Hash(); h != w.Hash {
		return fmt.Errorf("consensus: state of round %d hashes to %s, the certificate vouches for %s", st.Round, h.Short(), w.Hash.Short())
	}
	var last *Link
	for i := range e.links {
		if e.links[i].Commit.Value.Round+1 == st.Round {
			last = &e.links[i]
		}
	}
	if last == nil {
		return fmt.Errorf("consensus: no certified decision leads to round %d", st.Round)
	}
	if VotersDigest(st.Members.Voters()) != last.Commit.Value.NextVoters {
		return fmt.Errorf("consensus: the state's voters are not those its decision names")
	}
	e.logf("round %d: adopted the certified state of round %d (%s)", e.round, st.Round, w.Hash.Short())
	// The links are certified: keep them for proofs and verdict checks.
	voters := e.voters
	for _, l := range e.links {
		e.remember(&l.Commit, voters, nil)
		if l.Commit.Value.NextVoters != l.Commit.Value.Voters {
			e.chain = append(e.chain, l)
			voters = l.NextVoters
			e.history[l.Commit.Value.Round].next = l.NextVoters
		}
	}
	e.decided = append(e.decided, Decided{Round: last.Commit.Value.Round, Value: last.Commit.Value, Cert: last.Commit.Cert, Restored: true,
		Links: slices.Clone(e.links)})
	e.links = nil
	e.prev = nil
	e.carry, e.carryAt, e.prevRan = nil, nil, false
	e.adopt(st.Clone())
	if e.aheadAt >= e.round {
		// A commit of this round or a later one went by while the state
		// was on its way (and the rate limit swallowed its question): ask
		// now, not after a stall, when a run that ended is gone.
		// It asks the voters of the round it now holds, not the signers
		// the commit claimed (unchecked: anyone may gossip one, and a
		// list of made-up peers first would delay the question).
		e.proofAt = 0
		e.askProof(e.voters)
	}
	return nil
}

// ServeProof returns the certified decisions a node at round needs to
// catch up: the voter-set changes since, and the last few decisions.
func (e *Engine) ServeProof(round uint64) *Proof {
	byRound := map[uint64]Link{}
	for _, l := range e.chain {
		if l.Commit.Value.Round >= round {
			byRound[l.Commit.Value.Round] = l
		}
	}
	for r, rec := range e.history {
		if r >= round {
			byRound[r] = Link{Commit: rec.commit, NextVoters: rec.next}
		}
	}
	p := &Proof{}
	for _, r := range slices.Sorted(maps.Keys(byRound)) {
		p.Links = append(p.Links, byRound[r])
	}
	return p
}

// Chain returns what a node keeps with its checkpoint to serve proofs
// after a restart: the voter-set changes and the last few decisions.
func (e *Engine) Chain() []Link { return e.ServeProof(0).Links }
