//go:build !amd64 || purego

package compute

// copyPanels copies np runs of w floats, packed back to back in src, to
// dst at a stride of dstride floats: dst[p*dstride+j] = src[p*w+j].
func copyPanels(w, np int, src, dst []float32, dstride int) {
	copyPanelsGeneric(w, np, src, dst, dstride)
}
