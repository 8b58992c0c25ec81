package consensus

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// Attacks on the gate of private updates (Members.Gated): a private
// member's next update waits for a decided pass on its last one's proof.

// aggregatedIn reports whether e's decided round aggregated an update of p.
func aggregatedIn(e *Engine, round uint64, p PeerID) bool {
	rec := e.history[round]
	return rec != nil && slices.ContainsFunc(rec.commit.Value.Updates, func(r UpdateRef) bool { return r.From == p })
}

// TestAttackGateSilentChallengerHaltsRun: the private peer p3 is one of
// four voters, and the one challenger the beacon drew for its update of
// round 0 goes silent (it crashed, or it is the run's one Byzantine voter):
// no pass on p3's update ever comes. Round 1 then holds the updates of two
// voters that a value may take, and p3's gated one: a value needs three.
// The gate lifts by round number, and no round is decided any more: one
// fault halted the run for good. A gated voter's update must count when
// the round cannot reach its quorums without it.
func TestAttackGateSilentChallengerHaltsRun(t *testing.T) {
	pf := newPrivateFx(t)
	pf.drop = func(i, j int, m Message) bool { return pf.ids[i] == pf.challenger || pf.ids[j] == pf.challenger }
	e := pf.other()
	for r := uint64(1); r <= 4; r++ {
		decided := false
		for range 300 { // 30 s of the clock: rounds.timeout is 2 s
			pf.sync(r)
			if decided = e.Round() > r; decided {
				break
			}
			for _, o := range pf.e {
				o.Tick(100 * time.Millisecond)
			}
		}
		if !decided {
			m, _ := e.Members().Find("p3")
			t.Fatalf("round %d not decided with %s silent (p3's update %s waits for its pass)", r, pf.challenger, m.Unproven.Short())
		}
		if !aggregatedIn(e, r, "p3") {
			t.Fatalf("round %d was decided without p3's update: it could not have made a voters' quorum", r)
		}
	}
}

// TestAttackGateProposersDropHonestPrivatePeer: with the gate, an honest
// private peer whose drawn challenger withholds its pass may be
// aggregated only from the round before it would be dropped as absent:
// two rounds (absentLimit-1 and absentLimit). Voters propose in turn, so
// the proposers of those two rounds are known in advance; when both are
// Byzantine (with f = 3 among 10 voters, they and the silent challenger
// are three) they leave its update out and the honest peer is dropped.
// Without the gate it had absentLimit ≥ f+2 rounds, among them f+1
// proposers at least one of which is honest (Members.Next's absentLimit).
func TestAttackGateProposersDropHonestPrivatePeer(t *testing.T) {
	pf := newPrivateFxN(t, 10) // round 0 aggregated p3's update, drawn for a proof
	e := pf.e[0]
	voters := e.Voters()
	limit, f := absentLimit(e.policy, len(voters)), uint64(Faults(len(voters)))
	lift := limit - 1 // the first round the gate lets p3's update in (its Last is 0)
	byz := map[PeerID]bool{pf.challenger: true}
	for r := lift; r <= limit; r++ {
		byz[Proposer(r, 0, voters)] = true
	}
	if len(byz) > int(f) || byz["p3"] {
		t.Fatalf("the attack needs %v Byzantine, %d tolerated", byz, f)
	}
	// The Byzantine proposers ignore p3's updates, on time or late, in the
	// rounds they propose in (the challenger never sends its pass: in
	// this harness no challenger does).
	pf.drop = func(i, j int, m Message) bool {
		u := m.Update
		return u != nil && u.From == "p3" && u.Round+1 >= lift && u.Round <= limit && byz[pf.ids[j]] && pf.ids[j] != pf.challenger
	}
	var in []uint64
	for e.Round() <= limit+f {
		pf.decideRound()
		r := e.Round() - 1
		if aggregatedIn(e, r, "p3") {
			in = append(in, r)
		}
		if !e.Members().Has("p3") {
			t.Fatalf("honest p3 dropped at round %d (aggregated in %v; the gate lifted in round %d; proposers %v are Byzantine)", r, in, lift, byz)
		}
	}
	if len(in) == 0 || in[0] <= limit {
		t.Fatalf("p3 aggregated in rounds %v, want after round %d", in, limit)
	}
}

