package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/ledger"
	"github.com/vtrain/vtrain/verify/spot"
)

// replay re-derives a run from its ledger: every decided round's aggregate
// recomputed from the logged updates and checked against the committed
// state hash, every verdict checked against the beacon's draw, and, with
// the data, the keeper's challenges re-executed (full: every segment of
// every aggregated update).
type replay struct {
	spec  runspec.Spec
	run   runspec.ID
	store *ledger.Store
	dec   *compress.Decoder
	train *data.Dataset // nil without --data
	full  bool

	updates map[trainer.Hash]*trainer.UpdateMsg // every update logged
	known   bool                                // the state below is the agreed state of round
	round   uint64
	theta   []float32
	mom     []float32
	excl    []trainer.PeerID
	bases   map[uint64][]float32         // θ_r of replayed rounds
	decided map[uint64]*node.Decision    // by round
	resp    map[string][]byte            // challenge answers by round|accused
	resid   map[trainer.PeerID][]float32 // --full: each peer's residual, from its first update here
	// --full: aggregated updates that do not re-execute, and the entry
	// being replayed
	findings []finding
	entry    int

	Recomputed int `json:"aggregates_recomputed"`
	Skipped    int `json:"aggregates_not_replayable"` // rounds after a gap (a missing update)
	Challenges int `json:"challenges_replayed"`
	Segments   int `json:"segments_replayed"`
	Links      int `json:"payloads_rederived"`
}

func newReplay(spec runspec.Spec, store *ledger.Store, train *data.Dataset, full bool) (*replay, error) {
	g, err := trainer.Genesis(spec)
	if err != nil {
		return nil, err
	}
	dec, err := compress.NewDecoder(len(g.Theta))
	if err != nil {
		return nil, err
	}
	return &replay{spec: spec, run: spec.RunID(), store: store, dec: dec, train: train, full: full,
		updates: map[trainer.Hash]*trainer.UpdateMsg{}, known: true, theta: g.Theta, mom: g.Momentum,
		bases: map[uint64][]float32{0: g.Theta}, decided: map[uint64]*node.Decision{}, resp: map[string][]byte{},
		resid: map[trainer.PeerID][]float32{}}, nil
}

func hexHash(s string) (trainer.Hash, error) {
	var h trainer.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("%q is not a hash", s)
	}
	copy(h[:], b)
	return h, nil
}

// state adopts a state entry: the keeper took it from a peer (a join, a
// restart, a resync). Where the replay already holds that round's state,
// they must agree.
func (r *replay) state(e ledger.Entry) error {
	var sd node.StateData
	if err := json.Unmarshal(e.Data, &sd); err != nil {
		return fmt.Errorf("state: %v", err)
	}
	b, err := blob(r.store, e.Blob)
	if err != nil {
		return fmt.Errorf("state %v", err)
	}
	st, err := node.DecodeState(b)
	if err != nil {
		return fmt.Errorf("state payload: %v", err)
	}
	if len(st.Theta) != len(r.theta) {
		return fmt.Errorf("state of %d parameters, the model has %d", len(st.Theta), len(r.theta))
	}
	sh := st.Hash()
	if hex.EncodeToString(sh[:]) != sd.Hash || st.Round != sd.Round || st.Round != e.Round {
		return fmt.Errorf("state payload does not hash to the entry's %s of round %d", sd.Hash, sd.Round)
	}
	if r.known && r.round == st.Round {
		if mine := trainer.HashState(r.round, r.theta, r.mom, r.excl); mine != sh {
			return fmt.Errorf("adopted state %s of round %d, where the replay reaches %s", sh.Short(), st.Round, mine.Short())
		}
	}
	r.known, r.round, r.theta, r.mom, r.excl = true, st.Round, st.Theta, st.Momentum, st.Excluded
	r.bases[st.Round] = st.Theta
	return nil
}

// decision recomputes a decided round's aggregate from the logged updates.
func (r *replay) decision(e ledger.Entry, d *node.Decision) error {
	if len(d.Updates) == 0 { // a restore: a state entry follows
		r.known = false
		return nil
	}
	// As the engine keeps it: the round's latest decision with updates (a
	// restore that follows does not replace what verdicts were drawn from).
	r.decided[e.Round] = d
	if r.known && e.Round < r.round {
		return nil // decided before the state the keeper adopted since
	}
	if !r.known || r.round != e.Round {
		r.Skipped++
		r.known = false
		return nil
	}
	ups := make([]*compress.Sparse, len(d.Updates))
	msgs := make([]*trainer.UpdateMsg, len(d.Updates))
	for i, s := range d.Updates {
		id, err := hexHash(s)
		if err != nil {
			return fmt.Errorf("decision: update %v", err)
		}
		u, ok := r.updates[id]
		if !ok {
			r.Skipped++
			r.known = false
			return nil
		}
		if string(u.From) != d.Peers[i] {
			return fmt.Errorf("decision names update %s as %s's, it is %s's", id.Short(), d.Peers[i], u.From)
		}
		if ups[i], err = r.dec.Decode(u.Payload); err != nil {
			return fmt.Errorf("decision: update %s: %v", id.Short(), err)
		}
		msgs[i] = u
	}
	theta, mom, err := trainer.OuterStep(r.spec, r.theta, r.mom, ups)
	if err != nil {
		return err
	}
	excl := make([]trainer.PeerID, len(d.Excluded))
	for i, p := range d.Excluded {
		excl[i] = trainer.PeerID(p)
	}
	got := trainer.HashState(e.Round+1, theta, mom, excl)
	if hex.EncodeToString(got[:]) != d.Result {
		return fmt.Errorf("the aggregate of round %d's %d updates gives state %s, the decision commits %s", e.Round, len(ups), got.Short(), d.Result[:8])
	}
	if r.full && r.train != nil {
		for _, u := range msgs {
			bad, err := r.fullCheck(u, r.theta)
			if err != nil {
				return err
			}
			if bad != "" {
				r.findings = append(r.findings, finding{entry: r.entry, peer: string(u.From), what: bad})
			}
		}
	}
	r.Recomputed++
	r.round, r.theta, r.mom, r.excl = e.Round+1, theta, mom, excl
	r.bases[r.round] = theta
	return nil
}

