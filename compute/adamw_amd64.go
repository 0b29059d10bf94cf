//go:build amd64 && !purego

package compute

import "golang.org/x/sys/cpu"

// hasAdamWAVX512 reports whether adamwAVX512 can run here.
var hasAdamWAVX512 = cpu.X86.HasAVX512F

// adamwVector updates the longest prefix the SIMD kernel handles and
// returns its length.
func adamwVector(p, g, m, v []float32, k *adamwConsts) int {
	n := len(p) &^ 15
	if !hasAdamWAVX512 || n == 0 {
		return 0
	}
	_, _, _ = g[n-1], m[n-1], v[n-1]
	adamwAVX512(&p[0], &g[0], &m[0], &v[0], n, k)
	return n
}
