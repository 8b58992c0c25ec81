package spot

import (
	"crypto/sha256"
	"fmt"
	"math"
	"testing"
)

func h(s string) Hash { return sha256.Sum256([]byte(s)) }

func TestBeaconBindsRoundResultAndSet(t *testing.T) {
	ids := []Hash{h("a"), h("b"), h("c")}
	b := Beacon(3, h("r"), ids)
	if Beacon(3, h("r"), []Hash{ids[2], ids[0], ids[1]}) != b {
		t.Fatal("the beacon depends on the order of the update IDs")
	}
	for name, other := range map[string]Hash{
		"round":  Beacon(4, h("r"), ids),
		"result": Beacon(3, h("s"), ids),
		"set":    Beacon(3, h("r"), ids[:2]),
	} {
		if other == b {
			t.Errorf("another %s gives the same beacon", name)
		}
	}
}

func TestDrawRate(t *testing.T) {
	for _, rate := range []float64{0, 0.1, 0.75, 1} {
		n, hit := 20000, 0
		for i := range n {
			if Draw(h(fmt.Sprint("beacon", i)), h("u"), rate) {
				hit++
			}
		}
		got := float64(hit) / float64(n)
		// Four standard deviations of a binomial.
		if tol := 4 * math.Sqrt(rate*(1-rate)/float64(n)); math.Abs(got-rate) > tol+1e-12 {
			t.Errorf("rate %v: drew %v", rate, got)
		}
	}
}

func TestAssignPicksAnotherPeerUniformly(t *testing.T) {
	peers := []string{"p3", "p1", "p2", "p1", "p0"} // unsorted, with a repeat
	count := map[string]int{}
	segs := map[int]int{}
	for i := range 8000 {
		seg, who, ok := Assign(h(fmt.Sprint(i)), h("u"), "p2", peers, 8)
		if !ok || who == "p2" || seg < 0 || seg >= 8 {
			t.Fatalf("Assign = %d, %q, %v", seg, who, ok)
		}
		count[who]++
		segs[seg]++
	}
	if len(count) != 3 {
		t.Fatalf("challengers %v, want p0, p1, p3", count)
	}
	for p, c := range count {
		if c < 2400 || c > 2933 {
			t.Errorf("%s drawn %d of 8000 times", p, c)
		}
	}
	for s, c := range segs {
		if c < 800 || c > 1200 {
			t.Errorf("segment %d drawn %d of 8000 times", s, c)
		}
	}
	if _, _, ok := Assign(h("b"), h("u"), "p2", []string{"p2"}, 8); ok {
		t.Error("a peer alone in its round was assigned a challenger")
	}
}

func TestSelectUsesTheNewcomerRate(t *testing.T) {
	p := Policy{Rate: 0, NewcomerRate: 1, Segments: 4}
	cands := []Candidate{{Update: h("1"), Peer: "a"}, {Update: h("2"), Peer: "b", Newcomer: true}, {Update: h("3"), Peer: "c"}}
	cs := Select(h("beacon"), cands, p)
	if len(cs) != 1 || cs[0].Peer != "b" || cs[0].Challenger == "b" {
		t.Fatalf("Select = %+v, want one challenge of b by another peer", cs)
	}
	// Every peer computes the same draw.
	if again := Select(h("beacon"), cands, p); fmt.Sprint(again) != fmt.Sprint(cs) {
		t.Fatal("Select is not deterministic")
	}
}

func TestSelectDrawsDistinctChallengers(t *testing.T) {
	cands := []Candidate{{Update: h("1"), Peer: "a"}, {Update: h("2"), Peer: "b"}, {Update: h("3"), Peer: "c"}, {Update: h("4"), Peer: "d"}}
	for k := 1; k <= 4; k++ {
		p := Policy{Rate: 1, NewcomerRate: 1, Segments: 8, Challengers: k}
		per := map[Hash][]string{}
		for _, c := range Select(h("beacon"), cands, p) {
			if c.Challenger == c.Peer || slicesContains(per[c.Update], c.Challenger) {
				t.Fatalf("k=%d: challenger %s of %s's update drawn twice or its own", k, c.Challenger, c.Peer)
			}
			per[c.Update] = append(per[c.Update], c.Challenger)
		}
		for _, c := range cands {
			if want := min(k, 3); len(per[c.Update]) != want {
				t.Fatalf("k=%d: %s's update has %d challengers, want %d", k, c.Peer, len(per[c.Update]), want)
			}
		}
	}
	// The first challenger is Assign's, as before more were drawn.
	one := Select(h("beacon"), cands, Policy{Rate: 1, NewcomerRate: 1, Segments: 8, Challengers: 1})
	two := Select(h("beacon"), cands, Policy{Rate: 1, NewcomerRate: 1, Segments: 8, Challengers: 2})
	for i, c := range one {
		if two[2*i] != c {
			t.Fatalf("the first challenger changed with k: %+v, %+v", c, two[2*i])
		}
	}
}

func slicesContains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
