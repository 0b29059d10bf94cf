// Package ref64 holds the float64 reference operations that tests check
// moe's float32 kernels and models against: written the plain way, one
// loop each, so that a reader can check them against the formulas.
package ref64

import "math"

// MatVec returns W·x for W stored as rows of len(x) (row-major, len(w)/len(x)
// rows).
func MatVec(w, x []float64) []float64 {
	n := len(w) / len(x)
	out := make([]float64, n)
	for i := range out {
		var s float64
		for j, v := range x {
			s += w[i*len(x)+j] * v
		}
		out[i] = s
	}
	return out
}

// RMSNorm returns x / sqrt(mean(x²) + eps) ⊙ g.
func RMSNorm(x, g []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * s * g[i]
	}
	return out
}

// SiLU returns v·sigmoid(v).
func SiLU(v float64) float64 { return v / (1 + math.Exp(-v)) }
