// Package monitor watches a running node (it is a node.Observer) and
// serves what it sees over HTTP: Prometheus metrics at /metrics, a live
// dashboard at /, and the dashboard's data as JSON at /api/state.
//
// Every Monitor has its own Prometheus registry (no global state), so
// that several nodes in one process (tests, an embedding program) each
// expose their own metrics. Everything it shows comes from the node: the
// certified membership and decisions it hands over per round, and the
// node's own judgements (updates it held, messages it refused, checks it
// ran) as they happen.
package monitor

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/node"
)

// Limits on what a monitor keeps, so that neither a long run nor a flood
// of identities grows it without bound.
const (
	maxHistory       = 5000 // rounds in the curves
	maxEvents        = 200  // recent notable events
	maxContributors  = 1024 // peers in the contribution table; the rest count as one row
	maxPeerReasons   = 8    // kinds of refusal per peer; the rest count as "other"
	otherPeers       = "(other peers)"
	maxEventTextSize = 400
)

// Monitor is a node's observer: metrics, history and the contribution
// table. Create it with New, hand it to node.Config.Observer, and serve
// its Handler.
type Monitor struct {
	reg  *prometheus.Registry
	met  *metrics
	live *live

	mu        sync.Mutex
	statsFn   func() gossip.Stats // nil until started, and after the node stopped
	final     *gossip.Stats       // the node's last counts, once stopped
	counters  map[string]uint64   // the highest value each live counter showed
	peer      string
	runID     string
	model     string
	spec      SpecSummary
	addrs     []string
	started   time.Time
	stopped   time.Time
	round     uint64
	decided   int64 // the last decided round, -1 before any
	members   []Member
	voters    int
	excluded  int
	history   []RoundPoint
	lastIn    uint64
	lastOut   uint64
	contribs  map[string]*contrib
	events    []Event
	own       OwnChecks
	lastEval  *Evaluation
	memberAt  map[string]time.Time // when this node first saw each peer a member
	updatedAt time.Time
}

// New returns a monitor with its own registry.
func New() *Monitor {
	m := &Monitor{reg: prometheus.NewRegistry(), decided: -1, counters: map[string]uint64{}, contribs: map[string]*contrib{}, memberAt: map[string]time.Time{}}
	m.met = newMetrics(m.reg)
	m.live = newLive(m)
	m.reg.MustRegister(m.live)
	return m
}

// Registry is the monitor's Prometheus registry: what /metrics serves.
func (m *Monitor) Registry() *prometheus.Registry { return m.reg }

var _ node.Observer = (*Monitor)(nil)

// stats reads the node's live byte counts (its last ones once it
// stopped).
func (m *Monitor) stats() (gossip.Stats, bool) {
	m.mu.Lock()
	fn, final := m.statsFn, m.final
	m.mu.Unlock()
	switch {
	case final != nil:
		return *final, true
	case fn != nil:
		return fn(), true
	}
	return gossip.Stats{}, false
}

// monotonic returns v, or the highest value the series key showed before
// if v is lower: a counter never goes down (the "transport" category is
// the libp2p total less the categories counted apart, which can dip).
// Called with mu held.
func (m *Monitor) monotonic(key string, v uint64) uint64 {
	if p := m.counters[key]; p > v {
		return p
	}
	m.counters[key] = v
	return v
}

// Started implements node.Observer.
func (m *Monitor) Started(s node.Start) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peer, m.runID, m.model, m.statsFn, m.started, m.round = s.Peer, s.RunID, s.Model, s.Stats, s.Time, s.Round
	m.addrs = slices.Clone(s.Addrs)
	m.spec = summarize(s.Spec, s.Model)
	m.setMembers(s.Members, s.Time)
	m.met.planned.Set(float64(s.Spec.Run.Rounds))
	m.met.round.Set(float64(s.Round))
	m.event(s.Time, "start", s.Round, "node %s started at round %d", short(s.Peer), s.Round)
	m.updatedAt = time.Now()
}

// Stopped implements node.Observer.
func (m *Monitor) Stopped(s node.Summary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := s.Stats
	m.final, m.statsFn, m.stopped = &st, nil, time.Now()
	m.event(m.stopped, "stop", s.Rounds, "node stopped after %d rounds", s.Rounds)
	m.updatedAt = time.Now()
}

