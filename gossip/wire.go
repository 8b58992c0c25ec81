package gossip

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/ledger"
	"google.golang.org/protobuf/proto"
)

// signDomain separates vtrain's message signatures from every other use of
// a peer's key.
const signDomain = "vtrain/v1/body\x00"

// ErrWire is wrapped by every error about a malformed, forged or foreign
// message.
var ErrWire = errors.New("gossip: bad message")

// Msg is a verified message: one of Update, Commit, Hello is set. Raw is
// the Signed message exactly as received, kept for serving and for the
// ledger.
type Msg struct {
	Round   uint64
	Sender  peer.ID
	Update  *trainer.UpdateMsg
	Commit  *trainer.CommitMsg
	Hello   *trainer.HelloMsg
	Verdict *trainer.VerdictMsg
	Head    *ledger.SignedTreeHead // the sender's checkpoint of its own ledger
	Raw     []byte
}

// LogValue implements slog.LogValuer: IDs and sizes, never tensors.
func (m *Msg) LogValue() slog.Value {
	kind := "hello"
	switch {
	case m.Update != nil:
		kind = "update"
	case m.Commit != nil:
		kind = "commit"
	case m.Verdict != nil:
		kind = "verdict"
	case m.Head != nil:
		kind = "tree head"
	}
	return slog.GroupValue(slog.String("kind", kind), slog.Uint64("round", m.Round),
		slog.String("from", m.Sender.ShortString()), slog.Int("bytes", len(m.Raw)))
}

// RunPrefix is how many bytes of the run ID a message carries: enough to
// tell runs apart at a glance; the whole ID is bound by the signature.
const RunPrefix = 8

