package consensus

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// Unit tests of the engine's branches: every way a message can be refused,
// and the edges of catch-up and restore. Each feeds an engine one message
// and asserts the decision (and the reason's gist). The simulations
// (sim_test.go, external) test the protocol as a whole.

func testKey(p PeerID) []byte { k := sha256.Sum256([]byte("testkey/" + p)); return k[:] }

func testSign(p PeerID) func([]byte) []byte {
	k := testKey(p)
	return func(msg []byte) []byte { h := sha256.Sum256(append(append([]byte{}, k...), msg...)); return h[:16] }
}

func testVerify(p PeerID, msg, sig []byte) bool { return string(testSign(p)(msg)) == string(sig) }

// testApp: a payload is 4 bytes, the index of the coordinate it moves by
// 0.01 (0xff as the first byte is malformed).
type testApp struct{ d int }

func (a testApp) CheckUpdate(u *Update) (any, error) {
	if len(u.Payload) != 4 || u.Payload[0] == 0xff {
		return nil, errors.New("malformed: test payload")
	}
	return int(u.Payload[1]) % a.d, nil
}

func (a testApp) Step(theta, mom []float32, dec []any) ([]float32, []float32, error) {
	t := slices.Clone(theta)
	for _, d := range dec {
		if d.(int) < 0 {
			return nil, nil, errors.New("bad decoded update")
		}
		t[d.(int)] -= 0.01
	}
	return t, slices.Clone(mom), nil
}

type fx struct {
	t    *testing.T
	spec runspec.Spec
	ids  []PeerID
	e    []*Engine
	reqs map[int]*TrainRequest // train requests not answered yet
	// rule is every engine's referee (nil: every failed verdict upheld).
	rule func(i int, r RefereeRequest) Ruling
	// drop, when set, loses the messages it reports (from engine i to j).
	drop func(i, j int, m Message) bool
}

