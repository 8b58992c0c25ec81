package gossip

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/vtrain/vtrain/gossip/pb"
)

// Re-sends and their copies.
//
// The round protocol re-publishes a node's update, proposal and votes every
// commit timeout while a round is undecided (consensus.Engine.retransmit):
// its liveness needs every honest message to reach every honest node
// eventually, which one gossip attempt does not promise. Message IDs are
// of a message's bytes (msgID), so a re-send of the very same bytes would
// be the first copy again, and every peer's seen cache (two minutes) would
// drop it unseen, the author's own first. Each re-send therefore carries
// a copy number outside the signature (pb.Signed.copy): a new pubsub
// message with the same signed content.
//
// The copy number being unsigned, anyone can make copies of any message.
// What a copy costs a receiver is bounded here, before any signature is
// checked: a signed message already judged is dropped without penalty
// unless half a commit timeout has passed since its last copy was let
// through (the pace at which the protocol forwards re-sends again,
// consensus.Engine.again), and a peer that delivers more copies of one
// message than honest re-sending and relaying can produce within a
// commit timeout is refused as an invalid delivery (pubsub's score counts
// it against that peer, not against the author).

// copiesPerPeer is how many copies of one signed message a peer may
// deliver within a commit timeout: its author re-sends once per commit
// timeout and a relay forwards again at most once per half commit timeout,
// so an honest peer delivers at most about three; more is a flood.
const copiesPerPeer = 4

// copyLimit bounds the signed messages remembered, for copies received
// and for re-sends made: beyond it the oldest are forgotten (a forgotten
// message's next copy is checked and judged in full, which is safe).
const copyLimit = 1 << 14

// copies tracks the copies of signed messages: this node's own re-sends,
// and the copies it receives.
type copies struct {
	mu     sync.Mutex
	window time.Duration // half a commit timeout
	sent   map[[20]byte]uint32
	seen   map[[20]byte]*copySeen
	order  [][20]byte // seen, oldest first, for the limit
}

type copySeen struct {
	passed time.Time // when a copy was last let through to be checked and judged
	since  time.Time // start of the per-peer counting window
	from   map[peer.ID]int
}

func newCopies(commitTimeout time.Duration) *copies {
	return &copies{window: commitTimeout / 2, sent: map[[20]byte]uint32{}, seen: map[[20]byte]*copySeen{}}
}

// signedKey identifies a signed message whatever its copy number: its
// body and signature.
func signedKey(s *pb.Signed) [20]byte {
	h := sha256.New()
	h.Write(s.GetBody())
	h.Write(s.GetSignature())
	var k [20]byte
	copy(k[:], h.Sum(nil))
	return k
}

// resend returns what to publish for raw, a message this node framed:
// raw itself the first time, then each later time the next copy of it.
func (c *copies) resend(raw []byte) []byte {
	var s pb.Signed
	if err := proto.Unmarshal(raw, &s); err != nil || s.Copy != 0 {
		return raw // not a framed message of this node's (a test's raw bytes): as given
	}
	k := signedKey(&s)
	c.mu.Lock()
	n, ok := c.sent[k]
	switch {
	case ok:
		n++
	case len(c.sent) >= copyLimit:
		// Forget: a node publishes a few messages a round, so these are
		// thousands of rounds old, long out of every seen cache.
		clear(c.sent)
	}
	c.sent[k] = n
	c.mu.Unlock()
	if n == 0 {
		return raw
	}
	s.Copy = n
	out, err := proto.Marshal(&s)
	if err != nil {
		return raw
	}
	return out
}

// copyVerdict is what the transport does with a received copy.
type copyVerdict int

const (
	copyCheck copyVerdict = iota // check and judge it in full
	copyDrop                     // a copy of a message judged less than half a commit timeout ago: ignore
	copyFlood                    // more copies from one peer than honest peers send: refuse
)

// received says what to do with a copy of raw that peer from delivered
// at now, and returns the signed message's key for held. A message this
// node does not hold yet (or raw that does not parse) goes to the full
// check and judgment.
func (c *copies) received(raw []byte, from peer.ID, now time.Time) ([20]byte, copyVerdict) {
	var s pb.Signed
	if err := proto.Unmarshal(raw, &s); err != nil {
		return [20]byte{}, copyCheck
	}
	k := signedKey(&s)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.seen[k]
	if e == nil {
		return k, copyCheck
	}
	if now.Sub(e.since) >= 2*c.window {
		e.since, e.from = now, map[peer.ID]int{}
	}
	e.from[from]++
	if e.from[from] > copiesPerPeer {
		return k, copyFlood
	}
	if now.Sub(e.passed) < c.window {
		return k, copyDrop
	}
	e.passed = now
	return k, copyCheck
}

// held notes that the node holds the signed message k (its judge accepted
// or kept a copy from peer from at now): later copies are dropped or
// counted as above. Messages judged otherwise are not noted, so that a
// copy of one refused only for now (a round the node has not reached) is
// judged again.
func (c *copies) held(k [20]byte, from peer.ID, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[k] != nil {
		return
	}
	if len(c.order) >= copyLimit {
		delete(c.seen, c.order[0])
		c.order = c.order[1:]
	}
	c.seen[k] = &copySeen{passed: now, since: now, from: map[peer.ID]int{from: 1}}
	c.order = append(c.order, k)
}
