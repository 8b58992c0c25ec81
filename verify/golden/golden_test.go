package golden

// The golden vectors in testdata/vectors.json were derived once, from the
// byte layouts alone, by an independent implementation: regenerate them with
//
//	python3 verify/golden/testdata/derive.py
//
// and review the diff. Any vector that changes is a change of a wire,
// signature or ledger format that other peers and every auditor must
// follow: it needs a version bump of that encoding (its domain string, the
// spec version), not merely a regenerated file. Each test rebuilds a
// vector's inputs with the real vtrain functions and names the vector that
// disagrees.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/audit"
	"github.com/vtrain/vtrain/verify/ledger"
	"github.com/vtrain/vtrain/verify/spot"
)

// hexBytes is a byte string written in hex.
type hexBytes []byte

func (b *hexBytes) UnmarshalText(t []byte) error {
	v, err := hex.DecodeString(string(t))
	*b = v
	return err
}

// hash32 is a SHA-256 digest written in hex.
type hash32 [32]byte

func (h *hash32) UnmarshalText(t []byte) error {
	if len(t) != 64 {
		return fmt.Errorf("a hash is 64 hex digits, got %q", t)
	}
	_, err := hex.Decode(h[:], t)
	return err
}

// hexU64 is a uint64 written as 16 hex digits.
type hexU64 uint64

func (u *hexU64) UnmarshalText(t []byte) error {
	v, err := strconv.ParseUint(string(t), 16, 64)
	*u = hexU64(v)
	return err
}

