package gossip

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/pb"
)

// Conversions between the protocol's types and the wire's. Every decoder
// of peer bytes bounds what it allocates and checks every length; the
// engine judges the content.

func hash32(b []byte, what string) (consensus.Hash, error) {
	var h consensus.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("%w: %s is %d bytes, want %d", ErrWire, what, len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

func hashesPB(hs []consensus.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func pidBytes(p consensus.PeerID) ([]byte, error) {
	id, err := peer.Decode(string(p))
	if err != nil {
		return nil, fmt.Errorf("gossip: %q is not a peer ID: %w", p, err)
	}
	return []byte(id), nil
}

func pidFromBytes(b []byte) (consensus.PeerID, error) {
	id, err := peer.IDFromBytes(b)
	if err != nil {
		return "", fmt.Errorf("%w: malformed peer ID: %v", ErrWire, err)
	}
	return consensus.PeerID(id.String()), nil
}

func pidsPB(ps []consensus.PeerID) ([][]byte, error) {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		b, err := pidBytes(p)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func pidsFromPB(bs [][]byte) ([]consensus.PeerID, error) {
	if len(bs) > maxList {
		return nil, fmt.Errorf("%w: %d peer IDs", ErrWire, len(bs))
	}
	out := make([]consensus.PeerID, len(bs))
	for i, b := range bs {
		p, err := pidFromBytes(b)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// A value ID on the wire: 32 bytes, or none for nil.
func valueIDPB(h consensus.Hash) []byte {
	if h.IsZero() {
		return nil
	}
	return h[:]
}

func valueIDFromPB(b []byte) (consensus.Hash, error) {
	if len(b) == 0 {
		return consensus.Hash{}, nil
	}
	return hash32(b, "value ID")
}

func updateFromPB(x *pb.Update, round uint64, from consensus.PeerID) (*consensus.Update, error) {
	base, err := hash32(x.GetBase(), "update base")
	if err != nil {
		return nil, err
	}
	u := &consensus.Update{Round: round, Base: base, From: from, Samples: x.Samples, Loss: x.Loss, Payload: x.Payload, Seed: x.Seed}
	if len(x.Segments) > maxSegments {
		return nil, fmt.Errorf("%w: %d segment roots", ErrWire, len(x.Segments))
	}
	for _, b := range x.Segments {
		h, err := hash32(b, "segment root")
		if err != nil {
			return nil, err
		}
		u.Segments = append(u.Segments, h)
	}
	if u.ResidualIn, err = hash32(x.ResidualIn, "residual hash"); err != nil {
		return nil, err
	}
	if u.ResidualOut, err = hash32(x.ResidualOut, "residual hash"); err != nil {
		return nil, err
	}
	return u, nil
}

func sigsPB(sigs []consensus.Signature) ([]*pb.Sig, error) {
	out := make([]*pb.Sig, len(sigs))
	for i, s := range sigs {
		b, err := pidBytes(s.From)
		if err != nil {
			return nil, err
		}
		out[i] = &pb.Sig{From: b, Sig: s.Sig}
	}
	return out, nil
}

func sigsFromPB(ps []*pb.Sig) ([]consensus.Signature, error) {
	if len(ps) > maxList {
		return nil, fmt.Errorf("%w: %d signatures", ErrWire, len(ps))
	}
	out := make([]consensus.Signature, len(ps))
	for i, s := range ps {
		p, err := pidFromBytes(s.From)
		if err != nil {
			return nil, err
		}
		if len(s.Sig) > 1024 {
			return nil, fmt.Errorf("%w: signature of %d bytes", ErrWire, len(s.Sig))
		}
		out[i] = consensus.Signature{From: p, Sig: s.Sig}
	}
	return out, nil
}

func fullVotePB(v *consensus.Vote) (*pb.FullVote, error) {
	from, err := pidBytes(v.From)
	if err != nil {
		return nil, err
	}
	return &pb.FullVote{Kind: uint32(v.Kind), Round: v.Round, View: v.View, Value: valueIDPB(v.Value), ValidView: v.ValidView, From: from, Sig: v.Sig}, nil
}

func fullVoteFromPB(x *pb.FullVote) (consensus.Vote, error) {
	if x == nil {
		return consensus.Vote{}, fmt.Errorf("%w: missing vote", ErrWire)
	}
	from, err := pidFromBytes(x.From)
	if err != nil {
		return consensus.Vote{}, err
	}
	id, err := valueIDFromPB(x.Value)
	if err != nil {
		return consensus.Vote{}, err
	}
	if x.Kind > 255 || len(x.Sig) > 1024 {
		return consensus.Vote{}, fmt.Errorf("%w: malformed vote", ErrWire)
	}
	return consensus.Vote{Kind: consensus.VoteKind(x.Kind), Round: x.Round, View: x.View, Value: id, ValidView: x.ValidView, From: from, Sig: x.Sig}, nil
}

func equivocationPB(q *consensus.Equivocation) (*pb.Equivocation, error) {
	a, err := fullVotePB(&q.A)
	if err != nil {
		return nil, err
	}
	b, err := fullVotePB(&q.B)
	if err != nil {
		return nil, err
	}
	return &pb.Equivocation{A: a, B: b}, nil
}

func equivocationFromPB(x *pb.Equivocation) (*consensus.Equivocation, error) {
	a, err := fullVoteFromPB(x.GetA())
	if err != nil {
		return nil, err
	}
	b, err := fullVoteFromPB(x.GetB())
	if err != nil {
		return nil, err
	}
	return &consensus.Equivocation{A: a, B: b}, nil
}

func verdictPB(v *consensus.VerdictMsg) (*pb.FullVerdict, error) {
	acc, err := pidBytes(v.Accused)
	if err != nil {
		return nil, err
	}
	from, err := pidBytes(v.From)
	if err != nil {
		return nil, err
	}
	return &pb.FullVerdict{Round: v.Round, Update: v.Update[:], Accused: acc, Segment: uint32(v.Segment), From: from, Pass: v.Pass, Reason: v.Reason, Sig: v.Sig,
		Fault: uint32(v.Fault), Step: uint32(v.Step), Answer: answerPB(v.Answer)}, nil
}

// maxLeaves bounds an answer's leaves on the wire (a segment's steps).
const maxLeaves = 1 << 14

func answerPB(a *consensus.Answer) *pb.Answer {
	if a == nil {
		return nil
	}
	out := &pb.Answer{Sig: a.Sig, Proof: a.Proof}
	for _, l := range a.Leaves {
		out.Leaves = append(out.Leaves, l[:])
	}
	return out
}

// answerFromPB reads the answer of round's update id, segment seg.
func answerFromPB(x *pb.Answer, round uint64, id consensus.Hash, seg int) (*consensus.Answer, error) {
	if x == nil {
		return nil, nil
	}
	if len(x.Leaves) > maxLeaves || len(x.Sig) > 1024 || len(x.Proof) > consensus.MaxProof {
		return nil, fmt.Errorf("%w: oversize answer", ErrWire)
	}
	a := &consensus.Answer{Round: round, Update: id, Segment: seg, Sig: x.Sig, Proof: x.Proof}
	for _, b := range x.Leaves {
		h, err := hash32(b, "answer leaf")
		if err != nil {
			return nil, err
		}
		a.Leaves = append(a.Leaves, h)
	}
	return a, nil
}

// verdictBody reads the parts of a verdict beyond its header.
func verdictBody(v *consensus.VerdictMsg, fault, step uint32, ans *pb.Answer) error {
	if fault > 255 || step > 1<<30 {
		return fmt.Errorf("%w: malformed verdict", ErrWire)
	}
	a, err := answerFromPB(ans, v.Round, v.Update, v.Segment)
	if err != nil {
		return err
	}
	v.Fault, v.Step, v.Answer = consensus.Fault(fault), int(step), a
	return nil
}

func verdictFromPB(x *pb.FullVerdict) (consensus.VerdictMsg, error) {
	id, err := hash32(x.GetUpdate(), "verdict update")
	if err != nil {
		return consensus.VerdictMsg{}, err
	}
	acc, err := pidFromBytes(x.Accused)
	if err != nil {
		return consensus.VerdictMsg{}, err
	}
	from, err := pidFromBytes(x.From)
	if err != nil {
		return consensus.VerdictMsg{}, err
	}
	if x.Segment > maxSegments || len(x.Reason) > consensus.MaxReason || len(x.Sig) > 1024 {
		return consensus.VerdictMsg{}, fmt.Errorf("%w: malformed verdict", ErrWire)
	}
	v := consensus.VerdictMsg{Round: x.Round, Update: id, Accused: acc, Segment: int(x.Segment), From: from, Pass: x.Pass, Reason: x.Reason, Sig: x.Sig}
	if err := verdictBody(&v, x.Fault, x.Step, x.Answer); err != nil {
		return consensus.VerdictMsg{}, err
	}
	return v, nil
}

func valuePB(v *consensus.Value) (*pb.Value, error) {
	out := &pb.Value{Round: v.Round, Base: v.Base[:], Voters: v.Voters[:], Next: v.Next[:], NextVoters: v.NextVoters[:]}
	for _, r := range v.Updates {
		from, err := pidBytes(r.From)
		if err != nil {
			return nil, err
		}
		out.Updates = append(out.Updates, &pb.UpdateRef{Id: r.ID[:], From: from, Newcomer: r.Newcomer, At: r.At, Late: r.Late})
	}
	for _, j := range v.Admit {
		from, err := pidBytes(j.From)
		if err != nil {
			return nil, err
		}
		out.Admit = append(out.Admit, &pb.FullJoin{Round: j.Round, From: from, Sig: j.Sig})
	}
	for i := range v.Verdicts {
		x, err := verdictPB(&v.Verdicts[i])
		if err != nil {
			return nil, err
		}
		out.Verdicts = append(out.Verdicts, x)
	}
	for i := range v.Overturned {
		x, err := verdictPB(&v.Overturned[i])
		if err != nil {
			return nil, err
		}
		out.Overturned = append(out.Overturned, x)
	}
	for i := range v.Evidence {
		q, err := equivocationPB(&v.Evidence[i])
		if err != nil {
			return nil, err
		}
		out.Evidence = append(out.Evidence, q)
	}
	return out, nil
}

func valueFromPB(x *pb.Value) (*consensus.Value, error) {
	if x == nil {
		return nil, fmt.Errorf("%w: missing value", ErrWire)
	}
	if len(x.Updates) > maxList || len(x.Admit) > maxList || len(x.Verdicts) > 4*maxList || len(x.Overturned) > maxList || len(x.Evidence) > maxList {
		return nil, fmt.Errorf("%w: oversize value", ErrWire)
	}
	v := &consensus.Value{Round: x.Round}
	var err error
	for _, h := range []struct {
		dst  *consensus.Hash
		b    []byte
		what string
	}{{&v.Base, x.Base, "value base"}, {&v.Voters, x.Voters, "value voters"}, {&v.Next, x.Next, "value next state"}, {&v.NextVoters, x.NextVoters, "value next voters"}} {
		if *h.dst, err = hash32(h.b, h.what); err != nil {
			return nil, err
		}
	}
	for _, r := range x.Updates {
		id, err := hash32(r.GetId(), "update ID")
		if err != nil {
			return nil, err
		}
		from, err := pidFromBytes(r.GetFrom())
		if err != nil {
			return nil, err
		}
		v.Updates = append(v.Updates, consensus.UpdateRef{ID: id, From: from, Newcomer: r.Newcomer, At: r.At, Late: r.Late})
	}
	for _, j := range x.Admit {
		from, err := pidFromBytes(j.GetFrom())
		if err != nil {
			return nil, err
		}
		if len(j.Sig) > 1024 {
			return nil, fmt.Errorf("%w: malformed join request", ErrWire)
		}
		v.Admit = append(v.Admit, consensus.JoinRequest{Round: j.Round, From: from, Sig: j.Sig})
	}
	for _, y := range x.Verdicts {
		vm, err := verdictFromPB(y)
		if err != nil {
			return nil, err
		}
		v.Verdicts = append(v.Verdicts, vm)
	}
	for _, y := range x.Overturned {
		vm, err := verdictFromPB(y)
		if err != nil {
			return nil, err
		}
		v.Overturned = append(v.Overturned, vm)
	}
	for _, y := range x.Evidence {
		q, err := equivocationFromPB(y)
		if err != nil {
			return nil, err
		}
		v.Evidence = append(v.Evidence, *q)
	}
	return v, nil
}

func certPB(c *consensus.Certificate) (*pb.Certificate, error) {
	sigs, err := sigsPB(c.Sigs)
	if err != nil {
		return nil, err
	}
	return &pb.Certificate{Round: c.Round, View: c.View, Value: c.Value[:], Sigs: sigs}, nil
}

func certFromPB(x *pb.Certificate) (consensus.Certificate, error) {
	if x == nil {
		return consensus.Certificate{}, fmt.Errorf("%w: missing certificate", ErrWire)
	}
	id, err := hash32(x.Value, "certified value")
	if err != nil {
		return consensus.Certificate{}, err
	}
	sigs, err := sigsFromPB(x.Sigs)
	if err != nil {
		return consensus.Certificate{}, err
	}
	return consensus.Certificate{Round: x.Round, View: x.View, Value: id, Sigs: sigs}, nil
}

func commitPB(c *consensus.Commit) (*pb.Commit, error) {
	v, err := valuePB(c.Value)
	if err != nil {
		return nil, err
	}
	cert, err := certPB(&c.Cert)
	if err != nil {
		return nil, err
	}
	return &pb.Commit{Value: v, Cert: cert}, nil
}

func commitFromPB(x *pb.Commit) (*consensus.Commit, error) {
	v, err := valueFromPB(x.GetValue())
	if err != nil {
		return nil, err
	}
	cert, err := certFromPB(x.GetCert())
	if err != nil {
		return nil, err
	}
	return &consensus.Commit{Value: v, Cert: cert}, nil
}

// ProofPB and ProofFromPB convert a chain of certified decisions (sync
// responses, a node's kept chain).
func ProofPB(p *consensus.Proof) (*pb.Proof, error) {
	out := &pb.Proof{}
	for i := range p.Links {
		c, err := commitPB(&p.Links[i].Commit)
		if err != nil {
			return nil, err
		}
		nv, err := pidsPB(p.Links[i].NextVoters)
		if err != nil {
			return nil, err
		}
		out.Links = append(out.Links, &pb.Link{Commit: c, NextVoters: nv})
	}
	return out, nil
}

// ProofFromPB is ProofPB's inverse, bounded.
func ProofFromPB(x *pb.Proof) (*consensus.Proof, error) {
	if x == nil {
		return nil, fmt.Errorf("%w: missing proof", ErrWire)
	}
	if len(x.Links) > maxList {
		return nil, fmt.Errorf("%w: proof of %d links", ErrWire, len(x.Links))
	}
	p := &consensus.Proof{}
	for _, l := range x.Links {
		c, err := commitFromPB(l.GetCommit())
		if err != nil {
			return nil, err
		}
		nv, err := pidsFromPB(l.NextVoters)
		if err != nil {
			return nil, err
		}
		p.Links = append(p.Links, consensus.Link{Commit: *c, NextVoters: nv})
	}
	return p, nil
}

// MembersPB and MembersFromPB convert a membership.
func MembersPB(ms *consensus.Members) ([]*pb.Member, [][]byte, error) {
	var out []*pb.Member
	for _, m := range ms.List {
		id, err := pidBytes(m.ID)
		if err != nil {
			return nil, nil, err
		}
		pm := &pb.Member{Id: id, Founder: m.Founder, Seat: m.Seat, Since: m.Since, Work: m.Work, Last: m.Last, Pace: m.Pace}
		if m.Residual != (consensus.Hash{}) {
			pm.Residual = m.Residual[:]
		}
		if m.Unproven != (consensus.Hash{}) {
			pm.Unproven = m.Unproven[:]
		}
		out = append(out, pm)
	}
	ex, err := pidsPB(ms.Excluded)
	return out, ex, err
}

// MembersFromPB is MembersPB's inverse, bounded; the engine validates the
// result.
func MembersFromPB(list []*pb.Member, excluded [][]byte) (consensus.Members, error) {
	if len(list) > maxList || len(excluded) > 64*maxList {
		return consensus.Members{}, fmt.Errorf("%w: oversize membership", ErrWire)
	}
	var ms consensus.Members
	for _, m := range list {
		id, err := pidFromBytes(m.Id)
		if err != nil {
			return consensus.Members{}, err
		}
		cm := consensus.Member{ID: id, Founder: m.Founder, Seat: m.Seat, Since: m.Since, Work: m.Work, Last: m.Last, Pace: m.Pace}
		if len(m.Residual) > 0 {
			if cm.Residual, err = hash32(m.Residual, "residual mark"); err != nil {
				return consensus.Members{}, err
			}
		}
		if len(m.Unproven) > 0 {
			if cm.Unproven, err = hash32(m.Unproven, "unproven update"); err != nil {
				return consensus.Members{}, err
			}
		}
		ms.List = append(ms.List, cm)
	}
	ex := make([]consensus.PeerID, 0, len(excluded))
	for _, b := range excluded {
		p, err := pidFromBytes(b)
		if err != nil {
			return consensus.Members{}, err
		}
		ex = append(ex, p)
	}
	ms.Excluded = ex
	return ms, nil
}

func floatsToBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func bytesToFloats(b []byte, n int) ([]float32, error) {
	if len(b) != 4*n {
		return nil, fmt.Errorf("%w: vector of %d bytes, want %d", ErrWire, len(b), 4*n)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

// StatePB and StateFromPB convert an agreed state for the sync protocol
// and checkpoints.
func StatePB(st *consensus.State) (*pb.State, error) {
	ms, ex, err := MembersPB(&st.Members)
	if err != nil {
		return nil, err
	}
	return &pb.State{Round: st.Round, Theta: floatsToBytes(st.Theta), Momentum: floatsToBytes(st.Momentum), Members: ms, Excluded: ex}, nil
}

// StateFromPB is StatePB's inverse for a model of d parameters.
func StateFromPB(x *pb.State, d int) (consensus.State, error) {
	if x == nil {
		return consensus.State{}, fmt.Errorf("%w: missing state", ErrWire)
	}
	st := consensus.State{Round: x.Round}
	var err error
	if st.Theta, err = bytesToFloats(x.Theta, d); err != nil {
		return st, err
	}
	if st.Momentum, err = bytesToFloats(x.Momentum, d); err != nil {
		return st, err
	}
	if st.Members, err = MembersFromPB(x.Members, x.Excluded); err != nil {
		return st, err
	}
	return st, st.Members.Validate(st.Round)
}

// floatsUpTo decodes at most n little-endian float32 (a residual block,
// the last one shorter).
func floatsUpTo(b []byte, n int) ([]float32, error) {
	if len(b)%4 != 0 || len(b) > 4*n {
		return nil, fmt.Errorf("%w: block of %d bytes, want a multiple of 4 up to %d", ErrWire, len(b), 4*n)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

// maxHave bounds the states an asker offers as delta bases.
const maxHave = 4

// StateDeltaPB is the wire form of st as a delta against base, a state
// the receiver holds: theta and momentum as zstd frames of their bit
// patterns XOR base's.
func StateDeltaPB(st, base *consensus.State) (*pb.State, error) {
	x, err := StatePB(st)
	if err != nil {
		return nil, err
	}
	if len(base.Theta) != len(st.Theta) || len(base.Momentum) != len(st.Momentum) {
		return nil, fmt.Errorf("gossip: delta base of another size")
	}
	bh := base.Hash()
	x.DeltaBase = bh[:]
	x.Theta = deltaEncoder().EncodeAll(xorFloats(st.Theta, base.Theta), nil)
	x.Momentum = deltaEncoder().EncodeAll(xorFloats(st.Momentum, base.Momentum), nil)
	return x, nil
}

// StateFromDeltaPB decodes a state sent as StateFromPB does, or, when it
// names a delta base, against that base, which must be among have. The
// frames may not inflate past the model's size.
func StateFromDeltaPB(x *pb.State, d int, have []consensus.State) (consensus.State, error) {
	if x == nil || len(x.DeltaBase) == 0 {
		return StateFromPB(x, d)
	}
	bh, err := hash32(x.DeltaBase, "delta base")
	if err != nil {
		return consensus.State{}, err
	}
	var base *consensus.State
	for i := range have {
		if have[i].Hash() == bh && len(have[i].Theta) == d && len(have[i].Momentum) == d {
			base = &have[i]
			break
		}
	}
	if base == nil {
		return consensus.State{}, fmt.Errorf("%w: a delta against %s, which was not offered", ErrWire, bh.Short())
	}
	y := &pb.State{Round: x.Round, Members: x.Members, Excluded: x.Excluded}
	for _, f := range []struct {
		in   []byte
		base []float32
		out  *[]byte
	}{{x.Theta, base.Theta, &y.Theta}, {x.Momentum, base.Momentum, &y.Momentum}} {
		raw, err := deltaDecoder(d).DecodeAll(f.in, make([]byte, 0, 4*d))
		if err != nil || len(raw) != 4*d {
			return consensus.State{}, fmt.Errorf("%w: a state delta that does not decode to %d values: %v", ErrWire, d, err)
		}
		xorInto(raw, f.base)
		*f.out = raw
	}
	return StateFromPB(y, d)
}

// xorFloats is the little-endian bytes of a's bit patterns XOR b's.
func xorFloats(a, b []float32) []byte {
	out := make([]byte, 4*len(a))
	for i := range a {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(a[i])^math.Float32bits(b[i]))
	}
	return out
}

// xorInto XORs b's bit patterns into the little-endian words of raw.
func xorInto(raw []byte, b []float32) {
	for i := range b {
		w := binary.LittleEndian.Uint32(raw[4*i:])
		binary.LittleEndian.PutUint32(raw[4*i:], w^math.Float32bits(b[i]))
	}
}

var (
	deltaEncOnce sync.Once
	deltaEnc     *zstd.Encoder
	deltaDecMu   sync.Mutex
	deltaDecs    = map[int]*zstd.Decoder{}
)

func deltaEncoder() *zstd.Encoder {
	deltaEncOnce.Do(func() {
		deltaEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	})
	return deltaEnc
}

// deltaDecoder returns a zstd decoder that never inflates past 4d bytes.
func deltaDecoder(d int) *zstd.Decoder {
	deltaDecMu.Lock()
	defer deltaDecMu.Unlock()
	if dec := deltaDecs[d]; dec != nil {
		return dec
	}
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(4*d)), zstd.WithDecoderMaxWindow(uint64(max(4*d, zstd.MinWindowSize))),
		zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderConcurrency(1))
	deltaDecs[d] = dec
	return dec
}