// verdict checks a logged verdict against the beacon's draw of its round
// and, with the data, re-executes the keeper's own challenges.
func (r *replay) verdict(v *trainer.VerdictMsg, keeper string) (bool, error) {
	d := r.decided[v.Round]
	if d == nil {
		return false, nil // the keeper decided that round elsewhere (restored): nothing to check against
	}
	res, err := hexHash(d.Result)
	if err != nil {
		return false, err
	}
	ids := make([]spot.Hash, len(d.Updates))
	for i, s := range d.Updates {
		h, err := hexHash(s)
		if err != nil {
			return false, err
		}
		ids[i] = h
	}
	i := slices.IndexFunc(ids, func(h spot.Hash) bool { return h == v.Update })
	if i < 0 || d.Peers[i] != string(v.Accused) {
		return false, fmt.Errorf("verdict on %s, which round %d did not aggregate as %s's", v.Update.Short(), v.Round, v.Accused)
	}
	beacon := spot.Beacon(v.Round, res, ids)
	seg, who, ok := spot.Assign(beacon, v.Update, string(v.Accused), d.Peers, r.spec.Segments())
	if !ok || who != string(v.From) || seg != v.Segment {
		return false, fmt.Errorf("verdict from %s on segment %d: the beacon drew %s for segment %d", v.From, v.Segment, who, seg)
	}
	if r.train == nil || string(v.From) != keeper {
		return true, nil
	}
	base, u := r.bases[v.Round], r.updates[v.Update]
	if base == nil || u == nil {
		return true, nil
	}
	ans, ok := r.resp[fmt.Sprint(v.Round, "|", v.Accused)]
	if !ok {
		if v.Pass {
			return true, fmt.Errorf("a passing verdict on %s's round-%d update without the answer it judged", v.Accused, v.Round)
		}
		return true, nil // unanswered: nothing to re-execute
	}
	ev, err := node.DecodeEvidence(ans)
	if err != nil {
		return true, fmt.Errorf("challenge answer: %v", err)
	}
	rep, err := trainer.NewReplayer(r.spec, v.Round, v.Accused, r.train)
	if err != nil {
		return true, err
	}
	err = trainer.Judge(r.spec, base, u, v.Segment, ev, rep)
	if err != nil && !errors.Is(err, trainer.ErrChallenge) {
		return true, err
	}
	r.Challenges++
	if (err == nil) != v.Pass {
		return true, fmt.Errorf("re-executing the challenge of %s's round-%d update (segment %d) gives %v, the verdict says pass=%v", v.Accused, v.Round, v.Segment, err, v.Pass)
	}
	return true, nil
}

// finding is an aggregated update whose work does not re-execute: cheating
// that got into an aggregate before it was caught, or that was never
// caught.
type finding struct {
	entry      int
	peer, what string
}

// fullCheck re-executes every segment of u from base and, when the peer's
// residual is known, re-derives its payload. It returns what does not
// hold ("" when all does), or an error when it cannot run.
func (r *replay) fullCheck(u *trainer.UpdateMsg, base []float32) (string, error) {
	rep, err := trainer.NewReplayer(r.spec, u.Round, u.From, r.train)
	if err != nil {
		return "", err
	}
	st, err := rep.Start(base)
	if err != nil {
		return "", err
	}
	for seg := range r.spec.Segments() {
		lo, hi := trainer.SegmentSteps(r.spec, seg)
		if st, err = rep.Run(st, hi-lo); err != nil {
			return fmt.Sprintf("round-%d update: re-executing segment %d: %v", u.Round, seg, err), nil
		}
		r.Segments++
		if h := st.Hash(); h != u.Segments[seg] {
			return fmt.Sprintf("round-%d update: re-executing segment %d gives %s, committed %s", u.Round, seg, h.Short(), u.Segments[seg].Short()), nil
		}
	}
	res, ok := r.resid[u.From]
	if !ok {
		res = make([]float32, len(base)) // a peer's first update starts from a zero residual
	}
	if trainer.Hash(trainer.ParamHash(res)) != u.ResidualIn {
		delete(r.resid, u.From) // it started before this ledger (a restart): its residual is unknown here
		return "", nil
	}
	payload, out, err := trainer.Link(r.spec, base, st.Params, res)
	if err != nil || !bytes.Equal(payload, u.Payload) {
		return fmt.Sprintf("round-%d update: the payload is not the compressed delta of its re-executed steps", u.Round), nil
	}
	r.Links++
	r.resid[u.From] = out
	return "", nil
}

func (r *replay) String() string {
	return fmt.Sprintf("%d aggregates recomputed (%d not replayable), %d challenges, %d segments, %d payloads re-derived",
		r.Recomputed, r.Skipped, r.Challenges, r.Segments, r.Links)
}

// blob reads the payload an entry names by its address.
func blob(store *ledger.Store, addr string) ([]byte, error) {
	var h ledger.Hash
	if err := h.UnmarshalText([]byte(addr)); err != nil {
		return nil, fmt.Errorf("payload address %q", addr)
	}
	b, err := store.Get(h)
	if err != nil {
		return nil, fmt.Errorf("payload: %v", err)
	}
	return b, nil
}
