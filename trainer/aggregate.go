package trainer

import (
	"fmt"
	"math"
	"slices"

	"github.com/vtrain/vtrain/runspec"
)

// Aggregate combines n dense updates (each len(dst)) into dst with the
// given rule: mean, coordinate-wise trimmed mean (cutting ⌊trim·n⌋ values
// at each end), coordinate-wise median, or centered clipping. Inputs are
// combined in the order given, so callers pass them in a canonical order
// (sorted update IDs) and every peer gets the same bits.
func Aggregate(rule string, trim float64, updates [][]float32, dst []float32) error {
	n := len(updates)
	if n == 0 {
		return fmt.Errorf("trainer: aggregate of no updates")
	}
	for _, u := range updates {
		if len(u) != len(dst) {
			return fmt.Errorf("trainer: update of %d values, want %d", len(u), len(dst))
		}
	}
	switch rule {
	case runspec.AggMean:
		clear(dst)
		for _, u := range updates {
			for i, v := range u {
				dst[i] += v
			}
		}
		inv := float32(1 / float64(n))
		for i := range dst {
			dst[i] *= inv
		}
		return nil
	case runspec.AggTrimmedMean, runspec.AggMedian:
		cut := int(math.Floor(trim * float64(n)))
		col := make([]float32, n)
		for i := range dst {
			for j, u := range updates {
				col[j] = u[i]
			}
			slices.Sort(col)
			if rule == runspec.AggMedian {
				if n%2 == 1 {
					dst[i] = col[n/2]
				} else {
					dst[i] = float32(0.5 * (float64(col[n/2-1]) + float64(col[n/2])))
				}
				continue
			}
			s := float32(0)
			for _, v := range col[cut : n-cut] {
				s += v
			}
			dst[i] = s / float32(n-2*cut)
		}
		return nil
	case runspec.AggCenteredClip:
		centeredClip(updates, dst, clipIters)
		return nil
	default:
		return fmt.Errorf("trainer: unknown aggregation rule %q", rule)
	}
}

// clipIters is how many centered-clipping steps Aggregate takes.
const clipIters = 3

// centeredClip is centered clipping (Karimireddy, He and Jaggi, "Learning
// from History for Byzantine Robust Optimization", 2021) without a
// tuning knob: from v = 0, each step moves v by the mean of the updates'
// differences from v, each clipped to the median of their norms τ,
//
//	v ← v + (1/n) Σᵢ (xᵢ − v)·min(1, τ/‖xᵢ − v‖).
//
// At most half the updates are clipped, so honest rounds lose little;
// any one update moves the result by at most τ/n per step, so a member
// that scales its update up buys nothing, and a minority pulling one way
// moves it by at most its share of τ, whatever the size of what it sends.
// It works on the decoded sparse updates as they are: their residuals
// (error feedback) stay with their senders. Sums run in float64 in the
// given order, so every peer computes the same bits.
func centeredClip(updates [][]float32, dst []float32, iters int) {
	n, d := len(updates), len(dst)
	v := make([]float64, d)
	acc := make([]float64, d)
	dist := make([]float64, n)
	for range iters {
		for j, u := range updates {
			var s float64
			for i, x := range u {
				t := float64(x) - v[i]
				s += t * t
			}
			dist[j] = math.Sqrt(s)
		}
		sorted := slices.Clone(dist)
		slices.Sort(sorted)
		tau := sorted[(n-1)/2]
		clear(acc)
		for j, u := range updates {
			w := 1.0
			if dist[j] > tau && dist[j] > 0 {
				w = tau / dist[j]
			}
			for i, x := range u {
				acc[i] += (float64(x) - v[i]) * w
			}
		}
		for i := range v {
			v[i] += acc[i] / float64(n)
		}
	}
	for i := range dst {
		dst[i] = float32(v[i])
	}
}
