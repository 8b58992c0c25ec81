// Package node runs a vtrain peer: it drives the round engine
// (trainer.Engine) with a gossip transport, local training, fetches and
// checkpoints, and reports every round. The engine decides; this package
// only moves its inputs and outputs.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/ledger"
)

// Config configures a node.
type Config struct {
	Spec      *runspec.Spec // the run to start; nil to join
	Join      string        // join address (a peer's full multiaddr)
	RunID     runspec.ID    // when joining: the expected run (zero: accept the peer's)
	Listen    []string      // listen multiaddrs
	Data      *data.Set     // the peer's local data
	OutDir    string        // identity key, checkpoint, rounds.jsonl
	Out       io.Writer     // a line per round (JSON with JSONLines)
	JSONLines bool
	EvalEvery int           // evaluate on the test set every N rounds (0: 5); always at the end
	Linger    time.Duration // after the last round, keep serving peers this long
	Logger    *slog.Logger
	Tick      time.Duration // engine clock resolution (default 50ms)
	Device    engine.Engine // train on this device (a GPU); nil: the CPU graph
	Behave    string        // "" or "honest"; else a misbehaviour (see Behaviours), for demos and tests
}

// RoundReport is one line of a node's output: a decided round.
type RoundReport struct {
	Peer      string  `json:"peer"`
	Round     uint64  `json:"round"`
	Hash      string  `json:"hash"`
	Updates   int     `json:"updates"`
	Votes     int     `json:"votes"`
	Loss      float32 `json:"train_loss"`
	Accuracy  float64 `json:"test_accuracy,omitempty"`
	TestLoss  float64 `json:"test_loss,omitempty"`
	Peers     int     `json:"peers"`
	Published uint64  `json:"published_bytes"`
	WireIn    int64   `json:"wire_in_bytes"`
	WireOut   int64   `json:"wire_out_bytes"`
	Seconds   float64 `json:"seconds"`
	Restored  bool    `json:"restored,omitempty"`
}

// Summary is what a node reports when the run ends.
type Summary struct {
	Peer         string                 `json:"peer"`
	RunID        string                 `json:"run_id"`
	Rounds       uint64                 `json:"rounds"`
	FinalHash    string                 `json:"final_hash"`
	Hashes       []string               `json:"hashes"` // per round, "" where this node did not see the decision
	TestAccuracy float64                `json:"test_accuracy"`
	TestLoss     float64                `json:"test_loss"`
	Stats        gossip.Stats           `json:"stats"`
	Ledger       string                 `json:"ledger,omitempty"`    // this node's ledger file
	TreeHead     *ledger.SignedTreeHead `json:"tree_head,omitempty"` // its latest signed tree head
	Behave       string                 `json:"behave,omitempty"`
	Excluded     []Exclusion            `json:"excluded"`      // peers the run excluded, as this node saw it
	Challenges   ChallengeStats         `json:"challenges"`    // spot-checks this node ran and answered
	TrainSeconds float64                `json:"train_seconds"` // spent in inner steps
	// Witnessed holds the latest tree head each other peer gossiped of its
	// own ledger: an auditor checks that peer's ledger against it
	// (vtrain audit --witness).
	Witnessed map[string]*ledger.SignedTreeHead `json:"witnessed_heads,omitempty"`
	RoundsLog []RoundReport                     `json:"-"`
}

// ErrUsage is wrapped by configuration errors.
var ErrUsage = errors.New("node: bad configuration")

