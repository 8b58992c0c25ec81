package node

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/history"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/ledger"
)

// The kinds of event a node reports on Config.Out. With JSONLines each is
// one JSON object on a line: {"t": RFC 3339 time, "event": kind, "msg":
// the text line, and the kind's fields}; a decided round is the event
// "round" with RoundReport's fields.
const (
	EventStarted   = "started"           // peer, run_id, model, round, role, out: a run started or resumed here
	EventJoined    = "joined"            // peer, run_id, addr (the peer it dialed), model, round, role, out
	EventListening = "listening"         // addr, join (the command that joins the run through addr)
	EventWaiting   = "waiting"           // round, reason, reachable, voters, needed, unreachable, awaited (expected updates not in): no decision for a deadline
	EventWaitPeers = "waiting_for_peers" // have, want, peers (--min-peers, before round 0)
	EventRound     = "round"             // RoundReport
	EventAdmitted  = "admitted"          // round, peer, from_round
	EventDropped   = "dropped"           // round, peer
	EventExcluded  = "excluded"          // round, peer, from_round, reason
	EventChallenge = "challenge"         // round, peer: this node checks peer's update
	EventVerdict   = "verdict"           // round, peer, verdict
	EventProof     = "proof"             // round, update, step, seconds: this private peer proved the step its update was drawn for
	EventRefereed  = "refereed"          // round, challenger, accused, fault, ruling
	EventLedger    = "ledger"            // recovery: the ledger was repaired after a crash
	EventReachable = "reachability"      // reachability: how this node is reachable (when it changes)
	EventDeciding  = "deciding_again"    // round, after_s: the first decision after a stall for want of a quorum
	EventLinger    = "lingering"         // unfinished, max_s: the run is over here; serving the members that have not finished
	EventFinished  = "all_finished"      // after_s: every member has finished (or, with unfinished, this node gave up waiting)
)

// event reports one event: a text line, or with JSONLines a JSON object
// with the kind, the text and the fields (name, value pairs).
func (n *node) event(kind string, fields []any, format string, a ...any) {
	text := fmt.Sprintf(format, a...)
	if !n.cfg.JSONLines {
		fmt.Fprintln(n.cfg.Out, text)
		return
	}
	var b strings.Builder
	t, _ := json.Marshal(time.Now().UTC().Format(time.RFC3339Nano))
	k, _ := json.Marshal(kind)
	m, _ := json.Marshal(text)
	fmt.Fprintf(&b, `{"t":%s,"event":%s,"msg":%s`, t, k, m)
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := json.Marshal(fmt.Sprint(fields[i]))
		v, err := json.Marshal(fields[i+1])
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, ",%s:%s", name, v)
	}
	b.WriteString("}\n")
	fmt.Fprint(n.cfg.Out, b.String())
}

// roundLine is a decided round's JSON line.
type roundLine struct {
	T     string `json:"t"`
	Event string `json:"event"`
	RoundReport
}

// history appends the round's line to metrics.jsonl.
func (n *node) history(rep RoundReport, res consensus.Decided, round gossip.Traffic) {
	if n.hist == nil {
		return
	}
	r := history.Record{Round: rep.Round, Time: time.Now(), AgreedAccuracy: rep.AgreedAccuracy, AgreedLoss: rep.AgreedLoss,
		InnerLoss: float64(rep.Loss), OutBytes: round.Out, InBytes: round.In, TotalOutBytes: rep.Traffic.TotalOut(), TotalInBytes: rep.Traffic.TotalIn(),
		Peers: rep.Peers, Members: rep.Members, Voters: rep.Voters,
		Decision: history.Decision{Hash: rep.Hash, Updates: rep.Updates, Signers: rep.Signers, Restored: rep.Restored,
			Late: rep.Late, DeadlineSeconds: rep.DeadlineSeconds}}
	for _, p := range res.Admitted {
		r.Decision.Admitted = append(r.Decision.Admitted, string(p))
	}
	for _, p := range res.Dropped {
		r.Decision.Dropped = append(r.Decision.Dropped, string(p))
	}
	for _, x := range res.Excluded {
		r.Decision.Excluded = append(r.Decision.Excluded, string(x.Peer))
	}
	if err := n.hist.Append(r); err != nil {
		n.log.Warn("history", "file", history.File, "err", err)
	}
}

