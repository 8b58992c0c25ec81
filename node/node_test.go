package node_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vtrain/vtrain/history"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/node/nodetest"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/audit"
	"github.com/vtrain/vtrain/verify/ledger"
)

// The tests here run clusters of real nodes in process (see nodetest), so
// that `go test -race` sees every goroutine of a node: the loop, gossip
// validation handing messages to it, training, fetches, challenges and the
// sync streams that serve peers. They wait on the nodes' output lines and
// their ends, never on a fixed time.

// spotChecks has every aggregated update challenged.
func spotChecks(s *runspec.Spec) { s.Verify.Rate, s.Verify.NewcomerRate = 1, 1 }

// honest returns the cluster's nodes that neither misbehave nor attack.
func honest(c *nodetest.Cluster) []*nodetest.Node {
	var out []*nodetest.Node
	for _, n := range c.Nodes {
		if n.Behave == "" {
			out = append(out, n)
		}
	}
	return out
}

// agreed checks that the nodes ended the run's last round on one state,
// each a member, and that none of them saw one of them excluded; it
// returns the final hash.
func agreed(t *testing.T, c *nodetest.Cluster, nodes []*nodetest.Node) string {
	t.Helper()
	ids := map[string]bool{}
	for _, n := range nodes {
		ids[n.ID] = true
	}
	var hash string
	for _, n := range nodes {
		s := n.Summary
		if s == nil {
			t.Fatalf("node %s: no summary (%v)", n.ID, n.Err)
		}
		if hash == "" {
			hash = s.FinalHash
		}
		if s.FinalHash != hash || s.Rounds != uint64(c.Spec.Run.Rounds) || !s.Member {
			t.Errorf("node %s ends on %s after %d rounds, member %v; want %s after %d rounds, member",
				n.ID, s.FinalHash, s.Rounds, s.Member, hash, c.Spec.Run.Rounds)
		}
		for _, x := range s.Excluded {
			if ids[x.Peer] {
				t.Errorf("node %s saw honest %s excluded in round %d: %s", n.ID, x.Peer, x.Round, x.Reason)
			}
		}
	}
	return hash
}

// audited audits the nodes' ledgers together as a finished run: each must
// end at the tree head its summary published and extend every head it
// gossiped to the others, and the keepers' challenges are re-executed on
// the data.
func audited(t *testing.T, c *nodetest.Cluster, nodes []*nodetest.Node) *audit.Report {
	t.Helper()
	opts := audit.Options{Finished: true, Train: c.Data.Train,
		Heads: map[string]*ledger.SignedTreeHead{}, Witnessed: map[string]*ledger.SignedTreeHead{}}
	var paths []string
	for _, n := range nodes {
		s := n.Summary
		if s == nil || s.Ledger != n.Ledger() || s.TreeHead == nil {
			t.Fatalf("node %s: no ledger in its summary", n.ID)
		}
		paths = append(paths, s.Ledger)
		opts.Heads[s.Ledger] = s.TreeHead
		for k, h := range s.Witnessed {
			if w := opts.Witnessed[k]; w == nil || h.Size > w.Size {
				opts.Witnessed[k] = h
			}
		}
	}
	rep, err := audit.Audit(paths, opts)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, lr := range rep.Ledgers {
		if lr.Rounds == 0 || lr.Replay.Certs == 0 {
			t.Errorf("audit %s: %d rounds, %s", lr.Ledger, lr.Rounds, lr.Checked)
		}
	}
	return rep
}

// roundOf returns the round an event "round N: ..." is about.
func roundOf(t *testing.T, event string) uint64 {
	t.Helper()
	var r uint64
	if _, err := fmt.Sscanf(event, "round %d:", &r); err != nil {
		t.Fatalf("event %q: %v", event, err)
	}
	return r
}

