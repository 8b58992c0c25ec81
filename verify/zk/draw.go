package zk

import (
	"fmt"
	"sync"

	"github.com/vtrain/vtrain/models/data"
)

// Draw names the batch a proven step must use: batch Step of the run's
// sampler (data.Sampler, the one trainer uses) seeded with Seed over the
// Size leaves of the peer's data tree. The verifier computes the leaf
// indices from it and gives them to the circuit as public inputs; the
// circuit opens the batch's samples under the data root at exactly those
// leaves. So a prover cannot pick its batch: it committed the root and
// Size before the round, and the round's seed picks the samples.
//
// Binding the batch as public inputs costs one constraint per sample (the
// leaf index recomposed from the Merkle path's bits). Deriving the indices
// inside the circuit would cost a hash per sample and could not follow the
// run's sampler (a seeded shuffle of the whole shard per epoch), so the
// verifier recomputes them instead: a shuffle of Size integers, cached
// per epoch.
type Draw struct {
	Seed uint64 // the round's batch seed: the update's Seed (consensus.RoundSeed of run, round and peer)
	Step uint64 // the inner step within the round, from 0
	Size uint64 // samples in the data tree, published with its root
}

// MaxDataSize bounds Draw.Size: the verifier shuffles Size integers.
const MaxDataSize = 1 << 22

// MaxDrawStep bounds Draw.Step.
const MaxDrawStep = 1 << 40

// Leaves returns the data-tree leaves of the draw's batch, in order. It
// fails if the draw does not fit the circuit: fewer samples than a batch,
// more than the tree holds or MaxDataSize, or a step beyond MaxDrawStep.
func (p Params) Leaves(d Draw) ([]uint64, error) {
	switch {
	case d.Size < uint64(p.Batch):
		return nil, fmt.Errorf("%w: %d samples, fewer than a batch of %d", ErrBatch, d.Size, p.Batch)
	case d.Size > MaxDataSize || (p.Depth < 64 && d.Size > 1<<p.Depth):
		return nil, fmt.Errorf("%w: %d samples do not fit a data tree of depth %d (at most %d)", ErrBatch, d.Size, p.Depth, min(uint64(MaxDataSize), uint64(1)<<min(p.Depth, 63)))
	case d.Step > MaxDrawStep:
		return nil, fmt.Errorf("%w: step %d beyond %d", ErrBatch, d.Step, uint64(MaxDrawStep))
	}
	s := samplers.get(d.Seed, d.Size, p.Batch)
	defer samplers.put(s)
	idx := s.sampler.BatchAt(int64(d.Step), nil)
	out := make([]uint64, len(idx))
	for i, v := range idx {
		out[i] = uint64(v)
	}
	return out, nil
}

// samplers keeps the last few samplers, so that a verifier checking the
// steps of one round shuffles once per epoch, not once per proof.
var samplers samplerCache

type cachedSampler struct {
	seed, size uint64
	batch      int
	sampler    *data.Sampler
}

type samplerCache struct {
	mu   sync.Mutex
	free []*cachedSampler // at most 4
}

func (c *samplerCache) get(seed, size uint64, batch int) *cachedSampler {
	c.mu.Lock()
	for i, s := range c.free {
		if s.seed == seed && s.size == size && s.batch == batch {
			c.free = append(c.free[:i], c.free[i+1:]...)
			c.mu.Unlock()
			return s
		}
	}
	c.mu.Unlock()
	shard := make([]int, size)
	for i := range shard {
		shard[i] = i
	}
	sm, err := data.NewSampler(shard, batch, seed)
	if err != nil {
		panic(err) // Leaves checked size ≥ batch ≥ 1
	}
	return &cachedSampler{seed: seed, size: size, batch: batch, sampler: sm}
}

func (c *samplerCache) put(s *cachedSampler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.free) >= 4 {
		c.free = c.free[1:]
	}
	c.free = append(c.free, s)
}
