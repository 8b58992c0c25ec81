package gossip

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/ledger"
	"google.golang.org/protobuf/proto"
)

// signDomain separates the publisher signatures of message bodies from
// every other use of a peer's key.
const signDomain = "vtrain/v2/body\x00"

// ErrWire is wrapped by every error about a malformed, forged or foreign
// message.
var ErrWire = errors.New("gossip: bad message")

// Msg is a verified message: a protocol message (one field of Message set)
// or a tree head. Raw is the Signed message exactly as received, kept for
// serving and for the ledger.
type Msg struct {
	Round  uint64
	Sender peer.ID
	consensus.Message
	Head *ledger.SignedTreeHead // the sender's checkpoint of its own ledger
	Raw  []byte
}

// Kind names the message's kind.
func (m *Msg) Kind() string {
	if m.Head != nil {
		return "tree head"
	}
	return m.Message.Kind()
}

// LogValue implements slog.LogValuer: IDs and sizes, never tensors.
func (m *Msg) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", m.Kind()), slog.Uint64("round", m.Round),
		slog.String("from", ShortID(m.Sender)), slog.Int("bytes", len(m.Raw)))
}

// RunPrefix is how many bytes of the run ID a message carries: enough to
// tell runs apart at a glance; the whole ID is bound by every signature.
const RunPrefix = 8

// signed is what a publisher's signature covers: the domain, the run ID
// and the body.
func signed(run runspec.ID, body []byte) []byte {
	b := make([]byte, 0, len(signDomain)+len(run)+len(body))
	return append(append(append(b, signDomain...), run[:]...), body...)
}

// Signer returns the signing function an engine gets for key: Ed25519 is
// deterministic, and its signatures are what certificates carry.
func Signer(key crypto.PrivKey) func([]byte) []byte {
	return func(msg []byte) []byte {
		sig, err := key.Sign(msg)
		if err != nil {
			panic(fmt.Sprintf("gossip: signing: %v", err)) // an Ed25519 key in memory cannot fail
		}
		return sig
	}
}

// VerifySig checks that sig is p's signature of msg; p must be a peer ID
// with an inline (Ed25519) key.
func VerifySig(p consensus.PeerID, msg, sig []byte) bool {
	id, err := peer.Decode(string(p))
	if err != nil {
		return false
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return false
	}
	ok, err := pub.Verify(msg, sig)
	return err == nil && ok
}

// SignHead serializes and signs a node's tree head of its own ledger, to
// gossip it: other peers keep the latest as witnesses.
func SignHead(key crypto.PrivKey, run runspec.ID, h ledger.SignedTreeHead) ([]byte, error) {
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if h.Signer != self.String() || h.Run != ledger.Hash(run) {
		return nil, fmt.Errorf("gossip: a tree head of %s for run %x, not this peer's for this run", h.Signer, h.Run[:8])
	}
	body := &pb.Body{Run: run[:RunPrefix], Sender: []byte(self), Round: h.Round,
		Msg: &pb.Body_Head{Head: &pb.TreeHead{Size: h.Size, Root: h.Root[:], Sig: h.Sig}}}
	return signBody(key, run, body)
}

func signBody(key crypto.PrivKey, run runspec.ID, body *pb.Body) ([]byte, error) {
	bb, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(signed(run, bb))
	if err != nil {
		return nil, err
	}
	return proto.Marshal(&pb.Signed{Body: bb, Signature: sig})
}

func frame(run runspec.ID, body *pb.Body, sig []byte) ([]byte, error) {
	bb, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(&pb.Signed{Body: bb, Signature: sig})
}