// node is the driver's state; the engine is touched only by Run's
// goroutine.
type node struct {
	cfg    Config
	spec   runspec.Spec
	model  models.Spec
	eng    *trainer.Engine
	tr     *gossip.Transport
	key    crypto.PrivKey
	log    *slog.Logger
	start  time.Time
	hashes map[uint64]trainer.Hash

	mu      sync.RWMutex // guards what sync requests read
	canon   []byte
	states  map[trainer.Hash]trainer.State
	latest  trainer.Hash
	raws    map[trainer.Hash][]byte // signed updates of this and the last round
	oldRaws map[trainer.Hash][]byte
	round   uint64

	book     *book // the ledger; touched only by Run's goroutine
	lastHead *ledger.SignedTreeHead

	evidence     map[trainer.Hash]*evidence // behind own updates (guarded by mu)
	challenges   ChallengeStats             // guarded by mu
	excluded     []Exclusion
	trainSeconds float64
	keptVerdicts map[*trainer.VerdictMsg][]byte // verdicts the engine keeps for a round not yet decided
	witnessed    map[string]*ledger.SignedTreeHead
	pendingEv    *evidence // of the work being handed to the engine
	pendingBase  []float32
}

// Spec implements gossip.Server.
func (n *node) Spec() []byte { n.mu.RLock(); defer n.mu.RUnlock(); return n.canon }

// State implements gossip.Server.
func (n *node) State(h trainer.Hash) (trainer.State, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if h == (trainer.Hash{}) {
		h = n.latest
	}
	st, ok := n.states[h]
	return st, ok
}

// Updates implements gossip.Server.
func (n *node) Updates(ids []trainer.Hash) [][]byte {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var out [][]byte
	for _, id := range ids {
		if r, ok := n.raws[id]; ok {
			out = append(out, r)
		} else if r, ok := n.oldRaws[id]; ok {
			out = append(out, r)
		}
	}
	return out
}

func loadKey(dir string) (crypto.PrivKey, error) {
	p := filepath.Join(dir, "identity.key")
	if b, err := os.ReadFile(p); err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("node: %s: %w", p, err)
		}
		return k, nil
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return k, nil
}

