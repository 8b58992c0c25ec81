package trainer

import (
	"fmt"
	"math"
	"slices"

	"github.com/vtrain/vtrain/runspec"
)

// Aggregate combines n dense updates (each len(dst)) into dst with the
// given rule: mean, coordinate-wise trimmed mean (cutting ⌊trim·n⌋ values
// at each end), or coordinate-wise median. Inputs are combined in the order
// given, so callers pass them in a canonical order (sorted update IDs) and
// every peer gets the same bits.
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
	default:
		return fmt.Errorf("trainer: unknown aggregation rule %q", rule)
	}
}
