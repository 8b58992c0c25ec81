package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/ledger"
	"github.com/vtrain/vtrain/verify/spot"
	"github.com/vtrain/vtrain/verify/zk"
)

// replay re-derives a run from one ledger, as the protocol would: the
// membership and voter set of every round from the genesis and the
// certified decisions, every decision's certificate checked against the
// voters it derived, every aggregate recomputed from the logged updates to
// the certified state hash, every adopted state tied to a certificate,
// every verdict checked against the beacon's draw and, with the data, the
// keeper's challenges re-executed (full: every segment of every aggregated
// update).
type replay struct {
	spec   runspec.Spec
	run    runspec.ID
	policy consensus.Policy
	store  *ledger.Store
	dec    *compress.Decoder
	train  *data.Dataset // nil without data
	full   bool

	updates map[consensus.Hash]*consensus.Update // every update logged
	known   bool                                 // the state below is the replayed state of round
	state   consensus.State
	hash    consensus.Hash
	voters  []consensus.PeerID          // of round (always known: the chain of certificates tracks them)
	bases   map[uint64][]float32        // θ_r of replayed rounds
	values  map[uint64]*consensus.Value // decided values by round
	commits map[uint64]consensus.Hash   // certified value IDs by round
	redo    map[uint64]consensus.Hash   // rounds a restart from an older checkpoint decides again
	hashes  map[uint64]consensus.Hash   // state hashes the replay passed through
	pending *consensus.Value            // a decision the keeper restored past: a state entry must follow
	resp    map[string][]byte           // challenge answers by round|accused
	resid   map[consensus.PeerID][]float32
	// --full: each peer's residual before its last update, for a referee
	// of a claim on that update's encoding
	residPrev map[consensus.PeerID][]float32
	// verdicts each peer signed that certified values overturned
	liars map[consensus.PeerID]int
	// The keeper's own verdicts as logged, and every verdict a certified
	// value carried, by challenge: the keeper signs one verdict per
	// challenge, so the two must agree.
	own     map[verdictKey]loggedVerdict
	carried map[verdictKey]bool
	// peers a certified value excluded (or an adopted state lists as
	// excluded)
	excluded map[consensus.PeerID]bool
	// the first round of an update of each peer that a certified value
	// upheld a failure of: its work from then on is revoked
	provenBad map[consensus.PeerID]uint64
	// --full: aggregated updates that do not re-execute, and the entry
	// being replayed
	findings []finding
	entry    int
	last     uint64      // the next round a decision must be for
	gaps     [][2]uint64 // rounds [a, b) a restore skipped

	Recomputed int `json:"aggregates_recomputed"`
	Restored   int `json:"rounds_adopted"` // decisions the keeper took by a checked certificate and state
	Certs      int `json:"certificates_checked"`
	Challenges int `json:"challenges_replayed"`
	Lies       int `json:"false_verdicts_logged"` // verdicts no draw backs, logged as proof against their signers
	// Verdicts certified values acted on: failures upheld (each excludes
	// its accused) and verdicts overturned (each excludes its signer);
	// with the data, how many of them the replay re-refereed to the same
	// ruling, and how many it could not (a claim of silence, or a state
	// the honest re-execution does not reach).
	Upheld       int `json:"verdicts_upheld"`
	Overturned   int `json:"verdicts_overturned"`
	Rerefereed   int `json:"disputes_rerefereed"`
	Inconclusive int `json:"disputes_inconclusive"`
	Segments     int `json:"segments_replayed"`
	Links        int `json:"payloads_rederived"`
	// Private peers: the proofs re-verified (distinct), those that did
	// not verify, and the checker (from the ledger's key entry).
	Proofs       int `json:"proofs_verified"`
	ProofsFailed int `json:"proofs_refused"`
	proofs       *trainer.Proofs
	proofSeen    map[[2]consensus.Hash]bool
}

func newReplay(spec runspec.Spec, store *ledger.Store, train *data.Dataset, full bool) (*replay, error) {
	g, err := consensus.Genesis(spec)
	if err != nil {
		return nil, err
	}
	dec, err := compress.NewDecoder(len(g.Theta))
	if err != nil {
		return nil, err
	}
	return &replay{spec: spec, run: spec.RunID(), policy: consensus.PolicyOf(spec), store: store, dec: dec, train: train, full: full,
		updates: map[consensus.Hash]*consensus.Update{}, known: true, state: g, hash: g.Hash(), voters: g.Members.Voters(),
		bases: map[uint64][]float32{0: g.Theta}, values: map[uint64]*consensus.Value{}, commits: map[uint64]consensus.Hash{},
		redo: map[uint64]consensus.Hash{}, hashes: map[uint64]consensus.Hash{0: g.Hash()},
		resp: map[string][]byte{}, resid: map[consensus.PeerID][]float32{},
		own: map[verdictKey]loggedVerdict{}, carried: map[verdictKey]bool{}, excluded: map[consensus.PeerID]bool{},
		provenBad: map[consensus.PeerID]uint64{}, residPrev: map[consensus.PeerID][]float32{}, liars: map[consensus.PeerID]int{}}, nil
}

