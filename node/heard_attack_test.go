package node

import (
	"testing"
	"time"
)

// TestReplayedUpdateKeepsNoOneUp: anyone on the topic can gossip again a
// member's old signed update (its signature still checks, and a stale
// update is ignored, not charged). Were its arrival time what counts, an
// outsider replaying the update of a member that left long ago, just as
// the run ends, would keep every honest node lingering for that member
// for lingerMax (unfinished). Only an update that tells of a round of the
// member's not heard of before counts as hearing from it now.
func TestReplayedUpdateKeepsNoOneUp(t *testing.T) {
	n := &node{contributed: map[string]uint64{}, heardAt: map[string]time.Time{}}
	const p = "12D3KooWmember"
	n.heard(p, 4) // its update of round 3, when it came
	long := time.Now().Add(-time.Hour)
	n.heardAt[p] = long // an hour ago
	for _, r := range []uint64{4, 3, 1} {
		n.heard(p, r) // replayed, or older still
		if !n.heardAt[p].Equal(long) {
			t.Fatalf("a replayed update of round %d counts as hearing from %s now", r-1, p)
		}
	}
	n.tookPart(p, 6) // a round aggregated its update of round 5
	if n.heard(p, 6); !n.heardAt[p].Equal(long) {
		t.Fatalf("an update of a round already aggregated counts as hearing from %s now", p)
	}
	if n.heard(p, 7); !n.heardAt[p].After(long) {
		t.Fatalf("a new update of %s (round 6) does not count as hearing from it", p)
	}
	if n.contributed[p] != 7 {
		t.Fatalf("contributed %d, want 7", n.contributed[p])
	}
}
