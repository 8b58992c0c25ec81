// Package gossip moves vtrain's bytes between peers: a libp2p host, the
// run's gossipsub topic with a validator that accepts, rejects or ignores
// each message before it is forwarded, signed wire messages (pb/), update
// compression (compress/), and request/response streams for joining and
// catching up (spec, state, missed updates). It holds no protocol logic:
// the round state machine is trainer.Engine, driven by package node.
package gossip

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
)

// Server answers peers' sync requests. Its methods are called from libp2p
// stream goroutines and must be safe for concurrent use.
type Server interface {
	// Spec returns the canonical spec.
	Spec() []byte
	// State returns the agreed state with hash h.
	State(h consensus.Hash) (consensus.State, bool)
	// Updates returns the signed messages of the updates with these IDs.
	Updates(ids []consensus.Hash) [][]byte
	// Evidence returns what backs this peer's update id of round for a
	// challenger that opens these residual blocks (or, from a challenger,
	// the openings it kept for referees).
	Evidence(round uint64, id consensus.Hash, blocks []int) (trainer.Evidence, error)
	// Answer returns this peer's signed hashes of its state after each
	// step of that segment, for a challenger whose re-execution missed the
	// segment's root (or a referee).
	Answer(round uint64, id consensus.Hash, seg int) (*consensus.Answer, error)
	// Proof returns the certified decisions a peer at round needs.
	Proof(round uint64) *consensus.Proof
	// Blob returns a state a referee needs to check a dispute on update of
	// round, by hash: a trainer snapshot at inner step step.
	Blob(b BlobRequest) (*trainer.Snapshot, bool)
}

// BlobRequest names what a referee asks for (see Server.Blob).
type BlobRequest struct {
	Hash   consensus.Hash
	Round  uint64
	Update consensus.Hash
	Step   int
}

// Judge decides a verified message's fate with the round protocol (the
// node's engine). The validator calls it from pubsub's validation
// goroutines, before the message is forwarded, so it must be safe for
// concurrent use; it may block briefly. A message it accepts, or keeps for
// later, is forwarded. One it rejects is not, and costs its author an
// application-specific score penalty; pubsub also penalises the peer that
// delivered it when the rejection marks the message Invalid (every honest
// relay would have refused it). One it ignores is dropped (junk costs its
// author a smaller penalty). The judge records its own refusals. Without a judge, every verified
// message is delivered on Messages.
type Judge func(m *Msg) consensus.Decision

// Config configures a Transport.
type Config struct {
	Key    crypto.PrivKey
	Listen []string // multiaddrs; default /ip4/127.0.0.1/tcp/0
	Spec   runspec.Spec
	Logger *slog.Logger
	Judge  Judge
	Tracer pubsub.RawTracer // sees pubsub's events (validation outcomes, RPCs); optional
}

// Transport is a peer's connection to a run: host, topic, validator and
// sync protocol.
type Transport struct {
	h      host.Host
	ps     *pubsub.PubSub
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	run    runspec.ID
	spec   runspec.Spec
	dec    *compress.Decoder
	log    *slog.Logger
	bw     *wireCounter
	meter  *meter
	server Server
	nat    *natState // NAT traversal and reachability (nat.go)

	judge    Judge
	penalty  penalties // the application-specific score: junk and rejections by peer
	in       chan *Msg
	refused  chan Rejection
	rejected atomic.Uint64
	ignored  atomic.Uint64
	sent     atomic.Uint64 // bytes this peer published
	sentMu   sync.Mutex
	sentBy   map[string]uint64 // the same by kind of message
	copies   *copies           // re-sends made and copies received (copies.go)
}

// TopicName is the gossipsub topic of a run: the first 12 bytes of its ID
// (96 bits, beyond any search for a spec that collides), base64url. Every
// message carries its topic, so each byte here is a byte of every copy;
// the whole run ID is bound by every message's signature anyway.
func TopicName(run runspec.ID) string {
	return "/vt/" + base64.RawURLEncoding.EncodeToString(run[:12])
}