// verdictKey names a challenge: the round, the update drawn and the
// challenger (a drawn update has verify.challengers of them).
type verdictKey struct {
	round  uint64
	update consensus.Hash
	from   consensus.PeerID
}

// loggedVerdict is a verdict of the keeper's as its ledger logged it.
type loggedVerdict struct {
	pass  bool
	entry int
}

func hexHash(s string) (consensus.Hash, error) {
	var h consensus.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("%q is not a hash", s)
	}
	copy(h[:], b)
	return h, nil
}

// decision checks a decision entry: its commit's certificate against the
// voters the replay derived, its summary against the commit, and, where
// the replay holds the round's state, the certified state recomputed from
// the logged updates.
func (r *replay) decision(e ledger.Entry, d *Decision) error {
	m, err := gossip.Verify(e.Wire, r.run, 1<<28)
	if err != nil || m.Commit == nil {
		return fmt.Errorf("decision without a valid commit: %v", err)
	}
	c := m.Commit
	v := c.Value
	if v.Round != e.Round || c.Cert.Round != v.Round || c.Cert.Value != v.ID(r.run) {
		return fmt.Errorf("the certificate of round %d is not for the value the decision names", e.Round)
	}
	if r.pending != nil && !d.Restored {
		return fmt.Errorf("round %d decided before the state round %d's decision leads to was adopted", v.Round, r.pending.Round)
	}
	if id, ok := r.redo[v.Round]; ok && id != c.Cert.Value {
		return fmt.Errorf("round %d decided again, to %s where it was certified %s", v.Round, c.Cert.Value.Short(), id.Short())
	}
	if id, ok := r.commits[v.Round]; ok && id != c.Cert.Value {
		return fmt.Errorf("round %d decided twice, two ways (%s and %s)", v.Round, id.Short(), c.Cert.Value.Short())
	}
	if v.Round < r.last || r.pending != nil && v.Round <= r.pending.Round {
		return fmt.Errorf("round %d decided again (the ledger is at round %d)", v.Round, max(r.last, v.Round))
	}
	if v.Round > r.last && !d.Restored {
		return fmt.Errorf("round %d decided after round %d: rounds %d..%d are missing", v.Round, r.last-1, r.last, v.Round-1)
	}
	if v.Voters != consensus.VotersDigest(r.voters) {
		return fmt.Errorf("the value of round %d names another voter set than the chain of certificates establishes", v.Round)
	}
	if err := consensus.VerifyCertificate(r.run, &c.Cert, r.voters, gossip.VerifySig); err != nil {
		return fmt.Errorf("round %d: %v", v.Round, err)
	}
	r.Certs++
	if err := r.summary(d, v, len(c.Cert.Sigs)); err != nil {
		return err
	}
	if err := r.carriedVerdicts(v); err != nil {
		return err
	}
	for _, x := range v.Verdicts {
		k := verdictKey{x.Round, x.Update, x.From}
		if o, ok := r.own[k]; ok && o.pass != x.Pass {
			return fmt.Errorf("round %d's certified value carries the keeper's verdict on %s's round-%d update as pass=%v; the keeper's verdict at entry %d says pass=%v",
				v.Round, x.Accused, x.Round, x.Pass, o.entry, o.pass)
		}
		r.carried[k] = x.Pass
	}
	r.values[v.Round] = v
	r.commits[v.Round] = c.Cert.Value
	for _, p := range v.Excluded() {
		r.excluded[p] = true
	}
	if d.Restored {
		// A link of the chain the keeper checked to adopt a certified
		// state from a peer; the state entry after the last link must hash
		// to its next state. Rounds the chain skips are the peers' to
		// prove, not this keeper's.
		if v.NextVoters != v.Voters {
			nv := make([]consensus.PeerID, len(d.NextVoters))
			for i, p := range d.NextVoters {
				nv[i] = consensus.PeerID(p)
			}
			if consensus.VotersDigest(nv) != v.NextVoters {
				return fmt.Errorf("round %d: the next voters listed do not match the certified value", v.Round)
			}
			r.voters = nv
		}
		r.pending, r.known = v, false
		return nil
	}
	if !r.known || v.Base != r.hash {
		return fmt.Errorf("round %d builds on %s, the replay holds %s", v.Round, v.Base.Short(), r.hash.Short())
	}
	ups := make([]*compress.Sparse, len(v.Updates))
	msgs := make([]*consensus.Update, len(v.Updates))
	for i, ref := range v.Updates {
		u, ok := r.updates[ref.ID]
		if !ok {
			return fmt.Errorf("round %d aggregates update %s of %s, which the ledger does not hold", v.Round, ref.ID.Short(), ref.From)
		}
		if u.From != ref.From {
			return fmt.Errorf("round %d names update %s as %s's, it is %s's", v.Round, ref.ID.Short(), ref.From, u.From)
		}
		if err := r.checkRound(v, ref, u); err != nil {
			return err
		}
		if r.spec.IsPrivate(string(u.From)) {
			if ups[i], err = r.privateUpdate(u); err != nil {
				return fmt.Errorf("round %d: private update %s: %v", v.Round, ref.ID.Short(), err)
			}
		} else if ups[i], err = r.dec.Decode(u.Payload); err != nil {
			return fmt.Errorf("round %d: update %s: %v", v.Round, ref.ID.Short(), err)
		}
		msgs[i] = u
	}
	theta, mom, err := trainer.OuterStep(r.spec, r.state.Theta, r.state.Momentum, ups)
	if err != nil {
		return err
	}
	resid := make(map[consensus.PeerID]consensus.Hash, len(msgs))
	for _, u := range msgs {
		resid[u.From] = u.ResidualOut
	}
	next := r.state.Members.Next(v.Round, v, r.policy, resid)
	if got := consensus.StateHash(v.Round+1, consensus.ParamsDigest(theta, mom), next.Digest()); got != v.Next {
		return fmt.Errorf("the aggregate of round %d's %d updates gives state %s, the certified decision says %s", v.Round, len(ups), got.Short(), v.Next.Short())
	}
	if consensus.VotersDigest(next.Voters()) != v.NextVoters {
		return fmt.Errorf("round %d: the next voters do not follow from the membership", v.Round)
	}
	if r.full && r.train != nil {
		for _, u := range msgs {
			base := r.bases[u.Round]
			if base == nil || r.spec.IsPrivate(string(u.From)) {
				// (a private peer's steps are checked by proof, not by
				// re-execution: its data is not the auditor's)
				continue // a late update of a round the replay skipped (a state adopted since)
			}
			bad, err := r.fullCheck(u, base)
			if err != nil {
				return err
			}
			if bad != "" {
				r.findings = append(r.findings, finding{entry: r.entry, round: v.Round, peer: string(u.From), what: bad})
			}
		}
	}
	r.Recomputed++
	r.state = consensus.State{Round: v.Round + 1, Theta: theta, Momentum: mom, Members: next}
	r.hash, r.voters, r.last = v.Next, next.Voters(), v.Round+1
	r.bases[r.state.Round], r.hashes[r.state.Round] = theta, v.Next
	return nil
}

