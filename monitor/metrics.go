package monitor

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/vtrain/vtrain/gossip"
)

// maxReasons bounds the reason labels of vtrain_rejected_messages_total
// (further kinds count as "other"), maxPeerSeries the peers that get
// per-peer series (the certified members come first; the membership is
// bounded by the spec's members.max).
const (
	maxReasons    = 32
	maxPeerSeries = 256
)

// metrics are a node's Prometheus metrics, registered on its own
// registry.
type metrics struct {
	round, planned, members, voters, excludedPeers        prometheus.Gauge
	agreedAccuracy, agreedLoss, evaluatedRound            prometheus.Gauge
	innerLoss                                             prometheus.Gauge
	decided                                               *prometheus.CounterVec
	validated, aggregated, samples, stragglers, takenLate prometheus.Counter
	rejected                                              *prometheus.CounterVec
	challenges, verdicts, disputes, exclusions            *prometheus.CounterVec
	admitted, dropped                                     prometheus.Counter
	trainSteps, trainSeconds                              prometheus.Counter
	roundSeconds, syncSeconds, certSeconds                prometheus.Histogram
	stepSeconds, challengeSeconds, disputeSeconds         prometheus.Histogram
	reasonsMu                                             sync.Mutex
	reasons                                               map[string]bool
}

func newMetrics(reg prometheus.Registerer) *metrics {
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		x := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(x)
		return x
	}
	h := func(name, help string, buckets []float64) prometheus.Histogram {
		x := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
		reg.MustRegister(x)
		return x
	}
	m := &metrics{
		round:          g("vtrain_round", "The round the node works on: rounds decided so far (the next to decide)."),
		planned:        g("vtrain_rounds_planned", "Rounds the run's spec asks for (0: until stopped)."),
		members:        g("vtrain_members", "Members of the current round, by the certified membership."),
		voters:         g("vtrain_voters", "Members of the current round that hold a voting seat."),
		excludedPeers:  g("vtrain_excluded_peers", "Peers the run has excluded so far, by the certified membership."),
		agreedAccuracy: g("vtrain_agreed_accuracy_ratio", "Test accuracy of the agreed model (θ after the round), at the last round the node evaluated it."),
		agreedLoss:     g("vtrain_agreed_loss", "Test loss (cross-entropy) of the agreed model, at the last round the node evaluated it."),
		evaluatedRound: g("vtrain_agreed_evaluated_round", "The round whose agreed model vtrain_agreed_accuracy_ratio and vtrain_agreed_loss describe."),
		innerLoss:      g("vtrain_inner_loss", "Mean training loss of the inner steps behind the last decided round's aggregated updates."),
		decided:        cv("vtrain_rounds_decided_total", "Rounds the node decided (applied: it aggregated the updates itself; adopted: it took a certified state from a peer).", "how"),
		validated:      c("vtrain_updates_validated_total", "Updates the node validated and held (its own included), each once."),
		aggregated:     c("vtrain_updates_aggregated_total", "Updates aggregated by the rounds the node applied."),
		stragglers:     c("vtrain_stragglers_total", "Members that rounds the node applied expected an update from (voters, and those aggregated the round before) and did not aggregate one on time: it came after the round's agreed deadline, or not at all."),
		takenLate:      c("vtrain_updates_taken_late_total", "Late updates (of the round before, which did not aggregate one of their authors') aggregated by the rounds the node applied."),
		samples:        c("vtrain_samples_aggregated_total", "Training samples behind the updates aggregated by the rounds the node applied."),
		rejected:       cv("vtrain_rejected_messages_total", "Messages the node refused, by kind of reason (at most 32 kinds, then other).", "reason"),
		challenges:     cv("vtrain_challenges_total", "Spot-checks this node ran as challenger, by result.", "result"),
		verdicts:       cv("vtrain_verdicts_certified_total", "Spot-check verdicts that rounds the node applied acted on, by result.", "result"),
		disputes:       cv("vtrain_disputes_refereed_total", "Failed verdicts this node refereed, by its ruling.", "ruling"),
		exclusions:     cv("vtrain_exclusions_total", "Peers the run excluded, as the node saw it, by cause.", "cause"),
		admitted:       c("vtrain_admitted_total", "Joiners the run admitted, as the node saw it."),
		dropped:        c("vtrain_dropped_total", "Members dropped for absence, as the node saw it."),
		trainSteps:     c("vtrain_train_steps_total", "Inner training steps this node ran."),
		trainSeconds:   c("vtrain_train_seconds_total", "Time this node spent in inner training steps."),
		roundSeconds:   h("vtrain_round_duration_seconds", "Time between two rounds the node decided in a row.", prometheus.ExponentialBuckets(0.25, 2, 12)),
		syncSeconds:    h("vtrain_state_sync_seconds", "Time to fetch a certified state from a peer (joining, catching up).", prometheus.ExponentialBuckets(0.005, 3, 10)),
		certSeconds:    h("vtrain_certificate_latency_seconds", "Time from the node publishing its update to the round's certified decision.", prometheus.ExponentialBuckets(0.05, 2, 12)),
		stepSeconds:    h("vtrain_train_step_seconds", "Mean time of one inner training step, observed once per round trained.", prometheus.ExponentialBuckets(0.0001, 3, 10)),
		challengeSeconds: h("vtrain_challenge_seconds", "Time this node spent on one spot-check (fetch and re-execution).",
			prometheus.ExponentialBuckets(0.01, 3, 10)),
		disputeSeconds: h("vtrain_dispute_seconds", "Time this node spent refereeing one failed verdict.", prometheus.ExponentialBuckets(0.01, 3, 10)),
		reasons:        map[string]bool{},
	}
	// Every series a dashboard expects exists from the start, at zero.
	for _, r := range []string{"passed", "failed"} {
		m.challenges.WithLabelValues(r)
		m.verdicts.WithLabelValues(r)
	}
	for _, how := range []string{"applied", "adopted"} {
		m.decided.WithLabelValues(how)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// reason returns the label for a kind of reason: itself while fewer than
// maxReasons kinds have been seen, "other" after.
func (m *metrics) reason(r string) string {
	r = strings.TrimSpace(r)
	if r == "" {
		r = "unknown"
	}
	m.reasonsMu.Lock()
	defer m.reasonsMu.Unlock()
	if m.reasons[r] {
		return r
	}
	if len(m.reasons) >= maxReasons {
		return "other"
	}
	m.reasons[r] = true
	return r
}

// exclusionCause names the cause of an exclusion from its reason
// (consensus.Exclusion.Reason and the node's adopted exclusions).
func exclusionCause(reason string) string {
	switch {
	case strings.HasPrefix(reason, "failed the challenge"):
		return "failed_check"
	case strings.HasPrefix(reason, "signed a false verdict"):
		return "false_verdict"
	case strings.HasPrefix(reason, "signed two"):
		return "equivocation"
	case strings.Contains(reason, "certified state adopted"):
		return "adopted"
	}
	return "other"
}

// live collects what the monitor reads at scrape time: the node's byte
// counters (from its transport), its connected peers and the per-peer
// contribution series.
type live struct {
	m *Monitor

	info, peers, bytes, delivered, duplicates *prometheus.Desc
	peerAggregated, peerCredit, peerChecks    *prometheus.Desc
	peerRejected                              *prometheus.Desc
}

func newLive(m *Monitor) *live {
	return &live{m: m,
		info:           prometheus.NewDesc("vtrain_info", "The run and peer this node is: always 1.", []string{"run_id", "peer", "model"}, nil),
		peers:          prometheus.NewDesc("vtrain_peers", "Peers connected on the run's gossip topic.", nil, nil),
		bytes:          prometheus.NewDesc("vtrain_wire_bytes_total", "Bytes the node moved on the wire, by direction and category (package gossip's accounting).", []string{"direction", "category"}, nil),
		delivered:      prometheus.NewDesc("vtrain_gossip_delivered_messages_total", "Gossip messages delivered to the node (first copies).", nil, nil),
		duplicates:     prometheus.NewDesc("vtrain_gossip_duplicate_messages_total", "Gossip copies the node received of messages it had already seen.", nil, nil),
		peerAggregated: prometheus.NewDesc("vtrain_peer_updates_aggregated_total", "A peer's updates aggregated by the rounds this node applied.", []string{"peer"}, nil),
		peerCredit:     prometheus.NewDesc("vtrain_peer_credit_samples_total", "A peer's credit: samples of its aggregated updates (the audit's unit of work).", []string{"peer"}, nil),
		peerChecks:     prometheus.NewDesc("vtrain_peer_challenges_total", "Certified spot-check verdicts on a peer's updates, by result.", []string{"peer", "result"}, nil),
		peerRejected:   prometheus.NewDesc("vtrain_peer_rejected_messages_total", "A peer's messages this node refused.", []string{"peer"}, nil),
	}
}

func (l *live) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l.info, l.peers, l.bytes, l.delivered, l.duplicates, l.peerAggregated, l.peerCredit, l.peerChecks, l.peerRejected} {
		ch <- d
	}
}

