package audit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
)

// The records a node keeps in its ledger, and how the audit reads them.

// Files of a node's ledger in its output directory.
const (
	LedgerFile = "ledger.vtl"
	BlobDir    = "blobs"
)

// StoreLimit is the largest payload a run's ledger stores: a signed
// message, a state, or a challenge's evidence (three snapshots of up to
// three vectors and a residual).
func StoreLimit(spec runspec.Spec) int64 {
	m, _ := spec.ModelSpec()
	return max(int64(spec.Rounds.MaxMessage), int64(4*10*m.NumParams())+1<<20)
}

// Decision is the data of a decision entry: a round's certified decision
// as the keeper took it. The entry's Wire holds the commit (value and
// certificate) as a signed message, which the audit checks; these fields
// summarise it for reports.
type Decision struct {
	Base     string   `json:"base"`
	Result   string   `json:"result"`
	Updates  []string `json:"updates"`
	Peers    []string `json:"peers"`
	Samples  uint64   `json:"samples"`
	Signers  int      `json:"signers"`            // precommits in the certificate
	Restored bool     `json:"restored,omitempty"` // a link of a chain the keeper checked to adopt a state (a state entry follows the last)
	// Late lists the peers whose late update (of the round before, which
	// did not aggregate one of theirs: consensus/late.go) the decision
	// aggregates, sorted: credited work, one round late.
	Late []string `json:"late,omitempty"`
	// NextVoters lists the next round's voters of a restored link whose
	// value changes the voter set.
	NextVoters []string `json:"next_voters,omitempty"`
}

// StateData is the data of a state entry: the adopted state's round and
// hash; its vectors and membership are in the store (see EncodeState).
type StateData struct {
	Round uint64 `json:"round"`
	Hash  string `json:"hash"`
}

// ChallengeData is the data of a challenge entry in the ledger.
type ChallengeData struct {
	Update     string `json:"update"`
	Challenger string `json:"challenger"`
	Beacon     string `json:"beacon"`
}

// RejectionData is the data of a rejection entry: how many messages of
// one peer in one round were refused for one kind of reason (the entry's
// Reason is the first such reason verbatim).
type RejectionData struct {
	Count int `json:"count"`
}

// EncodeState is an agreed state as a ledger payload (and a node's
// checkpoint, with more metadata and tensors): safetensors with theta and
// momentum, the round and the membership (JSON) in the metadata.
func EncodeState(st consensus.State, meta map[string]string, extra ...safetensors.Tensor) []byte {
	ms, _ := json.Marshal(st.Members)
	md := map[string]string{"round": fmt.Sprint(st.Round), "members": string(ms)}
	for k, v := range meta {
		md[k] = v
	}
	ts := append([]safetensors.Tensor{
		{Name: "momentum", Shape: []int{len(st.Momentum)}, Data: st.Momentum},
		{Name: "theta", Shape: []int{len(st.Theta)}, Data: st.Theta},
	}, extra...)
	slices.SortFunc(ts, func(a, b safetensors.Tensor) int { return strings.Compare(a.Name, b.Name) })
	return safetensors.Encode(ts, md)
}

// DecodeState reads what EncodeState wrote, and the file's other tensors.
func DecodeState(b []byte) (consensus.State, *safetensors.File, error) {
	f, err := safetensors.Decode(b)
	if err != nil {
		return consensus.State{}, nil, err
	}
	th, ok1 := f.Get("theta")
	mo, ok2 := f.Get("momentum")
	if !ok1 || !ok2 || len(th.Data) != len(mo.Data) {
		return consensus.State{}, nil, fmt.Errorf("state without theta and momentum of one size")
	}
	st := consensus.State{Theta: th.Data, Momentum: mo.Data}
	if _, err := fmt.Sscan(f.Metadata["round"], &st.Round); err != nil {
		return consensus.State{}, nil, fmt.Errorf("state round: %v", err)
	}
	if err := json.Unmarshal([]byte(f.Metadata["members"]), &st.Members); err != nil {
		return consensus.State{}, nil, fmt.Errorf("state members: %v", err)
	}
	if err := st.Members.Validate(st.Round); err != nil {
		return consensus.State{}, nil, err
	}
	return st, f, nil
}