// signed is what a signature covers: the domain, the run ID and the body.
// Messages carry only a prefix of the run ID, but the whole ID is signed,
// so a message cannot be replayed into another run.
func signed(run runspec.ID, body []byte) []byte {
	b := make([]byte, 0, len(signDomain)+len(run)+len(body))
	return append(append(append(b, signDomain...), run[:]...), body...)
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

// Sign serializes and signs an engine message for the run.
func Sign(key crypto.PrivKey, run runspec.ID, o trainer.Outbound) ([]byte, error) {
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	body := &pb.Body{Run: run[:RunPrefix], Sender: []byte(self)}
	switch {
	case o.Update != nil:
		u := o.Update
		body.Round = u.Round
		segs := make([][]byte, len(u.Segments))
		for i := range u.Segments {
			segs[i] = u.Segments[i][:]
		}
		body.Msg = &pb.Body_Update{Update: &pb.Update{Base: u.Base[:], Samples: u.Samples, Loss: u.Loss, Payload: u.Payload,
			Seed: u.Seed, Segments: segs, ResidualIn: u.ResidualIn[:], ResidualOut: u.ResidualOut[:]}}
	case o.Commit != nil:
		c := o.Commit
		body.Round = c.Round
		ids := make([][]byte, len(c.Updates))
		for i := range c.Updates {
			ids[i] = c.Updates[i][:]
		}
		excl := make([][]byte, len(c.Excluded))
		for i, p := range c.Excluded {
			id, err := peer.Decode(string(p))
			if err != nil {
				return nil, fmt.Errorf("gossip: excluded peer %q: %w", p, err)
			}
			excl[i] = []byte(id)
		}
		body.Msg = &pb.Body_Commit{Commit: &pb.Commit{Base: c.Base[:], Updates: ids, Result: c.Result[:], Excluded: excl}}
	case o.Hello != nil:
		body.Round = o.Hello.Round
		body.Msg = &pb.Body_Hello{Hello: &pb.Hello{Base: o.Hello.Base[:]}}
	case o.Verdict != nil:
		v := o.Verdict
		acc, err := peer.Decode(string(v.Accused))
		if err != nil {
			return nil, fmt.Errorf("gossip: accused peer %q: %w", v.Accused, err)
		}
		body.Round = v.Round
		body.Msg = &pb.Body_Verdict{Verdict: &pb.Verdict{Update: v.Update[:], Accused: []byte(acc), Segment: uint32(v.Segment), Pass: v.Pass, Reason: v.Reason}}
	default:
		return nil, fmt.Errorf("gossip: empty outbound message")
	}
	return signBody(key, run, body)
}

func hash32(b []byte, what string) (trainer.Hash, error) {
	var h trainer.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("%w: %s is %d bytes, want %d", ErrWire, what, len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// Verify decodes raw (at most maxBytes), checks the run and the sender's
// signature, and converts the body to engine types. It does not judge the
// content (rounds, payloads): that is the validator's and the engine's.
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
		return nil, fmt.Errorf("%w: sender %s has no inline key: %v", ErrWire, sender.ShortString(), err)
	}
	ok, err := pub.Verify(signed(run, s.Body), s.Signature)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: bad signature from %s (forged, or for another run)", ErrWire, sender.ShortString())
	}
	m := &Msg{Round: body.Round, Sender: sender, Raw: raw}
	from := trainer.PeerID(sender.String())
	switch x := body.Msg.(type) {
	case *pb.Body_Update:
		base, err := hash32(x.Update.GetBase(), "update base")
		if err != nil {
			return nil, err
		}
		u := &trainer.UpdateMsg{Round: body.Round, Base: base, From: from, Samples: x.Update.Samples, Loss: x.Update.Loss, Payload: x.Update.Payload, Seed: x.Update.Seed}
		if len(x.Update.Segments) > maxSegments {
			return nil, fmt.Errorf("%w: %d segment roots", ErrWire, len(x.Update.Segments))
		}
		for _, b := range x.Update.Segments {
			h, err := hash32(b, "segment root")
			if err != nil {
				return nil, err
			}
			u.Segments = append(u.Segments, h)
		}
		if u.ResidualIn, err = hash32(x.Update.ResidualIn, "residual hash"); err != nil {
			return nil, err
		}
		if u.ResidualOut, err = hash32(x.Update.ResidualOut, "residual hash"); err != nil {
			return nil, err
		}
		m.Update = u
	case *pb.Body_Commit:
		c := &trainer.CommitMsg{Round: body.Round, From: from}
		if c.Base, err = hash32(x.Commit.GetBase(), "commit base"); err != nil {
			return nil, err
		}
		if c.Result, err = hash32(x.Commit.GetResult(), "commit result"); err != nil {
			return nil, err
		}
		for _, id := range x.Commit.Updates {
			h, err := hash32(id, "update ID")
			if err != nil {
				return nil, err
			}
			c.Updates = append(c.Updates, h)
		}
		for _, b := range x.Commit.Excluded {
			id, err := peer.IDFromBytes(b)
			if err != nil {
				return nil, fmt.Errorf("%w: malformed excluded peer: %v", ErrWire, err)
			}
			c.Excluded = append(c.Excluded, trainer.PeerID(id.String()))
		}
		m.Commit = c
	case *pb.Body_Hello:
		base, err := hash32(x.Hello.GetBase(), "hello base")
		if err != nil {
			return nil, err
		}
		m.Hello = &trainer.HelloMsg{Round: body.Round, Base: base, From: from}
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
		m.Head = h
	case *pb.Body_Verdict:
		v := x.Verdict
		id, err := hash32(v.GetUpdate(), "verdict update")
		if err != nil {
			return nil, err
		}
		acc, err := peer.IDFromBytes(v.Accused)
		if err != nil {
			return nil, fmt.Errorf("%w: malformed accused peer: %v", ErrWire, err)
		}
		if v.Segment > maxSegments || len(v.Reason) > 1024 {
			return nil, fmt.Errorf("%w: malformed verdict", ErrWire)
		}
		m.Verdict = &trainer.VerdictMsg{Round: body.Round, Update: id, Accused: trainer.PeerID(acc.String()), Segment: int(v.Segment),
			From: from, Pass: v.Pass, Reason: v.Reason}
	default:
		return nil, fmt.Errorf("%w: malformed: empty body", ErrWire)
	}
	return m, nil
}

// maxSegments bounds the segment roots of an update (inner steps are at
// most 100000).
const maxSegments = 100000

func sha256sum(b []byte) [32]byte { return sha256.Sum256(b) }