// Encode frames a protocol message for the run. Updates, proposals, votes,
// join requests and verdicts carry their author's protocol signature
// (made by the engine); commits and equivocation proofs carry their
// signers' inside, and key signs them as their publisher.
func Encode(key crypto.PrivKey, run runspec.ID, m consensus.Message) ([]byte, error) {
	body := &pb.Body{Run: run[:RunPrefix], Round: m.Round()}
	var author consensus.PeerID
	var sig []byte
	switch {
	case m.Update != nil:
		u := m.Update
		author, sig = u.From, u.Sig
		body.Msg = &pb.Body_Update{Update: &pb.Update{Base: u.Base[:], Samples: u.Samples, Loss: u.Loss, Payload: u.Payload,
			Seed: u.Seed, Segments: hashesPB(u.Segments), ResidualIn: u.ResidualIn[:], ResidualOut: u.ResidualOut[:]}}
	case m.Proposal != nil:
		p := m.Proposal
		author, sig = p.Vote.From, p.Vote.Sig
		v, err := valuePB(p.Value)
		if err != nil {
			return nil, err
		}
		pol, err := sigsPB(p.POL)
		if err != nil {
			return nil, err
		}
		body.Msg = &pb.Body_Proposal{Proposal: &pb.Proposal{View: p.Vote.View, ValidView: p.Vote.ValidView, Value: v, Pol: pol}}
	case m.Vote != nil:
		v := m.Vote
		author, sig = v.From, v.Sig
		body.Msg = &pb.Body_Vote{Vote: &pb.Vote{Kind: uint32(v.Kind), View: v.View, Value: valueIDPB(v.Value)}}
	case m.Join != nil:
		author, sig = m.Join.From, m.Join.Sig
		body.Msg = &pb.Body_Join{Join: &pb.Join{}}
	case m.Verdict != nil:
		x := m.Verdict
		acc, err := pidBytes(x.Accused)
		if err != nil {
			return nil, err
		}
		author, sig = x.From, x.Sig
		body.Msg = &pb.Body_Verdict{Verdict: &pb.Verdict{Update: x.Update[:], Accused: acc, Segment: uint32(x.Segment), Pass: x.Pass, Reason: x.Reason,
			Fault: uint32(x.Fault), Step: uint32(x.Step), Answer: answerPB(x.Answer)}}
	case m.Commit != nil:
		c, err := commitPB(m.Commit)
		if err != nil {
			return nil, err
		}
		body.Msg = &pb.Body_Commit{Commit: c}
	case m.Evidence != nil:
		q, err := equivocationPB(m.Evidence)
		if err != nil {
			return nil, err
		}
		body.Msg = &pb.Body_Evidence{Evidence: q}
	default:
		return nil, fmt.Errorf("gossip: empty message")
	}
	if author == "" {
		self, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return nil, err
		}
		body.Sender = []byte(self)
		return signBody(key, run, body)
	}
	b, err := pidBytes(author)
	if err != nil {
		return nil, err
	}
	body.Sender = b
	return frame(run, body, sig)
}