// New starts a host listening on cfg.Listen and joins the run's topic.
func New(ctx context.Context, cfg Config, server Server) (*Transport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	m, err := cfg.Spec.ModelSpec()
	if err != nil {
		return nil, err
	}
	dec, err := compress.NewDecoder(m.NumParams())
	if err != nil {
		return nil, err
	}
	bw := &wireCounter{BandwidthCounter: metrics.NewBandwidthCounter()}
	ns := &natState{}
	h, err := libp2p.New(ns.hostOptions(cfg, bw)...)
	if err != nil {
		return nil, fmt.Errorf("gossip: host: %w", err)
	}
	t := &Transport{h: h, run: cfg.Spec.RunID(), spec: cfg.Spec, dec: dec, log: cfg.Logger, bw: bw, server: server, judge: cfg.Judge,
		in: make(chan *Msg, 4096), refused: make(chan Rejection, 256), penalty: penalties{by: map[peer.ID]*penalty{}}, sentBy: map[string]uint64{},
		meter: newMeter(h.ID()), copies: newCopies(cfg.Spec.Rounds.CommitTimeout.Duration), nat: ns}
	topic := TopicName(t.run)
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	_, loopback6, _ := net.ParseCIDR("::1/128")
	score := &pubsub.PeerScoreParams{
		SkipAtomicValidation: true,
		// Messages the round protocol rejects, and junk only an outsider
		// sends, cost their sender here (see penalties).
		AppSpecificScore:  t.penalty.score,
		AppSpecificWeight: 1,
		// Many honest peers on one machine (tests, the demo) share
		// 127.0.0.1: exempt loopback from the colocation penalty.
		IPColocationFactorWeight:    -10,
		IPColocationFactorThreshold: 4,
		IPColocationFactorWhitelist: []*net.IPNet{loopback, loopback6},
		BehaviourPenaltyWeight:      -1,
		BehaviourPenaltyDecay:       0.9,
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
		Topics: map[string]*pubsub.TopicScoreParams{topic: {
			SkipAtomicValidation: true,
			TopicWeight:          1,
			// The scorer divides by the quantum even with a zero weight.
			TimeInMeshQuantum:              time.Second,
			InvalidMessageDeliveriesWeight: -100,
			InvalidMessageDeliveriesDecay:  0.9,
		}},
	}
	thresholds := &pubsub.PeerScoreThresholds{SkipAtomicValidation: true,
		GossipThreshold: -100, PublishThreshold: -500, GraylistThreshold: -1000}
	opts := []pubsub.Option{
		pubsub.WithMaxMessageSize(cfg.Spec.Rounds.MaxMessage),
		pubsub.WithPeerScore(score, thresholds),
		// Own messages go straight to every known peer: they are small
		// (a few KB), and a round waits for all of them.
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerExchange(true),
		// Every vtrain message carries its author's signature (Signed), so
		// pubsub's own envelope signature, publisher and sequence number
		// (116 bytes of every copy) would only say again who sent it;
		// messages that carry them are refused (see msgID).
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithRawTracer(t.meter),
	}
	if cfg.Tracer != nil {
		opts = append(opts, pubsub.WithRawTracer(cfg.Tracer))
	}
	// A smaller mesh than pubsub's default (6): on top of flood
	// publishing, every mesh peer relays what it validates, so each extra
	// degree is another copy of every message; IDONTWANT for all but the
	// smallest messages, so that a peer that has a message is not sent it
	// again; and message IDs by publisher and content (msgID). The mesh
	// is kept between 2 and 4 (pubsub lets it grow to Dhi as peers graft
	// on): every received message costs an IDONTWANT note to each mesh
	// peer, so at 16 peers the notes were most of the gossip control bytes.
	gp := pubsub.DefaultGossipSubParams()
	gp.D, gp.Dlo, gp.Dhi, gp.Dscore, gp.Dout, gp.Dlazy = 3, 2, 4, 2, 0, 1
	gp.IDontWantMessageThreshold = idontwantFrom
	gp.GossipFactor = 0
	opts = append(opts, pubsub.WithGossipSubParams(gp),
		pubsub.WithMessageIdFn(msgID))
	ps, err := pubsub.NewGossipSub(ctx, h, opts...)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("gossip: pubsub: %w", err)
	}
	if err := ps.RegisterTopicValidator(topic, t.validate, pubsub.WithValidatorTimeout(5*time.Second)); err != nil {
		h.Close()
		return nil, err
	}
	if t.topic, err = ps.Join(topic); err != nil {
		h.Close()
		return nil, err
	}
	if t.sub, err = t.topic.Subscribe(pubsub.WithBufferSize(1024)); err != nil {
		h.Close()
		return nil, err
	}
	t.ps = ps
	h.SetStreamHandler(SyncProtocol, t.serveSync)
	if err := ns.start(ctx, t); err != nil {
		h.Close()
		return nil, err
	}
	go t.receive(ctx)
	return t, nil
}

