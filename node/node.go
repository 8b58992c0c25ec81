// Package node runs a vtrain peer: it drives the round protocol
// (consensus.Engine) with a gossip transport, local training, fetches,
// spot-checks and checkpoints, keeps the node's ledger, and reports every
// round. The engine decides; this package only moves its inputs and
// outputs.
package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/history"
	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/audit"
	"github.com/vtrain/vtrain/verify/ledger"
	"github.com/vtrain/vtrain/verify/zk"
)

// Config configures a node.
type Config struct {
	Spec      *runspec.Spec // the run to start; nil to join. Without founders, this node is the one.
	Join      string        // join address (a peer's full multiaddr)
	RunID     runspec.ID    // when joining: the expected run (zero: accept the peer's)
	Listen    []string      // listen multiaddrs
	Data      *data.Set     // the peer's local data
	OutDir    string        // identity key, checkpoint, ledger
	Out       io.Writer     // a line per round (JSON with JSONLines)
	JSONLines bool
	EvalEvery int // evaluate on the test set every N rounds (0: 5); always at the end
	// Linger is how long a node keeps serving peers after the run's last
	// round at least; it stays on while members of the run have not
	// finished (their signed ledger heads say so), for LingerMax at most
	// (0: the run's stall time, rounds.timeout + 8 × rounds.commit_timeout:
	// long enough for a member that missed the last commits to notice and
	// ask twice). A member that lags at the end is then served by the
	// peers that finished, not left waiting for peers that have gone.
	Linger    time.Duration
	LingerMax time.Duration
	// JoinPatience is how long a joiner keeps asking the peer at Join for
	// the run's spec while the failure may pass (nothing listens there
	// yet, the connection broke): 0 asks once.
	JoinPatience time.Duration
	Logger       *slog.Logger
	Tick         time.Duration // engine clock resolution (default 50ms)
	Device       engine.Engine // train on this device (a GPU); nil: the CPU graph
	Behave       string        // "" or "honest"; else a misbehaviour (see Behaviours), for demos and tests
	// ZK holds the run's zk keys when it has private peers
	// (runspec.Privacy): the verifying key for every node, and the
	// proving key too for a private peer.
	ZK *zk.Keys
	// ZKDir is the keys directory to load them from when ZK is nil: the
	// whole keys on a private peer, the verifying key on the others.
	ZKDir string
	// MinPeers holds round 0 until this many peers of the run (this node
	// included) are connected, saying who is there; 0 or 1 starts at once.
	MinPeers int
	// OnRound, if set, is called with every decided round's report and the
	// run's number of rounds (0: open-ended), from Run's goroutine: it
	// must not block.
	OnRound  func(r RoundReport, rounds int)
	Observer Observer // told what the node does (metrics, a dashboard); nil: none
}

// RoundReport is one line of a node's output: a decided round.
type RoundReport struct {
	Peer    string `json:"peer"`
	Round   uint64 `json:"round"`
	Hash    string `json:"hash"`
	Updates int    `json:"updates"`
	Signers int    `json:"signers"` // precommits in the round's certificate
	Voters  int    `json:"voters"`
	Members int    `json:"members"`
	// Loss is the inner loss: the mean loss of the inner steps of the
	// updates the round aggregated (on their training batches, before
	// aggregation), not the agreed model's.
	Loss     float32 `json:"inner_loss"`
	Accuracy float64 `json:"test_accuracy,omitempty"` // = *AgreedAccuracy where evaluated
	TestLoss float64 `json:"test_loss,omitempty"`     // = *AgreedLoss where evaluated
	// The agreed model (the round's certified state) on the test set, in
	// the rounds the node evaluates it (Config.EvalEvery, and the last).
	AgreedAccuracy *float64 `json:"agreed_accuracy,omitempty"`
	AgreedLoss     *float64 `json:"agreed_loss,omitempty"`
	Peers          int      `json:"peers"` // connected peers of the run, this node not counted (as Summary.Stats.Peers)
	Published      uint64   `json:"published_bytes"`
	WireIn         int64    `json:"wire_in_bytes"`
	WireOut        int64    `json:"wire_out_bytes"`
	// Traffic is WireIn and WireOut by category, since the node started.
	Traffic  gossip.Traffic `json:"traffic"`
	Seconds  float64        `json:"seconds"`
	Restored bool           `json:"restored,omitempty"`
	// Authors are the peers whose updates the round aggregated.
	Authors []string `json:"authors,omitempty"`
	// Reachability is how this node was reachable when the round was
	// decided (public or behind NAT, relays, direct and relayed peers).
	Reachability *gossip.Reachability `json:"reachability,omitempty"`
	// Late are the stragglers: members the round expected (voters, and
	// those aggregated the round before) whose update it did not aggregate,
	// because it came after the round's agreed deadline or not at all.
	// DeadlineSeconds is that deadline, after the round's start (it adapts
	// to when the voters' updates arrive: consensus.Engine.Deadline).
	Late            []string `json:"late,omitempty"`
	DeadlineSeconds float64  `json:"deadline_s,omitempty"`
	// LateIn are the members whose late update (of the round before,
	// which did not aggregate one of theirs) the round aggregated
	// (consensus/late.go): their straggling work, credited a round late.
	LateIn []string `json:"late_in,omitempty"`
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
	Member       bool                   `json:"member"`        // a member at the end
	Excluded     []Exclusion            `json:"excluded"`      // peers the run excluded, as this node saw it
	Admitted     []string               `json:"admitted"`      // peers the run admitted after genesis
	Challenges   ChallengeStats         `json:"challenges"`    // spot-checks this node ran and answered
	TrainSeconds float64                `json:"train_seconds"` // spent in inner steps
	// The updates it published, and their compressed payloads' bytes
	// (without envelope, commitments and signature).
	UpdatesSent  int    `json:"updates_sent"`
	PayloadBytes uint64 `json:"payload_bytes"`
	// Witnessed holds the latest tree head each other peer gossiped of its
	// own ledger: an auditor checks that peer's ledger against it
	// (vtrain audit --witness).
	Witnessed map[string]*ledger.SignedTreeHead `json:"witnessed_heads,omitempty"`
	// Restarts counts the earlier processes of this node in the run whose
	// counters the ones above include (they go on across restarts).
	Restarts int `json:"restarts,omitempty"`
	// Reachability is how this node was reachable at the end.
	Reachability gossip.Reachability `json:"reachability"`
}