// Verify decodes raw (at most maxBytes), checks the run and the author's
// signature, and converts the body to protocol types. It does not judge
// the content (rounds, payloads, membership): that is the engine's.
func Verify(raw []byte, run runspec.ID, maxBytes int) (*Msg, error) {
	if len(raw) > maxBytes {
		return nil, fmt.Errorf("%w: oversize: %d bytes exceeds %d", ErrWire, len(raw), maxBytes)
	}
	var s pb.Signed
	if err := proto.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: malformed: %v", ErrWire, err)
	}
	var body pb.Body
	if err := proto.Unmarshal(s.Body, &body); err != nil {
		return nil, fmt.Errorf("%w: malformed body: %v", ErrWire, err)
	}
	if len(body.Run) != RunPrefix || string(body.Run) != string(run[:RunPrefix]) {
		return nil, fmt.Errorf("%w: wrong run %x (this is %x)", ErrWire, body.Run[:min(len(body.Run), RunPrefix)], run[:RunPrefix])
	}
	sender, err := peer.IDFromBytes(body.Sender)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed sender: %v", ErrWire, err)
	}
	pub, err := sender.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: sender %s has no inline key: %v", ErrWire, ShortID(sender), err)
	}
	m := &Msg{Round: body.Round, Sender: sender, Raw: raw}
	from := consensus.PeerID(sender.String())
	var signedBytes []byte // what the signature covers
	switch x := body.Msg.(type) {
	case *pb.Body_Update:
		u, err := updateFromPB(x.Update, body.Round, from)
		if err != nil {
			return nil, err
		}
		u.Sig = s.Signature
		m.Update, signedBytes = u, consensus.UpdateSignBytes(run, u)
	case *pb.Body_Proposal:
		p := x.Proposal
		if p.GetValue() == nil {
			return nil, fmt.Errorf("%w: proposal without a value", ErrWire)
		}
		v, err := valueFromPB(p.Value)
		if err != nil {
			return nil, err
		}
		pol, err := sigsFromPB(p.Pol)
		if err != nil {
			return nil, err
		}
		prop := &consensus.Proposal{Vote: consensus.Vote{Kind: consensus.KindProposal, Round: body.Round, View: p.View,
			Value: v.ID(run), ValidView: p.ValidView, From: from, Sig: s.Signature}, Value: v, POL: pol}
		m.Proposal, signedBytes = prop, consensus.VoteSignBytes(run, &prop.Vote)
	case *pb.Body_Vote:
		id, err := valueIDFromPB(x.Vote.Value)
		if err != nil {
			return nil, err
		}
		v := &consensus.Vote{Kind: consensus.VoteKind(x.Vote.Kind), Round: body.Round, View: x.Vote.View, Value: id, ValidView: -1, From: from, Sig: s.Signature}
		if v.Kind != consensus.KindPrevote && v.Kind != consensus.KindPrecommit {
			return nil, fmt.Errorf("%w: vote of kind %d", ErrWire, x.Vote.Kind)
		}
		m.Vote, signedBytes = v, consensus.VoteSignBytes(run, v)
	case *pb.Body_Join:
		j := &consensus.JoinRequest{Round: body.Round, From: from, Sig: s.Signature}
		m.Join, signedBytes = j, consensus.JoinSignBytes(run, j)
	case *pb.Body_Verdict:
		v := x.Verdict
		id, err := hash32(v.GetUpdate(), "verdict update")
		if err != nil {
			return nil, err
		}
		acc, err := pidFromBytes(v.Accused)
		if err != nil {
			return nil, err
		}
		if v.Segment > maxSegments || len(v.Reason) > consensus.MaxReason {
			return nil, fmt.Errorf("%w: malformed verdict", ErrWire)
		}
		vm := &consensus.VerdictMsg{Round: body.Round, Update: id, Accused: acc, Segment: int(v.Segment), From: from, Pass: v.Pass, Reason: v.Reason, Sig: s.Signature}
		if err := verdictBody(vm, v.Fault, v.Step, v.Answer); err != nil {
			return nil, err
		}
		m.Verdict, signedBytes = vm, consensus.VerdictSignBytes(run, vm)
	case *pb.Body_Commit:
		c, err := commitFromPB(x.Commit)
		if err != nil {
			return nil, err
		}
		m.Commit, signedBytes = c, signed(run, s.Body)
	case *pb.Body_Evidence:
		q, err := equivocationFromPB(x.Evidence)
		if err != nil {
			return nil, err
		}
		m.Evidence, signedBytes = q, signed(run, s.Body)
	case *pb.Body_Head:
		root, err := hash32(x.Head.GetRoot(), "tree head root")
		if err != nil {
			return nil, err
		}
		h := &ledger.SignedTreeHead{TreeHead: ledger.TreeHead{Run: ledger.Hash(run), Round: body.Round, Size: x.Head.Size, Root: ledger.Hash(root)},
			Signer: sender.String(), Sig: x.Head.Sig}
		if err := h.Verify(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrWire, err)
		}
		m.Head, signedBytes = h, signed(run, s.Body)
	default:
		return nil, fmt.Errorf("%w: malformed: empty body", ErrWire)
	}
	if ok, err := pub.Verify(signedBytes, s.Signature); err != nil || !ok {
		return nil, fmt.Errorf("%w: bad signature from %s (forged, or for another run)", ErrWire, ShortID(sender))
	}
	return m, nil
}

// maxSegments bounds the segment roots of an update (inner steps are at
// most 100000).
const maxSegments = 100000

// maxList bounds every list a peer's message carries.
const maxList = 4096

func sha256sum(b []byte) [32]byte { return sha256.Sum256(b) }

// ShortID names a peer in messages and logs as people read it: the first
// four and last six characters of its ID ("12D3…x7kQpZ"), not Go's
// "<peer.ID 12*x7kQpZ>".
func ShortID(p peer.ID) string {
	s := p.String()
	if len(s) > 12 {
		return s[:4] + "…" + s[len(s)-6:]
	}
	return s
}
