package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"

	"strings"

	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/ledger"
)

// Files of a node's ledger in its output directory.
const (
	LedgerFile = "ledger.vtl"
	BlobDir    = "blobs"
)

// StoreLimit is the largest payload a run's ledger stores: a signed
// message, or a challenge's evidence (three snapshots of up to three
// vectors and a residual).
func StoreLimit(spec runspec.Spec) int64 {
	m, _ := spec.ModelSpec()
	return max(int64(spec.Rounds.MaxMessage), int64(4*10*m.NumParams())+1<<20)
}

// book is the node's ledger: every message it acts on, every decision, and
// a signed tree head per decided round, synced at round boundaries.
type book struct {
	log   *ledger.Log
	store *ledger.Store
	seen  map[string]bool         // peers with a join entry
	ups   map[trainer.Hash]uint64 // updates logged recently, by round (each is logged once)
	// validator rejections logged, by peer and round
	refused map[string]int
	head    *ledger.SignedTreeHead
	dirty   bool // entries since the last tree head
}

// Decision is the data of a "decision" entry: what a round decided.
type Decision struct {
	Base    string   `json:"base"`
	Result  string   `json:"result"`
	Updates []string `json:"updates"`
	Peers   []string `json:"peers"`
	Votes   int      `json:"votes"`
	Samples uint64   `json:"samples"`
	// Excluded is every peer excluded from the next round on (part of
	// the state Result hashes).
	Excluded []string `json:"excluded,omitempty"`
}

// StateData is the data of a state entry: the adopted state's round and
// hash; its vectors are in the store (see EncodeState).
type StateData struct {
	Round uint64 `json:"round"`
	Hash  string `json:"hash"`
}

// EncodeState is an agreed state as a ledger payload: safetensors with
// theta and momentum, the round and the excluded peers in the metadata.
func EncodeState(st trainer.State) []byte {
	ex := make([]string, len(st.Excluded))
	for i, p := range st.Excluded {
		ex[i] = string(p)
	}
	return safetensors.Encode([]safetensors.Tensor{
		{Name: "momentum", Shape: []int{len(st.Momentum)}, Data: st.Momentum},
		{Name: "theta", Shape: []int{len(st.Theta)}, Data: st.Theta},
	}, map[string]string{"round": fmt.Sprint(st.Round), "excluded": strings.Join(ex, ",")})
}

// DecodeState reads what EncodeState wrote.
func DecodeState(b []byte) (trainer.State, error) {
	f, err := safetensors.Decode(b)
	if err != nil {
		return trainer.State{}, err
	}
	th, ok1 := f.Get("theta")
	mo, ok2 := f.Get("momentum")
	if !ok1 || !ok2 || len(th.Data) != len(mo.Data) {
		return trainer.State{}, fmt.Errorf("state payload without theta and momentum of one size")
	}
	st := trainer.State{Theta: th.Data, Momentum: mo.Data}
	if _, err := fmt.Sscan(f.Metadata["round"], &st.Round); err != nil {
		return trainer.State{}, fmt.Errorf("state payload round: %v", err)
	}
	if ex := f.Metadata["excluded"]; ex != "" {
		for _, p := range strings.Split(ex, ",") {
			st.Excluded = append(st.Excluded, trainer.PeerID(p))
		}
	}
	return st, nil
}

// recordState logs an agreed state adopted from a peer (a join, a restart
// from a checkpoint, a resync), so that an auditor can replay on from it.
func (n *node) recordState(st trainer.State) {
	if n.book == nil || st.Round == 0 {
		return
	}
	h, err := n.book.store.Put(EncodeState(st))
	if err != nil {
		n.log.Error("ledger store", "err", err)
		return
	}
	sh := st.Hash()
	data, _ := json.Marshal(StateData{Round: st.Round, Hash: hex.EncodeToString(sh[:])})
	n.record(ledger.Entry{Kind: ledger.KindState, Round: st.Round, Blob: h.String(), Data: data})
}

