// Package runspec is a run's specification: the TOML file an ML engineer
// writes to launch a decentralized run, and the canonical form every peer
// hashes into the run ID. Two peers are in the same run exactly when their
// canonical specs are byte-identical, so everything that changes what a
// peer computes (model, data, optimizers, compression, aggregation, round
// rules, seed) is in the spec, and nothing else is.
//
// Parsing is strict: an unknown key, a value of the wrong type or out of
// range is an error that names the key (for example `inner.lr: must be
// positive, got -1`). Omitted keys take the defaults of [Default].
package runspec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/verify/zk"
)

// Version of the spec format.
const Version = 1

// MaxSpecBytes bounds a spec file, and a spec received from a peer.
const MaxSpecBytes = 64 << 10

// ErrSpec is wrapped by every spec error.
var ErrSpec = errors.New("runspec: invalid spec")

// Spec is a run's specification. Field names are the TOML keys.
type Spec struct {
	Version     int         `toml:"version" json:"version"`
	Run         Run         `toml:"run" json:"run"`
	Model       Model       `toml:"model" json:"model"`
	Data        Data        `toml:"data" json:"data"`
	Inner       Inner       `toml:"inner" json:"inner"`
	Outer       Outer       `toml:"outer" json:"outer"`
	Compression Compression `toml:"compression" json:"compression"`
	Aggregation Aggregation `toml:"aggregation" json:"aggregation"`
	Rounds      Rounds      `toml:"rounds" json:"rounds"`
	Verify      Verify      `toml:"verify" json:"verify"`
	Members     Members     `toml:"members" json:"members"`
	Privacy     Privacy     `toml:"privacy" json:"privacy,omitzero"` // absent from the canonical form when unused
}

// Run names the run and fixes its randomness.
type Run struct {
	Name   string `toml:"name" json:"name"`
	Seed   uint64 `toml:"seed" json:"seed"`     // θ₀, sharding, batch order
	Rounds int    `toml:"rounds" json:"rounds"` // rounds to run; 0 runs until stopped
}

// Model is the architecture (see package models).
type Model struct {
	Kind     string `toml:"kind" json:"kind"`
	Hidden   []int  `toml:"hidden" json:"hidden"`
	Channels []int  `toml:"channels" json:"channels"`
	// Definition pins a user's model (one registered with
	// models.Register, not built in): the hash of its definition
	// (models.Spec.Definition), which the run ID covers. Parse fills it
	// from this binary's model when the file leaves it out; a peer whose
	// model hashes differently cannot take part. Empty for built-in models.
	Definition string `toml:"definition" json:"definition,omitempty"`
}

// Data says what is trained on and how it is split between peers.
type Data struct {
	Source string `toml:"source" json:"source"` // "fashion-mnist" or "synthetic"
	Shards int    `toml:"shards" json:"shards"` // a peer trains shard H(peer) mod shards
}

// Inner is the local optimizer each peer runs for Steps steps per round.
type Inner struct {
	Optimizer   string  `toml:"optimizer" json:"optimizer"` // adamw or sgd
	LR          float64 `toml:"lr" json:"lr"`
	Steps       int     `toml:"steps" json:"steps"` // H
	Batch       int     `toml:"batch" json:"batch"`
	WeightDecay float64 `toml:"weight_decay" json:"weight_decay"`
	Momentum    float64 `toml:"momentum" json:"momentum"` // sgd
}

// Outer is the optimizer applied to the aggregated pseudo-gradient
// (DiLoCo: SGD with Nesterov momentum).
type Outer struct {
	Optimizer string  `toml:"optimizer" json:"optimizer"` // nesterov or sgd
	LR        float64 `toml:"lr" json:"lr"`
	Momentum  float64 `toml:"momentum" json:"momentum"`
}

// Compression of each peer's pseudo-gradient (see gossip/compress).
type Compression struct {
	Fraction float64 `toml:"fraction" json:"fraction"`
	Bits     int     `toml:"bits" json:"bits"`
	Chunk    int     `toml:"chunk" json:"chunk"`
}

