package infer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/moe-llm/moe/compute"
)

// SampleOptions choose how the next token is drawn from the logits.
type SampleOptions struct {
	// Temperature divides the logits; 0 means greedy (argmax, ties to the
	// lower id).
	Temperature float64
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (nucleus sampling); 0 or >= 1 keeps all.
	TopP float64
	// TopK keeps the K most likely tokens (ties to the lower id); 0 keeps all.
	TopK int
	// Seed makes sampling reproducible.
	Seed uint64
}

// Validate reports options that make no sense.
func (o SampleOptions) Validate() error {
	switch {
	case o.Temperature < 0 || math.IsNaN(o.Temperature) || math.IsInf(o.Temperature, 0):
		return fmt.Errorf("temperature %v must be a finite number >= 0", o.Temperature)
	case o.TopP < 0 || o.TopP > 1 || math.IsNaN(o.TopP):
		return fmt.Errorf("top-p %v must be in [0,1]", o.TopP)
	case o.TopK < 0:
		return fmt.Errorf("top-k %d must be >= 0", o.TopK)
	}
	return nil
}

// Sampler draws tokens from logits under fixed SampleOptions with its own
// seeded random stream. It is not safe for concurrent use.
type Sampler struct {
	opts SampleOptions
	rng  *rand.Rand
	buf  []float32
	ids  []int32
	ex   []float64
}

// NewSampler returns a sampler for opts (see SampleOptions.Validate).
func NewSampler(opts SampleOptions) *Sampler {
	return &Sampler{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))}
}

// Greedy reports whether the sampler is argmax (temperature 0).
func (s *Sampler) Greedy() bool { return s.opts.Temperature == 0 }

// Float64 returns a uniform number in [0,1) from the sampler's stream.
func (s *Sampler) Float64() float64 { return s.rng.Float64() }

// Argmax returns the index of the largest value, the lowest on ties (the
// greedy choice over a row of logits). x must not be empty.
func Argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// Probs writes into dst (len(logits) floats) the exact distribution Sample
// draws from: one-hot on the argmax at temperature 0, else the softmax of
// logits/Temperature restricted to the top-k and then the top-p nucleus and
// renormalised.
func (s *Sampler) Probs(logits, dst []float32) {
	dst = dst[:len(logits)]
	if s.opts.Temperature == 0 {
		clear(dst)
		dst[Argmax(logits)] = 1
		return
	}
	inv := 1 / s.opts.Temperature
	mx := logits[Argmax(logits)]
	V := len(logits)
	k := s.opts.TopK
	if k <= 0 || k > V {
		k = V
	}
	useP := s.opts.TopP > 0 && s.opts.TopP < 1
	if k == V && !useP {
		expShifted(logits, dst, mx, inv)
		var sum float64
		for _, e := range dst {
			sum += float64(e)
		}
		scale := float32(1 / sum)
		for i := range dst {
			dst[i] *= scale
		}
		return
	}
	// Only the kept tokens are ordered (by logit, descending, ties to the
	// lower id): the top k by a size-k heap, or for top-p alone the
	// smallest prefix of that order above an exponential threshold whose
	// mass already reaches TopP.
	var total float64
	s.ex = s.ex[:0]
	if k < V {
		s.ids = topKIDs(logits, k, s.ids[:0])
		for _, id := range s.ids {
			e := math.Exp(float64(logits[id]-mx) * inv)
			s.ex = append(s.ex, e)
			total += e
		}
	} else {
		expShifted(logits, dst, mx, inv)
		for _, e := range dst {
			total += float64(e)
		}
		target := s.opts.TopP * total
		for t := float32(1.0 / 16); ; t /= 16 {
			if t < 1e-37 {
				t = 0 // everything
			}
			s.ids = s.ids[:0]
			var c float64
			for i, e := range dst {
				if e >= t {
					s.ids = append(s.ids, int32(i))
					c += float64(e)
				}
			}
			if t == 0 || c > target*(1+1e-6) {
				break
			}
		}
		slices.SortFunc(s.ids, func(a, b int32) int { return order(logits, a, b) })
		for _, id := range s.ids {
			s.ex = append(s.ex, float64(dst[id]))
		}
	}
	keep, ex := s.ids, s.ex
	sum := total
	if useP {
		var cum float64
		n := len(keep)
		for j := range keep {
			cum += ex[j] / total
			if cum >= s.opts.TopP {
				n = j + 1
				break
			}
		}
		keep = keep[:n]
		sum = 0
		for j := range keep {
			sum += ex[j]
		}
	}
	clear(dst)
	for j, id := range keep {
		dst[id] = float32(ex[j] / sum)
	}
}

