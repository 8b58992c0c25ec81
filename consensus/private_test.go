package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/zk"
)

// fakeProofs accepts the proof "good" of the step it was drawn for and
// nothing else: the engine's side of proofs, without a circuit (the real
// checker is trainer.Proofs, tested with real proofs in node and cli).
type fakeProofs struct{ calls *int }

func (f fakeProofs) CheckProof(u *Update, step int, proof []byte) error {
	*f.calls++
	if string(proof) != fmt.Sprintf("good/%d", step) {
		return errors.New("does not verify")
	}
	return nil
}

// privateFx is a 4-founder run whose p3 is a private peer, after round 0:
// p3's update, the challenger the beacon drew for it, and the step it drew.
type privateFx struct {
	*fx
	id         Hash
	challenger PeerID
	step       int
	calls      int
}

func newPrivateFx(t *testing.T) *privateFx { return newPrivateFxN(t, 4) }

// newPrivateFxN is newPrivateFx with n founders, every one a voter.
func newPrivateFxN(t *testing.T, n int) *privateFx {
	f := newFx(t, n, func(s *runspec.Spec) {
		s.Inner.Optimizer, s.Inner.Momentum, s.Inner.WeightDecay, s.Inner.Steps = "sgd", 0, 0, 20
		var root fr.Element
		root.SetUint64(5)
		s.Privacy = runspec.Privacy{Mode: "zk", Depth: 16, VKSHA256: fmt.Sprintf("%064x", 1),
			Peers: []runspec.PrivatePeer{{Peer: "p3", DataRoot: zk.Hex(root), DataSize: 1000}}}
	})
	pf := &privateFx{fx: f}
	for _, e := range f.e {
		e.proofs = fakeProofs{&pf.calls}
	}
	f.decideRound()
	rec := f.e[0].history[0]
	for _, c := range rec.draws {
		if c.Peer == "p3" {
			pf.id, pf.challenger = Hash(c.Update), PeerID(c.Challenger)
		}
	}
	if pf.challenger == "" {
		t.Fatalf("the private update was not drawn (draws %v)", rec.draws)
	}
	pf.step = PrivateStep(rec.beacon, pf.id, f.spec.Inner.Steps)
	return pf
}

// verdict is the drawn challenger's signed verdict on p3's update with an
// answer signed by signer carrying proof (no answer when proof is "").
func (pf *privateFx) verdict(pass bool, fault Fault, step int, proof string, signer PeerID) *VerdictMsg {
	x := &VerdictMsg{Round: 0, Update: pf.id, Accused: "p3", Segment: step, From: pf.challenger, Pass: pass, Fault: fault}
	if proof != "" {
		a := &Answer{Round: 0, Update: pf.id, Segment: step, Proof: []byte(proof)}
		a.Sig = testSign(signer)(AnswerSignBytes(pf.run(), a))
		x.Answer = a
	}
	x.Sig = testSign(pf.challenger)(VerdictSignBytes(pf.run(), x))
	return x
}

// other returns an engine that is neither the accused's nor the
// challenger's.
func (pf *privateFx) other() *Engine {
	for i, p := range pf.ids {
		if p != "p3" && p != pf.challenger {
			return pf.e[i]
		}
	}
	return nil
}

