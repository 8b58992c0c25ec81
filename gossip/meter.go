package gossip

import (
	"encoding/binary"
	"io"
	"maps"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/vtrain/vtrain/gossip/pb"
	"google.golang.org/protobuf/encoding/protowire"
)

// The categories of a node's byte accounting (Meter). Gossip messages are
// counted once per copy sent or received, protobuf framing included;
// streams by what they carry; "transport" is what libp2p moved besides
// (identify, ping, protocol negotiation).
const (
	BytesUpdates      = "updates"            // own update messages
	BytesConsensus    = "consensus"          // own proposals and votes
	BytesCertificates = "certificates"       // own commits: a decision and its certificate
	BytesMembership   = "membership"         // own join requests
	BytesVerdicts     = "verdicts"           // own verdicts and equivocation proofs
	BytesHeads        = "ledger_heads"       // own signed tree heads
	BytesRelays       = "relays"             // out: other authors' messages forwarded
	BytesDuplicates   = "duplicates"         // in: copies of messages already seen
	BytesControl      = "gossip_control"     // IHAVE, IWANT, GRAFT, PRUNE, IDONTWANT, subscriptions, RPC framing
	BytesStateSync    = "state_sync"         // states, proofs of decisions and missed updates, for joiners and laggards
	BytesEvidence     = "challenge_evidence" // what a challenger fetches to re-execute a segment
	BytesDisputes     = "disputes"           // step hashes and the states referees fetch
	BytesSpec         = "spec"               // the run's spec and peer discovery
	BytesTransport    = "transport"          // the rest of libp2p's streams
)

// ByteCategories lists the categories in report order.
var ByteCategories = []string{BytesUpdates, BytesConsensus, BytesCertificates, BytesMembership, BytesVerdicts, BytesHeads,
	BytesRelays, BytesDuplicates, BytesControl, BytesStateSync, BytesEvidence, BytesDisputes, BytesSpec, BytesTransport}

// Traffic is a node's bytes by category, each way.
type Traffic struct {
	Out map[string]uint64 `json:"out"`
	In  map[string]uint64 `json:"in"`
	// Gossip messages: first deliveries and dropped duplicates.
	Delivered  uint64 `json:"delivered"`
	Duplicates uint64 `json:"duplicates"`
}

// TotalOut is the sum of Out.
func (t Traffic) TotalOut() uint64 { return sum(t.Out) }

// TotalIn is the sum of In.
func (t Traffic) TotalIn() uint64 { return sum(t.In) }

func sum(m map[string]uint64) uint64 {
	var s uint64
	for _, v := range m {
		s += v
	}
	return s
}

// Sub returns t − u, category by category (u an earlier reading).
func (t Traffic) Sub(u Traffic) Traffic {
	d := Traffic{Out: map[string]uint64{}, In: map[string]uint64{}, Delivered: t.Delivered - u.Delivered, Duplicates: t.Duplicates - u.Duplicates}
	for k, v := range t.Out {
		if v > u.Out[k] {
			d.Out[k] = v - u.Out[k]
		}
	}
	for k, v := range t.In {
		if v > u.In[k] {
			d.In[k] = v - u.In[k]
		}
	}
	return d
}

// meter counts a node's gossip traffic (as pubsub's raw tracer) and its
// streams (called by the sync protocol's two sides).
type meter struct {
	self []byte // own peer ID, binary: an outgoing message whose body's sender is self is the node's own
	mu   sync.Mutex
	out  map[string]uint64
	in   map[string]uint64
	dlv  uint64
	dup  uint64
}

func newMeter(self peer.ID) *meter {
	return &meter{self: []byte(self), out: map[string]uint64{}, in: map[string]uint64{}}
}

func (m *meter) add(out bool, cat string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.mu.Lock()
	if out {
		m.out[cat] += uint64(n)
	} else {
		m.in[cat] += uint64(n)
	}
	m.mu.Unlock()
}

func (m *meter) read() Traffic {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Traffic{Out: maps.Clone(m.out), In: maps.Clone(m.in), Delivered: m.dlv, Duplicates: m.dup}
}