// Aggregation rules.
const (
	AggMean        = "mean"
	AggTrimmedMean = "trimmed_mean"
	AggMedian      = "median"
	// AggCenteredClip is centered clipping (trainer.Aggregate): no
	// update moves the aggregate by more than the median update's norm
	// over n.
	AggCenteredClip = "centered_clip"
)

// Aggregation is how a round's updates are combined.
type Aggregation struct {
	Rule string  `toml:"rule" json:"rule"`
	Trim float64 `toml:"trim" json:"trim"` // trimmed_mean: share cut at each end
}

// Rounds are the round rules.
type Rounds struct {
	Timeout       Duration `toml:"timeout" json:"timeout"`                 // collecting updates
	CommitTimeout Duration `toml:"commit_timeout" json:"commit_timeout"`   // collecting commits
	Quorum        int      `toml:"quorum" json:"quorum"`                   // updates needed to close a round
	MaxMessage    int      `toml:"max_message" json:"max_message"`         // bytes; gossip's limit
	MaxUpdateNorm float64  `toml:"max_update_norm" json:"max_update_norm"` // L2 bound on a decoded update
}

// Verify is the spot-check policy. After each round the beacon (a hash of
// the decided commit) challenges each aggregated update with probability
// Rate, or NewcomerRate during the first Probation rounds after the peer's
// first aggregated update. A challenger re-executes the update's inner
// steps from the agreed state (public: nothing shipped), compares its state
// with the committed root after every Segment steps, and checks the payload
// on Openings blocks of ResidualBlock values of the accused's residual,
// which is all the accused sends (verify/spot, trainer.Check).
type Verify struct {
	Rate         float64 `toml:"rate" json:"rate"`
	NewcomerRate float64 `toml:"newcomer_rate" json:"newcomer_rate"`
	Probation    int     `toml:"probation" json:"probation"`     // rounds
	Segment      int     `toml:"segment" json:"segment"`         // inner steps between committed roots (k); 0: DefaultSegment
	Challengers  int     `toml:"challengers" json:"challengers"` // distinct challengers per drawn update
	// Openings is how many blocks of its residual a challenged peer opens
	// to each challenger, ResidualBlock the values per block (the leaves of
	// the residual's Merkle commitment).
	Openings      int      `toml:"openings" json:"openings"`
	ResidualBlock int      `toml:"residual_block" json:"residual_block"`
	Timeout       Duration `toml:"timeout" json:"timeout"` // for a challenged peer to answer
	// Tolerance is 0 for bit-exact re-execution (peers on the same engine),
	// else the largest relative L2 distance accepted between the committed
	// and the re-executed end state of a segment (CPU against GPU).
	Tolerance float64 `toml:"tolerance" json:"tolerance"`
}

// MaxOpenings bounds verify.openings: what a challenge may ask a peer to
// open of its residual.
const MaxOpenings = 256

// DefaultSegment is the inner steps between committed state roots when
// verify.segment is 0. A challenger re-executes the whole round, so the
// roots serve only to narrow a dispute down: each costs 32 bytes in every
// update, and a dispute's signed step hashes span one segment (32 bytes a
// step, asked for only when a root is missed).
const DefaultSegment = 100

// SegmentLen returns the inner steps per segment: verify.segment, or
// DefaultSegment (at most the round's inner steps) when it is 0.
func (s Spec) SegmentLen() int {
	if s.Verify.Segment > 0 {
		return s.Verify.Segment
	}
	return max(1, min(s.Inner.Steps, DefaultSegment))
}

// SegmentSteps returns the inner steps segment seg of a round spans:
// [lo, hi).
func (s Spec) SegmentSteps(seg int) (lo, hi int) {
	k := s.SegmentLen()
	return seg * k, min((seg+1)*k, s.Inner.Steps)
}

// Segments returns how many segments a round's inner steps make.
func (s Spec) Segments() int { k := s.SegmentLen(); return (s.Inner.Steps + k - 1) / k }

