package consensus

import (
	"fmt"
	"slices"
)

// VoteKind is what a signed vote is: a proposal, a prevote or a precommit.
type VoteKind uint8

// Vote kinds.
const (
	KindProposal  VoteKind = 1
	KindPrevote   VoteKind = 2
	KindPrecommit VoteKind = 3
)

func (k VoteKind) String() string {
	switch k {
	case KindProposal:
		return "proposal"
	case KindPrevote:
		return "prevote"
	case KindPrecommit:
		return "precommit"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Vote is a voter's signed statement in view View of round Round: for a
// prevote or precommit, the ID of the value it votes for (zero: nil); for a
// proposal, the ID of the proposed value and the view of the prevote
// quorum that made the proposer re-propose it (-1 when none).
type Vote struct {
	Kind      VoteKind
	Round     uint64
	View      uint32
	Value     Hash
	ValidView int32
	From      PeerID
	Sig       []byte
}

// VoteSignBytes is what a vote's signer signs.
func VoteSignBytes(run RunID, v *Vote) []byte {
	e := newEnc("vtrain/sig/vote/v1\x00")
	e.b = append(e.b, run[:]...)
	e.u8(uint8(v.Kind))
	e.u64(v.Round)
	e.u32(v.View)
	e.hash(v.Value)
	e.u32(uint32(v.ValidView))
	e.str(string(v.From))
	return e.b
}

func (v *Vote) String() string {
	return fmt.Sprintf("%s %d/%d %s by %s", v.Kind, v.Round, v.View, v.Value.Short(), v.From)
}

// Proposal is a proposer's signed vote of kind KindProposal with the value
// it proposes. A value proposed again (Vote.ValidView ≥ 0) comes with the
// prevotes of more than two thirds of the voters for it in that view (the
// proof of lock), so that every node can check it whatever votes it saw.
type Proposal struct {
	Vote  Vote
	Value *Value
	POL   []Signature
}

// Certificate is a quorum certificate: precommits of more than two thirds
// of a round's voters for one value in one view. It is what makes a
// decision final, and what a node that did not see the votes checks
// before it adopts the decision.
type Certificate struct {
	Round uint64
	View  uint32
	Value Hash
	Sigs  []Signature // sorted by signer
}

// Signature is one voter's signature in a certificate.
type Signature struct {
	From PeerID
	Sig  []byte
}

// vote returns the vote of kind that signature s in c stands for.
func (c *Certificate) vote(kind VoteKind, s Signature) *Vote {
	return &Vote{Kind: kind, Round: c.Round, View: c.View, Value: c.Value, ValidView: -1, From: s.From, Sig: s.Sig}
}

// Commit is a decided round: its value and the certificate that decides
// it. Nodes gossip it when peers lag and serve it on request.
type Commit struct {
	Value *Value
	Cert  Certificate
}

// JoinRequest is a peer's signed request to become a member of the run,
// made when it is at round Round.
type JoinRequest struct {
	Round uint64
	From  PeerID
	Sig   []byte
}

// JoinSignBytes is what a joiner signs.
func JoinSignBytes(run RunID, j *JoinRequest) []byte {
	e := newEnc("vtrain/sig/join/v1\x00")
	e.b = append(e.b, run[:]...)
	e.u64(j.Round)
	e.str(string(j.From))
	return e.b
}

// Fault is what a failed verdict claims, and so what a referee checks.
type Fault uint8

// Faults. A pass claims none.
const (
	FaultNone Fault = iota
	// FaultStep: one inner step of the accused's signed answer does not
	// follow from the state before it. The referee re-executes that one
	// step from the state hashing to the leaf before (the segment's
	// committed start for its first step) and compares.
	FaultStep
	// FaultLink: the committed final state and residual do not compress to
	// the payload (or the residual after it). The referee redoes the
	// compression.
	FaultLink
	// FaultAnswer: the accused's signed answer contradicts its own
	// commitment (its segment's last leaf is not the committed root, or it
	// has the wrong number of leaves). The referee needs no computation.
	FaultAnswer
	// FaultSilent: no valid answer reached the challenger in time. Each
	// referee asks the accused itself: a quorum of voters must have found
	// it silent too, so a challenger cannot fake "no answer".
	FaultSilent
	// FaultSegment: in runs with a tolerance (peers on different engines,
	// where no step is bit-exact), re-executing the whole segment from its
	// committed start lands farther than the tolerance from its committed
	// end. The referee re-executes the segment.
	FaultSegment
	// FaultProof: the update is a private peer's (runspec.Privacy), and
	// the accused's signed answer carries a proof of the step the beacon
	// drew that does not verify against the update's commitments, the
	// run's data root and sampler, and the run's key. Anyone checks it in
	// milliseconds: no referee computes anything but the verification.
	FaultProof
	faultEnd
)

func (f Fault) String() string {
	if f >= faultEnd {
		return fmt.Sprintf("fault(%d)", uint8(f))
	}
	return [...]string{"none", "step", "link", "answer", "silent", "segment", "proof"}[f]
}

// Answer is the accused's signed answer to a challenge on segment Segment
// of its update Update: the hash of its trainer's state after each inner
// step of the segment (trainer.Snapshot.Hash). The answer's other parts
// (the start and final states, the residual) are bound by the update's
// commitments already; these leaves are what narrows a dispute to a single
// step, and the signature makes them the accused's word.
//
// A private peer's answer (runspec.Privacy) carries no leaves: Segment is
// the inner step the beacon drew (PrivateStep), and Proof the zk bundle
// (zk.Bundle) that proves it.
type Answer struct {
	Round   uint64
	Update  Hash
	Segment int
	Leaves  []Hash
	Proof   []byte
	Sig     []byte
}

// MaxLeaves bounds an answer's leaves (a segment's inner steps).
const MaxLeaves = 1 << 16

// MaxProof bounds an answer's proof bundle (a Groth16 proof and its
// statement: a few hundred bytes).
const MaxProof = 4 << 10

// AnswerSignBytes is what an accused signs in its answer.
func AnswerSignBytes(run RunID, a *Answer) []byte {
	domain := "vtrain/sig/answer/v1\x00"
	if len(a.Proof) > 0 {
		domain = "vtrain/sig/answer/v2\x00" // a private peer's: with its proof
	}
	e := newEnc(domain)
	e.b = append(e.b, run[:]...)
	e.u64(a.Round)
	e.hash(a.Update)
	e.u64(uint64(a.Segment))
	e.u64(uint64(len(a.Leaves)))
	for _, l := range a.Leaves {
		e.hash(l)
	}
	if len(a.Proof) > 0 {
		e.bytes(a.Proof)
	}
	return e.b
}

// VerdictMsg is a challenger's signed result of a spot-check: segment
// Segment of Accused's update Update of round Round, re-executed. A failed
// verdict is a claim that any member can referee: it names its Fault,
// carries the accused's signed Answer when the claim rests on it
// (FaultStep, FaultAnswer) and, for FaultStep, the disputed Step (counted
// in the round's inner steps, in (lo, hi] of the segment).
type VerdictMsg struct {
	Round   uint64
	Update  Hash
	Accused PeerID
	Segment int
	From    PeerID
	Pass    bool
	Reason  string
	Fault   Fault
	Step    int
	Answer  *Answer
	Sig     []byte
}

// MaxReason bounds a verdict's reason.
const MaxReason = 1024

// VerdictSignBytes is what a challenger signs.
func VerdictSignBytes(run RunID, v *VerdictMsg) []byte {
	e := newEnc("vtrain/sig/verdict/v2\x00")
	e.b = append(e.b, run[:]...)
	e.u64(v.Round)
	e.hash(v.Update)
	e.str(string(v.Accused))
	e.u64(uint64(v.Segment))
	e.str(string(v.From))
	e.flag(v.Pass)
	e.str(v.Reason)
	e.u8(uint8(v.Fault))
	e.u64(uint64(v.Step))
	e.flag(v.Answer != nil)
	if a := v.Answer; a != nil {
		e.bytes(AnswerSignBytes(run, a))
		e.bytes(a.Sig)
	}
	return e.b
}

// shape checks what a verdict must be whatever the round: a pass claims
// no fault; a failure names a fault, and carries an answer exactly when
// the fault rests on one. A pass carries an answer only on a private
// peer's update (its proof: checkDraw).
func (v *VerdictMsg) shape() error {
	switch {
	case v.From == "" || v.Accused == "" || v.Segment < 0 || v.Segment >= MaxLeaves || len(v.Reason) > MaxReason:
		return fmt.Errorf("malformed verdict")
	case v.Fault >= faultEnd:
		return fmt.Errorf("unknown fault %d", v.Fault)
	case v.Pass != (v.Fault == FaultNone):
		return fmt.Errorf("a pass with a fault, or a failure without one")
	case v.Answer == nil && (v.Fault == FaultStep || v.Fault == FaultAnswer || v.Fault == FaultProof):
		return fmt.Errorf("a %s verdict without an answer", v.Fault)
	case v.Answer != nil && (v.Fault == FaultLink || v.Fault == FaultSilent || v.Fault == FaultSegment):
		return fmt.Errorf("a %s verdict with an answer", v.Fault)
	case v.Answer != nil && (len(v.Answer.Proof) > MaxProof || len(v.Answer.Proof) > 0 && len(v.Answer.Leaves) > 0):
		return fmt.Errorf("malformed answer")
	case v.Fault != FaultStep && v.Step != 0 || v.Step < 0:
		return fmt.Errorf("a step on a %s verdict", v.Fault)
	case v.Answer != nil && len(v.Answer.Leaves) > MaxLeaves:
		return fmt.Errorf("oversize answer")
	}
	return nil
}

// key identifies the challenge a verdict answers: a round's update, as
// one of its challengers checked it.
func (v *VerdictMsg) key() verdictKey { return verdictKey{v.Round, v.Update, v.From} }

type verdictKey struct {
	round  uint64
	update Hash
	from   PeerID
}

// Equivocation is proof that a voter signed two different votes of one
// kind in one view of one round.
type Equivocation struct {
	A, B Vote
}

// check verifies the proof's shape: one signer, one slot, two values (the
// signatures are the caller's to check).
func (q *Equivocation) check() error {
	a, b := &q.A, &q.B
	if a.From != b.From || a.Kind != b.Kind || a.Round != b.Round || a.View != b.View {
		return fmt.Errorf("not two votes of one signer in one slot")
	}
	if a.Value == b.Value && a.ValidView == b.ValidView {
		return fmt.Errorf("the two votes are the same")
	}
	return nil
}

// Message is any message the engine publishes; exactly one field is set.
// The transport frames it; the signatures are already in it.
type Message struct {
	Update   *Update
	Proposal *Proposal
	Vote     *Vote
	Commit   *Commit
	Join     *JoinRequest
	Verdict  *VerdictMsg
	Evidence *Equivocation
}

// Round returns the round a message is about.
func (m Message) Round() uint64 {
	switch {
	case m.Update != nil:
		return m.Update.Round
	case m.Proposal != nil:
		return m.Proposal.Vote.Round
	case m.Vote != nil:
		return m.Vote.Round
	case m.Commit != nil:
		return m.Commit.Cert.Round
	case m.Join != nil:
		return m.Join.Round
	case m.Verdict != nil:
		return m.Verdict.Round
	case m.Evidence != nil:
		return m.Evidence.A.Round
	}
	return 0
}

// Kind names the message's kind, for logs and byte accounting.
func (m Message) Kind() string {
	switch {
	case m.Update != nil:
		return "update"
	case m.Proposal != nil:
		return "proposal"
	case m.Vote != nil:
		return m.Vote.Kind.String()
	case m.Commit != nil:
		return "commit"
	case m.Join != nil:
		return "join"
	case m.Verdict != nil:
		return "verdict"
	case m.Evidence != nil:
		return "evidence"
	}
	return "empty"
}

func sortSigs(s []Signature) {
	slices.SortFunc(s, func(a, b Signature) int {
		switch {
		case a.From < b.From:
			return -1
		case a.From > b.From:
			return 1
		}
		return 0
	})
}