// rpc splits one RPC into categories: each message by its kind (out: the
// node's own, its body's sender this node, or a relay), the rest (control, subscriptions, framing and
// the length prefix) as control.
func (m *meter) rpc(r *pubsubpb.RPC, out bool) {
	total := r.Size()
	total += len(binary.AppendUvarint(nil, uint64(total)))
	m.mu.Lock()
	defer m.mu.Unlock()
	to := m.in
	if out {
		to = m.out
	}
	for _, msg := range r.GetPublish() {
		n := msg.Size()
		total -= n // its tag and length stay with control
		cat := kindCategory(msg.GetData())
		if out && string(field(field(msg.GetData(), 1), 3)) != string(m.self) {
			cat = BytesRelays
		}
		to[cat] += uint64(n)
	}
	to[BytesControl] += uint64(max(total, 0))
}

// kindCategory maps a Signed message to its category by the Body's field.
func kindCategory(data []byte) string {
	body := field(data, 1)
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			break
		}
		body = body[n:]
		switch num {
		case 4:
			return BytesUpdates
		case 5, 6:
			return BytesConsensus
		case 7:
			return BytesCertificates
		case 8:
			return BytesMembership
		case 9, 10:
			return BytesVerdicts
		case 11:
			return BytesHeads
		}
		n = protowire.ConsumeFieldValue(num, typ, body)
		if n < 0 {
			break
		}
		body = body[n:]
	}
	return BytesControl // not a vtrain message: junk is counted, but as gossip's
}

// field returns the first bytes field numbered num of a protobuf message.
func field(b []byte, num protowire.Number) []byte {
	for len(b) > 0 {
		k, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if k == num && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil
			}
			return v
		}
		n = protowire.ConsumeFieldValue(k, typ, b)
		if n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// The raw tracer's events the meter uses; the rest are no-ops.

func (m *meter) SendRPC(r *pubsub.RPC, _ peer.ID) { m.rpc(&r.RPC, true) }
func (m *meter) RecvRPC(r *pubsub.RPC)            { m.rpc(&r.RPC, false) }
func (m *meter) DuplicateMessage(msg *pubsub.Message) {
	n := uint64(msg.Message.Size())
	cat := kindCategory(msg.GetData())
	m.mu.Lock()
	m.in[cat] -= min(n, m.in[cat])
	m.in[BytesDuplicates] += n
	m.dup++
	m.mu.Unlock()
}
func (m *meter) DeliverMessage(msg *pubsub.Message) {
	if string(msg.ReceivedFrom) == string(m.self) {
		return
	}
	m.mu.Lock()
	m.dlv++
	m.mu.Unlock()
}
func (m *meter) AddPeer(peer.ID, protocol.ID)          {}
func (m *meter) RemovePeer(peer.ID)                    {}
func (m *meter) Join(string)                           {}
func (m *meter) Leave(string)                          {}
func (m *meter) Graft(peer.ID, string)                 {}
func (m *meter) Prune(peer.ID, string)                 {}
func (m *meter) ValidateMessage(*pubsub.Message)       {}
func (m *meter) RejectMessage(*pubsub.Message, string) {}
func (m *meter) ThrottlePeer(peer.ID)                  {}
func (m *meter) DropRPC(*pubsub.RPC, peer.ID)          {}
func (m *meter) UndeliverableMessage(*pubsub.Message)  {}

// syncCategory is the category of a sync request and its response.
func syncCategory(req *pb.SyncRequest) string {
	switch w := req.What.(type) {
	case *pb.SyncRequest_Segment:
		if w.Segment.GetLeaves() {
			return BytesDisputes
		}
		return BytesEvidence
	case *pb.SyncRequest_Blob:
		return BytesDisputes
	case *pb.SyncRequest_State, *pb.SyncRequest_Proof, *pb.SyncRequest_Updates:
		return BytesStateSync
	case *pb.SyncRequest_Push:
		return BytesVerdicts
	}
	return BytesSpec
}

// counted counts what passes through a stream's reads and writes.
type counted struct {
	io.ReadWriter
	r, w int
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.ReadWriter.Read(p)
	c.r += n
	return n, err
}

func (c *counted) Write(p []byte) (int, error) {
	n, err := c.ReadWriter.Write(p)
	c.w += n
	return n, err
}
