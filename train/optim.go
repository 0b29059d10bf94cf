package train

import (
	"math"
	"sync"

	"github.com/moe-llm/moe/compute"
)

// chunk is the fixed work unit of the optimizer's parallel loops. Partial
// sums are taken per chunk and added in chunk order, so results do not
// depend on the number of threads.
const chunk = 1 << 15

// AdamW is the optimizer state: hyper-parameters and the two moment vectors.
type AdamW struct {
	Beta1, Beta2, Eps float64
	WeightDecay       float64
	// GradClip is the maximum global gradient L2 norm; 0 disables clipping.
	GradClip float64
	// M and V are the first and second moments, one per parameter.
	M, V []float32
	// Step counts the updates applied (the t of the bias correction).
	Step int
	// Threads is how many goroutines the update uses (<= 1: the caller's).
	Threads int
}

// NewAdamW returns an optimizer for n parameters with the usual LLM
// defaults (β 0.9/0.95, eps 1e-8, weight decay 0.1, clip 1.0).
func NewAdamW(n, threads int) *AdamW {
	return &AdamW{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradClip: 1.0,
		M: make([]float32, n), V: make([]float32, n), Threads: threads}
}

// parallel runs f over [0,n) split into fixed chunks on o.Threads goroutines.
func (o *AdamW) parallel(n int, f func(c, s, e int)) {
	nc := (n + chunk - 1) / chunk
	th := max(1, min(o.Threads, nc))
	var wg sync.WaitGroup
	for w := range th {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := w; c < nc; c += th {
				f(c, c*chunk, min((c+1)*chunk, n))
			}
		}()
	}
	wg.Wait()
}

// GradNorm returns the L2 norm of g, computed in float64 deterministically.
func (o *AdamW) GradNorm(g []float32) float64 {
	parts := make([]float64, (len(g)+chunk-1)/chunk)
	o.parallel(len(g), func(c, s, e int) {
		// Four accumulators break the add latency chain; the order is fixed.
		x := g[s:e]
		var a0, a1, a2, a3 float64
		i := 0
		for ; i+4 <= len(x); i += 4 {
			a0 += float64(x[i]) * float64(x[i])
			a1 += float64(x[i+1]) * float64(x[i+1])
			a2 += float64(x[i+2]) * float64(x[i+2])
			a3 += float64(x[i+3]) * float64(x[i+3])
		}
		for ; i < len(x); i++ {
			a0 += float64(x[i]) * float64(x[i])
		}
		parts[c] = (a0 + a1) + (a2 + a3)
	})
	var sum float64
	for _, p := range parts {
		sum += p
	}
	return math.Sqrt(sum)
}

// Update scales the gradient g by gradScale (e.g. 1/micro-batches), clips
// it to GradClip, and applies one AdamW step with learning rate lr to p,
// exempting the noDecay ranges from weight decay. It returns the global
// gradient norm after scaling and before clipping.
func (o *AdamW) Update(p, g []float32, noDecay [][2]int, lr, gradScale float64) float64 {
	norm := o.GradNorm(g) * math.Abs(gradScale)
	scale := gradScale
	if o.GradClip > 0 && norm > o.GradClip {
		scale *= o.GradClip / (norm + 1e-6)
	}
	o.Step++
	sc := float32(scale)
	o.parallel(len(p), func(_, s, e int) {
		if sc != 1 {
			for i := s; i < e; i++ {
				g[i] *= sc
			}
		}
		var nd [][2]int
		for _, r := range noDecay {
			if r[1] > s && r[0] < e {
				nd = append(nd, [2]int{max(r[0], s) - s, min(r[1], e) - s})
			}
		}
		compute.AdamWMasked(p[s:e], g[s:e], o.M[s:e], o.V[s:e], nd, float32(lr),
			float32(o.Beta1), float32(o.Beta2), float32(o.Eps), float32(o.WeightDecay), o.Step)
	})
	return norm
}
