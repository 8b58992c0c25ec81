package consensus

import (
	"slices"
	"strings"
	"testing"

	"github.com/vtrain/vtrain/runspec"
)

// lateUpdate is a signed update of p for round on base with the given
// residual roots in and out.
func (f *fx) lateUpdate(p PeerID, round uint64, base Hash, k byte, in, out Hash) *Update {
	u := &Update{Round: round, Base: base, From: p, Samples: 1, Loss: 1, Payload: []byte{1, k, 0, 0},
		Seed: RoundSeed(f.spec, round, p), Segments: make([]Hash, f.spec.Segments()), ResidualIn: in, ResidualOut: out}
	u.Sig = testSign(p)(UpdateSignBytes(f.run(), u))
	return u
}

func refOf(v *Value, p PeerID) (UpdateRef, bool) {
	for _, r := range v.Updates {
		if r.From == p {
			return r, true
		}
	}
	return UpdateRef{}, false
}

// TestLateUpdate: a member whose round-0 update missed round 0 has it
// aggregated in round 1, named as late, its residual mark moved by it;
// what a liar might send instead (a stale or replayed update, another
// base, a broken chain, a flood of versions, an outsider's) is refused
// with its reason, and values that misname late updates are invalid.
func TestLateUpdate(t *testing.T) {
	f := newFx(t, 4, func(s *runspec.Spec) { s.Verify.Rate, s.Verify.NewcomerRate = 0, 0 })
	h0 := f.e[0].Hash()
	f.decideRound2([]int{0, 1, 2}) // p3 sits round 0 out
	e := f.e[0]
	if e.Round() != 1 {
		t.Fatalf("round %d, want 1", e.Round())
	}
	if _, ok := refOf(e.history[0].commit.Value, "p3"); ok {
		t.Fatal("round 0 aggregated p3")
	}
	mark := Hash{7}
	late := f.lateUpdate("p3", 0, h0, 3, Hash{}, mark)

	// What a liar may send instead, and what is refused.
	want(t, "an outsider's late update", e.StepUpdate(f.lateUpdate("x", 0, h0, 3, Hash{}, mark)), Ignore, "not a member")
	want(t, "p0's round-0 update again (round 0 took one)", e.StepUpdate(f.lateUpdate("p0", 0, h0, 9, Hash{}, Hash{})), Ignore, "aggregated")
	want(t, "a late update on round 1's state", e.StepUpdate(f.lateUpdate("p3", 0, e.Hash(), 3, Hash{}, mark)), Reject, "wrong base")
	want(t, "a late update off its author's chain", e.StepUpdate(f.lateUpdate("p3", 0, h0, 3, Hash{9}, mark)), Ignore, "chain moved on")
	bad := f.lateUpdate("p3", 0, h0, 3, Hash{}, mark)
	bad.Seed++
	bad.Sig = testSign("p3")(UpdateSignBytes(f.run(), bad))
	want(t, "a late update with another seed", e.StepUpdate(bad), Reject, "seed")
	forged := f.lateUpdate("p3", 0, h0, 3, Hash{}, mark)
	forged.Sig[0] ^= 1
	want(t, "a forged late update", e.StepUpdate(forged), Reject, "bad signature")

	// Gossip keeps no order: p3's next update, continuing its late one,
	// may come first. Dropped without blame (p3 re-sends it).
	want(t, "p3's continuing update before its late one", e.StepUpdate(f.lateUpdate("p3", 1, e.Hash(), 5, mark, Hash{8})), Ignore, "may continue a late update")
	want(t, "p0's update off its chain (round 0 took p0's)", e.StepUpdate(f.lateUpdate("p0", 1, e.Hash(), 5, Hash{9}, Hash{8})), Reject, "residual")
	want(t, "p3's late update", e.StepUpdate(late), Accept, "")
	want(t, "p3's late update again", e.StepUpdate(late), Ignore, "duplicate")
	for k := range maxVersions {
		want(t, "another late version", e.StepUpdate(f.lateUpdate("p3", 0, h0, 20+byte(k), Hash{}, mark)), Ignore, "second late update")
	}
	d := e.StepUpdate(f.lateUpdate("p3", 0, h0, 40, Hash{}, mark))
	want(t, "a flood of late versions", d, Ignore, "more than")
	if !d.Junk {
		t.Error("a flood of late versions is not charged to its author")
	}

	// A proposer names it as late; values that misname it are invalid.
	var round1 []*Update
	for i := range 3 {
		u := f.update(f.ids[i], 1, e.Hash(), byte(i))
		round1 = append(round1, u)
		want(t, "update", e.StepUpdate(u), Accept, "")
	}
	good, _ := e.buildValue()
	if r, ok := refOf(good, "p3"); !ok || !r.Late || r.ID != late.ID(f.run()) {
		t.Fatalf("the proposer's value names p3 as %+v, want its late update", r)
	}
	if c := e.validate(good); !c.ok {
		t.Fatalf("the proposer's value: %s", c.reason)
	}
	mut := func(m func(v *Value)) *Value {
		v := *good
		v.Updates = slices.Clone(good.Updates)
		m(&v)
		return &v
	}
	for _, c := range []struct {
		name, gist string
		v          *Value
	}{
		{"the late update named on time", "is of round 0", mut(func(v *Value) {
			for i := range v.Updates {
				v.Updates[i].Late = false
			}
		})},
		{"an on-time update named late", "aggregated", mut(func(v *Value) {
			for i := range v.Updates {
				if v.Updates[i].From == "p1" {
					v.Updates[i].Late = true
				}
			}
		})},
		{"too few voters on time", "a quorum", mut(func(v *Value) {
			v.Updates = slices.DeleteFunc(v.Updates, func(r UpdateRef) bool { return r.From == "p2" || r.From == "p1" })
		})},
	} {
		if ch := e.validate(c.v); ch.ok || !strings.Contains(ch.reason, c.gist) {
			t.Errorf("%s: ok %v, reason %q, want %q", c.name, ch.ok, ch.reason, c.gist)
		}
	}

	// Its next update, continuing what the late one kept, is held but not
	// proposed in round 1: it can follow only once the late one is taken.
	next := f.lateUpdate("p3", 1, e.Hash(), 5, mark, Hash{8})
	want(t, "p3's update continuing its late one", e.StepUpdate(next), Accept, "continues its late update")
	if v, _ := e.buildValue(); v == nil {
		t.Fatal("no value")
	} else if r, _ := refOf(v, "p3"); !r.Late {
		t.Errorf("the value names p3's continuing update on time: %+v", r)
	}
	want(t, "p3's update on the old mark and another chain", e.StepUpdate(f.lateUpdate("p3", 1, e.Hash(), 6, Hash{5}, Hash{8})), Reject, "residual")

	// Round 1 decides with p3's late update: its work is credited, its mark
	// moves to what the late update kept.
	for _, o := range f.e[1:3] {
		for _, u := range append(round1, late, next) {
			o.StepUpdate(u)
		}
	}
	f.decideRound2([]int{0, 1, 2})
	if e.Round() != 2 {
		t.Fatalf("round %d, want 2", e.Round())
	}
	v1 := e.history[1].commit.Value
	if r, ok := refOf(v1, "p3"); !ok || !r.Late {
		t.Fatalf("round 1 names p3 as %+v, want its late update", r)
	}
	if got := v1.LateIn(); !slices.Equal(got, []PeerID{"p3"}) {
		t.Errorf("LateIn %v", got)
	}
	m, _ := e.members.Find("p3")
	if m.Residual != mark || m.Work != 1 || m.Last != 1 {
		t.Errorf("p3 after its late update: mark %s, work %d, last %d", m.Residual.Short(), m.Work, m.Last)
	}
	// Its continuing update was carried into round 2, a late one now.
	if id, ok := e.lateBy["p3"]; !ok || id != next.ID(f.run()) {
		t.Errorf("p3's continuing update not carried into round 2 (held: %v)", ok)
	}
	// Round 2: anything of round 0 is stale; a round-1 update that does not
	// continue the new mark is stale too.
	want(t, "p3's late update again, a round later", e.StepUpdate(late), Ignore, "stale")
	want(t, "a round-0 update, staleness 2", e.StepUpdate(f.lateUpdate("p3", 0, h0, 50, Hash{}, mark)), Ignore, "stale")
	want(t, "a round-1 update on the mark it no longer has", e.StepUpdate(f.lateUpdate("p3", 1, v1.Base, 51, Hash{}, Hash{8})), Ignore, "chain moved on")
}