type vectors struct {
	Comment string `json:"_comment"`
	RunID   struct {
		Founders  []string `json:"founders"`
		Canonical string   `json:"canonical"`
		RunID     hash32   `json:"run_id"`
	} `json:"run_id"`
	RoundSeed []struct {
		Name   string `json:"name"`
		Round  uint64 `json:"round"`
		Peer   string `json:"peer"`
		Seed   hexU64 `json:"seed"`
		Shards int    `json:"shards"`
		Shard  int    `json:"shard"`
	} `json:"round_seed"`
	Update []struct {
		Name        string   `json:"name"`
		Run         hash32   `json:"run"`
		Round       uint64   `json:"round"`
		Base        hash32   `json:"base"`
		From        string   `json:"from"`
		Samples     uint64   `json:"samples"`
		LossBits    string   `json:"loss_bits"`
		Loss        string   `json:"loss"`
		Seed        hexU64   `json:"seed"`
		Segments    []hash32 `json:"segments"`
		ResidualIn  hash32   `json:"residual_in"`
		ResidualOut hash32   `json:"residual_out"`
		Payload     hexBytes `json:"payload"`
		ID          hash32   `json:"id"`
		SignBytes   hexBytes `json:"sign_bytes"`
	} `json:"update"`
	State []struct {
		Name          string   `json:"name"`
		Round         uint64   `json:"round"`
		Theta         []string `json:"theta"`
		ThetaBits     []string `json:"theta_bits"`
		Momentum      []string `json:"momentum"`
		MomentumBits  []string `json:"momentum_bits"`
		Members       []member `json:"members"`
		Excluded      []string `json:"excluded"`
		ParamsDigest  hash32   `json:"params_digest"`
		MembersDigest hash32   `json:"members_digest"`
		StateHash     hash32   `json:"state_hash"`
	} `json:"state"`
	Voters []struct {
		Name   string   `json:"name"`
		Voters []string `json:"voters"`
		Digest hash32   `json:"digest"`
	} `json:"voters"`
	Snapshot []struct {
		Name       string              `json:"name"`
		Step       int64               `json:"step"`
		OptSteps   int64               `json:"opt_steps"`
		Params     []string            `json:"params"`
		ParamsBits []string            `json:"params_bits"`
		Opt        map[string][]string `json:"opt"`
		OptBits    map[string][]string `json:"opt_bits"`
		Hash       hash32              `json:"hash"`
		OptDigest  hash32              `json:"opt_digest"`
		ParamHash  hash32              `json:"param_hash"`
	} `json:"snapshot"`
	Vote []struct {
		vote
		Name      string   `json:"name"`
		Run       hash32   `json:"run"`
		SignBytes hexBytes `json:"sign_bytes"`
	} `json:"vote"`
	Join []struct {
		Name      string   `json:"name"`
		Run       hash32   `json:"run"`
		Round     uint64   `json:"round"`
		From      string   `json:"from"`
		SignBytes hexBytes `json:"sign_bytes"`
	} `json:"join"`
	Verdict []struct {
		verdict
		Name      string   `json:"name"`
		Run       hash32   `json:"run"`
		SignBytes hexBytes `json:"sign_bytes"`
	} `json:"verdict"`
	Certificate struct {
		Name   string   `json:"name"`
		Run    hash32   `json:"run"`
		Round  uint64   `json:"round"`
		View   uint32   `json:"view"`
		Value  hash32   `json:"value"`
		Voters []string `json:"voters"`
		Sigs   []struct {
			From      string   `json:"from"`
			Sig       hexBytes `json:"sig"`
			SignBytes hexBytes `json:"sign_bytes"`
		} `json:"sigs"`
	} `json:"certificate"`
	Value []struct {
		Name    string `json:"name"`
		Run     hash32 `json:"run"`
		Round   uint64 `json:"round"`
		Base    hash32 `json:"base"`
		Voters  hash32 `json:"voters"`
		Updates []struct {
			ID       hash32 `json:"id"`
			From     string `json:"from"`
			Newcomer bool   `json:"newcomer"`
			At       uint32 `json:"at"`
			Late     bool   `json:"late"`
		} `json:"updates"`
		Admit []struct {
			Round uint64   `json:"round"`
			From  string   `json:"from"`
			Sig   hexBytes `json:"sig"`
		} `json:"admit"`
		Verdicts   []verdict             `json:"verdicts"`
		Overturned []verdict             `json:"overturned"`
		Evidence   []struct{ A, B vote } `json:"evidence"`
		Next       hash32                `json:"next"`
		NextVoters hash32                `json:"next_voters"`
		ID         hash32                `json:"id"`
	} `json:"value"`
	Ledger struct {
		Decision struct {
			Base    string   `json:"base"`
			Result  string   `json:"result"`
			Updates []string `json:"updates"`
			Peers   []string `json:"peers"`
			Samples uint64   `json:"samples"`
			Signers int      `json:"signers"`
			JSON    string   `json:"json"`
		} `json:"decision"`
		Wire hexBytes `json:"wire"`
		Head struct {
			Run    hash32   `json:"run"`
			Round  uint64   `json:"round"`
			Size   uint64   `json:"size"`
			Root   hash32   `json:"root"`
			Signer string   `json:"signer"`
			Sig    hexBytes `json:"sig"`
		} `json:"head"`
		Entries []struct {
			Name     string `json:"name"`
			Kind     string `json:"kind"`
			Round    uint64 `json:"round"`
			Peer     string `json:"peer"`
			Reason   string `json:"reason"`
			Encoded  string `json:"encoded"`
			LeafHash hash32 `json:"leaf_hash"`
		} `json:"entries"`
		Node01              hash32   `json:"node_01"`
		Root3               hash32   `json:"root_3"`
		EmptyRoot           hash32   `json:"empty_root"`
		TreeHeadSignedBytes hexBytes `json:"tree_head_signed_bytes"`
	} `json:"ledger"`
	Spot struct {
		Round           uint64   `json:"round"`
		Result          hash32   `json:"result"`
		Updates         []hash32 `json:"updates"`
		Beacon          hash32   `json:"beacon"`
		Update          hash32   `json:"update"`
		ChallengedX     string   `json:"challenged_x"`
		ChallengedXBits hexU64   `json:"challenged_x_bits"`
		ChallengerU64   hexU64   `json:"challenger_u64"`
		Peer            string   `json:"peer"`
		Peers           []string `json:"peers"`
		Challenger      string   `json:"challenger"`
		Blocks          []struct {
			Challenger string `json:"challenger"`
			N          int    `json:"n"`
			M          int    `json:"m"`
			Sent       []int  `json:"sent"`
			Blocks     []int  `json:"blocks"`
		} `json:"blocks"`
	} `json:"spot"`
}

