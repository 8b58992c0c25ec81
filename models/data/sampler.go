package data

import (
	"fmt"
	"sort"

	"github.com/vtrain/vtrain/internal/prng"
)

// Shard returns the sample indices (ascending) that part p of parts holds
// out of n samples: a seeded permutation of [0, n) cut into parts
// near-equal pieces. Shards are disjoint and cover [0, n).
func Shard(n, parts, p int, seed uint64) ([]int, error) {
	if parts < 1 || p < 0 || p >= parts {
		return nil, fmt.Errorf("data: shard %d of %d is out of range", p, parts)
	}
	if n < parts {
		return nil, fmt.Errorf("data: %d samples cannot be cut into %d shards", n, parts)
	}
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	if parts > 1 {
		prng.New(prng.Derive(seed, prng.String64("shard"), uint64(n))).Shuffle(perm)
	}
	lo := p * n / parts
	hi := (p + 1) * n / parts
	out := append([]int(nil), perm[lo:hi]...)
	sort.Ints(out)
	return out, nil
}

// Sampler yields the batches of a shard: epoch e is a seeded permutation of
// the shard, cut into len(shard)/batch batches (a last partial batch is
// dropped). BatchAt(step) is a pure function of (shard, batch, seed, step),
// so a sampler's only state is the step counter. The current epoch's
// permutation is cached, so sequential use costs O(batch) per step.
type Sampler struct {
	shard []int
	batch int
	seed  uint64

	epoch int64
	perm  []int
}

// NewSampler returns a sampler over shard (sample indices) with the given
// batch size and seed.
func NewSampler(shard []int, batch int, seed uint64) (*Sampler, error) {
	if batch < 1 {
		return nil, fmt.Errorf("data: batch size %d must be positive", batch)
	}
	if len(shard) < batch {
		return nil, fmt.Errorf("data: batch size %d is larger than the %d samples available", batch, len(shard))
	}
	return &Sampler{shard: append([]int(nil), shard...), batch: batch, seed: seed, epoch: -1}, nil
}

// StepsPerEpoch returns how many batches one pass over the shard makes.
func (s *Sampler) StepsPerEpoch() int64 { return int64(len(s.shard) / s.batch) }

// Batch returns the batch size.
func (s *Sampler) Batch() int { return s.batch }

// BatchAt appends the sample indices of step (counted from 0) to dst.
func (s *Sampler) BatchAt(step int64, dst []int) []int {
	spe := s.StepsPerEpoch()
	e, k := step/spe, step%spe
	if e != s.epoch {
		if s.perm == nil {
			s.perm = make([]int, len(s.shard))
		}
		copy(s.perm, s.shard)
		prng.New(prng.Derive(s.seed, prng.String64("batch"), uint64(e))).Shuffle(s.perm)
		s.epoch = e
	}
	return append(dst, s.perm[k*int64(s.batch):(k+1)*int64(s.batch)]...)
}