// ErrUsage is wrapped by configuration errors.
var ErrUsage = errors.New("node: bad configuration")

// node is the driver's state; the engine is touched only by Run's
// goroutine.
type node struct {
	cfg         Config
	traffic     gossip.Traffic // as of the last decision, for the per-round line
	lastReach   string         // the reachability line last printed (nat.go)
	relayJoins  []string       // relay join addresses printed
	stallWhy    string         // why no decision came, as last said (nat.go); "" when deciding
	stalledAt   time.Time      // since when
	redialing   atomic.Bool    // a redial of lost voters is under way (nat.go)
	payload     uint64         // compressed payload bytes of the updates it published (n.mu)
	updatesSent int
	behave      string // the misbehaviour (--behave), "" if honest
	behaveFrom  uint64 // from this round on
	spec        runspec.Spec
	model       models.Spec
	eng         *consensus.Engine
	tr          *gossip.Transport
	key         crypto.PrivKey
	self        consensus.PeerID
	enc         *trainer.Encoder
	log         *slog.Logger
	start       time.Time
	hashes      map[uint64]consensus.Hash

	judging chan judgement // messages the transport's validator hands the loop

	mu      sync.RWMutex // guards what sync requests read
	canon   []byte
	states  map[consensus.Hash]consensus.State
	proof   *consensus.Proof          // the engine's chain, refreshed every round
	raws    map[consensus.Hash][]byte // signed updates of this and the last round
	oldRaws map[consensus.Hash][]byte
	round   uint64
	bases   map[uint64][]float32 // the agreed θ of recent rounds, for challenges

	book     *book // the ledger; touched only by Run's goroutine
	lastHead *ledger.SignedTreeHead

	evidence    map[consensus.Hash]*evidence   // behind own updates (guarded by mu)
	blobs       map[consensus.Hash]blob        // kept for referees as a challenger (guarded by mu)
	openings    map[consensus.Hash]opened      // by update ID, kept for referees as a challenger (guarded by mu)
	drawn       map[consensus.Hash]*drawnCheck // own updates challenged, by ID (guarded by mu)
	decidedUpTo uint64                         // the first round not decided (guarded by mu)
	resumedAt   uint64                         // the round this process resumed at from a checkpoint (0: it did not; written under mu)
	restarted   bool                           // it resumed from a checkpoint (under mu)
	started     bool                           // its engine holds the state it starts from (under mu): what it answers for is known
	trainedFrom uint64                         // the round of this process's first own update (under mu; with trainedAny)
	trainedAny  bool
	// residuals are this node's recent residuals by root (guarded by mu):
	// what continueResidual picks from.
	residuals     map[consensus.Hash][]float32
	residualOrder []consensus.Hash
	challenges    ChallengeStats // guarded by mu
	excluded      []Exclusion
	gone          sync.Map // peer ID → true: excluded, as the checks under way see it (private.go)
	admitted      []string
	trainSeconds  float64
	witnessed     map[string]*ledger.SignedTreeHead
	finished      map[string]bool         // members whose signed heads say they decided the last round
	training      *consensus.TrainRequest // the training under way (loop only)
	queued        *consensus.TrainRequest // to train for once it ends (loop only; see handle)
	contributed   map[string]uint64       // each peer's last round it took part in, plus one: an update of its aggregated (on time or late) or accepted here, or its admission
	proposed      uint64                  // the last round a proposal of which this node has seen, plus one (behaviour "tardy")
	heardAt       map[string]time.Time    // when each member's last signed update came (unfinished)
	headRaw       []byte                  // this node's last gossiped tree head, to gossip again while lingering
	headSentAt    time.Time
	lingerSaid    bool
	hist          *history.Writer // metrics.jsonl
	prev          *Summary        // the counters of this node's earlier process in the run
	obs           *observing      // nil without an Observer
	priv          *private        // runs with private peers (private.go); nil otherwise
	// checking counts the checks under way: challenges, referees and, on
	// a private peer, proofs being made. In runs with private peers a
	// node that finished the run says so (its last head) only once they
	// are done, so that the others stay to verify the last proofs.
	checking     atomic.Int64
	finalPending bool      // the last round's head is held back until checking is 0 (loop only)
	checkedAt    time.Time // when checking last came to 0 with the head held back (loop only)
	lastFinished time.Time // when the last member's finishing head came (loop only)
}

// Spec implements gossip.Server.
func (n *node) Spec() []byte { n.mu.RLock(); defer n.mu.RUnlock(); return n.canon }

// State implements gossip.Server.
func (n *node) State(h consensus.Hash) (consensus.State, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	st, ok := n.states[h]
	return st, ok
}

// Proof implements gossip.Server.
func (n *node) Proof(round uint64) *consensus.Proof {
	n.mu.RLock()
	defer n.mu.RUnlock()
	p := &consensus.Proof{}
	if n.proof != nil {
		for _, l := range n.proof.Links {
			if l.Commit.Value.Round >= round {
				p.Links = append(p.Links, l)
			}
		}
	}
	return p
}

