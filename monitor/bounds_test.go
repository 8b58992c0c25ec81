package monitor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
)

// labels returns the distinct values of label among family's series in
// the monitor's registry.
func labels(t *testing.T, m *Monitor, family, label string) map[string]float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != family {
			continue
		}
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if l.GetName() == label {
					out[l.GetValue()] += s.GetCounter().GetValue() + s.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// TestCardinalityIsBounded floods a monitor as a run under attack would:
// refusals of thousands of identities, each with a reason of its own. The
// reason label keeps maxReasons kinds and "other", the contribution table
// maxContributors rows and one for the rest, per-peer series exist only
// for members, and nothing is lost from the totals.
func TestCardinalityIsBounded(t *testing.T) {
	m := New()
	spec := runspec.Default().WithFounders("founder-a", "founder-b")
	m.Started(node.Start{Time: time.Now(), Peer: "founder-a", RunID: strings.Repeat("ab", 32), Spec: spec, Model: "logreg",
		Members: []consensus.Member{{ID: "founder-a", Founder: true, Seat: true}, {ID: "founder-b", Founder: true, Seat: true}},
		Stats:   func() gossip.Stats { return gossip.Stats{Peers: 1} }})
	const n = 3000
	for i := range n {
		m.Noted(node.Note{Kind: node.NoteRejected, Peer: fmt.Sprintf("sybil-%d", i), Reason: fmt.Sprintf("reason kind %c%c", 'a'+i%26, 'a'+i/26%26)})
	}
	reasons := labels(t, m, "vtrain_rejected_messages_total", "reason")
	total := 0.0
	for _, v := range reasons {
		total += v
	}
	if len(reasons) != maxReasons+1 || reasons["other"] == 0 || total != n {
		t.Errorf("%d reason labels (other: %v), %v refusals counted; want %d, some other, %d", len(reasons), reasons["other"], total, maxReasons+1, n)
	}
	s := m.State()
	if len(s.Contributors) != maxContributors+1 {
		t.Errorf("%d contribution rows, want %d", len(s.Contributors), maxContributors+1)
	}
	rows, refused := 0, 0
	for _, c := range s.Contributors {
		for _, k := range c.Rejected {
			refused += k
		}
		if c.Peer == otherPeers {
			rows++
			if len(c.Rejected) > maxPeerReasons+1 {
				t.Errorf("the shared row keeps %d kinds of reason", len(c.Rejected))
			}
		}
	}
	if rows != 1 || refused != n {
		t.Errorf("%d shared rows, %d refusals in the table; want 1 and %d", rows, refused, n)
	}
	if peers := labels(t, m, "vtrain_peer_rejected_messages_total", "peer"); len(peers) != 2 {
		t.Errorf("per-peer series for %d peers, want the 2 members: %v", len(peers), peers)
	}
}

// TestBytesNeverGoBack: a counter of bytes that the transport reports
// lower than before (its "transport" category is a difference) is served
// at its highest value.
func TestBytesNeverGoBack(t *testing.T) {
	m := New()
	v := uint64(1000)
	m.Started(node.Start{Time: time.Now(), Peer: "p", RunID: strings.Repeat("cd", 32), Spec: runspec.Default(),
		Stats: func() gossip.Stats {
			return gossip.Stats{Traffic: gossip.Traffic{Out: map[string]uint64{gossip.BytesTransport: v}, In: map[string]uint64{}}}
		}})
	read := func() float64 {
		return labels(t, m, "vtrain_wire_bytes_total", "category")[gossip.BytesTransport] // in is 0
	}
	if got := read(); got != 1000 {
		t.Fatalf("transport bytes %v, want 1000", got)
	}
	v = 900
	if got := read(); got != 1000 {
		t.Errorf("transport bytes went back to %v", got)
	}
	v = 1200
	if got := read(); got != 1200 {
		t.Errorf("transport bytes %v, want 1200", got)
	}
}

func TestExclusionCause(t *testing.T) {
	for reason, want := range map[string]string{
		"failed the challenge of its round-3 update (segment 0, ...)": "failed_check",
		"signed a false verdict on x's round-2 update":                "false_verdict",
		"signed two prevotes in view 0 of round 0 (a and b)":          "equivocation",
		"in the certified state adopted":                              "adopted",
		"excluded":                                                    "other",
	} {
		if got := exclusionCause(reason); got != want {
			t.Errorf("%q: %s, want %s", reason, got, want)
		}
	}
}
