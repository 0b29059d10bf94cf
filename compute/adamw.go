package compute

import "math"

// adamW applies one bias-corrected AdamW update (Loshchilov & Hutter, with
// the decoupled weight decay of PyTorch's torch.optim.AdamW) to the
// parameters p, given their gradients g and the first and second moment
// buffers m and v, which it updates in place:
//
//	p ← p·(1 − lr·wd)
//	m ← β₁·m + (1 − β₁)·g
//	v ← β₂·v + (1 − β₂)·g²
//	p ← p − lr · (m / (1 − β₁ᵗ)) / (sqrt(v / (1 − β₂ᵗ)) + eps)
//
// step is t, the 1-based index of this update. All four slices must have the
// same length; extra elements of the longer ones are ignored. Pass wd = 0 for
// parameters that get no decay (norm gains and biases). The update is
// element-wise, so splitting a vector into chunks (e.g. over threads) gives
// bit-identical results.
func adamW(p, g, m, v []float32, lr, beta1, beta2, eps, wd float32, step int) {
	n := min(len(p), len(g), len(m), len(v))
	p, g, m, v = p[:n], g[:n], m[:n], v[:n]
	if step < 1 {
		step = 1
	}
	k := newAdamWConsts(lr, beta1, beta2, eps, wd, step)
	done := adamwVector(p, g, m, v, &k)
	adamwGeneric(p[done:], g[done:], m[done:], v[done:], &k)
}

// newAdamWConsts folds the step size and the sqrt of the second bias
// correction as PyTorch does: p -= (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps).
func newAdamWConsts(lr, beta1, beta2, eps, wd float32, step int) adamwConsts {
	bc1 := 1 - math.Pow(float64(beta1), float64(step))
	bc2 := 1 - math.Pow(float64(beta2), float64(step))
	return adamwConsts{
		beta1, 1 - beta1, beta2, 1 - beta2,
		float32(1 / math.Sqrt(bc2)), eps, 1 - lr*wd, float32(float64(lr) / bc1),
	}
}

// adamwConsts are the per-step constants of the update, in the order the
// assembly kernel reads them.
type adamwConsts struct {
	beta1, oneMinusBeta1, beta2, oneMinusBeta2 float32
	invSqrtBC2, eps, decay, stepSize           float32
}

// adamwGeneric is the portable update. The SIMD kernel performs the same
// IEEE operations in the same order (no fused multiply-add), so the two
// agree bit for bit and a vector may be split anywhere.
func adamwGeneric(p, g, m, v []float32, k *adamwConsts) {
	n := len(p)
	g, m, v = g[:n], m[:n], v[:n]
	for i := range p {
		gi := g[i]
		mi := k.beta1*m[i] + k.oneMinusBeta1*gi
		vi := k.beta2*v[i] + k.oneMinusBeta2*gi*gi
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))*k.invSqrtBC2 + k.eps
		p[i] = p[i]*k.decay - k.stepSize*mi/denom
	}
}

// AdamWMasked applies adamW to the whole vector p, with weight decay wd
// everywhere except in the [start,end) ranges of noDecay (which must be
// sorted and non-overlapping, as model.Weights.NoDecay is).
func AdamWMasked(p, g, m, v []float32, noDecay [][2]int, lr, beta1, beta2, eps, wd float32, step int) {
	at := 0
	for _, r := range noDecay {
		s, e := max(r[0], at), min(r[1], len(p))
		if s >= e {
			continue
		}
		adamW(p[at:s], g[at:s], m[at:s], v[at:s], lr, beta1, beta2, eps, wd, step)
		adamW(p[s:e], g[s:e], m[s:e], v[s:e], lr, beta1, beta2, eps, 0, step)
		at = e
	}
	adamW(p[at:], g[at:], m[at:], v[at:], lr, beta1, beta2, eps, wd, step)
}