// Run runs a node until its run's last round is decided (and the linger
// time has passed) or ctx ends.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.EvalEvery <= 0 {
		cfg.EvalEvery = 5
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 50 * time.Millisecond
	}
	if (cfg.Spec == nil) == (cfg.Join == "") {
		return nil, fmt.Errorf("%w: give a spec to start a run or a join address, not both", ErrUsage)
	}
	if cfg.Behave != "" && !slices.Contains(Behaviours, cfg.Behave) {
		return nil, fmt.Errorf("%w: behaviour %q: want one of %s", ErrUsage, cfg.Behave, strings.Join(Behaviours, ", "))
	}
	if cfg.OutDir == "" || cfg.Data == nil {
		return nil, fmt.Errorf("%w: an output directory and data are required", ErrUsage)
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	key, err := loadKey(cfg.OutDir)
	if err != nil {
		return nil, err
	}
	n := &node{cfg: cfg, key: key, log: cfg.Logger, start: time.Now(), hashes: map[uint64]trainer.Hash{},
		states: map[trainer.Hash]trainer.State{}, raws: map[trainer.Hash][]byte{}, evidence: map[trainer.Hash]*evidence{},
		keptVerdicts: map[*trainer.VerdictMsg][]byte{}, witnessed: map[string]*ledger.SignedTreeHead{}}
	var join gossip.JoinInfo
	if cfg.Join != "" {
		if join, err = gossip.FetchSpec(ctx, cfg.Join, cfg.RunID); err != nil {
			return nil, err
		}
		n.spec = join.Spec
	} else {
		n.spec = *cfg.Spec
	}
	if n.model, err = n.spec.ModelSpec(); err != nil {
		return nil, err
	}
	if n.spec.Privacy.Mode == "zk" {
		// The circuit, keys, prover and verifier exist (verify/zk, vtrain
		// keygen/prove/verify-proof), and nodes challenge each other by
		// re-execution; answering a challenge with a proof instead of the
		// data is not wired into the challenge protocol yet.
		return nil, fmt.Errorf("%w: this node cannot take part in a privacy = \"zk\" run yet: proofs are made and checked with vtrain prove and vtrain verify-proof, but challenges between peers are answered by re-execution, not yet by proofs", ErrUsage)
	}
	n.canon = n.spec.Canonical()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n.tr, err = gossip.New(ctx, gossip.Config{Key: key, Listen: cfg.Listen, Spec: n.spec, Logger: cfg.Logger}, n); err != nil {
		return nil, err
	}
	defer n.tr.Close()
	self := trainer.PeerID(n.tr.ID().String())

	// Where to start: a local checkpoint of this run (a restart), the
	// latest state of the peer we join, or genesis.
	for _, a := range append([]string{cfg.Join}, join.Peers...) {
		if a != "" {
			if _, err := n.tr.Connect(ctx, a); err != nil {
				n.log.Debug("connect", "addr", a, "err", err)
			}
		}
	}
	st, residual, err := n.loadCheckpoint()
	switch {
	case err == nil:
		n.log.Info("resuming from local checkpoint", "round", st.Round)
	case cfg.Join != "":
		jp, err := n.tr.Connect(ctx, cfg.Join)
		if err != nil {
			return nil, err
		}
		if st, err = n.tr.FetchState(ctx, jp, trainer.Hash{}); err != nil {
			return nil, fmt.Errorf("node: fetching the run's state: %w", err)
		}
		if err := n.corroborate(ctx, jp, st); err != nil {
			// Not fatal: the other members may have raced past that state
			// (they keep only their newest few), and once joined the
			// engine follows the majority's state in any case.
			n.log.Warn("join state not corroborated", "err", err)
		}
	default:
		if st, err = trainer.Genesis(n.spec); err != nil {
			return nil, err
		}
	}
	if n.eng, err = trainer.NewEngine(trainer.EngineConfig{Spec: n.spec, Self: self}, st); err != nil {
		return nil, err
	}
	if residual != nil {
		n.eng.SetResidual(residual)
	}
	if err := n.openBook(); err != nil {
		return nil, err
	}
	defer n.closeBook()
	n.recordState(st) // where this node starts, unless genesis
	n.publishState()
	n.say("vtrain node %s: run %s (%s), round %d", n.tr.ID(), n.spec.RunID().Short(), n.model, st.Round)
	for _, a := range n.tr.Addrs() {
		n.say("join: %s", a)
	}
	return n.loop(ctx)
}