func newFx(t *testing.T, n int, tune func(*runspec.Spec)) *fx {
	f := &fx{t: t, reqs: map[int]*TrainRequest{}}
	for i := range n {
		f.ids = append(f.ids, PeerID(fmt.Sprintf("p%d", i)))
	}
	s := runspec.Default()
	s.Model = runspec.Model{Kind: "logreg"}
	s.Data.Source = "synthetic"
	s.Run.Rounds = 0
	s.Rounds.Timeout = runspec.Duration{Duration: 2 * time.Second}
	s.Rounds.CommitTimeout = runspec.Duration{Duration: time.Second}
	s.Verify.Rate, s.Verify.NewcomerRate = 1, 1
	ids := make([]string, n)
	for i, p := range f.ids {
		ids[i] = string(p)
	}
	s = s.WithFounders(ids...)
	s.Members.Voters = max(s.Members.Voters, len(ids)) // every founder votes, as these tests assume
	if tune != nil {
		tune(&s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	f.spec = s
	for _, p := range f.ids {
		f.e = append(f.e, f.engine(p, nil))
	}
	return f
}

func (f *fx) config(p PeerID) Config {
	return Config{Spec: f.spec, Self: p, Sign: testSign(p), Verify: testVerify, App: testApp{7850}}
}

func (f *fx) engine(p PeerID, st *State) *Engine {
	g, err := Genesis(f.spec)
	if err != nil {
		f.t.Fatal(err)
	}
	if st != nil {
		g = *st
	}
	e, err := NewEngine(f.config(p), g, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

func (f *fx) run() RunID { return f.spec.RunID() }

// update is a valid signed update of p for round on base.
func (f *fx) update(p PeerID, round uint64, base Hash, k byte) *Update {
	n := f.spec.Segments()
	if f.spec.IsPrivate(string(p)) {
		n = f.spec.Inner.Steps + 1 // a private peer's step commitments
	}
	u := &Update{Round: round, Base: base, From: p, Samples: 1, Loss: 1, Payload: []byte{1, k, 0, 0},
		Seed: RoundSeed(f.spec, round, p), Segments: make([]Hash, n)}
	u.Sig = testSign(p)(UpdateSignBytes(f.run(), u))
	return u
}

func (f *fx) vote(p PeerID, kind VoteKind, round uint64, view uint32, id Hash) *Vote {
	v := &Vote{Kind: kind, Round: round, View: view, Value: id, ValidView: -1, From: p}
	v.Sig = testSign(p)(VoteSignBytes(f.run(), v))
	return v
}

func (f *fx) proposal(p PeerID, round uint64, view uint32, v *Value, vr int32) *Proposal {
	pr := &Proposal{Vote: Vote{Kind: KindProposal, Round: round, View: view, Value: v.ID(f.run()), ValidView: vr, From: p}, Value: v}
	pr.Vote.Sig = testSign(p)(VoteSignBytes(f.run(), &pr.Vote))
	return pr
}

// certify returns the commit of v signed by the given voters.
func (f *fx) certify(v *Value, view uint32, signers ...PeerID) *Commit {
	c := &Commit{Value: v, Cert: Certificate{Round: v.Round, View: view, Value: v.ID(f.run())}}
	for _, p := range signers {
		c.Cert.Sigs = append(c.Cert.Sigs, Signature{From: p, Sig: f.vote(p, KindPrecommit, v.Round, view, v.ID(f.run())).Sig})
	}
	sortSigs(c.Cert.Sigs)
	return c
}

// sync runs the engines as a lossless, instant network until nobody has
// anything to say, training (at once) for rounds up to upTo only; it
// returns how many messages moved.
func (f *fx) sync(upTo uint64) int {
	n := 0
	for range 1000 {
		moved := false
		for i, e := range f.e {
			rd := e.Ready()
			if rd.Train != nil {
				f.reqs[i] = rd.Train
			}
			if r := f.reqs[i]; r != nil && r.Round <= upTo {
				f.reqs[i] = nil
				e.Trained(f.update(f.ids[i], r.Round, r.Base, byte(i)))
				moved = true
			}
			for _, r := range rd.Referee {
				ruling := Upheld
				if f.rule != nil {
					ruling = f.rule(i, r)
				}
				e.Rule(r.Verdict, ruling)
				moved = true
			}
			for _, m := range rd.Publish {
				for j, o := range f.e {
					if j != i && (f.drop == nil || !f.drop(i, j, m)) {
						o.Step(m)
						n++
						moved = true
					}
				}
			}
		}
		if !moved {
			return n
		}
	}
	f.t.Fatal("the engines never went quiet")
	return n
}

// decideRound moves every engine through one round (the proposer waits
// for its collection, so the clock moves).
func (f *fx) decideRound() {
	r := f.e[0].Round()
	for range 100 {
		f.sync(r)
		if f.e[0].Round() > r {
			f.sync(r)
			return
		}
		for _, e := range f.e {
			e.Tick(100 * time.Millisecond)
		}
	}
	f.t.Fatalf("round %d was not decided", r)
}

func want(t *testing.T, what string, d Decision, v Verdict, gist string) {
	t.Helper()
	if d.Verdict != v || !strings.Contains(d.Reason, gist) {
		t.Errorf("%s: %s, want %s containing %q", what, d, v, gist)
	}
	// A malformed or badly signed message is invalid for everyone (its
	// relay is blamed too); a refusal that rests on what this node has
	// seen is not (an honest relay may not have seen it).
	intrinsic := strings.HasPrefix(d.Reason, "bad signature") || strings.HasPrefix(d.Reason, "malformed")
	stateful := false
	for _, s := range []string{"equivocation:", "excluded", "wrong base", "the proposer is", "residual", "conflicting verdict"} {
		stateful = stateful || strings.Contains(d.Reason, s)
	}
	switch {
	case d.Invalid && d.Verdict != Reject:
		t.Errorf("%s: %s marked invalid", what, d)
	case intrinsic && d.Verdict == Reject && !d.Invalid:
		t.Errorf("%s: %s, want it marked invalid (any relay would refuse it)", what, d)
	case stateful && d.Invalid:
		t.Errorf("%s: %s marked invalid, but it rests on this node's state", what, d)
	}
}

func TestStepUpdateRefusals(t *testing.T) {
	f := newFx(t, 4, nil)
	f.decideRound()
	e := f.e[0]
	r, h := e.Round(), e.Hash()
	good := func(k byte) *Update { return f.update("p1", r, h, k) }
	resign := func(u *Update) *Update { u.Sig = testSign(u.From)(UpdateSignBytes(f.run(), u)); return u }

	want(t, "no author", e.StepUpdate(&Update{Round: r}), Reject, "without author")
	bad := good(1)
	bad.Sig = []byte("forged")
	want(t, "forged", e.StepUpdate(bad), Reject, "bad signature")
	want(t, "stale, from a voter of that round", e.StepUpdate(f.update("p1", r-1, h, 1)), Ignore, "stale")
	want(t, "stale, round not kept", e.StepUpdate(f.update("p1", r+100, h, 1)), Ignore, "future")
	want(t, "early, member", e.StepUpdate(f.update("p1", r+1, h, 1)), Ignore, "early")
	want(t, "early again", e.StepUpdate(f.update("p1", r+1, h, 1)), Ignore, "duplicate")
	want(t, "early, non-member", e.StepUpdate(f.update("x", r+1, h, 1)), Ignore, "not a member")
	if d := e.StepUpdate(f.update("x", r+5, h, 1)); !d.Junk {
		t.Errorf("far future from a non-member: %s, want junk", d)
	}
	if d := e.StepUpdate(f.update("x", r, h, 1)); !d.Junk {
		t.Errorf("from a non-member: %s, want junk", d)
	}
	want(t, "wrong base", e.StepUpdate(f.update("p1", r, Hash{9}, 1)), Reject, "wrong base")
	u := good(1)
	u.Seed++
	want(t, "wrong seed", e.StepUpdate(resign(u)), Reject, "sampling seed")
	u = good(1)
	u.Segments = u.Segments[:1]
	want(t, "wrong segment count", e.StepUpdate(resign(u)), Reject, "segment roots")
	u = good(1)
	u.Payload[0] = 0xff
	want(t, "malformed payload", e.StepUpdate(resign(u)), Reject, "malformed")
	u = good(1)
	u.ResidualIn = Hash{7}
	want(t, "residual breaks the chain", e.StepUpdate(resign(u)), Reject, "residual")
	want(t, "first", e.StepUpdate(good(1)), Accept, "")
	want(t, "duplicate", e.StepUpdate(good(1)), Ignore, "duplicate")
	for k := byte(2); k < 2+maxVersions; k++ {
		want(t, "another version", e.StepUpdate(good(k)), Ignore, "second update")
	}
	want(t, "too many versions", e.StepUpdate(good(50)), Ignore, "more than")

	// Excluded, and a finished run.
	e.members.Excluded = []PeerID{"p2"}
	want(t, "excluded", e.StepUpdate(f.update("p2", r, h, 1)), Reject, "excluded")
	e.members.Excluded = nil
	e.spec.Run.Rounds = int(r)
	want(t, "done", e.StepUpdate(f.update("p3", r, h, 1)), Ignore, "over")
}

func TestTrainedStaleAndRefused(t *testing.T) {
	f := newFx(t, 4, nil)
	e := f.e[0]
	rd := e.Ready()
	if rd.Train == nil {
		t.Fatal("no train request at genesis")
	}
	if err := e.Trained(f.update("p0", 5, e.Hash(), 1)); err != nil || e.ownSent != nil {
		t.Fatalf("a stale result: %v", err)
	}
	u := f.update("p0", 0, e.Hash(), 1)
	u.Payload = []byte{0xff, 0, 0, 0}
	if err := e.Trained(u); err == nil {
		t.Fatal("an own update the application refuses was taken")
	}
}

func TestStepJoinRefusals(t *testing.T) {
	f := newFx(t, 4, nil)
	e := f.e[0]
	join := func(p PeerID, r uint64) *JoinRequest {
		j := &JoinRequest{Round: r, From: p}
		j.Sig = testSign(p)(JoinSignBytes(f.run(), j))
		return j
	}
	want(t, "no sender", e.StepJoin(&JoinRequest{}), Reject, "without sender")
	j := join("x", 0)
	j.Sig[0] ^= 1
	want(t, "forged", e.StepJoin(j), Reject, "bad signature")
	want(t, "member", e.StepJoin(join("p1", 0)), Ignore, "is a member")
	want(t, "ahead", e.StepJoin(join("x", 5)), Ignore, "join request of round")
	want(t, "ok", e.StepJoin(join("x", 0)), Accept, "")
	want(t, "duplicate", e.StepJoin(join("x", 0)), Ignore, "duplicate")
	e.members.Excluded = []PeerID{"y"}
	want(t, "excluded", e.StepJoin(join("y", 0)), Reject, "may not rejoin")
	for i := range maxJoins {
		e.StepJoin(join(PeerID(fmt.Sprintf("j%d", i)), 0))
	}
	want(t, "full", e.StepJoin(join("z", 0)), Ignore, "full")
	e.spec.Run.Rounds = 0
	e.round = 100
	want(t, "stale", e.StepJoin(join("w", 0)), Ignore, "join request of round")
	e.spec.Run.Rounds = 100
	want(t, "done", e.StepJoin(join("w", 100)), Ignore, "over")
}

func TestStepProposalAndVoteRefusals(t *testing.T) {
	f := newFx(t, 4, nil)
	f.decideRound()
	e := f.e[0]
	r := e.Round()
	val := &Value{Round: r, Base: e.Hash(), Voters: e.votersHash}
	proposer := Proposer(r, 0, e.Voters())

	want(t, "malformed", e.StepProposal(&Proposal{Vote: Vote{Kind: KindPrevote, From: "p1"}}), Reject, "malformed")
	p := f.proposal(proposer, r, 0, val, 0)
	want(t, "valid view not below the view", e.StepProposal(p), Reject, "valid view")
	p = f.proposal(proposer, r, 0, val, -1)
	p.Vote.Sig = []byte("x")
	want(t, "forged", e.StepProposal(p), Reject, "bad signature")
	p = f.proposal(proposer, r, 0, val, -1)
	p.Value = &Value{Round: r + 9}
	want(t, "value mismatch", e.StepProposal(p), Reject, "does not match")
	other := PeerID("p3")
	if other == proposer {
		other = "p2"
	}
	want(t, "not the proposer", e.StepProposal(f.proposal(other, r, 0, val, -1)), Reject, "the proposer is")
	if d := e.StepProposal(f.proposal("x", r, 0, val, -1)); !d.Junk {
		t.Errorf("from a non-voter: %s, want junk", d)
	}
	want(t, "too far ahead", e.StepProposal(f.proposal(Proposer(r, 50, e.Voters()), r, 50, val, -1)), Ignore, "too far ahead")
	unsorted := *val
	unsorted.Updates = []UpdateRef{{ID: Hash{2}, From: "p1"}, {ID: Hash{1}, From: "p2"}}
	want(t, "unsorted updates", e.StepProposal(f.proposal(proposer, r, 0, &unsorted, -1)), Reject, "not strictly sorted")
	p1 := Proposer(r, 1, e.Voters())
	want(t, "re-proposal without its prevotes", e.StepProposal(f.proposal(p1, r, 1, val, 0)), Reject, "prevotes")
	withPOL := f.proposal(p1, r, 1, val, -1)
	withPOL.POL = []Signature{{From: "p1", Sig: []byte("x")}}
	want(t, "prevotes without a valid view", e.StepProposal(withPOL), Reject, "without a valid view")
	want(t, "ok", e.StepProposal(f.proposal(proposer, r, 0, val, -1)), Accept, "")
	want(t, "duplicate", e.StepProposal(f.proposal(proposer, r, 0, val, -1)), Ignore, "duplicate")
	e.Tick(500 * time.Millisecond)
	e.Ready()
	want(t, "re-sent proposal", e.StepProposal(f.proposal(proposer, r, 0, val, -1)), Accept, "forwarded again")
	val2 := *val
	val2.Next = Hash{5}
	want(t, "equivocation", e.StepProposal(f.proposal(proposer, r, 0, &val2, -1)), Reject, "proposed twice")
	if e.equivs[proposer] == nil {
		t.Error("a double proposal left no proof")
	}

	// Votes.
	want(t, "malformed vote", e.StepVote(&Vote{Kind: KindProposal, From: "p1"}), Reject, "malformed")
	v := f.vote("p1", KindPrevote, r, 0, Hash{1})
	v.Sig = nil
	want(t, "forged vote", e.StepVote(v), Reject, "bad signature")
	if d := e.StepVote(f.vote("x", KindPrevote, r, 0, Hash{1})); !d.Junk {
		t.Errorf("a vote from a non-voter: %s, want junk", d)
	}
	want(t, "vote", e.StepVote(f.vote("p1", KindPrevote, r, 0, Hash{1})), Accept, "")
	want(t, "duplicate vote", e.StepVote(f.vote("p1", KindPrevote, r, 0, Hash{1})), Ignore, "duplicate")
	// A copy re-sent half a commit timeout on is forwarded again (a peer
	// may have missed the first), then not again for as long.
	e.Tick(500 * time.Millisecond)
	e.Ready()
	want(t, "re-sent vote", e.StepVote(f.vote("p1", KindPrevote, r, 0, Hash{1})), Accept, "forwarded again")
	want(t, "re-sent vote, at once again", e.StepVote(f.vote("p1", KindPrevote, r, 0, Hash{1})), Ignore, "duplicate")
	// A flood of copies (a hostile relay re-publishing p1's vote) is not
	// forwarded faster than that.
	for i := range 100 {
		e.Tick(4 * time.Millisecond)
		if d := e.StepVote(f.vote("p1", KindPrevote, r, 0, Hash{1})); d.OK() {
			t.Fatalf("copy %d of a flood forwarded: %s", i, d)
		}
	}
	e.Ready()
	e.Tick(100 * time.Millisecond)
	want(t, "the next copy half a commit timeout on", e.StepVote(f.vote("p1", KindPrevote, r, 0, Hash{1})), Accept, "forwarded again")
	want(t, "double vote", e.StepVote(f.vote("p1", KindPrevote, r, 0, Hash{2})), Reject, "signed two")
	want(t, "third vote", e.StepVote(f.vote("p1", KindPrevote, r, 0, Hash{3})), Ignore, "duplicate")
	want(t, "early vote", e.StepVote(f.vote("p1", KindPrevote, r+1, 0, Hash{3})), Ignore, "early")
	want(t, "early vote of a non-member", e.StepVote(f.vote("x", KindPrevote, r+1, 0, Hash{3})), Ignore, "not a member")
	want(t, "stale vote", e.StepVote(f.vote("p1", KindPrevote, r-1, 0, Hash{3})), Ignore, "stale")
	e.members.Excluded = []PeerID{"p2"}
	want(t, "vote of an excluded peer", e.StepVote(f.vote("p2", KindPrevote, r, 0, Hash{3})), Reject, "excluded")
	e.members.Excluded = nil
	e.spec.Run.Rounds = int(r)
	want(t, "vote after the end", e.StepVote(f.vote("p3", KindPrevote, r, 0, Hash{3})), Ignore, "over")
}

func TestStepCommitRefusals(t *testing.T) {
	f := newFx(t, 4, nil)
	e := f.e[0]
	val := &Value{Round: 0, Base: e.Hash(), Voters: e.votersHash, Next: Hash{1}, NextVoters: e.votersHash}
	want(t, "no value", e.StepCommit(&Commit{}), Reject, "without a value")
	c := f.certify(val, 0, "p0", "p1", "p2")
	c.Cert.Value = Hash{9}
	want(t, "certificate for another value", e.StepCommit(c), Reject, "not for the value")
	want(t, "too few signatures", e.StepCommit(f.certify(val, 0, "p0", "p1")), Reject, "quorum")
	want(t, "a non-voter's signature", e.StepCommit(f.certify(val, 0, "p0", "p1", "x")), Reject, "not a voter")
	c = f.certify(val, 0, "p0", "p1", "p2")
	c.Cert.Sigs[1].Sig = []byte("forged")
	want(t, "a forged signature", e.StepCommit(c), Reject, "bad signature")
	c = f.certify(val, 0, "p0", "p1", "p2")
	c.Cert.Sigs[0], c.Cert.Sigs[1] = c.Cert.Sigs[1], c.Cert.Sigs[0]
	want(t, "unsorted signatures", e.StepCommit(c), Reject, "not sorted")
	other := *val
	other.Voters = Hash{3}
	want(t, "another voter set", e.StepCommit(f.certify(&other, 0, "p0", "p1", "p2")), Reject, "another voter set")
	later := *val
	later.Round = 3
	want(t, "a later round", e.StepCommit(f.certify(&later, 0, "p0", "p1", "p2")), Ignore, "asking for a proof")
	if rd := e.Ready(); rd.FetchProof == nil {
		t.Error("a later commit did not make the engine ask for a proof")
	}
	nilVal := *val
	nilVal.Round, nilVal.Next = 0, Hash{}
	cnil := f.certify(&nilVal, 0, "p0", "p1", "p2")
	cnil.Cert.Value = Hash{}
	want(t, "precommits for nothing", e.StepCommit(cnil), Reject, "not for the value")
	// A valid certificate decides (the updates are missing: it asks).
	want(t, "certified", e.StepCommit(f.certify(val, 0, "p0", "p1", "p2")), Accept, "")
	want(t, "decided", e.StepCommit(f.certify(val, 0, "p0", "p1", "p2")), Ignore, "decided")
}

func TestVerdictsAndEvidence(t *testing.T) {
	f := newFx(t, 4, nil)
	f.decideRound()
	e := f.e[0]
	rec := e.history[0]
	if len(rec.draws) == 0 {
		t.Fatal("no challenges drawn at rate 1")
	}
	var ch *Hash
	var drawn struct {
		peer, challenger PeerID
		seg              int
	}
	for k, c := range rec.draws {
		if k.challenger == "p1" || PeerID(c.Peer) == "p1" {
			continue // p1 equivocates below
		}
		id := k.update
		ch = &id
		drawn.peer, drawn.challenger, drawn.seg = PeerID(c.Peer), PeerID(c.Challenger), int(id[0])%f.spec.Segments()
		break
	}
	if ch == nil {
		t.Fatal("no challenge drawn outside p1")
	}
	verdict := func(from PeerID, id Hash, accused PeerID, seg int, pass bool) *VerdictMsg {
		x := &VerdictMsg{Round: 0, Update: id, Accused: accused, Segment: seg, From: from, Pass: pass, Reason: "r"}
		if !pass {
			x.Fault = FaultSilent
		}
		x.Sig = testSign(from)(VerdictSignBytes(f.run(), x))
		return x
	}
	want(t, "malformed", e.StepVerdict(&VerdictMsg{}), Reject, "malformed")
	x := verdict(drawn.challenger, *ch, drawn.peer, drawn.seg, false)
	x.Sig = []byte("x")
	want(t, "forged", e.StepVerdict(x), Reject, "bad signature")
	noFault := verdict(drawn.challenger, *ch, drawn.peer, drawn.seg, false)
	noFault.Fault = FaultNone
	noFault.Sig = testSign(drawn.challenger)(VerdictSignBytes(f.run(), noFault))
	want(t, "a failure without a fault", e.StepVerdict(noFault), Reject, "a failure without one")
	want(t, "an outsider's undrawn verdict", e.StepVerdict(verdict("x", *ch, drawn.peer, drawn.seg, false)), Reject, "not a member")
	want(t, "a future round", e.StepVerdict(&VerdictMsg{Round: 9, Update: *ch, Accused: drawn.peer, From: drawn.challenger, Pass: true,
		Sig: testSign(drawn.challenger)(VerdictSignBytes(f.run(), &VerdictMsg{Round: 9, Update: *ch, Accused: drawn.peer, From: drawn.challenger, Pass: true}))}), Ignore, "verdict on round")
	// (From an outsider: once judged, a verdict no draw backs excludes a
	// member that signs it; see TestFalseVerdicts.)
	cur := &VerdictMsg{Round: e.Round(), Update: *ch, Accused: drawn.peer, From: "x", Pass: true}
	cur.Sig = testSign("x")(VerdictSignBytes(f.run(), cur))
	want(t, "this round, not decided yet, from an outsider", e.StepVerdict(cur), Ignore, "not a member") // no author of the round: never drawn (TestEarlyVerdictsBounded)
	fail := verdict(drawn.challenger, *ch, drawn.peer, drawn.seg, false)
	// A proposer that carries a verdict the challenger never signed: the
	// value is invalid.
	forgedV := *fail
	forgedV.Sig = []byte("made up by the proposer")
	if err := e.checkVerdict(&forgedV, true); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Errorf("a value with a forged verdict: %v", err)
	}
	want(t, "ok", e.StepVerdict(fail), Accept, "")
	if r, ok := e.Ruled(fail); !ok || r != Pending {
		t.Fatalf("a silent-accused verdict is %v before the referee reports", r)
	}
	if rd := e.Ready(); len(rd.Referee) != 1 || rd.Referee[0].Verdict != fail || rd.Referee[0].Update == nil || rd.Referee[0].Update.From != drawn.peer {
		t.Fatalf("referee requests %+v, want the failed verdict with the accused's update", rd.Referee)
	}
	e.Rule(fail, Upheld)
	want(t, "duplicate", e.StepVerdict(verdict(drawn.challenger, *ch, drawn.peer, drawn.seg, false)), Ignore, "duplicate")
	want(t, "conflicting", e.StepVerdict(verdict(drawn.challenger, *ch, drawn.peer, drawn.seg, true)), Reject, "conflicting")
	old := verdict(drawn.challenger, *ch, drawn.peer, drawn.seg, true)
	old.Round = 0
	e.round += keptHistory + 5
	delete(e.history, 0)
	want(t, "too old", e.StepVerdict(old), Ignore, "not in this node's history")
	e.round -= keptHistory + 5
	e.history[0] = rec

	// Equivocation proofs.
	a, b := f.vote("p1", KindPrevote, e.Round(), 0, Hash{1}), f.vote("p1", KindPrevote, e.Round(), 0, Hash{2})
	want(t, "not conflicting", e.StepEvidence(&Equivocation{A: *a, B: *a}), Reject, "the same")
	want(t, "two slots", e.StepEvidence(&Equivocation{A: *a, B: *f.vote("p1", KindPrevote, e.Round(), 1, Hash{2})}), Reject, "not two votes")
	bb := *b
	bb.Sig = []byte("x")
	want(t, "forged", e.StepEvidence(&Equivocation{A: *a, B: bb}), Reject, "bad signature")
	na, nb := f.vote("x", KindPrevote, e.Round(), 0, Hash{1}), f.vote("x", KindPrevote, e.Round(), 0, Hash{2})
	want(t, "non-member", e.StepEvidence(&Equivocation{A: *na, B: *nb}), Ignore, "not a member")
	fa, fb := f.vote("p2", KindPrevote, e.Round()+5, 0, Hash{1}), f.vote("p2", KindPrevote, e.Round()+5, 0, Hash{2})
	want(t, "a future round", e.StepEvidence(&Equivocation{A: *fa, B: *fb}), Ignore, "equivocation proof")
	want(t, "ok", e.StepEvidence(&Equivocation{A: *a, B: *b}), Accept, "")
	want(t, "known", e.StepEvidence(&Equivocation{A: *a, B: *b}), Ignore, "already known")
	if err := CheckEquivocation(f.run(), &Equivocation{A: *a, B: *b}, testVerify); err != nil {
		t.Error(err)
	}
	if err := CheckEquivocation(f.run(), &Equivocation{A: *a, B: bb}, testVerify); err == nil {
		t.Error("a forged proof checked")
	}

	// Gossip carries the proof and the failed verdict to every member (a
	// validator forwards what the engine accepts); the next value carries
	// both and excludes p1 and the accused, with the evidence.
	for _, o := range f.e[1:] {
		o.StepEvidence(&Equivocation{A: *a, B: *b})
		o.StepVerdict(fail)
	}
	f.decideRound()
	gone := map[PeerID]bool{"p1": true, drawn.peer: true}
	if !e.Members().IsExcluded("p1") || !e.Members().IsExcluded(drawn.peer) || len(e.Voters()) != 4-len(gone) {
		t.Fatalf("not excluded: voters %v", e.Voters())
	}
	want(t, "decided already", e.StepVerdict(verdict(drawn.challenger, *ch, drawn.peer, drawn.seg, false)), Ignore, "")
	x0 := e.history[1].commit.Value
	if x0.Excluded() == nil || len(x0.Verdicts) != 1 || len(x0.Evidence) != 1 {
		t.Fatalf("the value carries %d verdicts, %d proofs", len(x0.Verdicts), len(x0.Evidence))
	}

	// The voter set changed: a restart from a checkpoint with the chain, and
	// a joiner's proof from genesis, both follow the change.
	var live []int
	for i, p := range f.ids {
		if !gone[p] {
			live = append(live, i)
		}
	}
	f.decideRound2(live)
	src := f.e[live[0]]
	if _, err := NewEngine(f.config(f.ids[live[0]]), src.State(), src.Chain()); err != nil {
		t.Fatalf("restart across a voter change: %v", err)
	}
	j := f.engine("p9", nil)
	if err := j.StepProof(src.ServeProof(0)); err != nil || j.want == nil {
		t.Fatalf("proof across a voter change: %v", err)
	}
	st, _ := src.ServeState(j.want.Hash)
	if err := j.Restore(st); err != nil || j.Hash() != src.Hash() || len(j.Voters()) != len(live) {
		t.Fatalf("restore across a voter change: %v (hash %s/%s, voters %v, live %v)", err, j.Hash().Short(), src.Hash().Short(), j.Voters(), live)
	}
	// A link certified by the old voters does not check against the new.
	late := f.engine("p8", &st)
	oldVoters := *x0
	oldVoters.Round = st.Round
	if err := late.StepProof(&Proof{Links: []Link{{Commit: *f.certify(&oldVoters, 0, "p0", "p1", "p2")}}}); err == nil || !strings.Contains(err.Error(), "another voter set") {
		t.Errorf("a link of the old voters: %v", err)
	}
}

// decideRound2 is decideRound among the engines at the given indices only.
func (f *fx) decideRound2(idx []int) {
	all := f.e
	var some []*Engine
	for _, i := range idx {
		some = append(some, all[i])
	}
	ids := f.ids
	var sids []PeerID
	for _, i := range idx {
		sids = append(sids, ids[i])
	}
	reqs := f.reqs
	f.e, f.ids, f.reqs = some, sids, map[int]*TrainRequest{}
	for k, i := range idx {
		if r := reqs[i]; r != nil {
			f.reqs[k] = r
		}
	}
	f.decideRound()
	f.e, f.ids, f.reqs = all, ids, map[int]*TrainRequest{}
}

func TestValueValidity(t *testing.T) {
	f := newFx(t, 4, func(s *runspec.Spec) { s.Members.Admit = 1; s.Verify.Rate, s.Verify.NewcomerRate = 0, 0 })
	e := f.e[0]
	// Updates of three voters are in; the proposer's value is valid.
	for i := 1; i < 4; i++ {
		want(t, "update", e.StepUpdate(f.update(f.ids[i], 0, e.Hash(), byte(i))), Accept, "")
	}
	good, _ := e.buildValue()
	if c := e.validate(good); !c.ok {
		t.Fatalf("the proposer's own value: %s", c.reason)
	}
	mut := func(m func(v *Value)) *Value {
		v := *good
		v.Updates = slices.Clone(good.Updates)
		m(&v)
		return &v
	}
	join := func(p PeerID, r uint64) JoinRequest {
		j := JoinRequest{Round: r, From: p}
		j.Sig = testSign(p)(JoinSignBytes(f.run(), &j))
		return j
	}
	for _, c := range []struct {
		name, gist string
		v          *Value
	}{
		{"another round", "value of round", mut(func(v *Value) { v.Round = 3 })},
		{"another base", "base", mut(func(v *Value) { v.Base = Hash{1} })},
		{"another voter set", "voter set", mut(func(v *Value) { v.Voters = Hash{1} })},
		{"a non-member's update", "not a member", mut(func(v *Value) { v.Updates[0].From = "x" })},
		{"two by one author", "two updates", mut(func(v *Value) { v.Updates[1].From = v.Updates[0].From })},
		{"probation misstated", "probation", mut(func(v *Value) { v.Updates[0].Newcomer = !v.Updates[0].Newcomer })},
		{"too few voters", "a quorum", mut(func(v *Value) { v.Updates = v.Updates[:2] })},
		{"author misnamed", "the value says", mut(func(v *Value) {
			for i := range v.Updates {
				if v.Updates[i].From == "p1" {
					v.Updates[i].From = "p0"
				}
			}
			if v.Updates[0].From == v.Updates[1].From || v.Updates[1].From == v.Updates[2].From || v.Updates[0].From == v.Updates[2].From {
				v.Updates[len(v.Updates)-1].From = "p1"
			}
		})},
		{"a wrong next state", "lead to", mut(func(v *Value) { v.Next = Hash{1} })},
		{"wrong next voters", "next voters", mut(func(v *Value) { v.NextVoters = Hash{1} })},
		{"too many admissions", "admissions", mut(func(v *Value) { v.Admit = []JoinRequest{join("x", 0), join("y", 0)} })},
		{"a member admitted", "already a member", mut(func(v *Value) { v.Admit = []JoinRequest{join("p1", 0)} })},
		{"a forged admission", "bad signature", mut(func(v *Value) { j := join("x", 0); j.Sig[0] ^= 1; v.Admit = []JoinRequest{j} })},
		{"a stale admission", "stale", mut(func(v *Value) { v.Admit = []JoinRequest{join("x", 40)} })},
		{"an undrawn verdict", "not in this node's history", mut(func(v *Value) {
			v.Verdicts = []VerdictMsg{{Round: 0, Update: Hash{1}, Accused: "p1", From: "p2", Pass: true}}
		})},
		{"a bad proof", "equivocation", mut(func(v *Value) {
			a := f.vote("p1", KindPrevote, 0, 0, Hash{1})
			v.Evidence = []Equivocation{{A: *a, B: *a}}
		})},
		{"unsorted", "not strictly sorted", mut(func(v *Value) { v.Updates[0], v.Updates[1] = v.Updates[1], v.Updates[0] })},
		{"unsorted admissions", "admissions not", mut(func(v *Value) { v.Admit = []JoinRequest{join("y", 0), join("x", 0)} })},
		{"unsorted verdicts", "verdicts not", mut(func(v *Value) { v.Verdicts = []VerdictMsg{{Round: 1}, {Round: 0}} })},
		{"unsorted proofs", "proofs not", mut(func(v *Value) {
			v.Evidence = []Equivocation{{A: Vote{From: "b"}}, {A: Vote{From: "a"}}}
		})},
		{"oversize", "oversize", mut(func(v *Value) { v.Evidence = make([]Equivocation, maxPeers+1) })},
		{"a proof against a non-member", "not a member", mut(func(v *Value) {
			a, b := f.vote("x", KindPrevote, 0, 0, Hash{1}), f.vote("x", KindPrevote, 0, 0, Hash{2})
			v.Evidence = []Equivocation{{A: *a, B: *b}}
		})},
	} {
		if ch := e.validate(c.v); ch.ok || !strings.Contains(ch.reason, c.gist) {
			t.Errorf("%s: ok %v, reason %q, want %q", c.name, ch.ok, ch.reason, c.gist)
		}
	}
	// An excluded peer is never admitted again.
	e.members.Excluded = []PeerID{"z"}
	if ch := e.validate(mut(func(v *Value) { v.Admit = []JoinRequest{join("z", 0)} })); ch.ok || !strings.Contains(ch.reason, "excluded") {
		t.Errorf("an excluded peer admitted: %q", ch.reason)
	}
	e.members.Excluded = nil
	// Below the spec's minimum of updates.
	e.spec.Rounds.Quorum = 4
	if ch := e.validate(good); ch.ok || !strings.Contains(ch.reason, "rounds.quorum") {
		t.Errorf("below rounds.quorum: %q", ch.reason)
	}
	e.spec.Rounds.Quorum = 1
	// A value naming an update this node lacks is pending, and it asks.
	lack := mut(func(v *Value) { v.Updates[0].ID = Hash{0xee} })
	slices.SortFunc(lack.Updates, func(a, b UpdateRef) int { return strings.Compare(string(a.ID[:]), string(b.ID[:])) })
	if ch := e.validate(lack); !ch.pending || e.fetch == nil {
		t.Errorf("a missing update: pending %v, fetch %v", ch.pending, e.fetch)
	}
}

func TestProofsAndRestore(t *testing.T) {
	f := newFx(t, 4, nil)
	for range 3 {
		f.decideRound()
	}
	src := f.e[1]
	p := src.ServeProof(0)
	if len(p.Links) != 3 {
		t.Fatalf("proof of %d links", len(p.Links))
	}
	fresh := func() *Engine { return f.engine("p9", nil) }

	// Links that do not check.
	e := fresh()
	bad := *p
	bad.Links = slices.Clone(p.Links)
	bad.Links[0], bad.Links[1] = bad.Links[1], bad.Links[0]
	if err := e.StepProof(&bad); err == nil {
		t.Error("links out of order checked")
	}
	forged := *p
	forged.Links = slices.Clone(p.Links)
	c := forged.Links[2].Commit
	c.Cert.Sigs = slices.Clone(c.Cert.Sigs)
	c.Cert.Sigs[0].Sig = []byte("x")
	forged.Links[2].Commit = c
	if err := e.StepProof(&forged); err == nil || e.want == nil || e.want.Round != 2 {
		t.Errorf("a forged last link: %v, want %+v (the first two still lead somewhere)", err, e.want)
	}
	noCert := *p
	noCert.Links = []Link{{Commit: Commit{Value: p.Links[0].Commit.Value}}}
	if err := fresh().StepProof(&noCert); err == nil {
		t.Error("a link without a certificate checked")
	}
	voters := *p
	voters.Links = slices.Clone(p.Links)
	v := *voters.Links[0].Commit.Value
	v.NextVoters = Hash{1}
	voters.Links[0].Commit = *f.certify(&v, 0, "p0", "p1", "p2")
	if err := fresh().StepProof(&voters); err == nil {
		t.Error("a link that names next voters it does not list checked")
	}

	// Restore: only the certified state, of the right round and size.
	e = fresh()
	if err := e.Restore(State{}); err == nil {
		t.Error("a state nobody asked for was adopted")
	}
	if err := e.StepProof(p); err != nil || e.want == nil {
		t.Fatalf("proof: %v", err)
	}
	st, ok := src.ServeState(e.want.Hash)
	if !ok {
		t.Fatal("the source does not hold the state")
	}
	wrong := st.Clone()
	wrong.Theta[0]++
	if err := e.Restore(wrong); err == nil {
		t.Error("a state that does not hash to the certificate was adopted")
	}
	short := st.Clone()
	short.Theta = short.Theta[:10]
	if err := e.Restore(short); err == nil {
		t.Error("a state of the wrong size was adopted")
	}
	round := st.Clone()
	round.Round++
	if err := e.Restore(round); err == nil {
		t.Error("a state of another round was adopted")
	}
	unsorted := st.Clone()
	unsorted.Members.List[0], unsorted.Members.List[1] = unsorted.Members.List[1], unsorted.Members.List[0]
	if err := e.Restore(unsorted); err == nil {
		t.Error("a state with unsorted members was adopted")
	}
	if err := e.Restore(st); err != nil || e.Hash() != src.Hash() {
		t.Fatalf("restore: %v", err)
	}
	rd := e.Ready()
	if len(rd.Decided) != 1 || !rd.Decided[0].Restored || len(rd.Decided[0].Links) != 3 {
		t.Errorf("decided %+v", rd.Decided)
	}
	if _, ok := e.ServeState(Hash{1}); ok {
		t.Error("served a state it does not hold")
	}

	// A restart from a checkpoint with its chain; chains that do not fit.
	chain := src.Chain()
	if _, err := NewEngine(f.config("p0"), src.State(), chain); err != nil {
		t.Fatalf("restart with the chain: %v", err)
	}
	early := f.e[2].states[0] // genesis
	if _, err := NewEngine(f.config("p0"), early, chain); err == nil {
		t.Error("a chain beyond the state was taken")
	}
	other := src.State()
	other.Theta[1]++
	if _, err := NewEngine(f.config("p0"), other, chain); err == nil {
		t.Error("a chain that does not lead to the state was taken")
	}
}

func TestNewEngineRefuses(t *testing.T) {
	f := newFx(t, 4, nil)
	g, _ := Genesis(f.spec)
	cfg := f.config("p0")
	bad := cfg
	bad.Spec.Inner.LR = -1
	if _, err := NewEngine(bad, g, nil); err == nil {
		t.Error("an invalid spec")
	}
	bad = cfg
	bad.Sign = nil
	if _, err := NewEngine(bad, g, nil); err == nil {
		t.Error("no signer")
	}
	short := g.Clone()
	short.Theta = short.Theta[:3]
	if _, err := NewEngine(cfg, short, nil); err == nil {
		t.Error("a state of the wrong size")
	}
	none := g.Clone()
	for i := range none.Members.List {
		none.Members.List[i].Seat = false
	}
	if _, err := NewEngine(cfg, none, nil); err == nil {
		t.Error("a state without voters")
	}
	dup := g.Clone()
	dup.Members.List[1].ID = dup.Members.List[0].ID
	if _, err := NewEngine(cfg, dup, nil); err == nil {
		t.Error("a state with a duplicate member")
	}
	s := f.spec
	s.Members.Genesis = nil
	if _, err := Genesis(s); err == nil {
		t.Error("a genesis without founders")
	}
}

func TestMembersValidate(t *testing.T) {
	for name, ms := range map[string]Members{
		"unsorted":          {List: []Member{{ID: "b"}, {ID: "a"}}},
		"empty ID":          {List: []Member{{ID: ""}}},
		"from the future":   {List: []Member{{ID: "a", Since: 9}}},
		"a late founder":    {List: []Member{{ID: "a", Founder: true, Since: 1}}},
		"work beyond":       {List: []Member{{ID: "a", Work: 9}}},
		"excluded member":   {List: []Member{{ID: "a"}}, Excluded: []PeerID{"a"}},
		"unsorted excluded": {Excluded: []PeerID{"b", "a"}},
	} {
		if err := ms.Validate(3); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
	if Proposer(0, 0, nil) != "" {
		t.Error("a proposer among no voters")
	}
}

func TestCatchUpTimers(t *testing.T) {
	f := newFx(t, 4, nil)
	f.decideRound()
	e := f.e[3]
	// A decided round whose updates never come: the engine asks again,
	// then fetches the state the certificate vouches for.
	val := &Value{Round: e.Round(), Base: e.Hash(), Voters: e.votersHash, Updates: []UpdateRef{{ID: Hash{1}, From: "p1"}}, Next: Hash{2}, NextVoters: e.votersHash}
	want(t, "commit", e.StepCommit(f.certify(val, 0, "p0", "p1", "p2")), Accept, "")
	if rd := e.Ready(); rd.FetchUpdates == nil {
		t.Fatal("no fetch of the missing update")
	}
	e.Tick(time.Second + time.Millisecond)
	if rd := e.Ready(); rd.FetchUpdates == nil {
		t.Error("no second fetch")
	}
	e.Tick(2 * time.Second)
	rd := e.Ready()
	if rd.FetchState == nil || rd.FetchState.Hash != (Hash{2}) {
		t.Fatalf("no state fetch: %+v", rd.FetchState)
	}
	e.Tick(time.Second + time.Millisecond)
	if rd := e.Ready(); rd.FetchState == nil {
		t.Error("no second state fetch")
	}
	e.Tick(4 * time.Second)
	if rd := e.Ready(); e.want != nil || rd.FetchProof == nil {
		t.Errorf("the state never came: want %v, proof %v", e.want, rd.FetchProof)
	}
	// A stall asks for a proof.
	g := f.e[2]
	g.Tick(time.Hour)
	if rd := g.Ready(); rd.FetchProof == nil {
		t.Error("a stalled engine did not ask for a proof")
	}
}

func TestStringsAndAccessors(t *testing.T) {
	f := newFx(t, 4, nil)
	f.decideRound()
	e := f.e[0]
	if e.Self() != "p0" || len(e.Theta()) != 7850 || e.State().Round != 1 || len(e.Updates()) != 0 {
		t.Error("accessors")
	}
	for i := 3; i > 0; i-- {
		e.StepUpdate(f.update(f.ids[i], 1, e.Hash(), byte(i)))
	}
	if us := e.Updates(); len(us) != 3 || us[0].From != "p1" || us[2].From != "p3" {
		t.Error("updates not by author")
	}
	st, h := e.Latest()
	if st.Hash() != h || h != e.Hash() {
		t.Error("latest")
	}
	for _, k := range []VoteKind{KindProposal, KindPrevote, KindPrecommit, 9} {
		if k.String() == "" {
			t.Error("kind string")
		}
	}
	if (&Vote{}).String() == "" || (Hash{1}).String() == "" || Reject.String() != "reject" || (Decision{Verdict: Ignore, Junk: true}).Costly() != true {
		t.Error("strings")
	}
	msgs := []Message{{Update: &Update{Round: 1}}, {Proposal: &Proposal{Vote: Vote{Round: 2}}}, {Vote: &Vote{Kind: KindPrevote, Round: 3}},
		{Commit: &Commit{Cert: Certificate{Round: 4}}}, {Join: &JoinRequest{Round: 5}}, {Verdict: &VerdictMsg{Round: 6}}, {Evidence: &Equivocation{A: Vote{Round: 7}}}, {}}
	for i, m := range msgs {
		if m.Round() != uint64(i+1)%8 || m.Kind() == "" {
			t.Errorf("message %d: round %d kind %s", i, m.Round(), m.Kind())
		}
	}
	if d := e.Step(Message{}); d.Verdict != Reject {
		t.Error("an empty message was not refused")
	}
	for _, x := range []Exclusion{{Verdict: &VerdictMsg{}}, {Evidence: &Equivocation{}}, {}} {
		if x.Reason() == "" {
			t.Error("exclusion reason")
		}
	}
	m := Member{Seat: true}
	if !m.Voter() {
		t.Error("a seated member does not vote")
	}
	if (&Value{}).String() == "" {
		t.Error("value string")
	}
	c := e.history[0].commit
	if err := VerifyCertificate(f.run(), &c.Cert, f.ids, testVerify); err != nil {
		t.Error(err)
	}
}

// TestStatus: the description a node logs when a round takes long names
// the view, the step, the proposal and its check, the votes held and what
// the engine waits for.
func TestStatus(t *testing.T) {
	f := newFx(t, 4, nil)
	f.decideRound()
	e := f.e[3]
	r := e.Round()
	has := func(what string, parts ...string) {
		t.Helper()
		s := e.Status()
		for _, p := range parts {
			if !strings.Contains(s, p) {
				t.Errorf("%s: status %q lacks %q", what, s, p)
			}
		}
	}
	has("start", fmt.Sprintf("round %d view 0 (propose)", r), "4 voters, 0 updates", "prevotes 0, precommits 0")
	if strings.Contains(e.Status(), "proposal") {
		t.Errorf("a proposal before any: %s", e.Status())
	}
	proposer := Proposer(r, 0, e.Voters())
	bad := &Value{Round: r, Base: e.Hash(), Voters: e.votersHash, Updates: []UpdateRef{{ID: Hash{1}, From: "p1"}}, Next: Hash{2}, NextVoters: e.votersHash}
	e.StepProposal(f.proposal(proposer, r, 0, bad, -1))
	has("a bad proposal", "proposal "+bad.ID(f.run()).Short()+" from "+string(proposer)+" (invalid: ", "(prevote)", "prevotes 1")
	want(t, "commit", e.StepCommit(f.certify(bad, 0, "p0", "p1", "p2")), Accept, "")
	has("decided, updates missing", "decided, applying", "fetching decided updates")
	e.Tick(3*time.Second + time.Millisecond)
	e.Ready()
	has("state missing", fmt.Sprintf("fetching the certified state of round %d", r+1))
	e.spec.Run.Rounds = int(r)
	has("over", "the run is over")

	// A proposal whose updates this engine lacks is pending, and checked
	// (here: its made-up state refused) once they come.
	e = f.e[2]
	var refs []UpdateRef
	var late *Update
	for i, p := range []PeerID{"p0", "p1", "p3"} {
		u := f.update(p, r, e.Hash(), byte(i))
		if p != "p3" {
			e.StepUpdate(u)
		} else {
			late = u
		}
		refs = append(refs, UpdateRef{ID: u.ID(f.run()), From: p, Newcomer: true})
	}
	slices.SortFunc(refs, func(a, b UpdateRef) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	val := &Value{Round: r, Base: e.Hash(), Voters: e.votersHash, Updates: refs, Next: Hash{2}, NextVoters: e.votersHash}
	e.StepProposal(f.proposal(proposer, r, 0, val, -1))
	has("pending", "2 updates", "(pending: ")
	e.StepUpdate(late)
	e.Ready()
	has("checked once the update came", "3 updates", "(invalid: the updates lead to")
}

// TestFalseVerdicts: a challenger's failed verdict that the referee
// overturns, and a member's verdict that no draw backs, each exclude
// their signer and not the accused; a voter whose referee finds otherwise,
// or has not finished, does not vote for the value.
func TestFalseVerdicts(t *testing.T) {
	f := newFx(t, 7, nil)
	f.rule = func(int, RefereeRequest) Ruling { return Overturned } // every accused is honest here
	f.decideRound()
	e := f.e[0]
	rec := e.history[0]
	var d spot.Challenge
	for _, c := range rec.draws {
		if c.Challenger != "p0" && c.Peer != "p0" {
			d = c
			break
		}
	}
	accused, accuser := PeerID(d.Peer), PeerID(d.Challenger)
	var liar PeerID // a member the beacon did not draw for that update
	for _, p := range f.ids {
		if _, drawn := rec.draws[drawKey{Hash(d.Update), p}]; !drawn && p != accused && p != "p0" {
			liar = p
			break
		}
	}
	u := rec.updates[Hash(d.Update)]
	seg := f.spec.Segments() / 2 // the segment the challenger says missed its root
	lo, hi := f.spec.SegmentSteps(seg)
	ans := &Answer{Round: 0, Update: Hash(d.Update), Segment: seg, Leaves: make([]Hash, hi-lo)}
	ans.Leaves[len(ans.Leaves)-1] = u.Segments[seg]
	ans.Sig = testSign(accused)(AnswerSignBytes(f.run(), ans))
	step := &VerdictMsg{Round: 0, Update: Hash(d.Update), Accused: accused, Segment: seg, From: accuser, Reason: "made up", Fault: FaultStep, Step: lo + 1, Answer: ans}
	step.Sig = testSign(accuser)(VerdictSignBytes(f.run(), step))
	undrawn := &VerdictMsg{Round: 0, Update: Hash(d.Update), Accused: accused, Segment: seg, From: liar, Reason: "made up", Fault: FaultSilent}
	undrawn.Sig = testSign(liar)(VerdictSignBytes(f.run(), undrawn))
	// An answer the accused never signed makes the verdict a lie on its face.
	forgedAns := *ans
	forgedAns.Sig = testSign(accuser)(AnswerSignBytes(f.run(), ans))
	forged := *step
	forged.Answer, forged.Step = &forgedAns, lo+2
	forged.Sig = testSign(accuser)(VerdictSignBytes(f.run(), &forged))
	want(t, "a forged answer", e.StepVerdict(&forged), Accept, "")
	if e.lies[accuser] == nil {
		t.Fatal("a verdict with a forged answer is not taken as its signer's lie")
	}
	delete(e.lies, accuser) // the rest of the test referees its step claim
	for i, o := range f.e {
		want(t, fmt.Sprintf("peer %d: the step claim", i), o.StepVerdict(step), Accept, "")
		want(t, fmt.Sprintf("peer %d: the undrawn claim", i), o.StepVerdict(undrawn), Accept, "")
	}
	if e.lies[liar] == nil {
		t.Fatal("an undrawn verdict is not taken as its signer's lie")
	}
	f.sync(0) // the referees report; nobody trains round 1 yet
	v, _ := e.buildValue()
	if v == nil || len(v.Overturned) != 2 || len(v.Verdicts) != 0 {
		t.Fatalf("the value carries %v", v)
	}
	// Another voter whose referee upholds the step claim, or is still at it.
	o := f.e[1]
	o.rulings[step.key()] = Upheld
	if c := o.checkRulings(v); c == nil || !strings.Contains(c.reason, "upheld here") {
		t.Errorf("a voter that upholds the claim: %+v", c)
	}
	o.rulings[step.key()] = Pending
	if c := o.checkRulings(v); c == nil || !c.pending {
		t.Errorf("a voter still refereeing: %+v", c)
	}
	o.rulings[step.key()] = Overturned
	if c := o.checkRulings(v); c != nil {
		t.Errorf("a voter that overturns it too: %+v", c)
	}
	f.decideRound()
	if x := e.history[1].commit.Value; len(x.Overturned) != 2 {
		t.Fatalf("round 1 decided %v", x)
	}
	m := e.Members()
	if !m.IsExcluded(accuser) || !m.IsExcluded(liar) || m.IsExcluded(accused) || !m.Has(accused) {
		t.Fatalf("excluded %v, want %s and %s, not %s", m.Excluded, accuser, liar, accused)
	}
	// Voters that did not referee a decided value still apply it: its
	// certificate is the quorum's finding.
	for i, x := range f.e {
		if x.Hash() != e.Hash() {
			t.Errorf("peer %d is at %s, peer 0 at %s", i, x.Hash().Short(), e.Hash().Short())
		}
	}
}

// TestRetransmitBacksOff: a node alone in an undecided round re-sends its
// update a commit timeout after sending it, then after twice, four and
// eight times as long: a few copies of a stalled round's messages, not one
// every commit timeout; and nothing before a commit timeout has passed
// since a message was last sent.
func TestRetransmitBacksOff(t *testing.T) {
	f := newFx(t, 4, nil)
	e := f.e[0]
	if e.Ready().Train == nil {
		t.Fatal("no train request at genesis")
	}
	ct := f.spec.Rounds.CommitTimeout.Duration
	const step = 50 * time.Millisecond
	e.Tick(ct - 2*step) // trained late: the round's first retry is due right after
	if err := e.Trained(f.update("p0", 0, e.Hash(), 1)); err != nil {
		t.Fatal(err)
	}
	sentAt := e.now
	var resends []time.Duration
	for e.now < 20*ct {
		for _, m := range e.Ready().Publish {
			if m.Update != nil {
				resends = append(resends, (e.now-sentAt)/step*step)
			}
		}
		e.Tick(step)
	}
	// The first send; the round's first retry (a commit timeout from its
	// start) comes too early for it; then the retries at 3, 7 and 15
	// commit timeouts from the round's start, each more than a commit
	// timeout after the last copy.
	t.Logf("sends at %v after the first", resends)
	if len(resends) < 2 || resends[0] != 0 {
		t.Fatalf("sends at %v after the first", resends)
	}
	for i := 1; i < len(resends); i++ {
		if gap := resends[i] - resends[i-1]; gap < ct {
			t.Fatalf("re-sent %v after the last copy (sends at %v), want at least a commit timeout (%v)", gap, resends, ct)
		}
	}
	if len(resends) > 6 {
		t.Fatalf("%d sends in 20 commit timeouts (at %v): the re-sends do not back off", len(resends), resends)
	}
}

// TestCommitDuringStateFetch: a node fetching a certified state hears the
// commit of the round that state starts (the run went on meanwhile); its
// question for it was swallowed by the rate limit. Once the state is
// adopted it asks at once, not after a stall: a run that ended has gone
// by then.
func TestCommitDuringStateFetch(t *testing.T) {
	f := newFx(t, 4, nil)
	for range 3 {
		f.decideRound()
	}
	src := f.e[1]
	e := f.engine("p9", nil)
	e.Tick(time.Second)
	e.StartCatchUp([]PeerID{"p1"})
	if rd := e.Ready(); rd.FetchProof == nil {
		t.Fatal("no proof asked for at start")
	}
	if err := e.StepProof(src.ServeProof(0)); err != nil || e.want == nil || e.want.Round != 3 {
		t.Fatalf("proof: %v, want %+v", err, e.want)
	}
	st, ok := src.ServeState(e.want.Hash)
	if !ok {
		t.Fatal("the source does not hold the state")
	}
	f.decideRound()
	c := src.history[3].commit
	// An outsider's copy of it, claiming made-up signers: its signatures
	// go unchecked while this node is behind, and it must not steer
	// whom the node asks.
	forged := c
	forged.Cert.Sigs = []Signature{{From: "zz", Sig: []byte("x")}}
	want(t, "forged commit ahead", e.StepCommit(&forged), Ignore, "asking for a proof")
	want(t, "commit ahead", e.StepCommit(&c), Ignore, "asking for a proof")
	if rd := e.Ready(); rd.FetchProof != nil {
		t.Fatal("the rate limit let a second question through")
	}
	if err := e.Restore(st); err != nil {
		t.Fatal(err)
	}
	rd := e.Ready()
	if rd.FetchProof == nil || rd.FetchProof.Round != 3 || !slices.Contains(rd.FetchProof.From, PeerID("p0")) {
		t.Fatalf("after the state, no question for round 3's decision: %+v", rd.FetchProof)
	}
	if slices.Contains(rd.FetchProof.From, PeerID("zz")) {
		t.Errorf("the question goes to a signer a forged commit made up: %v", rd.FetchProof.From)
	}
	if err := e.StepProof(src.ServeProof(3)); err != nil || e.ag.decided == nil {
		t.Errorf("round 3's proof: %v, decided %v", err, e.ag.decided)
	}
}

// TestStaleUpdateGetsTheCommit: a member that speaks of a round decided
// without it (it does not vote, so it hears no votes to catch up from) is
// sent that round's commit, at most once a commit timeout; an outsider's
// stale update gets nothing.
func TestStaleUpdateGetsTheCommit(t *testing.T) {
	f := newFx(t, 5, func(s *runspec.Spec) { s.Members.Voters = 4 })
	f.decideRound()
	e := f.e[0]
	if slices.Contains(e.Voters(), "p4") || !e.Members().Has("p4") {
		t.Fatalf("voters %v: want p4 a member without a seat", e.Voters())
	}
	r, h := e.Round(), e.Hash()
	commits := func() int {
		k := 0
		for _, m := range e.Ready().Publish {
			if m.Commit != nil && m.Commit.Value.Round == r-1 {
				k++
			}
		}
		return k
	}
	e.Tick(2 * time.Second)
	e.Ready()
	want(t, "stale, from an outsider", e.StepUpdate(f.update("x", r-1, h, 1)), Ignore, "stale")
	if k := commits(); k != 0 {
		t.Errorf("an outsider's stale update drew %d commits", k)
	}
	// Round r−1 did not aggregate p4's update, so a round-(r−1) update of
	// it is a late candidate (late.go): on the wrong base (h is round
	// r's), rejected, and its author still gets the commit.
	want(t, "late, from a member without a seat, on the wrong base", e.StepUpdate(f.update("p4", r-1, h, 1)), Reject, "wrong base")
	if k := commits(); k != 1 {
		t.Errorf("a member's stale update drew %d commits, want 1", k)
	}
	want(t, "late again", e.StepUpdate(f.update("p4", r-1, h, 2)), Reject, "wrong base")
	if k := commits(); k != 0 {
		t.Errorf("a second stale update within the commit timeout drew %d commits", k)
	}
}

// TestUnknownPaceIsWaitedFor: a voter whose updates so far came only in
// round 0 or in rounds it proposed (its own update is no observation) has
// no pace; it is waited for until the deadline, not taken for a
// straggler (which would never let its pace be learned: the replay
// cheater of a node test, a voter that proposed round 1, had no update
// aggregated for 8 rounds and was dropped). Missing the deadline with no
// pace puts its pace just past it: a known straggler from then on, until
// an update of it comes in time.
func TestUnknownPaceIsWaitedFor(t *testing.T) {
	ms := Members{List: []Member{
		{ID: "a", Seat: true, Work: 3, Last: 4, Pace: 400},
		{ID: "b", Seat: true, Work: 3, Last: 4, Pace: 600},
		{ID: "c", Seat: true, Work: 3, Last: 4, Pace: 500},
		{ID: "d", Seat: true, Work: 3, Last: 4},
	}}
	p := Policy{Seats: 4, Absent: 8, Admit: 1, Max: 64, Timeout: 5000, Commit: 1000}
	deadline, paced := ms.Deadline(p)
	if !paced || deadline != 900*time.Millisecond {
		t.Fatalf("deadline %v (paced %v), want 3/2 × 600 ms", deadline, paced)
	}
	e := &Engine{members: ms, paced: paced, deadline: deadline}
	if e.straggler("d") {
		t.Error("a voter with no pace yet is taken for a straggler: it is never waited for")
	}
	if e.straggler("a") {
		t.Error("a voter with a pace under the deadline is taken for a straggler")
	}
	v := &Value{Round: 5, Updates: []UpdateRef{{From: "a", At: 420}, {From: "b", At: 580}, {From: "c", At: 510}}}
	next := ms.Next(5, v, p, map[PeerID]Hash{})
	d, _ := next.Find("d")
	if want := uint32(901); d.Pace != want {
		t.Errorf("missed with no pace: pace %d, want %d (just past the deadline)", d.Pace, want)
	}
	e = &Engine{members: next, paced: true, deadline: deadline}
	if !e.straggler("d") {
		t.Error("a voter that missed the deadline with no pace is still waited for")
	}
}

// TestPrivatePaceIsWaitedFor: in a run that waits for its private peers
// (Policy.Private), a private voter whose pace (its proofs') is far past
// the public voters' is no known straggler: the deadline counts its pace
// in full. Without the rule it was one, and a straggler's pace never comes
// down while rounds close before its updates come. A private member that
// missed a round with no pace known gets one just past that deadline, and
// the next deadline waits for it again (a public one stays a straggler);
// an unseated private member is expected whatever rounds it missed, and
// its pace moves up when it misses one.
func TestPrivatePaceIsWaitedFor(t *testing.T) {
	ms := Members{List: []Member{
		{ID: "a", Seat: true, Work: 3, Last: 4, Pace: 200},
		{ID: "b", Seat: true, Work: 3, Last: 4, Pace: 250},
		{ID: "c", Seat: true, Work: 3, Last: 4, Pace: 300},
		{ID: "d", Seat: true, Work: 3, Last: 4, Pace: 4000},
		{ID: "e", Work: 1, Last: 1, Pace: 3000},
	}}
	pub := Policy{Seats: 4, Absent: 8, Admit: 1, Max: 64, Timeout: 60000, Commit: 1000}
	priv := pub
	priv.Private = []PeerID{"d", "e"}
	deadline, _ := ms.Deadline(pub)
	if deadline != 500*time.Millisecond {
		t.Fatalf("public deadline %v, want the floor, half a commit timeout", deadline)
	}
	if e := (&Engine{members: ms, policy: pub, paced: true, deadline: deadline, round: 5}); !e.straggler("d") || slices.Contains(e.expected(), "e") {
		t.Fatalf("without the rule: d a straggler %v, e expected in %v", e.straggler("d"), e.expected())
	}
	deadline, paced := ms.Deadline(priv)
	if !paced || deadline != 6*time.Second {
		t.Fatalf("deadline %v (paced %v), want 3/2 × the private voter's 4 s", deadline, paced)
	}
	e := &Engine{members: ms, policy: priv, paced: paced, deadline: deadline, round: 5}
	if e.straggler("d") || e.straggler("e") {
		t.Error("a private member is a known straggler for its proof pace")
	}
	if !slices.Contains(e.expected(), "e") {
		t.Errorf("an unseated private member that missed rounds is not expected: %v", e.expected())
	}
	v := &Value{Round: 5, Updates: []UpdateRef{{From: "a", At: 200}, {From: "b", At: 250}, {From: "c", At: 300}, {From: "d", At: 4000}}}
	next := ms.Next(5, v, priv, map[PeerID]Hash{})
	if m, _ := next.Find("e"); m.Pace != 4500 {
		t.Errorf("an unseated private member that missed the round: pace %d, want 4500 (moved up by half)", m.Pace)
	}

	// Missed with no pace known (a private peer still loading its keys
	// when the rounds began).
	ms.List[3].Pace = 0
	ms.List = ms.List[:4]
	for _, pol := range []Policy{pub, priv} {
		deadline, _ := ms.Deadline(pol)
		v := &Value{Round: 5, Updates: []UpdateRef{{From: "a", At: 200}, {From: "b", At: 250}, {From: "c", At: 300}}}
		next := ms.Next(5, v, pol, map[PeerID]Hash{})
		d2, _ := next.Deadline(pol)
		e := &Engine{members: next, policy: pol, paced: true, deadline: d2}
		if m, _ := next.Find("d"); time.Duration(m.Pace)*time.Millisecond <= deadline {
			t.Fatalf("missed with no pace: pace %d ms, deadline %v", m.Pace, deadline)
		}
		if private := len(pol.Private) > 0; e.straggler("d") == private {
			t.Errorf("private %v: after a miss with no pace, a straggler %v (deadline %v)", private, e.straggler("d"), d2)
		}
	}
}

// TestHeardDecided: a member's signed word that it decided this node's
// round makes the node ask that member and the voters for certified
// decisions a commit timeout later, unless it decided meanwhile; a
// non-member's word, or one about a past round, asks nothing.
func TestHeardDecided(t *testing.T) {
	f := newFx(t, 4, nil)
	ct := f.spec.Rounds.CommitTimeout.Duration
	e := f.engine("p3", nil)
	e.Ready()
	e.HeardDecided("zz", 0) // not a member
	e.Tick(ct)
	if rd := e.Ready(); rd.FetchProof != nil {
		t.Fatalf("an outsider's head made the engine ask: %+v", rd.FetchProof)
	}
	e.HeardDecided("p1", 0)
	e.Tick(ct / 2)
	if rd := e.Ready(); rd.FetchProof != nil {
		t.Fatalf("asked before a commit timeout: %+v", rd.FetchProof)
	}
	e.Tick(ct / 2)
	rd := e.Ready()
	if rd.FetchProof == nil || rd.FetchProof.Round != 0 || !slices.Contains(rd.FetchProof.From, "p1") || rd.FetchProof.From[0] == "p3" {
		t.Fatalf("a member's head of this round: want a question to the voters and p1, got %+v", rd.FetchProof)
	}

	// A member that keeps saying so (a liar, or a flood of its heads)
	// gets at most one question per commit timeout out of this node.
	asked := 0
	for range 20 {
		e.HeardDecided("p1", 7)
		e.Tick(ct / 10)
		if rd := e.Ready(); rd.FetchProof != nil {
			asked++
		}
	}
	if asked > 2 {
		t.Errorf("%d questions in two commit timeouts of heads", asked)
	}

	// Decided meanwhile: nothing to ask.
	f.e[0].HeardDecided("p1", 0)
	f.decideRound()
	f.e[0].Tick(ct)
	if rd := f.e[0].Ready(); rd.FetchProof != nil {
		t.Fatalf("asked for a round it decided: %+v", rd.FetchProof)
	}
	f.e[0].HeardDecided("p1", 0) // a past round now
	f.e[0].Tick(ct)
	if rd := f.e[0].Ready(); rd.FetchProof != nil {
		t.Fatalf("asked about a past round: %+v", rd.FetchProof)
	}
}