// Decided implements node.Observer.
func (m *Monitor) Decided(s node.Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rep := s.Report
	how := "applied"
	if rep.Restored {
		how = "adopted"
	}
	m.met.decided.WithLabelValues(how).Inc()
	m.met.round.Set(float64(s.Next))
	m.met.excludedPeers.Set(float64(len(s.Excluded)))
	m.round, m.decided, m.excluded = s.Next, int64(rep.Round), len(s.Excluded)
	if !rep.Restored {
		m.met.innerLoss.Set(float64(rep.Loss))
		m.met.aggregated.Add(float64(len(rep.Authors)))
		m.met.samples.Add(float64(s.Samples))
		m.met.stragglers.Add(float64(len(rep.Late)))
		m.met.takenLate.Add(float64(len(rep.LateIn)))
		for _, p := range rep.Late {
			m.contrib(p).Late++
		}
		for _, p := range rep.LateIn {
			m.contrib(p).TakenLate++
		}
	}
	if s.RoundSeconds > 0 {
		m.met.roundSeconds.Observe(s.RoundSeconds)
	}
	if s.CertSeconds > 0 {
		m.met.certSeconds.Observe(s.CertSeconds)
	}
	p := RoundPoint{Round: rep.Round, Time: s.Time, Updates: rep.Updates, Members: len(s.Members), Peers: rep.Peers, Seconds: s.RoundSeconds, Restored: rep.Restored}
	if !rep.Restored {
		l := float64(rep.Loss)
		p.InnerLoss = &l
	}
	if rep.AgreedAccuracy != nil && rep.AgreedLoss != nil {
		a, l := *rep.AgreedAccuracy, *rep.AgreedLoss
		p.AgreedAccuracy, p.AgreedLoss = &a, &l
		m.met.agreedAccuracy.Set(a)
		m.met.agreedLoss.Set(l)
		m.met.evaluatedRound.Set(float64(rep.Round))
		m.lastEval = &Evaluation{Round: rep.Round, Accuracy: a, Loss: l}
	}
	in, out := rep.Traffic.TotalIn(), rep.Traffic.TotalOut()
	p.BytesIn, p.BytesOut = in-min(in, m.lastIn), out-min(out, m.lastOut)
	m.lastIn, m.lastOut = max(in, m.lastIn), max(out, m.lastOut)
	m.history = append(m.history, p)
	if len(m.history) > maxHistory {
		m.history = slices.Delete(m.history, 0, len(m.history)-maxHistory)
	}

	m.setMembers(s.Members, s.Time)
	// What this decision credited: each author an equal share of the
	// samples, as the audit does; the first aggregated update ends a
	// peer's wait.
	if !rep.Restored && len(rep.Authors) > 0 {
		share := s.Samples / uint64(len(rep.Authors))
		for _, a := range rep.Authors {
			c := m.contrib(a)
			c.Aggregated++
			c.Credit += share
			if c.WaitRounds == nil {
				since := rep.Round
				if c.Since != nil {
					since = *c.Since
				}
				w := rep.Round - min(rep.Round, since)
				c.WaitRounds = &w
				if t, ok := m.memberAt[a]; ok {
					sec := s.Time.Sub(t).Seconds()
					c.WaitSeconds = &sec
				}
			}
		}
	}
	for _, v := range s.Verdicts {
		c := m.contrib(v.Accused)
		res := "passed"
		if v.Pass {
			c.Passed++
		} else {
			c.Failed++
			res = "failed"
			m.event(s.Time, "verdict", v.Round, "%s's round-%d update failed a certified check by %s: %s", short(v.Accused), v.Round, short(v.Challenger), v.Reason)
		}
		m.met.verdicts.WithLabelValues(res).Inc()
	}
	for _, x := range s.Exclusions {
		c := m.contrib(x.Peer)
		r := x.Round
		c.ExcludedFrom, c.ExcludedReason = &r, x.Reason
		m.met.exclusions.WithLabelValues(exclusionCause(x.Reason)).Inc()
		m.event(s.Time, "excluded", rep.Round, "%s excluded from round %d on: %s", short(x.Peer), x.Round, x.Reason)
	}
	for _, p := range s.Admitted {
		m.met.admitted.Inc()
		m.event(s.Time, "admitted", rep.Round, "%s admitted from round %d on", short(p), rep.Round+1)
	}
	for _, p := range s.Dropped {
		m.met.dropped.Inc()
		c := m.contrib(p)
		c.Left = "dropped: no update aggregated for too many rounds"
		m.event(s.Time, "dropped", rep.Round, "%s dropped: no update aggregated for too many rounds", short(p))
	}
	if rep.Restored {
		m.event(s.Time, "adopted", rep.Round, "round %d adopted from a peer (certificate checked)", rep.Round)
	}
	m.updatedAt = time.Now()
}

