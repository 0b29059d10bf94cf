//go:build !amd64 || purego

package compute

// defaultKernels is the path the exported functions use: the portable one
// on this architecture or with the purego tag.
var defaultKernels = &genericKernels

// fastPathReason says why the generic path was chosen.
const fastPathReason = "no SIMD kernels for this GOARCH (or built with -tags purego)"

// fastKernels returns the SIMD path available on this machine, or nil.
func fastKernels() *kernels { return nil }

// allFastKernels returns every SIMD path this machine can run: none.
func allFastKernels() []*kernels { return nil }

// probeFMA has no portable equivalent.
func probeFMA(n int) (float64, bool) { return 0, false }

// probeCycles has no portable equivalent.
func probeCycles(n int) (float64, bool) { return 0, false }
