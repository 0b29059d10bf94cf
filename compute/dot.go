package compute

import "fmt"

// Sdot returns Σ x[i]·y[i] over i < len(x) on the fastest path (AVX-512
// with four accumulators where available). It panics with a descriptive
// error if y is shorter than x. (Dot in elementwise.go is the same function
// under the name the elementwise API uses.)
func Sdot(x, y []float32) float32 {
	if len(y) < len(x) {
		panic(fmt.Errorf("sdot: y has %d elements, x has %d", len(y), len(x)))
	}
	return vecDot(defaultKernels, x, y[:len(x)])
}

// Axpy does y[i] += alpha·x[i] for i < len(x). It panics with a descriptive
// error if y is shorter than x.
func Axpy(alpha float32, x, y []float32) {
	if len(y) < len(x) {
		panic(fmt.Errorf("axpy: y has %d elements, x has %d", len(y), len(x)))
	}
	axpy(defaultKernels, alpha, x, y[:len(x)])
}

// axpy is Axpy on path ks.
func axpy(ks *kernels, alpha float32, x, y []float32) {
	n := len(x)
	t := n - n%ks.vdotStep
	ks.axpy(alpha, x[:t], y[:t])
	if t < n {
		axpyGeneric(alpha, x[t:], y[t:n])
	}
}