// TestPrivateVerdicts: every member verifies the proof a verdict on a
// private update carries before it takes the verdict. A pass with a proof
// that verifies is kept; a failure whose proof does not verify is upheld
// without a referee; and the lies are lies on their face: a pass on a bad
// proof, a failure on a good one, another step than the beacon's, no
// proof, a proof the accused did not sign, a re-execution claim.
func TestPrivateVerdicts(t *testing.T) {
	good := func(s int) string { return fmt.Sprintf("good/%d", s) }
	lies := []struct {
		name string
		x    func(pf *privateFx) *VerdictMsg
	}{
		{"a pass on a proof that does not verify", func(pf *privateFx) *VerdictMsg { return pf.verdict(true, FaultNone, pf.step, "bad", "p3") }},
		{"a proof fault on a proof that verifies", func(pf *privateFx) *VerdictMsg { return pf.verdict(false, FaultProof, pf.step, good(pf.step), "p3") }},
		{"another step than the beacon drew", func(pf *privateFx) *VerdictMsg {
			o := (pf.step + 1) % pf.spec.Inner.Steps
			return pf.verdict(true, FaultNone, o, good(o), "p3")
		}},
		{"a pass without the proof", func(pf *privateFx) *VerdictMsg { return pf.verdict(true, FaultNone, pf.step, "", "p3") }},
		{"a proof the accused did not sign", func(pf *privateFx) *VerdictMsg {
			return pf.verdict(true, FaultNone, pf.step, good(pf.step), pf.challenger)
		}},
		{"a re-execution claim", func(pf *privateFx) *VerdictMsg { return pf.verdict(false, FaultLink, pf.step, "", "p3") }},
	}
	for _, l := range lies {
		pf := newPrivateFx(t)
		e := pf.other()
		want(t, l.name, e.StepVerdict(l.x(pf)), Accept, "")
		if e.lies[pf.challenger] == nil {
			t.Errorf("%s: not taken as the challenger's lie", l.name)
		}
	}

	pf := newPrivateFx(t)
	// The honest pass: kept, the proof verified once by each member.
	e := pf.other()
	pass := pf.verdict(true, FaultNone, pf.step, good(pf.step), "p3")
	want(t, "a pass on a proof that verifies", e.StepVerdict(pass), Accept, "")
	if e.lies[pf.challenger] != nil {
		t.Fatal("an honest pass taken as a lie")
	}
	if pf.calls == 0 {
		t.Fatal("the proof was not verified")
	}

	// A forged proof: upheld by every member at once, and the next round
	// excludes the accused (and nobody else).
	pf2 := newPrivateFx(t)
	fail := pf2.verdict(false, FaultProof, pf2.step, "bad", "p3")
	for i, o := range pf2.e {
		want(t, fmt.Sprintf("peer %d: a proof fault on a proof that does not verify", i), o.StepVerdict(fail), Accept, "")
		if r := o.rulings[fail.key()]; r != Upheld {
			t.Fatalf("peer %d: ruling %s, want upheld without a referee", i, r)
		}
	}
	pf2.decideRound()
	m := pf2.e[0].Members()
	if !m.IsExcluded("p3") || len(m.Excluded) != 1 {
		t.Fatalf("excluded %v, want p3 alone", m.Excluded)
	}
	// And the draw itself: rate 1 for the private peer, whatever the run's.
	v := pf2.e[0].history[0].commit.Value
	p := SpotPolicyOf(pf2.spec)
	p.Rate, p.NewcomerRate = 0, 0
	_, chs := Draw(v, p)
	if len(chs) != 1 || chs[0].Peer != "p3" {
		t.Fatalf("at rate 0 the draw is %v, want p3's update alone", chs)
	}
}

