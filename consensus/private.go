package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/vtrain/vtrain/runspec"
)

// Private peers (runspec.Privacy): a founder that trains on data it never
// shows. Its update carries the exact fixed-point change of its round as
// the payload and, in place of segment roots, the commitment to its
// parameters before its first inner step and after every step (Steps+1 of
// them). Every node links the change to the first and last commitments
// before it takes the update (App's CheckLink: the chain starts at the
// agreed state and ends at the agreed state plus the change). Every
// decision draws each aggregated private update for a check (rate 1), and
// one inner step of it from the beacon (PrivateStep): the author answers
// with a proof of that step, the drawn challengers verify it, and their
// verdicts carry the signed answer, so that every member verifies the
// proof too before it takes the verdict (ProofChecker), and every
// auditor after. A pass whose proof does not verify, or a failure whose
// proof does, is a lie on its face that excludes its signer; a failure
// with a proof that does not verify excludes the accused without a
// referee; a claim of silence is refereed as any other (each referee asks
// the author for the proof).
//
// A proof comes after its update is counted, so a private member has at
// most one counted update without a pass: the last one aggregated is its
// Member.Unproven (certified with the membership) until a decided value
// carries a pass on it, and a value may not aggregate the member's next
// update before that (Members.Gated; the value that carries the pass may).
// Without it a Byzantine private peer could send a forged update every
// round and answer its draws only at privacy.proof_timeout.

// ProofChecker verifies a private peer's proof: that proof (a zk bundle)
// proves inner step `step` of update u (its commitments, its author's
// pinned data root and size, the batch the run's sampler draws with its
// seed) under the run's key. It must be a pure function of its inputs.
type ProofChecker interface {
	CheckProof(u *Update, step int, proof []byte) error
}

// Linker is implemented by an App that links a private update's payload
// to its commitments: base is the agreed state of the update's round (the
// state its Base names). Like CheckUpdate, its result is the same for
// every node.
type Linker interface {
	CheckLink(u *Update, decoded any, base []float32) error
}

// PrivateStep is the inner step of a private update that a decision with
// beacon draws for a proof: uniform in [0, steps), from the beacon (which
// the author cannot know when it commits to its steps) and the update's
// ID.
func PrivateStep(beacon, update Hash, steps int) int {
	if steps < 1 {
		return 0
	}
	h := sha256.New()
	h.Write([]byte("vtrain/private-step/v1\x00"))
	h.Write(beacon[:])
	h.Write(update[:])
	var sum [32]byte
	h.Sum(sum[:0])
	return int(binary.BigEndian.Uint64(sum[:8]) % uint64(steps))
}

// A verdict names the step it checks below MaxLeaves (shape): runspec
// bounds a zk run's inner steps so (a compile error here otherwise).
var _ [MaxLeaves - 1 - runspec.MaxPrivateSteps]struct{}

// privateRoots is the number of commitments a private update carries.
func (e *Engine) privateRoots() int { return e.spec.Inner.Steps + 1 }

// checkPrivateDraw checks a verdict on a private update against the draw
// (beyond checkDraw's common part): the drawn step, a fault a proof can
// settle, and, when this node holds the update, the proof the answer
// carries: a pass must carry one that verifies, a proof fault one that
// does not.
func (e *Engine) checkPrivateDraw(x *VerdictMsg, rec *record) error {
	if want := PrivateStep(rec.beacon, x.Update, e.spec.Inner.Steps); x.Segment != want {
		return fmt.Errorf("step %d of private update %s: the beacon drew step %d", x.Segment, x.Update.Short(), want)
	}
	switch x.Fault {
	case FaultNone, FaultProof:
	case FaultSilent:
		return nil
	default:
		return fmt.Errorf("a %s claim on a private update (its steps are checked by proof)", x.Fault)
	}
	a := x.Answer
	if a == nil || len(a.Proof) == 0 {
		return fmt.Errorf("a verdict on a private update without the accused's proof")
	}
	u := rec.updates[x.Update]
	if u == nil || e.proofs == nil {
		return nil // adopted, not applied: nothing to verify against here
	}
	err := e.proofs.CheckProof(u, x.Segment, a.Proof)
	switch {
	case x.Pass && err != nil:
		return fmt.Errorf("a pass on a proof that does not verify: %v", err)
	case !x.Pass && err == nil:
		return fmt.Errorf("a proof fault on a proof that verifies")
	}
	return nil
}

// unverifiedPass reports whether x is a pass that lifts a private
// member's gate (it is on the member's Unproven update) carrying a proof
// this node cannot verify: it adopted or restarted past the update's
// round, so it does not hold the update (checkPrivateDraw lets such a
// verdict through, for a decided value is its quorum's). Such a node
// neither votes for a value that carries one nor proposes one: with f+1
// honest voters restarted, their votes would otherwise lift a forger's
// gate on a proof no one of them checked.
func (e *Engine) unverifiedPass(x *VerdictMsg) bool {
	if !x.Pass || e.proofs == nil || !e.spec.IsPrivate(string(x.Accused)) {
		return false
	}
	if m, ok := e.members.Find(x.Accused); !ok || m.Unproven != x.Update {
		return false
	}
	rec := e.history[x.Round]
	return rec == nil || rec.updates[x.Update] == nil
}

// stateTheta returns the parameters of the agreed state with hash h, if
// this engine still holds it.
func (e *Engine) stateTheta(h Hash) []float32 {
	if st, ok := e.ServeState(h); ok {
		return st.Theta
	}
	return nil
}