// Noted implements node.Observer.
func (m *Monitor) Noted(x node.Note) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch x.Kind {
	case node.NoteUpdate:
		m.met.validated.Inc()
		m.contrib(x.Peer).Seen++
	case node.NoteRejected:
		m.met.rejected.WithLabelValues(m.met.reason(x.Reason)).Inc()
		c := m.contrib(x.Peer)
		r := x.Reason
		if _, ok := c.Rejected[r]; !ok && len(c.Rejected) >= maxPeerReasons {
			r = "other"
		}
		c.Rejected[r]++
	case node.NoteChallenge:
		res := "passed"
		m.own.Run++
		if x.Pass {
			m.own.Passed++
		} else {
			res = "failed"
			m.own.Failed++
		}
		m.met.challenges.WithLabelValues(res).Inc()
		m.met.challengeSeconds.Observe(x.Seconds)
		text := "passed"
		if !x.Pass {
			text = "FAILED: " + x.Reason
		}
		m.event(x.Time, "challenge", x.Round, "this node checked %s's round-%d update: %s", short(x.Peer), x.Round, text)
	case node.NoteDispute:
		m.own.Refereed++
		m.met.disputes.WithLabelValues(x.Reason).Inc() // a consensus.Ruling: a handful of values
		m.met.disputeSeconds.Observe(x.Seconds)
		m.event(x.Time, "dispute", x.Round, "this node refereed a failed verdict on %s's round-%d update: %s", short(x.Peer), x.Round, x.Reason)
	case node.NoteTrained:
		m.met.trainSteps.Add(float64(x.Steps))
		m.met.trainSeconds.Add(x.Seconds)
		if x.Steps > 0 {
			m.met.stepSeconds.Observe(x.Seconds / float64(x.Steps))
		}
		m.own.TrainedRounds++
		m.own.TrainSeconds += x.Seconds
	case node.NoteStateSync:
		m.met.syncSeconds.Observe(x.Seconds)
		m.event(x.Time, "state_sync", x.Round, "fetched and adopted the certified state of round %d in %.2fs", x.Round, x.Seconds)
	}
	m.updatedAt = time.Now()
}

// setMembers takes the certified membership of the current round. Called
// with mu held.
func (m *Monitor) setMembers(list []consensus.Member, at time.Time) {
	m.members = m.members[:0]
	now := map[string]bool{}
	voters := 0
	for _, x := range list {
		id := string(x.ID)
		now[id] = true
		if x.Seat {
			voters++
		}
		m.members = append(m.members, Member{Peer: id, Founder: x.Founder, Seat: x.Seat, Since: x.Since, Work: x.Work})
		c := m.contrib(id)
		if c.Peer == otherPeers {
			continue
		}
		c.Member, c.everMember, c.Founder, c.Seat, c.Work = true, true, x.Founder, x.Seat, x.Work
		since := x.Since
		c.Since = &since
		if _, ok := m.memberAt[id]; !ok {
			m.memberAt[id] = at
		}
	}
	for id, c := range m.contribs {
		if !now[id] {
			c.Member, c.Seat = false, false
		}
	}
	m.voters = voters
	m.met.members.Set(float64(len(list)))
	m.met.voters.Set(float64(voters))
}

// contrib returns peer's row, creating it (or the shared row of the
// peers beyond maxContributors). Called with mu held.
func (m *Monitor) contrib(peer string) *contrib {
	if c, ok := m.contribs[peer]; ok {
		return c
	}
	if len(m.contribs) >= maxContributors {
		peer = otherPeers
		if c, ok := m.contribs[peer]; ok {
			return c
		}
	}
	c := &contrib{Contributor: Contributor{Peer: peer, Rejected: map[string]int{}}}
	m.contribs[peer] = c
	return c
}

// sortedContribs returns the rows: members first, then by peer ID. Called
// with mu held.
func (m *Monitor) sortedContribs() []*contrib {
	out := make([]*contrib, 0, len(m.contribs))
	for _, c := range m.contribs {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *contrib) int {
		if a.everMember != b.everMember {
			if a.everMember {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Peer, b.Peer)
	})
	return out
}

func short(p string) string {
	if len(p) > 12 {
		return p[:4] + "…" + p[len(p)-6:]
	}
	return p
}
