package trainer

import (
	"fmt"
	"math"
)

// Schedule kinds.
const (
	ScheduleConstant = "constant"
	ScheduleCosine   = "cosine"
)

// Schedule gives the learning rate of each step.
type Schedule struct {
	Kind   string  `json:"kind"`   // constant or cosine
	Base   float64 `json:"base"`   // peak learning rate
	Warmup int64   `json:"warmup"` // linear warm-up steps (both kinds)
	Total  int64   `json:"total"`  // cosine: steps until the rate reaches Min
	Min    float64 `json:"min"`    // cosine: final learning rate
}

// Validate checks the schedule's fields.
func (s Schedule) Validate() error {
	switch {
	case s.Kind != ScheduleConstant && s.Kind != ScheduleCosine:
		return fmt.Errorf("trainer: unknown schedule %q (want constant or cosine)", s.Kind)
	case !(s.Base > 0) || math.IsInf(s.Base, 0):
		return fmt.Errorf("trainer: learning rate %v must be positive and finite", s.Base)
	case s.Warmup < 0:
		return fmt.Errorf("trainer: warm-up %d must not be negative", s.Warmup)
	case s.Min < 0 || s.Min > s.Base:
		return fmt.Errorf("trainer: minimum learning rate %v must be in [0, %v]", s.Min, s.Base)
	case s.Kind == ScheduleCosine && s.Total <= s.Warmup:
		return fmt.Errorf("trainer: cosine schedule needs more total steps (%d) than warm-up steps (%d)", s.Total, s.Warmup)
	}
	return nil
}

// At returns the learning rate for step (counted from 0).
func (s Schedule) At(step int64) float64 {
	if step < s.Warmup {
		return s.Base * float64(step+1) / float64(s.Warmup)
	}
	if s.Kind != ScheduleCosine {
		return s.Base
	}
	if step >= s.Total {
		return s.Min
	}
	p := float64(step-s.Warmup) / float64(s.Total-s.Warmup)
	return s.Min + 0.5*(s.Base-s.Min)*(1+math.Cos(math.Pi*p))
}