// TestClusterAgrees runs four founders in process to the end of a short
// run with every update spot-checked: every node ends on the same
// certified state, runs the challenges the beacon drew it for (challenger
// goroutines fetching evidence over sync streams) and passes them all,
// answers challenges of its own updates, and keeps a ledger that passes
// the audit together with the others', its challenges re-executed.
func TestClusterAgrees(t *testing.T) {
	const rounds = 4
	c := nodetest.Start(t, 4, rounds, spotChecks)
	c.Wait()
	agreed(t, c, c.Nodes)
	total := 0
	for _, n := range c.Nodes {
		ch := n.Summary.Challenges
		// The challenges of the last round may be cut short by the end of
		// the run; those of the rounds before it are not.
		drawn := 0
		for _, e := range n.Events("round ") {
			if strings.Contains(e, ": challenging ") && roundOf(t, e)+1 < rounds {
				drawn++
			}
		}
		if ch.Failed != 0 || ch.Passed != ch.Run || ch.Run < drawn || ch.Against == 0 || len(ch.Accused) != 0 {
			t.Errorf("node %s: challenges %+v; drawn for %d before the last round", n.ID, ch, drawn)
		}
		total += ch.Run
	}
	if total == 0 {
		t.Fatal("no challenge ran")
	}
	rep := audited(t, c, c.Nodes)
	replayed := 0
	for _, lr := range rep.Ledgers {
		replayed += lr.Replay.Challenges
		for _, p := range lr.Peers {
			if p.Failed != 0 || p.Excluded != nil {
				t.Errorf("audit %s: %s failed %d challenges, excluded from %v", lr.Ledger, p.Peer, p.Failed, p.Excluded)
			}
		}
	}
	if replayed == 0 {
		t.Error("the audit re-executed no challenge")
	}
}

// TestJoinerCatchesUp adds a node once the run has decided three rounds:
// it adopts the run's state by a checked proof (a chain of two certified
// decisions or more, so not by applying one decision itself) and a
// certified state, is admitted, and ends on the same state as the
// founders, a member, with a ledger that passes the audit with theirs.
func TestJoinerCatchesUp(t *testing.T) {
	// Rounds long and many enough for the joiner to be admitted before the
	// run ends however fast training is: a joiner that arrives as the run
	// ends is not admitted (nothing decides after the last round), which
	// is not what this test is about. With 7 rounds of 20 steps, a faster
	// training step (the lowered loss) left the founders done before the
	// joiner was admitted in half the runs.
	c := nodetest.Start(t, 4, 12, func(s *runspec.Spec) {
		spotChecks(s)
		s.Inner.Steps = 60
	})
	// Round 2 decided by every founder: none serves round 0's updates any
	// more (a node keeps its current and previous rounds'), so the joiner
	// cannot apply round 0 itself however fast it is. (Waiting for one
	// founder only, a loaded CI machine once left another a round behind,
	// still serving them.)
	for _, n := range c.Nodes[:4] {
		n.WaitRound(t, 2)
	}
	j := c.Join("")
	c.Wait()
	agreed(t, c, c.Nodes)
	for _, rep := range j.Rounds() {
		// Round 0 ended before it started: the joiner may hold its
		// decision only as a link of a certified chain it adopted (from a
		// founder that lagged a round behind), never as one it applied.
		if rep.Round == 0 && !rep.Restored {
			t.Errorf("the joiner decided round 0 itself, which ended before it started: %v", j.Summary.Hashes)
		}
	}
	for _, n := range c.Nodes[:4] {
		if !slices.Contains(n.Summary.Admitted, j.ID) {
			t.Errorf("node %s: admitted %v, not the joiner %s", n.ID, n.Summary.Admitted, j.ID)
		}
	}
	rep := audited(t, c, c.Nodes)
	if lr := rep.Ledgers[len(rep.Ledgers)-1]; lr.Keeper != j.ID || lr.Replay.Restored == 0 {
		t.Errorf("the joiner's ledger (keeper %s) adopted %d rounds by certificate, want some", lr.Keeper, lr.Replay.Restored)
	}
}

