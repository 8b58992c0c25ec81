package zk

import (
	"fmt"

	"github.com/vtrain/vtrain/models/data"
)

// Trainer trains softmax regression in the circuit's fixed-point
// arithmetic, on the same replayable batches as trainer.Trainer: every
// step it takes is a statement StepCircuit can prove.
type Trainer struct {
	p       Params
	theta   Theta
	ds      *data.Dataset
	shard   []int
	sampler *data.Sampler
	step    int64 // steps taken
	at      int64 // the sampler's step: steps since NewTrainer or StartRound
	idx     []int
	batch   []Sample
}

// NewTrainer starts from θ on the shard's samples of ds, drawing batches
// with data.NewSampler(shard, p.Batch, seed).
func NewTrainer(p Params, theta Theta, ds *data.Dataset, shard []int, seed uint64) (*Trainer, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if ds.Features() != p.Features || ds.Classes != p.Classes {
		return nil, fmt.Errorf("%w: data has %d features and %d classes, the circuit %d and %d",
			ErrParams, ds.Features(), ds.Classes, p.Features, p.Classes)
	}
	if len(theta) != p.NumParams() {
		return nil, fmt.Errorf("%w: %d parameters, want %d", ErrParams, len(theta), p.NumParams())
	}
	s, err := data.NewSampler(shard, p.Batch, seed)
	if err != nil {
		return nil, err
	}
	return &Trainer{p: p, theta: append(Theta(nil), theta...), ds: ds, shard: append([]int(nil), shard...), sampler: s, batch: make([]Sample, p.Batch)}, nil
}

// StartRound reseeds the sampler: the next step takes batch 0 of the
// sampler with seed, as a round's inner steps do.
func (t *Trainer) StartRound(seed uint64) error {
	s, err := data.NewSampler(t.shard, t.p.Batch, seed)
	if err != nil {
		return err
	}
	t.sampler, t.at = s, 0
	return nil
}

// Theta returns the current parameters (the trainer's own slice).
func (t *Trainer) Theta() Theta { return t.theta }

// Steps returns the number of steps taken.
func (t *Trainer) Steps() int64 { return t.step }

// StepsPerEpoch returns the steps of one pass over the shard.
func (t *Trainer) StepsPerEpoch() int64 { return t.sampler.StepsPerEpoch() }

// BatchIndices returns the dataset indices of a step's batch, counted from
// NewTrainer or the last StartRound.
func (t *Trainer) BatchIndices(step int64) []int { return t.sampler.BatchAt(step, nil) }

// Step takes one fixed-point SGD step.
func (t *Trainer) Step() error {
	t.idx = t.sampler.BatchAt(t.at, t.idx[:0])
	f := t.ds.Features()
	for i, s := range t.idx {
		t.batch[i] = Sample{Pixels: t.ds.Images[s*f : (s+1)*f], Label: t.ds.Labels[s]}
	}
	next, err := t.p.Step(t.theta, t.batch)
	if err != nil {
		return fmt.Errorf("zk: step %d: %w", t.step, err)
	}
	t.theta = next
	t.step++
	t.at++
	return nil
}

// Accuracy is the fraction of ds that θ classifies right, in fixed point.
func (p Params) Accuracy(theta Theta, ds *data.Dataset) float64 {
	if ds.Len() == 0 {
		return 0
	}
	f := ds.Features()
	z := make([]int64, p.Classes)
	right := 0
	for s := range ds.Len() {
		if p.Predict(theta, ds.Images[s*f:(s+1)*f], z) == int(ds.Labels[s]) {
			right++
		}
	}
	return float64(right) / float64(ds.Len())
}
