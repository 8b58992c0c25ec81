package audit_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/node/nodetest"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/audit"
	"github.com/vtrain/vtrain/verify/ledger"
)

// The tests here rewrite real ledgers as their keeper could: every entry
// well formed, every message it signs re-signed with its key, every tree
// head recomputed over the new log and re-signed, so that ledger.Check
// passes and only the meaning is wrong. The audit must find the first
// entry whose meaning contradicts a signature the keeper cannot make (a
// peer's update or verdict, a quorum's certificate), the beacon's draw, the
// data, or another ledger.

// forger rewrites one keeper's ledger.
type forger struct {
	t       *testing.T
	spec    runspec.Spec
	run     runspec.ID
	keeper  string
	key     crypto.PrivKey                      // the keeper's
	keys    map[consensus.PeerID]crypto.PrivKey // every founder's: a colluding quorum
	entries []ledger.Entry
	dir     string
	store   *ledger.Store
}

// fixture is a finished cluster and what the tests take from it.
type fixture struct {
	c       *nodetest.Cluster
	keys    map[consensus.PeerID]crypto.PrivKey
	entries map[string][]ledger.Entry // by keeper
}

func newFixture(t *testing.T, opts ...nodetest.Option) *fixture {
	c := nodetest.Start(t, 4, 5, func(s *runspec.Spec) { s.Verify.Rate, s.Verify.NewcomerRate = 1, 1 }, opts...)
	c.Wait()
	r := &fixture{c: c, keys: map[consensus.PeerID]crypto.PrivKey{}, entries: map[string][]ledger.Entry{}}
	for _, n := range c.Nodes {
		k, id, err := node.LoadIdentity(n.Dir)
		if err != nil {
			t.Fatal(err)
		}
		r.keys[consensus.PeerID(id.String())] = k
		ch, err := ledger.Check(n.Ledger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.entries[n.ID] = ch.Entries
	}
	return r
}

// forge starts a rewrite of n's ledger in a new directory, with a copy of
// its payload store.
func (r *fixture) forge(t *testing.T, n *nodetest.Node) *forger {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, audit.BlobDir), os.DirFS(filepath.Join(n.Dir, audit.BlobDir))); err != nil {
		t.Fatal(err)
	}
	st, err := ledger.OpenStore(filepath.Join(dir, audit.BlobDir), audit.StoreLimit(r.c.Spec))
	if err != nil {
		t.Fatal(err)
	}
	return &forger{t: t, spec: r.c.Spec, run: r.c.Spec.RunID(), keeper: n.ID, key: r.keys[consensus.PeerID(n.ID)], keys: r.keys,
		entries: slices.Clone(r.entries[n.ID]), dir: dir, store: st}
}

// write writes the rewritten ledger as its keeper would have: a tree head
// wherever the original had one, over the new log, signed with the
// keeper's key, and one at the end.
func (f *forger) write() string {
	f.t.Helper()
	p := filepath.Join(f.dir, audit.LedgerFile)
	l, _, err := ledger.Open(p, f.run)
	if err != nil {
		f.t.Fatal(err)
	}
	round := uint64(0)
	head := func() ledger.Entry {
		h, err := ledger.SignTreeHead(ledger.TreeHead{Run: ledger.Hash(f.run), Round: round, Size: l.Size(), Root: l.Root(l.Size())}, f.key)
		if err != nil {
			f.t.Fatal(err)
		}
		return ledger.Entry{Kind: ledger.KindTreeHead, Round: round, Head: &h}
	}
	for _, e := range f.entries {
		if e.Kind == ledger.KindTreeHead {
			round = e.Round
			e = head()
		}
		if _, err := l.Append(e.Encode()); err != nil {
			f.t.Fatal(err)
		}
	}
	if f.entries[len(f.entries)-1].Kind != ledger.KindTreeHead {
		if _, err := l.Append(head().Encode()); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.t.Fatal(err)
	}
	// Only the meaning is wrong: the file passes every check of its form.
	if _, err := ledger.Check(p, nil); err != nil {
		f.t.Fatalf("the rewritten ledger is not well formed: %v", err)
	}
	return p
}

