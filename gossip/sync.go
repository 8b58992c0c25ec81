package gossip

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"google.golang.org/protobuf/proto"
)

// SyncProtocol is the request/response protocol for joining and catching
// up: one length-prefixed SyncRequest, one length-prefixed SyncResponse.
const SyncProtocol = protocol.ID("/vtrain/sync/2.0.0")

const (
	maxRequest  = 64 << 10
	syncTimeout = 30 * time.Second
)

// maxResponse bounds a response for a model of d parameters: the state
// (two vectors and the membership), up to maxFetch signed updates, a
// challenge's evidence, or a proof.
func (t *Transport) maxResponse() int {
	m, _ := t.spec.ModelSpec()
	return max(8*m.NumParams()+maxFetch*t.spec.Rounds.MaxMessage, t.maxEvidence(m.NumParams()), maxProof) + runspec.MaxSpecBytes + 1<<20
}

// maxProof bounds a proof of certified decisions.
const maxProof = 16 << 20

const maxFetch = 64

// maxEvidence bounds a challenge response: a light snapshot and
// verify.openings residual blocks with their two paths (a snapshot with up
// to four optimizer buffers, for a blob).
func (t *Transport) maxEvidence(d int) int {
	v := t.spec.Verify
	return 5*4*d + 1<<10 + v.Openings*(4*v.ResidualBlock+2*64*(32+2)+64)
}

