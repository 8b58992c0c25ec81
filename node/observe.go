package node

import (
	"slices"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/runspec"
)

// Observer watches a node as it runs: a monitor that serves metrics and a
// dashboard (package monitor), a test. The node calls it from its loop and
// from the goroutines that serve peers, so an Observer must be safe for
// concurrent use, return quickly, never block, and never call back into
// the node. What it is handed is its own (copies, not views).
type Observer interface {
	// Started: the node runs (once, before any other call).
	Started(Start)
	// Decided: the node decided or adopted a round.
	Decided(Snapshot)
	// Noted: something the node did or judged between decisions.
	Noted(Note)
	// Stopped: the node ends (once, last).
	Stopped(Summary)
}

// Start is what a node tells its observer when it runs.
type Start struct {
	Time  time.Time
	Peer  string
	RunID string // full, 64 hex digits
	Spec  runspec.Spec
	Model string
	Round uint64 // the round it starts at (its checkpoint's, or 0)
	// Members is the certified membership of that round (genesis: the
	// founders).
	Members []consensus.Member
	Addrs   []string
	// Stats reads the node's live byte counts; safe from any goroutine
	// until Stopped.
	Stats func() gossip.Stats
}

// Snapshot is a node's view after a round it decided or adopted.
type Snapshot struct {
	Time   time.Time
	Report RoundReport
	// Next is the round the node works on now; Members the certified
	// membership of that round, Excluded the peers the run excluded so
	// far.
	Next     uint64
	Members  []consensus.Member
	Excluded []string
	// What this decision certified: the samples of the aggregated updates
	// (shared equally between their authors, as the audit credits them),
	// the spot-check verdicts it acts on, the peers it excluded (with
	// why), admitted and dropped.
	Samples    uint64
	Verdicts   []Verdict
	Exclusions []Exclusion
	Admitted   []string
	Dropped    []string
	// RoundSeconds is the time since the node's previous decision (0 for
	// its first, or for an adopted round); CertSeconds the time from the
	// node's own update of this round to its certified decision (0 without
	// one).
	RoundSeconds float64
	CertSeconds  float64
}

// Verdict is a spot-check verdict a decided round acts on.
type Verdict struct {
	Round      uint64 // the round of the update checked
	Accused    string
	Challenger string
	Pass       bool
	Reason     string
}

// The kinds of a Note.
const (
	NoteUpdate    = "update"     // an update the node holds (validated), once per update: Peer, Round
	NoteRejected  = "rejected"   // a message the node refused: Peer, Round, Reason (its kind), Detail
	NoteChallenge = "challenge"  // a spot-check this node ran: Peer (accused), Round, Pass, Reason, Seconds
	NoteDispute   = "dispute"    // a failed verdict this node refereed: Peer (accused), Round, Reason (ruling), Detail, Seconds
	NoteTrained   = "trained"    // this node's inner steps of a round: Round, Steps, Seconds
	NoteStateSync = "state_sync" // a certified state fetched and adopted: Round, Seconds
)

// Note is one thing a node did or judged.
type Note struct {
	Time    time.Time
	Kind    string
	Round   uint64
	Peer    string
	Pass    bool
	Reason  string
	Detail  string
	Seconds float64
	Steps   int
}

// observing is the node's side of its Observer.
type observing struct {
	o         Observer
	lastAt    time.Time            // the previous decision
	published map[uint64]time.Time // own update published, by round
}

func newObserving(o Observer) *observing {
	if o == nil {
		return nil
	}
	return &observing{o: o, published: map[uint64]time.Time{}}
}

func (n *node) note(x Note) {
	if n.obs == nil {
		return
	}
	x.Time = time.Now()
	n.obs.o.Noted(x)
}

func (n *node) observeStart() {
	if n.obs == nil {
		return
	}
	n.obs.o.Started(Start{Time: n.start, Peer: string(n.self), RunID: n.spec.RunID().String(), Spec: n.spec, Model: n.model.String(),
		Round: n.eng.Round(), Members: slices.Clone(n.eng.Members().List), Addrs: n.tr.Addrs(), Stats: n.tr.Stats})
}

// observePublished notes when the node published its update of round.
func (n *node) observePublished(round uint64) {
	if n.obs == nil {
		return
	}
	if _, ok := n.obs.published[round]; !ok {
		n.obs.published[round] = time.Now()
	}
	for r := range n.obs.published {
		if r+4 < round {
			delete(n.obs.published, r)
		}
	}
}

// observeDecided hands the observer the node's view after res.
func (n *node) observeDecided(res consensus.Decided, rep RoundReport) {
	if n.obs == nil {
		return
	}
	now := time.Now()
	s := Snapshot{Time: now, Report: rep, Next: n.eng.Round(), Members: slices.Clone(n.eng.Members().List), Samples: res.Samples}
	s.Report.Authors = slices.Clone(rep.Authors)
	for _, p := range n.eng.Members().Excluded {
		s.Excluded = append(s.Excluded, string(p))
	}
	if res.Value != nil && !res.Restored {
		for _, v := range res.Value.Verdicts {
			s.Verdicts = append(s.Verdicts, Verdict{Round: v.Round, Accused: string(v.Accused), Challenger: string(v.From), Pass: v.Pass, Reason: v.Reason})
		}
	}
	for _, x := range res.Excluded {
		s.Exclusions = append(s.Exclusions, Exclusion{Peer: string(x.Peer), Round: res.Round + 1, Reason: x.Reason()})
	}
	if res.Restored {
		for _, p := range n.adoptedExclusions() {
			s.Exclusions = append(s.Exclusions, Exclusion{Peer: string(p), Round: n.eng.Round(), Reason: "in the certified state adopted"})
		}
	}
	for _, p := range res.Admitted {
		s.Admitted = append(s.Admitted, string(p))
	}
	for _, p := range res.Dropped {
		s.Dropped = append(s.Dropped, string(p))
	}
	if !res.Restored && !n.obs.lastAt.IsZero() {
		s.RoundSeconds = now.Sub(n.obs.lastAt).Seconds()
	}
	if t, ok := n.obs.published[res.Round]; ok && !res.Restored {
		s.CertSeconds = now.Sub(t).Seconds()
	}
	n.obs.lastAt = now
	n.obs.o.Decided(s)
}