// msgID identifies a gossip message by its bytes: a publisher's
// retransmission of the same message dies as a duplicate, as pubsub's
// default ID (publisher and sequence number) would let it travel again.
// Pubsub marks an ID seen before the topic validator runs; that is safe
// here because a message has no publisher besides its bytes (unsigned
// envelopes, StrictNoSign): a peer that got a message first and
// republishes it publishes the author's very message, which the validator
// judges as the original, and any other bytes have another ID
// (TestFakePeerRawBytes). With pubsub's publisher in the envelope, an ID
// of the bytes alone let a copier's rejected copy shadow the original.
//
// The ID is SHA-256's first 20 bytes: every IDONTWANT and IHAVE carries
// IDs, one per message and mesh peer, and 160 bits leave a collision
// (which could only pair two messages of one author, who could as well
// withhold one) at 2^80 hashes.
func msgID(m *pubsubpb.Message) string {
	h := sha256.Sum256(m.GetData())
	return string(h[:20])
}

// validate is the topic validator: it decodes and checks the signature,
// checks an update's payload (cheap and stateless), then has the round
// protocol judge the message before it is forwarded. Invalid messages are
// not forwarded and count against the delivering peer's score; messages
// refused for what this node has seen count against their author only;
// ignored ones are dropped without penalty.
func (t *Transport) validate(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if from == t.h.ID() {
		// This peer's own message, on publish: the node made and signed it,
		// and every receiver validates it.
		return pubsub.ValidationAccept
	}
	key, cv := t.copies.received(msg.Data, from, time.Now())
	switch cv {
	case copyDrop:
		t.ignored.Add(1)
		return pubsub.ValidationIgnore
	case copyFlood:
		t.refuse(from, 0, fmt.Sprintf("more than %d copies of one message within a commit timeout", copiesPerPeer))
		return pubsub.ValidationReject
	}
	m, err := Verify(msg.Data, t.run, t.spec.Rounds.MaxMessage)
	if err != nil {
		t.refuse(from, 0, err.Error())
		return pubsub.ValidationReject
	}
	if m.Update != nil {
		if _, err := trainer.ValidateUpdate(t.spec, m.Update, t.dec); err != nil {
			t.refuse(from, m.Round, err.Error())
			return pubsub.ValidationReject
		}
	}
	if m.Head != nil || t.judge == nil {
		msg.ValidatorData = m
		return holdRelay(ctx, msg)
	}
	d := t.judge(m)
	switch {
	case d.Verdict == consensus.Accept || d.Kept:
		t.copies.held(key, from, time.Now())
		return holdRelay(ctx, msg)
	case d.Verdict == consensus.Reject && d.Invalid:
		// The judge records what it refuses; the transport counts it.
		t.penalty.add(m.Sender, rejectPenalty)
		t.rejected.Add(1)
		return pubsub.ValidationReject
	case d.Verdict == consensus.Reject:
		// Refused by what this node has seen (the other half of an
		// equivocation, an exclusion): the author pays, but the peer that
		// relayed it may have acted in good faith, so pubsub must not
		// count an invalid delivery against it. Not forwarded either way.
		t.penalty.add(m.Sender, rejectPenalty)
		t.rejected.Add(1)
		return pubsub.ValidationIgnore
	case d.Junk:
		t.penalty.add(m.Sender, junkPenalty)
	}
	t.ignored.Add(1)
	return pubsub.ValidationIgnore
}

// idontwantFrom is the size from which a peer that receives a message
// tells its mesh peers not to send it (IDONTWANT): all but the smallest
// messages (pubsub's default is 1 KB).
const idontwantFrom = 128

