package trainer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
)

// Snapshot is a trainer's complete state between two steps: what a
// segment root commits to, and what a challenger re-executes from.
type Snapshot struct {
	Step     int64
	Params   []float32
	Opt      map[string][]float32 // the optimizer's buffers by name
	OptSteps int64
	// OptDigest stands in for Opt in a light snapshot (see Light): one
	// shipped for its parameters alone, whose hash still checks.
	OptDigest *Hash
}

// Hash is the snapshot's identity: SHA-256 over the step, the optimizer's
// step count, the digest of the parameters and the digest of the
// optimizer's buffers (OptHash), so that the parameters can be checked
// against it without the buffers.
func (s *Snapshot) Hash() Hash {
	h := sha256.New()
	h.Write([]byte("vtrain/snapshot/v2\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(s.Step))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(s.OptSteps))
	h.Write(b[:])
	p, o := vecDigest(s.Params), s.OptHash()
	h.Write(p[:])
	h.Write(o[:])
	var out Hash
	h.Sum(out[:0])
	return out
}

// vecDigest is SHA-256 over a vector's length and values.
func vecDigest(v []float32) Hash {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(len(v)))
	h.Write(b[:])
	writeFloats(h, v)
	var out Hash
	h.Sum(out[:0])
	return out
}

// OptHash is the digest of the optimizer's buffers: SHA-256 over each
// buffer in name order, its name and values length-prefixed (OptDigest
// for a light snapshot).
func (s *Snapshot) OptHash() Hash {
	if s.Opt == nil && s.OptDigest != nil {
		return *s.OptDigest
	}
	h := sha256.New()
	var b [8]byte
	put := func(v uint64) { binary.BigEndian.PutUint64(b[:], v); h.Write(b[:]) }
	names := make([]string, 0, len(s.Opt))
	for k := range s.Opt {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		put(uint64(len(k)))
		h.Write([]byte(k))
		put(uint64(len(s.Opt[k])))
		writeFloats(h, s.Opt[k])
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// Light returns the snapshot without its optimizer's buffers (the
// parameters shared, not copied), with the same hash: what a payload's
// link needs of the final state, at a third of the bytes under AdamW.
func (s *Snapshot) Light() Snapshot {
	d := s.OptHash()
	return Snapshot{Step: s.Step, Params: s.Params, OptSteps: s.OptSteps, OptDigest: &d}
}

// IsLight reports whether the snapshot lacks its optimizer's buffers.
func (s *Snapshot) IsLight() bool { return s.Opt == nil && s.OptDigest != nil }

// Snapshot returns a copy of the trainer's state.
func (t *Trainer) Snapshot() (Snapshot, error) {
	if err := t.syncFromDevice(); err != nil {
		return Snapshot{}, err
	}
	bufs, steps := t.opt.State()
	s := Snapshot{Step: t.step, Params: slices.Clone(t.params), Opt: map[string][]float32{}, OptSteps: steps}
	for k, v := range bufs {
		s.Opt[k] = slices.Clone(v)
	}
	return s, nil
}

// SetSnapshot puts the trainer in the state s: continuing from there gives
// bit for bit what the trainer that took s would have computed.
func (t *Trainer) SetSnapshot(s Snapshot) error {
	if len(s.Params) != len(t.params) {
		return fmt.Errorf("trainer: snapshot has %d parameters, want %d", len(s.Params), len(t.params))
	}
	if s.Step < 0 {
		return fmt.Errorf("trainer: snapshot at step %d", s.Step)
	}
	if s.IsLight() {
		return fmt.Errorf("trainer: a light snapshot (no optimizer buffers) cannot be resumed")
	}
	if err := t.opt.SetState(s.Opt, s.OptSteps); err != nil {
		return err
	}
	copy(t.params, s.Params)
	if t.dev != nil {
		if err := t.dev.SetParams(s.Params); err != nil {
			return err
		}
		if err := t.dev.SetOptState(s.Opt, s.OptSteps); err != nil {
			return err
		}
		t.stale = false
	}
	t.step = s.Step
	return nil
}

// InnerConfig is the local training configuration of a peer's round: the
// spec's inner optimizer over the peer's shard in the order of seed.
func InnerConfig(spec runspec.Spec, m models.Spec, seed uint64, shard int) Config {
	in := spec.Inner
	cfg := DefaultConfig(m)
	cfg.Optimizer, cfg.WeightDecay, cfg.Momentum, cfg.Batch = in.Optimizer, in.WeightDecay, in.Momentum, in.Batch
	cfg.Schedule = Schedule{Kind: ScheduleConstant, Base: in.LR}
	cfg.Seed, cfg.Shards, cfg.Shard, cfg.ShardSeed = seed, spec.Shards(), shard, spec.Run.Seed
	return cfg
}

// TrainRound runs a round's inner steps from req.Theta as a node does:
// the spec's inner optimizer over the peer's shard in the order of
// req.Seed, hashing the trainer's state after every segment. It returns
// the work (delta, loss, segment roots) with the state each segment starts
// in and the final state: the evidence a challenger asks for.
func TrainRound(ctx context.Context, spec runspec.Spec, req *consensus.TrainRequest, train *data.Dataset, opts ...Option) (w Work, starts []Snapshot, final Snapshot, err error) {
	m, err := spec.ModelSpec()
	if err != nil {
		return w, nil, final, err
	}
	tr, err := NewFrom(InnerConfig(spec, m, req.Seed, req.Shard), train, req.Theta, opts...)
	if err != nil {
		return w, nil, final, err
	}
	defer tr.Close()
	w = Work{Round: req.Round, Samples: uint64(spec.Inner.Steps * spec.Inner.Batch)}
	var lossSum float64
	for seg := range spec.Segments() {
		start, err := tr.Snapshot()
		if err != nil {
			return w, nil, final, err
		}
		starts = append(starts, start)
		lo, hi := SegmentSteps(spec, seg)
		for range hi - lo {
			if err := ctx.Err(); err != nil {
				return w, nil, final, err
			}
			l, err := tr.Step()
			if err != nil {
				return w, nil, final, err
			}
			lossSum += float64(l)
		}
		if final, err = tr.Snapshot(); err != nil {
			return w, nil, final, err
		}
		w.Segments = append(w.Segments, final.Hash())
	}
	w.Loss = float32(lossSum / float64(spec.Inner.Steps))
	w.Delta = make([]float32, len(req.Theta))
	for i := range w.Delta {
		w.Delta[i] = req.Theta[i] - final.Params[i]
	}
	return w, starts, final, nil
}

// Replayer re-executes inner steps for a challenge: Start is the state a
// round's inner steps begin in (from the agreed parameters), Run continues
// a state for some steps. The real one is [NewReplayer]; simulations use
// toys.
type Replayer interface {
	Start(base []float32) (Snapshot, error)
	Run(from Snapshot, steps int) (Snapshot, error)
	// Trace is Run that also hashes the state after every step.
	Trace(from Snapshot, steps int) (Snapshot, []Hash, error)
}

type replayer struct {
	cfg  Config
	ds   *data.Dataset
	opts []Option
}

// NewReplayer returns the replayer of peer's inner steps of round in the
// run: the same configuration, data order and engine the peer trained with.
func NewReplayer(spec runspec.Spec, round uint64, peer PeerID, train *data.Dataset, opts ...Option) (Replayer, error) {
	m, err := spec.ModelSpec()
	if err != nil {
		return nil, err
	}
	return &replayer{cfg: InnerConfig(spec, m, RoundSeed(spec, round, peer), ShardOf(spec, peer)), ds: train, opts: opts}, nil
}

func (r *replayer) Start(base []float32) (Snapshot, error) {
	t, err := NewFrom(r.cfg, r.ds, base, r.opts...)
	if err != nil {
		return Snapshot{}, err
	}
	defer t.Close()
	return t.Snapshot()
}

func (r *replayer) Run(from Snapshot, steps int) (Snapshot, error) {
	s, _, err := r.run(from, steps, false)
	return s, err
}

func (r *replayer) Trace(from Snapshot, steps int) (Snapshot, []Hash, error) {
	return r.run(from, steps, true)
}

func (r *replayer) run(from Snapshot, steps int, trace bool) (Snapshot, []Hash, error) {
	t, err := NewFrom(r.cfg, r.ds, from.Params, r.opts...)
	if err != nil {
		return Snapshot{}, nil, err
	}
	defer t.Close()
	if err := t.SetSnapshot(from); err != nil {
		return Snapshot{}, nil, err
	}
	var leaves []Hash
	for range steps {
		if _, err := t.Step(); err != nil {
			return Snapshot{}, nil, err
		}
		if trace {
			s, err := t.Snapshot()
			if err != nil {
				return Snapshot{}, nil, err
			}
			leaves = append(leaves, s.Hash())
		}
	}
	s, err := t.Snapshot()
	return s, leaves, err
}

// Evidence is a challenged peer's answer: the blocks of its residual the
// beacon drew for the challenger (spot.Blocks) and, in runs with a
// tolerance only, its final state, light (the parameters and the moments'
// digest), which a re-execution on another engine cannot reproduce bit for
// bit. Everything else a check needs follows from public data: the agreed
// state, the run's data and seeds.
type Evidence struct {
	Openings []Opening
	Final    *Snapshot
	// Answer is the accused's signed hashes of its state after each step
	// of the segment that missed its root: what a dispute narrows down to
	// one step.
	Answer *consensus.Answer
}

// ErrChallenge is wrapped by every reason a challenge fails.
var ErrChallenge = errors.New("challenge failed")

// SegmentSteps returns the inner steps segment seg of a round spans:
// [lo, hi).
func SegmentSteps(spec runspec.Spec, seg int) (lo, hi int) { return spec.SegmentSteps(seg) }

// Judge is Check as a yes or no, with whatever step hashes the evidence
// carries: nil when the round and the payload check, else an error
// wrapping ErrChallenge that says what failed (or another error when the
// checker itself could not run).
func Judge(spec runspec.Spec, base []float32, u *consensus.Update, blocks []int, ev Evidence, r Replayer) error {
	f, err := Check(spec, base, u, blocks, ev, r, func(int) *consensus.Answer { return ev.Answer })
	if err != nil {
		return err
	}
	if f.Fault != consensus.FaultNone {
		return fmt.Errorf("%w: %s fault: %s", ErrChallenge, f.Fault, strings.TrimPrefix(f.Reason, ErrChallenge.Error()+": "))
	}
	return nil
}

// Link is what the payload of a round's work must be: base − final
// compressed with the error-feedback residual carried in, as the engine
// encodes it; it also returns the residual left over.
func Link(spec runspec.Spec, base, final, residual []float32) (payload []byte, residualOut []float32, err error) {
	enc, err := compress.NewEncoder(spec.CompressParams(), len(base))
	if err != nil {
		return nil, nil, err
	}
	if err := enc.SetResidual(residual); err != nil {
		return nil, nil, err
	}
	delta := make([]float32, len(base))
	for i := range delta {
		delta[i] = base[i] - final[i]
	}
	if payload, err = enc.Encode(delta, nil); err != nil {
		return nil, nil, err
	}
	return payload, enc.Residual(), nil
}

func relL2(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d) / max(math.Sqrt(n), 1e-30)
}
