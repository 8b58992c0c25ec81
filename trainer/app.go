package trainer

import (
	"fmt"
	"math"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/zk"
)

// Hash and PeerID are the protocol's (package consensus): a state, update
// or snapshot digest, and a peer's name.
type (
	Hash   = consensus.Hash
	PeerID = consensus.PeerID
)

// Genesis returns round 0's state for a spec (see consensus.Genesis).
func Genesis(spec runspec.Spec) (consensus.State, error) { return consensus.Genesis(spec) }

// RoundSeed and ShardOf are the batch order and data shard the run assigns
// a peer (see package consensus).
func RoundSeed(spec runspec.Spec, round uint64, peer PeerID) uint64 {
	return consensus.RoundSeed(spec, round, peer)
}

// ShardOf is the data shard a peer trains.
func ShardOf(spec runspec.Spec, peer PeerID) int { return consensus.ShardOf(spec, peer) }

// Work is the result of a round's inner steps.
type Work struct {
	Round    uint64
	Delta    []float32 // θ_r − θ_local
	Samples  uint64
	Loss     float32
	Segments []Hash // Snapshot hashes every verify.segment steps
}

// App is the training side of the round protocol (consensus.App): an
// update's payload is a gossip/compress message whose decoded values must
// be finite and within the spec's norm bound, and a decided set is
// aggregated with the spec's rule and stepped with its outer optimizer.
type App struct {
	spec runspec.Spec
	dec  *compress.Decoder
}

// NewApp returns the application of a run.
func NewApp(spec runspec.Spec) (*App, error) {
	m, err := spec.ModelSpec()
	if err != nil {
		return nil, err
	}
	dec, err := compress.NewDecoder(m.NumParams())
	if err != nil {
		return nil, err
	}
	return &App{spec: spec, dec: dec}, nil
}

// CheckUpdate implements consensus.App.
func (a *App) CheckUpdate(u *consensus.Update) (any, error) {
	return ValidateUpdate(a.spec, u, a.dec)
}

// Step implements consensus.App.
func (a *App) Step(theta, momentum []float32, decoded []any) ([]float32, []float32, error) {
	ups := make([]*compress.Sparse, len(decoded))
	for i, d := range decoded {
		s, ok := d.(*compress.Sparse)
		if !ok {
			return nil, nil, fmt.Errorf("trainer: update %d is not a decoded payload", i)
		}
		ups[i] = s
	}
	return OuterStep(a.spec, theta, momentum, ups)
}

// ValidateUpdate checks what can be checked of an update's payload without
// the round's state: its size, that it decodes (bounded), that it is
// encoded as the run's compression says (k values, the bits and chunk,
// the selection threshold that lets a challenger check any block), that
// its loss and values are finite and its norm within the spec's bound. The
// gossip validator and the engine run it.
func ValidateUpdate(spec runspec.Spec, u *consensus.Update, dec *compress.Decoder) (*compress.Sparse, error) {
	if spec.IsPrivate(string(u.From)) {
		return validatePrivate(spec, u, dec.D())
	}
	maxPayload, maxNorm := spec.Rounds.MaxMessage, spec.Rounds.MaxUpdateNorm
	if len(u.Payload) > maxPayload {
		return nil, fmt.Errorf("oversize: payload of %d bytes exceeds %d", len(u.Payload), maxPayload)
	}
	if math.IsNaN(float64(u.Loss)) || math.IsInf(float64(u.Loss), 0) {
		return nil, fmt.Errorf("non-finite: training loss %v", u.Loss)
	}
	s, err := dec.Decode(u.Payload)
	if err != nil {
		return nil, fmt.Errorf("malformed: %v", err)
	}
	p := spec.CompressParams()
	switch {
	case len(s.Idx) != p.K(s.D):
		return nil, fmt.Errorf("malformed: %d values, the run sends %d", len(s.Idx), p.K(s.D))
	case s.Bits != p.Bits || s.Chunk != p.Chunk:
		return nil, fmt.Errorf("malformed: %d bits in chunks of %d, the run's are %d and %d", s.Bits, s.Chunk, p.Bits, p.Chunk)
	case !(s.Threshold >= 0):
		return nil, fmt.Errorf("malformed: no selection threshold (payload format 1 or 2)")
	}
	var n2 float64
	for _, v := range s.Val {
		n2 += float64(v) * float64(v)
	}
	if n := math.Sqrt(n2); !(n <= maxNorm) {
		return nil, fmt.Errorf("bad norm: update norm %.4g exceeds %.4g", n, maxNorm)
	}
	return s, nil
}