// connected reports whether this node has a connection to p (itself
// counts).
func (n *node) connected(p consensus.PeerID) bool {
	if p == n.self {
		return true
	}
	id, err := peer.Decode(string(p))
	return err == nil && n.tr.Host().Network().Connectedness(id) == network.Connected
}

// stalled says why no decision came for a while: which voters it cannot
// reach, if a quorum of them is out of reach, else where the round stands.
func (n *node) stalled(since time.Duration) {
	voters := n.eng.Voters()
	reach := 0
	var gone []string
	for _, v := range voters {
		if n.connected(v) {
			reach++
		} else {
			gone = append(gone, short(string(v)))
		}
	}
	need := 2*len(voters)/3 + 1 // more than two thirds
	r := n.eng.Round()
	since = since.Round(time.Second)
	fields := []any{"round", r, "reachable", reach, "voters", len(voters), "needed", need, "unreachable", gone, "since_s", since.Seconds()}
	if reach < need {
		n.event(EventWaiting, append(fields, "reason", "quorum"), "round %d: no decision for %s: waiting for a quorum: %d of %d members reachable, %d needed (unreachable: %s)",
			r, since, reach, len(voters), need, strings.Join(gone, ", "))
		return
	}
	st := n.eng.Status()
	var awaited []string
	for _, p := range n.eng.Awaited() {
		awaited = append(awaited, short(string(p)))
	}
	n.event(EventWaiting, append(fields, "reason", "agreement", "status", st, "awaited", awaited), "round %d: no decision for %s: %d of %d members reachable, waiting for their votes (%s)",
		r, since, reach, len(voters), st)
}

// waitPeers reports whether round 0 must still wait for --min-peers: the
// peers of the run connected to this node, itself included, are fewer
// than MinPeers. It says who is there whenever that changes.
func (n *node) waitPeers(shown *string) bool {
	if n.cfg.MinPeers <= 1 || n.eng.Round() > 0 || n.resumedAt > 0 {
		return false
	}
	ids := []string{short(string(n.self)) + " (this node)"}
	for _, p := range n.tr.Host().Network().Peers() {
		if ps, err := n.tr.Host().Peerstore().SupportsProtocols(p, gossip.SyncProtocol); err == nil && len(ps) > 0 {
			ids = append(ids, short(p.String()))
		}
	}
	slices.Sort(ids[1:])
	if len(ids) >= n.cfg.MinPeers {
		n.event(EventWaitPeers, []any{"have", len(ids), "want", n.cfg.MinPeers, "peers", ids}, "%d of %d peers here (%s): starting round 0", len(ids), n.cfg.MinPeers, strings.Join(ids, ", "))
		return false
	}
	if s := strings.Join(ids, ", "); s != *shown {
		*shown = s
		n.event(EventWaitPeers, []any{"have", len(ids), "want", n.cfg.MinPeers, "peers", ids}, "waiting for %d peers before round 0: %d here (%s)", n.cfg.MinPeers, len(ids), s)
	}
	return true
}

// SummaryFile is where a node writes its Summary when it stops.
const SummaryFile = "summary.json"

// writeSummary writes s to the output directory.
func (n *node) writeSummary(s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(n.cfg.OutDir, SummaryFile), b)
}

// carried reads the summary a previous process left in the output
// directory, when this one resumes the same run from its checkpoint: its
// counters go on from there.
func (n *node) carried() *Summary {
	b, err := os.ReadFile(filepath.Join(n.cfg.OutDir, SummaryFile))
	if err != nil {
		return nil
	}
	var s Summary
	if json.Unmarshal(b, &s) != nil || s.RunID != n.spec.RunID().String() || s.Peer != string(n.self) {
		return nil
	}
	return &s
}

