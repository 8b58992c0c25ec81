package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/ledger"
)

// ErrAudit is wrapped by every discrepancy an audit finds.
var ErrAudit = errors.New("audit failed")

// Options configure an audit.
type Options struct {
	// Heads are the keepers' latest published tree heads, by ledger path
	// (from each node's summary.json): the ledger must end exactly there.
	Heads map[string]*ledger.SignedTreeHead
	// Witnessed are tree heads that keepers gossiped, by keeper (from
	// other nodes' summaries): each ledger must extend its keeper's.
	Witnessed map[string]*ledger.SignedTreeHead
	// Finished says the run ended: every ledger that decided the run's
	// last round must account for every round before it.
	Finished bool
	// Train is the run's public data: the keepers' challenges are
	// re-executed (nil: they are not); Full re-executes every segment of
	// every aggregated update too.
	Train *data.Dataset
	Full  bool
	// Progress, if set, is called before each entry of each ledger is
	// replayed (done entries of total), and once at the end with done =
	// total: re-execution (Train, Full) can take minutes.
	Progress func(ledger string, done, total int)
}

// PeerReport is one peer's line of an audit: its contributions as a
// ledger's keeper saw them.
type PeerReport struct {
	Peer       string         `json:"peer"`
	Joined     uint64         `json:"joined_round"`
	Updates    int            `json:"updates"`
	Aggregated int            `json:"aggregated"`      // rounds whose aggregate included its update
	Late       int            `json:"aggregated_late"` // of those, rounds that took its update of the round before (consensus/late.go)
	Accepted   int            `json:"accepted"`        // of the updates this keeper saw, those aggregated
	Rejected   map[string]int `json:"rejected"`        // refused messages by first reason
	Samples    uint64         `json:"samples"`
	Acceptance float64        `json:"acceptance_rate"`
	WaitRounds *uint64        `json:"wait_rounds"` // from admission to the first aggregated update; null if none
	Credit     float64        `json:"credit"`      // samples in aggregated updates (the run's unit of work)
	Passed     int            `json:"challenges_passed"`
	Failed     int            `json:"challenges_failed"`
	Excluded   *uint64        `json:"excluded_from_round"` // null unless excluded
	Reason     string         `json:"excluded_reason,omitempty"`
	FullFailed int            `json:"updates_not_reexecuting,omitempty"` // full: aggregated updates whose work does not re-execute
	FullReason string         `json:"first_not_reexecuting,omitempty"`
	// Credit revoked: the aggregated updates of a peer that a certified
	// value proved to cheat, from the round of the first update a failure
	// was upheld on (its word is worth nothing from its first proven lie),
	// and with the full re-execution any other of its updates that does
	// not re-execute. They stay in the model: Contamination counts them.
	Revoked        int     `json:"revoked_updates"`
	RevokedSamples uint64  `json:"revoked_samples"`
	Contamination  int     `json:"contamination"`
	FirstProvenBad *uint64 `json:"first_proven_bad_round,omitempty"`
	// FalseVerdicts counts the verdicts this peer signed that certified
	// values overturned (each excluded it).
	FalseVerdicts int `json:"false_verdicts"`

	rounds []aggregated
}

// aggregated is an update of a peer that a decided round aggregated.
type aggregated struct {
	round   uint64
	samples uint64
}

// LedgerReport is the audit of one ledger.
type LedgerReport struct {
	OK        bool          `json:"ok"`
	Ledger    string        `json:"ledger"`
	Run       string        `json:"run"`
	Keeper    string        `json:"keeper"`
	Entries   int           `json:"entries"`
	TreeHeads int           `json:"tree_heads"`
	Rounds    int           `json:"rounds"` // rounds decided (or adopted by certificate)
	Error     string        `json:"error,omitempty"`
	Peers     []*PeerReport `json:"peers"`
	Checked   []string      `json:"checked"`
	Replay    *replay       `json:"replay"`

	spec       runspec.Spec
	commits    map[uint64]consensus.Hash
	decisionAt map[uint64]uint64 // the entry of each round's decision
}

