package audit_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/node/nodetest"
	"github.com/vtrain/vtrain/verify/audit"
	"github.com/vtrain/vtrain/verify/ledger"
)

// TestLateUpdatesReplayed: a run whose fourth founder hands every update
// over only after its round was decided (node behaviour "late"), so that
// the run aggregates its updates a round late. The honest ledgers pass
// the audit, which replays each late update's aggregate on the round that
// took it, re-executes the challenges of late updates from their own
// round's state, and credits them (PeerReport.Late). A keeper with a
// colluding quorum that relabels an aggregated update (a late one as on
// time, or an on-time one as late) and has the value re-certified is
// caught: the update is not of the round the value says.
func TestLateUpdatesReplayed(t *testing.T) {
	r := newFixture(t, nodetest.WithBehave(3, "late"))
	c := r.c
	var paths []string
	for _, n := range c.Nodes {
		paths = append(paths, n.Ledger())
	}
	slow := c.Nodes[3].ID
	// Full: every aggregated update re-executed and its payload re-derived
	// along its author's residual chain, the late ones from their own
	// round's state.
	full := audit.Options{Finished: true, Train: c.Data.Train, Full: true}
	rep, err := audit.Audit(paths, full)
	if err != nil || !rep.OK {
		t.Fatalf("honest ledgers: %v (%+v)", err, rep)
	}
	replayed := 0
	for _, lr := range rep.Ledgers {
		if lr.Replay.Links == 0 {
			t.Errorf("audit %s: no payload re-derived", lr.Ledger)
		}
		replayed += lr.Replay.Challenges
		for _, p := range lr.Peers {
			if p.Peer == slow && (p.Late == 0 || p.Late != p.Aggregated) {
				t.Errorf("audit %s: the late member aggregated %d times, %d late", lr.Ledger, p.Aggregated, p.Late)
			}
			if p.Failed != 0 || p.Excluded != nil || p.FullFailed != 0 {
				t.Errorf("audit %s: %s failed %d challenges, excluded from %v, %d updates not re-executing (%s)", lr.Ledger, p.Peer, p.Failed, p.Excluded, p.FullFailed, p.FullReason)
			}
		}
	}
	if replayed == 0 {
		t.Error("the audit re-executed no challenge")
	}

	keeper := c.Nodes[0]
	other := c.Nodes[1].Ledger()
	// The first decision with a late update, and its value.
	f := r.forge(t, keeper)
	d := f.find(0, func(i int, e ledger.Entry) bool {
		if e.Kind != ledger.KindDecision {
			return false
		}
		m := f.msg(i)
		return m.Commit != nil && len(m.Commit.Value.LateIn()) > 0
	})
	if d < 0 {
		t.Fatal("no decision aggregated a late update")
	}
	for _, c := range []struct {
		name string
		flip func(u consensus.UpdateRef) bool
		why  string
	}{
		{"a late update relabelled on time", func(u consensus.UpdateRef) bool { return u.Late }, "as one of round"},
		{"an on-time update relabelled late", func(u consensus.UpdateRef) bool { return !u.Late }, "as one of round"},
	} {
		f := r.forge(t, keeper)
		cm := f.msg(d).Commit
		v := *cm.Value
		v.Updates = slices.Clone(v.Updates)
		k := slices.IndexFunc(v.Updates, c.flip)
		v.Updates[k].Late = !v.Updates[k].Late
		v.Updates[k].At = 0
		f.setCommit(d, &consensus.Commit{Value: &v, Cert: f.certify(&v, cm.Cert.View)}, false)
		_, err := audit.Audit([]string{f.write(), other}, audit.Options{Finished: true})
		if err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: audit says %v, want %q", c.name, err, c.why)
		}
	}
}