// relayHold is how long an accepted message of another author waits
// before pubsub forwards it to this peer's mesh. The author publishes to
// every peer it is connected to at once (flood publishing), and each
// receiver tells its mesh peers IDONTWANT as the message arrives, before
// validating it; a relay that forwarded at once would beat most of those
// notes (the peers validate in parallel, on busy machines), and send a
// copy that its receiver already has. Held this long, the relay skips
// every mesh peer that said it has the message, and still forwards to
// every one that did not: a peer not connected to the author gets the
// message a hold later per relay hop, never not at all. The protocol
// (the judge) has the message before the hold: only forwarding waits.
const relayHold = 200 * time.Millisecond

// holdRelay holds an accepted message that IDONTWANT covers for
// relayHold (see there), then accepts it.
func holdRelay(ctx context.Context, msg *pubsub.Message) pubsub.ValidationResult {
	if len(msg.GetData()) >= idontwantFrom {
		t := time.NewTimer(relayHold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return pubsub.ValidationAccept
}

// The application-specific score: each message the round protocol rejects
// costs its author rejectPenalty, each junk message junkPenalty; the debt
// halves every penaltyHalfLife. A peer below the graylist threshold (-1000)
// is cut off: about 10 rejected or 100 junk messages within a minute. An
// honest peer sends neither (a stale or duplicate message is ignored, not
// junk).
const (
	rejectPenalty   = 100
	junkPenalty     = 10
	penaltyHalfLife = time.Minute
)

type penalty struct {
	debt float64
	at   time.Time
}

type penalties struct {
	mu sync.Mutex
	by map[peer.ID]*penalty
}

func (ps *penalties) decayed(p *penalty, now time.Time) float64 {
	return p.debt * math.Exp2(-now.Sub(p.at).Seconds()/penaltyHalfLife.Seconds())
}

func (ps *penalties) add(id peer.ID, amount float64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	now := time.Now()
	p := ps.by[id]
	if p == nil {
		if len(ps.by) >= 1<<16 {
			for k, q := range ps.by {
				if ps.decayed(q, now) < 1 {
					delete(ps.by, k)
				}
			}
		}
		p = &penalty{}
		ps.by[id] = p
	}
	p.debt, p.at = ps.decayed(p, now)+amount, now
}

func (ps *penalties) score(id peer.ID) float64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.by[id]; p != nil {
		return -ps.decayed(p, time.Now())
	}
	return 0
}

// Penalty returns the current debt of a peer (for tests and reports).
func (t *Transport) Penalty(id peer.ID) float64 { return -t.penalty.score(id) }

// Rejection is a message the validator refused, with the peer that
// delivered it (the sender's own identity is unproven when the signature
// is what failed).
type Rejection struct {
	From   peer.ID
	Round  uint64
	Reason string
}

func (t *Transport) refuse(from peer.ID, round uint64, reason string) {
	t.rejected.Add(1)
	t.log.Debug("rejected", "from", ShortID(from), "reason", reason)
	select {
	case t.refused <- Rejection{From: from, Round: round, Reason: reason}:
	default: // the node is behind: the counter still has it
	}
}

// Rejections delivers the validator's refusals, for the node's ledger. It
// drops what the node does not take in time.
func (t *Transport) Rejections() <-chan Rejection { return t.refused }

func (t *Transport) receive(ctx context.Context) {
	defer close(t.in)
	for {
		msg, err := t.sub.Next(ctx)
		if err != nil {
			return
		}
		m, ok := msg.ValidatorData.(*Msg)
		if !ok || m.Sender == t.h.ID() {
			continue // judged during validation, or this peer's own
		}
		select {
		case t.in <- m:
		default:
			t.log.Warn("inbox full: dropping message", "msg", m)
		}
	}
}

// Messages delivers verified messages from other peers; it is closed when
// the transport's context ends.
func (t *Transport) Messages() <-chan *Msg { return t.in }

// Publish gossips a signed message of the given kind (a name for the
// byte accounting: "update", "prevote", "head", ...).
func (t *Transport) Publish(ctx context.Context, kind string, raw []byte) error {
	raw = t.copies.resend(raw)
	t.sent.Add(uint64(len(raw)))
	t.sentMu.Lock()
	t.sentBy[kind] += uint64(len(raw))
	t.sentMu.Unlock()
	return t.topic.Publish(ctx, raw)
}

// Host returns the libp2p host.
func (t *Transport) Host() host.Host { return t.h }

// ID returns the peer ID.
func (t *Transport) ID() peer.ID { return t.h.ID() }

// Addrs returns the host's full addresses (with /p2p/ID): join addresses.
func (t *Transport) Addrs() []string {
	var out []string
	for _, a := range t.h.Addrs() {
		out = append(out, a.String()+"/p2p/"+t.h.ID().String())
	}
	return out
}

// Connect dials a peer by full multiaddr.
func (t *Transport) Connect(ctx context.Context, addr string) (peer.ID, error) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return "", fmt.Errorf("gossip: join address %q: %w", addr, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return "", fmt.Errorf("gossip: join address %q: %w", addr, err)
	}
	if info.ID == t.h.ID() {
		return info.ID, nil
	}
	if err := t.h.Connect(ctx, *info); err != nil {
		return "", fmt.Errorf("gossip: connecting to %s: %w", addr, err)
	}
	return info.ID, nil
}