// Members is the run's membership rule. Anyone may ask to join; an agreed
// decision admits at most Admit joiners per round, up to Max members, and a
// member trains and contributes at once. Votes are seats: there are
// Voters of them, and the founders (Genesis) hold the first, in the order
// listed (founders beyond the seats are members without one); a seat that is empty (never filled, or vacated by a member
// excluded or dropped) goes, at most one per round, to the member with the
// most verified work that has passed its probation (verify.probation
// rounds, an update aggregated in at least half of them). A member with no
// update aggregated for Absent rounds is dropped (it may ask to join
// again). See package consensus.
type Members struct {
	Genesis []string `toml:"genesis" json:"genesis"` // founders' peer IDs, sorted; empty in a template: the node that starts the run
	Voters  int      `toml:"voters" json:"voters"`   // voting seats; the first founders hold them
	Admit   int      `toml:"admit" json:"admit"`     // joiners admitted per round, at most
	Absent  int      `toml:"absent" json:"absent"`   // rounds without an aggregated update before a member is dropped
	Max     int      `toml:"max" json:"max"`         // members, at most
}

// MaxFounders bounds members.genesis.
const MaxFounders = 1024

// MaxPrivateSteps bounds inner.steps in a zk run: a private update
// carries a commitment per step, and a verdict names the step it checks,
// below consensus.MaxLeaves.
const MaxPrivateSteps = 1<<16 - 1

// Privacy says how peers vouch for work on data that never leaves them.
// Mode "zk": the model is softmax regression trained by plain SGD, and the
// founders listed in Peers train on private data: every inner step of
// theirs is fixed-point SGD (verify/zk) on the batches the run's sampler
// draws from the samples under the data root they pinned here, and the
// step the round's beacon draws is answered with a Groth16 proof against
// the verifying key whose SHA-256 the spec pins (so the key is part of
// the run ID). The other peers train in float and are checked by
// re-execution as in any run. The keys come from vtrain ceremony (a
// multi-party setup) or vtrain keygen (a single party; see verify/zk).
type Privacy struct {
	Mode     string        `toml:"mode" json:"mode"`             // "" or "none"; "zk"
	Depth    int           `toml:"depth" json:"depth"`           // data tree depth: up to 2^depth samples per peer
	VKSHA256 string        `toml:"vk_sha256" json:"vk_sha256"`   // hex SHA-256 of the circuit's verifying key
	Peers    []PrivatePeer `toml:"peers" json:"peers,omitempty"` // the founders that prove their work, sorted by peer
	// ProofTimeout is how long a challenger (and a referee) waits for a
	// private peer's proof of a drawn step: a proof takes seconds to make
	// (0: DefaultProofTimeout).
	ProofTimeout Duration `toml:"proof_timeout" json:"proof_timeout,omitzero"`
	// Wait says whether the rounds wait for the private peers (nil: yes,
	// the default). A private peer's update comes at the pace of its
	// proofs (it trains once at most one is outstanding, node/private.go),
	// seconds where a public peer's may take a fraction of one; left to
	// the voters' pace it would be a known straggler, its updates stale
	// before they come, and a forged proof judged only after the run has
	// moved on by many rounds. Waiting, the agreed deadline follows the
	// slowest private member's pace (consensus/deadline.go). wait = false
	// leaves the private peers to the voters' pace like any member.
	// Normalised: only false is ever written (an explicit true is the
	// default, and must not change the run ID).
	Wait *bool `toml:"wait" json:"wait,omitempty"`
}

// WaitsForPrivate reports whether the rounds wait for the private peers
// (Privacy.Wait): a zk run that does not say wait = false.
func (s Spec) WaitsForPrivate() bool {
	return s.Privacy.Mode == "zk" && (s.Privacy.Wait == nil || *s.Privacy.Wait)
}

// DefaultProofTimeout is privacy.proof_timeout when the spec does not say.
const DefaultProofTimeout = 2 * time.Minute

