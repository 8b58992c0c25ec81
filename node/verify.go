package node

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/audit"
	"github.com/vtrain/vtrain/verify/ledger"
	"github.com/vtrain/vtrain/verify/spot"
)

// ErrExcluded is returned by Run when the run excluded this node for
// failing a challenge.
var ErrExcluded = errors.New("node: excluded from the run")

// Exclusion is a peer excluded from the run, as a node reports it.
type Exclusion struct {
	Peer   string `json:"peer"`
	Round  uint64 `json:"round"` // the first round it is excluded from
	Reason string `json:"reason"`
}

// ChallengeStats is a node's share of the run's spot-checks.
type ChallengeStats struct {
	Run     int     `json:"run"`     // challenges this node re-executed as challenger
	Passed  int     `json:"passed"`  // of those, passed
	Failed  int     `json:"failed"`  // of those, failed
	Seconds float64 `json:"seconds"` // spent re-executing
	Against int     `json:"against"` // challenges of this node's updates it answered
	// Refereed counts the failed verdicts this node refereed before voting
	// on them, and RefereeSeconds the time it spent on them.
	Refereed       int     `json:"refereed"`
	RefereeSeconds float64 `json:"referee_seconds"`
	// Accused lists the peers of the failed ones.
	Accused []string `json:"accused,omitempty"`
	// In runs with private peers: the distinct proofs this node verified
	// (as a challenger, and in every verdict it took) and refused, and, on
	// a private peer, the proofs it made and the time they took.
	ProofsVerified int     `json:"proofs_verified,omitempty"`
	ProofsRefused  int     `json:"proofs_refused,omitempty"`
	Proofs         int     `json:"proofs_made,omitempty"`
	ProofSeconds   float64 `json:"proof_seconds,omitempty"`
}

// evidence is what a node keeps behind one of its updates to answer its
// challengers and referees: the segment start states, the final state, and
// the residual it encoded with and the one it kept.
type evidence struct {
	round    uint64
	starts   []trainer.Snapshot
	final    trainer.Snapshot
	residual []float32
	kept     []float32
	answers  map[int]*consensus.Answer // signed, by segment (guarded by node.mu)
	u        *consensus.Update         // the update it backs (nil when recomputed after a restart)
}

// keptEvidence is how many rounds of own evidence a node keeps in memory
// (a challenge comes the round after its update is decided).
const keptEvidence = 4

// own returns the evidence behind segment seg of this node's update id of
// round, from memory or, after a restart, recomputed from the receipt on
// disk.
func (n *node) own(round uint64, id consensus.Hash, seg int) (*evidence, error) {
	ev, err := n.ownUpdate(round, id)
	if err != nil {
		return nil, err
	}
	if seg < 0 || seg >= len(ev.starts) {
		return nil, fmt.Errorf("no segment %d of an update of round %d", seg, round)
	}
	return ev, nil
}

// ownUpdate returns the evidence behind this node's update id aggregated
// by round's decision: an update of round, or a late one of the round
// before (consensus/late.go).
func (n *node) ownUpdate(round uint64, id consensus.Hash) (*evidence, error) {
	n.mu.RLock()
	ev := n.evidence[id]
	n.mu.RUnlock()
	if ev == nil {
		var err error
		if ev, err = n.recompute(round, id); err != nil {
			return nil, err
		}
	}
	if !decidedIn(ev.round, round) {
		return nil, fmt.Errorf("no update %s of round %d", id.Short(), round)
	}
	return ev, nil
}

// decidedIn reports whether an update of round trained can be aggregated
// by round decided's decision: on time, or late (consensus/late.go).
func decidedIn(trained, decided uint64) bool { return trained == decided || trained+1 == decided }