// checkRound checks that an update a value names is of the round the
// value says: its own, or the one before for a late update (consensus/
// late.go), on that round's state, from a member whose update of that
// round the round before did not aggregate. The certificate vouches for
// this; the replay checks it again, as it recomputes the aggregate.
func (r *replay) checkRound(v *consensus.Value, ref consensus.UpdateRef, u *consensus.Update) error {
	want := v.Round
	if ref.Late {
		if v.Round == 0 {
			return fmt.Errorf("round 0 names update %s as late", ref.ID.Short())
		}
		want--
	}
	if u.Round != want {
		return fmt.Errorf("round %d names update %s of %s (of round %d) as one of round %d", v.Round, ref.ID.Short(), ref.From, u.Round, want)
	}
	if h, ok := r.hashes[want]; ok && u.Base != h {
		return fmt.Errorf("round %d aggregates %s's update %s on %s, round %d's state is %s", v.Round, ref.From, ref.ID.Short(), u.Base.Short(), want, h.Short())
	}
	if ref.Late {
		if pv := r.values[want]; pv != nil {
			for _, o := range pv.Updates {
				if o.From == ref.From && !o.Late {
					return fmt.Errorf("round %d aggregates a late update of %s of round %d, which round %d had aggregated one of", v.Round, ref.From, want, want)
				}
			}
		}
	}
	return nil
}