// msg returns the signed message of entry i (its Wire, or its payload).
func (f *forger) msg(i int) *gossip.Msg {
	f.t.Helper()
	e := f.entries[i]
	raw := e.Wire
	if e.Blob != "" {
		var h ledger.Hash
		if err := h.UnmarshalText([]byte(e.Blob)); err != nil {
			f.t.Fatal(err)
		}
		var err error
		if raw, err = f.store.Get(h); err != nil {
			f.t.Fatal(err)
		}
	}
	m, err := gossip.Verify(raw, f.run, 1<<28)
	if err != nil {
		f.t.Fatalf("entry %d: %v", i, err)
	}
	return m
}

func (f *forger) put(b []byte) string {
	f.t.Helper()
	h, err := f.store.Put(b)
	if err != nil {
		f.t.Fatal(err)
	}
	return h.String()
}

// setUpdate replaces the update of entry i; resign signs it with its
// author's key, otherwise it keeps the author's old signature.
func (f *forger) setUpdate(i int, u *consensus.Update, resign bool) {
	f.t.Helper()
	if resign {
		u.Sig = gossip.Signer(f.keys[u.From])(consensus.UpdateSignBytes(f.run, u))
	}
	raw, err := gossip.Encode(f.key, f.run, consensus.Message{Update: u})
	if err != nil {
		f.t.Fatal(err)
	}
	f.entries[i].Blob = f.put(raw)
}

// setVerdict replaces the verdict of entry i, signed by its From (whose key
// the forger must hold).
func (f *forger) setVerdict(i int, x *consensus.VerdictMsg) {
	f.t.Helper()
	x.Sig = gossip.Signer(f.keys[x.From])(consensus.VerdictSignBytes(f.run, x))
	raw, err := gossip.Encode(f.key, f.run, consensus.Message{Verdict: x})
	if err != nil {
		f.t.Fatal(err)
	}
	f.entries[i].Wire, f.entries[i].Peer = raw, string(x.From)
}

// setCommit replaces the commit of decision entry i, published by the
// keeper, with the summary the node would write.
func (f *forger) setCommit(i int, c *consensus.Commit, restored bool) {
	f.t.Helper()
	var old audit.Decision
	if err := json.Unmarshal(f.entries[i].Data, &old); err != nil {
		f.t.Fatal(err)
	}
	v := c.Value
	d := audit.Decision{Base: hex.EncodeToString(v.Base[:]), Result: hex.EncodeToString(v.Next[:]), Samples: old.Samples,
		Signers: len(c.Cert.Sigs), Restored: restored}
	for _, u := range v.Updates {
		d.Updates = append(d.Updates, hex.EncodeToString(u.ID[:]))
		d.Peers = append(d.Peers, string(u.From))
	}
	for _, p := range v.LateIn() {
		d.Late = append(d.Late, string(p))
	}
	data, err := json.Marshal(d)
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := gossip.Encode(f.key, f.run, consensus.Message{Commit: c})
	if err != nil {
		f.t.Fatal(err)
	}
	f.entries[i].Wire, f.entries[i].Data = raw, data
}

// carried returns the value of decision entry i and the first pass it
// carries.
func (f *forger) carried(i int) (*consensus.Value, *consensus.VerdictMsg) {
	f.t.Helper()
	v := f.msg(i).Commit.Value
	for j := range v.Verdicts {
		if v.Verdicts[j].Pass {
			return v, &v.Verdicts[j]
		}
	}
	f.t.Fatal("the value carries no pass")
	return nil, nil
}

// drawnFor returns the challengers the beacon of round drew for update id.
func (f *forger) drawnFor(round uint64, id consensus.Hash) map[consensus.PeerID]bool {
	_, chs := consensus.Draw(f.msg(f.decisionOf(round)).Commit.Value, consensus.SpotPolicyOf(f.spec))
	out := map[consensus.PeerID]bool{}
	for _, c := range chs {
		if c.Update == id {
			out[consensus.PeerID(c.Challenger)] = true
		}
	}
	return out
}

// update returns the logged update with ID id.
func (f *forger) update(id consensus.Hash) *consensus.Update {
	f.t.Helper()
	for i, e := range f.entries {
		if e.Kind == ledger.KindUpdate {
			if u := f.msg(i).Update; u != nil && u.ID(f.run) == id {
				return u
			}
		}
	}
	f.t.Fatalf("update %s not logged", id.Short())
	return nil
}