func (n *node) openBook() error {
	run := n.spec.RunID()
	l, rec, err := ledger.Open(filepath.Join(n.cfg.OutDir, LedgerFile), run)
	if err != nil {
		return fmt.Errorf("node: ledger: %w", err)
	}
	if rec != nil {
		n.log.Warn("ledger recovered after a crash", "recovery", rec.String())
		n.say("ledger: recovered after a crash: %s", rec)
	}
	st, err := ledger.OpenStore(filepath.Join(n.cfg.OutDir, BlobDir), StoreLimit(n.spec))
	if err != nil {
		l.Close()
		return fmt.Errorf("node: ledger store: %w", err)
	}
	n.book = &book{log: l, store: st, seen: map[string]bool{}, ups: map[trainer.Hash]uint64{}, refused: map[string]int{}}
	for i := range l.Size() { // a restart: who has joined already
		b, err := l.Entry(i)
		if err != nil {
			l.Close()
			return fmt.Errorf("node: ledger: %w", err)
		}
		if e, err := ledger.DecodeEntry(b); err == nil && e.Kind == ledger.KindJoin {
			n.book.seen[e.Peer] = true
		}
	}
	if l.Size() == 0 {
		n.record(ledger.Entry{Kind: ledger.KindGenesis, Peer: n.tr.ID().String(), Data: n.spec.Canonical()})
		return n.treeHead(0)
	}
	return nil
}

// record appends an entry; a ledger that cannot be written stops nothing
// else but is logged loudly.
func (n *node) record(e ledger.Entry) {
	if n.book == nil {
		return
	}
	if e.Peer != "" && e.Kind != ledger.KindGenesis && !n.book.seen[e.Peer] {
		n.book.seen[e.Peer] = true
		n.appendEntry(ledger.Entry{Kind: ledger.KindJoin, Round: e.Round, Peer: e.Peer})
	}
	n.appendEntry(e)
}

func (n *node) appendEntry(e ledger.Entry) {
	if _, err := n.book.log.Append(e.Encode()); err != nil {
		n.log.Error("ledger append", "err", err)
		return
	}
	n.book.dirty = true
}

// recordMsg logs a message the engine acted on, with its verdict.
func (n *node) recordMsg(m *gossip.Msg, d trainer.Decision) {
	if n.book == nil {
		return
	}
	if m.Update != nil && d.Verdict != trainer.Reject {
		// An update the engine keeps for later (it is early, or builds on
		// a base this node may yet adopt) is one it may act on: logged
		// once, as it arrived.
		if d.Verdict == trainer.Ignore && !d.Kept {
			return
		}
		id := m.Update.ID(n.spec.RunID())
		if _, ok := n.book.ups[id]; ok {
			return
		}
		n.book.ups[id] = m.Round
		for k, r := range n.book.ups {
			if r+4 < m.Round {
				delete(n.book.ups, k)
			}
		}
	} else if d.Verdict == trainer.Ignore {
		return
	}
	e := ledger.Entry{Round: m.Round, Peer: m.Sender.String()}
	switch {
	case d.Verdict == trainer.Reject:
		e.Kind, e.Reason = ledger.KindReject, d.Reason
	case m.Update != nil:
		h, err := n.book.store.Put(m.Raw)
		if err != nil {
			n.log.Error("ledger store", "err", err)
			return
		}
		e.Kind, e.Blob = ledger.KindUpdate, h.String()
	case m.Commit != nil:
		e.Kind, e.Wire = ledger.KindCommit, m.Raw
	case m.Verdict != nil:
		e.Kind, e.Wire = ledger.KindVerdict, m.Raw
	default:
		return // hellos are liveness, not contributions
	}
	n.record(e)
}

// maxRefusals bounds the validator's rejections logged per peer and round:
// a flood of garbage costs the flooder, not the ledger.
const maxRefusals = 8

