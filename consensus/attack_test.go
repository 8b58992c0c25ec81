package consensus

import (
	"testing"

	"github.com/vtrain/vtrain/runspec"
)

// TestAttackResidualResetAfterSkippedRound: an update commits to the
// error-feedback residual it carried in (ResidualIn), and the spot-check
// re-encodes the opened blocks from it; a forged ResidualIn lets the
// honest encoder emit any payload (trainer's
// TestAttackForgedResidualInDefeatsCheck: a sign-flipped update passes on
// every block). The engine's only anchor is checkCommitments, which asks
// ResidualIn to continue the author's ResidualOut only when its update of
// the round just before was aggregated. An author that sits out one round
// (or whose update misses the value) restarts from any residual it likes:
// here p1 skips round 1 and its round-2 update carries a made-up
// ResidualIn, which the engine accepts. Skipping every other round, a
// cheater sends an arbitrary payload (within the norm bound and the
// aggregation's clipping) in half its rounds with no chance of being
// caught, and its inflated 1-bit scales (trainer's
// TestAttackInflatedScalePasses) are never paid back.
//
// Fix (protocol): keep each member's last aggregated ResidualOut in the
// replicated state (Members or State, so nodes that adopted a certified
// state check it too, not the engine-local resid map that catchup
// clears), and require u.ResidualIn == that root for every update of an
// author that has one, whatever the gap; an author with none (its first
// update) must carry the root of the zero residual
// (trainer.ResidualRoot of zeros, a constant of D and the block size).
// The node then resets its encoder's residual to its last aggregated
// ResidualOut when its own update is not aggregated (that round's delta
// was applied by nobody, so dropping it is right).
func TestAttackResidualResetAfterSkippedRound(t *testing.T) {
	f := newFx(t, 4, func(s *runspec.Spec) { s.Verify.Rate, s.Verify.NewcomerRate = 0, 0 })
	f.decideRound() // round 0: every update aggregated, ResidualOut zero
	if m := f.e[0].ResidualMark("p1"); m != (Hash{}) {
		t.Fatalf("p1's round-0 residual is marked %s, not the zero residual its update kept", m.Short())
	}
	f.decideRound2([]int{0, 2, 3}) // round 1: p1 sits out
	e := f.e[0]
	r, h := e.Round(), e.Hash()
	u := f.update("p1", r, h, 1)
	u.ResidualIn = Hash{7} // not the zero residual p1's last aggregated update left
	u.Sig = testSign(u.From)(UpdateSignBytes(f.run(), u))
	if d := e.StepUpdate(u); d.OK() {
		t.Errorf("round %d: an update whose residual does not continue its author's last aggregated one (round 0) is taken: %s", r, d)
	}
	// Continuing the mark after the gap is taken.
	ok := f.update("p1", r, h, 1)
	if d := e.StepUpdate(ok); !d.OK() {
		t.Errorf("round %d: an update that continues its author's residual after a skipped round is refused: %s", r, d)
	}
}