// Evidence implements gossip.Server: the residual blocks of this node's
// update id that a challenger opens (and, in runs with a tolerance, the
// final state, light: its hash still checks against the last root); or,
// for another peer's update this node challenged, the openings it kept
// for referees.
func (n *node) Evidence(round uint64, id consensus.Hash, blocks []int) (trainer.Evidence, error) {
	n.mu.RLock()
	kept, ok := n.openings[id]
	n.mu.RUnlock()
	if ok && kept.round == round && slices.EqualFunc(kept.ops, blocks, func(o trainer.Opening, b int) bool { return o.Block == b }) {
		return trainer.Evidence{Openings: kept.ops}, nil
	}
	// Only the blocks the beacon drew for a challenger of this update:
	// the residual is this node's own, and a request for anything else
	// (or for an update nobody challenges) must cost nothing.
	if err := n.checkDraw(round, id, blocks); err != nil {
		return trainer.Evidence{}, err
	}
	ev, err := n.ownUpdate(round, id)
	if err != nil {
		return trainer.Evidence{}, err
	}
	ops, err := trainer.Open(n.spec, ev.residual, ev.kept, blocks)
	if err != nil {
		return trainer.Evidence{}, err
	}
	out := trainer.Evidence{Openings: ops}
	if n.spec.Verify.Tolerance > 0 {
		fin := ev.final.Light()
		out.Final = &fin
	}
	n.mu.Lock()
	n.challenges.Against++
	n.mu.Unlock()
	return out, nil
}

// Answer implements gossip.Server: this node's signed step hashes of
// segment seg of its update id, which a challenger asks for only when its
// re-execution of the segment misses the committed root.
func (n *node) Answer(round uint64, id consensus.Hash, seg int) (*consensus.Answer, error) {
	if err := n.checkDraw(round, id, nil); err != nil {
		return nil, err
	}
	if n.priv != nil && n.priv.prover != nil {
		return n.privateAnswer(round, id, seg)
	}
	ev, err := n.own(round, id, seg)
	if err != nil {
		return nil, err
	}
	return n.answer(ev, round, id, seg)
}

// answer returns this node's signed answer on segment seg of its update
// id, computing it once.
func (n *node) answer(ev *evidence, round uint64, id consensus.Hash, seg int) (*consensus.Answer, error) {
	n.mu.RLock()
	a := ev.answers[seg]
	n.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	rep, err := trainer.NewReplayer(n.spec, ev.round, n.self, n.cfg.Data.Train, n.engineOpts()...)
	if err != nil {
		return nil, err
	}
	leaves, err := trainer.AnswerLeaves(n.spec, ev.starts[seg], seg, rep)
	if err != nil {
		return nil, err
	}
	a = &consensus.Answer{Round: round, Update: id, Segment: seg, Leaves: leaves}
	a.Sig = gossip.Signer(n.key)(consensus.AnswerSignBytes(n.eng.RunID(), a))
	n.mu.Lock()
	if ev.answers == nil {
		ev.answers = map[int]*consensus.Answer{}
	}
	ev.answers[seg] = a
	n.mu.Unlock()
	return a, nil
}

func (n *node) engineOpts() []trainer.Option {
	if n.cfg.Device != nil {
		return []trainer.Option{trainer.WithEngine(n.cfg.Device)}
	}
	return nil
}