// summary checks a decision's summary fields against its commit.
func (r *replay) summary(d *Decision, v *consensus.Value, signers int) error {
	if d.Result != hex.EncodeToString(v.Next[:]) || d.Base != hex.EncodeToString(v.Base[:]) || len(d.Updates) != len(v.Updates) ||
		len(d.Peers) != len(v.Updates) || d.Signers != signers {
		return fmt.Errorf("the decision's summary of round %d does not match its certified value", v.Round)
	}
	for i, u := range v.Updates {
		if d.Updates[i] != hex.EncodeToString(u.ID[:]) || d.Peers[i] != string(u.From) {
			return fmt.Errorf("the decision's summary of round %d does not match its certified value", v.Round)
		}
	}
	var late []string
	for _, p := range v.LateIn() {
		late = append(late, string(p))
	}
	if !slices.Equal(d.Late, late) {
		return fmt.Errorf("the decision's summary of round %d lists %v aggregated late, its certified value %v", v.Round, d.Late, late)
	}
	return nil
}

// state checks a state entry: the keeper resumed from its own checkpoint
// (the replay's state of that round, when it holds it) or adopted the
// state a certified decision leads to.
func (r *replay) stateEntry(e ledger.Entry) error {
	var sd StateData
	if err := json.Unmarshal(e.Data, &sd); err != nil {
		return fmt.Errorf("state: %v", err)
	}
	b, err := blob(r.store, e.Blob)
	if err != nil {
		return fmt.Errorf("state %v", err)
	}
	st, _, err := DecodeState(b)
	if err != nil {
		return fmt.Errorf("state payload: %v", err)
	}
	if len(st.Theta) != len(r.state.Theta) {
		return fmt.Errorf("state of %d parameters, the model has %d", len(st.Theta), len(r.state.Theta))
	}
	sh := st.Hash()
	if hex.EncodeToString(sh[:]) != sd.Hash || st.Round != sd.Round || st.Round != e.Round {
		return fmt.Errorf("state payload does not hash to the entry's %s of round %d", sd.Hash, sd.Round)
	}
	switch {
	case r.pending != nil:
		if r.pending.Round+1 != st.Round || r.pending.Next != sh {
			return fmt.Errorf("adopted state %s of round %d, the certified decision of round %d leads to %s", sh.Short(), st.Round, r.pending.Round, r.pending.Next.Short())
		}
		if consensus.VotersDigest(st.Members.Voters()) != r.pending.NextVoters {
			return fmt.Errorf("adopted state of round %d: its voters are not those its certified decision names", st.Round)
		}
		r.gaps = append(r.gaps, [2]uint64{r.last, st.Round})
		r.pending = nil
		r.Restored++
	case r.known && r.state.Round == st.Round:
		if sh != r.hash {
			return fmt.Errorf("resumed from state %s of round %d, where the replay reaches %s", sh.Short(), st.Round, r.hash.Short())
		}
	case r.hashes[st.Round] == sh && st.Round < r.last:
		// A restart from a checkpoint older than the ledger (a crash
		// between the two writes): the keeper decides those rounds again,
		// to the values already certified.
		for k := range r.commits {
			if k >= st.Round {
				r.redo[k] = r.commits[k]
				delete(r.commits, k)
			}
		}
	default:
		return fmt.Errorf("state %s of round %d adopted without a certified decision leading to it", sh.Short(), st.Round)
	}
	r.known, r.state, r.hash, r.voters, r.last = true, st, sh, st.Members.Voters(), st.Round
	r.bases[st.Round], r.hashes[st.Round] = st.Theta, sh
	for _, p := range st.Members.Excluded {
		r.excluded[p] = true
	}
	clear(r.resid) // residuals of earlier rounds are unknown from here
	return nil
}