// corroborate checks the state fetched from the join peer against the
// run's other members (the peers that committed the round before it, as the
// state records): at least one must hold a state with the same hash, unless
// the join peer is the only member. A join peer that serves a forged or
// stale-fork state is caught here; after joining, the engine follows the
// majority in any case.
func (n *node) corroborate(ctx context.Context, from peer.ID, st trainer.State) error {
	h := st.Hash()
	others := map[peer.ID]bool{}
	for _, m := range st.Members {
		if id, err := peer.Decode(string(m)); err == nil && id != from && id != n.tr.ID() {
			others[id] = true
		}
	}
	if len(others) == 0 {
		return nil
	}
	// The others may be a moment behind the join peer: retry for a while.
	for attempt := 0; attempt < 10; attempt++ {
		for id := range others {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := n.tr.FetchState(cctx, id, h)
			cancel()
			if err == nil {
				n.log.Info("join state corroborated", "round", st.Round, "hash", h.Short(), "by", id.ShortString())
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("node: the state of round %d (%s) served by %s is held by none of the run's %d other members", st.Round, h.Short(), from.ShortString(), len(others))
}

func (n *node) say(format string, a ...any) {
	if n.cfg.JSONLines {
		b, _ := json.Marshal(map[string]string{"event": fmt.Sprintf(format, a...)})
		fmt.Fprintln(n.cfg.Out, string(b))
		return
	}
	fmt.Fprintf(n.cfg.Out, format+"\n", a...)
}

type trainResult struct {
	req     *trainer.TrainRequest // the request it answers
	work    trainer.Work
	ev      *evidence
	base    []float32
	seconds float64
	err     error
}

type fetched struct {
	msgs  []*gossip.Msg
	state *trainer.State
	err   error
}

func (n *node) loop(ctx context.Context) (*Summary, error) {
	ticker := time.NewTicker(n.cfg.Tick)
	defer ticker.Stop()
	trained := make(chan trainResult, 1)
	fetches := make(chan fetched, 16)
	verdicts := make(chan verdictDone, 64)
	discovered := make(chan struct{}, 1)
	discovering := false
	last := time.Now()
	var doneAt time.Time
	var trainCancel context.CancelFunc
	var current *trainer.TrainRequest
	for {
		select {
		case <-ctx.Done():
			if trainCancel != nil {
				trainCancel()
			}
			return n.summary(), ctx.Err()
		case m, ok := <-n.tr.Messages():
			if !ok {
				return n.summary(), ctx.Err()
			}
			n.step(m)
		case r := <-n.tr.Rejections():
			n.recordRejection(r)
			n.eng.Refused(trainer.PeerID(r.From.String()), r.Round)
		case <-ticker.C:
			now := time.Now()
			n.eng.Tick(now.Sub(last))
			last = now
		case r := <-trained:
			if r.req != current {
				// Superseded (a restore or a new round started another
				// training): its delta is from another base.
				break
			}
			if r.err != nil {
				if errors.Is(r.err, context.Canceled) {
					break
				}
				return n.summary(), r.err
			}
			n.trainSeconds += r.seconds
			if r.ev != nil {
				r.ev.residual = slices.Clone(n.eng.Residual())
			}
			n.pendingEv, n.pendingBase = r.ev, r.base
			if err := n.eng.Trained(r.work); err != nil {
				if n.cfg.Behave == "" {
					return n.summary(), err
				}
				n.log.Warn("own misbehaving update refused by own engine", "err", err)
			}
		case <-discovered:
			discovering = false
		case d := <-verdicts:
			if err := n.finishChallenge(ctx, d); err != nil {
				return n.summary(), err
			}
		case f := <-fetches:
			if f.err != nil {
				n.log.Debug("fetch failed", "err", f.err)
			}
			for _, m := range f.msgs {
				n.step(m)
			}
			if f.state != nil {
				if err := n.eng.Restore(*f.state); err != nil {
					n.log.Debug("restore", "err", err)
				}
			}
		}
		rd := n.eng.Ready()
		if rd.Train != nil {
			current = rd.Train
		}
		if err := n.handle(ctx, rd, trained, fetches, &trainCancel); err != nil {
			return n.summary(), err
		}
		if len(rd.Decided) > 0 && !discovering {
			// Meet the peers this node only knows through others, in the
			// background: challenges need direct streams.
			discovering = true
			go func() {
				if k := n.tr.Discover(ctx); k > 0 {
					n.log.Info("connected to more peers", "new", k)
				}
				discovered <- struct{}{}
			}()
		}
		for _, res := range rd.Decided {
			n.startChallenges(ctx, res, verdicts)
			if err := n.noteExclusions(res); err != nil {
				if trainCancel != nil {
					trainCancel()
				}
				return n.summary(), err
			}
		}
		if n.eng.Done() {
			if doneAt.IsZero() {
				doneAt = time.Now()
			}
			if time.Since(doneAt) >= n.cfg.Linger {
				return n.summary(), n.exportModel()
			}
		}
	}
}

func (n *node) step(m *gossip.Msg) {
	var d trainer.Decision
	switch {
	case m.Update != nil:
		d = n.eng.Step(m.Update)
		if d.OK() {
			n.mu.Lock()
			n.raws[m.Update.ID(n.eng.RunID())] = m.Raw
			n.mu.Unlock()
		}
	case m.Commit != nil:
		d = n.eng.StepCommit(m.Commit)
	case m.Hello != nil:
		d = n.eng.StepHello(m.Hello)
	case m.Head != nil:
		if w := n.witnessed[m.Head.Signer]; (w == nil || m.Head.Size > w.Size) && len(n.witnessed) < 4096 {
			n.witnessed[m.Head.Signer] = m.Head
		}
		return
	case m.Verdict != nil:
		d = n.eng.StepVerdict(m.Verdict)
		if d.Kept {
			if len(n.keptVerdicts) > 4096 {
				clear(n.keptVerdicts)
			}
			n.keptVerdicts[m.Verdict] = m.Raw // logged once its round is decided here
		}
	}
	if d.Verdict == trainer.Reject {
		n.log.Info("rejected", "msg", m, "reason", d.Reason)
	}
	n.recordMsg(m, d)
}

func (n *node) handle(ctx context.Context, rd trainer.Ready, trained chan trainResult, fetches chan fetched, trainCancel *context.CancelFunc) error {
	for _, ev := range rd.Events {
		n.log.Info(ev)
	}
	for _, o := range rd.Publish {
		raw, err := gossipSign(n, o)
		if err != nil {
			return err
		}
		if o.Update != nil {
			id := o.Update.ID(n.eng.RunID())
			n.mu.Lock()
			n.raws[id] = raw
			n.mu.Unlock()
			if n.pendingEv != nil && n.pendingEv.round == o.Update.Round {
				n.keepEvidence(id, n.pendingEv, n.pendingBase)
			}
			n.pendingEv, n.pendingBase = nil, nil
		}
		n.recordOwn(o, raw)
		if err := n.tr.Publish(ctx, raw); err != nil {
			n.log.Debug("publish", "err", err)
		}
	}
	restored := false
	for _, res := range rd.Decided {
		n.decided(res)
		restored = restored || len(res.Updates) == 0
	}
	for _, v := range rd.Verdicts {
		if raw, ok := n.keptVerdicts[v]; ok {
			n.record(ledger.Entry{Kind: ledger.KindVerdict, Round: v.Round, Peer: string(v.From), Wire: raw})
			delete(n.keptVerdicts, v)
		}
	}
	if restored { // adopted from a peer: the auditor replays on from it
		st, _ := n.eng.Latest()
		n.recordState(st)
	}
	if len(rd.Decided) > 0 {
		n.publishState()
	}
	if req := rd.Train; req != nil {
		if *trainCancel != nil {
			(*trainCancel)()
		}
		tctx, cancel := context.WithCancel(ctx)
		*trainCancel = cancel
		go func() {
			r := n.train(tctx, req)
			r.req = req
			trained <- r
		}()
	}
	if f := rd.FetchUpdates; f != nil && len(f.From) > 0 {
		go func() {
			var out fetched
			for _, p := range f.From {
				pid, err := peer.Decode(string(p))
				if err != nil {
					continue
				}
				msgs, err := n.tr.FetchUpdates(ctx, pid, f.Round, f.IDs)
				out.msgs = append(out.msgs, msgs...)
				out.err = err
				if len(out.msgs) >= len(f.IDs) {
					break
				}
			}
			fetches <- out
		}()
	}
	if s := rd.FetchState; s != nil && len(s.From) > 0 {
		go func() {
			var out fetched
			for _, p := range s.From {
				pid, err := peer.Decode(string(p))
				if err != nil {
					continue
				}
				st, err := n.tr.FetchState(ctx, pid, s.Hash)
				if err == nil {
					out.state = &st
					break
				}
				out.err = err
			}
			fetches <- out
		}()
	}
	n.tr.SetRound(n.eng.Round())
	return nil
}

// train runs the round's inner steps (see work), misbehaving if told to.
func (n *node) train(ctx context.Context, req *trainer.TrainRequest) trainResult {
	start := time.Now()
	from := req
	if n.cfg.Behave == "stale" {
		if old := n.staleBase(req.Round); old != nil {
			r := *req
			r.Theta = old
			from = &r
		}
	}
	// stale: the delta of the old start (work computes it against
	// from.Theta), sent as this round's
	w, ev, err := n.work(ctx, from)
	if err != nil {
		return trainResult{err: err}
	}
	n.misbehave(req, &w, &ev)
	if n.cfg.Behave == "replay" {
		// Wait for the others' updates, to have one to copy.
		select {
		case <-time.After(time.Since(start) / 2):
		case <-ctx.Done():
		}
	}
	return trainResult{work: w, ev: ev, base: from.Theta, seconds: time.Since(start).Seconds()}
}

// gossipSign signs an outbound message; a node told to forge spoils the
// signature of its updates and verdicts.
func gossipSign(n *node, o trainer.Outbound) ([]byte, error) {
	raw, err := gossip.Sign(n.key, n.eng.RunID(), o)
	if err != nil || n.cfg.Behave != "forge" || (o.Update == nil && o.Verdict == nil) {
		return raw, err
	}
	bad := slices.Clone(raw)
	bad[len(bad)-1] ^= 0xff // the signature is the last field
	return bad, nil
}

func (n *node) publishState() {
	st, h := n.eng.Latest()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.states[h] = st
	n.latest = h
	// Keep the three newest states.
	if len(n.states) > 3 {
		var oldest trainer.Hash
		r := ^uint64(0)
		for k, s := range n.states {
			if s.Round < r {
				oldest, r = k, s.Round
			}
		}
		delete(n.states, oldest)
	}
	if st.Round != n.round {
		n.oldRaws, n.raws, n.round = n.raws, map[trainer.Hash][]byte{}, st.Round
	}
}

func (n *node) decided(res trainer.RoundResult) {
	n.hashes[res.Round] = res.Result
	n.recordDecision(res)
	stats := n.tr.Stats()
	rep := RoundReport{Peer: n.tr.ID().String(), Round: res.Round, Hash: hex.EncodeToString(res.Result[:]), Updates: len(res.Updates),
		Votes: res.Votes, Loss: res.Loss, Peers: stats.Peers + 1, Published: stats.Published, WireIn: stats.WireIn, WireOut: stats.WireOut,
		Seconds: time.Since(n.start).Seconds(), Restored: len(res.Updates) == 0}
	last := n.spec.Run.Rounds > 0 && res.Round+1 >= uint64(n.spec.Run.Rounds)
	if (res.Round+1)%uint64(n.cfg.EvalEvery) == 0 || last {
		if ev, err := trainer.Evaluate(n.model, n.eng.Theta(), n.cfg.Data.Test, 1000); err == nil {
			rep.Accuracy, rep.TestLoss = ev.Accuracy, ev.Loss
		}
	}
	if err := n.saveCheckpoint(); err != nil {
		n.log.Warn("checkpoint", "err", err)
	}
	if n.cfg.JSONLines {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(n.cfg.Out, string(b))
		return
	}
	acc := ""
	if rep.Accuracy > 0 {
		acc = fmt.Sprintf("  test acc %.4f", rep.Accuracy)
	}
	fmt.Fprintf(n.cfg.Out, "round %3d  loss %.4f%s  updates %d  peers %d  sent %s  in %s  hash %s\n",
		res.Round, res.Loss, acc, rep.Updates, rep.Peers, human(stats.Published), human(uint64(stats.WireIn)), res.Result.Short())
}

func human(b uint64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(b)/(1<<10))
	default:
		return fmt.Sprintf("%d B", b)
	}
}

func (n *node) summary() *Summary {
	s := &Summary{Peer: n.tr.ID().String(), RunID: n.spec.RunID().String(), Rounds: n.eng.Round(), Stats: n.tr.Stats(),
		Behave: n.cfg.Behave, Excluded: n.excluded, TrainSeconds: n.trainSeconds, Witnessed: n.witnessed}
	n.mu.RLock()
	s.Challenges = n.challenges
	n.mu.RUnlock()
	if s.Excluded == nil {
		s.Excluded = []Exclusion{}
	}
	if n.book != nil {
		n.closeBook()
		n.book = nil
		s.Ledger, s.TreeHead = filepath.Join(n.cfg.OutDir, LedgerFile), n.lastHead
	}
	h := n.eng.Hash()
	s.FinalHash = hex.EncodeToString(h[:])
	for r := uint64(0); r < n.eng.Round(); r++ {
		if x, ok := n.hashes[r]; ok {
			s.Hashes = append(s.Hashes, hex.EncodeToString(x[:]))
		} else {
			s.Hashes = append(s.Hashes, "")
		}
	}
	if ev, err := trainer.Evaluate(n.model, n.eng.Theta(), n.cfg.Data.Test, 1000); err == nil {
		s.TestAccuracy, s.TestLoss = ev.Accuracy, ev.Loss
	}
	return s
}

// ModelFile is the run's final model, written by every node at the end:
// safetensors with PyTorch's names and shapes (see trainer.TorchTensors).
const ModelFile = "model.safetensors"

func (n *node) exportModel() error {
	b := safetensors.Encode(trainer.TorchTensors(n.model, n.eng.Theta(), ""), trainer.ModelMetadata(n.model))
	p := filepath.Join(n.cfg.OutDir, ModelFile)
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return os.Rename(p+".tmp", p)
}

// The local checkpoint: the agreed state and the compression residual, so
// that a crashed node restarts where it was and then catches up.
const checkpointFile = "state.safetensors"

func (n *node) saveCheckpoint() error {
	st, _ := n.eng.Latest()
	meta := map[string]string{"run": n.spec.RunID().String(), "round": fmt.Sprint(st.Round), "model": n.model.String()}
	if len(st.Excluded) > 0 {
		ex := make([]string, len(st.Excluded))
		for i, p := range st.Excluded {
			ex[i] = string(p)
		}
		meta["excluded"] = strings.Join(ex, ",")
	}
	b := safetensors.Encode([]safetensors.Tensor{
		{Name: "theta", Shape: []int{len(st.Theta)}, Data: st.Theta},
		{Name: "momentum", Shape: []int{len(st.Momentum)}, Data: st.Momentum},
		{Name: "residual", Shape: []int{len(st.Theta)}, Data: n.eng.Residual()},
	}, meta)
	p := filepath.Join(n.cfg.OutDir, checkpointFile)
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

func (n *node) loadCheckpoint() (trainer.State, []float32, error) {
	f, err := safetensors.ReadFile(filepath.Join(n.cfg.OutDir, checkpointFile), 4<<30)
	if err != nil {
		return trainer.State{}, nil, err
	}
	if f.Metadata["run"] != n.spec.RunID().String() {
		return trainer.State{}, nil, fmt.Errorf("node: checkpoint is of run %s", f.Metadata["run"])
	}
	var round uint64
	if _, err := fmt.Sscan(f.Metadata["round"], &round); err != nil {
		return trainer.State{}, nil, fmt.Errorf("node: checkpoint round: %w", err)
	}
	th, ok1 := f.Get("theta")
	mo, ok2 := f.Get("momentum")
	re, ok3 := f.Get("residual")
	d := n.model.NumParams()
	if !ok1 || !ok2 || !ok3 || len(th.Data) != d || len(mo.Data) != d || len(re.Data) != d {
		return trainer.State{}, nil, fmt.Errorf("node: checkpoint does not fit %s", n.model)
	}
	st := trainer.State{Round: round, Theta: th.Data, Momentum: mo.Data}
	if ex := f.Metadata["excluded"]; ex != "" {
		for _, p := range strings.Split(ex, ",") {
			st.Excluded = append(st.Excluded, trainer.PeerID(p))
		}
		if !slices.IsSorted(st.Excluded) {
			return trainer.State{}, nil, fmt.Errorf("node: checkpoint's excluded peers are not sorted")
		}
	}
	return st, re.Data, nil
}