// EncodeEvidence is a challenge answer as the ledger stores it (in the
// payload store), for an auditor to re-execute: safetensors, one tensor
// per vector (final. + params or opt.NAME in runs with a tolerance;
// opening.NNN for each residual block opened, its block number and
// inclusion paths in the metadata), the steps in the metadata.
func EncodeEvidence(ev trainer.Evidence) []byte {
	var ts []safetensors.Tensor
	meta := map[string]string{}
	add := func(prefix string, s *trainer.Snapshot) {
		if s == nil {
			return
		}
		meta[prefix+"step"], meta[prefix+"opt_steps"] = fmt.Sprint(s.Step), fmt.Sprint(s.OptSteps)
		if s.IsLight() {
			meta[prefix+"opt_digest"] = hex.EncodeToString(s.OptDigest[:])
		}
		ts = append(ts, safetensors.Tensor{Name: prefix + "params", Shape: []int{len(s.Params)}, Data: s.Params})
		for k, v := range s.Opt {
			ts = append(ts, safetensors.Tensor{Name: prefix + "opt." + k, Shape: []int{len(v)}, Data: v})
		}
	}
	add("final.", ev.Final)
	path := func(p []trainer.Hash) string {
		var b []byte
		for _, h := range p {
			b = append(b, h[:]...)
		}
		return hex.EncodeToString(b)
	}
	for i, op := range ev.Openings {
		name := fmt.Sprintf("opening.%03d", i)
		ts = append(ts, safetensors.Tensor{Name: name, Shape: []int{len(op.In)}, Data: op.In})
		meta[name+".block"], meta[name+".in_path"], meta[name+".out_path"] = fmt.Sprint(op.Block), path(op.InPath), path(op.OutPath)
	}
	if a := ev.Answer; a != nil {
		var leaves []byte
		for _, l := range a.Leaves {
			leaves = append(leaves, l[:]...)
		}
		meta["answer.round"], meta["answer.update"], meta["answer.segment"] = fmt.Sprint(a.Round), hex.EncodeToString(a.Update[:]), fmt.Sprint(a.Segment)
		meta["answer.leaves"], meta["answer.sig"] = hex.EncodeToString(leaves), hex.EncodeToString(a.Sig)
	}
	slices.SortFunc(ts, func(a, b safetensors.Tensor) int { return strings.Compare(a.Name, b.Name) })
	return safetensors.Encode(ts, meta)
}

// DecodeEvidence reads what EncodeEvidence wrote.
func DecodeEvidence(b []byte) (trainer.Evidence, error) {
	f, err := safetensors.Decode(b)
	if err != nil {
		return trainer.Evidence{}, err
	}
	get := func(prefix string) (*trainer.Snapshot, error) {
		p, ok := f.Get(prefix + "params")
		if !ok {
			return nil, nil
		}
		s := &trainer.Snapshot{Params: p.Data, Opt: map[string][]float32{}}
		if _, err := fmt.Sscan(f.Metadata[prefix+"step"], &s.Step); err != nil {
			return nil, fmt.Errorf("evidence: %sstep: %v", prefix, err)
		}
		if _, err := fmt.Sscan(f.Metadata[prefix+"opt_steps"], &s.OptSteps); err != nil {
			return nil, fmt.Errorf("evidence: %sopt_steps: %v", prefix, err)
		}
		for _, t := range f.Tensors {
			if k, ok := strings.CutPrefix(t.Name, prefix+"opt."); ok {
				s.Opt[k] = t.Data
			}
		}
		if dg, ok := f.Metadata[prefix+"opt_digest"]; ok {
			h, err := hexHash(dg)
			if err != nil || len(s.Opt) > 0 {
				return nil, fmt.Errorf("evidence: %sopt_digest: a light snapshot with %d buffers", prefix, len(s.Opt))
			}
			d := trainer.Hash(h)
			s.Opt, s.OptDigest = nil, &d
		}
		return s, nil
	}
	var ev trainer.Evidence
	if ev.Final, err = get("final."); err != nil {
		return ev, err
	}
	path := func(s string) ([]trainer.Hash, error) {
		b, err := hex.DecodeString(s)
		if err != nil || len(b)%32 != 0 || len(b) > 64*32 {
			return nil, fmt.Errorf("evidence: an inclusion path of %d bytes", len(b))
		}
		var p []trainer.Hash
		for i := 0; i < len(b); i += 32 {
			p = append(p, trainer.Hash(b[i:i+32]))
		}
		return p, nil
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("opening.%03d", i)
		t, ok := f.Get(name)
		if !ok {
			break
		}
		op := trainer.Opening{In: t.Data}
		_, err1 := fmt.Sscan(f.Metadata[name+".block"], &op.Block)
		var err2, err3 error
		op.InPath, err2 = path(f.Metadata[name+".in_path"])
		op.OutPath, err3 = path(f.Metadata[name+".out_path"])
		if err := errors.Join(err1, err2, err3); err != nil {
			return ev, fmt.Errorf("evidence: %s: %v", name, err)
		}
		ev.Openings = append(ev.Openings, op)
	}
	if l, ok := f.Metadata["answer.leaves"]; ok {
		a := &consensus.Answer{}
		leaves, err1 := hex.DecodeString(l)
		upd, err2 := hexHash(f.Metadata["answer.update"])
		sig, err3 := hex.DecodeString(f.Metadata["answer.sig"])
		_, err4 := fmt.Sscan(f.Metadata["answer.round"], &a.Round)
		_, err5 := fmt.Sscan(f.Metadata["answer.segment"], &a.Segment)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil || len(leaves)%32 != 0 {
			return ev, fmt.Errorf("evidence: answer: %v", err)
		}
		for i := 0; i < len(leaves); i += 32 {
			a.Leaves = append(a.Leaves, consensus.Hash(leaves[i:i+32]))
		}
		a.Update, a.Sig = upd, sig
		ev.Answer = a
	}
	return ev, nil
}
