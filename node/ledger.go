package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/verify/audit"
	"github.com/vtrain/vtrain/verify/ledger"
	"github.com/vtrain/vtrain/verify/zk"
)

// book is the node's ledger: every message it acts on, every certified
// decision, and a signed tree head per decided round, synced at round
// boundaries.
type book struct {
	log   *ledger.Log
	store *ledger.Store
	ups   map[consensus.Hash]uint64 // updates logged recently, by round (each is logged once)
	// Refusals of the current rounds, counted per peer, round and kind of
	// reason, written at the round's tree head: a flood costs the flooder,
	// not the ledger.
	refused map[refusalKey]*refusal
	head    *ledger.SignedTreeHead
	dirty   bool // entries since the last tree head
	// verdicts logged recently (by signature, with their round): each is
	// logged once, whether it came by gossip, by a push or in a value.
	verdicts map[string]uint64
}

type refusalKey struct {
	peer  string
	round uint64
	class string
}

type refusal struct {
	first string
	count int
	seq   int // order of first occurrence
}

// maxRefusalClasses bounds the kinds of reasons counted per peer and round
// (the rest count as "other"), maxRefusals the entries kept between two
// tree heads.
const (
	maxRefusalClasses = 8
	maxRefusals       = 4096
)

// reasonClass is a reason's kind: its words up to the first colon or
// digit-bearing word (IDs and numbers vary, the kind does not).
func reasonClass(r string) string {
	if i := strings.IndexByte(r, ':'); i >= 0 {
		r = r[:i]
	}
	var out []string
	for _, w := range strings.Fields(r) {
		if strings.ContainsAny(w, "0123456789") || len(out) == 6 {
			break
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}

// recordState logs a state the node starts from or adopts (its own
// checkpoint after a restart, a certified state fetched from a peer), so
// that an auditor can replay on from it.
func (n *node) recordState(st consensus.State) {
	if n.book == nil || st.Round == 0 {
		return
	}
	h, err := n.book.store.Put(audit.EncodeState(st, nil))
	if err != nil {
		n.log.Error("ledger store", "err", err)
		return
	}
	sh := st.Hash()
	data, _ := json.Marshal(audit.StateData{Round: st.Round, Hash: hex.EncodeToString(sh[:])})
	n.record(ledger.Entry{Kind: ledger.KindState, Round: st.Round, Blob: h.String(), Data: data})
}

func (n *node) openBook() error {
	run := n.spec.RunID()
	l, rec, err := ledger.Open(filepath.Join(n.cfg.OutDir, audit.LedgerFile), run)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if rec != nil {
		n.log.Warn("ledger recovered after a crash", "recovery", rec.String())
		n.event(EventLedger, []any{"recovery", rec.String()}, "ledger: recovered after a crash: %s", rec)
	}
	st, err := ledger.OpenStore(filepath.Join(n.cfg.OutDir, audit.BlobDir), audit.StoreLimit(n.spec))
	if err != nil {
		l.Close()
		return fmt.Errorf("node: ledger store: %w", err)
	}
	n.book = &book{log: l, store: st, ups: map[consensus.Hash]uint64{}, refused: map[refusalKey]*refusal{}, verdicts: map[string]uint64{}}
	if l.Size() == 0 {
		n.record(ledger.Entry{Kind: ledger.KindGenesis, Peer: string(n.self), Data: n.spec.Canonical()})
		for _, f := range n.spec.Members.Genesis {
			n.record(ledger.Entry{Kind: ledger.KindJoin, Peer: f, Reason: "founder"})
		}
		if n.priv != nil {
			// The key every proof in this ledger verifies with: an
			// auditor needs nothing but the ledger (its hash is the
			// spec's privacy.vk_sha256).
			h, err := st.Put(zk.VKBytes(n.cfg.ZK.VK))
			if err != nil {
				return fmt.Errorf("node: ledger store: %w", err)
			}
			n.record(ledger.Entry{Kind: ledger.KindKey, Blob: h.String()})
		}
		return n.treeHead(0, true)
	}
	return nil
}

// record appends an entry; a ledger that cannot be written stops nothing
// else but is logged loudly.
func (n *node) record(e ledger.Entry) {
	if n.book == nil {
		return
	}
	if _, err := n.book.log.Append(e.Encode()); err != nil {
		n.log.Error("ledger append", "err", err)
		return
	}
	n.book.dirty = true
}

// recordUpdate logs an update once, its signed message in the store.
func (n *node) recordUpdate(u *consensus.Update, raw []byte) {
	id := u.ID(n.spec.RunID())
	if _, ok := n.book.ups[id]; ok {
		return
	}
	n.book.ups[id] = u.Round
	n.note(Note{Kind: NoteUpdate, Round: u.Round, Peer: string(u.From)})
	for k, r := range n.book.ups {
		if r+4 < u.Round {
			delete(n.book.ups, k)
		}
	}
	h, err := n.book.store.Put(raw)
	if err != nil {
		n.log.Error("ledger store", "err", err)
		return
	}
	n.record(ledger.Entry{Kind: ledger.KindUpdate, Round: u.Round, Peer: string(u.From), Blob: h.String()})
}

// recordMsg logs a message the engine acted on: updates it holds,
// verdicts and equivocation proofs it accepted, and (counted) what it
// refused or found to be junk.
func (n *node) recordMsg(m *gossip.Msg, d consensus.Decision) {
	if n.book == nil {
		return
	}
	switch {
	case d.Costly():
		n.recordRejection(m.Sender.String(), m.Round, d.Reason)
	case m.Update != nil && (d.OK() || d.Kept):
		n.recordUpdate(m.Update, m.Raw)
	case !d.OK():
	case m.Verdict != nil:
		n.recordVerdict(m.Verdict, m.Raw)
	case m.Evidence != nil:
		n.record(ledger.Entry{Kind: ledger.KindEvidence, Round: m.Round, Peer: string(m.Evidence.A.From), Wire: m.Raw})
	}
}

// recordRejection counts a refused message of peer in round.
func (n *node) recordRejection(peer string, round uint64, reason string) {
	n.note(Note{Kind: NoteRejected, Round: round, Peer: peer, Reason: reasonClass(reason), Detail: reason})
	if n.book == nil {
		return
	}
	k := refusalKey{peer, round, reasonClass(reason)}
	r := n.book.refused[k]
	if r == nil {
		classes := 0
		for x := range n.book.refused {
			if x.peer == peer && x.round == round {
				classes++
			}
		}
		if classes >= maxRefusalClasses {
			k.class = "other"
			r = n.book.refused[k]
		}
	}
	if r == nil {
		if len(n.book.refused) >= maxRefusals {
			return
		}
		r = &refusal{first: reason, seq: len(n.book.refused)}
		n.book.refused[k] = r
	}
	r.count++
}

// flushRefusals writes the counted refusals, one entry per peer, round and
// kind of reason, in the order they first occurred.
func (n *node) flushRefusals() {
	type kr struct {
		k refusalKey
		r *refusal
	}
	var all []kr
	for k, r := range n.book.refused {
		all = append(all, kr{k, r})
	}
	slices.SortFunc(all, func(a, b kr) int { return a.r.seq - b.r.seq })
	for _, x := range all {
		data, _ := json.Marshal(audit.RejectionData{Count: x.r.count})
		n.record(ledger.Entry{Kind: ledger.KindReject, Round: x.k.round, Peer: x.k.peer, Reason: x.r.first, Data: data})
	}
	clear(n.book.refused)
}

// recordOwn logs the node's own update, verdict or equivocation proof.
func (n *node) recordOwn(m consensus.Message, raw []byte) {
	if n.book == nil {
		return
	}
	switch {
	case m.Update != nil:
		n.recordUpdate(m.Update, raw)
	case m.Verdict != nil:
		n.recordVerdict(m.Verdict, raw)
	case m.Evidence != nil:
		n.record(ledger.Entry{Kind: ledger.KindEvidence, Round: m.Evidence.A.Round, Peer: string(m.Evidence.A.From), Wire: raw})
	}
}

// recordVerdict logs a verdict (raw: its signed message) once.
func (n *node) recordVerdict(x *consensus.VerdictMsg, raw []byte) {
	k := string(x.Sig)
	if _, ok := n.book.verdicts[k]; ok {
		return
	}
	n.book.verdicts[k] = x.Round
	for s, r := range n.book.verdicts {
		if r+keptVerdictLog < x.Round {
			delete(n.book.verdicts, s)
		}
	}
	n.record(ledger.Entry{Kind: ledger.KindVerdict, Round: x.Round, Peer: string(x.From), Wire: raw})
}

// keptVerdictLog is how many rounds a logged verdict is remembered for
// recordVerdict: a value carries verdicts of the last few rounds only.
const keptVerdictLog = 16

// recordDecision logs a decided round, its certificate with it, what it
// changed in the membership, and closes it with a signed tree head,
// synced to disk. A round the node restored past is logged as the chain of
// certified decisions it checked, then the state it adopted.
func (n *node) recordDecision(res consensus.Decided) {
	if n.book == nil {
		return
	}
	n.flushRefusals()
	if res.Restored {
		for _, l := range res.Links {
			n.recordCommit(&l.Commit, 0, true, l.NextVoters)
		}
		st, _ := n.eng.Latest()
		n.recordState(st)
		// Exclusions decided in the rounds it restored past, as the
		// certified membership it adopted names them.
		for _, p := range n.adoptedExclusions() {
			n.record(ledger.Entry{Kind: ledger.KindLeave, Round: st.Round, Peer: string(p), Reason: "excluded: in the certified state adopted"})
		}
	} else {
		// The verdicts the value carries, as their signers sent them: a
		// pass reaches only the voters before the decision (node.pushTo),
		// and every ledger credits the checks it logs.
		for i := range res.Value.Verdicts {
			x := &res.Value.Verdicts[i]
			if raw, err := gossip.Encode(n.key, n.spec.RunID(), consensus.Message{Verdict: x}); err == nil {
				n.recordVerdict(x, raw)
			}
		}
		n.recordCommit(&consensus.Commit{Value: res.Value, Cert: res.Cert}, res.Samples, false, nil)
	}
	for _, x := range res.Excluded {
		n.record(ledger.Entry{Kind: ledger.KindLeave, Round: res.Round + 1, Peer: string(x.Peer), Reason: "excluded: " + x.Reason()})
	}
	for _, p := range res.Dropped {
		n.record(ledger.Entry{Kind: ledger.KindLeave, Round: res.Round + 1, Peer: string(p), Reason: "dropped: no update aggregated"})
	}
	for _, p := range res.Admitted {
		n.record(ledger.Entry{Kind: ledger.KindJoin, Round: res.Round + 1, Peer: string(p), Reason: "admitted"})
	}
	last := n.spec.Run.Rounds > 0 && res.Round+1 >= uint64(n.spec.Run.Rounds)
	publish := (res.Round+1)%headEvery == 0 || last
	if last && n.priv != nil {
		// The head that says this node finished the run is held back
		// while its checks are under way (lingerOver sends it).
		n.finalPending, publish = true, false
	}
	if err := n.treeHead(res.Round, publish); err != nil {
		n.log.Error("ledger tree head", "err", err)
	}
}

// headEvery is how often a node gossips its ledger's tree head: after
// every headEvery-th decided round, the run's last, and when it stops. It
// signs and logs one after every round; each gossiped one reaches every
// peer, which keeps the latest as a witness (vtrain audit --witness) that
// pins everything the ledger held then. Every round's head cost a peer
// of a 16-peer run more than its votes; gossiped every fifth round, a
// rewrite of a ledger goes unwitnessed only in the rounds since its last
// gossiped head, and of a ledger whose keeper ran to the end, never.
const headEvery = 5

// recordCommit logs one certified decision: the commit as a signed message
// and a summary.
func (n *node) recordCommit(c *consensus.Commit, samples uint64, restored bool, nextVoters []consensus.PeerID) {
	v := c.Value
	d := audit.Decision{Base: hex.EncodeToString(v.Base[:]), Result: hex.EncodeToString(v.Next[:]), Samples: samples,
		Signers: len(c.Cert.Sigs), Restored: restored}
	for _, u := range v.Updates {
		d.Updates = append(d.Updates, hex.EncodeToString(u.ID[:]))
		d.Peers = append(d.Peers, string(u.From))
	}
	for _, p := range nextVoters {
		d.NextVoters = append(d.NextVoters, string(p))
	}
	for _, p := range v.LateIn() {
		d.Late = append(d.Late, string(p))
	}
	data, _ := json.Marshal(d)
	raw, err := gossip.Encode(n.key, n.spec.RunID(), consensus.Message{Commit: c})
	if err != nil {
		n.log.Error("ledger: encode commit", "err", err)
		return
	}
	n.record(ledger.Entry{Kind: ledger.KindDecision, Round: v.Round, Data: data, Wire: raw})
}

// treeHead appends a signed tree head over every entry so far and syncs,
// and gossips it if publish.
func (n *node) treeHead(round uint64, publish bool) error {
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
	if !publish || n.tr == nil {
		return nil
	}
	if raw, err := gossip.SignHead(n.key, n.spec.RunID(), h); err == nil {
		n.headRaw, n.headSentAt = raw, time.Now()
		if err := n.tr.Publish(context.Background(), "head", raw); err != nil {
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
	n.flushRefusals()
	if n.book.dirty {
		if err := n.treeHead(n.eng.Round(), true); err != nil {
			n.log.Error("ledger tree head", "err", err)
		}
	}
	if err := n.book.log.Close(); err != nil {
		n.log.Error("ledger close", "err", err)
	}
	n.lastHead = n.book.head
}
