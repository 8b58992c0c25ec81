package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/spot"
	"github.com/vtrain/vtrain/verify/zk"
)

// Private peers (runspec.Privacy, consensus/private.go). A node of a run
// with private peers verifies their proofs (every member, on every verdict
// on their updates, before it takes the verdict); a node that is one of
// them trains in the circuit's fixed point, sends its round's exact change
// with the commitment to its parameters after every step, and proves the
// step each decision's beacon draws, which its challengers fetch.

// private is a node's side of private peers.
type private struct {
	proofs *trainer.Proofs
	prover *zk.Prover // nil unless this node is a private peer
	// replay rebuilds own rounds kept on disk (privstore.go) after a
	// restart; made when first needed, used only by prove (one at a time).
	replay *zk.Prover
	// train admits one round of training on prover at a time: a node
	// starts training a new round while it cancels the one under way
	// (startTraining), and a cancelled private round runs its steps to
	// the end (the prover takes no context), so the next one waits for
	// it rather than share the prover's state with it.
	train sync.Mutex

	mu     sync.Mutex
	rounds map[consensus.Hash]*provenRound // own private updates, by ID
	// proving admits one proof at a time: the prover uses every core,
	// and the oldest drawn step, done first, is the one asked for first.
	proving chan struct{}
	// pending counts the proofs drawn and not made yet.
	pending atomic.Int64
}

// maxBacklog is how many drawn steps a private peer may have left to
// prove when it starts training a round: a peer that proves slower than
// the rounds go waits before it trains, so that it sends one update per
// proof it can make rather than fall ever further behind its
// challengers (who wait privacy.proof_timeout for each proof). In a run
// that waits for its private peers (runspec's privacy.wait, the default)
// this is the pace the rounds follow: the agreed deadline counts this
// peer's pace in full (consensus/deadline.go).
const maxBacklog = 1

// provenRound is an own private update with what answers for it: the
// chain of states in memory, or, after a restart, the record on disk it
// is rebuilt from (proven nil until prove rebuilds it).
type provenRound struct {
	round  uint64
	proven *zk.Proven
	rec    *privateRecord
	steps  map[int]*proving
}

// proving is a proof being made (done closes when a or err is set).
type proving struct {
	done chan struct{}
	a    *consensus.Answer
	err  error
}

