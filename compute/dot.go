package compute

import "fmt"

// Dot returns Σ x[i]·y[i] over i < len(x), accumulated in float32 on the
// fastest path (AVX-512 with four accumulators where available). It panics
// with a descriptive error if y is shorter than x.
func Dot(x, y []float32) float32 {
	if len(y) < len(x) {
		panic(fmt.Errorf("dot: y has %d elements, x has %d", len(y), len(x)))
	}
	return vecDot(defaultKernels, x, y[:len(x)])
}

// axpy does y[i] += alpha·x[i] for i < len(x) on path ks.
func axpy(ks *kernels, alpha float32, x, y []float32) {
	n := len(x)
	t := n - n%ks.vdotStep
	ks.axpy(alpha, x[:t], y[:t])
	if t < n {
		axpyGeneric(alpha, x[t:], y[t:n])
	}
}