// ProofTimeout is how long a private peer's proof is waited for.
func (s Spec) ProofTimeout() time.Duration {
	if d := s.Privacy.ProofTimeout.Duration; d > 0 {
		return d
	}
	return DefaultProofTimeout
}

// PrivatePeer is a founder that trains on private data: the root of the
// data tree over its samples (zk.DataTree, in hex, as vtrain keygen and
// the node print it) and their number, pinned before the run starts so
// that the run's sampler, not the peer, picks every batch it proves.
type PrivatePeer struct {
	Peer     string `toml:"peer" json:"peer"`
	DataRoot string `toml:"data_root" json:"data_root"`
	DataSize uint64 `toml:"data_size" json:"data_size"`
}

// PrivatePeer returns the private-data entry of peer, if the run lists it.
func (s Spec) PrivatePeer(peer string) (PrivatePeer, bool) {
	if s.Privacy.Mode != "zk" {
		return PrivatePeer{}, false
	}
	i, ok := slices.BinarySearchFunc(s.Privacy.Peers, peer, func(p PrivatePeer, id string) int { return strings.Compare(p.Peer, id) })
	if !ok {
		return PrivatePeer{}, false
	}
	return s.Privacy.Peers[i], true
}

// IsPrivate reports whether peer proves its work (see Privacy).
func (s Spec) IsPrivate(peer string) bool { _, ok := s.PrivatePeer(peer); return ok }

// ZKParams returns the circuit that a privacy = "zk" run proves: softmax
// regression on 28×28 images and 10 classes at the inner batch size and
// learning rate.
func (s Spec) ZKParams() zk.Params {
	return zk.Params{Features: 28 * 28, Classes: 10, Batch: s.Inner.Batch, Depth: s.Privacy.Depth,
		LR: zk.LRFixed(s.Inner.LR)}
}

// Duration is a time.Duration written as "30s" in TOML and JSON.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the defaults: a 784-256-10 MLP on Fashion-MNIST, 400
// AdamW inner steps per round, Nesterov outer steps (lr 1.0, momentum 0.5),
// top-0.5% one-bit (the sign times a per-chunk scale) compression,
// centered clipping. Measured on Fashion-MNIST with 4 peers over 30 rounds
// (benchmarks/README.md, "Accuracy against bytes"): at 200 inner steps
// every halving of the fraction costs about a point; 400 steps buy it back,
// so the run reaches the accuracy of top-1% at 200 steps with a payload
// 617× below the dense model (1.3 KB), for twice the compute per round. The outer momentum is lower
// than DiLoCo's 0.9 because sparsified, error-fed updates arrive in bursts
// that a high momentum amplifies: measured on Fashion-MNIST with 4 peers
// over 30 rounds, momentum 0.9 ends at 0.80 test accuracy, 0.5 at 0.88
// (benchmarks/README.md).
func Default() Spec {
	return Spec{
		Version:     Version,
		Run:         Run{Name: "vtrain", Seed: 1, Rounds: 30},
		Model:       Model{Kind: models.MLP, Hidden: []int{256}},
		Data:        Data{Source: "fashion-mnist", Shards: 0},
		Inner:       Inner{Optimizer: "adamw", LR: 1e-3, Steps: 400, Batch: 64, Momentum: 0.9},
		Outer:       Outer{Optimizer: "nesterov", LR: 1.0, Momentum: 0.5},
		Compression: Compression{Fraction: 0.005, Bits: 1, Chunk: 256},
		Aggregation: Aggregation{Rule: AggCenteredClip, Trim: 0.2},
		Rounds: Rounds{Timeout: Duration{60 * time.Second}, CommitTimeout: Duration{10 * time.Second},
			Quorum: 1, MaxMessage: 1 << 20, MaxUpdateNorm: 1000},
		Verify:  Verify{Rate: 0.5, NewcomerRate: 0.75, Probation: 10, Challengers: 1, Openings: 4, ResidualBlock: 64, Timeout: Duration{20 * time.Second}},
		Members: Members{Genesis: []string{}, Voters: 4, Admit: 2, Absent: 8, Max: 256},
	}
}