// Updates implements gossip.Server.
func (n *node) Updates(ids []consensus.Hash) [][]byte {
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

// IdentityFile is a node's key in its output directory.
const IdentityFile = "identity.key"

// LoadIdentity returns the peer identity kept in dir, creating it on first
// use: a node keeps its identity (and so its membership) across restarts.
func LoadIdentity(dir string) (crypto.PrivKey, peer.ID, error) {
	p := filepath.Join(dir, IdentityFile)
	if b, err := os.ReadFile(p); err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, "", fmt.Errorf("node: %s: %w", p, err)
		}
		id, err := peer.IDFromPrivateKey(k)
		return k, id, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("node: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, "", fmt.Errorf("node: %w", err)
	}
	id, err := peer.IDFromPrivateKey(k)
	return k, id, err
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
	if cfg.Spec != nil && cfg.Join != "" {
		return nil, fmt.Errorf("%w: give a spec to start a run or a join address, not both", ErrUsage)
	}
	behave, behaveFrom, err := ParseBehave(cfg.Behave)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if cfg.OutDir == "" || cfg.Data == nil {
		return nil, fmt.Errorf("%w: an output directory and data are required", ErrUsage)
	}
	key, self, err := LoadIdentity(cfg.OutDir)
	if err != nil {
		return nil, err
	}
	if slices.Contains(Outsiders, behave) {
		return nil, runAttack(ctx, cfg, key)
	}
	n := &node{cfg: cfg, behave: behave, behaveFrom: behaveFrom, blobs: map[consensus.Hash]blob{}, openings: map[consensus.Hash]opened{}, drawn: map[consensus.Hash]*drawnCheck{}, residuals: map[consensus.Hash][]float32{}, key: key, self: consensus.PeerID(self.String()), log: cfg.Logger, start: time.Now(), hashes: map[uint64]consensus.Hash{},
		states: map[consensus.Hash]consensus.State{}, raws: map[consensus.Hash][]byte{}, evidence: map[consensus.Hash]*evidence{},
		witnessed: map[string]*ledger.SignedTreeHead{}, finished: map[string]bool{}, contributed: map[string]uint64{}, heardAt: map[string]time.Time{}, bases: map[uint64][]float32{}, judging: make(chan judgement)}
	n.obs = newObserving(cfg.Observer)
	var join gossip.JoinInfo
	switch {
	case cfg.Join != "":
		if join, err = fetchSpec(ctx, cfg); err != nil {
			return nil, err
		}
		n.spec = join.Spec
	case cfg.Spec == nil:
		// A restart with the same output directory: the run and the peers
		// it knew are there.
		spec, peers, err := SavedRun(cfg.OutDir)
		if errors.Is(err, ErrNoRun) {
			return nil, fmt.Errorf("%w: give a spec to start a run or a join address (%v)", ErrUsage, err)
		}
		if err != nil {
			return nil, err
		}
		if cfg.RunID != (runspec.ID{}) && cfg.RunID != spec.RunID() {
			return nil, fmt.Errorf("%w: %s holds run %s, not %s", ErrUsage, cfg.OutDir, spec.RunID(), cfg.RunID)
		}
		n.spec, join.Peers = spec, peers
	default:
		n.spec = *cfg.Spec
		if len(n.spec.Members.Genesis) == 0 {
			// A template without founders: this node founds the run alone
			// (its identity becomes part of the run ID).
			n.spec = n.spec.WithFounders(self.String())
		}
		if err := n.spec.Validate(); err != nil {
			return nil, err
		}
	}
	if n.model, err = n.spec.ModelSpec(); err != nil {
		return nil, err
	}
	for _, f := range n.spec.Members.Genesis {
		if _, err := peer.Decode(f); err != nil {
			return nil, fmt.Errorf("%w: members.genesis: %q is not a peer ID", ErrUsage, f)
		}
	}
	if err := n.setupPrivate(); err != nil {
		return nil, err
	}
	n.canon = n.spec.Canonical()
	if n.enc, err = trainer.NewEncoder(n.spec); err != nil {
		return nil, err
	}
	app, err := trainer.NewApp(n.spec)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n.tr, err = gossip.New(ctx, gossip.Config{Key: key, Listen: cfg.Listen, Spec: n.spec, Logger: cfg.Logger, Judge: n.judge}, n); err != nil {
		return nil, err
	}
	defer n.tr.Close()

	// Where to start: a local checkpoint of this run (a restart, trusted:
	// it is this node's own disk), or genesis. A joiner starts at genesis
	// too and catches up by checking certified decisions.
	var peers []consensus.PeerID
	for _, a := range append([]string{cfg.Join}, join.Peers...) {
		if a == "" {
			continue
		}
		if id, err := n.tr.Connect(ctx, a); err != nil {
			n.log.Debug("connect", "addr", a, "err", err)
		} else if id != self {
			peers = append(peers, consensus.PeerID(id.String()))
		}
	}
	st, chain, err := n.loadCheckpoint()
	switch {
	case err == nil:
		n.log.Info("resuming from local checkpoint", "round", st.Round)
		n.mu.Lock() // the sync streams serving evidence already read it
		n.resumedAt, n.restarted = st.Round, true
		n.mu.Unlock()
	case errors.Is(err, os.ErrNotExist):
		if st, err = consensus.Genesis(n.spec); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	ecfg := consensus.Config{Spec: n.spec, Self: n.self, Sign: gossip.Signer(key), Verify: gossip.VerifySig, App: app}
	if n.priv != nil {
		ecfg.Proofs = n.priv.proofs
	}
	if n.eng, err = consensus.NewEngine(ecfg, st, chain); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.eng.Members().IsExcluded(n.self) {
		return nil, fmt.Errorf("%w: the state this node resumes from (round %d) excludes it", ErrExcluded, st.Round)
	}
	if err := n.openBook(); err != nil {
		return nil, err
	}
	defer n.closeBook()
	n.recordState(st) // where this node starts, unless genesis
	n.publishState()
	n.mu.Lock()
	n.started = true
	n.mu.Unlock()
	if len(peers) > 0 {
		n.eng.StartCatchUp(peers)
	}
	role := "observer (asking to join)"
	if n.eng.Members().Has(n.self) {
		role = "member"
		if slices.Contains(n.eng.Voters(), n.self) {
			role = "member with a vote"
		}
	}
	if n.hist, err = history.Create(cfg.OutDir); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	defer n.hist.Close()
	if n.resumedAt > 0 || st.Round > 0 {
		n.prev = n.carried()
	}
	n.saveRun()
	run := n.spec.RunID().String()
	kind, fields := EventStarted, []any{"peer", self.String(), "run_id", run, "model", n.model.String(), "round", st.Round, "role", role, "out", cfg.OutDir}
	if cfg.Join != "" {
		kind, fields = EventJoined, append(fields, "addr", cfg.Join)
	}
	n.event(kind, fields, "vtrain node %s: run %s (%s), round %d, %s; output in %s", self, run, n.model, st.Round, role, cfg.OutDir)
	for i, a := range n.tr.Addrs() {
		cmd := fmt.Sprintf("vtrain node --join %s --run %s", a, run)
		n.event(EventListening, []any{"addr", a, "join", cmd}, "join: %s", a)
		if i == 0 && !cfg.JSONLines {
			n.event(EventListening, nil, "  to join: %s", cmd)
		}
	}
	n.observeStart()
	sum, err := n.loop(ctx)
	if sum != nil {
		addSummary(sum, n.prev)
		if werr := n.writeSummary(sum); werr != nil && err == nil {
			err = fmt.Errorf("node: %w", werr)
		}
	}
	return sum, err
}

type trainResult struct {
	req     *consensus.TrainRequest // the request it answers
	work    trainer.Work
	private *privateWork // a private peer's round, instead of work and ev
	ev      *evidence
	seconds float64
	err     error
}

type fetched struct {
	msgs  []*gossip.Msg
	proof *consensus.Proof
	state *consensus.State
	err   error
	// seconds is how long fetching the state took.
	seconds float64
}

func (n *node) loop(ctx context.Context) (*Summary, error) {
	ticker := time.NewTicker(n.cfg.Tick)
	defer ticker.Stop()
	trained := make(chan trainResult, 1)
	fetches := make(chan fetched, 16)
	verdicts := make(chan verdictDone, 64)
	rulings := make(chan ruled, 64)
	discovered := make(chan struct{}, 1)
	discovering := false
	last := time.Now()
	lastDecided, lastReport := last, last
	// A node that cannot make progress says why, once per deadline: the
	// round's timeouts, at least stallReport.
	deadline := max(stallReport, n.spec.Rounds.Timeout.Duration+n.spec.Rounds.CommitTimeout.Duration)
	var shown string
	gated := n.waitPeers(&shown)
	var doneAt time.Time
	var trainCancel context.CancelFunc
	var current *consensus.TrainRequest
	var held []trainResult // finished updates the "late" and "tardy" behaviours hold back, oldest first
	stop := func() {
		if trainCancel != nil {
			trainCancel()
		}
	}
	discover := func() {
		if k := n.tr.Discover(ctx); k > 0 {
			n.log.Info("connected to more peers", "new", k)
		}
		discovered <- struct{}{}
	}
	for {
		select {
		case <-ctx.Done():
			stop()
			return n.summary(), ctx.Err()
		case j := <-n.judging:
			j.reply <- n.step(j.m)
		case m, ok := <-n.tr.Messages():
			if !ok {
				stop()
				return n.summary(), ctx.Err()
			}
			n.stepHead(m)
		case r := <-n.tr.Rejections():
			n.recordRejection(r.From.String(), r.Round, "gossip: "+r.Reason)
		case <-ticker.C:
			now := time.Now()
			if gated {
				// Round 0 waits for --min-peers; its clock has not started.
				if gated = n.waitPeers(&shown); !gated {
					last, lastDecided, lastReport = now, now, now
				}
				continue
			}
			n.eng.Tick(now.Sub(last))
			last = now
			if !n.eng.Done() && now.Sub(lastDecided) >= deadline && now.Sub(lastReport) >= deadline {
				lastReport = now
				n.stalled(now.Sub(lastDecided))
				n.log.Debug("no decision for a while", "since", now.Sub(lastDecided).Round(time.Second), "status", n.eng.Status())
				n.explainStall(ctx, now.Sub(lastDecided))
				if !discovering && n.missesMembers() {
					// A round that does not decide for want of a member
					// this node never met (founders that joined through
					// the first at the same moment) must not wait for a
					// decision to look for it.
					discovering = true
					go discover()
				}
			}
		case r := <-trained:
			if n.training == r.req {
				n.training = nil
			}
			if q := n.queued; q != nil && n.training == nil {
				// What handle queued behind the training that just ended
				// (a round the run went on to meanwhile), if it is still
				// the round to train for.
				n.queued = nil
				if q == current {
					n.startTraining(ctx, q, trained, &trainCancel)
				}
			}
			if r.req != current {
				// Superseded: the round moved on. Finished all the same,
				// it may still count as a late update in the next round
				// (consensus/late.go); the engine takes it or drops it.
				if r.err == nil && r.req.Round+1 == n.eng.Round() {
					if err := n.submit(r); err != nil {
						n.log.Warn("late update", "round", r.req.Round, "err", err)
					}
				}
				break
			}
			if r.err != nil {
				if errors.Is(r.err, context.Canceled) {
					break
				}
				stop()
				return n.summary(), r.err
			}
			n.trainSeconds += r.seconds
			n.note(Note{Kind: NoteTrained, Round: r.req.Round, Steps: n.spec.Inner.Steps, Seconds: r.seconds})
			if a := n.acts(r.req.Round); a == "late" || a == "tardy" {
				held = append(held, r) // handed over once the round is decided, or the next one proposed (below)
				break
			}
			if err := n.submit(r); err != nil {
				stop()
				return n.summary(), err
			}
		case <-discovered:
			discovering = false
		case d := <-verdicts:
			n.finishChallenge(d)
		case d := <-rulings:
			n.finishReferee(d)
		case f := <-fetches:
			if f.err != nil {
				n.log.Debug("fetch failed", "err", f.err)
			}
			for _, m := range f.msgs {
				n.step(m)
			}
			if f.proof != nil {
				if err := n.eng.StepProof(f.proof); err != nil {
					n.log.Info("proof", "err", err)
				}
			}
			if f.state != nil {
				if err := n.eng.Restore(*f.state); err != nil {
					n.log.Info("restore", "err", err)
				} else {
					n.note(Note{Kind: NoteStateSync, Round: f.state.Round, Seconds: f.seconds})
				}
			}
		}
		if gated {
			continue // what peers sent waits in the engine until round 0 starts
		}
		rd := n.eng.Ready()
		if rd.Train != nil {
			current = rd.Train
		}
		if len(rd.Decided) > 0 {
			lastDecided = time.Now()
		}
		if err := n.handle(ctx, rd, trained, fetches, &trainCancel); err != nil {
			stop()
			return n.summary(), err
		}
		for len(held) > 0 && n.handOver(held[0].req.Round) {
			if err := n.submit(held[0]); err != nil {
				n.log.Warn("late update", "round", held[0].req.Round, "err", err)
			}
			held = held[1:]
		}
		if len(rd.Decided) > 0 && !discovering && n.missesMembers() {
			// Meet the peers this node only knows through others, in the
			// background: challenges and fetches need direct streams.
			discovering = true
			go discover()
		}
		for _, req := range rd.Referee {
			n.checking.Add(1)
			go n.referee(ctx, req, rulings)
		}
		for _, res := range rd.Decided {
			n.noteDraws(res)
			n.startProofs(res)
			n.startChallenges(ctx, res, verdicts)
			n.accuseAny(res)
			if err := n.noteExclusions(res); err != nil {
				stop()
				return n.summary(), err
			}
		}
		if n.eng.Done() {
			if doneAt.IsZero() {
				doneAt = time.Now()
			}
			if n.lingerOver(ctx, time.Since(doneAt)) {
				return n.summary(), n.exportModel()
			}
		}
	}
}

// fetchSpec asks the peer at cfg.Join for the run's spec, as patiently as
// cfg.JoinPatience says.
func fetchSpec(ctx context.Context, cfg Config) (gossip.JoinInfo, error) {
	return gossip.FetchSpecPatiently(ctx, cfg.Join, cfg.RunID, cfg.JoinPatience, func(attempt int, err error, pause time.Duration) {
		cfg.Logger.Warn("join: could not fetch the run's spec; asking again", "attempt", attempt, "in", pause, "err", err)
	})
}

// startTraining trains for req in the background (trained gets the
// result), cancelling the training under way, if any.
func (n *node) startTraining(ctx context.Context, req *consensus.TrainRequest, trained chan trainResult, trainCancel *context.CancelFunc) {
	if *trainCancel != nil {
		(*trainCancel)()
	}
	tctx, cancel := context.WithCancel(ctx)
	*trainCancel = cancel
	n.training, n.queued = req, nil
	go func() {
		r := n.train(tctx, req)
		r.req = req
		trained <- r
	}()
}

// missesMembers reports whether some member of the current round is not
// directly connected to this node: then it asks its peers for theirs
// (Discover). Connected to every member, it asks no one: each round's
// question cost as much as a vote.
func (n *node) missesMembers() bool {
	nw := n.tr.Host().Network()
	for _, m := range n.eng.Members().List {
		if m.ID == n.self {
			continue
		}
		id, err := peer.Decode(string(m.ID))
		if err != nil || nw.Connectedness(id) != network.Connected {
			return true
		}
	}
	return false
}

// submit turns finished training into this node's update and hands it to
// the engine.
func (n *node) submit(r trainResult) error {
	if r.private != nil {
		return n.submitPrivate(r)
	}
	n.continueResidual(r.req.Round)
	if r.ev != nil {
		r.ev.residual = slices.Clone(n.enc.Residual())
	}
	n.mu.Lock()
	if !n.trainedAny {
		n.trainedAny, n.trainedFrom = true, r.req.Round
	}
	n.mu.Unlock()
	u, err := n.enc.Update(r.req, r.work)
	if err != nil {
		return err
	}
	if r.ev != nil {
		r.ev.kept = slices.Clone(n.enc.Residual())
		n.noteResidual(r.ev.residual)
		n.noteResidual(r.ev.kept)
	}
	u.From = n.self
	n.tamper(u)
	if err := n.eng.Trained(u); err != nil {
		if n.behave == "" {
			return err
		}
		n.log.Warn("own misbehaving update refused by own engine", "err", err)
		return nil
	}
	if r.ev != nil {
		r.ev.u = u
		n.keepEvidence(u.ID(n.eng.RunID()), r.ev, r.req.Theta)
	}
	return nil
}

// stepHead keeps a peer's gossiped tree head as a witness, and notes what
// it says of its keeper's progress: the rounds it has decided, and whether
// it has finished the run (lingerOver).
func (n *node) stepHead(m *gossip.Msg) {
	h := m.Head
	if h == nil {
		return
	}
	if w := n.witnessed[h.Signer]; (w == nil || h.Size > w.Size) && len(n.witnessed) < 4096 {
		n.witnessed[h.Signer] = h
	}
	p := consensus.PeerID(h.Signer)
	if !n.eng.Members().Has(p) {
		return // an outsider's head: kept as a witness (bounded), nothing more
	}
	if rounds := uint64(n.spec.Run.Rounds); rounds > 0 && h.Round+1 >= rounds {
		if !n.finished[h.Signer] {
			n.lastFinished = time.Now()
		}
		n.finished[h.Signer] = true
	}
	n.eng.HeardDecided(p, h.Round)
}

// handOver reports whether the "late" or "tardy" behaviour hands over its
// update of round r now: once r is decided here, or once a proposal of
// round r+1 came (or the run went past it: the engine drops it).
func (n *node) handOver(r uint64) bool {
	if n.acts(r) == "tardy" {
		return n.proposed > r+1 || n.eng.Round() > r+1
	}
	return n.eng.Round() > r
}

// tookPart notes that member p took part in round r−1.
func (n *node) tookPart(p string, r uint64) {
	n.contributed[p] = max(n.contributed[p], r)
}

// heard notes that a signed update of member p's, of round r−1, came now.
// It counts as hearing from p now only if it tells of a round of p's this
// node had not heard of (nor aggregated): anyone can gossip an old update
// again, and an outsider replaying a long-gone member's update as the run
// ends would otherwise keep every node up for it for lingerMax.
func (n *node) heard(p string, r uint64) {
	if r > n.contributed[p] {
		n.heardAt[p] = time.Now()
	}
	n.tookPart(p, r)
}

// unfinished lists the members of the run's last state that have not said
// (in a signed ledger head) that they decided the last round, among those
// that took part lately: an update of theirs aggregated (on time or late)
// or their admission in the last lingerRounds rounds, or an update of
// theirs of one of those rounds that this node accepted even if no round
// took it (a member a little slower than the run: its updates come after
// each round it could count in, but it follows the run, and stranded at
// the end it could not finish). Rounds can be much shorter than such a
// member's lag (logistic regression on a fast machine: 50 ms), so an
// update of its that came within lingerMax counts as lately too: it fell
// a few rounds behind but follows the run. A member absent longer has
// gone or never got a message through (a forger's are all refused):
// waiting for it would only keep the others up for nothing. A member that
// sends updates only to keep the others up gains at most lingerMax of
// their time, as one that withholds its last head does.
func (n *node) unfinished() []string {
	var out []string
	end := n.eng.Round()
	for _, m := range n.eng.Members().List {
		id := string(m.ID)
		lately := n.contributed[id] > 0 && n.contributed[id]+lingerRounds >= end
		if at, ok := n.heardAt[id]; ok && time.Since(at) < n.lingerMax() {
			lately = true
		}
		if m.ID != n.self && !n.finished[id] && lately {
			out = append(out, id)
		}
	}
	return out
}

// settle is how long, in runs with private peers, a node that finished
// holds back its last head after its last check, and waits after the last
// member's: gossip does not keep the order of a verdict and the head
// published after it.
const settle = time.Second

// lingerRounds is how recently a member must have taken part for a node
// that finished to wait for it (unfinished).
const lingerRounds = 3

// lingerMax is the longest a finished node waits for the members that
// have not finished (Config.LingerMax).
func (n *node) lingerMax() time.Duration {
	d := n.cfg.LingerMax
	if d <= 0 {
		d = n.spec.Rounds.Timeout.Duration + 8*n.spec.Rounds.CommitTimeout.Duration
	}
	return max(d, n.cfg.Linger)
}

// lingerOver reports whether a node that has decided the run's last round
// waited after it long enough: Config.Linger at least, and until every
// member has finished or lingerMax has passed. Meanwhile it gossips its
// own last head again every commit timeout (gossip may lose one, and the
// others wait for it), and says once whom it waits for.
func (n *node) lingerOver(ctx context.Context, waited time.Duration) bool {
	if n.finalPending {
		// A run with private peers: the last proofs and their checks take
		// seconds after the last decision. This node says it finished
		// once its own are done, and the others wait for that.
		if k := n.checking.Load(); k > 0 && waited < n.lingerMax() {
			if !n.lingerSaid {
				n.lingerSaid = true
				n.event(EventLinger, []any{"checking", k, "max_s", n.lingerMax().Seconds()},
					"the run is over here: finishing %d checks of proofs under way, for %s at most", k, n.lingerMax())
			}
			n.checkedAt = time.Time{}
			return false
		}
		// The verdicts of the last checks go out first: the head says
		// this node has nothing more to say.
		if n.checkedAt.IsZero() {
			n.checkedAt = time.Now()
		}
		if time.Since(n.checkedAt) < settle && waited < n.lingerMax() {
			return false
		}
		n.finalPending = false
		n.lingerSaid = false
		if err := n.treeHead(n.eng.Round()-1, true); err != nil {
			n.log.Error("ledger tree head", "err", err)
		}
	}
	left := n.unfinished()
	if n.priv != nil && len(left) == 0 && time.Since(n.lastFinished) < settle && waited < n.lingerMax() {
		return false // the last member's last verdicts may come just after its head
	}
	switch {
	case len(left) == 0 && waited >= n.cfg.Linger:
		if n.lingerSaid {
			n.event(EventFinished, []any{"after_s", waited.Seconds()}, "every member has finished the run (%.1fs after this node)", waited.Seconds())
		}
		return true
	case len(left) == 0:
		return false
	case waited >= n.lingerMax():
		n.event(EventFinished, []any{"after_s", waited.Seconds(), "unfinished", left},
			"stopped waiting after %.1fs for %s that %s not finished the run: %s", waited.Seconds(), members(len(left)), have(len(left)), shortList(left))
		return true
	}
	if !n.lingerSaid {
		n.lingerSaid = true
		n.event(EventLinger, []any{"unfinished", left, "max_s", n.lingerMax().Seconds()},
			"the run is over here: serving %s that %s not finished (%s), for %s at most", members(len(left)), have(len(left)), shortList(left), n.lingerMax())
	}
	if n.headRaw != nil && time.Since(n.headSentAt) >= n.spec.Rounds.CommitTimeout.Duration {
		n.headSentAt = time.Now()
		if err := n.tr.Publish(ctx, "head", n.headRaw); err != nil {
			n.log.Debug("publish tree head", "err", err)
		}
	}
	return false
}

// members says "1 member" or "n members".
func members(n int) string {
	if n == 1 {
		return "1 member"
	}
	return fmt.Sprintf("%d members", n)
}

// have agrees with members.
func have(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}

// shortList names peers briefly: "12D3…abcdef, 12D3…123456".
func shortList(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = short(id)
	}
	return strings.Join(s, ", ")
}