// Stats are a transport's counters.
type Stats struct {
	Peers     int    `json:"peers"`
	Published uint64 `json:"published_bytes"` // what this peer published (its own messages)
	// PublishedBy splits Published by kind of message.
	PublishedBy map[string]uint64 `json:"published_by_kind,omitempty"`
	WireIn      int64             `json:"wire_in_bytes"` // all libp2p traffic, both directions
	WireOut     int64             `json:"wire_out_bytes"`
	Rejected    uint64            `json:"rejected"`
	Ignored     uint64            `json:"ignored"`
	// Traffic splits the wire bytes by category; its "transport" is what
	// libp2p moved besides the gossip and sync protocols.
	Traffic Traffic `json:"traffic"`
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	tot := metrics.Stats{TotalIn: t.bw.in.Load(), TotalOut: t.bw.out.Load()}
	t.sentMu.Lock()
	by := maps.Clone(t.sentBy)
	t.sentMu.Unlock()
	tr := t.meter.read()
	tr.Out[BytesTransport] = uint64(max(0, tot.TotalOut-int64(tr.TotalOut())))
	tr.In[BytesTransport] = uint64(max(0, tot.TotalIn-int64(tr.TotalIn())))
	return Stats{Peers: len(t.topic.ListPeers()), Published: t.sent.Load(), PublishedBy: by, WireIn: tot.TotalIn, WireOut: tot.TotalOut,
		Rejected: t.rejected.Load(), Ignored: t.ignored.Load(), Traffic: tr}
}

// wireCounter is libp2p's bandwidth counter with exact totals: the
// counter's own trail by up to a second (a background sweeper folds the
// latest bytes in), so a node that ended right after a transfer (one
// excluded after a dispute) reported fewer bytes on the wire than its
// categories had counted.
type wireCounter struct {
	*metrics.BandwidthCounter
	in, out atomic.Int64
}

func (c *wireCounter) LogSentMessage(n int64) {
	c.out.Add(n)
	c.BandwidthCounter.LogSentMessage(n)
}

func (c *wireCounter) LogRecvMessage(n int64) {
	c.in.Add(n)
	c.BandwidthCounter.LogRecvMessage(n)
}

// KnownPeers returns the addresses of connected peers that run vtrain's
// sync protocol (not, for example, the short-lived hosts that fetch a spec):
// up to maxAddrsPerPeer of each, so that a peer behind NAT is found by its
// relay addresses too (its own are private).
func (t *Transport) KnownPeers() []string {
	var out []string
	for _, p := range t.h.Network().Peers() {
		if ps, err := t.h.Peerstore().SupportsProtocols(p, SyncProtocol); err != nil || len(ps) == 0 {
			continue
		}
		for _, a := range peerAddrs(t.h, p) {
			out = append(out, a.String()+"/p2p/"+p.String())
		}
	}
	return out
}

// Close shuts the host down.
func (t *Transport) Close() error {
	t.sub.Cancel()
	t.topic.Close()
	return t.h.Close()
}