// verdict checks a logged verdict against the beacon's draw of its round
// and, with the data, re-executes the keeper's own challenges. It reports
// whether the round is one the replay can check.
func (r *replay) verdict(x *consensus.VerdictMsg, keeper string) (bool, error) {
	v := r.values[x.Round]
	if v == nil {
		return false, nil // the keeper restored past that round: nothing to check against
	}
	beacon, chs := consensus.Draw(v, consensus.SpotPolicyOf(r.spec))
	i := slices.IndexFunc(chs, func(c spot.Challenge) bool { return c.Update == x.Update && c.Challenger == string(x.From) })
	if i < 0 || chs[i].Peer != string(x.Accused) || !r.segmentOK(x, beacon) {
		// A verdict no draw backs is its signer's lie: the keeper logs
		// others' as the proof that excludes them, and never signs one.
		if string(x.From) == keeper {
			return false, fmt.Errorf("the keeper signed a verdict on %s's round-%d update (segment %d) that the beacon did not draw it for", x.Accused, x.Round, x.Segment)
		}
		r.Lies++
		return false, nil
	}
	// The keeper signs one verdict per challenge: the one a certified
	// value carries, before or after this entry.
	if string(x.From) == keeper {
		k := verdictKey{x.Round, x.Update, x.From}
		if pass, ok := r.carried[k]; ok && pass != x.Pass {
			return false, fmt.Errorf("the keeper's verdict on %s's round-%d update says pass=%v; a certified value carries it as pass=%v", x.Accused, x.Round, x.Pass, pass)
		}
		if _, ok := r.own[k]; !ok {
			r.own[k] = loggedVerdict{x.Pass, r.entry}
		}
	}
	if r.spec.IsPrivate(string(x.Accused)) {
		// The proof the verdict carries, verified again: it must say what
		// the verdict says (a lie of another's is logged as proof against
		// it; the keeper never signs one).
		if err := r.privateVerdict(x); err != nil {
			if string(x.From) == keeper {
				return false, fmt.Errorf("the keeper's verdict: %v", err)
			}
			r.Lies++
			return false, nil
		}
		return true, nil
	}
	if r.train == nil || string(x.From) != keeper {
		return true, nil
	}
	// From the update's own round: a late one (consensus/late.go) was
	// trained in the round before the verdict's.
	u := r.updates[x.Update]
	if u == nil || r.bases[u.Round] == nil {
		return true, nil
	}
	base := r.bases[u.Round]
	ans, ok := r.resp[fmt.Sprint(x.Round, "|", x.Accused)]
	if !ok {
		if x.Pass {
			return true, fmt.Errorf("a passing verdict on %s's round-%d update without the answer it judged", x.Accused, x.Round)
		}
		return true, nil // unanswered: nothing to re-execute
	}
	ev, err := DecodeEvidence(ans)
	if err != nil {
		return true, fmt.Errorf("challenge answer: %v", err)
	}
	rep, err := trainer.NewReplayer(r.spec, u.Round, x.Accused, r.train)
	if err != nil {
		return true, err
	}
	r.Challenges++
	// The keeper's check again, on the evidence it logged (with the signed
	// step hashes when it asked for them): the same check must give the
	// same fault.
	if a := ev.Answer; a != nil && (a.Round != x.Round || a.Update != x.Update || !gossip.VerifySig(x.Accused, consensus.AnswerSignBytes(r.run, a), a.Sig)) {
		ev.Answer = nil
	}
	blocks, err := trainer.DrawBlocks(r.spec, beacon, u, x.Update, x.From, len(base))
	if err != nil {
		return true, err
	}
	f, err := trainer.Check(r.spec, base, u, blocks, ev, rep, func(seg int) *consensus.Answer {
		if ev.Answer != nil && ev.Answer.Segment == seg {
			return ev.Answer
		}
		return nil
	})
	if err != nil {
		return true, err
	}
	if f.Fault != x.Fault || (f.Fault == consensus.FaultNone) != x.Pass || f.Fault == consensus.FaultStep && (f.Step != x.Step || f.Segment != x.Segment) {
		return true, fmt.Errorf("re-executing the challenge of %s's round-%d update (segment %d) finds a %s fault (step %d), the keeper's verdict says %s (step %d, pass=%v)",
			x.Accused, x.Round, x.Segment, f.Fault, f.Step, x.Fault, x.Step, x.Pass)
	}
	return true, nil
}

// leave checks a leave entry against the certified membership the replay
// holds after the decision that made it: an excluded peer is in the
// state's excluded list, a dropped one is no member.
func (r *replay) leave(e ledger.Entry) error {
	if !r.known || r.state.Round != e.Round {
		return nil // the keeper restored: the state entry that follows carries the membership
	}
	p := consensus.PeerID(e.Peer)
	switch {
	case strings.HasPrefix(e.Reason, "excluded"):
		if !r.state.Members.IsExcluded(p) {
			return fmt.Errorf("%s excluded from round %d, which no certified decision did", p, e.Round)
		}
	case r.state.Members.Has(p):
		return fmt.Errorf("%s left in round %d, yet the certified membership keeps it", p, e.Round)
	}
	return nil
}

// challenge checks a challenge entry: the keeper logs the challenges the
// beacon of a decided round drew it for.
func (r *replay) challenge(e ledger.Entry, keeper string) error {
	var cd ChallengeData
	if err := json.Unmarshal(e.Data, &cd); err != nil {
		return fmt.Errorf("challenge: %v", err)
	}
	v := r.values[e.Round]
	if v == nil {
		return nil // the keeper restored past that round: nothing to check against
	}
	beacon, chs := consensus.Draw(v, consensus.SpotPolicyOf(r.spec))
	i := slices.IndexFunc(chs, func(c spot.Challenge) bool {
		return hex.EncodeToString(c.Update[:]) == cd.Update && c.Challenger == cd.Challenger
	})
	if i < 0 {
		return fmt.Errorf("challenge by %s of update %.8s of round %d: the beacon of round %d drew no such challenge (the keeper logs only its own)", cd.Challenger, cd.Update, e.Round, e.Round)
	}
	ch := chs[i]
	if ch.Peer != e.Peer || ch.Challenger != cd.Challenger || cd.Challenger != keeper || cd.Beacon != hex.EncodeToString(beacon[:]) {
		return fmt.Errorf("challenge by %s of %s's update: the beacon of round %d drew %s for %s's (the keeper logs only its own)",
			cd.Challenger, e.Peer, e.Round, ch.Challenger, ch.Peer)
	}
	return nil
}