// Report is an audit of one or more ledgers of a run.
type Report struct {
	OK      bool            `json:"ok"`
	Error   string          `json:"error,omitempty"`
	Ledgers []*LedgerReport `json:"ledgers"`
	Cross   []string        `json:"cross_checked"`
}

// Audit audits the ledgers at paths (each with its payload store beside
// it): each one alone (see Ledger), then against each other: one run, one
// certified decision per round whichever ledger holds it. The first
// discrepancy ends the audit with an error wrapping ErrAudit that names
// the ledger and the entry; the report says what was checked up to there.
func Audit(paths []string, opts Options) (*Report, error) {
	rep := &Report{}
	fail := func(err error) (*Report, error) {
		rep.Error = err.Error()
		return rep, fmt.Errorf("%w: %v", ErrAudit, err)
	}
	if len(paths) == 0 {
		return fail(fmt.Errorf("no ledger to audit"))
	}
	for _, p := range paths {
		lr, err := Ledger(p, opts)
		rep.Ledgers = append(rep.Ledgers, lr)
		if err != nil {
			return rep, err
		}
	}
	if len(paths) > 1 {
		first := rep.Ledgers[0]
		type at struct {
			id     consensus.Hash
			ledger string
		}
		by := map[uint64]at{}
		for _, lr := range rep.Ledgers {
			if lr.Run != first.Run {
				return fail(fmt.Errorf("%s is of run %s, %s of run %s", lr.Ledger, lr.Run, first.Ledger, first.Run))
			}
			rounds := make([]uint64, 0, len(lr.commits))
			for r := range lr.commits {
				rounds = append(rounds, r)
			}
			sort.Slice(rounds, func(i, j int) bool { return rounds[i] < rounds[j] })
			for _, r := range rounds {
				id := lr.commits[r]
				if prev, ok := by[r]; ok && prev.id != id {
					return fail(&ledger.CorruptError{Path: lr.Ledger, Index: lr.entryOf(r), Offset: -1,
						Reason: fmt.Sprintf("round %d is certified as %s here and as %s in %s", r, id.Short(), prev.id.Short(), prev.ledger)})
				}
				if _, ok := by[r]; !ok {
					by[r] = at{id, lr.Ledger}
				}
			}
		}
		rep.Cross = append(rep.Cross, fmt.Sprintf("the %d ledgers are of one run and hold the same certified decision for each of the %d rounds any of them decided", len(paths), len(by)))
	}
	rep.OK = true
	return rep, nil
}

// entryOf returns the index of the decision entry of round (0 if none).
func (lr *LedgerReport) entryOf(round uint64) uint64 { return lr.decisionAt[round] }