// TestLateUpdateLosesToOnTime: a member with a late update and an on-time
// one that carries in the same mark gets the on-time one aggregated (one
// per author per value); the late one is then stale, never a second
// update on the same mark.
func TestLateUpdateLosesToOnTime(t *testing.T) {
	f := newFx(t, 4, func(s *runspec.Spec) { s.Verify.Rate, s.Verify.NewcomerRate = 0, 0 })
	h0 := f.e[0].Hash()
	f.decideRound2([]int{0, 1, 2})
	e := f.e[0]
	late := f.lateUpdate("p3", 0, h0, 3, Hash{}, Hash{7})
	onTime := f.lateUpdate("p3", 1, e.Hash(), 4, Hash{}, Hash{8})
	for _, u := range []*Update{late, onTime} {
		want(t, "p3's update", e.StepUpdate(u), Accept, "")
	}
	for i := 1; i < 3; i++ {
		e.StepUpdate(f.update(f.ids[i], 1, e.Hash(), byte(i)))
	}
	v, _ := e.buildValue()
	if r, ok := refOf(v, "p3"); !ok || r.Late || r.ID != onTime.ID(f.run()) {
		t.Fatalf("the value names p3 as %+v, want its on-time update", r)
	}
	both := *v
	both.Updates = append(slices.Clone(v.Updates), UpdateRef{ID: late.ID(f.run()), From: "p3", Late: true})
	slices.SortFunc(both.Updates, func(a, b UpdateRef) int { return strings.Compare(string(a.ID[:]), string(b.ID[:])) })
	if ch := e.validate(&both); ch.ok || !strings.Contains(ch.reason, "two updates") {
		t.Errorf("a value with both of p3's updates: ok %v, %q", ch.ok, ch.reason)
	}
}