// finding is an aggregated update whose work does not re-execute: cheating
// that got into an aggregate before it was caught, or that was never
// caught.
type finding struct {
	entry      int
	round      uint64
	peer, what string
}

// fullCheck re-executes every segment of u from base and, when the peer's
// residual is known, re-derives its payload. It returns what does not
// hold ("" when all does), or an error when it cannot run.
func (r *replay) fullCheck(u *consensus.Update, base []float32) (string, error) {
	rep, err := trainer.NewReplayer(r.spec, u.Round, u.From, r.train)
	if err != nil {
		return "", err
	}
	st, err := rep.Start(base)
	if err != nil {
		return "", err
	}
	for seg := range r.spec.Segments() {
		lo, hi := trainer.SegmentSteps(r.spec, seg)
		if st, err = rep.Run(st, hi-lo); err != nil {
			return fmt.Sprintf("round-%d update: re-executing segment %d: %v", u.Round, seg, err), nil
		}
		r.Segments++
		if h := st.Hash(); h != u.Segments[seg] {
			return fmt.Sprintf("round-%d update: re-executing segment %d gives %s, committed %s", u.Round, seg, h.Short(), u.Segments[seg].Short()), nil
		}
	}
	res, ok := r.resid[u.From]
	if !ok {
		res = make([]float32, len(base)) // a peer's first update starts from a zero residual
	}
	if trainer.ResidualRoot(r.spec, res) != u.ResidualIn {
		delete(r.resid, u.From) // it started before this ledger (a restart): its residual is unknown here
		return "", nil
	}
	payload, out, err := trainer.Link(r.spec, base, st.Params, res)
	if err != nil || !bytes.Equal(payload, u.Payload) {
		return fmt.Sprintf("round-%d update: the payload is not the compressed delta of its re-executed steps", u.Round), nil
	}
	r.Links++
	r.residPrev[u.From] = res
	r.resid[u.From] = out
	return "", nil
}

// skipped reports whether a restore skipped round.
func (r *replay) skipped(round uint64) bool {
	for _, g := range r.gaps {
		if g[0] <= round && round < g[1] {
			return true
		}
	}
	return false
}

func (r *replay) String() string {
	return fmt.Sprintf("%d certificates checked, %d aggregates recomputed, %d rounds adopted by certificate, %d challenges, %d segments, %d payloads re-derived",
		r.Certs, r.Recomputed, r.Restored, r.Challenges, r.Segments, r.Links)
}

// blob reads the payload an entry names by its address.
func blob(store *ledger.Store, addr string) ([]byte, error) {
	var h ledger.Hash
	if err := h.UnmarshalText([]byte(addr)); err != nil {
		return nil, fmt.Errorf("payload address %q", addr)
	}
	b, err := store.Get(h)
	if err != nil {
		return nil, fmt.Errorf("payload: %v", err)
	}
	return b, nil
}

