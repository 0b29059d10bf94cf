//go:build !amd64 || purego

package compute

// adamwVector has no SIMD kernel on this platform: it handles nothing.
func adamwVector(p, g, m, v []float32, k *adamwConsts) int { return 0 }