// TestRestartResumes stops a founder mid-run, lets the others decide a
// round without it, and starts it again in its directory: it resumes from
// its checkpoint (not genesis), catches up, is not excluded for the
// challenges of its updates that came while it was down (they wait for
// it, and it answers from its receipts), and ends on the run's state with
// a ledger, one across both lives, that passes the audit.
// aggregatedAfter checks that some round after round aggregated an
// update of peer id, as node 0 reports the rounds.
func aggregatedAfter(t *testing.T, c *nodetest.Cluster, id string, round uint64) {
	t.Helper()
	for _, rep := range c.Nodes[0].Rounds() {
		if rep.Round > round && slices.Contains(rep.Authors, id) {
			return
		}
	}
	for _, rep := range c.Nodes[0].Rounds() {
		t.Logf("round %d aggregated %v", rep.Round, rep.Authors)
	}
	t.Errorf("no update of the restarted node %s was aggregated after round %d", id, round)
}

// TestRestartBehindItsLastUpdate: a node restarts from a checkpoint that
// predates its last aggregated updates (it crashed between a decision and
// the checkpoint that follows, or its disk was restored from a backup).
// The run expects its next update to continue the residual its last
// aggregated update kept, which the checkpoint does not hold: the node
// rebuilds it from that update's receipt and its updates count again.
func TestRestartBehindItsLastUpdate(t *testing.T) {
	c := nodetest.Start(t, 4, 10, spotChecks) // rounds left after the restart, under load too
	n := c.Nodes[3]
	n.WaitRound(t, 0)
	files := []string{"chain.pb", "state.safetensors"} // the checkpoint, as saved after round 0
	var old [][]byte
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(n.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, b)
	}
	n.WaitRound(t, 3)
	n.Stop()
	for i, f := range files {
		if err := os.WriteFile(filepath.Join(n.Dir, f), old[i], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stopped := n.Summary
	n = c.Restart(3)
	c.Wait()
	agreed(t, c, c.Nodes)
	aggregatedAfter(t, c, n.ID, stopped.Rounds)
}

func TestRestartResumes(t *testing.T) {
	// Ten rounds: under load the others may decide several while it is
	// down, and some must be left for its work to count after.
	c := nodetest.Start(t, 4, 10, spotChecks)
	c.Nodes[3].WaitRound(t, 1)
	c.Nodes[3].Stop()
	stopped := c.Nodes[3].Summary
	if stopped == nil || stopped.Rounds < 2 {
		t.Fatalf("stopped node: %+v", stopped)
	}
	// A round the others decide while it is down.
	c.Nodes[0].WaitRound(t, stopped.Rounds)
	n := c.Resume(3) // the same directory, no --join: it finds its peers there
	start := n.WaitEvent(t, "vtrain node "+n.ID+": ")
	var round uint64
	if i := strings.Index(start, ", round "); i < 0 {
		t.Fatalf("start line %q", start)
	} else if _, err := fmt.Sscanf(start[i:], ", round %d,", &round); err != nil || round != stopped.Rounds {
		t.Fatalf("restarted at round %d (%v), want its checkpoint's round %d: %q", round, err, stopped.Rounds, start)
	}
	c.Wait()
	agreed(t, c, c.Nodes)
	audited(t, c, c.Nodes)
	if n.Summary.Peer != stopped.Peer {
		t.Errorf("restarted as %s, was %s", n.Summary.Peer, stopped.Peer)
	}
	// Its work after the restart counts: an update it trained after
	// restarting continues the residual the run expects (which its
	// checkpoint may predate, when its last update before the stop was
	// aggregated after it) and is aggregated.
	aggregatedAfter(t, c, n.ID, stopped.Rounds)
	// The counters of summary.json go on from the first life's.
	s := readSummary(t, n.Dir)
	if s.Restarts != 1 || s.UpdatesSent <= stopped.UpdatesSent || s.TrainSeconds <= stopped.TrainSeconds ||
		s.Stats.WireOut <= stopped.Stats.WireOut || s.Challenges.Against < stopped.Challenges.Against {
		t.Errorf("summary after the restart: restarts %d, updates %d, train %.2fs, wire out %d, answered %d; before it: updates %d, train %.2fs, wire out %d, answered %d",
			s.Restarts, s.UpdatesSent, s.TrainSeconds, s.Stats.WireOut, s.Challenges.Against,
			stopped.UpdatesSent, stopped.TrainSeconds, stopped.Stats.WireOut, stopped.Challenges.Against)
	}
	// metrics.jsonl holds the rounds of both lives: 0 to 9 in order, where
	// a round it caught up past by adopting a certified state (one
	// record for the state it adopted, which may skip rounds the others
	// decided meanwhile; under load it can be two) is marked restored.
	recs, err := history.Read(n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || recs[0].Round != 0 || recs[len(recs)-1].Round != 9 {
		t.Fatalf("metrics.jsonl holds %d rounds, want 0..9", len(recs))
	}
	for i := 1; i < len(recs); i++ {
		prev, r := recs[i-1].Round, recs[i]
		if r.Round <= prev || (r.Round > prev+1 && !r.Decision.Restored) {
			t.Errorf("metrics.jsonl: round %d follows round %d, not as a restored state (%+v)", r.Round, prev, r.Decision)
		}
	}
}

// TestPassesGoToVoters: a run of 5 members on 2 seats. A pass verdict is
// handed to the voters directly, not gossiped to every member: a member
// without a seat receives no verdict (only the voters' answers to its own
// pushes), and yet its ledger
// credits the checks that passed, from the decided values that carry
// them, as the voters' ledgers do.
func TestPassesGoToVoters(t *testing.T) {
	// Round 0 waits for all five: two voters decide alone, and with
	// training as fast as it is here (rounds of under 0.1 s) they could
	// end the run before the three without a seat are connected to them,
	// leaving those waiting for a quorum that has gone (seen once in CI).
	c := nodetest.Start(t, 5, 6, func(s *runspec.Spec) {
		spotChecks(s)
		s.Members.Voters = 2
	}, nodetest.WithMinPeers(5))
	c.Wait()
	agreed(t, c, c.Nodes)
	rep := audited(t, c, c.Nodes)
	voters := map[string]bool{}
	for _, rep := range c.Nodes[0].Rounds() {
		if rep.Voters != 2 {
			t.Fatalf("round %d: %d voters, want 2", rep.Round, rep.Voters)
		}
	}
	for _, n := range c.Nodes {
		if strings.Contains(n.WaitEvent(t, "vtrain node "+n.ID+": "), "with a vote") {
			voters[n.ID] = true
		}
	}
	if len(voters) != 2 {
		t.Fatalf("%d nodes started with a vote, want 2", len(voters))
	}
	passed := map[string]int{}
	for _, lr := range rep.Ledgers {
		for _, p := range lr.Peers {
			passed[lr.Keeper] += p.Passed
		}
	}
	for _, n := range c.Nodes {
		in := n.Summary.Stats.Traffic.In["verdicts"]
		switch {
		case passed[n.ID] == 0:
			t.Errorf("%s (voter %v): its ledger credits no passed check", n.ID, voters[n.ID])
		case !voters[n.ID] && in >= 600:
			// The voters' short answers to its own pushes, and at most a
			// pass or two gossiped as a fallback (a push to a voter that
			// had already stopped, at the end); gossiped, the run's passes
			// come to about 6 KB for each member.
			t.Errorf("%s, without a seat, received %d bytes of verdicts: passes were gossiped to it", n.ID, in)
		case voters[n.ID] && in == 0:
			t.Errorf("voter %s received no verdicts", n.ID)
		}
	}
	t.Logf("passes credited per ledger: %v", passed)
}

func readSummary(t *testing.T, dir string) *node.Summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, node.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var s node.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// TestStalledNodeSaysWhy stops one of a two-founder run's nodes: the
// other cannot decide alone, and says so, naming the quorum it waits for,
// once per deadline (the round's timeouts), not silently and not in a
// flood.
func TestStalledNodeSaysWhy(t *testing.T) {
	c := nodetest.Start(t, 2, 50, nil)
	c.Nodes[0].WaitRound(t, 0)
	c.Nodes[1].Stop()
	n := c.Nodes[0]
	n.WaitEvent(t, "round ")
	var times []time.Time
	for len(times) < 2 {
		msg := waitKind(t, n, node.EventWaiting, len(times))
		if !strings.Contains(msg.Msg, "waiting for a quorum: 1 of 2 members reachable, 2 needed (unreachable: ") {
			t.Fatalf("stall message %q", msg.Msg)
		}
		times = append(times, msg.T)
	}
	deadline := c.Spec.Rounds.Timeout.Duration + c.Spec.Rounds.CommitTimeout.Duration
	if gap := times[1].Sub(times[0]); gap < deadline-time.Second {
		t.Errorf("two stall messages %v apart; want one per deadline (%v)", gap, deadline)
	}
}

type eventLine struct {
	T     time.Time `json:"t"`
	Event string    `json:"event"`
	Msg   string    `json:"msg"`
}

// waitKind waits for the node's event of the kind that follows skip
// earlier ones.
func waitKind(t *testing.T, n *nodetest.Node, kind string, skip int) eventLine {
	t.Helper()
	for {
		seen := 0
		for _, s := range n.Output() {
			var e eventLine
			if json.Unmarshal([]byte(s), &e) == nil && e.Event == kind {
				if seen == skip {
					return e
				}
				seen++
			}
		}
		select {
		case <-n.Done:
			t.Fatalf("node %s ended without a %q event", n.ID, kind)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestMinPeers starts a run whose founder waits for two peers: it trains
// nothing and decides nothing until a second node is there, says who is,
// then admits the joiner by round 0's decision.
func TestMinPeers(t *testing.T) {
	c := nodetest.Start(t, 1, 3, nil, nodetest.WithMinPeers(2))
	f := c.Nodes[0]
	w := waitKind(t, f, node.EventWaitPeers, 0)
	if !strings.Contains(w.Msg, "waiting for 2 peers before round 0: 1 here ("+f.ID[:4]) {
		t.Fatalf("waiting message %q", w.Msg)
	}
	j := c.Join("")
	go_ := waitKind(t, f, node.EventWaitPeers, 1)
	if !strings.Contains(go_.Msg, "2 of 2 peers here") || !strings.Contains(go_.Msg, j.ID[:4]) {
		t.Fatalf("start message %q", go_.Msg)
	}
	c.Wait()
	var first time.Time
	for _, s := range f.Output() {
		var e eventLine
		if json.Unmarshal([]byte(s), &e) == nil && e.Event == node.EventRound && first.IsZero() {
			first = e.T
		}
	}
	if first.Before(go_.T) {
		t.Errorf("round 0 decided at %v, before the second peer came (%v)", first, go_.T)
	}
	if !slices.Contains(f.Summary.Admitted, j.ID) {
		t.Errorf("the founder admitted %v, not the joiner %s", f.Summary.Admitted, j.ID)
	}
}

// TestStragglersReported: a founder stops after round 1; the others go on
// (3 of 4 voters are a quorum) without waiting for it past the round's
// agreed deadline, and every round's report names it late, with that
// deadline, which follows the voters' pace: well under rounds.timeout.
func TestStragglersReported(t *testing.T) {
	const rounds = 7
	c := nodetest.Start(t, 4, rounds, nil)
	c.Nodes[0].WaitRound(t, 1)
	gone := c.Nodes[3]
	gone.Stop()
	c.Nodes[0].WaitRound(t, rounds-1)
	late := 0
	for _, rep := range c.Nodes[0].Rounds() {
		if rep.Restored || rep.Round < 3 {
			continue
		}
		if !slices.Contains(rep.Late, gone.ID) || slices.Contains(rep.Authors, gone.ID) {
			t.Errorf("round %d: late %v, authors %v: want %s late", rep.Round, rep.Late, rep.Authors, gone.ID)
		}
		if rep.DeadlineSeconds <= 0 || rep.DeadlineSeconds >= c.Spec.Rounds.Timeout.Seconds() {
			t.Errorf("round %d: deadline %.2fs, want one under rounds.timeout %v that follows the voters' pace", rep.Round, rep.DeadlineSeconds, c.Spec.Rounds.Timeout)
		}
		late++
	}
	if late == 0 {
		t.Fatal("no round after the stop reported")
	}
	recs, err := history.Read(c.Nodes[0].Dir)
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, r := range recs {
		if slices.Contains(r.Decision.Late, gone.ID) {
			named++
		}
	}
	if named < late {
		t.Errorf("metrics.jsonl names %s late in %d rounds, the reports in %d", gone.ID, named, late)
	}
}

// TestLateMember: a founder hands each update to the run only once its
// round was decided without it (behaviour "late": honest work, as from a
// peer behind a slow link). Its updates are aggregated a round late, each
// spot-checked (every update is) from its own round's state and passed,
// its residual chain continuing through them; every node ends on the same
// state, and every ledger passes the audit, which replays the late updates
// from their round's state and credits them. How many of its updates a
// round takes late depends on the machine: typically five of six, but on
// a loaded one (CI runs packages side by side on two cores) it can fall
// two rounds behind and catch up from a fetched state, skipping rounds
// its late updates would have joined; the test asks for one at least.
// (Pacing the others' training by it would need them on another engine
// than the CPU VM, which the audit replays with: not bit-exact.)
func TestLateMember(t *testing.T) {
	const rounds = 6
	c := nodetest.Start(t, 4, rounds, spotChecks, nodetest.WithBehave(3, "late"))
	c.Wait()
	agreed(t, c, c.Nodes)
	slow := c.Nodes[3]
	lateIn := 0
	for _, rep := range c.Nodes[0].Rounds() {
		if slices.Contains(rep.LateIn, slow.ID) {
			lateIn++
		}
		if slices.Contains(rep.Authors, slow.ID) && !slices.Contains(rep.LateIn, slow.ID) && rep.Round > 0 {
			t.Errorf("round %d aggregated the late member's update on time", rep.Round)
		}
	}
	t.Logf("aggregated late in %d of %d rounds", lateIn, rounds)
	if lateIn == 0 {
		t.Errorf("the late member's updates were aggregated late in none of %d rounds", rounds)
	}
	for _, n := range c.Nodes {
		if ch := n.Summary.Challenges; ch.Failed != 0 || len(ch.Accused) != 0 {
			t.Errorf("node %s: challenges %+v", n.ID, ch)
		}
	}
	if ch := slow.Summary.Challenges; ch.Against == 0 {
		t.Errorf("nobody challenged the late member's updates: %+v", ch)
	}
	for _, lr := range audited(t, c, c.Nodes).Ledgers {
		for _, p := range lr.Peers {
			if p.Failed != 0 || p.Excluded != nil {
				t.Errorf("audit %s: %s failed %d challenges, excluded from %v", lr.Ledger, p.Peer, p.Failed, p.Excluded)
			}
			if p.Peer == slow.ID && (p.Late == 0 || p.Late != p.Aggregated) {
				t.Errorf("audit %s: the late member aggregated %d times, %d of them late", lr.Ledger, p.Aggregated, p.Late)
			}
		}
		if lr.Replay.Challenges == 0 {
			t.Errorf("audit %s re-executed no challenge", lr.Ledger)
		}
	}
}