// setupPrivate readies a node of a run with private peers: the proof
// checker from the run's keys (Config.ZK) and, on a private peer, its
// prover over its shard, whose data root must be the one the run pins.
func (n *node) setupPrivate() error {
	pv := n.spec.Privacy
	if pv.Mode != "zk" {
		return nil
	}
	if len(pv.Peers) == 0 {
		return fmt.Errorf("%w: a privacy = \"zk\" run lists the peers that prove their work in [privacy] peers (vtrain keygen and the node print a peer's data root)", ErrUsage)
	}
	if n.cfg.ZK == nil && n.cfg.ZKDir != "" {
		load := zk.LoadVerifier
		if n.spec.IsPrivate(string(n.self)) {
			load = zk.LoadProver
		}
		keys, err := load(n.cfg.ZKDir, pv.VKSHA256)
		if err != nil {
			return fmt.Errorf("%w: --zk-keys: %v", ErrUsage, err)
		}
		n.cfg.ZK = keys
	}
	if n.cfg.ZK == nil {
		return fmt.Errorf("%w: the run has private peers: give the run's keys (--zk-keys DIR, from vtrain ceremony or vtrain keygen; their verifying key must hash to %s)", ErrUsage, pv.VKSHA256)
	}
	proofs, err := trainer.NewProofs(n.spec, n.cfg.ZK)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	n.priv = &private{proofs: proofs, rounds: map[consensus.Hash]*provenRound{}, proving: make(chan struct{}, 1)}
	pp, ok := n.spec.PrivatePeer(string(n.self))
	if !ok {
		return nil
	}
	if n.cfg.ZK.PK == nil {
		return fmt.Errorf("%w: this node is a private peer of the run: it needs the proving key too (--zk-keys DIR with pk.bin)", ErrUsage)
	}
	shard, err := privateShard(n.spec, n.self, n.cfg.Data.Train)
	if err != nil {
		return err
	}
	start, err := zk.ThetaFromFloat(make([]float32, n.model.NumParams()))
	if err != nil {
		return err
	}
	pr, err := zk.NewProver(n.cfg.ZK, start, n.cfg.Data.Train, shard, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if root := zk.Hex(pr.DataRoot()); root != pp.DataRoot || uint64(len(shard)) != pp.DataSize {
		return fmt.Errorf("%w: this node's data (%d samples, root %s) is not what the run pins for it (%d samples, root %s)", ErrUsage, len(shard), root, pp.DataSize, pp.DataRoot)
	}
	n.priv.prover = pr
	return nil
}

// privateShard is the samples a private peer trains on: its shard of its
// training set, as a public peer's.
func privateShard(spec runspec.Spec, self consensus.PeerID, train *data.Dataset) ([]int, error) {
	return data.Shard(train.Len(), spec.Shards(), consensus.ShardOf(spec, self), spec.Run.Seed)
}

// PrivateData returns the data root (hex) and size that a run pins for
// peer self training its shard of train (runspec.PrivatePeer).
func PrivateData(spec runspec.Spec, self string, train *data.Dataset) (string, uint64, error) {
	shard, err := privateShard(spec, consensus.PeerID(self), train)
	if err != nil {
		return "", 0, err
	}
	d, err := zk.NewPeerData(spec.ZKParams(), train, shard)
	if err != nil {
		return "", 0, err
	}
	return zk.Hex(d.Root()), d.Size(), nil
}

// privateWork is a private peer's round: its contribution (the chain of
// commitments), its change, and what proves any of its steps later.
type privateWork struct {
	c      zk.Contribution
	delta  zk.Delta
	proven *zk.Proven
	loss   float64
}

// trainPrivate runs a private peer's round: the inner steps in fixed
// point from the agreed state, quantized, on the batches the run's
// sampler draws with the round's seed.
func (n *node) trainPrivate(ctx context.Context, req *consensus.TrainRequest) trainResult {
	if n.priv.pending.Load() > maxBacklog {
		n.log.Info("waiting for proofs before training", "round", req.Round, "pending", n.priv.pending.Load())
		for n.priv.pending.Load() > maxBacklog {
			select {
			case <-ctx.Done():
				return trainResult{err: ctx.Err()}
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	n.priv.train.Lock()
	defer n.priv.train.Unlock()
	if err := ctx.Err(); err != nil { // cancelled while the round before finished
		return trainResult{err: err}
	}
	start := time.Now()
	w, err := n.runPrivate(n.priv.prover, req.Round, req.Theta, req.Seed, n.spec.Inner.Steps)
	if err != nil {
		return trainResult{err: err}
	}
	return trainResult{private: w, seconds: time.Since(start).Seconds()}
}

// runPrivate trains a private round with pr: steps inner steps in fixed
// point from theta (the agreed state of round), on the batches the run's
// sampler draws with seed. The same inputs give the same work, which is
// how a restarted node rebuilds a round it must answer for.
func (n *node) runPrivate(pr *zk.Prover, round uint64, theta []float32, seed uint64, steps int) (*privateWork, error) {
	th, err := zk.ThetaFromFloat(theta)
	if err != nil {
		return nil, fmt.Errorf("node: the agreed state leaves the circuit's fixed-point range: %w", err)
	}
	if err := pr.StartFrom(th); err != nil {
		return nil, err
	}
	c, err := pr.Round(zk.Context{Run: n.spec.RunID(), Round: round, Peer: string(n.self)}, seed, steps)
	if err != nil {
		return nil, err
	}
	d, err := pr.Delta()
	if err != nil {
		return nil, err
	}
	w := &privateWork{c: c, delta: d, proven: pr.Last()}
	w.loss = w.proven.Loss()
	return w, nil
}

// privateUpdate is the update of a private round's work: its exact
// change as the payload, its commitments in place of segment roots.
func (n *node) privateUpdate(round uint64, base consensus.Hash, seed uint64, w *privateWork) *consensus.Update {
	u := &consensus.Update{Round: round, Base: base, Samples: uint64(n.spec.Inner.Steps * n.spec.Inner.Batch),
		Loss: float32(w.loss), Payload: w.delta.Encode(), Seed: seed, From: n.self}
	for _, c := range w.c.Commitments() {
		u.Segments = append(u.Segments, consensus.Hash(c))
	}
	return u
}

// submitPrivate hands the engine a private peer's update, once what
// rebuilds it after a restart is on disk.
func (n *node) submitPrivate(r trainResult) error {
	w := r.private
	u := n.privateUpdate(r.req.Round, r.req.Base, r.req.Seed, w)
	id := u.ID(n.eng.RunID())
	rec := privateRecord{round: u.Round, update: id, base: u.Base, seed: u.Seed, steps: n.spec.Inner.Steps, theta: r.req.Theta}
	if err := savePrivate(filepath.Join(n.cfg.OutDir, privateDir), n.spec.RunID().String(), rec); err != nil {
		// It can still answer while it runs; only a restart would lose it.
		n.log.Warn("private round not kept on disk: a restart before its proof would leave it unanswered", "round", u.Round, "err", err)
	}
	if err := n.eng.Trained(u); err != nil {
		return err
	}
	n.priv.mu.Lock()
	n.priv.rounds[id] = &provenRound{round: u.Round, proven: w.proven, steps: map[int]*proving{}}
	for k, pr := range n.priv.rounds {
		if pr.round+keptEvidence <= u.Round {
			delete(n.priv.rounds, k)
		}
	}
	n.priv.mu.Unlock()
	n.mu.Lock()
	if !n.trainedAny {
		n.trainedAny, n.trainedFrom = true, r.req.Round
	}
	n.mu.Unlock()
	return nil
}

// privateAnswer is this node's signed proof of step seg of its private
// update id, which the decision of round drew: the step the beacon drew
// and no other (a proof costs seconds; nobody may make this node prove
// what was not drawn). The proof is made once, in the background; an
// asker that comes before it is ready is told to come again.
func (n *node) privateAnswer(round uint64, id consensus.Hash, seg int) (*consensus.Answer, error) {
	n.mu.RLock()
	dc := n.drawn[id]
	n.mu.RUnlock()
	var beacon consensus.Hash
	ok := dc != nil && dc.round == round
	if ok {
		beacon = dc.beacon
	} else if dc == nil {
		// A draw this node did not note (it restarted since, or adopted
		// a certified state past the decision): the certified decision it
		// keeps says it.
		beacon, ok = n.keptDraw(round, id)
	}
	if !ok {
		n.mu.RLock()
		behind := dc == nil && round >= max(n.decidedUpTo, n.resumedAt)
		n.mu.RUnlock()
		if behind {
			// It restarted from a checkpoint before that decision: its
			// challengers ask again once it has caught up.
			return nil, fmt.Errorf("%w: round %d is not decided here yet", gossip.ErrNotYet, round)
		}
		return nil, fmt.Errorf("no check of private update %s was drawn in round %d", id.Short(), round)
	}
	if want := consensus.PrivateStep(beacon, id, n.spec.Inner.Steps); seg != want {
		return nil, fmt.Errorf("the beacon drew step %d of private update %s, not %d", want, id.Short(), seg)
	}
	n.priv.mu.Lock()
	pr := n.priv.rounds[id]
	if pr == nil {
		rec, err := loadPrivate(filepath.Join(n.cfg.OutDir, privateDir), n.spec.RunID().String(), id, n.model.NumParams(), n.spec.Inner.Steps)
		if err == nil && !decidedIn(rec.round, round) {
			err = fmt.Errorf("%w: update %s is of round %d, not aggregated in round %d", errPrivateRecord, id.Short(), rec.round, round)
		}
		if err != nil {
			n.priv.mu.Unlock()
			if !errors.Is(err, os.ErrNotExist) {
				n.log.Error("private round kept on disk", "round", round, "update", id.Short(), "err", err)
			}
			return nil, fmt.Errorf("private update %s is not held here: %w", id.Short(), err)
		}
		pr = &provenRound{round: rec.round, rec: rec, steps: map[int]*proving{}}
		n.priv.rounds[id] = pr
	}
	p := pr.steps[seg]
	if p == nil {
		p = &proving{done: make(chan struct{})}
		pr.steps[seg] = p
		n.checking.Add(1)
		n.priv.pending.Add(1)
		go n.prove(pr, round, id, seg, p)
	}
	n.priv.mu.Unlock()
	select {
	case <-p.done:
		return p.a, p.err
	case <-time.After(drawWait):
		return nil, fmt.Errorf("%w: the proof of step %d of update %s is being made", gossip.ErrNotYet, seg, id.Short())
	}
}

// prove makes the proof of step seg of an own private update and signs
// the answer that carries it.
func (n *node) prove(pr *provenRound, round uint64, id consensus.Hash, seg int, p *proving) {
	defer n.checking.Add(-1)
	defer n.priv.pending.Add(-1)
	defer close(p.done)
	n.priv.proving <- struct{}{}
	defer func() { <-n.priv.proving }()
	start := time.Now()
	if err := n.rebuildPrivate(pr, id); err != nil {
		p.err = err
		n.log.Error("proof", "round", round, "step", seg, "err", err)
		return
	}
	var b zk.Bundle
	if n.acts(round) == "forge-proof" {
		// A proof of a true statement that is not this step: one step
		// from the same state on the batch of another step.
		b, p.err = pr.proven.RespondOther(seg, (seg+1)%pr.proven.Steps())
	} else {
		b, p.err = pr.proven.Respond(seg)
	}
	if p.err != nil {
		n.log.Error("proof", "round", round, "step", seg, "err", p.err)
		return
	}
	a := &consensus.Answer{Round: round, Update: id, Segment: seg, Proof: b.Encode()}
	a.Sig = gossip.Signer(n.key)(consensus.AnswerSignBytes(n.eng.RunID(), a))
	p.a = a
	n.mu.Lock()
	n.challenges.Proofs++
	n.challenges.ProofSeconds += time.Since(start).Seconds()
	n.mu.Unlock()
	n.event(EventProof, []any{"round", round, "update", id.Short(), "step", seg, "seconds", time.Since(start).Seconds()},
		"round %d: proved step %d of this node's update %s in %.1fs", round, seg, id.Short(), time.Since(start).Seconds())
}

// startProofs starts proving the steps a decided round drew of this
// node's private updates, before its challengers ask. A state adopted
// past decisions this node did not take itself (it lagged, or restarted
// while they were taken) brings their draws in its certified links: the
// recent ones still have challengers waiting for a proof.
func (n *node) startProofs(res consensus.Decided) {
	if n.priv == nil || n.priv.prover == nil {
		return
	}
	start := func(round uint64, beacon consensus.Hash, chs []spot.Challenge) {
		for _, c := range chs {
			if consensus.PeerID(c.Peer) != n.self {
				continue
			}
			id := consensus.Hash(c.Update)
			step := consensus.PrivateStep(beacon, id, n.spec.Inner.Steps)
			go n.privateAnswer(round, id, step) //nolint:errcheck // made for the askers; errors are logged by prove
		}
	}
	if !res.Restored {
		start(res.Round, res.Beacon, res.Challenges)
		return
	}
	for _, l := range res.Links {
		if v := l.Commit.Value; v != nil && v.Round+keptEvidence > res.Round {
			beacon, chs := consensus.Draw(v, consensus.SpotPolicyOf(n.spec))
			start(v.Round, beacon, chs)
		}
	}
}

// keptDraw returns the beacon of the certified decision of round this
// node keeps (the engine's recent chain, checkpointed) when it drew a
// check of this node's update id.
func (n *node) keptDraw(round uint64, id consensus.Hash) (consensus.Hash, bool) {
	n.mu.RLock()
	p := n.proof
	n.mu.RUnlock()
	if p == nil {
		return consensus.Hash{}, false
	}
	for _, l := range p.Links {
		v := l.Commit.Value
		if v == nil || v.Round != round {
			continue
		}
		beacon, chs := consensus.Draw(v, consensus.SpotPolicyOf(n.spec))
		for _, c := range chs {
			if consensus.PeerID(c.Peer) == n.self && consensus.Hash(c.Update) == id {
				return beacon, true
			}
		}
	}
	return consensus.Hash{}, false
}

// rebuildPrivate gives pr its chain of states when it came from disk: it
// re-runs the round from the kept agreed state and seed, and takes the
// result only when it is the update id this node sent (the same
// commitments, change, loss and base): a node proves nothing else. Called
// by prove only, one at a time.
func (n *node) rebuildPrivate(pr *provenRound, id consensus.Hash) error {
	n.priv.mu.Lock()
	done, rec := pr.proven != nil, pr.rec
	n.priv.mu.Unlock()
	if done {
		return nil
	}
	start := time.Now()
	if n.priv.replay == nil {
		shard, err := privateShard(n.spec, n.self, n.cfg.Data.Train)
		if err != nil {
			return err
		}
		th, err := zk.ThetaFromFloat(rec.theta)
		if err != nil {
			return err
		}
		if n.priv.replay, err = zk.NewProver(n.cfg.ZK, th, n.cfg.Data.Train, shard, 0); err != nil {
			return err
		}
	}
	w, err := n.runPrivate(n.priv.replay, rec.round, rec.theta, rec.seed, rec.steps)
	if err != nil {
		return fmt.Errorf("node: rebuilding private update %s of round %d: %w", id.Short(), rec.round, err)
	}
	if got := n.privateUpdate(rec.round, rec.base, rec.seed, w).ID(n.spec.RunID()); got != id {
		return fmt.Errorf("%w: rebuilt from its record, round %d gives update %s, not %s: this node proves only the update it sent", errPrivateRecord, rec.round, got.Short(), id.Short())
	}
	n.priv.mu.Lock()
	pr.proven = w.proven
	n.priv.mu.Unlock()
	n.log.Info("rebuilt a private round kept on disk", "round", rec.round, "update", id.Short(), "seconds", time.Since(start).Seconds())
	return nil
}

// fetchPrivateAnswer asks the author of a private update for its signed
// proof of the drawn step, retrying until verify.timeout (a proof takes
// seconds to make), and returns it only when it is the author's signed
// answer to exactly that question.
func (n *node) fetchPrivateAnswer(ctx context.Context, accused consensus.PeerID, round uint64, id consensus.Hash, step int) (*consensus.Answer, error) {
	pid, err := peer.Decode(string(accused))
	if err != nil {
		return nil, fmt.Errorf("accused is not a peer ID")
	}
	deadline := time.Now().Add(n.spec.ProofTimeout())
	for {
		cctx, cancel := context.WithDeadline(ctx, deadline)
		a, err := n.tr.FetchAnswer(cctx, pid, round, id, step)
		cancel()
		if err == nil {
			if a.Round != round || a.Update != id || a.Segment != step || len(a.Proof) == 0 || len(a.Leaves) > 0 ||
				!gossip.VerifySig(accused, consensus.AnswerSignBytes(n.eng.RunID(), a), a.Sig) {
				return nil, fmt.Errorf("%s's answer is not its signed proof of step %d", accused, step)
			}
			return a, nil
		}
		refused := errors.Is(err, gossip.ErrRefused) && !errors.Is(err, gossip.ErrNotYet)
		if refused || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		if _, gone := n.gone.Load(string(accused)); gone {
			return nil, errGone
		}
		if n.tr.Host().Network().Connectedness(pid) != network.Connected {
			n.tr.Discover(ctx)
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// errGone: the accused was excluded while its proof was awaited.
var errGone = errors.New("excluded from the run meanwhile")

// challengePrivate checks a private update the beacon drew this node for:
// it fetches the author's proof of the drawn step and verifies it. The
// verdict carries the signed answer either way, so that every member
// verifies the proof before it takes the verdict.
func (n *node) challengePrivate(ctx context.Context, res consensus.Decided, u *consensus.Update, v *consensus.VerdictMsg) (seconds float64, ok bool) {
	step := consensus.PrivateStep(res.Beacon, v.Update, n.spec.Inner.Steps)
	v.Segment = step
	a, err := n.fetchPrivateAnswer(ctx, v.Accused, res.Round, v.Update, step)
	if ctx.Err() != nil || errors.Is(err, errGone) {
		return 0, false // nothing left to check: the run has excluded it
	}
	if err != nil {
		v.Fault, v.Reason = consensus.FaultSilent, fmt.Sprintf("%v: no proof of step %d within %v: %v", trainer.ErrChallenge, step, n.spec.ProofTimeout(), err)
		return 0, true
	}
	start := time.Now()
	err = n.priv.proofs.CheckProof(u, step, a.Proof)
	seconds = time.Since(start).Seconds()
	v.Answer = a
	if err != nil {
		v.Fault, v.Reason = consensus.FaultProof, fmt.Sprintf("%v: the proof of step %d does not verify: %v", trainer.ErrChallenge, step, err)
		return seconds, true
	}
	v.Pass = true
	return seconds, true
}

// refereePrivate referees a claim that a private peer did not answer:
// this node asks it for the proof itself. A proof that verifies makes the
// claim lapse; none, or one that does not verify, upholds it.
func (n *node) refereePrivate(ctx context.Context, x *consensus.VerdictMsg, u *consensus.Update) (consensus.Ruling, string) {
	if x.Accused == n.self {
		return consensus.Lapsed, "this node is the accused, and answers"
	}
	a, err := n.fetchPrivateAnswer(ctx, x.Accused, x.Round, x.Update, x.Segment)
	if errors.Is(err, errGone) {
		return consensus.Lapsed, fmt.Sprintf("%s was excluded meanwhile", x.Accused)
	}
	if err != nil {
		return consensus.Upheld, fmt.Sprintf("no proof from %s either: %v", x.Accused, err)
	}
	if err := n.priv.proofs.CheckProof(u, x.Segment, a.Proof); err != nil {
		return consensus.Upheld, fmt.Sprintf("%s's proof does not verify: %v", x.Accused, err)
	}
	return consensus.Lapsed, fmt.Sprintf("%s answered this referee with a proof that verifies", x.Accused)
}
