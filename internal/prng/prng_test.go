package prng

import (
	"math"
	"testing"
)

// The first outputs of SplitMix64 seeded with 0 are published test values;
// vtrain's replayability rests on this generator never changing.
func TestSplitMix64Vectors(t *testing.T) {
	s := New(0)
	for i, want := range []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f} {
		if got := s.Uint64(); got != want {
			t.Fatalf("output %d = %#x, want %#x", i, got, want)
		}
	}
}

func TestIntnUniformAndState(t *testing.T) {
	s := New(9)
	counts := make([]int, 7)
	for i := 0; i < 70000; i++ {
		counts[s.Intn(7)]++
	}
	for v, c := range counts {
		if math.Abs(float64(c)-10000) > 500 {
			t.Fatalf("value %d drawn %d times of 70000", v, c)
		}
	}
	st := s.State()
	a := s.Uint64()
	s.SetState(st)
	if s.Uint64() != a {
		t.Fatal("SetState does not replay")
	}
	if Derive(1, 2, 3) == Derive(1, 3, 2) || Derive(1, 2) == Derive(2, 2) {
		t.Fatal("Derive ignores order or seed")
	}
}