// addSummary adds the counters of prev (an earlier process of this node
// in the same run) to s.
func addSummary(s, prev *Summary) {
	if prev == nil {
		return
	}
	c, p := &s.Challenges, prev.Challenges
	c.Run += p.Run
	c.Passed += p.Passed
	c.Failed += p.Failed
	c.Seconds += p.Seconds
	c.Against += p.Against
	c.Refereed += p.Refereed
	c.RefereeSeconds += p.RefereeSeconds
	c.Accused = append(slices.Clone(p.Accused), c.Accused...)
	s.TrainSeconds += prev.TrainSeconds
	s.UpdatesSent += prev.UpdatesSent
	s.PayloadBytes += prev.PayloadBytes
	st, q := &s.Stats, prev.Stats
	st.Published += q.Published
	st.WireIn += q.WireIn
	st.WireOut += q.WireOut
	st.Rejected += q.Rejected
	st.Ignored += q.Ignored
	st.PublishedBy = addMap(st.PublishedBy, q.PublishedBy)
	st.Traffic.Out = addMap(st.Traffic.Out, q.Traffic.Out)
	st.Traffic.In = addMap(st.Traffic.In, q.Traffic.In)
	st.Traffic.Delivered += q.Traffic.Delivered
	st.Traffic.Duplicates += q.Traffic.Duplicates
	for _, x := range prev.Excluded {
		if !slices.ContainsFunc(s.Excluded, func(e Exclusion) bool { return e.Peer == x.Peer }) {
			s.Excluded = append(s.Excluded, x)
		}
	}
	for _, a := range prev.Admitted {
		if !slices.Contains(s.Admitted, a) {
			s.Admitted = append(s.Admitted, a)
		}
	}
	for k, h := range prev.Witnessed {
		if w := s.Witnessed[k]; w == nil && h != nil {
			if s.Witnessed == nil {
				s.Witnessed = map[string]*ledger.SignedTreeHead{}
			}
			s.Witnessed[k] = h
		}
	}
	for i, h := range prev.Hashes {
		if i < len(s.Hashes) && s.Hashes[i] == "" {
			s.Hashes[i] = h
		}
	}
	s.Restarts = prev.Restarts + 1
}

func addMap(a, b map[string]uint64) map[string]uint64 {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = map[string]uint64{}
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}

// RunFile records, in a node's output directory, the run it takes part in
// (its canonical spec) and the addresses of the peers it last knew, so
// that a restart with the same --out needs neither --spec nor --join.
const RunFile = "run.json"

type runFile struct {
	RunID string   `json:"run_id"`
	Spec  []byte   `json:"spec"` // canonical
	Peers []string `json:"peers"`
}

// saveRun records the run and the peers connected now.
func (n *node) saveRun() {
	rf := runFile{RunID: n.spec.RunID().String(), Spec: n.canon, Peers: n.tr.KnownPeers()}
	b, _ := json.Marshal(rf)
	if err := writeAtomic(filepath.Join(n.cfg.OutDir, RunFile), b); err != nil {
		n.log.Warn("run file", "err", err)
	}
}

// ErrNoRun means an output directory holds no run to resume.
var ErrNoRun = errors.New("no run to resume")

// SavedRun returns the run and peer addresses recorded in an output
// directory by a node that took part in it.
func SavedRun(dir string) (runspec.Spec, []string, error) {
	b, err := os.ReadFile(filepath.Join(dir, RunFile))
	if errors.Is(err, os.ErrNotExist) {
		return runspec.Spec{}, nil, fmt.Errorf("%w in %s (no %s: it has not run a node)", ErrNoRun, dir, RunFile)
	}
	if err != nil {
		return runspec.Spec{}, nil, err
	}
	var rf runFile
	if err := json.Unmarshal(b, &rf); err != nil {
		return runspec.Spec{}, nil, fmt.Errorf("%s: %v", filepath.Join(dir, RunFile), err)
	}
	var id runspec.ID
	if h, err := hex.DecodeString(rf.RunID); err != nil || len(h) != len(id) {
		return runspec.Spec{}, nil, fmt.Errorf("%s: run_id %q is not a run ID", filepath.Join(dir, RunFile), rf.RunID)
	} else {
		copy(id[:], h)
	}
	spec, err := runspec.FromCanonical(rf.Spec, id)
	if err != nil {
		return runspec.Spec{}, nil, fmt.Errorf("%s: %v", filepath.Join(dir, RunFile), err)
	}
	return spec, rf.Peers, nil
}