func (l *live) Collect(ch chan<- prometheus.Metric) {
	st, ok := l.m.stats()
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.m.runID != "" {
		ch <- prometheus.MustNewConstMetric(l.info, prometheus.GaugeValue, 1, l.m.runID, l.m.peer, l.m.model)
	}
	if ok {
		ch <- prometheus.MustNewConstMetric(l.peers, prometheus.GaugeValue, float64(st.Peers))
		for _, dir := range []string{"in", "out"} {
			by := st.Traffic.In
			if dir == "out" {
				by = st.Traffic.Out
			}
			for _, cat := range gossip.ByteCategories {
				ch <- prometheus.MustNewConstMetric(l.bytes, prometheus.CounterValue, float64(l.m.monotonic(dir+"/"+cat, by[cat])), dir, cat)
			}
		}
		ch <- prometheus.MustNewConstMetric(l.delivered, prometheus.CounterValue, float64(l.m.monotonic("delivered", st.Traffic.Delivered)))
		ch <- prometheus.MustNewConstMetric(l.duplicates, prometheus.CounterValue, float64(l.m.monotonic("duplicates", st.Traffic.Duplicates)))
	}
	k := 0
	for _, c := range l.m.sortedContribs() {
		if k == maxPeerSeries {
			break
		}
		if !c.everMember {
			continue // outsiders: their refusals count by reason, not by identity
		}
		k++
		ch <- prometheus.MustNewConstMetric(l.peerAggregated, prometheus.CounterValue, float64(c.Aggregated), c.Peer)
		ch <- prometheus.MustNewConstMetric(l.peerCredit, prometheus.CounterValue, float64(c.Credit), c.Peer)
		ch <- prometheus.MustNewConstMetric(l.peerChecks, prometheus.CounterValue, float64(c.Passed), c.Peer, "passed")
		ch <- prometheus.MustNewConstMetric(l.peerChecks, prometheus.CounterValue, float64(c.Failed), c.Peer, "failed")
		ch <- prometheus.MustNewConstMetric(l.peerRejected, prometheus.CounterValue, float64(c.rejectedTotal()), c.Peer)
	}
}
