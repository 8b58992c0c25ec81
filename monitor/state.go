package monitor

import (
	"fmt"
	"maps"
	"time"

	"github.com/vtrain/vtrain/runspec"
)

// State is what /api/state serves: the dashboard's data.
type State struct {
	Peer     string      `json:"peer"`
	RunID    string      `json:"run_id"` // 64 hex digits: what vtrain node --join --run takes
	Spec     SpecSummary `json:"spec"`
	Addrs    []string    `json:"join_addrs"`
	Started  time.Time   `json:"started"`
	Stopped  *time.Time  `json:"stopped,omitempty"`
	Updated  time.Time   `json:"updated"`
	Round    uint64      `json:"round"`   // the round the node works on
	Decided  int64       `json:"decided"` // the last round it decided, -1 before any
	Members  []Member    `json:"members"`
	Voters   int         `json:"voters"`
	Excluded int         `json:"excluded"`
	Peers    int         `json:"peers"` // connected on the run's topic
	BytesIn  uint64      `json:"bytes_in"`
	BytesOut uint64      `json:"bytes_out"`
	// Evaluation is the agreed model's last evaluation; Rounds the
	// curves, one point per decided round (after ?since=R: those after
	// round R).
	Evaluation   *Evaluation   `json:"evaluation,omitempty"`
	Rounds       []RoundPoint  `json:"rounds"`
	Contributors []Contributor `json:"contributors"`
	Own          OwnChecks     `json:"own"`
	Events       []Event       `json:"events"` // newest last
}

// SpecSummary is the run spec in a few fields.
type SpecSummary struct {
	Name        string  `json:"name,omitempty"`
	Model       string  `json:"model"`
	Data        string  `json:"data"`
	Rounds      int     `json:"rounds"` // 0: until stopped
	InnerSteps  int     `json:"inner_steps"`
	Batch       int     `json:"batch"`
	Inner       string  `json:"inner_optimizer"`
	Outer       string  `json:"outer_optimizer"`
	Compression string  `json:"compression"`
	Aggregation string  `json:"aggregation"`
	Quorum      int     `json:"quorum"`
	Timeout     string  `json:"round_timeout"`
	CheckRate   float64 `json:"challenge_rate"`
	NewcomerRt  float64 `json:"newcomer_challenge_rate"`
	Founders    int     `json:"founders"`
	MaxMembers  int     `json:"max_members"`
	Privacy     string  `json:"privacy,omitempty"`
}

func summarize(s runspec.Spec, model string) SpecSummary {
	comp := fmt.Sprintf("top %.3g%%, %d bits", 100*s.Compression.Fraction, s.Compression.Bits)
	agg := s.Aggregation.Rule
	if agg == runspec.AggTrimmedMean {
		agg = fmt.Sprintf("%s (%.2g each end)", agg, s.Aggregation.Trim)
	}
	return SpecSummary{Name: s.Run.Name, Model: model, Data: s.Data.Source, Rounds: s.Run.Rounds, InnerSteps: s.Inner.Steps, Batch: s.Inner.Batch,
		Inner: fmt.Sprintf("%s lr %g", s.Inner.Optimizer, s.Inner.LR), Outer: fmt.Sprintf("%s lr %g", s.Outer.Optimizer, s.Outer.LR),
		Compression: comp, Aggregation: agg, Quorum: s.Rounds.Quorum, Timeout: s.Rounds.Timeout.String(),
		CheckRate: s.Verify.Rate, NewcomerRt: s.Verify.NewcomerRate, Founders: len(s.Members.Genesis), MaxMembers: s.Members.Max, Privacy: s.Privacy.Mode}
}

// Member is one member of the current round, as certified.
type Member struct {
	Peer    string `json:"peer"`
	Founder bool   `json:"founder"`
	Seat    bool   `json:"seat"`  // holds a vote
	Since   uint64 `json:"since"` // the round it became a member
	Work    uint64 `json:"work"`  // certified rounds that aggregated its update
}

// Evaluation is the agreed model's test accuracy and loss after a round.
type Evaluation struct {
	Round    uint64  `json:"round"`
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
}

// RoundPoint is one decided round in the curves.
type RoundPoint struct {
	Round          uint64    `json:"round"`
	Time           time.Time `json:"time"`
	InnerLoss      *float64  `json:"inner_loss,omitempty"` // absent for a round adopted from a peer
	AgreedAccuracy *float64  `json:"agreed_accuracy,omitempty"`
	AgreedLoss     *float64  `json:"agreed_loss,omitempty"`
	BytesIn        uint64    `json:"bytes_in"`  // moved since the previous decided round
	BytesOut       uint64    `json:"bytes_out"` // moved since the previous decided round
	Updates        int       `json:"updates"`
	Members        int       `json:"members"`
	Peers          int       `json:"peers"`
	Seconds        float64   `json:"seconds"` // since the previous decision (0: first, or adopted)
	Restored       bool      `json:"adopted,omitempty"`
}