func writeMsg(w io.Writer, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	buf := binary.AppendUvarint(nil, uint64(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

func readMsg(r *bufio.Reader, limit int, m proto.Message) error {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("%w: length: %v", ErrWire, err)
	}
	if n > uint64(limit) {
		return fmt.Errorf("%w: oversize: %d bytes exceeds %d", ErrWire, n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("%w: truncated: %v", ErrWire, err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: malformed: %v", ErrWire, err)
	}
	return nil
}

func (t *Transport) serveSync(s network.Stream) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(syncTimeout))
	var req pb.SyncRequest
	c := &counted{ReadWriter: s}
	defer func() {
		cat := syncCategory(&req)
		t.meter.add(false, cat, c.r)
		t.meter.add(true, cat, c.w)
	}()
	if err := readMsg(bufio.NewReader(c), maxRequest, &req); err != nil {
		t.log.Debug("sync: bad request", "from", ShortID(s.Conn().RemotePeer()), "err", err)
		s.Reset()
		return
	}
	resp := &pb.SyncResponse{}
	switch w := req.What.(type) {
	case *pb.SyncRequest_Push:
		if string(req.Run) != string(t.run[:]) {
			resp.Error = "wrong run"
			break
		}
		resp.Error = t.pushed(s.Conn().RemotePeer(), w.Push)
	case *pb.SyncRequest_Spec:
		if !w.Spec.GetPeersOnly() {
			resp.Spec = t.server.Spec()
		}
		resp.Peers = append(t.KnownPeers(), t.Addrs()...)
	case *pb.SyncRequest_State:
		if string(req.Run) != string(t.run[:]) {
			resp.Error = "wrong run"
			break
		}
		h, err := hash32(w.State.Hash, "state hash")
		if err != nil {
			resp.Error = err.Error()
			break
		}
		st, ok := t.server.State(h)
		if !ok {
			resp.Error = "state not held"
			break
		}
		// A delta against a state the asker holds, when this node holds
		// it too and the delta is smaller.
		full := 8 * len(st.Theta)
		for _, b := range w.State.Have[:min(len(w.State.Have), maxHave)] {
			bh, err := hash32(b, "state hash")
			if err != nil || bh == h {
				continue
			}
			if base, ok := t.server.State(bh); ok {
				if x, err := StateDeltaPB(&st, &base); err == nil && len(x.Theta)+len(x.Momentum) < full {
					resp.State = x
					break
				}
			}
		}
		if resp.State == nil {
			if resp.State, err = StatePB(&st); err != nil {
				resp.Error = err.Error()
			}
		}
	case *pb.SyncRequest_Proof:
		if string(req.Run) != string(t.run[:]) {
			resp.Error = "wrong run"
			break
		}
		p, err := ProofPB(t.server.Proof(w.Proof.Round))
		if err != nil {
			resp.Error = err.Error()
			break
		}
		resp.Proof = p
	case *pb.SyncRequest_Segment:
		if string(req.Run) != string(t.run[:]) {
			resp.Error = "wrong run"
			break
		}
		id, err := hash32(w.Segment.Update, "update ID")
		if err != nil {
			resp.Error = err.Error()
			break
		}
		if w.Segment.Leaves {
			a, err := t.server.Answer(w.Segment.Round, id, int(w.Segment.Segment))
			if err != nil {
				resp.Error, resp.NotYet = err.Error(), errors.Is(err, ErrNotYet)
				break
			}
			resp.Evidence = &pb.Evidence{Answer: answerPB(a)}
			break
		}
		if len(w.Segment.Blocks) > t.spec.Verify.Openings {
			resp.Error = fmt.Sprintf("%d residual blocks asked, the run opens %d", len(w.Segment.Blocks), t.spec.Verify.Openings)
			break
		}
		blocks := make([]int, len(w.Segment.Blocks))
		for i, b := range w.Segment.Blocks {
			blocks[i] = int(b)
		}
		ev, err := t.server.Evidence(w.Segment.Round, id, blocks)
		if err != nil {
			resp.Error, resp.NotYet = err.Error(), errors.Is(err, ErrNotYet)
			break
		}
		resp.Evidence = &pb.Evidence{Final: snapshotPB(ev.Final), Openings: openingsPB(ev.Openings)}
	case *pb.SyncRequest_Blob:
		if string(req.Run) != string(t.run[:]) {
			resp.Error = "wrong run"
			break
		}
		h, err := hash32(w.Blob.Hash, "blob hash")
		if err != nil {
			resp.Error = err.Error()
			break
		}
		id, err := hash32(w.Blob.Update, "update ID")
		if err != nil || w.Blob.Step < 0 || w.Blob.Step > 1<<30 {
			resp.Error = "malformed blob request"
			break
		}
		snap, ok := t.server.Blob(BlobRequest{Hash: h, Round: w.Blob.Round, Update: id, Step: int(w.Blob.Step)})
		if !ok {
			resp.Error = "not held"
			break
		}
		resp.Snapshot = snapshotPB(snap)
	case *pb.SyncRequest_Updates:
		if string(req.Run) != string(t.run[:]) {
			resp.Error = "wrong run"
			break
		}
		var ids []consensus.Hash
		for _, b := range w.Updates.Ids[:min(len(w.Updates.Ids), maxFetch)] {
			h, err := hash32(b, "update ID")
			if err != nil {
				resp.Error = err.Error()
				break
			}
			ids = append(ids, h)
		}
		for _, raw := range t.server.Updates(ids) {
			var sm pb.Signed
			if proto.Unmarshal(raw, &sm) == nil {
				resp.Updates = append(resp.Updates, &sm)
			}
		}
	default:
		resp.Error = "unknown request"
	}
	if err := writeMsg(c, resp); err != nil {
		s.Reset()
	}
}

func (t *Transport) request(ctx context.Context, p peer.ID, req *pb.SyncRequest) (*pb.SyncResponse, error) {
	return request(ctx, t.h, p, req, t.maxResponse(), t.meter)
}

// request sends req to p and reads the response, counting both in m (nil:
// not counted).
func request(ctx context.Context, h host.Host, p peer.ID, req *pb.SyncRequest, limit int, m *meter) (*pb.SyncResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, SyncProtocol)
	if err != nil {
		return nil, fmt.Errorf("gossip: sync with %s: %w", ShortID(p), err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(syncTimeout))
	c := &counted{ReadWriter: s}
	defer func() {
		cat := syncCategory(req)
		m.add(true, cat, c.w)
		m.add(false, cat, c.r)
	}()
	if err := writeMsg(c, req); err != nil {
		s.Reset()
		return nil, err
	}
	s.CloseWrite()
	var resp pb.SyncResponse
	if err := readMsg(bufio.NewReader(c), limit, &resp); err != nil {
		s.Reset()
		return nil, fmt.Errorf("gossip: sync with %s: %w", ShortID(p), err)
	}
	if resp.Error != "" {
		if resp.NotYet {
			return nil, fmt.Errorf("%w (%w): %s answered: %s", ErrRefused, ErrNotYet, ShortID(p), resp.Error)
		}
		return nil, fmt.Errorf("%w: %s answered: %s", ErrRefused, ShortID(p), resp.Error)
	}
	return &resp, nil
}

// FetchState asks p for the agreed state with hash h and checks that what
// comes back is well formed and hashes to h. have are states this node
// holds (the newest maxHave are offered): p may send the state as a
// delta against one of them.
func (t *Transport) FetchState(ctx context.Context, p peer.ID, h consensus.Hash, have ...consensus.State) (consensus.State, error) {
	req := &pb.StateRequest{Hash: h[:]}
	have = have[:min(len(have), maxHave)]
	for i := range have {
		bh := have[i].Hash()
		req.Have = append(req.Have, bh[:])
	}
	resp, err := t.request(ctx, p, &pb.SyncRequest{Run: t.run[:], What: &pb.SyncRequest_State{State: req}})
	if err != nil {
		return consensus.State{}, err
	}
	m, _ := t.spec.ModelSpec()
	st, err := StateFromDeltaPB(resp.State, m.NumParams(), have)
	if err != nil {
		return consensus.State{}, fmt.Errorf("gossip: %s served a bad state: %w", ShortID(p), err)
	}
	if st.Hash() != h {
		return consensus.State{}, fmt.Errorf("%w: %s served a state that does not hash to %s", ErrWire, ShortID(p), h.Short())
	}
	return st, nil
}

// FetchProof asks p for the certified decisions from round on. Checking
// them is the engine's.
func (t *Transport) FetchProof(ctx context.Context, p peer.ID, round uint64) (*consensus.Proof, error) {
	resp, err := t.request(ctx, p, &pb.SyncRequest{Run: t.run[:], What: &pb.SyncRequest_Proof{Proof: &pb.ProofRequest{Round: round}}})
	if err != nil {
		return nil, err
	}
	pr, err := ProofFromPB(resp.Proof)
	if err != nil {
		return nil, fmt.Errorf("gossip: %s served a bad proof: %w", ShortID(p), err)
	}
	return pr, nil
}

// FetchUpdates asks p for updates by ID and verifies each signature.
func (t *Transport) FetchUpdates(ctx context.Context, p peer.ID, round uint64, ids []consensus.Hash) ([]*Msg, error) {
	req := &pb.UpdatesRequest{Round: round}
	for _, id := range ids[:min(len(ids), maxFetch)] {
		req.Ids = append(req.Ids, id[:])
	}
	resp, err := t.request(ctx, p, &pb.SyncRequest{Run: t.run[:], What: &pb.SyncRequest_Updates{Updates: req}})
	if err != nil {
		return nil, err
	}
	var out []*Msg
	for _, sm := range resp.Updates {
		raw, err := proto.Marshal(sm)
		if err != nil {
			continue
		}
		m, err := Verify(raw, t.run, t.spec.Rounds.MaxMessage)
		if err != nil || m.Update == nil {
			return out, fmt.Errorf("gossip: %s served a bad update: %v", ShortID(p), err)
		}
		out = append(out, m)
	}
	return out, nil
}

// JoinInfo is what a joining peer learns from the peer it dials.
type JoinInfo struct {
	Spec  runspec.Spec
	Peers []string
}

// ErrBadJoin is wrapped by FetchSpec's errors that asking again cannot
// mend: a join address that does not parse, or a spec that is not the run
// asked for.
var ErrBadJoin = errors.New("gossip: bad join")

// FetchSpecPatiently is FetchSpec, asked again while it fails for a reason
// that may pass (the peer is busy, not up yet, or the connection broke),
// with growing pauses, for up to patience; retry is told each failure
// before its pause.
func FetchSpecPatiently(ctx context.Context, addr string, want runspec.ID, patience time.Duration, retry func(attempt int, err error, pause time.Duration)) (JoinInfo, error) {
	t0 := time.Now()
	pause := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		info, err := FetchSpec(ctx, addr, want)
		if err == nil || errors.Is(err, ErrBadJoin) || ctx.Err() != nil || time.Since(t0)+pause > patience {
			return info, err
		}
		if retry != nil {
			retry(attempt, err, pause)
		}
		select {
		case <-ctx.Done():
			return info, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 8*time.Second)
	}
}

// FetchSpec dials the peer at addr (a full multiaddr) from a short-lived
// host and returns the run's spec and the peers it knows. When want is not
// zero the spec must hash to it.
func FetchSpec(ctx context.Context, addr string, want runspec.ID) (JoinInfo, error) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return JoinInfo{}, fmt.Errorf("%w: join address %q: %w", ErrBadJoin, addr, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return JoinInfo{}, fmt.Errorf("%w: join address %q: %w", ErrBadJoin, addr, err)
	}
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		return JoinInfo{}, err
	}
	defer h.Close()
	if err := h.Connect(ctx, *info); err != nil {
		return JoinInfo{}, fmt.Errorf("gossip: connecting to %s: %w", addr, err)
	}
	resp, err := request(ctx, h, info.ID, &pb.SyncRequest{What: &pb.SyncRequest_Spec{Spec: &pb.SpecRequest{}}}, runspec.MaxSpecBytes+1<<20, nil)
	if err != nil {
		return JoinInfo{}, err
	}
	id := runspec.ID(sha256sum(resp.Spec))
	if want != (runspec.ID{}) {
		id = want
	}
	spec, err := runspec.FromCanonical(resp.Spec, id)
	if err != nil {
		return JoinInfo{}, fmt.Errorf("%w: %s sent %w", ErrBadJoin, ShortID(info.ID), err)
	}
	return JoinInfo{Spec: spec, Peers: resp.Peers[:min(len(resp.Peers), 4096)]}, nil
}