// Blob implements gossip.Server: a state a referee needs, from what this
// node kept as a challenger, or from its own evidence behind the disputed
// update (a state it did not keep recomputed from its segment's start).
func (n *node) Blob(r gossip.BlobRequest) (*trainer.Snapshot, bool) {
	n.mu.RLock()
	b, ok := n.blobs[r.Hash]
	ev := n.evidence[r.Update]
	n.mu.RUnlock()
	if ok {
		return b.snap, true
	}
	if ev == nil || !decidedIn(ev.round, r.Round) {
		return nil, false
	}
	switch {
	case r.Step == n.spec.Inner.Steps:
		if ev.final.Hash() == r.Hash {
			return &ev.final, true
		}
	default:
		// Recompute only a state this node signed as a step hash in an
		// answer (or a segment's start): anyone may ask, and a request for
		// anything else must cost nothing.
		seg := min(r.Step/n.spec.SegmentLen(), len(ev.starts)-1)
		lo, _ := n.spec.SegmentSteps(seg)
		if r.Step == lo {
			if ev.starts[seg].Hash() == r.Hash {
				return &ev.starts[seg], true
			}
			return nil, false
		}
		n.mu.RLock()
		a := ev.answers[seg]
		n.mu.RUnlock()
		if a == nil || r.Step-lo-1 >= len(a.Leaves) || a.Leaves[r.Step-lo-1] != r.Hash {
			return nil, false
		}
		rep, err := trainer.NewReplayer(n.spec, ev.round, n.self, n.cfg.Data.Train, n.engineOpts()...)
		if err != nil {
			return nil, false
		}
		if s, err := trainer.StateAt(n.spec, ev.starts, r.Step, rep); err == nil && s.Hash() == r.Hash {
			return &s, true
		}
	}
	return nil, false
}

// blob is a state kept for referees.
type blob struct {
	round uint64
	snap  *trainer.Snapshot
}

// opened is the residual blocks of another peer's update that this node
// judged as its challenger, kept for referees.
type opened struct {
	round uint64
	ops   []trainer.Opening
}

// keepBlobs files what a finding's referees will ask for.
func (n *node) keepBlobs(round uint64, id consensus.Hash, f trainer.Finding) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range f.Keep {
		s := f.Keep[i]
		n.blobs[s.Hash()] = blob{round: round, snap: &s}
	}
	if f.KeepOpenings != nil {
		n.openings[id] = opened{round: round, ops: f.KeepOpenings}
	}
	for h, b := range n.blobs {
		if b.round+2*keptEvidence < round {
			delete(n.blobs, h)
		}
	}
	for h, o := range n.openings {
		if o.round+2*keptEvidence < round {
			delete(n.openings, h)
		}
	}
}