// TestPrivateUpdateWaitsForItsPass: a private peer's proof comes after its
// update is counted, so its next update waits until a value has carried a
// pass on the last one's proof (Members.Gated). Without a pass its updates
// are left out, and a value that aggregates one anyway is refused by every
// member; with the pass the update is aggregated in the same value that
// carries it; a pass that never comes (silent challengers) lifts the gate
// just before the peer would be dropped as absent, so that it is never
// dropped for its challengers' silence.
func TestPrivateUpdateWaitsForItsPass(t *testing.T) {
	pf := newPrivateFx(t) // round 0 aggregated p3's update, drawn for a proof
	e := pf.e[0]
	unproven := func() Hash {
		m, ok := e.Members().Find("p3")
		if !ok {
			t.Fatal("p3 is no longer a member")
		}
		return m.Unproven
	}
	aggregated := func(round uint64) bool {
		return slices.ContainsFunc(e.history[round].commit.Value.Updates, func(r UpdateRef) bool { return r.From == "p3" })
	}
	if !aggregated(0) || unproven() != pf.id {
		t.Fatalf("after round 0: p3 aggregated %v, its unproven update %s, want %s", aggregated(0), unproven().Short(), pf.id.Short())
	}

	// Round 1 without the pass: p3's update is held but not aggregated.
	pf.decideRound()
	if aggregated(1) || unproven() != pf.id {
		t.Fatalf("round 1 without the pass: p3 aggregated %v, unproven %s", aggregated(1), unproven().Short())
	}

	// Round 2: a value that aggregates p3's update anyway is refused.
	pf.sync(2)
	held, ok := e.byAuthor["p3"]
	if !ok {
		t.Fatal("p3's update of round 2 is not held")
	}
	v, _ := e.buildValue()
	if v == nil || slices.ContainsFunc(v.Updates, func(r UpdateRef) bool { return r.From == "p3" }) {
		t.Fatalf("the proposer's value %v aggregates p3's update without the pass", v)
	}
	m3, _ := e.members.Find("p3")
	v.Updates = append(v.Updates, UpdateRef{ID: held, From: "p3", Newcomer: m3.Newcomer(e.round, e.policy.Probation)})
	slices.SortFunc(v.Updates, func(a, b UpdateRef) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	for i, o := range pf.e {
		if c := o.validate(v); c.ok || !strings.Contains(c.reason, "no pass on its proof") {
			t.Fatalf("peer %d on a value with p3's update and no pass: ok %v, %q", i, c.ok, c.reason)
		}
	}

	// A pass whose proof does not verify lifts nothing: the value that
	// carries it is refused for the lie.
	forged := *v
	forged.Verdicts = append(slices.Clone(v.Verdicts), *pf.verdict(true, FaultNone, pf.step, "bad", "p3"))
	slices.SortFunc(forged.Verdicts, func(a, b VerdictMsg) int { return verdictCmp(&a, &b) })
	for i, o := range pf.e {
		if c := o.validate(&forged); c.ok || !strings.Contains(c.reason, "does not verify") {
			t.Fatalf("peer %d on a value with p3's update and a forged pass: ok %v, %q", i, c.ok, c.reason)
		}
	}

	// The pass comes: round 2 carries it and aggregates p3's update.
	pass := pf.verdict(true, FaultNone, pf.step, fmt.Sprintf("good/%d", pf.step), "p3")
	for i, o := range pf.e {
		if i != slices.Index(pf.ids, pf.challenger) {
			want(t, "the pass", o.StepVerdict(pass), Accept, "")
		} else {
			o.SubmitVerdict(pass)
		}
	}
	pf.decideRound()
	if !aggregated(2) || unproven() != held {
		t.Fatalf("round 2 with the pass: p3 aggregated %v, unproven %s, want %s", aggregated(2), unproven().Short(), held.Short())
	}

	// No pass on round 2's: p3 waits, until the round before it would be
	// dropped, and is never dropped.
	limit := absentLimit(e.policy, len(e.Voters()))
	var in []uint64
	for range 2 * limit {
		pf.decideRound()
		r := e.Round() - 1
		if _, ok := e.Members().Find("p3"); !ok {
			t.Fatalf("p3 dropped in round %d (aggregated in %v)", r, in)
		}
		if aggregated(r) {
			in = append(in, r)
		}
	}
	if want := []uint64{2 + limit - 1, 2 + 2*(limit-1)}; !slices.Equal(in, want) {
		t.Fatalf("without passes p3 was aggregated in rounds %v, want %v (absent limit %d)", in, want, limit)
	}
}

// TestKnownLiarNotRelayed: one false verdict is all the proof a value
// needs to exclude its signer; the signer's further false verdicts (any
// update hash of any recent round: one signature each) are not relayed
// by every member as the first was, and the first stays the proof.
func TestKnownLiarNotRelayed(t *testing.T) {
	pf := newPrivateFx(t)
	e := pf.other()
	var liar PeerID // the member that is neither accused, challenger nor e
	for _, p := range pf.ids {
		if p != "p3" && p != pf.challenger && p != e.self {
			liar = p
		}
	}
	lie := func(k byte) *VerdictMsg {
		x := &VerdictMsg{Round: 0, Update: Hash{k}, Accused: "p3", From: liar, Pass: true}
		x.Sig = testSign(liar)(VerdictSignBytes(pf.run(), x))
		return x
	}
	first := lie(1)
	want(t, "a false verdict", e.StepVerdict(first), Accept, "")
	for k := range byte(8) {
		if d := e.StepVerdict(lie(2 + k)); d.Verdict == Accept {
			t.Fatalf("false verdict %d of a known liar: %s, want it not relayed", k+2, d)
		}
	}
	if e.lies[liar] != first {
		t.Fatalf("the proof against %s is %v, want its first false verdict", liar, e.lies[liar])
	}
}

// TestEarlyVerdictsBounded: a verdict on the round this node is still
// deciding is kept, signature checked only, until the node decides it.
// Only a member of the round can have been drawn to sign one (the
// challengers are its authors), and none for more than one update per
// member: a fresh identity's verdicts, or a member's past that, are not
// kept (each may carry an answer of half a MiB: a few thousand of them
// were gigabytes held by every node that relayed them).
func TestEarlyVerdictsBounded(t *testing.T) {
	pf := newPrivateFx(t)
	e := pf.other()
	r := e.Round()
	sign := func(from PeerID, k int) *VerdictMsg {
		x := &VerdictMsg{Round: r, Update: Hash{byte(k), byte(k >> 8)}, Accused: "p3", From: from, Pass: false, Fault: FaultAnswer,
			Answer: &Answer{Round: r, Update: Hash{byte(k), byte(k >> 8)}, Leaves: make([]Hash, 1<<14)}}
		x.Sig = testSign(from)(VerdictSignBytes(pf.run(), x))
		return x
	}
	for k := range 8 {
		if d := e.StepVerdict(sign("stranger", k)); d.Kept || d.Verdict == Accept {
			t.Fatalf("a non-member's verdict on round %d: %s, want it neither kept nor relayed", r, d)
		}
	}
	var member PeerID
	for _, p := range pf.ids {
		if p != e.self {
			member = p
		}
	}
	kept := 0
	for k := range 64 {
		if d := e.StepVerdict(sign(member, k)); d.Kept {
			kept++
		}
	}
	if n := len(e.Members().List); kept != n {
		t.Fatalf("%d of a member's 64 verdicts on round %d kept, want %d (one per member's update)", kept, r, n)
	}
}