func (n *node) handle(ctx context.Context, rd consensus.Ready, trained chan trainResult, fetches chan fetched, trainCancel *context.CancelFunc) error {
	for _, ev := range rd.Events {
		n.log.Info(ev)
	}
	for _, m := range rd.Publish {
		n.publish(ctx, m)
	}
	for _, res := range rd.Decided {
		n.decided(res)
	}
	if len(rd.Decided) > 0 {
		n.publishState()
	}
	if req := rd.Train; req != nil {
		if t := n.training; t != nil && t.Round+1 == req.Round {
			// The run decided the round this node still trains for: let
			// that training finish, as it can count as a late update in
			// this round (consensus/late.go), and train this round after
			// it. Cancelled, the work of a node that trains slower than
			// the run decides would never count at all.
			n.queued = req
		} else {
			n.startTraining(ctx, req, trained, trainCancel)
		}
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
	if f := rd.FetchProof; f != nil && len(f.From) > 0 {
		go func() {
			var out fetched
			for _, p := range f.From {
				pid, err := peer.Decode(string(p))
				if err != nil {
					continue
				}
				if out.proof, out.err = n.tr.FetchProof(ctx, pid, f.Round); out.err == nil {
					break
				}
			}
			fetches <- out
		}()
	}
	if s := rd.FetchState; s != nil && len(s.From) > 0 {
		have := n.heldStates()
		go func() {
			var out fetched
			t0 := time.Now()
			for _, p := range s.From {
				pid, err := peer.Decode(string(p))
				if err != nil {
					continue
				}
				st, err := n.tr.FetchState(ctx, pid, s.Hash, have...)
				if err == nil {
					out.state = &st
					break
				}
				out.err = err
			}
			out.seconds = time.Since(t0).Seconds()
			fetches <- out
		}()
	}
	return nil
}

// publish frames, records and gossips one of the engine's messages, with
// the misbehaviours a demo asks for.
func (n *node) publish(ctx context.Context, m consensus.Message) {
	for _, x := range n.twist(m) {
		raw, err := gossip.Encode(n.key, n.eng.RunID(), x)
		if err != nil {
			n.log.Error("encode", "err", err)
			continue
		}
		raw = n.spoil(x, raw)
		if x.Update != nil {
			n.observePublished(x.Update.Round)
			n.mu.Lock()
			n.raws[x.Update.ID(n.eng.RunID())] = raw
			n.payload += uint64(len(x.Update.Payload))
			n.updatesSent++
			n.mu.Unlock()
		}
		n.recordOwn(x, raw)
		if x.Verdict != nil && x.Verdict.Pass {
			if voters, ok := n.pushTo(); ok {
				go n.pushPass(ctx, raw, voters)
				continue
			}
		}
		if err := n.tr.Publish(ctx, x.Kind(), raw); err != nil {
			n.log.Debug("publish", "err", err)
		}
	}
}

// pushTo returns the voters to hand a pass verdict to directly, and
// whether that is cheaper than gossiping it. A pass changes nothing but
// credit: only the proposers, who are the voters, need it before the
// decided value that carries it reaches every member (and every ledger,
// recordDecision). A direct push costs about two gossiped copies (a
// stream each), so it pays when the other voters are fewer than half the
// other members: in a run of many members on few seats.
func (n *node) pushTo() ([]peer.ID, bool) {
	var out []peer.ID
	for _, v := range n.eng.Voters() {
		if v == n.self {
			continue
		}
		pid, err := peer.Decode(string(v))
		if err != nil {
			return nil, false
		}
		out = append(out, pid)
	}
	others := len(n.eng.Members().List) - 1
	return out, len(out) > 0 && 2*len(out) <= others
}

// pushPass hands a pass verdict to each voter; if any cannot be reached,
// it gossips it after all (a voter's judge that declines it is answered,
// and not retried).
func (n *node) pushPass(ctx context.Context, raw []byte, voters []peer.ID) {
	lost := false
	for _, p := range voters {
		if err := n.tr.Push(ctx, p, raw); err != nil && !errors.Is(err, gossip.ErrRefused) {
			n.log.Debug("push", "to", p.ShortString(), "err", err)
			lost = true
		}
	}
	if lost {
		if err := n.tr.Publish(ctx, "verdict", raw); err != nil {
			n.log.Debug("publish", "err", err)
		}
	}
}

// train runs the round's inner steps (see work), misbehaving if told to.
func (n *node) train(ctx context.Context, req *consensus.TrainRequest) trainResult {
	start := time.Now()
	n.mu.Lock()
	n.bases[req.Round] = req.Theta
	for r := range n.bases {
		if r+keptEvidence < req.Round {
			delete(n.bases, r)
		}
	}
	n.mu.Unlock()
	if n.priv != nil && n.priv.prover != nil {
		r := n.trainPrivate(ctx, req)
		return r
	}
	from := req
	if n.acts(req.Round) == "stale" {
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
	if m := n.acts(req.Round); m == "replay" || m == "ipm" {
		// Wait for the others' updates, to have one to copy (or negate).
		select {
		case <-time.After(time.Since(start) / 2):
		case <-ctx.Done():
		}
		if m == "ipm" {
			n.ipm(req.Round, w.Delta)
		}
	}
	return trainResult{work: w, ev: ev, seconds: time.Since(start).Seconds()}
}

// heldStates returns the agreed states this node holds, newest first: the
// bases a state it fetches may come as a delta against.
func (n *node) heldStates() []consensus.State {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]consensus.State, 0, len(n.states))
	for _, st := range n.states {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b consensus.State) int { return cmp.Compare(b.Round, a.Round) })
	return out
}

