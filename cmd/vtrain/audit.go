package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/ledger"
)

// peerReport is one peer's line of an audit: its contributions as the
// ledger's keeper saw them.
type peerReport struct {
	Peer       string         `json:"peer"`
	Joined     uint64         `json:"joined_round"`
	Updates    int            `json:"updates"`
	Aggregated int            `json:"aggregated"` // rounds whose aggregate included its update
	Accepted   int            `json:"accepted"`   // of the updates this keeper saw, those aggregated
	Rejected   map[string]int `json:"rejected"`
	Samples    uint64         `json:"samples"`
	Acceptance float64        `json:"acceptance_rate"`
	WaitRounds *uint64        `json:"wait_rounds"` // from join to the first aggregated update; null if none
	Credit     float64        `json:"credit"`      // samples in aggregated updates (the run's unit of work)
	Passed     int            `json:"challenges_passed"`
	Failed     int            `json:"challenges_failed"`
	Excluded   *uint64        `json:"excluded_from_round"` // null unless excluded
	Reason     string         `json:"excluded_reason,omitempty"`
	FullFailed int            `json:"updates_not_reexecuting,omitempty"` // --full: aggregated updates whose work does not re-execute
	FullReason string         `json:"first_not_reexecuting,omitempty"`
}

type auditReport struct {
	OK        bool          `json:"ok"`
	Ledger    string        `json:"ledger"`
	Run       string        `json:"run"`
	Keeper    string        `json:"keeper"`
	Entries   int           `json:"entries"`
	TreeHeads int           `json:"tree_heads"`
	Rounds    int           `json:"rounds"`
	Error     string        `json:"error,omitempty"`
	Peers     []*peerReport `json:"peers"`
	Checked   []string      `json:"checked"`
	Replay    *replay       `json:"replay"`
}

var errAudit = errors.New("audit failed")