// Ledger audits one ledger: it checks the log (records, tree heads and
// their signatures, the head the keeper published and the heads it
// gossiped), replays the run from the genesis spec (every certificate
// against the voters the replay derives, every aggregate against the
// certified state, every adopted state against a certificate, every
// verdict against the beacon), re-executes challenges with the data, and
// reports each peer's contributions.
func Ledger(path string, opts Options) (*LedgerReport, error) {
	rep := &LedgerReport{Ledger: path, Peers: []*PeerReport{}, decisionAt: map[uint64]uint64{}}
	fail := func(err error) (*LedgerReport, error) {
		rep.OK, rep.Error = false, err.Error()
		return rep, fmt.Errorf("%w: %v", ErrAudit, err)
	}
	head := opts.Heads[path]
	if head != nil {
		rep.Checked = append(rep.Checked, "the ledger ends at the tree head its keeper published")
	}
	c, err := ledger.Check(path, head)
	if err != nil {
		return fail(err)
	}
	rep.Run, rep.Keeper, rep.Entries, rep.TreeHeads = c.Run.String(), c.Keeper, len(c.Entries), len(c.Heads)
	if h := opts.Witnessed[c.Keeper]; h != nil {
		if err := c.Witnessed(*h); err != nil {
			var ce *ledger.CorruptError
			if errors.As(err, &ce) {
				ce.Path = path
			}
			return fail(err)
		}
		rep.Checked = append(rep.Checked, fmt.Sprintf("the ledger's first %d entries match the tree head its keeper gossiped in round %d", h.Size, h.Round))
	}
	rep.Checked = append(rep.Checked,
		"every record intact and canonical", "every tree head signed by the keeper and matching its Merkle root",
		"the log ends with a tree head over all of it")

	// The genesis is the run's spec: it must hash to the run ID.
	spec, err := runspec.FromCanonical(c.Entries[0].Data, runspec.ID(c.Run))
	if err != nil {
		return fail(&ledger.CorruptError{Path: path, Index: 0, Offset: -1, Reason: fmt.Sprintf("genesis: %v", err)})
	}
	if len(spec.Members.Genesis) == 0 {
		return fail(&ledger.CorruptError{Path: path, Index: 0, Offset: -1, Reason: "genesis: the spec names no founders"})
	}
	rep.spec = spec
	rep.Checked = append(rep.Checked, "the genesis spec hashes to the run ID and names the founders")
	store, err := ledger.OpenStore(filepath.Join(filepath.Dir(path), BlobDir), StoreLimit(spec))
	if err != nil {
		return fail(err)
	}
	rp, err := newReplay(spec, store, opts.Train, opts.Full)
	if err != nil {
		return fail(err)
	}
	rep.Replay = rp

	peers := map[string]*PeerReport{}
	get := func(id string) *PeerReport {
		if p, ok := peers[id]; ok {
			return p
		}
		p := &PeerReport{Peer: id, Rejected: map[string]int{}}
		peers[id] = p
		return p
	}
	bad := func(i int, format string, a ...any) error {
		return &ledger.CorruptError{Path: path, Index: uint64(i), Offset: -1, Reason: fmt.Sprintf(format, a...)}
	}
	founders := map[string]bool{}
	for _, f := range spec.Members.Genesis {
		founders[f] = true
	}
	seenUpdates := map[string]string{} // update ID → sender, for the updates this keeper logged
	rounds := 0
	for i, e := range c.Entries {
		rp.entry = i
		if opts.Progress != nil {
			opts.Progress(path, i, len(c.Entries))
		}
		switch e.Kind {
		case ledger.KindJoin:
			switch {
			case e.Reason == "founder" && (e.Round != 0 || !founders[e.Peer]):
				return fail(bad(i, "%s is not a founder of the run", e.Peer))
			case e.Reason == "admitted" && rp.known && (rp.state.Round != e.Round || !rp.state.Members.Has(consensus.PeerID(e.Peer))):
				return fail(bad(i, "%s admitted from round %d, which the certified membership does not say", e.Peer, e.Round))
			}
			get(e.Peer).Joined = e.Round
		case ledger.KindUpdate:
			raw, err := blob(store, e.Blob)
			if err != nil {
				return fail(bad(i, "update %v", err))
			}
			m, err := gossip.Verify(raw, runspec.ID(c.Run), spec.Rounds.MaxMessage)
			if err != nil || m.Update == nil {
				return fail(bad(i, "update message: %v", err))
			}
			if m.Sender.String() != e.Peer || m.Round != e.Round {
				return fail(bad(i, "the signed update is not peer %s's of round %d the entry says", e.Peer, e.Round))
			}
			get(e.Peer).Updates++
			id := m.Update.ID(runspec.ID(c.Run))
			seenUpdates[id.String()] = e.Peer
			rp.updates[id] = m.Update
		case ledger.KindKey:
			if err := rp.keyEntry(e); err != nil {
				return fail(bad(i, "%v", err))
			}
		case ledger.KindState:
			if err := rp.stateEntry(e); err != nil {
				return fail(bad(i, "%v", err))
			}
		case ledger.KindChallenge:
			if err := rp.challenge(e, c.Keeper); err != nil {
				return fail(bad(i, "%v", err))
			}
		case ledger.KindResponse:
			b, err := blob(store, e.Blob)
			if err != nil {
				return fail(bad(i, "response %v", err))
			}
			rp.resp[fmt.Sprint(e.Round, "|", e.Peer)] = b
		case ledger.KindVerdict:
			m, err := gossip.Verify(e.Wire, runspec.ID(c.Run), spec.Rounds.MaxMessage)
			if err != nil || m.Verdict == nil {
				return fail(bad(i, "verdict message: %v", err))
			}
			if m.Sender.String() != e.Peer || m.Round != e.Round {
				return fail(bad(i, "the signed verdict is not %s's of round %d", e.Peer, e.Round))
			}
			if ok, err := rp.verdict(m.Verdict, c.Keeper); err != nil {
				return fail(bad(i, "%v", err))
			} else if ok {
				if m.Verdict.Pass {
					get(string(m.Verdict.Accused)).Passed++
				} else {
					get(string(m.Verdict.Accused)).Failed++
				}
			}
		case ledger.KindEvidence:
			m, err := gossip.Verify(e.Wire, runspec.ID(c.Run), 1<<28)
			if err != nil || m.Evidence == nil {
				return fail(bad(i, "equivocation proof: %v", err))
			}
			if err := consensus.CheckEquivocation(runspec.ID(c.Run), m.Evidence, gossip.VerifySig); err != nil || string(m.Evidence.A.From) != e.Peer {
				return fail(bad(i, "equivocation proof against %s: %v", e.Peer, err))
			}
		case ledger.KindLeave:
			// A leave follows the decision that made it: it must be what
			// the certified membership says.
			if err := rp.leave(e); err != nil {
				return fail(bad(i, "%v", err))
			}
			p := get(e.Peer)
			r := e.Round
			p.Excluded, p.Reason = &r, e.Reason
		case ledger.KindReject:
			var rd RejectionData
			if err := json.Unmarshal(e.Data, &rd); err != nil || rd.Count < 1 {
				return fail(bad(i, "rejection count: %v", err))
			}
			get(e.Peer).Rejected[e.Reason] += rd.Count
		case ledger.KindDecision:
			var d Decision
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return fail(bad(i, "decision: %v", err))
			}
			if err := rp.decision(e, &d); err != nil {
				return fail(bad(i, "%v", err))
			}
			rep.decisionAt[e.Round] = uint64(i)
			rounds++
			if d.Restored {
				continue // the peers' contributions of a skipped round are not this keeper's to report
			}
			share := uint64(0)
			if len(d.Peers) > 0 {
				share = d.Samples / uint64(len(d.Peers))
			}
			for _, u := range d.Updates {
				if who, ok := seenUpdates[u]; ok {
					get(who).Accepted++
				}
			}
			for _, id := range d.Peers {
				p := get(id)
				p.Aggregated++
				if slices.Contains(d.Late, id) {
					p.Late++
				}
				p.Samples += share
				p.rounds = append(p.rounds, aggregated{e.Round, share})
				if p.WaitRounds == nil {
					w := e.Round - min(e.Round, p.Joined)
					p.WaitRounds = &w
				}
			}
		}
	}
	if rp.pending != nil {
		return fail(bad(len(c.Entries)-1, "the chain ends at round %d's certified decision, and no state was adopted", rp.pending.Round))
	}
	// A finished run: a ledger that reached the last round accounts for
	// every round (decided here, or adopted by certificate).
	if R := uint64(spec.Run.Rounds); opts.Finished && R > 0 && rp.last >= R {
		for r := uint64(0); r < R; r++ {
			if _, ok := rp.commits[r]; !ok && !rp.skipped(r) {
				return fail(bad(len(c.Entries)-1, "the run decided %d rounds; round %d is missing from this ledger", R, r))
			}
		}
	}
	// Full re-execution: bad work in an aggregate is the run's loss, not
	// the ledger's fault, when the run caught and excluded its author;
	// work that nobody caught is a discrepancy.
	for _, f := range rp.findings {
		p := get(f.peer)
		p.FullFailed++
		if p.FullFailed == 1 {
			p.FullReason = f.what
		}
		if !rp.excluded[consensus.PeerID(f.peer)] {
			return fail(bad(f.entry, "%s's %s, and the run did not exclude it", f.peer, f.what))
		}
	}
	rep.commits = rp.commits
	rep.Checked = append(rep.Checked, "every update, verdict and equivocation proof carries its signer's valid signature for this run",
		fmt.Sprintf("%d certificates checked against the voters the replay derives from the genesis", rp.Certs),
		fmt.Sprintf("%d rounds' aggregates recomputed from the logged updates to the certified state hashes", rp.Recomputed),
		fmt.Sprintf("%d rounds adopted from peers, each by a certified decision and a state that hashes to it", rp.Restored),
		"every challenge and verdict answers a challenge the round's beacon drew, from the challenger it drew (or is logged as its signer's lie)",
		fmt.Sprintf("every verdict a certified value acts on is signed and true to the draw: %d failures upheld, %d verdicts overturned", rp.Upheld, rp.Overturned),
		"every verdict of the keeper's agrees with the certified value that carries it")
	if len(spec.Privacy.Peers) > 0 {
		rep.Checked = append(rep.Checked, fmt.Sprintf("every private peer's aggregated change linked to its first and last step commitments; %d proofs of drawn steps re-verified with the run's verifying key from the ledger (%d that do not verify, each on a verdict that says so)", rp.Proofs, rp.ProofsFailed))
	}
	if opts.Train != nil {
		rep.Checked = append(rep.Checked, fmt.Sprintf("%d of the keeper's challenges re-executed on the data, each to the verdict it gave", rp.Challenges),
			fmt.Sprintf("%d disputes the certified values ruled on re-refereed to the same ruling (%d could not be: a claim of silence, or a state the honest steps do not reach)", rp.Rerefereed, rp.Inconclusive))
	}
	if opts.Full {
		rep.Checked = append(rep.Checked, fmt.Sprintf("every segment of every aggregated update re-executed (%d segments), %d payloads re-derived from their steps; %d updates that do not re-execute, all by peers the run excluded", rp.Segments, rp.Links, len(rp.findings)))
	}
	rep.Rounds = rounds
	notReexecuting := map[string]map[uint64]bool{}
	for _, f := range rp.findings {
		if notReexecuting[f.peer] == nil {
			notReexecuting[f.peer] = map[uint64]bool{}
		}
		notReexecuting[f.peer][f.round] = true
	}
	for _, p := range peers {
		pid := consensus.PeerID(p.Peer)
		p.FalseVerdicts = rp.liars[pid]
		bad, proven := rp.provenBad[pid]
		if proven {
			b := bad
			p.FirstProvenBad = &b
		}
		// A proven cheater's credit goes entirely: the work it was not
		// caught at is only its word, and its word is proven worthless.
		// The contamination is what the audit knows was bad of what the
		// model holds: its aggregated updates from the first round it is
		// known to have cheated (the first update a failure was upheld on,
		// or with --full the first that does not re-execute).
		first, known := bad, proven
		for r := range notReexecuting[p.Peer] {
			if !known || r < first {
				first, known = r, true
			}
		}
		for _, a := range p.rounds {
			if known {
				p.Revoked++
				p.RevokedSamples += a.samples
				if a.round >= first {
					p.Contamination++
				}
			}
		}
		seen := p.Updates
		for _, n := range p.Rejected {
			seen += n
		}
		if seen > 0 {
			p.Acceptance = float64(max(0, p.Accepted-p.Revoked)) / float64(seen)
		}
		p.Credit = float64(p.Samples - min(p.Samples, p.RevokedSamples))
		rep.Peers = append(rep.Peers, p)
	}
	if opts.Progress != nil {
		opts.Progress(path, len(c.Entries), len(c.Entries))
	}
	sort.Slice(rep.Peers, func(i, j int) bool { return rep.Peers[i].Peer < rep.Peers[j].Peer })
	rep.OK = true
	return rep, nil
}