func (n *node) publishState() {
	st, h := n.eng.Latest()
	p := n.eng.ServeProof(0)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.states[h] = st
	n.proof = p
	// Keep the three newest states.
	if len(n.states) > 3 {
		var oldest consensus.Hash
		r := ^uint64(0)
		for k, s := range n.states {
			if s.Round < r {
				oldest, r = k, s.Round
			}
		}
		delete(n.states, oldest)
	}
	if st.Round != n.round {
		n.oldRaws, n.raws, n.round = n.raws, map[consensus.Hash][]byte{}, st.Round
	}
}

func (n *node) decided(res consensus.Decided) {
	n.decidingAgain(res.Round)
	for _, ps := range [][]consensus.PeerID{res.Peers, res.LateIn, res.Admitted} {
		for _, p := range ps {
			n.tookPart(string(p), res.Round+1)
		}
	}
	n.hashes[res.Round] = res.Value.Next
	n.recordDecision(res)
	for _, p := range res.Admitted {
		n.admitted = append(n.admitted, string(p))
		n.event(EventAdmitted, []any{"round", res.Round, "peer", string(p), "from_round", res.Round + 1}, "round %d: %s admitted from round %d on", res.Round, short(string(p)), res.Round+1)
	}
	for _, p := range res.Dropped {
		n.event(EventDropped, []any{"round", res.Round, "peer", string(p)}, "round %d: %s dropped: no update aggregated for %d rounds", res.Round, short(string(p)), n.spec.Members.Absent)
	}
	stats := n.tr.Stats()
	rep := RoundReport{Peer: n.tr.ID().String(), Round: res.Round, Hash: hex.EncodeToString(res.Value.Next[:]), Updates: len(res.Value.Updates),
		Signers: len(res.Cert.Sigs), Voters: len(n.eng.Voters()), Members: len(n.eng.Members().List), Loss: res.Loss,
		Peers: stats.Peers, Published: stats.Published, WireIn: stats.WireIn, WireOut: stats.WireOut, Traffic: stats.Traffic,
		Seconds: time.Since(n.start).Seconds(), Restored: res.Restored}
	for _, p := range res.Peers {
		rep.Authors = append(rep.Authors, string(p))
	}
	if !res.Restored {
		for _, p := range res.Late {
			rep.Late = append(rep.Late, string(p))
		}
		for _, p := range res.LateIn {
			rep.LateIn = append(rep.LateIn, string(p))
		}
		rep.DeadlineSeconds = res.Deadline.Seconds()
	}
	reach := n.tr.Reachability()
	rep.Reachability = &reach
	last := n.spec.Run.Rounds > 0 && res.Round+1 >= uint64(n.spec.Run.Rounds)
	if (res.Round+1)%uint64(n.cfg.EvalEvery) == 0 || last {
		if ev, err := trainer.Evaluate(n.model, n.eng.Theta(), n.cfg.Data.Test, 1000); err == nil {
			rep.Accuracy, rep.TestLoss = ev.Accuracy, ev.Loss
			rep.AgreedAccuracy, rep.AgreedLoss = &ev.Accuracy, &ev.Loss
		}
	}
	n.observeDecided(res, rep)
	if err := n.saveCheckpoint(); err != nil {
		n.log.Warn("checkpoint", "err", err)
	}
	defer n.noteReachability()
	n.saveRun()
	d := stats.Traffic.Sub(n.traffic)
	n.traffic = stats.Traffic
	n.history(rep, res, d)
	if n.cfg.OnRound != nil {
		n.cfg.OnRound(rep, n.spec.Run.Rounds)
	}
	if n.cfg.JSONLines {
		b, _ := json.Marshal(roundLine{T: time.Now().UTC().Format(time.RFC3339Nano), Event: EventRound, RoundReport: rep})
		fmt.Fprintln(n.cfg.Out, string(b))
		return
	}
	acc := ""
	if rep.AgreedAccuracy != nil {
		acc = fmt.Sprintf("  agreed model: test acc %.4f, test loss %.4f", *rep.AgreedAccuracy, *rep.AgreedLoss)
	}
	how := fmt.Sprintf("certified by %d of %d", rep.Signers, rep.Voters)
	if res.Restored {
		how = "adopted (certificate checked)"
	}
	late := ""
	if len(rep.Late) > 0 {
		names := make([]string, len(rep.Late))
		for i, p := range rep.Late {
			names[i] = short(p)
		}
		late = fmt.Sprintf("  late (deadline %.1fs): %s", rep.DeadlineSeconds, strings.Join(names, ", "))
	}
	if len(rep.LateIn) > 0 {
		names := make([]string, len(rep.LateIn))
		for i, p := range rep.LateIn {
			names[i] = short(p)
		}
		late += fmt.Sprintf("  aggregated late: %s", strings.Join(names, ", "))
	}
	fmt.Fprintf(n.cfg.Out, "round %3d  inner loss %.4f%s  updates %d  %s  peers %d  out %s (%s)  in %s  hash %s%s\n",
		res.Round, res.Loss, acc, rep.Updates, how, rep.Peers, human(d.TotalOut()), largest(d.Out, 2), human(d.TotalIn()), res.Value.Next.Short(), late)
}

