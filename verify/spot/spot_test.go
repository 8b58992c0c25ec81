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
	for i := range 8000 {
		who, ok := Assign(h(fmt.Sprint(i)), h("u"), "p2", peers)
		if !ok || who == "p2" {
			t.Fatalf("Assign = %q, %v", who, ok)
		}
		count[who]++
	}
	if len(count) != 3 {
		t.Fatalf("challengers %v, want p0, p1, p3", count)
	}
	for p, c := range count {
		if c < 2400 || c > 2933 {
			t.Errorf("%s drawn %d of 8000 times", p, c)
		}
	}
	if _, ok := Assign(h("b"), h("u"), "p2", []string{"p2"}); ok {
		t.Error("a peer alone in its round was assigned a challenger")
	}
}

func TestSelectUsesTheNewcomerRate(t *testing.T) {
	p := Policy{Rate: 0, NewcomerRate: 1}
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
		p := Policy{Rate: 1, NewcomerRate: 1, Challengers: k}
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
	one := Select(h("beacon"), cands, Policy{Rate: 1, NewcomerRate: 1, Challengers: 1})
	two := Select(h("beacon"), cands, Policy{Rate: 1, NewcomerRate: 1, Challengers: 2})
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

// TestBlocksAreDistinctUniformAndPerChallenger: m distinct blocks, each
// block as likely as any other, the same for everyone who draws them, and
// other blocks for another challenger or another beacon.
func TestBlocksAreDistinctUniformAndPerChallenger(t *testing.T) {
	const n, m, draws = 50, 4, 5000
	count := make([]int, n)
	for i := range draws {
		bs := Blocks(h(fmt.Sprint(i)), h("u"), "c", n, m, nil)
		if len(bs) != m {
			t.Fatalf("%d blocks, want %d", len(bs), m)
		}
		for j, b := range bs {
			if b < 0 || b >= n || j > 0 && b <= bs[j-1] {
				t.Fatalf("blocks %v not distinct, ascending and in range", bs)
			}
			count[b]++
		}
	}
	mean := float64(draws*m) / n
	for b, c := range count {
		if math.Abs(float64(c)-mean) > 5*math.Sqrt(mean) {
			t.Errorf("block %d drawn %d times, mean %v", b, c, mean)
		}
	}
	a := Blocks(h("b"), h("u"), "c", 1000, m, nil)
	if fmt.Sprint(a) != fmt.Sprint(Blocks(h("b"), h("u"), "c", 1000, m, nil)) {
		t.Fatal("Blocks is not deterministic")
	}
	if fmt.Sprint(a) == fmt.Sprint(Blocks(h("b"), h("u"), "d", 1000, m, nil)) || fmt.Sprint(a) == fmt.Sprint(Blocks(h("x"), h("u"), "c", 1000, m, nil)) {
		t.Error("another challenger or beacon opens the same blocks")
	}
	if got := Blocks(h("b"), h("u"), "c", 3, 10, nil); len(got) != 3 {
		t.Errorf("asking 10 of 3 blocks gives %v", got)
	}
}

// TestBlocksDrawHalfAmongSentBlocks: half the openings (rounded up) are
// blocks the payload sends from, in proportion to what each sends; the
// rest uniform; all distinct, even when few blocks send.
func TestBlocksDrawHalfAmongSentBlocks(t *testing.T) {
	const n, m = 1000, 4
	sent := []int{7, 7, 7, 300, 300, 999} // block 7 sends three values, 300 two, 999 one
	count := map[int]int{}
	for i := range 3000 {
		bs := Blocks(h(fmt.Sprint(i)), h("u"), "c", n, m, sent)
		in := 0
		for j, b := range bs {
			if j > 0 && b <= bs[j-1] {
				t.Fatalf("blocks %v not distinct and ascending", bs)
			}
			if slicesContainsInt(sent, b) {
				in++
				count[b]++
			}
		}
		if len(bs) != m || in < (m+1)/2 {
			t.Fatalf("blocks %v: %d of them among the sent blocks, want at least %d", bs, in, (m+1)/2)
		}
	}
	if !(count[7] > count[300] && count[300] > count[999]) {
		t.Errorf("sent blocks drawn %v: not in proportion to what they send", count)
	}
	if bs := Blocks(h("b"), h("u"), "c", n, m, []int{5}); len(bs) != m || !slicesContainsInt(bs, 5) {
		t.Errorf("one sent block: %v", bs)
	}
}

func slicesContainsInt(s []int, x int) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