// recertify makes decision entry i's value v carry verdict y (signed by
// its From) in place of the one on the same challenge, or beside them,
// certified by a colluding quorum.
func (f *forger) recertify(i int, v *consensus.Value, y consensus.VerdictMsg) {
	f.t.Helper()
	y.Sig = gossip.Signer(f.keys[y.From])(consensus.VerdictSignBytes(f.run, &y))
	nv := *v
	nv.Verdicts = slices.DeleteFunc(slices.Clone(v.Verdicts), func(x consensus.VerdictMsg) bool {
		return x.Round == y.Round && x.Update == y.Update && x.From == y.From
	})
	nv.Verdicts = append(nv.Verdicts, y)
	slices.SortFunc(nv.Verdicts, func(a, b consensus.VerdictMsg) int {
		if a.Round != b.Round {
			return int(a.Round) - int(b.Round)
		}
		if c := bytes.Compare(a.Update[:], b.Update[:]); c != 0 {
			return c
		}
		return strings.Compare(string(a.From), string(b.From))
	})
	f.setCommit(i, &consensus.Commit{Value: &nv, Cert: f.certify(&nv, f.msg(i).Commit.Cert.View)}, false)
}

// certify is what a colluding quorum can do: precommits of every founder
// for v.
func (f *forger) certify(v *consensus.Value, view uint32) consensus.Certificate {
	c := consensus.Certificate{Round: v.Round, View: view, Value: v.ID(f.run)}
	for p, k := range f.keys {
		vote := consensus.Vote{Kind: consensus.KindPrecommit, Round: v.Round, View: view, Value: c.Value, ValidView: -1, From: p}
		c.Sigs = append(c.Sigs, consensus.Signature{From: p, Sig: gossip.Signer(k)(consensus.VoteSignBytes(f.run, &vote))})
	}
	slices.SortFunc(c.Sigs, func(a, b consensus.Signature) int { return strings.Compare(string(a.From), string(b.From)) })
	return c
}

// stateEntry is a state entry for st, its payload stored.
func (f *forger) stateEntry(st consensus.State) ledger.Entry {
	sh := st.Hash()
	data, _ := json.Marshal(audit.StateData{Round: st.Round, Hash: hex.EncodeToString(sh[:])})
	return ledger.Entry{Kind: ledger.KindState, Round: st.Round, Blob: f.put(audit.EncodeState(st, nil)), Data: data}
}

func (f *forger) insert(i int, e ledger.Entry) { f.entries = slices.Insert(f.entries, i, e) }

// find returns the first entry from i on that ok accepts, or -1.
func (f *forger) find(from int, ok func(i int, e ledger.Entry) bool) int {
	for i := from; i < len(f.entries); i++ {
		if ok(i, f.entries[i]) {
			return i
		}
	}
	return -1
}

// decisionOf returns the index of round's decision entry.
func (f *forger) decisionOf(round uint64) int {
	f.t.Helper()
	i := f.find(0, func(_ int, e ledger.Entry) bool { return e.Kind == ledger.KindDecision && e.Round == round })
	if i < 0 {
		f.t.Fatalf("no decision of round %d", round)
	}
	return i
}

// negate returns u with its payload negated (re-encoded, so that it
// decodes), and no signature.
func negate(t *testing.T, spec runspec.Spec, u *consensus.Update) *consensus.Update {
	t.Helper()
	m, err := spec.ModelSpec()
	if err != nil {
		t.Fatal(err)
	}
	d := m.NumParams()
	dec, err := compress.NewDecoder(d)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	s, err := dec.Decode(u.Payload)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, d)
	s.Dense(v)
	for i := range v {
		v[i] = -v[i]
	}
	enc, err := compress.NewEncoder(spec.CompressParams(), d)
	if err != nil {
		t.Fatal(err)
	}
	out := *u
	if out.Payload, err = enc.Encode(v, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(out.Payload, u.Payload) {
		t.Fatal("negating the payload changed nothing")
	}
	out.Sig = nil
	return &out
}