// Parse reads a TOML spec, fills defaults and validates it.
func Parse(b []byte) (Spec, error) {
	if len(b) > MaxSpecBytes {
		return Spec{}, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrSpec, len(b), MaxSpecBytes)
	}
	s := Default()
	// Lists replace, not extend, the defaults.
	s.Model.Hidden = nil
	md, err := toml.Decode(string(b), &s)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrSpec, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Spec{}, fmt.Errorf("%w: unknown key %s", ErrSpec, strings.Join(keys, ", "))
	}
	if s.Model.Kind == models.MLP && len(s.Model.Hidden) == 0 {
		s.Model.Hidden = []int{256}
	}
	if s.Model.Definition == "" && s.Model.Kind != "" && !models.IsBuiltin(s.Model.Kind) {
		// A user's model: pin the definition this binary has. A spec
		// that cannot be built fails below, in Validate.
		if m, err := s.ModelSpec(); err == nil {
			s.Model.Definition, _ = m.Definition()
		}
	}
	if s.Members.Genesis == nil {
		s.Members.Genesis = []string{}
	}
	slices.Sort(s.Members.Genesis)
	if s.Privacy.Mode == "zk" && s.Privacy.Depth == 0 {
		s.Privacy.Depth = 16
	}
	s.Privacy.Wait = normWait(s.Privacy.Wait)
	return s, s.Validate()
}