// OuterStep is a round's step: it aggregates the decoded updates (in the
// order given: sorted by ID) with the spec's rule and steps the outer
// optimizer from theta and its momentum, returning new vectors. An auditor
// replays a run with it.
func OuterStep(spec runspec.Spec, theta, momentum []float32, updates []*compress.Sparse) ([]float32, []float32, error) {
	d := len(theta)
	dense := make([][]float32, len(updates))
	for i, s := range updates {
		dense[i] = make([]float32, d)
		s.Dense(dense[i])
	}
	agg := make([]float32, d)
	if err := Aggregate(spec.Aggregation.Rule, spec.Aggregation.Trim, dense, agg); err != nil {
		return nil, nil, err
	}
	next := append([]float32(nil), theta...)
	opt := NewSGD(d, spec.Outer.Momentum, 0, spec.Outer.Optimizer == "nesterov")
	copy(opt.buf, momentum)
	opt.Step(next, agg, spec.Outer.LR)
	if spec.Privacy.Mode == "zk" {
		for i, v := range next {
			next[i] = min(max(v, -ZKParamLimit), ZKParamLimit)
		}
	}
	return next, opt.buf, nil
}

// ZKParamLimit bounds the agreed parameters of a zk run: half the range
// of the fixed-point format its private peers train and prove in (|θ| <
// zk.ThetaBound at scale 2^FracTheta, 1024), the other half left to a
// round's inner steps. A private peer starts each round from the agreed
// state exactly, so one parameter out of that range would leave every
// private peer unable to train, missing rounds until it is dropped as
// absent: updates that pass every check can still walk one parameter
// there over many rounds. Every node clamps the same way in the outer
// step, and the audit replays it; honest training of the models a zk run
// proves stays orders of magnitude inside.
const ZKParamLimit = float32(zk.ThetaBound/2) / (1 << zk.FracTheta)

// Encoder turns a peer's rounds of work into updates: the delta compressed
// with error feedback, and the commitments to the residual before and
// after (ResidualRoot). A node keeps one for the whole run (its residual is part of the
// node's checkpoint).
type Encoder struct {
	spec runspec.Spec
	enc  *compress.Encoder
}

// NewEncoder returns an encoder with a zero residual.
func NewEncoder(spec runspec.Spec) (*Encoder, error) {
	m, err := spec.ModelSpec()
	if err != nil {
		return nil, err
	}
	enc, err := compress.NewEncoder(spec.CompressParams(), m.NumParams())
	if err != nil {
		return nil, err
	}
	return &Encoder{spec: spec, enc: enc}, nil
}

// Residual returns the error-feedback residual (a view).
func (e *Encoder) Residual() []float32 { return e.enc.Residual() }

// SetResidual restores the residual.
func (e *Encoder) SetResidual(r []float32) error { return e.enc.SetResidual(r) }

// Update builds the unsigned update of a round's work from the request it
// answers.
func (e *Encoder) Update(req *consensus.TrainRequest, w Work) (*consensus.Update, error) {
	in := ResidualRoot(e.spec, e.enc.Residual())
	payload, err := e.enc.Encode(w.Delta, nil)
	if err != nil {
		return nil, fmt.Errorf("trainer: round %d: %w", req.Round, err)
	}
	return &consensus.Update{Round: req.Round, Base: req.Base, Samples: w.Samples, Loss: w.Loss, Payload: payload,
		Seed: req.Seed, Segments: w.Segments, ResidualIn: in, ResidualOut: ResidualRoot(e.spec, e.enc.Residual())}, nil
}
