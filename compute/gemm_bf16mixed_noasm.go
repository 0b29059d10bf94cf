//go:build !amd64 || purego

package compute

// hasBF16Mixed: no BF16 kernels on this path.
const hasBF16Mixed = false

// defaultMixedMicro is the portable micro-kernel.
var defaultMixedMicro mixedMicro = microBF16Generic

// probeBF16 has no portable equivalent.
func probeBF16(n int) (float64, bool) { return 0, false }

// fastMixedMicro returns nil: no SIMD micro-kernel on this path.
func fastMixedMicro() mixedMicro { return nil }