// carriedVerdicts checks the verdicts a certified value acts on, as the
// voters that certified it should have: every one signed by its signer;
// a kept one (a pass, or an upheld failure) true to the draw of its round,
// with an answer the accused signed; an overturned one signed by a member
// and either false to the draw or a claim the referees rejected. With the
// data, the replay referees each failure and each overturned claim again
// (re-executing the accused's steps from the round's state to the disputed
// one): a value that excluded someone on a verdict that does not hold fails
// the audit of the ledger that acted on it.
func (r *replay) carriedVerdicts(v *consensus.Value) error {
	check := func(x *consensus.VerdictMsg, kept bool) error {
		if !gossip.VerifySig(x.From, consensus.VerdictSignBytes(r.run, x), x.Sig) {
			return fmt.Errorf("round %d's certified value carries a verdict %s did not sign", v.Round, x.From)
		}
		drawn := false
		if xv := r.values[x.Round]; xv != nil {
			_, chs := consensus.Draw(xv, consensus.SpotPolicyOf(r.spec))
			beacon, _ := consensus.Draw(xv, consensus.SpotPolicyOf(r.spec))
			drawn = slices.ContainsFunc(chs, func(c spot.Challenge) bool {
				return c.Update == x.Update && c.Challenger == string(x.From) && c.Peer == string(x.Accused) && r.segmentOK(x, beacon)
			})
			if !drawn && kept {
				return fmt.Errorf("round %d's certified value acts on %s's verdict on %s's round-%d update, which the beacon did not draw it for (a fabricated verdict)",
					v.Round, x.From, x.Accused, x.Round)
			}
		} else {
			drawn = kept // restored past that round: the draw is the peers' to check
		}
		if a := x.Answer; kept && a != nil && !gossip.VerifySig(x.Accused, consensus.AnswerSignBytes(r.run, a), a.Sig) {
			return fmt.Errorf("round %d's certified value upholds a verdict against %s with an answer %s did not sign (a fabricated verdict)", v.Round, x.Accused, x.Accused)
		}
		if r.spec.IsPrivate(string(x.Accused)) && drawn {
			// Its proof, verified again: a kept verdict must say what the
			// proof says, an overturned one the opposite.
			err := r.privateVerdict(x)
			if kept && err != nil {
				return fmt.Errorf("round %d's certified value acts on %s's verdict on %s's round-%d update: %v", v.Round, x.From, x.Accused, x.Round, err)
			}
			// A claim of silence carries no proof, and an update this
			// ledger does not hold (the keeper adopted its round) has
			// none verified against it: nothing bears either out here.
			unchecked := x.Fault == consensus.FaultSilent || !kept && err == nil && r.updates[x.Update] == nil
			if !kept && err == nil && !unchecked {
				return fmt.Errorf("round %d's certified value excluded %s for a verdict on %s's round-%d update that its proof bears out", v.Round, x.From, x.Accused, x.Round)
			}
			if unchecked {
				r.Inconclusive++
			}
			return nil
		}
		if x.Pass || !drawn {
			return nil // a pass, or a lie on its face
		}
		want := consensus.Upheld
		if !kept {
			want = consensus.Overturned
		}
		got, ok, err := r.referee(x)
		if err != nil {
			return err
		}
		if !ok {
			r.Inconclusive++
			return nil
		}
		r.Rerefereed++
		if got != want {
			what := map[bool]string{true: "excluded %s on %s's %s claim, which re-execution does not uphold (a fabricated verdict)",
				false: "excluded %[2]s for a %[3]s claim against %[1]s that re-execution upholds"}[kept]
			return fmt.Errorf("round %d's certified value "+what, v.Round, x.Accused, x.From, x.Fault)
		}
		return nil
	}
	for i := range v.Verdicts {
		x := &v.Verdicts[i]
		if err := check(x, true); err != nil {
			return err
		}
		if !x.Pass {
			r.Upheld++
			if b, ok := r.provenBad[x.Accused]; !ok || x.Round < b {
				r.provenBad[x.Accused] = x.Round
			}
		}
	}
	for i := range v.Overturned {
		if err := check(&v.Overturned[i], false); err != nil {
			return err
		}
		r.Overturned++
		r.liars[v.Overturned[i].From]++
	}
	return nil
}

// referee re-referees a failed verdict with the data, as a member did
// before voting: ok is false when the replay cannot (no data, the update
// or the round's state not in this ledger, a claim of silence, or a state
// the accused's honest steps do not reach).
func (r *replay) referee(x *consensus.VerdictMsg) (consensus.Ruling, bool, error) {
	u := r.updates[x.Update]
	if u == nil || x.Fault == consensus.FaultSilent {
		return 0, false, nil
	}
	base := r.bases[u.Round] // its own round's: a late update's is the one before the verdict's
	if base == nil {
		return 0, false, nil
	}
	if x.Fault == consensus.FaultAnswer {
		if consensus.Contradicts(r.spec, u, x.Segment, x.Answer) {
			return consensus.Upheld, true, nil
		}
		return consensus.Overturned, true, nil
	}
	if r.train == nil {
		return 0, false, nil
	}
	rep, err := trainer.NewReplayer(r.spec, u.Round, x.Accused, r.train)
	if err != nil {
		return 0, false, err
	}
	fetch := func(h consensus.Hash, step int) (*trainer.Snapshot, error) {
		st, err := rep.Start(base)
		if err != nil {
			return nil, err
		}
		if st, err = rep.Run(st, step); err != nil {
			return nil, err
		}
		return &st, nil
	}
	// The residual blocks the challenger opened, drawn again from the
	// beacon, and opened here from the residuals the replay re-derived
	// (when it tracked this peer's from its first update).
	var blocks []int
	if xv := r.values[x.Round]; xv != nil {
		beacon, _ := consensus.Draw(xv, consensus.SpotPolicyOf(r.spec))
		if blocks, err = trainer.DrawBlocks(r.spec, beacon, u, x.Update, x.From, len(base)); err != nil {
			return 0, false, err
		}
	}
	open := func() ([]trainer.Opening, error) {
		var in, out []float32
		for _, res := range [][]float32{r.resid[x.Accused], r.residPrev[x.Accused]} {
			if res == nil {
				continue
			}
			switch trainer.ResidualRoot(r.spec, res) {
			case u.ResidualIn:
				in = res
			case u.ResidualOut:
				out = res
			}
		}
		if in == nil || out == nil || blocks == nil {
			return nil, fmt.Errorf("residual not known")
		}
		return trainer.Open(r.spec, in, out, blocks)
	}
	got, err := trainer.Referee(r.spec, base, u, x, blocks, rep, fetch, open)
	if errors.Is(err, trainer.ErrUnjudgeable) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return got, got != consensus.Lapsed, nil
}