func runAudit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit", "audit [flags] LEDGER", stderr)
	headPath := fs.String("head", "", "the keeper's summary.json (its latest signed tree head); default: summary.json beside the ledger, if any")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	dataDir := fs.String("data", "", "the run's public data (Fashion-MNIST directory, or 'synthetic'): re-execute the keeper's challenges")
	witness := fs.String("witness", "", "another node's summary.json: check this ledger against the tree head that node received from the keeper by gossip")
	full := fs.Bool("full", false, "with --data: re-execute every segment of every aggregated update, and re-derive its payload")
	pos, err := parsePositional(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("usage: vtrain audit [flags] LEDGER")
	}
	if *full && *dataDir == "" {
		return usagef("--full re-executes training: it needs --data")
	}
	path := pos[0]
	rep := &auditReport{Ledger: path, Peers: []*peerReport{}}
	fail := func(err error) error {
		rep.OK, rep.Error = false, err.Error()
		if *asJSON {
			b, _ := json.Marshal(rep)
			fmt.Fprintln(stdout, string(b))
		}
		return fmt.Errorf("%w: %v", errAudit, err)
	}
	var head *ledger.SignedTreeHead
	hp := *headPath
	if hp == "" {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), "summary.json")); err == nil {
			hp = filepath.Join(filepath.Dir(path), "summary.json")
		}
	}
	if hp != "" {
		b, err := os.ReadFile(hp)
		if err != nil {
			return err
		}
		var s node.Summary
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w", hp, err)
		}
		head = s.TreeHead
		rep.Checked = append(rep.Checked, "the ledger ends at the tree head the keeper published in "+hp)
	}
	c, err := ledger.Check(path, head)
	if err != nil {
		return fail(err)
	}
	rep.Run, rep.Keeper, rep.Entries, rep.TreeHeads = c.Run.String(), c.Keeper, len(c.Entries), len(c.Heads)
	if *witness != "" {
		b, err := os.ReadFile(*witness)
		if err != nil {
			return err
		}
		var s node.Summary
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w", *witness, err)
		}
		h := s.Witnessed[c.Keeper]
		if h == nil {
			return fail(fmt.Errorf("%s (peer %s) witnessed no tree head of keeper %s", *witness, s.Peer, c.Keeper))
		}
		if err := c.Witnessed(*h); err != nil {
			var ce *ledger.CorruptError
			if errors.As(err, &ce) {
				ce.Path = path
			}
			return fail(err)
		}
		rep.Checked = append(rep.Checked, fmt.Sprintf("the ledger's first %d entries match the tree head peer %s received from the keeper by gossip in round %d", h.Size, s.Peer, h.Round))
	}
	rep.Checked = append(rep.Checked,
		"every record intact and canonical", "every tree head signed by the keeper and matching its Merkle root",
		"the log ends with a tree head over all of it")

	// The genesis is the run's spec: it must hash to the run ID.
	spec, err := runspec.FromCanonical(c.Entries[0].Data, runspec.ID(c.Run))
	if err != nil {
		return fail(&ledger.CorruptError{Path: path, Index: 0, Offset: -1, Reason: fmt.Sprintf("genesis: %v", err)})
	}
	rep.Checked = append(rep.Checked, "the genesis spec hashes to the run ID")
	store, err := ledger.OpenStore(filepath.Join(filepath.Dir(path), node.BlobDir), node.StoreLimit(spec))
	if err != nil {
		return err
	}
	var train *data.Dataset
	if *dataDir != "" {
		set, fellBack, err := data.Load(*dataDir, spec.Run.Seed)
		if err != nil {
			return err
		}
		if (fellBack || *dataDir == "synthetic") != (spec.Data.Source == "synthetic") {
			return usagef("--data %s does not hold the run's %s data", *dataDir, spec.Data.Source)
		}
		train = set.Train
	}
	rp, err := newReplay(spec, store, train, *full)
	if err != nil {
		return err
	}
	rep.Replay = rp

	peers := map[string]*peerReport{}
	get := func(id string) *peerReport {
		if p, ok := peers[id]; ok {
			return p
		}
		p := &peerReport{Peer: id, Rejected: map[string]int{}}
		peers[id] = p
		return p
	}
	bad := func(i int, format string, a ...any) error {
		return &ledger.CorruptError{Path: path, Index: uint64(i), Offset: -1, Reason: fmt.Sprintf(format, a...)}
	}
	rounds := map[uint64]bool{}
	seenUpdates := map[string]string{} // update ID → sender, for the updates this keeper logged
	for i, e := range c.Entries {
		switch e.Kind {
		case ledger.KindJoin:
			get(e.Peer).Joined = e.Round
		case ledger.KindUpdate, ledger.KindCommit:
			raw := e.Wire
			if e.Kind == ledger.KindUpdate {
				if raw, err = blob(store, e.Blob); err != nil {
					return fail(bad(i, "update %v", err))
				}
			}
			m, err := gossip.Verify(raw, runspec.ID(c.Run), spec.Rounds.MaxMessage)
			if err != nil {
				return fail(bad(i, "%s message: %v", e.Kind, err))
			}
			if m.Sender.String() != e.Peer || m.Round != e.Round || (e.Kind == ledger.KindUpdate) != (m.Update != nil) {
				return fail(bad(i, "the signed message is not the %s of peer %s in round %d the entry says", e.Kind, e.Peer, e.Round))
			}
			if e.Kind == ledger.KindUpdate {
				get(e.Peer).Updates++
				id := m.Update.ID(runspec.ID(c.Run))
				seenUpdates[hex.EncodeToString(id[:])] = e.Peer
				rp.updates[id] = m.Update
			}
		case ledger.KindState:
			if err := rp.state(e); err != nil {
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
		case ledger.KindLeave:
			p := get(e.Peer)
			r := e.Round
			p.Excluded, p.Reason = &r, e.Reason
		case ledger.KindReject:
			get(e.Peer).Rejected[e.Reason]++
		case ledger.KindDecision:
			var d node.Decision
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return fail(bad(i, "decision: %v", err))
			}
			rounds[e.Round] = true
			rp.entry = i
			if err := rp.decision(e, &d); err != nil {
				return fail(bad(i, "%v", err))
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
				p.Samples += share
				if p.WaitRounds == nil {
					w := e.Round - min(e.Round, p.Joined)
					p.WaitRounds = &w
				}
			}
		}
	}
	// --full: bad work in an aggregate is the run's loss, not the ledger's
	// fault, when the run caught and excluded its author; work that
	// nobody caught is a discrepancy.
	for _, f := range rp.findings {
		p := get(f.peer)
		p.FullFailed++
		if p.FullFailed == 1 {
			p.FullReason = f.what
		}
		if p.Excluded == nil {
			return fail(bad(f.entry, "%s's %s, and the run did not exclude it", f.peer, f.what))
		}
	}
	rep.Checked = append(rep.Checked, "every update, commit and verdict carries its sender's valid signature for this run",
		fmt.Sprintf("%d rounds' aggregates recomputed from the logged updates to the committed state hashes (%d after a gap not replayable)", rp.Recomputed, rp.Skipped),
		"every verdict comes from the challenger the round's beacon drew")
	if train != nil {
		rep.Checked = append(rep.Checked, fmt.Sprintf("%d of the keeper's challenges re-executed on the data, each to the verdict it gave", rp.Challenges))
	}
	if *full {
		rep.Checked = append(rep.Checked, fmt.Sprintf("every segment of every aggregated update re-executed (%d segments), %d payloads re-derived from their steps; %d updates that do not re-execute, all by peers the run excluded", rp.Segments, rp.Links, len(rp.findings)))
	}
	rep.Rounds = len(rounds)
	for _, p := range peers {
		seen := p.Updates
		for _, n := range p.Rejected {
			seen += n
		}
		if seen > 0 {
			p.Acceptance = float64(p.Accepted) / float64(seen)
		}
		p.Credit = float64(p.Samples)
		rep.Peers = append(rep.Peers, p)
	}
	sort.Slice(rep.Peers, func(i, j int) bool { return rep.Peers[i].Peer < rep.Peers[j].Peer })
	rep.OK = true
	if *asJSON {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "ok: %s: run %s, keeper %s, %d entries, %d tree heads, %d rounds decided\n",
		path, rep.Run[:16], rep.Keeper, rep.Entries, rep.TreeHeads, rep.Rounds)
	for _, s := range rep.Checked {
		fmt.Fprintf(stdout, "  checked: %s\n", s)
	}
	fmt.Fprintf(stdout, "%-54s %7s %8s %10s %8s %10s %6s %9s %11s %s\n", "peer", "updates", "accepted", "aggregated", "rejected", "acceptance", "wait", "samples", "challenges", "excluded")
	for _, p := range rep.Peers {
		rej := 0
		for _, n := range p.Rejected {
			rej += n
		}
		wait := "-"
		if p.WaitRounds != nil {
			wait = fmt.Sprint(*p.WaitRounds)
		}
		ex := "-"
		if p.Excluded != nil {
			ex = fmt.Sprintf("from round %d (%s)", *p.Excluded, p.Reason)
		}
		fmt.Fprintf(stdout, "%-54s %7d %8d %10d %8d %10.3f %6s %9d %5d/%-5d %s\n", p.Peer, p.Updates, p.Accepted, p.Aggregated, rej, p.Acceptance, wait, p.Samples, p.Passed, p.Passed+p.Failed, ex)
	}
	return nil
}
