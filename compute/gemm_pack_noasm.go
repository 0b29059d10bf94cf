//go:build !amd64 || purego

package compute

// copyPanels copies np runs of w floats, packed back to back in src, to
// dst at a stride of dstride floats: dst[p*dstride+j] = src[p*w+j].
func copyPanels(w, np int, src, dst []float32, dstride int) {
	copyPanelsGeneric(w, np, src, dst, dstride)
}

// microTAFor returns nil: no in-place transposed-A micro-kernel here.
func microTAFor(ks *kernels) func(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, alpha float32, add bool) {
	return nil
}