// recordRejection logs a message the gossip validator refused, against the
// peer that delivered it.
func (n *node) recordRejection(r gossip.Rejection) {
	if n.book == nil {
		return
	}
	p := r.From.String()
	key := fmt.Sprint(p, "|", r.Round)
	if n.book.refused[key] >= maxRefusals {
		return
	}
	if len(n.book.refused) > 4096 {
		clear(n.book.refused)
	}
	n.book.refused[key]++
	n.record(ledger.Entry{Kind: ledger.KindReject, Round: r.Round, Peer: p, Reason: "gossip: " + strings.TrimPrefix(r.Reason, "gossip: ")})
}

// recordOwn logs the node's own published update or commit.
func (n *node) recordOwn(o trainer.Outbound, raw []byte) {
	if n.book == nil {
		return
	}
	self := n.tr.ID().String()
	switch {
	case o.Update != nil:
		h, err := n.book.store.Put(raw)
		if err != nil {
			n.log.Error("ledger store", "err", err)
			return
		}
		n.book.ups[o.Update.ID(n.spec.RunID())] = o.Update.Round
		n.record(ledger.Entry{Kind: ledger.KindUpdate, Round: o.Update.Round, Peer: self, Blob: h.String()})
	case o.Commit != nil:
		n.record(ledger.Entry{Kind: ledger.KindCommit, Round: o.Commit.Round, Peer: self, Wire: raw})
	}
}

// recordDecision logs a decided round and closes it with a signed tree
// head, synced to disk.
func (n *node) recordDecision(res trainer.RoundResult) {
	if n.book == nil {
		return
	}
	d := Decision{Base: hex.EncodeToString(res.Base[:]), Result: hex.EncodeToString(res.Result[:]), Votes: res.Votes, Samples: res.Samples}
	for _, u := range res.Updates {
		d.Updates = append(d.Updates, hex.EncodeToString(u[:]))
	}
	for _, p := range res.Peers {
		d.Peers = append(d.Peers, string(p))
	}
	for _, p := range res.Exclusions {
		d.Excluded = append(d.Excluded, string(p))
	}
	data, _ := json.Marshal(d)
	n.record(ledger.Entry{Kind: ledger.KindDecision, Round: res.Round, Data: data})

	if err := n.treeHead(res.Round); err != nil {
		n.log.Error("ledger tree head", "err", err)
	}
}

// treeHead appends a signed tree head over every entry so far and syncs.
func (n *node) treeHead(round uint64) error {
	l := n.book.log
	h, err := ledger.SignTreeHead(ledger.TreeHead{Run: ledger.Hash(n.spec.RunID()), Round: round, Size: l.Size(), Root: l.Root(l.Size())}, n.key)
	if err != nil {
		return err
	}
	if _, err := l.Append(ledger.Entry{Kind: ledger.KindTreeHead, Round: round, Head: &h}.Encode()); err != nil {
		return err
	}
	n.book.head, n.book.dirty = &h, false
	if err := l.Sync(); err != nil {
		return err
	}
	// Gossip it: the other peers keep it as a witness, so this ledger
	// cannot be rewritten later without an auditor seeing it.
	if raw, err := gossip.SignHead(n.key, n.spec.RunID(), h); err == nil && n.tr != nil {
		if err := n.tr.Publish(context.Background(), raw); err != nil {
			n.log.Debug("publish tree head", "err", err)
		}
	}
	return nil
}

// closeBook seals the ledger with a final tree head if entries followed
// the last one.
func (n *node) closeBook() {
	if n.book == nil {
		return
	}
	if n.book.dirty {
		if err := n.treeHead(n.eng.Round()); err != nil {
			n.log.Error("ledger tree head", "err", err)
		}
	}
	if err := n.book.log.Close(); err != nil {
		n.log.Error("ledger close", "err", err)
	}
	n.lastHead = n.book.head
}