// largest names the k largest categories of m with their bytes.
func largest(m map[string]uint64, k int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(m[b], m[a]) })
	var parts []string
	for _, c := range keys[:min(k, len(keys))] {
		if m[c] > 0 {
			parts = append(parts, c+" "+human(m[c]))
		}
	}
	return strings.Join(parts, ", ")
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
		Behave: n.cfg.Behave, Excluded: n.excluded, Admitted: n.admitted, TrainSeconds: n.trainSeconds, Witnessed: n.witnessed,
		Member: n.eng.Members().Has(n.self), Reachability: n.tr.Reachability()}
	n.mu.RLock()
	s.Challenges = n.challenges
	s.UpdatesSent, s.PayloadBytes = n.updatesSent, n.payload
	n.mu.RUnlock()
	if n.priv != nil {
		s.Challenges.ProofsVerified, s.Challenges.ProofsRefused = n.priv.proofs.Counts()
	}
	if s.Excluded == nil {
		s.Excluded = []Exclusion{}
	}
	if s.Admitted == nil {
		s.Admitted = []string{}
	}
	if n.book != nil {
		n.closeBook()
		n.book = nil
		s.Ledger, s.TreeHead = filepath.Join(n.cfg.OutDir, audit.LedgerFile), n.lastHead
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
	if n.obs != nil {
		n.obs.o.Stopped(*s)
	}
	return s
}

