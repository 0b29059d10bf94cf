package train

import "math"

// Schedule is the learning-rate schedule: linear warmup from 0 to LR over
// Warmup steps, then cosine decay from LR to MinLR at Total steps, and MinLR
// after that.
type Schedule struct {
	LR     float64
	MinLR  float64
	Warmup int
	Total  int
}

// At returns the learning rate of the step-th optimizer update (1-based).
func (s Schedule) At(step int) float64 {
	if step < 1 {
		step = 1
	}
	if s.Warmup > 0 && step <= s.Warmup {
		return s.LR * float64(step) / float64(s.Warmup)
	}
	if step >= s.Total || s.Total <= s.Warmup {
		if s.Total <= 0 {
			return s.LR
		}
		return s.MinLR
	}
	frac := float64(step-s.Warmup) / float64(s.Total-s.Warmup)
	return s.MinLR + 0.5*(s.LR-s.MinLR)*(1+math.Cos(math.Pi*frac))
}