// keyEntry reads the run's verifying key from the store: what every proof
// in the ledger is verified with.
func (r *replay) keyEntry(e ledger.Entry) error {
	if len(r.spec.Privacy.Peers) == 0 {
		return fmt.Errorf("a key entry in a run without private peers")
	}
	if r.proofs != nil {
		return fmt.Errorf("a second key entry")
	}
	b, err := blob(r.store, e.Blob)
	if err != nil {
		return fmt.Errorf("verifying key %v", err)
	}
	keys, err := zk.VerifierFromBytes(r.spec.ZKParams(), b, r.spec.Privacy.VKSHA256)
	if err != nil {
		return err
	}
	if r.proofs, err = trainer.NewProofs(r.spec, keys); err != nil {
		return err
	}
	r.proofSeen = map[[2]consensus.Hash]bool{}
	return nil
}

// segmentOK reports whether a verdict's segment is one the draw allows:
// any segment of a public update; the step the beacon drew of a private
// one.
func (r *replay) segmentOK(x *consensus.VerdictMsg, beacon consensus.Hash) bool {
	if r.spec.IsPrivate(string(x.Accused)) {
		return x.Segment == consensus.PrivateStep(beacon, x.Update, r.spec.Inner.Steps)
	}
	return x.Segment < r.spec.Segments()
}

// privateUpdate decodes a private peer's aggregated update and links its
// change to its commitments from the state of its own round.
func (r *replay) privateUpdate(u *consensus.Update) (*compress.Sparse, error) {
	s, err := trainer.ValidateUpdate(r.spec, u, r.dec)
	if err != nil {
		return nil, err
	}
	base := r.bases[u.Round]
	if base == nil {
		return s, nil // a late update of a round the replay skipped
	}
	if err := trainer.CheckPrivateLink(r.spec, u, base); err != nil {
		return nil, err
	}
	return s, nil
}

// privateVerdict verifies the proof a verdict on a private update carries
// and checks that the verdict says what it shows: a pass carries one that
// verifies, a proof fault one that does not. A claim of silence carries
// none. It needs the ledger's key entry and the update.
func (r *replay) privateVerdict(x *consensus.VerdictMsg) error {
	if x.Fault == consensus.FaultSilent {
		return nil
	}
	if x.Fault != consensus.FaultNone && x.Fault != consensus.FaultProof {
		return fmt.Errorf("a %s claim on a private update", x.Fault)
	}
	a := x.Answer
	if a == nil || len(a.Proof) == 0 || a.Round != x.Round || a.Update != x.Update || a.Segment != x.Segment ||
		!gossip.VerifySig(x.Accused, consensus.AnswerSignBytes(r.run, a), a.Sig) {
		return fmt.Errorf("no proof signed by %s on its round-%d update", x.Accused, x.Round)
	}
	if r.proofs == nil {
		return fmt.Errorf("the ledger holds no verifying key")
	}
	u := r.updates[x.Update]
	if u == nil {
		return nil // not logged here (the keeper adopted that round): nothing to verify against
	}
	err := r.proofs.CheckProof(u, x.Segment, a.Proof)
	if k := [2]consensus.Hash{x.Update, consensus.Hash(sha256.Sum256(a.Proof))}; !r.proofSeen[k] {
		r.proofSeen[k] = true
		if err == nil {
			r.Proofs++
		} else {
			r.ProofsFailed++
		}
	}
	switch {
	case x.Pass && err != nil:
		return fmt.Errorf("a pass on %s's round-%d update whose proof does not verify: %v", x.Accused, x.Round, err)
	case !x.Pass && err == nil:
		return fmt.Errorf("a proof fault on %s's round-%d update whose proof verifies", x.Accused, x.Round)
	}
	return nil
}