// stallReport is the least time a node waits for a decision before it says
// why none came (and again as long as it waits): the round's timeouts
// where they are longer.
const stallReport = 5 * time.Second

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

// continueResidual puts the encoder in the residual this node's update of
// round must carry in (Engine.CarryIn: the mark, what its last aggregated
// update kept, or zero before any; for a known straggler whose late
// update is pending, what that one kept): an update of its that the run
// did not aggregate, or a restart, leaves the encoder elsewhere, and an
// update that does not continue the mark is refused.
func (n *node) continueResidual(round uint64) {
	want := n.eng.CarryIn(round)
	if trainer.ResidualRoot(n.spec, n.enc.Residual()) == want {
		return
	}
	n.mu.RLock()
	r, ok := n.residuals[want]
	n.mu.RUnlock()
	if !ok && want == (consensus.Hash{}) {
		r, ok = make([]float32, len(n.enc.Residual())), true
	}
	if !ok {
		r, ok = n.rebuildResidual(want)
	}
	if !ok {
		n.log.Warn("the residual the run expects this node to continue is not held; its updates will be refused", "root", want.Short())
		return
	}
	if err := n.enc.SetResidual(r); err != nil {
		n.log.Error("residual", "err", err)
	}
}

// noteResidual keeps a residual this node encoded with or kept, by root,
// so that it can continue from it (the few newest).
func (n *node) noteResidual(v []float32) {
	h := trainer.ResidualRoot(n.spec, v)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.residuals[h] = v
	n.residualOrder = append(slices.DeleteFunc(n.residualOrder, func(x consensus.Hash) bool { return x == h }), h)
	for len(n.residualOrder) > 8 {
		delete(n.residuals, n.residualOrder[0])
		n.residualOrder = n.residualOrder[1:]
	}
}