// TestAttackGateUnverifiablePass: a node that restarted from its
// checkpoint keeps the recent decisions (their certified links) but not
// the updates they aggregated, so it cannot verify the proof a pass on
// one of them carries. It took such a pass as verified: its vote lifted
// the gate for a proof it never checked, and with f+1 honest voters
// restarted in a window of 16 rounds, a forger and its colluding
// challenger have every forged update of it counted. A node votes only
// for passes it verified when they lift a gate (and its own value carries
// none it cannot verify); a certified decision is still applied.
func TestAttackGateUnverifiablePass(t *testing.T) {
	pf := newPrivateFx(t)
	pf.decideRound() // round 1: p3's update waits for the pass
	pf.sync(2)
	e := pf.e[0]
	held, ok := e.byAuthor["p3"]
	if !ok {
		t.Fatal("p3's update of round 2 is not held")
	}
	o := pf.other()
	re, err := NewEngine(pf.config(o.self), o.State(), o.Chain())
	if err != nil {
		t.Fatal(err)
	}
	re.proofs = fakeProofs{&pf.calls}
	for id, h := range e.updates {
		if h.u.Round != e.Round() {
			continue // a late one of round 1, whose base the restarted node no longer holds
		}
		if d := re.Step(Message{Update: h.u}); !d.OK() {
			t.Fatalf("the restarted node refuses update %s: %s", id.Short(), d)
		}
	}
	v, _ := e.buildValue()
	m3, _ := e.members.Find("p3")
	v.Updates = append(v.Updates, UpdateRef{ID: held, From: "p3", Newcomer: m3.Newcomer(e.round, e.policy.Probation)})
	slices.SortFunc(v.Updates, func(a, b UpdateRef) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	fp := pf.verdict(true, FaultNone, pf.step, "bad", "p3")
	forged := *v
	forged.Verdicts = append(slices.Clone(v.Verdicts), *fp)
	slices.SortFunc(forged.Verdicts, func(a, b VerdictMsg) int { return verdictCmp(&a, &b) })
	next := e.members.Next(e.round, &forged, e.policy, e.residuals(&forged))
	// The value's own claim of the state (every node computes the same).
	theta, mom, err := e.app.Step(e.theta, e.mom, decs(e, &forged))
	if err != nil {
		t.Fatal(err)
	}
	forged.Next = StateHash(e.round+1, ParamsDigest(theta, mom), next.Digest())
	if c := e.validate(&forged); c.ok {
		t.Fatal("a node that holds p3's update took the forged pass")
	}
	if c := re.check(&forged); c.ok || c.pending || !strings.Contains(c.reason, "cannot verify") {
		t.Fatalf("the restarted node on a value lifting p3's gate with a pass it cannot verify: ok %v pending %v, %q", c.ok, c.pending, c.reason)
	}
	// Its own value leaves such a pass out, and p3's update with it.
	re.verdicts[fp.key()] = fp
	if own, _ := re.buildValue(); own == nil || len(own.Verdicts) > 0 || slices.ContainsFunc(own.Updates, func(r UpdateRef) bool { return r.From == "p3" }) {
		t.Fatalf("the restarted node's own value %v carries a pass it cannot verify", own)
	}
	// A decided value is the quorum's: the restarted node applies it.
	if c := re.checkValue(&forged); !c.ok {
		t.Fatalf("the restarted node refuses a certified value for a pass it cannot verify: %q", c.reason)
	}
}

// decs is the decoded updates v names, from e.
func decs(e *Engine, v *Value) []any {
	out := make([]any, len(v.Updates))
	for i, r := range v.Updates {
		out[i] = e.updates[r.ID].dec
	}
	return out
}

// TestAttackGateWaiverForgerGain measures the price of the waiver
// (gateWaived) that the README and Members.Gated state: p3, a private
// voter whose proofs no pass ever vouches for (its drawn challenger
// withholds its verdict: in this harness no challenger sends one), leaves
// an honest voter's update out of the values it proposes (it does not
// receive that update in those rounds), so that the voters' quorum needs
// its own gated update. Its update is aggregated in the rounds it
// proposes and in no other while its gate holds: one update bought per
// turn as proposer, not more (4 of 15 rounds with 4 voters; each resets
// its gate, which therefore never lifts by itself: only a judged proof
// ends it, and a forged one excludes the forger).
func TestAttackGateWaiverForgerGain(t *testing.T) {
	pf := newPrivateFx(t) // round 0 aggregated p3's update, drawn for a proof
	e := pf.other()
	voters := e.Voters()
	var victim PeerID
	for _, p := range voters {
		if p != "p3" && p != pf.challenger {
			victim = p
			break
		}
	}
	pf.drop = func(i, j int, m Message) bool {
		u := m.Update
		return u != nil && u.From == victim && pf.ids[j] == "p3" && Proposer(u.Round, 0, voters) == "p3"
	}
	turns, bought, ungated := 0, 0, 0
	for e.Round() < 16 {
		r := e.Round()
		m, ok := e.Members().Find("p3")
		if !ok {
			t.Fatalf("p3 dropped before round %d (bought %d in %d turns)", r, bought, turns)
		}
		gated := e.Members().Gated(m, r, e.policy, e.passHeld) != ""
		pf.decideRound()
		byP3 := Proposer(r, 0, voters) == "p3"
		if byP3 {
			turns++
		}
		switch in := aggregatedIn(e, r, "p3"); {
		case gated && in && !byP3:
			t.Errorf("round %d (proposer %s) aggregated p3's gated update", r, Proposer(r, 0, voters))
		case gated && in:
			bought++
		case in:
			ungated++
		}
	}
	t.Logf("rounds 1-15: p3 proposed in %d, bought %d gated updates as proposer, had %d in after its gate lifted", turns, bought, ungated)
	if bought == 0 {
		t.Errorf("p3 bought no gated update in its %d turns as proposer: the test did not reach the waiver", turns)
	}
	if bought > turns {
		t.Errorf("p3 bought %d gated updates in %d turns as proposer", bought, turns)
	}
}