// renameUpdate returns v with the update ref old renamed to id, the refs
// kept sorted.
func renameUpdate(v *consensus.Value, old, id consensus.Hash) *consensus.Value {
	nv := *v
	nv.Updates = slices.Clone(v.Updates)
	for i := range nv.Updates {
		if nv.Updates[i].ID == old {
			nv.Updates[i].ID = id
		}
	}
	slices.SortFunc(nv.Updates, func(a, b consensus.UpdateRef) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return &nv
}

// keeperPick is what the cases need from a keeper's ledger.
type keeperPick struct {
	node        *nodetest.Node
	honest      *nodetest.Node  // another node's ledger
	ownUpdate   int             // the keeper's update of a round before the last
	otherUpdate int             // another peer's update of that round
	otherVerd   int             // a verdict by another peer
	ownVerd     int             // the keeper's own verdict, its answer logged, carried by a later certified value
	ownChal     int             // a challenge the beacon drew the keeper for
	verdValue   int             // a decision whose value carries verdicts
	last        uint64          // the run's last round
	final       consensus.State // the state after it (the keeper's checkpoint)
	bent        consensus.State // the same with one parameter changed
}

// pick finds a keeper whose ledger has everything the cases rewrite (with
// every update challenged, every founder challenges in nearly every round).
func (r *fixture) pick(t *testing.T) *keeperPick {
	for ni, n := range r.c.Nodes {
		f := &forger{t: t, run: r.c.Spec.RunID(), entries: r.entries[n.ID]}
		var err error
		if f.store, err = ledger.OpenStore(filepath.Join(n.Dir, audit.BlobDir), audit.StoreLimit(r.c.Spec)); err != nil {
			t.Fatal(err)
		}
		last := uint64(r.c.Spec.Run.Rounds - 1)
		k := &keeperPick{node: n, honest: r.c.Nodes[(ni+1)%len(r.c.Nodes)]}
		// An own update some decision aggregated: rewriting one that came
		// too late for its round contradicts nothing certified.
		aggregated := map[consensus.Hash]bool{}
		for i, e := range f.entries {
			if e.Kind == ledger.KindDecision {
				for _, r := range f.msg(i).Commit.Value.Updates {
					aggregated[r.ID] = true
				}
			}
		}
		k.ownUpdate = f.find(0, func(i int, e ledger.Entry) bool {
			return e.Kind == ledger.KindUpdate && e.Peer == n.ID && e.Round < last && aggregated[f.msg(i).Update.ID(f.run)]
		})
		if k.ownUpdate >= 0 {
			round := f.entries[k.ownUpdate].Round
			k.otherUpdate = f.find(0, func(_ int, e ledger.Entry) bool {
				return e.Kind == ledger.KindUpdate && e.Peer != n.ID && e.Round == round
			})
		}
		k.otherVerd = f.find(0, func(i int, e ledger.Entry) bool {
			return e.Kind == ledger.KindVerdict && e.Peer != n.ID && string(f.msg(i).Verdict.Accused) != n.ID
		})
		k.ownChal = f.find(0, func(_ int, e ledger.Entry) bool { return e.Kind == ledger.KindChallenge })
		k.verdValue = f.find(0, func(i int, e ledger.Entry) bool {
			return e.Kind == ledger.KindDecision && len(f.msg(i).Commit.Value.Verdicts) > 0
		})
		k.ownVerd = f.find(0, func(i int, e ledger.Entry) bool {
			if e.Kind != ledger.KindVerdict || e.Peer != n.ID {
				return false
			}
			x := f.msg(i).Verdict
			answered := f.find(0, func(j int, a ledger.Entry) bool {
				return j < i && a.Kind == ledger.KindResponse && a.Round == x.Round && a.Peer == string(x.Accused)
			}) >= 0
			// carried by a value decided after it (the first that does)
			certified := f.find(0, func(j int, d ledger.Entry) bool {
				return d.Kind == ledger.KindDecision && slices.ContainsFunc(f.msg(j).Commit.Value.Verdicts, func(y consensus.VerdictMsg) bool {
					return y.Round == x.Round && y.Update == x.Update
				})
			}) > i
			return answered && certified
		})
		if min(k.ownUpdate, k.otherUpdate, k.otherVerd, k.ownVerd, k.ownChal, k.verdValue) < 0 {
			continue
		}
		// The node's checkpoint (node's state.safetensors) is the state
		// the last round's certified decision leads to.
		b, err := os.ReadFile(filepath.Join(n.Dir, "state.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if k.final, _, err = audit.DecodeState(b); err != nil {
			t.Fatal(err)
		}
		k.last = last
		if v := f.msg(f.decisionOf(last)).Commit.Value; k.final.Round != last+1 || k.final.Hash() != v.Next {
			t.Fatalf("%s's checkpoint is not the state of round %d's decision", n.ID, last)
		}
		k.bent = k.final.Clone()
		k.bent.Theta[0] += 1
		return k
	}
	t.Fatal("no ledger of the run has an own update, an own answered and certified verdict, another's verdict and a challenge")
	return nil
}

// TestRewrittenLedgers rewrites a real ledger with its keeper's key (and,
// where said, a colluding quorum's) in each way below, and checks that the
// audit of it, alone and beside another node's honest ledger (what vtrain
// audit A B runs, exiting 1 on ErrAudit), fails on the first entry whose
// meaning is wrong, and says why. One cluster serves every case.
func TestRewrittenLedgers(t *testing.T) {
	r := newFixture(t)
	k := r.pick(t)
	c := r.c
	var paths []string
	witnessed := map[string]*ledger.SignedTreeHead{}
	for _, n := range c.Nodes {
		paths = append(paths, n.Ledger())
		for id, h := range n.Summary.Witnessed {
			if w := witnessed[id]; w == nil || h.Size > w.Size {
				witnessed[id] = h
			}
		}
	}
	plain := audit.Options{Finished: true}
	withData := audit.Options{Finished: true, Train: c.Data.Train}

	t.Run("honest", func(t *testing.T) {
		// The valid inputs: the honest ledgers, together, with the data
		// and every tree head their keepers gossiped; and the keeper's
		// ledger rewritten without a change, which the forger must be able
		// to produce for the cases below to mean anything.
		if rep, err := audit.Audit(paths, audit.Options{Finished: true, Train: c.Data.Train, Witnessed: witnessed}); err != nil {
			t.Fatalf("honest ledgers: %v", err)
		} else if !rep.OK || len(rep.Cross) == 0 {
			t.Fatalf("honest ledgers: %+v", rep)
		}
		for _, ok := range []struct {
			name string
			edit func(f *forger)
		}{
			{"unchanged", func(*forger) {}},
			{"resumed from its true checkpoint", func(f *forger) {
				d := f.decisionOf(k.last)
				f.insert(d+1, f.stateEntry(k.final))
			}},
			{"adopted the true certified state", func(f *forger) {
				d := f.decisionOf(k.last)
				f.setCommit(d, f.msg(d).Commit, true)
				f.insert(d+1, f.stateEntry(k.final))
			}},
		} {
			f := r.forge(t, k.node)
			ok.edit(f)
			if _, err := audit.Audit([]string{f.write(), k.honest.Ledger()}, withData); err != nil {
				t.Fatalf("rewrite %s: %v", ok.name, err)
			}
		}
	})

	// Each case rewrites the keeper's ledger and returns the entry the
	// audit must name and what it must say.
	cases := []struct {
		name  string
		opts  audit.Options
		edit  func(f *forger) (entry int, why string)
		check string // the audit check that catches it (for the record)
	}{
		{"another peer's update negated", plain, func(f *forger) (int, string) {
			// The keeper cannot re-sign another peer's update: the old
			// signature no longer verifies.
			u := negate(t, f.spec, f.msg(k.otherUpdate).Update)
			u.Sig = f.msg(k.otherUpdate).Update.Sig
			f.setUpdate(k.otherUpdate, u, false)
			return k.otherUpdate, "update message: gossip: bad message: bad signature"
		}, "the update's signature"},
		{"own update negated and re-signed", plain, func(f *forger) (int, string) {
			// A valid update, but not the one the round certified: its ID
			// changed with its payload.
			u := negate(t, f.spec, f.msg(k.ownUpdate).Update)
			f.setUpdate(k.ownUpdate, u, true)
			return f.decisionOf(u.Round), "which the ledger does not hold"
		}, "the certified value's update IDs"},
		{"own update negated, the decision renamed to it", plain, func(f *forger) (int, string) {
			old := f.msg(k.ownUpdate).Update
			u := negate(t, f.spec, old)
			f.setUpdate(k.ownUpdate, u, true)
			d := f.decisionOf(u.Round)
			cm := f.msg(d).Commit
			f.setCommit(d, &consensus.Commit{Value: renameUpdate(cm.Value, old.ID(f.run), u.ID(f.run)), Cert: cm.Cert}, false)
			return d, "is not for the value the decision names"
		}, "certificate against value"},
		{"own update negated, the decision and its certificate renamed", plain, func(f *forger) (int, string) {
			old := f.msg(k.ownUpdate).Update
			u := negate(t, f.spec, old)
			f.setUpdate(k.ownUpdate, u, true)
			d := f.decisionOf(u.Round)
			cm := f.msg(d).Commit
			v := renameUpdate(cm.Value, old.ID(f.run), u.ID(f.run))
			cert := cm.Cert
			cert.Value = v.ID(f.run)
			f.setCommit(d, &consensus.Commit{Value: v, Cert: cert}, false)
			return d, "bad signature of"
		}, "the voters' precommit signatures"},
		{"own update negated, re-certified by a colluding quorum", plain, func(f *forger) (int, string) {
			// Every founder signs the renamed value: only recomputing the
			// aggregate shows that it does not give the certified state.
			old := f.msg(k.ownUpdate).Update
			u := negate(t, f.spec, old)
			f.setUpdate(k.ownUpdate, u, true)
			d := f.decisionOf(u.Round)
			cm := f.msg(d).Commit
			v := renameUpdate(cm.Value, old.ID(f.run), u.ID(f.run))
			f.setCommit(d, &consensus.Commit{Value: v, Cert: f.certify(v, cm.Cert.View)}, false)
			return d, fmt.Sprintf("the aggregate of round %d's %d updates gives state", u.Round, len(v.Updates))
		}, "the aggregate recomputed"},
		{"a round dropped", plain, func(f *forger) (int, string) {
			// Round 2's updates and decision removed: the next decision
			// builds on a state the replay never reached.
			f.entries = slices.DeleteFunc(f.entries, func(e ledger.Entry) bool {
				return e.Round == 2 && (e.Kind == ledger.KindUpdate || e.Kind == ledger.KindDecision)
			})
			return f.decisionOf(3), "rounds 2..2 are missing"
		}, "the chain of rounds"},
		{"a verdict re-signed by the keeper, not the drawn challenger", plain, func(f *forger) (int, string) {
			x := *f.msg(k.otherVerd).Verdict
			x.From = consensus.PeerID(f.keeper)
			f.setVerdict(k.otherVerd, &x)
			return k.otherVerd, "the beacon did not draw it for"
		}, "the beacon's draw"},
		{"the keeper's verdict flipped to fail, with the data", withData, func(f *forger) (int, string) {
			x := *f.msg(k.ownVerd).Verdict
			x.Pass, x.Reason = false, "segment does not re-execute"
			f.setVerdict(k.ownVerd, &x)
			return k.ownVerd, "re-executing the challenge"
		}, "re-executing the keeper's challenge"},
		{"the keeper's verdict flipped to fail, without the data", plain, func(f *forger) (int, string) {
			// Without the data, the value that certified the verdict as
			// given contradicts it.
			x := *f.msg(k.ownVerd).Verdict
			x.Pass, x.Reason = false, "segment does not re-execute"
			f.setVerdict(k.ownVerd, &x)
			d := f.find(k.ownVerd, func(i int, e ledger.Entry) bool {
				return e.Kind == ledger.KindDecision && slices.ContainsFunc(f.msg(i).Commit.Value.Verdicts, func(y consensus.VerdictMsg) bool {
					return y.Round == x.Round && y.Update == x.Update
				})
			})
			return d, fmt.Sprintf("entry %d", k.ownVerd)
		}, "the logged verdict against the certified one"},
		{"a verdict removed from a decided value", plain, func(f *forger) (int, string) {
			cm := f.msg(k.verdValue).Commit
			v := *cm.Value
			v.Verdicts = v.Verdicts[1:]
			f.setCommit(k.verdValue, &consensus.Commit{Value: &v, Cert: cm.Cert}, false)
			return k.verdValue, "is not for the value the decision names"
		}, "certificate against value"},
		{"a failed verdict no draw backs, upheld by a colluding quorum", plain, func(f *forger) (int, string) {
			v, x := f.carried(k.verdValue)
			drawn := f.drawnFor(x.Round, x.Update)
			for p := range f.keys {
				if !drawn[p] && p != x.Accused {
					y := consensus.VerdictMsg{Round: x.Round, Update: x.Update, Accused: x.Accused, Segment: x.Segment, From: p, Fault: consensus.FaultSilent, Reason: "made up"}
					f.recertify(k.verdValue, v, y)
					return k.verdValue, "which the beacon did not draw it for (a fabricated verdict)"
				}
			}
			t.Fatal("every founder was drawn")
			return 0, ""
		}, "the certified value's verdicts against the draw"},
		{"an upheld step dispute resting on an answer the accused never signed", plain, func(f *forger) (int, string) {
			v, x := f.carried(k.verdValue)
			lo, hi := trainer.SegmentSteps(f.spec, x.Segment)
			y := *x
			y.Pass, y.Fault, y.Step, y.Reason = false, consensus.FaultStep, lo+1, "made up"
			y.Answer = &consensus.Answer{Round: x.Round, Update: x.Update, Segment: x.Segment, Leaves: make([]consensus.Hash, hi-lo)}
			y.Answer.Sig = gossip.Signer(f.keys[x.From])(consensus.AnswerSignBytes(f.run, y.Answer)) // the challenger's key, not the accused's
			f.recertify(k.verdValue, v, y)
			return k.verdValue, "with an answer " + string(x.Accused) + " did not sign"
		}, "the disputes' answers against the accused's key"},
		{"an upheld answer dispute the accused's signed answer does not bear out", plain, func(f *forger) (int, string) {
			v, x := f.carried(k.verdValue)
			u := f.update(x.Update)
			lo, hi := trainer.SegmentSteps(f.spec, x.Segment)
			y := *x
			y.Pass, y.Fault, y.Reason = false, consensus.FaultAnswer, "made up"
			y.Answer = &consensus.Answer{Round: x.Round, Update: x.Update, Segment: x.Segment, Leaves: make([]consensus.Hash, hi-lo)}
			y.Answer.Leaves[hi-lo-1] = u.Segments[x.Segment] // consistent with the commitment
			y.Answer.Sig = gossip.Signer(f.keys[x.Accused])(consensus.AnswerSignBytes(f.run, y.Answer))
			f.recertify(k.verdValue, v, y)
			return k.verdValue, "which re-execution does not uphold (a fabricated verdict)"
		}, "the disputes re-refereed"},
		{"a challenge the beacon drew for another challenger", plain, func(f *forger) (int, string) {
			var cd audit.ChallengeData
			if err := json.Unmarshal(f.entries[k.ownChal].Data, &cd); err != nil {
				t.Fatal(err)
			}
			cd.Challenger = k.honest.ID
			f.entries[k.ownChal].Data, _ = json.Marshal(cd)
			return k.ownChal, "(the keeper logs only its own)"
		}, "the beacon's draw (challenge entries)"},
		{"an honest peer logged as excluded", plain, func(f *forger) (int, string) {
			// A made-up leave would excuse the peer's work from the full
			// re-execution: the certified membership does not say it.
			d := f.decisionOf(2)
			f.insert(d+1, ledger.Entry{Kind: ledger.KindLeave, Round: 3, Peer: k.honest.ID, Reason: "excluded: made up"})
			return d + 1, "which no certified decision did"
		}, "the leave against the certified membership"},
		{"a resumed state whose parameters changed", plain, func(f *forger) (int, string) {
			// The keeper claims it resumed from its own checkpoint after
			// the last round, with one parameter changed.
			d := f.decisionOf(k.last)
			f.insert(d+1, f.stateEntry(k.bent))
			return d + 1, "resumed from state"
		}, "the state against the replayed one"},
		{"an adopted state whose parameters changed", plain, func(f *forger) (int, string) {
			// The keeper claims it adopted the last round's certified
			// state from a peer, and logs another.
			d := f.decisionOf(k.last)
			f.setCommit(d, f.msg(d).Commit, true)
			f.insert(d+1, f.stateEntry(k.bent))
			return d + 1, fmt.Sprintf("the certified decision of round %d leads to", k.last)
		}, "the state against the certified decision"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := r.forge(t, k.node)
			entry, why := tc.edit(f)
			p := f.write()
			want := fmt.Sprintf("%s: entry %d: ", p, entry)
			_, err := audit.Ledger(p, tc.opts)
			if !errors.Is(err, audit.ErrAudit) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), why) {
				t.Fatalf("audit: %v\nwant %q ... %q (%s)", err, want, why, tc.check)
			}
			// Beside another node's honest ledger (vtrain audit A B): the
			// same first contradiction.
			rep, err := audit.Audit([]string{p, k.honest.Ledger()}, tc.opts)
			if !errors.Is(err, audit.ErrAudit) || !strings.Contains(err.Error(), want) || rep.OK {
				t.Fatalf("audit beside %s: %v", k.honest.Ledger(), err)
			}
			t.Logf("%s: %v", tc.check, err)
		})
	}

	// Rewrites that leave a ledger consistent in itself, so that only
	// another ledger, or a tree head its keeper gossiped before the
	// rewrite, shows them.
	honest := k.honest.Ledger()
	opts := withData

	t.Run("a fork certified by a colluding quorum", func(t *testing.T) {
		// Every founder signs another value for the last round, leading to
		// another state; the keeper logs it as adopted from a peer, with
		// that state, and drops the verdicts on the round (the beacon,
		// drawn from the value, drew other challenges). In itself the
		// ledger is consistent: a quorum certified what it holds. Only the
		// other ledger's certificate of the same round contradicts it.
		f := r.forge(t, k.node)
		d := f.decisionOf(k.last)
		cm := f.msg(d).Commit
		v := *cm.Value
		v.Next = k.bent.Hash()
		f.setCommit(d, &consensus.Commit{Value: &v, Cert: f.certify(&v, cm.Cert.View)}, true)
		f.insert(d+1, f.stateEntry(k.bent))
		f.entries = slices.DeleteFunc(f.entries, func(e ledger.Entry) bool {
			return e.Round == k.last && (e.Kind == ledger.KindVerdict || e.Kind == ledger.KindChallenge || e.Kind == ledger.KindResponse)
		})
		p := f.write()
		_, err := audit.Audit([]string{honest, p}, opts)
		want := fmt.Sprintf("%s: entry %d: round %d is certified as %s here and as", p, d, k.last, v.ID(f.run).Short())
		if !errors.Is(err, audit.ErrAudit) || !strings.Contains(err.Error(), want) {
			t.Fatalf("audit: %v\nwant %q", err, want)
		}
		// Listed first, the forged ledger is the reference; the honest
		// one is named, and the forged one beside it.
		if _, err := audit.Audit([]string{p, honest}, opts); !errors.Is(err, audit.ErrAudit) || !strings.Contains(err.Error(), "in "+p) {
			t.Fatalf("audit: %v", err)
		}
	})

	// Omissions: a keeper can always present itself as a node that
	// stopped early, or that lagged and adopted a later certified state
	// from a peer. Nothing in its ledger or any other contradicts that
	// (the certificates are all genuine), so no audit of the ledgers alone
	// can catch these in principle; a tree head the keeper gossiped during
	// the run, which other nodes keep in their summaries (vtrain audit
	// --witness), does.
	var w *ledger.SignedTreeHead
	for _, n := range r.c.Nodes {
		if h := n.Summary.Witnessed[k.node.ID]; h != nil && (w == nil || h.Size > w.Size) {
			w = h
		}
	}
	// The keeper's last head (of round last+1, once the run ended) may be
	// the one witnessed.
	if w == nil || w.Round < k.last-1 {
		t.Fatalf("no tree head of %s's from round %d on was witnessed: %+v", k.node.ID, k.last-1, w)
	}
	withHead := opts
	withHead.Witnessed = map[string]*ledger.SignedTreeHead{k.node.ID: w}
	for _, tc := range []struct {
		name string
		edit func(f *forger)
	}{
		{"the witnessed round and all after cut", func(f *forger) {
			f.entries = f.entries[:f.decisionOf(min(w.Round, k.last))]
		}},
		{"a witnessed round omitted as if adopted past", func(f *forger) {
			// The round before the last dropped with everything of it,
			// and the keeper's own update of the last; the last round's
			// certified decision logged as a link the keeper checked, and
			// the state it leads to as adopted from a peer.
			drop := k.last - 1
			d := f.decisionOf(k.last)
			f.setCommit(d, f.msg(d).Commit, true)
			f.insert(d+1, f.stateEntry(k.final))
			f.entries = slices.DeleteFunc(f.entries, func(e ledger.Entry) bool {
				own := e.Peer == f.keeper && e.Round == k.last && e.Kind == ledger.KindUpdate
				return own || e.Round == drop && e.Kind != ledger.KindTreeHead && e.Kind != ledger.KindReject
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := r.forge(t, k.node)
			tc.edit(f)
			p := f.write()
			_, alone := audit.Audit([]string{p, honest}, opts)
			t.Logf("without the witnessed tree head: %v", alone)
			_, err := audit.Audit([]string{p, honest}, withHead)
			if !errors.Is(err, audit.ErrAudit) || !strings.Contains(err.Error(), p+": entry ") || !strings.Contains(err.Error(), "gossiped") {
				t.Fatalf("audit with the keeper's gossiped tree head of round %d: %v", w.Round, err)
			}
		})
	}
}
