//go:build !amd64 || purego

package compute

// hasBF16Mixed: no BF16 kernels on this path.
const hasBF16Mixed = false

// defaultMixed is the portable kernel set.
var defaultMixed = &genericMixed

// probeBF16 has no portable equivalent.
func probeBF16(n int) (float64, bool) { return 0, false }

// fastMixed returns nil: no SIMD kernels on this path.
func fastMixed() *mixedKernels { return nil }
