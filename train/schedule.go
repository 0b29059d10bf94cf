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

// BatchRamp grows the tokens per optimizer step linearly with the training
// tokens consumed, from Start to End over the first Tokens tokens, as
// GPT-3 and GPT-4 ramped their batch sizes. A step is always a whole number
// of micro-batches of Micro (batch × seq-len) tokens: the step that begins
// after c tokens accumulates
//
//	max(1, ⌈(Start + (End − Start)·min(1, c/Tokens)) / Micro⌉)
//
// micro-batches (computed in float64). Because it depends only on the tokens
// consumed, which checkpoints save, a resumed run takes the same steps.
type BatchRamp struct {
	Start, End int   // tokens per step at the start and after the ramp
	Tokens     int64 // ramp length in consumed tokens (0: no ramp, End from the start)
	Micro      int   // tokens per micro-batch
}

// Accum returns the number of micro-batches of the step that begins after
// consumed training tokens.
func (r BatchRamp) Accum(consumed int64) int {
	target := float64(r.End)
	if r.Tokens > 0 && consumed < r.Tokens {
		target = float64(r.Start) + float64(r.End-r.Start)*float64(consumed)/float64(r.Tokens)
	}
	return max(1, int(math.Ceil(target/float64(max(1, r.Micro)))))
}

// RunTokens returns the tokens that steps optimizer steps consume under r.
func (r BatchRamp) RunTokens(steps int) int64 {
	var c int64
	for s := 0; s < steps; s++ {
		if r.Tokens <= 0 || c >= r.Tokens {
			// The rest of the run is at End.
			return c + int64(steps-s)*int64(r.Accum(c))*int64(r.Micro)
		}
		c += int64(r.Accum(c)) * int64(r.Micro)
	}
	return c
}