// Contributor is a peer's row of the contribution table, as this node saw
// the run: its certified membership and decisions, its own judgements.
// Acceptance is aggregated updates over updates seen (held plus refused
// messages), as the audit defines it.
type Contributor struct {
	Peer           string         `json:"peer"`
	Member         bool           `json:"member"` // of the current round
	Founder        bool           `json:"founder"`
	Seat           bool           `json:"seat"`
	Since          *uint64        `json:"since"` // the round it became a member; null if never
	Seen           int            `json:"updates_seen"`
	Aggregated     int            `json:"updates_aggregated"`
	Late           int            `json:"rounds_late"` // rounds that expected its update and did not aggregate it on time
	TakenLate      int            `json:"taken_late"`  // its late updates aggregated a round after their own
	Rejected       map[string]int `json:"rejected"`    // refused messages by kind of reason
	Acceptance     *float64       `json:"acceptance_rate"`
	WaitRounds     *uint64        `json:"wait_rounds"`  // from membership to its first aggregated update
	WaitSeconds    *float64       `json:"wait_seconds"` // the same, in time as this node saw it
	Credit         uint64         `json:"credit"`       // samples of its aggregated updates
	Work           uint64         `json:"work"`         // certified rounds that aggregated its update
	Passed         int            `json:"challenges_passed"`
	Failed         int            `json:"challenges_failed"`
	ExcludedFrom   *uint64        `json:"excluded_from"`
	ExcludedReason string         `json:"excluded_reason,omitempty"`
	Left           string         `json:"left,omitempty"` // dropped for absence
}

type contrib struct {
	Contributor
	everMember bool
}

func (c *contrib) rejectedTotal() int {
	t := 0
	for _, n := range c.Rejected {
		t += n
	}
	return t
}

// OwnChecks is this node's share of the verification work.
type OwnChecks struct {
	Run           int     `json:"challenges_run"`
	Passed        int     `json:"challenges_passed"`
	Failed        int     `json:"challenges_failed"`
	Refereed      int     `json:"disputes_refereed"`
	TrainedRounds int     `json:"rounds_trained"`
	TrainSeconds  float64 `json:"train_seconds"`
}

// Event is a notable thing the node saw.
type Event struct {
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"`
	Round uint64    `json:"round"`
	Text  string    `json:"text"`
}

// event adds an event. Called with mu held.
func (m *Monitor) event(t time.Time, kind string, round uint64, format string, a ...any) {
	text := fmt.Sprintf(format, a...)
	if len(text) > maxEventTextSize {
		text = text[:maxEventTextSize] + "…"
	}
	m.events = append(m.events, Event{Time: t, Kind: kind, Round: round, Text: text})
	if len(m.events) > maxEvents {
		m.events = m.events[len(m.events)-maxEvents:]
	}
}

// State returns a copy of what the monitor holds now.
func (m *Monitor) State() State { return m.StateSince(-1) }

// StateSince is State with only the curve points of the rounds after
// round since (-1: all): what a page that holds the earlier ones asks
// for every second.
func (m *Monitor) StateSince(since int64) State {
	st, live := m.stats()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := State{Peer: m.peer, RunID: m.runID, Spec: m.spec, Addrs: m.addrs, Started: m.started, Updated: m.updatedAt, Round: m.round, Decided: m.decided,
		Members: append([]Member{}, m.members...), Voters: m.voters, Excluded: m.excluded, Rounds: []RoundPoint{},
		Own: m.own, Events: append([]Event{}, m.events...), Contributors: []Contributor{}}
	for _, p := range m.history {
		if int64(p.Round) > since {
			s.Rounds = append(s.Rounds, p)
		}
	}
	if !m.stopped.IsZero() {
		t := m.stopped
		s.Stopped = &t
	}
	if m.lastEval != nil {
		e := *m.lastEval
		s.Evaluation = &e
	}
	if live {
		s.Peers = st.Peers
		s.BytesIn, s.BytesOut = st.Traffic.TotalIn(), st.Traffic.TotalOut()
	}
	for _, c := range m.sortedContribs() {
		x := c.Contributor
		x.Rejected = maps.Clone(c.Rejected)
		if seen := x.Seen + c.rejectedTotal(); seen > 0 {
			a := min(1, float64(x.Aggregated)/float64(seen))
			x.Acceptance = &a
		}
		s.Contributors = append(s.Contributors, x)
	}
	return s
}