type member struct {
	ID       string `json:"id"`
	Founder  bool   `json:"founder"`
	Seat     bool   `json:"seat"`
	Since    uint64 `json:"since"`
	Work     uint64 `json:"work"`
	Last     uint64 `json:"last"`
	Residual hash32 `json:"residual"`
	Pace     uint32 `json:"pace"`
	Unproven hash32 `json:"unproven"` // absent: none
}

type vote struct {
	Kind      string   `json:"kind"`
	Round     uint64   `json:"round"`
	View      uint32   `json:"view"`
	Value     hash32   `json:"value"`
	ValidView int32    `json:"valid_view"`
	From      string   `json:"from"`
	Sig       hexBytes `json:"sig"`
}

func (v vote) vote(t *testing.T) consensus.Vote {
	t.Helper()
	kinds := map[string]consensus.VoteKind{"proposal": consensus.KindProposal, "prevote": consensus.KindPrevote, "precommit": consensus.KindPrecommit}
	k, ok := kinds[v.Kind]
	if !ok {
		t.Fatalf("unknown vote kind %q", v.Kind)
	}
	return consensus.Vote{Kind: k, Round: v.Round, View: v.View, Value: consensus.Hash(v.Value), ValidView: v.ValidView,
		From: consensus.PeerID(v.From), Sig: v.Sig}
}

type verdict struct {
	Round   uint64 `json:"round"`
	Update  hash32 `json:"update"`
	Accused string `json:"accused"`
	Segment int    `json:"segment"`
	From    string `json:"from"`
	Pass    bool   `json:"pass"`
	Reason  string `json:"reason"`
	Fault   uint8  `json:"fault"`
	Step    int    `json:"step"`
	Answer  *struct {
		Leaves []hash32 `json:"leaves"`
		Proof  hexBytes `json:"proof"`
		Sig    hexBytes `json:"sig"`
	} `json:"answer"`
	Sig hexBytes `json:"sig"`
}

func (v verdict) msg() consensus.VerdictMsg {
	m := consensus.VerdictMsg{Round: v.Round, Update: consensus.Hash(v.Update), Accused: consensus.PeerID(v.Accused),
		Segment: v.Segment, From: consensus.PeerID(v.From), Pass: v.Pass, Reason: v.Reason, Fault: consensus.Fault(v.Fault), Step: v.Step, Sig: v.Sig}
	if a := v.Answer; a != nil {
		m.Answer = &consensus.Answer{Round: v.Round, Update: consensus.Hash(v.Update), Segment: v.Segment, Proof: a.Proof, Sig: a.Sig}
		for _, l := range a.Leaves {
			m.Answer.Leaves = append(m.Answer.Leaves, consensus.Hash(l))
		}
	}
	return m
}

// load reads the vectors strictly: a section that derive.py writes and
// no test reads is an error, as is a missing one.
func load(t *testing.T) *vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("testdata/vectors.json: %v", err)
	}
	if v.RunID.Canonical == "" || len(v.RoundSeed) == 0 || len(v.Update) == 0 || len(v.State) == 0 || len(v.Voters) == 0 ||
		len(v.Snapshot) == 0 || len(v.Vote) == 0 || len(v.Join) == 0 || len(v.Verdict) == 0 || len(v.Certificate.Sigs) == 0 ||
		len(v.Value) == 0 || len(v.Ledger.Entries) == 0 || len(v.Spot.Blocks) == 0 {
		t.Fatal("testdata/vectors.json: a section is missing or empty")
	}
	return &v
}