func snapshotPB(s *trainer.Snapshot) *pb.Snapshot {
	if s == nil {
		return nil
	}
	out := &pb.Snapshot{Step: s.Step, Params: floatsToBytes(s.Params), OptSteps: s.OptSteps}
	if s.IsLight() {
		out.OptDigest = s.OptDigest[:]
		return out
	}
	names := make([]string, 0, len(s.Opt))
	for k := range s.Opt {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		out.OptNames = append(out.OptNames, k)
		out.OptValues = append(out.OptValues, floatsToBytes(s.Opt[k]))
	}
	return out
}

func snapshotFromPB(s *pb.Snapshot, d int) (*trainer.Snapshot, error) {
	if s == nil {
		return nil, nil
	}
	if len(s.OptNames) != len(s.OptValues) || len(s.OptNames) > 4 {
		return nil, fmt.Errorf("%w: snapshot with %d optimizer names and %d buffers", ErrWire, len(s.OptNames), len(s.OptValues))
	}
	out := &trainer.Snapshot{Step: s.Step, OptSteps: s.OptSteps, Opt: map[string][]float32{}}
	if len(s.OptDigest) > 0 {
		dg, err := hash32(s.OptDigest, "optimizer digest")
		if err != nil || len(s.OptNames) > 0 {
			return nil, fmt.Errorf("%w: a light snapshot with %d optimizer buffers", ErrWire, len(s.OptNames))
		}
		d := trainer.Hash(dg)
		out.Opt, out.OptDigest = nil, &d
	}
	var err error
	if out.Params, err = bytesToFloats(s.Params, d); err != nil {
		return nil, err
	}
	for i, k := range s.OptNames {
		if _, dup := out.Opt[k]; dup {
			return nil, fmt.Errorf("%w: snapshot names optimizer buffer %q twice", ErrWire, k)
		}
		if out.Opt[k], err = bytesToFloats(s.OptValues[i], d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ErrRefused is wrapped by errors that are a peer's answer (it holds no
// such thing), not a failure to reach it.
var ErrRefused = errors.New("gossip: refused")

// ErrNotYet marks a refusal that may change: the peer has not come as far
// as the request needs (it has not decided the round a challenge names).
// A server says so by returning an error that wraps it (the response's
// not_yet); the asker's error then wraps both ErrRefused and ErrNotYet,
// and it may ask again.
var ErrNotYet = errors.New("not yet")

// FetchEvidence asks p (the challenged peer, or a challenger that kept
// them) for the evidence behind update id of round: the residual blocks
// opened, and in runs with a tolerance the final state. It checks the
// shape only; judging it is trainer.Check's.
func (t *Transport) FetchEvidence(ctx context.Context, p peer.ID, round uint64, id consensus.Hash, blocks []int) (trainer.Evidence, error) {
	req := &pb.SegmentRequest{Round: round, Update: id[:]}
	for _, b := range blocks {
		req.Blocks = append(req.Blocks, uint32(b))
	}
	resp, err := t.request(ctx, p, &pb.SyncRequest{Run: t.run[:], What: &pb.SyncRequest_Segment{Segment: req}})
	if err != nil {
		return trainer.Evidence{}, err
	}
	if resp.Evidence == nil {
		return trainer.Evidence{}, fmt.Errorf("%w: %s answered without evidence", ErrWire, ShortID(p))
	}
	m, _ := t.spec.ModelSpec()
	var ev trainer.Evidence
	if ev.Final, err = snapshotFromPB(resp.Evidence.Final, m.NumParams()); err != nil {
		return ev, err
	}
	if len(resp.Evidence.Openings) > len(blocks) {
		return ev, fmt.Errorf("%w: %s opened %d residual blocks, %d asked", ErrWire, ShortID(p), len(resp.Evidence.Openings), len(blocks))
	}
	for _, o := range resp.Evidence.Openings {
		op := trainer.Opening{Block: int(o.Block)}
		if op.In, err = floatsUpTo(o.Values, t.spec.Verify.ResidualBlock); err != nil {
			return ev, err
		}
		if op.InPath, err = pathFromPB(o.InPath); err != nil {
			return ev, err
		}
		if op.OutPath, err = pathFromPB(o.OutPath); err != nil {
			return ev, err
		}
		ev.Openings = append(ev.Openings, op)
	}
	return ev, nil
}

// openingsPB is the wire form of residual openings.
func openingsPB(ops []trainer.Opening) []*pb.Opening {
	var out []*pb.Opening
	for _, op := range ops {
		o := &pb.Opening{Block: uint32(op.Block), Values: floatsToBytes(op.In)}
		for _, h := range op.InPath {
			o.InPath = append(o.InPath, h[:])
		}
		for _, h := range op.OutPath {
			o.OutPath = append(o.OutPath, h[:])
		}
		out = append(out, o)
	}
	return out
}

// pathFromPB reads an inclusion path: at most 64 hashes of 32 bytes.
func pathFromPB(p [][]byte) ([]consensus.Hash, error) {
	if len(p) > 64 {
		return nil, fmt.Errorf("%w: an inclusion path of %d hashes", ErrWire, len(p))
	}
	out := make([]consensus.Hash, len(p))
	for i, b := range p {
		h, err := hash32(b, "path hash")
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// FetchAnswer asks the challenged peer p for its signed step hashes of
// segment seg of its update id of round. Its signature is the caller's to
// check.
func (t *Transport) FetchAnswer(ctx context.Context, p peer.ID, round uint64, id consensus.Hash, seg int) (*consensus.Answer, error) {
	resp, err := t.request(ctx, p, &pb.SyncRequest{Run: t.run[:], What: &pb.SyncRequest_Segment{Segment: &pb.SegmentRequest{Round: round, Update: id[:], Segment: uint32(seg), Leaves: true}}})
	if err != nil {
		return nil, err
	}
	if resp.Evidence == nil || resp.Evidence.Answer == nil {
		return nil, fmt.Errorf("%w: %s answered without step hashes", ErrWire, ShortID(p))
	}
	return answerFromPB(resp.Evidence.Answer, round, id, seg)
}

// FetchBlob asks p for a snapshot by hash (see Server.Blob), for a
// referee. It checks nothing but the shape: the caller checks that what
// came hashes to h.
func (t *Transport) FetchBlob(ctx context.Context, p peer.ID, b BlobRequest) (*trainer.Snapshot, error) {
	resp, err := t.request(ctx, p, &pb.SyncRequest{Run: t.run[:], What: &pb.SyncRequest_Blob{Blob: &pb.BlobRequest{Hash: b.Hash[:], Round: b.Round, Update: b.Update[:], Step: int64(b.Step)}}})
	if err != nil {
		return nil, err
	}
	if resp.Snapshot == nil {
		return nil, fmt.Errorf("%w: %s answered without the blob", ErrWire, ShortID(p))
	}
	m, _ := t.spec.ModelSpec()
	return snapshotFromPB(resp.Snapshot, m.NumParams())
}

// Discover asks up to three connected peers which peers they know and
// connects to those this host is not connected to, so that the run's peers
// end up directly connected to each other (a challenger opens a stream to
// the peer it checks, whoever that is), not only to the peer they joined
// through. It returns how many new peers it connected to.
func (t *Transport) Discover(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	known := t.h.Network().Peers()
	asked, added := 0, 0
	for _, p := range known {
		if asked == 3 {
			break
		}
		asked++
		resp, err := request(ctx, t.h, p, &pb.SyncRequest{What: &pb.SyncRequest_Spec{Spec: &pb.SpecRequest{PeersOnly: true}}}, runspec.MaxSpecBytes+1<<20, t.meter)
		if err != nil {
			continue
		}
		for _, a := range resp.Peers[:min(len(resp.Peers), 256)] {
			m, err := ma.NewMultiaddr(a)
			if err != nil {
				continue
			}
			info, err := peer.AddrInfoFromP2pAddr(m)
			if err != nil || info.ID == t.h.ID() || t.h.Network().Connectedness(info.ID) == network.Connected {
				continue
			}
			if t.h.Connect(ctx, *info) == nil {
				added++
			}
		}
	}
	return added
}

// pushed judges a signed message that peer from handed this node directly
// (Push): only verdicts travel this way. It is checked and judged as if
// gossiped (Verify, then the judge), with the same costs to a liar: a
// message that does not verify counts against from, an invalid verdict
// against its author. It returns "" if the judge took it, else why not.
func (t *Transport) pushed(from peer.ID, s *pb.Signed) string {
	if t.judge == nil {
		return "not taking pushed messages"
	}
	raw, err := proto.Marshal(s)
	if err != nil {
		return "malformed"
	}
	m, err := Verify(raw, t.run, t.spec.Rounds.MaxMessage)
	if err != nil {
		t.refuse(from, 0, err.Error())
		t.penalty.add(from, junkPenalty)
		return err.Error()
	}
	if m.Verdict == nil {
		t.penalty.add(from, junkPenalty)
		return "only verdicts are pushed"
	}
	d := t.judge(m)
	switch {
	case d.Verdict == consensus.Accept || d.Kept:
		return ""
	case d.Verdict == consensus.Reject:
		t.penalty.add(m.Sender, rejectPenalty)
		t.rejected.Add(1)
	case d.Junk:
		t.penalty.add(m.Sender, junkPenalty)
	default:
		t.ignored.Add(1)
	}
	return "not taken: " + d.Reason
}

// Push hands p a signed message this node framed (a verdict) directly,
// and says whether p's judge took it: an error wrapping ErrRefused if p
// judged it and did not take it, another error if it did not arrive.
func (t *Transport) Push(ctx context.Context, p peer.ID, raw []byte) error {
	var s pb.Signed
	if err := proto.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("gossip: push: %w", err)
	}
	_, err := t.request(ctx, p, &pb.SyncRequest{Run: t.run[:], What: &pb.SyncRequest_Push{Push: &s}})
	return err
}
