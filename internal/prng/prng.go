// Package prng is the one source of randomness in vtrain: a small,
// explicitly specified generator whose output is fixed by this file, not by
// the Go release, so that anyone holding a seed can replay an
// initialisation or a batch schedule on any machine.
//
// The generator is SplitMix64 (Steele, Lea, Flood 2014). Its whole state is
// one uint64, which makes the "RNG position" of a run trivially
// checkpointable. Derive independent streams with [Derive] rather than by
// adding small constants to seeds.
package prng

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// Source is a SplitMix64 generator. The zero value is a valid generator
// seeded with 0. A Source is not safe for concurrent use.
type Source struct {
	state uint64
}

// New returns a generator seeded with seed.
func New(seed uint64) *Source { return &Source{state: seed} }

// State returns the generator's position; [Source.SetState] restores it.
func (s *Source) State() uint64 { return s.state }

// SetState moves the generator to a position returned by [Source.State].
func (s *Source) SetState(v uint64) { s.state = v }

// Uint64 returns the next 64 pseudo-random bits.
func (s *Source) Uint64() uint64 {
	s.state += 0x9e3779b97f4a7c15
	return mix(s.state)
}

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Float64 returns a uniform value in [0, 1) with 53 random bits.
func (s *Source) Float64() float64 {
	return float64(s.Uint64()>>11) * (1.0 / (1 << 53))
}

// Uniform returns a uniform value in [lo, hi).
func (s *Source) Uniform(lo, hi float64) float64 {
	return lo + (hi-lo)*s.Float64()
}

// Norm returns a standard normal value (Box–Muller; one value per call,
// so that the stream position is a simple count of calls).
func (s *Source) Norm() float64 {
	u1 := s.Float64()
	for u1 == 0 {
		u1 = s.Float64()
	}
	u2 := s.Float64()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// Intn returns a uniform value in [0, n) without modulo bias (Lemire's
// method). It panics if n <= 0, which is a caller's mistake.
func (s *Source) Intn(n int) int {
	if n <= 0 {
		panic("prng: Intn with n <= 0")
	}
	bound := uint64(n)
	for {
		v := s.Uint64()
		hi, lo := bits.Mul64(v, bound)
		if lo >= bound || lo >= (-bound)%bound {
			return int(hi)
		}
	}
}

// Shuffle permutes idx in place (Fisher–Yates, from the top).
func (s *Source) Shuffle(idx []int) {
	for i := len(idx) - 1; i > 0; i-- {
		j := s.Intn(i + 1)
		idx[i], idx[j] = idx[j], idx[i]
	}
}

// Derive returns a seed for an independent stream named by the seed and a
// list of labels (for example run seed, "batch", shard, epoch). It is a
// pure function of its arguments.
func Derive(seed uint64, labels ...uint64) uint64 {
	h := mix(seed ^ 0x6a09e667f3bcc909)
	var buf [8]byte
	for _, l := range labels {
		binary.LittleEndian.PutUint64(buf[:], l)
		h = mix(h ^ binary.LittleEndian.Uint64(buf[:]) + 0x9e3779b97f4a7c15)
	}
	return h
}

// String64 folds a label string into a uint64 for use with [Derive].
func String64(s string) uint64 {
	// FNV-1a, 64 bit.
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}