// floats returns the float32 vector with the given bits, after checking
// that the decimals written beside them (for the reader) are those floats.
func floats(t *testing.T, bits, decimals []string) []float32 {
	t.Helper()
	if len(bits) != len(decimals) {
		t.Fatalf("%d bit patterns, %d decimals", len(bits), len(decimals))
	}
	out := make([]float32, len(bits))
	for i, s := range bits {
		b, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			t.Fatalf("float bits %q: %v", s, err)
		}
		out[i] = math.Float32frombits(uint32(b))
		d, err := strconv.ParseFloat(decimals[i], 32)
		if err != nil || math.Float32bits(float32(d)) != uint32(b) {
			t.Fatalf("decimal %q is not the float32 with bits %s", decimals[i], s)
		}
	}
	return out
}

func peers(ids []string) []consensus.PeerID {
	out := make([]consensus.PeerID, len(ids))
	for i, p := range ids {
		out[i] = consensus.PeerID(p)
	}
	return out
}

// same reports a mismatch of an encoding with its golden value.
func same(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

func TestRunID(t *testing.T) {
	v := load(t).RunID
	spec := runspec.Default().WithFounders(v.Founders...)
	got := spec.Canonical()
	if string(got) != v.Canonical {
		t.Errorf("run_id: canonical spec:\n got %s\nwant %s", got, v.Canonical)
	}
	id := spec.RunID()
	same(t, "run_id: run ID", id[:], v.RunID[:])
	if _, err := runspec.FromCanonical([]byte(v.Canonical), runspec.ID(v.RunID)); err != nil {
		t.Errorf("run_id: the golden canonical spec does not read back: %v", err)
	}
}

func TestRoundSeed(t *testing.T) {
	spec := runspec.Default().WithFounders(load(t).RunID.Founders...)
	for _, v := range load(t).RoundSeed {
		seed := consensus.RoundSeed(spec, v.Round, consensus.PeerID(v.Peer))
		if seed != uint64(v.Seed) {
			t.Errorf("round_seed %q: RoundSeed = %016x, want %016x", v.Name, seed, uint64(v.Seed))
		}
		s := spec
		s.Data.Shards = v.Shards
		if got := consensus.ShardOf(s, consensus.PeerID(v.Peer)); got != v.Shard {
			t.Errorf("round_seed %q: ShardOf(%d shards) = %d, want %d", v.Name, v.Shards, got, v.Shard)
		}
	}
}

func TestUpdateID(t *testing.T) {
	for _, v := range load(t).Update {
		u := consensus.Update{Round: v.Round, Base: consensus.Hash(v.Base), From: consensus.PeerID(v.From), Samples: v.Samples,
			Loss: floats(t, []string{v.LossBits}, []string{v.Loss})[0], Payload: v.Payload, Seed: uint64(v.Seed),
			ResidualIn: consensus.Hash(v.ResidualIn), ResidualOut: consensus.Hash(v.ResidualOut), Sig: []byte("not covered")}
		for _, s := range v.Segments {
			u.Segments = append(u.Segments, consensus.Hash(s))
		}
		id := u.ID(consensus.RunID(v.Run))
		same(t, fmt.Sprintf("update %q: ID", v.Name), id[:], v.ID[:])
		same(t, fmt.Sprintf("update %q: UpdateSignBytes", v.Name), consensus.UpdateSignBytes(consensus.RunID(v.Run), &u), v.SignBytes)
	}
}

func TestStateHash(t *testing.T) {
	for _, v := range load(t).State {
		st := consensus.State{Round: v.Round, Theta: floats(t, v.ThetaBits, v.Theta), Momentum: floats(t, v.MomentumBits, v.Momentum)}
		for _, m := range v.Members {
			st.Members.List = append(st.Members.List, consensus.Member{ID: consensus.PeerID(m.ID), Founder: m.Founder, Seat: m.Seat,
				Since: m.Since, Work: m.Work, Last: m.Last, Residual: consensus.Hash(m.Residual), Pace: m.Pace, Unproven: consensus.Hash(m.Unproven)})
		}
		st.Members.Excluded = peers(v.Excluded)
		if err := st.Members.Validate(v.Round); err != nil {
			t.Errorf("state %q: the golden membership is not valid: %v", v.Name, err)
		}
		p := consensus.ParamsDigest(st.Theta, st.Momentum)
		same(t, fmt.Sprintf("state %q: ParamsDigest", v.Name), p[:], v.ParamsDigest[:])
		m := st.Members.Digest()
		same(t, fmt.Sprintf("state %q: Members.Digest", v.Name), m[:], v.MembersDigest[:])
		h := consensus.StateHash(v.Round, consensus.Hash(v.ParamsDigest), consensus.Hash(v.MembersDigest))
		same(t, fmt.Sprintf("state %q: StateHash", v.Name), h[:], v.StateHash[:])
		h = st.Hash()
		same(t, fmt.Sprintf("state %q: State.Hash", v.Name), h[:], v.StateHash[:])
	}
}

func TestVotersDigest(t *testing.T) {
	for _, v := range load(t).Voters {
		d := consensus.VotersDigest(peers(v.Voters))
		same(t, fmt.Sprintf("voters %q: VotersDigest", v.Name), d[:], v.Digest[:])
	}
}

func TestSnapshotHash(t *testing.T) {
	for _, v := range load(t).Snapshot {
		s := trainer.Snapshot{Step: v.Step, OptSteps: v.OptSteps, Params: floats(t, v.ParamsBits, v.Params), Opt: map[string][]float32{}}
		if len(v.Opt) != len(v.OptBits) {
			t.Fatalf("snapshot %q: opt and opt_bits differ", v.Name)
		}
		for k, bits := range v.OptBits {
			s.Opt[k] = floats(t, bits, v.Opt[k])
		}
		h := s.Hash()
		same(t, fmt.Sprintf("snapshot %q: Snapshot.Hash", v.Name), h[:], v.Hash[:])
		o := s.OptHash()
		same(t, fmt.Sprintf("snapshot %q: Snapshot.OptHash", v.Name), o[:], v.OptDigest[:])
		// Light: the parameters and the buffers' digest hash the same.
		l := s.Light()
		lh := l.Hash()
		same(t, fmt.Sprintf("snapshot %q: the light snapshot's Hash", v.Name), lh[:], v.Hash[:])
		p := trainer.ParamHash(s.Params)
		same(t, fmt.Sprintf("snapshot %q: ParamHash", v.Name), p[:], v.ParamHash[:])
	}
}

func TestSignBytes(t *testing.T) {
	vs := load(t)
	for _, v := range vs.Vote {
		x := v.vote.vote(t)
		same(t, fmt.Sprintf("vote %q: VoteSignBytes", v.Name), consensus.VoteSignBytes(consensus.RunID(v.Run), &x), v.SignBytes)
	}
	for _, v := range vs.Join {
		j := consensus.JoinRequest{Round: v.Round, From: consensus.PeerID(v.From), Sig: []byte("not covered")}
		same(t, fmt.Sprintf("join %q: JoinSignBytes", v.Name), consensus.JoinSignBytes(consensus.RunID(v.Run), &j), v.SignBytes)
	}
	for _, v := range vs.Verdict {
		m := v.verdict.msg()
		same(t, fmt.Sprintf("verdict %q: VerdictSignBytes", v.Name), consensus.VerdictSignBytes(consensus.RunID(v.Run), &m), v.SignBytes)
	}
}

// TestCertificate checks a certificate the way every node and auditor
// does (consensus.VerifyCertificate): each signature must be over the
// golden sign bytes of the precommit it stands for.
func TestCertificate(t *testing.T) {
	v := load(t).Certificate
	want := map[consensus.PeerID][]byte{}
	c := consensus.Certificate{Round: v.Round, View: v.View, Value: consensus.Hash(v.Value)}
	for _, s := range v.Sigs {
		c.Sigs = append(c.Sigs, consensus.Signature{From: consensus.PeerID(s.From), Sig: s.Sig})
		want[consensus.PeerID(s.From)] = s.SignBytes
	}
	checked := 0
	verify := func(p consensus.PeerID, msg, sig []byte) bool {
		checked++
		same(t, fmt.Sprintf("certificate %q: the precommit sign bytes of %s", v.Name, p), msg, want[p])
		return bytes.Equal(msg, want[p])
	}
	if err := consensus.VerifyCertificate(consensus.RunID(v.Run), &c, peers(v.Voters), verify); err != nil {
		t.Errorf("certificate %q: %v", v.Name, err)
	}
	if checked != len(v.Sigs) {
		t.Errorf("certificate %q: %d signatures checked, want %d", v.Name, checked, len(v.Sigs))
	}

	// The same signatures do not certify another value.
	c.Value[0] ^= 1
	quiet := func(p consensus.PeerID, msg, sig []byte) bool { return bytes.Equal(msg, want[p]) }
	if consensus.VerifyCertificate(consensus.RunID(v.Run), &c, peers(v.Voters), quiet) == nil {
		t.Errorf("certificate %q: accepted for another value", v.Name)
	}
}

func TestValueID(t *testing.T) {
	for _, v := range load(t).Value {
		x := consensus.Value{Round: v.Round, Base: consensus.Hash(v.Base), Voters: consensus.Hash(v.Voters),
			Next: consensus.Hash(v.Next), NextVoters: consensus.Hash(v.NextVoters)}
		for _, u := range v.Updates {
			x.Updates = append(x.Updates, consensus.UpdateRef{ID: consensus.Hash(u.ID), From: consensus.PeerID(u.From), Newcomer: u.Newcomer, At: u.At, Late: u.Late})
		}
		for _, j := range v.Admit {
			x.Admit = append(x.Admit, consensus.JoinRequest{Round: j.Round, From: consensus.PeerID(j.From), Sig: j.Sig})
		}
		for _, d := range v.Verdicts {
			x.Verdicts = append(x.Verdicts, d.msg())
		}
		for _, d := range v.Overturned {
			x.Overturned = append(x.Overturned, d.msg())
		}
		for _, q := range v.Evidence {
			x.Evidence = append(x.Evidence, consensus.Equivocation{A: q.A.vote(t), B: q.B.vote(t)})
		}
		id := x.ID(consensus.RunID(v.Run))
		same(t, fmt.Sprintf("value %q: Value.ID", v.Name), id[:], v.ID[:])
	}
}

func TestLedger(t *testing.T) {
	v := load(t).Ledger
	d := v.Decision
	data, err := json.Marshal(audit.Decision{Base: d.Base, Result: d.Result, Updates: d.Updates, Peers: d.Peers, Samples: d.Samples, Signers: d.Signers})
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != d.JSON {
		t.Errorf("ledger: audit.Decision data:\n got %s\nwant %s", data, d.JSON)
	}
	h := v.Head
	head := ledger.SignedTreeHead{TreeHead: ledger.TreeHead{Run: ledger.Hash(h.Run), Round: h.Round, Size: h.Size, Root: ledger.Hash(h.Root)},
		Signer: h.Signer, Sig: h.Sig}
	built := map[string]ledger.Entry{
		"decision":  {Kind: ledger.KindDecision, Wire: v.Wire, Data: json.RawMessage(d.JSON)},
		"leave":     {Kind: ledger.KindLeave},
		"tree_head": {Kind: ledger.KindTreeHead, Head: &head},
	}
	var tree ledger.Tree
	for _, w := range v.Entries {
		e, ok := built[w.Kind]
		if !ok {
			t.Fatalf("ledger entry %q: no test builds a %s entry", w.Name, w.Kind)
		}
		e.Round, e.Peer, e.Reason = w.Round, w.Peer, w.Reason
		enc := e.Encode()
		if string(enc) != w.Encoded {
			t.Errorf("ledger entry %q: Entry.Encode:\n got %s\nwant %s", w.Name, enc, w.Encoded)
		}
		if _, err := ledger.DecodeEntry([]byte(w.Encoded)); err != nil {
			t.Errorf("ledger entry %q: the golden encoding does not decode: %v", w.Name, err)
		}
		leaf := ledger.LeafHash([]byte(w.Encoded))
		same(t, fmt.Sprintf("ledger entry %q: LeafHash", w.Name), leaf[:], w.LeafHash[:])
		tree.Append(ledger.Hash(w.LeafHash))
	}
	if len(v.Entries) != 3 {
		t.Fatalf("ledger: %d entries, the tree vectors are over 3", len(v.Entries))
	}
	n := ledger.NodeHash(ledger.Hash(v.Entries[0].LeafHash), ledger.Hash(v.Entries[1].LeafHash))
	same(t, "ledger: NodeHash(leaf 0, leaf 1)", n[:], v.Node01[:])
	r := tree.Root(2)
	same(t, "ledger: root of 2", r[:], v.Node01[:])
	r = tree.Root(3)
	same(t, "ledger: root of 3", r[:], v.Root3[:])
	r = tree.Root(0)
	same(t, "ledger: root of 0", r[:], v.EmptyRoot[:])

	// A tree head's signature covers the golden bytes: sign with a fixed
	// Ed25519 key (deterministic) and check the signature over them.
	seed := sha256.Sum256([]byte("vtrain golden tree head key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	key, err := crypto.UnmarshalEd25519PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ledger.SignTreeHead(head.TreeHead, key)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(priv.Public().(ed25519.PublicKey), v.TreeHeadSignedBytes, s.Sig) {
		t.Errorf("ledger: the tree head's signature is not over the golden bytes %x", []byte(v.TreeHeadSignedBytes))
	}
	if err := s.Verify(); err != nil {
		t.Errorf("ledger: tree head: %v", err)
	}
}

func TestSpot(t *testing.T) {
	v := load(t).Spot
	ids := make([]spot.Hash, len(v.Updates))
	for i, u := range v.Updates {
		ids[i] = u
	}
	b := spot.Beacon(v.Round, v.Result, ids)
	same(t, "spot: Beacon", b[:], v.Beacon[:])

	// The challenge draw x: Draw is x < rate, so x itself is the largest
	// rate that does not challenge.
	x := math.Float64frombits(uint64(v.ChallengedXBits))
	if d, err := strconv.ParseFloat(v.ChallengedX, 64); err != nil || d != x {
		t.Fatalf("spot: challenged_x %q is not the float64 with bits %016x", v.ChallengedX, uint64(v.ChallengedXBits))
	}
	if spot.Draw(v.Beacon, v.Update, x) || !spot.Draw(v.Beacon, v.Update, math.Nextafter(x, 2)) {
		t.Errorf("spot: the challenge draw of %x is not %v (%016x)", v.Update[:4], x, uint64(v.ChallengedXBits))
	}
	if who, ok := spot.Assign(v.Beacon, v.Update, v.Peer, v.Peers); !ok || who != v.Challenger {
		t.Errorf("spot: Assign = %s, %v; want %s (challenger draw %016x)", who, ok, v.Challenger, uint64(v.ChallengerU64))
	}
	for _, b := range v.Blocks {
		if got := spot.Blocks(v.Beacon, v.Update, b.Challenger, b.N, b.M, b.Sent); !slices.Equal(got, b.Blocks) {
			t.Errorf("spot: Blocks(%s, %d of %d) = %v, want %v", b.Challenger, b.M, b.N, got, b.Blocks)
		}
	}
}
