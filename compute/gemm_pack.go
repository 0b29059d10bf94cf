package compute

// copyPanelsGeneric is the portable copyPanels.
func copyPanelsGeneric(w, np int, src, dst []float32, dstride int) {
	for p := 0; p < np; p++ {
		copy(dst[p*dstride:p*dstride+w], src[p*w:p*w+w])
	}
}