// order compares token ids a and b by logit, descending, ties to the lower
// id (the order top-k and top-p keep tokens in).
func order(logits []float32, a, b int32) int {
	switch {
	case logits[a] > logits[b]:
		return -1
	case logits[a] < logits[b]:
		return 1
	}
	return int(a - b)
}

// topKIDs appends to ids the k (1 <= k <= len(logits)) first token ids in
// order, sorted, selecting with a size-k heap whose root is the worst kept
// id: O(V log k) instead of sorting the vocabulary.
func topKIDs(logits []float32, k int, ids []int32) []int32 {
	h := ids[:0]
	// worse reports whether h[i] comes after h[j] in order.
	worse := func(i, j int) bool { return order(logits, h[i], h[j]) > 0 }
	down := func(i int) {
		for {
			w, l, r := i, 2*i+1, 2*i+2
			if l < len(h) && worse(l, w) {
				w = l
			}
			if r < len(h) && worse(r, w) {
				w = r
			}
			if w == i {
				return
			}
			h[i], h[w] = h[w], h[i]
			i = w
		}
	}
	for i := range logits {
		id := int32(i)
		if len(h) < k {
			h = append(h, id)
			for c := len(h) - 1; c > 0; {
				p := (c - 1) / 2
				if !worse(c, p) {
					break
				}
				h[c], h[p] = h[p], h[c]
				c = p
			}
			continue
		}
		if order(logits, id, h[0]) < 0 {
			h[0] = id
			down(0)
		}
	}
	slices.SortFunc(h, func(a, b int32) int { return order(logits, a, b) })
	return h
}

// SampleProbs draws an id from the distribution p (non-negative, summing to
// about one; the total is renormalised; entries <= 0 are never drawn).
// It sums p in blocks of sampleBlock entries, then walks whole blocks up to
// the one holding the draw and scans only that one.
func (s *Sampler) SampleProbs(p []float32) int32 {
	var total float64
	for b := 0; b < len(p); b += sampleBlock {
		total += blockSum(p[b:min(b+sampleBlock, len(p))])
	}
	u := s.rng.Float64() * total
	var cum float64
	last := int32(-1)
	for b := 0; b < len(p); b += sampleBlock {
		blk := p[b:min(b+sampleBlock, len(p))]
		bs := blockSum(blk)
		if u >= cum+bs {
			cum += bs
			for i := len(blk) - 1; i >= 0; i-- {
				if blk[i] > 0 {
					last = int32(b + i)
					break
				}
			}
			continue
		}
		c := cum
		for i, v := range blk {
			if v <= 0 {
				continue
			}
			c += float64(v)
			last = int32(b + i)
			if u < c {
				return last
			}
		}
		cum += bs // rounding left u past this block's entries: go on
	}
	if last < 0 {
		return 0
	}
	return last
}

// sampleBlock is the block length SampleProbs sums p in.
const sampleBlock = 32

// blockSum returns the float64 sum of the positive entries of x (at most
// sampleBlock), in four interleaved chains.
func blockSum(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(max(x[i], 0))
		s1 += float64(max(x[i+1], 0))
		s2 += float64(max(x[i+2], 0))
		s3 += float64(max(x[i+3], 0))
	}
	for ; i < len(x); i++ {
		s0 += float64(max(x[i], 0))
	}
	return (s0 + s1) + (s2 + s3)
}

// Sample draws the next token from logits.
func (s *Sampler) Sample(logits []float32) int32 {
	if s.opts.Temperature == 0 {
		return Argmax(logits)
	}
	s.buf = grow(s.buf, len(logits))
	if (s.opts.TopK <= 0 || s.opts.TopK >= len(logits)) && (s.opts.TopP <= 0 || s.opts.TopP >= 1) {
		// Full vocabulary: SampleProbs renormalises, so the unnormalised
		// exponentials are drawn from directly (same distribution as Probs).
		expShifted(logits, s.buf, logits[Argmax(logits)], 1/s.opts.Temperature)
		return s.SampleProbs(s.buf)
	}
	s.Probs(logits, s.buf)
	return s.SampleProbs(s.buf)
}

// expShifted writes dst[i] = exp((logits[i] − mx)·inv) with compute's
// vectorised float32 exponential (relative error below 3e-7).
func expShifted(logits, dst []float32, mx float32, inv float64) {
	dst = dst[:len(logits)]
	if inv == 1 {
		compute.ExpScale(dst, logits, mx, 1)
		return
	}
	f := float32(inv)
	for i, v := range logits {
		dst[i] = (v - mx) * f
	}
	compute.ExpScale(dst, dst, 0, 1)
}