// keepEvidence files the evidence of the update just published, in memory
// and as a receipt on disk (the round's base and the residual: enough to
// recompute the rest after a restart).
func (n *node) keepEvidence(id consensus.Hash, ev *evidence, base []float32) {
	n.mu.Lock()
	n.evidence[id] = ev
	for k, e := range n.evidence {
		if e.round+keptEvidence <= ev.round {
			delete(n.evidence, k)
		}
	}
	n.mu.Unlock()
	dir := filepath.Join(n.cfg.OutDir, "receipts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.log.Warn("receipt", "err", err)
		return
	}
	b := safetensors.Encode([]safetensors.Tensor{
		{Name: "base", Shape: []int{len(base)}, Data: base},
		{Name: "residual", Shape: []int{len(ev.residual)}, Data: ev.residual},
	}, map[string]string{"round": fmt.Sprint(ev.round), "update": hex.EncodeToString(id[:])})
	p := filepath.Join(dir, hex.EncodeToString(id[:8])+".safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		n.log.Warn("receipt", "err", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) > keptEvidence+2 {
		slices.SortFunc(ents, func(a, b os.DirEntry) int {
			ia, _ := a.Info()
			ib, _ := b.Info()
			return ia.ModTime().Compare(ib.ModTime())
		})
		for _, e := range ents[:len(ents)-keptEvidence-2] {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// recompute rebuilds the evidence of an own update from its receipt by
// re-running the round's inner steps (deterministic), and checks it against
// the update's commitments.
func (n *node) recompute(round uint64, id consensus.Hash) (*evidence, error) {
	f, err := safetensors.ReadFile(filepath.Join(n.cfg.OutDir, "receipts", hex.EncodeToString(id[:8])+".safetensors"), 1<<30)
	if err != nil {
		return nil, fmt.Errorf("no evidence held for update %s", id.Short())
	}
	base, ok1 := f.Get("base")
	res, ok2 := f.Get("residual")
	if round > 0 && f.Metadata["round"] == fmt.Sprint(round-1) {
		round-- // a late update, aggregated the round after its own
	}
	if !ok1 || !ok2 || f.Metadata["update"] != hex.EncodeToString(id[:]) || f.Metadata["round"] != fmt.Sprint(round) {
		return nil, fmt.Errorf("receipt of update %s does not match", id.Short())
	}
	_, ev, err := n.work(context.Background(), &consensus.TrainRequest{Round: round, Theta: base.Data, Seed: consensus.RoundSeed(n.spec, round, n.self), Shard: consensus.ShardOf(n.spec, n.self)})
	if err != nil {
		return nil, err
	}
	ev.residual = res.Data
	if _, ev.kept, err = trainer.Link(n.spec, base.Data, ev.final.Params, ev.residual); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.evidence[id] = ev
	n.mu.Unlock()
	return ev, nil
}

// rebuildResidual rebuilds the residual with root want from the receipts
// of this node's own updates: the residual one of them kept. A node that
// restarts from a checkpoint saved before its last update was aggregated
// holds only the residual before that update, while the run expects its
// next update to continue the one after (consensus.Member.Residual); the
// receipt of that update (its base and residual in) and one round of
// re-execution give it back. Newest receipts first; at most one round of
// compute per receipt, and only after a restart.
func (n *node) rebuildResidual(want consensus.Hash) ([]float32, bool) {
	dir := filepath.Join(n.cfg.OutDir, "receipts")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, false
	}
	type receipt struct {
		round uint64
		id    consensus.Hash
	}
	var rs []receipt
	for _, e := range ents {
		f, err := safetensors.ReadFile(filepath.Join(dir, e.Name()), 1<<30)
		if err != nil {
			continue
		}
		var r receipt
		idb, err := hex.DecodeString(f.Metadata["update"])
		if _, err2 := fmt.Sscan(f.Metadata["round"], &r.round); err != nil || err2 != nil || len(idb) != len(r.id) {
			continue
		}
		copy(r.id[:], idb)
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b receipt) int { return cmp.Compare(b.round, a.round) })
	for _, r := range rs {
		n.log.Info("rebuilding the residual the run expects from an own update's receipt", "round", r.round, "update", r.id.Short())
		ev, err := n.recompute(r.round, r.id)
		if err != nil {
			n.log.Warn("receipt", "round", r.round, "err", err)
			continue
		}
		if trainer.ResidualRoot(n.spec, ev.kept) == want {
			n.noteResidual(ev.kept)
			return ev.kept, true
		}
	}
	return nil, false
}

// work runs a round's inner steps from req.Theta, hashing the trainer's
// state after every segment: the work and the evidence behind it.
func (n *node) work(ctx context.Context, req *consensus.TrainRequest) (trainer.Work, *evidence, error) {
	var opts []trainer.Option
	if n.cfg.Device != nil {
		opts = append(opts, trainer.WithEngine(n.cfg.Device))
	}
	w, starts, final, err := trainer.TrainRound(ctx, n.spec, req, n.cfg.Data.Train, opts...)
	if err != nil {
		return w, nil, err
	}
	return w, &evidence{round: req.Round, starts: starts, final: final}, nil
}

// verdictDone is a finished challenge: the verdict and what backed it.
type verdictDone struct {
	v        *consensus.VerdictMsg
	evidence []byte // the accused's answer as received (for the ledger), nil if none
	seconds  float64
}

// challenge runs a challenge this node was drawn for: it fetches the
// residual blocks the beacon drew from the accused (retrying until
// verify.timeout), re-executes the round and judges it.
func (n *node) challenge(ctx context.Context, res consensus.Decided, c spot.Challenge, base []float32, u *consensus.Update, out chan<- verdictDone) {
	S := n.spec.Segments()
	v := &consensus.VerdictMsg{Round: res.Round, Update: consensus.Hash(c.Update), Accused: consensus.PeerID(c.Peer), Segment: S - 1}
	done := verdictDone{v: v}
	defer func() { out <- done }()
	if n.acts(res.Round) == "collude" {
		v.Pass = true // without looking
		return
	}
	if n.spec.IsPrivate(c.Peer) {
		secs, ok := n.challengePrivate(ctx, res, u, v)
		done.seconds = secs
		if !ok {
			done.v = nil
		}
		return
	}
	pid, err := peer.Decode(c.Peer)
	if err != nil {
		v.Fault, v.Reason = consensus.FaultSilent, "accused is not a peer ID"
		return
	}
	blocks, err := trainer.DrawBlocks(n.spec, res.Beacon, u, c.Update, consensus.PeerID(c.Challenger), len(base))
	if err != nil {
		// The engine accepted the update: its payload decodes.
		done.v = nil
		n.log.Error("challenge", "err", err)
		return
	}
	ev, err := n.fetchEvidence(ctx, pid, res.Round, consensus.Hash(c.Update), blocks)
	if ctx.Err() != nil {
		done.v = nil
		return
	}
	if errors.Is(err, gossip.ErrRefused) {
		v.Fault, v.Reason = consensus.FaultSilent, fmt.Sprintf("%v: no evidence: %v", trainer.ErrChallenge, err)
		return
	}
	if err != nil {
		v.Fault, v.Reason = consensus.FaultSilent, fmt.Sprintf("%v: no answer within %v: %v", trainer.ErrChallenge, n.spec.Verify.Timeout.Duration, err)
		return
	}
	// The signed step hashes of a segment that missed its root, asked for
	// only then (and only once).
	asked := false
	ask := func(seg int) *consensus.Answer {
		if asked {
			return ev.Answer
		}
		asked = true
		cctx, cancel := context.WithDeadline(ctx, time.Now().Add(n.spec.Verify.Timeout.Duration))
		defer cancel()
		a, err := n.tr.FetchAnswer(cctx, pid, res.Round, consensus.Hash(c.Update), seg)
		if err != nil || a.Round != res.Round || a.Update != consensus.Hash(c.Update) || a.Segment != seg ||
			!gossip.VerifySig(consensus.PeerID(c.Peer), consensus.AnswerSignBytes(n.eng.RunID(), a), a.Sig) {
			return nil // not the accused's word: no answer
		}
		ev.Answer = a
		return a
	}
	defer func() { done.evidence = audit.EncodeEvidence(ev) }()
	// From the update's own round: a late update (consensus/late.go) was
	// trained in the round before the decision that aggregated it.
	rep, err := trainer.NewReplayer(n.spec, u.Round, u.From, n.cfg.Data.Train, n.engineOpts()...)
	if err != nil {
		done.v = nil
		n.log.Error("challenge", "err", err)
		return
	}
	start := time.Now()
	f, err := trainer.Check(n.spec, base, u, blocks, ev, rep, ask)
	done.seconds = time.Since(start).Seconds()
	if err != nil {
		n.log.Error("challenge: cannot judge", "err", err)
		done.v = nil
		return
	}
	n.collude(&f, res.Round, ask)
	n.keepBlobs(res.Round, consensus.Hash(c.Update), f)
	v.Pass, v.Fault, v.Segment, v.Step, v.Reason = f.Fault == consensus.FaultNone, f.Fault, f.Segment, f.Step, f.Reason
	if len(v.Reason) > consensus.MaxReason {
		v.Reason = v.Reason[:consensus.MaxReason]
	}
	v.Answer = f.Answer
}

// fetchEvidence asks p for the evidence behind its update id of round
// (the residual blocks opened), retrying until verify.timeout (and
// learning its address from other peers when not connected); it stops at
// a refusal.
func (n *node) fetchEvidence(ctx context.Context, p peer.ID, round uint64, id consensus.Hash, blocks []int) (trainer.Evidence, error) {
	deadline := time.Now().Add(n.spec.Verify.Timeout.Duration)
	for {
		cctx, cancel := context.WithDeadline(ctx, deadline)
		ev, err := n.tr.FetchEvidence(cctx, p, round, id, blocks)
		cancel()
		// A refusal for now is retried: an honest accused that lags has
		// not decided the round yet, and says so (ErrNotYet); only one
		// that still says so at the deadline is silent. Any other refusal
		// is final.
		refused := errors.Is(err, gossip.ErrRefused) && !errors.Is(err, gossip.ErrNotYet)
		if err == nil || refused || time.Now().After(deadline) || ctx.Err() != nil {
			return ev, err
		}
		if n.tr.Host().Network().Connectedness(p) != network.Connected {
			n.tr.Discover(ctx) // learn its address from the peers that know it
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// startChallenges launches the challenges of a decided round that the
// beacon drew this node for, and logs them.
func (n *node) startChallenges(ctx context.Context, res consensus.Decided, out chan<- verdictDone) {
	if len(res.Challenges) == 0 || res.Restored {
		return
	}
	for _, c := range res.Challenges {
		if consensus.PeerID(c.Challenger) != n.self {
			continue
		}
		us := n.eng.ServeUpdates([]consensus.Hash{consensus.Hash(c.Update)})
		var base []float32
		if len(us) > 0 {
			base = n.stateOf(us[0].Round, us[0].Base)
		}
		if len(us) > 0 && base == nil && n.spec.IsPrivate(c.Peer) {
			base = []float32{} // a proof is checked against the update alone
		}
		if base == nil || len(us) == 0 {
			n.log.Warn("challenge: round state or update no longer held", "round", res.Round)
			continue
		}
		data, _ := json.Marshal(audit.ChallengeData{Update: hex.EncodeToString(c.Update[:]), Challenger: c.Challenger, Beacon: hex.EncodeToString(res.Beacon[:])})
		n.record(ledger.Entry{Kind: ledger.KindChallenge, Round: res.Round, Peer: c.Peer, Data: data})
		n.event(EventChallenge, []any{"round", res.Round, "peer", c.Peer}, "round %d: challenging %s's update", res.Round, short(c.Peer))
		n.checking.Add(1)
		go n.challenge(ctx, res, c, base, us[0], out)
	}
}

// stateOf returns the agreed parameters of round with hash h (the base
// of an update of that round), or nil when no longer held.
func (n *node) stateOf(round uint64, h consensus.Hash) []float32 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if st, ok := n.states[h]; ok && st.Round == round {
		return st.Theta
	}
	if b := n.bases[round]; b != nil {
		return b
	}
	for _, st := range n.states {
		if st.Round == round {
			return st.Theta
		}
	}
	return nil
}

// finishChallenge hands a finished challenge's verdict to the engine (which
// signs and publishes it) and records the answer it judged.
func (n *node) finishChallenge(d verdictDone) {
	n.checking.Add(-1)
	if d.v == nil {
		return
	}
	n.mu.Lock()
	n.challenges.Run++
	if d.v.Pass {
		n.challenges.Passed++
	} else {
		n.challenges.Failed++
		n.challenges.Accused = append(n.challenges.Accused, string(d.v.Accused))
	}
	n.challenges.Seconds += d.seconds
	n.mu.Unlock()
	n.note(Note{Kind: NoteChallenge, Round: d.v.Round, Peer: string(d.v.Accused), Pass: d.v.Pass, Reason: d.v.Reason, Seconds: d.seconds})
	if d.evidence != nil && n.book != nil {
		if h, err := n.book.store.Put(d.evidence); err == nil {
			n.record(ledger.Entry{Kind: ledger.KindResponse, Round: d.v.Round, Peer: string(d.v.Accused), Blob: h.String()})
			// Out of this process before the verdict leaves this node: a
			// node killed after publishing it learns its own verdict back
			// (from gossip, or in the value that carries it) and logs it
			// again, and its ledger must hold the answer it judged (the
			// audit re-runs it). A write, not an fsync: the loop must not
			// wait on the disk for every challenge.
			if err := n.book.log.Flush(); err != nil {
				n.log.Error("ledger flush", "err", err)
			}
		} else {
			n.log.Error("ledger store", "err", err)
		}
	}
	verdict := "passed"
	if !d.v.Pass {
		verdict = "FAILED: " + d.v.Reason
	}
	n.event(EventVerdict, []any{"round", d.v.Round, "peer", string(d.v.Accused), "verdict", verdict}, "round %d: %s's update %s", d.v.Round, short(string(d.v.Accused)), verdict)
	if dec := n.eng.SubmitVerdict(d.v); dec.Verdict == consensus.Reject {
		n.log.Warn("own verdict refused", "reason", dec.Reason)
	}
}

func short(p string) string {
	if len(p) > 12 {
		return p[:4] + "…" + p[len(p)-6:]
	}
	return p
}

// noteExclusions reports the peers the decided round excluded. It ends
// the node if the run excluded it: by this decision, or by one before the
// certified state it adopted (a restored decision names no exclusions).
func (n *node) noteExclusions(res consensus.Decided) error {
	for _, x := range res.Excluded {
		ex := Exclusion{Peer: string(x.Peer), Round: res.Round + 1, Reason: x.Reason()}
		n.excluded = append(n.excluded, ex)
		n.gone.Store(ex.Peer, true)
		n.event(EventExcluded, []any{"round", res.Round, "peer", ex.Peer, "from_round", ex.Round, "reason", ex.Reason}, "round %d: %s excluded from round %d on: %s", res.Round, short(ex.Peer), ex.Round, ex.Reason)
		if x.Peer == n.self {
			return fmt.Errorf("%w in round %d: %s", ErrExcluded, ex.Round, ex.Reason)
		}
	}
	if res.Restored {
		st, _ := n.eng.Latest()
		for _, p := range n.adoptedExclusions() {
			ex := Exclusion{Peer: string(p), Round: st.Round, Reason: "in the certified state adopted"}
			n.excluded = append(n.excluded, ex)
			n.event(EventExcluded, []any{"round", res.Round, "peer", ex.Peer, "from_round", ex.Round, "reason", ex.Reason}, "round %d: %s is excluded in the certified state adopted", res.Round, short(ex.Peer))
		}
	}
	if res.Restored && n.eng.Members().IsExcluded(n.self) {
		n.event(EventExcluded, []any{"round", res.Round, "peer", string(n.self), "reason", "in the certified state adopted"}, "round %d: this node is excluded in the certified state it adopted", res.Round)
		return fmt.Errorf("%w by round %d: the certified state it adopted excludes it", ErrExcluded, res.Round+1)
	}
	return nil
}

// drawnCheck is a challenge the beacon drew on one of this node's updates:
// what it serves evidence for.
type drawnCheck struct {
	round       uint64
	beacon      consensus.Hash
	u           *consensus.Update
	challengers []consensus.PeerID
}

// drawWait bounds how long an evidence request for a round this node has
// not decided yet waits for its decision (a challenger may be a moment
// ahead).
const drawWait = 5 * time.Second

// checkDraw reports whether the beacon drew a challenge on this node's
// update id of round and, when blocks is not nil, whether they are the
// blocks a drawn challenger opens (what it and the referees ask for).
func (n *node) checkDraw(round uint64, id consensus.Hash, blocks []int) error {
	deadline := time.Now().Add(drawWait)
	for {
		n.mu.RLock()
		dc, started := n.drawn[id], n.started
		n.mu.RUnlock()
		if !started {
			// A node that is starting (it restarts) does not know yet
			// what it answers for: its challengers ask again.
			return fmt.Errorf("%w: this node is starting", gossip.ErrNotYet)
		}
		if dc != nil {
			if dc.round != round {
				return fmt.Errorf("update %s is of round %d", id.Short(), dc.round)
			}
			if blocks == nil {
				return nil
			}
			for _, c := range dc.challengers {
				if want, err := trainer.DrawBlocks(n.spec, dc.beacon, dc.u, id, c, n.model.NumParams()); err == nil && slices.Equal(want, blocks) {
					return nil
				}
			}
			return fmt.Errorf("residual blocks %v are not a draw of a challenge of update %s", blocks, id.Short())
		}
		n.mu.RLock()
		prior := n.restarted && (round < n.resumedAt || !n.trainedAny || round < n.trainedFrom)
		n.mu.RUnlock()
		if prior {
			// An update of this node's before this process restarted
			// (every round before its first update since): the draw is not
			// held here (the update was not either, when the node adopted
			// a certified state past its round), and an honest challenger
			// must still get its answer (the receipt recomputes it). What
			// is served of those few updates is not limited to the draw.
			return nil
		}
		// Wait only for the round being decided now: a request for an
		// older or a future round is refused at once, so nobody can hold
		// a stream open by naming rounds that never come.
		if n.eng == nil || n.decidedRound() != round || time.Now().After(deadline) {
			if n.eng != nil && round >= n.decidedRound() {
				// Behind: the challenger may ask again once this node
				// has decided the round (or adopted a state past it).
				return fmt.Errorf("%w: round %d is not decided here yet", gossip.ErrNotYet, round)
			}
			return fmt.Errorf("no challenge of update %s of round %d was drawn", id.Short(), round)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noteDraws records the challenges a decided round drew on this node's
// updates. A node that adopted a certified state past rounds it did not
// decide itself (it lagged) notes their draws from the certified values
// of the chain it checked: their challengers still come for its evidence,
// and an honest node that refused them would be excluded as silent.
func (n *node) noteDraws(res consensus.Decided) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.decidedUpTo = max(n.decidedUpTo, res.Round+1)
	note := func(round uint64, beacon consensus.Hash, c spot.Challenge) {
		if consensus.PeerID(c.Peer) != n.self {
			return
		}
		id := consensus.Hash(c.Update)
		dc := n.drawn[id]
		if dc == nil {
			var u *consensus.Update
			if us := n.eng.ServeUpdates([]consensus.Hash{id}); len(us) > 0 {
				u = us[0]
			} else if ev := n.evidence[id]; ev != nil {
				u = ev.u
			}
			if u == nil {
				return
			}
			dc = &drawnCheck{round: round, beacon: beacon, u: u}
			n.drawn[id] = dc
		}
		if !slices.Contains(dc.challengers, consensus.PeerID(c.Challenger)) {
			dc.challengers = append(dc.challengers, consensus.PeerID(c.Challenger))
		}
	}
	for _, c := range res.Challenges {
		note(res.Round, res.Beacon, c)
	}
	if res.Restored {
		for _, l := range res.Links {
			if v := l.Commit.Value; v != nil {
				beacon, chs := consensus.Draw(v, consensus.SpotPolicyOf(n.spec))
				for _, c := range chs {
					note(v.Round, beacon, c)
				}
			}
		}
	}
	for id, dc := range n.drawn {
		if dc.round+2*keptEvidence < res.Round {
			delete(n.drawn, id)
		}
	}
}

// decidedRound is the first round this node has not decided.
func (n *node) decidedRound() uint64 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.decidedUpTo
}

// adoptedExclusions returns the peers the certified state this node holds
// excludes that it has not reported (it restored past the decision that
// excluded them).
func (n *node) adoptedExclusions() []consensus.PeerID {
	var out []consensus.PeerID
	for _, p := range n.eng.Members().Excluded {
		if p != n.self && !slices.ContainsFunc(n.excluded, func(x Exclusion) bool { return x.Peer == string(p) }) {
			out = append(out, p)
		}
	}
	return out
}