// Load reads and parses a spec file.
func Load(path string) (Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, fmt.Errorf("runspec: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func bad(key string, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrSpec, key, fmt.Sprintf(format, a...))
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Validate checks every field and names the first bad key.
func (s Spec) Validate() error {
	if s.Version != Version {
		return bad("version", "this build reads version %d, got %d", Version, s.Version)
	}
	if len(s.Run.Name) > 128 {
		return bad("run.name", "at most 128 bytes")
	}
	if s.Run.Rounds < 0 || s.Run.Rounds > 1<<20 {
		return bad("run.rounds", "must be 0..1048576, got %d", s.Run.Rounds)
	}
	if ms, err := s.ModelSpec(); err != nil {
		return fmt.Errorf("%w: model: %w", ErrSpec, err) // wrapped: a joiner can tell a model its binary lacks
	} else if err := s.checkDefinition(ms); err != nil {
		return err
	}
	if s.Data.Source != "fashion-mnist" && s.Data.Source != "synthetic" {
		return bad("data.source", "must be fashion-mnist or synthetic, got %q", s.Data.Source)
	}
	if s.Data.Shards < 0 || s.Data.Shards > 1<<16 {
		return bad("data.shards", "must be 0 (the default, 1) .. 65536, got %d", s.Data.Shards)
	}
	in := s.Inner
	switch {
	case in.Optimizer != "adamw" && in.Optimizer != "sgd":
		return bad("inner.optimizer", "must be adamw or sgd, got %q", in.Optimizer)
	case !(in.LR > 0) || !finite(in.LR) || in.LR > 10:
		return bad("inner.lr", "must be in (0, 10], got %v", in.LR)
	case in.Steps < 1 || in.Steps > 100000:
		return bad("inner.steps", "must be 1..100000, got %d", in.Steps)
	case in.Batch < 1 || in.Batch > 65536:
		return bad("inner.batch", "must be 1..65536, got %d", in.Batch)
	case !(in.WeightDecay >= 0 && in.WeightDecay < 1):
		return bad("inner.weight_decay", "must be in [0, 1), got %v", in.WeightDecay)
	case !(in.Momentum >= 0 && in.Momentum < 1):
		return bad("inner.momentum", "must be in [0, 1), got %v", in.Momentum)
	}
	out := s.Outer
	switch {
	case out.Optimizer != "nesterov" && out.Optimizer != "sgd":
		return bad("outer.optimizer", "must be nesterov or sgd, got %q", out.Optimizer)
	case !(out.LR > 0) || !finite(out.LR) || out.LR > 10:
		return bad("outer.lr", "must be in (0, 10], got %v", out.LR)
	case !(out.Momentum >= 0 && out.Momentum < 1):
		return bad("outer.momentum", "must be in [0, 1), got %v", out.Momentum)
	}
	if err := s.CompressParams().Validate(); err != nil {
		return bad("compression", "%v", strings.TrimPrefix(err.Error(), "compress: "))
	}
	switch s.Aggregation.Rule {
	case AggMean, AggMedian, AggCenteredClip:
	case AggTrimmedMean:
		if !(s.Aggregation.Trim >= 0 && s.Aggregation.Trim < 0.5) {
			return bad("aggregation.trim", "must be in [0, 0.5), got %v", s.Aggregation.Trim)
		}
	default:
		return bad("aggregation.rule", "must be mean, trimmed_mean, median or centered_clip, got %q", s.Aggregation.Rule)
	}
	r := s.Rounds
	switch {
	case r.Timeout.Duration < 100*time.Millisecond || r.Timeout.Duration > 24*time.Hour:
		return bad("rounds.timeout", "must be 100ms..24h, got %v", r.Timeout)
	case r.CommitTimeout.Duration < 100*time.Millisecond || r.CommitTimeout.Duration > time.Hour:
		return bad("rounds.commit_timeout", "must be 100ms..1h, got %v", r.CommitTimeout)
	case r.Quorum < 1 || r.Quorum > 1<<16:
		return bad("rounds.quorum", "must be 1..65536, got %d", r.Quorum)
	case r.MaxMessage < 4<<10 || r.MaxMessage > 64<<20:
		return bad("rounds.max_message", "must be 4 KiB..64 MiB, got %d", r.MaxMessage)
	case !(r.MaxUpdateNorm > 0) || !finite(r.MaxUpdateNorm):
		return bad("rounds.max_update_norm", "must be positive, got %v", r.MaxUpdateNorm)
	}
	v := s.Verify
	switch {
	case !(v.Rate >= 0 && v.Rate <= 1):
		return bad("verify.rate", "must be in [0, 1], got %v", v.Rate)
	case !(v.NewcomerRate >= v.Rate && v.NewcomerRate <= 1):
		return bad("verify.newcomer_rate", "must be in [verify.rate, 1], got %v", v.NewcomerRate)
	case v.Probation < 0 || v.Probation > 1<<20:
		return bad("verify.probation", "must be 0..1048576 rounds, got %d", v.Probation)
	case v.Segment < 0 || v.Segment > s.Inner.Steps:
		return bad("verify.segment", "must be 0 (%d steps, at most inner.steps) or 1..inner.steps (%d), got %d", DefaultSegment, s.Inner.Steps, v.Segment)
	case v.Challengers < 1 || v.Challengers > 16:
		return bad("verify.challengers", "must be 1..16, got %d", v.Challengers)
	case v.Openings < 1 || v.Openings > MaxOpenings:
		return bad("verify.openings", "must be 1..%d, got %d", MaxOpenings, v.Openings)
	case v.ResidualBlock < 1 || v.ResidualBlock > 1<<16:
		return bad("verify.residual_block", "must be 1..65536 values, got %d", v.ResidualBlock)
	case v.Timeout.Duration < time.Second || v.Timeout.Duration > time.Hour:
		return bad("verify.timeout", "must be 1s..1h, got %v", v.Timeout)
	case !(v.Tolerance >= 0 && v.Tolerance < 1):
		return bad("verify.tolerance", "must be in [0, 1), got %v", v.Tolerance)
	}
	m := s.Members
	switch {
	case len(m.Genesis) > MaxFounders:
		return bad("members.genesis", "at most %d founders, got %d", MaxFounders, len(m.Genesis))
	case m.Voters < 1 || m.Voters > 1024:
		return bad("members.voters", "must be 1..1024, got %d", m.Voters)
	case m.Admit < 0 || m.Admit > 1024:
		return bad("members.admit", "must be 0..1024, got %d", m.Admit)
	case m.Absent < 1 || m.Absent > 1<<20:
		return bad("members.absent", "must be 1..1048576 rounds, got %d", m.Absent)
	case m.Max < 1 || m.Max > 4096:
		return bad("members.max", "must be 1..4096, got %d", m.Max)
	case len(m.Genesis) > m.Max:
		return bad("members.genesis", "%d founders exceed members.max %d", len(m.Genesis), m.Max)
	}
	for i, p := range m.Genesis {
		if p == "" || len(p) > 128 || strings.ContainsAny(p, " ,\t\n\"") {
			return bad("members.genesis", "%q is not a peer ID", p)
		}
		if i > 0 && m.Genesis[i-1] >= p {
			return bad("members.genesis", "founders must be sorted and unique (%q)", p)
		}
	}
	return s.validatePrivacy()
}

// WithFounders returns the spec with the given founders (sorted), as the
// node that starts a run from a template fills in itself.
func (s Spec) WithFounders(ids ...string) Spec {
	s.Members.Genesis = slices.Sorted(slices.Values(ids))
	return s
}

// normWait is privacy.wait as the canonical form holds it: nil for the
// default (wait), false for the opt-out.
func normWait(w *bool) *bool {
	if w == nil || *w {
		return nil
	}
	f := false
	return &f
}

func (s Spec) validatePrivacy() error {
	pv := s.Privacy
	switch pv.Mode {
	case "", "none":
		if pv.Depth != 0 || pv.VKSHA256 != "" || len(pv.Peers) > 0 || pv.ProofTimeout.Duration != 0 || pv.Wait != nil {
			return bad("privacy", "depth, vk_sha256, peers, proof_timeout and wait apply to mode = \"zk\" only")
		}
		return nil
	case "zk":
	default:
		return bad("privacy.mode", "must be none or zk, got %q", pv.Mode)
	}
	switch {
	case s.Model.Kind != models.LogReg:
		return bad("model.kind", "privacy = zk proves softmax regression: must be logreg, got %q", s.Model.Kind)
	case s.Inner.Optimizer != "sgd" || s.Inner.Momentum != 0 || s.Inner.WeightDecay != 0:
		return bad("inner", "privacy = zk proves plain SGD steps: optimizer = \"sgd\", momentum = 0, weight_decay = 0")
	case len(pv.VKSHA256) != 64 || strings.Trim(pv.VKSHA256, "0123456789abcdef") != "":
		return bad("privacy.vk_sha256", "must be 64 lower-case hex digits (vtrain keygen prints it), got %q", pv.VKSHA256)
	}
	if err := s.ZKParams().Validate(); err != nil {
		return bad("privacy", "%v", strings.TrimPrefix(err.Error(), "zk: invalid parameters: "))
	}
	if d := pv.ProofTimeout.Duration; d < 0 || d > time.Hour {
		return bad("privacy.proof_timeout", "must be 0 (the default, %v) to 1h, got %v", DefaultProofTimeout, d)
	}
	switch {
	case s.Inner.Steps > MaxPrivateSteps:
		return bad("inner.steps", "privacy = zk: at most %d (a verdict names the step it checks), got %d", MaxPrivateSteps, s.Inner.Steps)
	case 32*(s.Inner.Steps+1) >= s.Rounds.MaxMessage:
		return bad("rounds.max_message", "privacy = zk: a private update's %d step commitments alone are %d bytes, over %d", s.Inner.Steps+1, 32*(s.Inner.Steps+1), s.Rounds.MaxMessage)
	}
	if len(pv.Peers) > MaxFounders {
		return bad("privacy.peers", "%d peers, at most %d", len(pv.Peers), MaxFounders)
	}
	for i, p := range pv.Peers {
		switch {
		case i > 0 && pv.Peers[i-1].Peer >= p.Peer:
			return bad("privacy.peers", "must be sorted by peer, each once: %q after %q", p.Peer, pv.Peers[i-1].Peer)
		case len(s.Members.Genesis) > 0 && !slices.Contains(s.Members.Genesis, p.Peer):
			return bad("privacy.peers", "%q is not a founder (members.genesis): private peers are named at genesis", p.Peer)
		case len(p.DataRoot) != 64 || strings.Trim(p.DataRoot, "0123456789abcdef") != "":
			return bad("privacy.peers", "%s: data_root must be 64 lower-case hex digits, got %q", p.Peer, p.DataRoot)
		case p.DataSize < uint64(s.Inner.Batch) || p.DataSize > zk.MaxDataSize || (pv.Depth < 64 && p.DataSize > 1<<pv.Depth):
			return bad("privacy.peers", "%s: data_size %d must hold a batch (%d) and fit the data tree (depth %d) and %d", p.Peer, p.DataSize, s.Inner.Batch, pv.Depth, zk.MaxDataSize)
		}
		if _, err := zk.ParseHex(p.DataRoot); err != nil {
			return bad("privacy.peers", "%s: %v", p.Peer, err)
		}
	}
	return nil
}

// ModelSpec returns the model the spec describes (28×28, 10 classes).
func (s Spec) ModelSpec() (models.Spec, error) {
	m := models.Spec{Kind: s.Model.Kind, Hidden: s.Model.Hidden, Channels: s.Model.Channels, Rows: 28, Cols: 28, Classes: 10}
	if m.Kind == models.CNN || !models.IsBuiltin(m.Kind) {
		m = m.WithDefaults() // a CNN's channels, a user's model's own defaults
	}
	return m, m.Validate()
}

// checkDefinition checks model.definition against this binary's model.
func (s Spec) checkDefinition(m models.Spec) error {
	if models.IsBuiltin(m.Kind) {
		if s.Model.Definition != "" {
			return bad("model.definition", "only a user's model is pinned by its definition; %s is built in", m.Kind)
		}
		return nil
	}
	have, err := m.Definition()
	if err != nil {
		return bad("model", "%v", err)
	}
	switch want := s.Model.Definition; {
	case want == "":
		return bad("model.definition", "missing: a user's model must be pinned (this binary's %s is %s)", m.Kind, have)
	case want != have:
		return bad("model.definition", "the run's %s is %s, this binary's is %s: build vtrain with the run's version of the model", m.Kind, short(want), short(have))
	}
	return nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// CompressParams returns the compression settings.
func (s Spec) CompressParams() compress.Params {
	return compress.Params{Fraction: s.Compression.Fraction, Bits: s.Compression.Bits, Chunk: s.Compression.Chunk}
}

// Shards returns the number of data shards (default 8).
func (s Spec) Shards() int {
	if s.Data.Shards == 0 {
		return 1
	}
	return s.Data.Shards
}

// Canonical returns the canonical encoding: compact JSON of the validated
// spec with every default filled in, fields in declaration order. It is
// what the run ID hashes and what a joining peer receives.
func (s Spec) Canonical() []byte {
	if s.Members.Genesis == nil {
		s.Members.Genesis = []string{}
	}
	s.Privacy.Wait = normWait(s.Privacy.Wait)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err) // plain data: cannot fail
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// ID is a run ID: the SHA-256 of the canonical spec.
type ID [32]byte

// String is the ID in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex digits, for logs.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// RunID returns the run ID.
func (s Spec) RunID() ID { return sha256.Sum256(s.Canonical()) }

// FromCanonical parses a canonical spec received from a peer and checks
// that it hashes to want.
func FromCanonical(b []byte, want ID) (Spec, error) {
	if len(b) > MaxSpecBytes {
		return Spec{}, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrSpec, len(b), MaxSpecBytes)
	}
	if got := ID(sha256.Sum256(b)); got != want {
		return Spec{}, fmt.Errorf("%w: spec hashes to run %s, expected run %s", ErrSpec, got.Short(), want.Short())
	}
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrSpec, err)
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	if !bytes.Equal(s.Canonical(), b) {
		return Spec{}, fmt.Errorf("%w: spec is not in canonical form", ErrSpec)
	}
	return s, nil
}
