//go:build amd64 && !purego

package compute

import "unsafe"

// hasAVXCopy says whether copyPanels may use the AVX moves.
var hasAVXCopy = hasAVX2

// copyPanels copies np runs of w floats, packed back to back in src, to
// dst at a stride of dstride floats: dst[p*dstride+j] = src[p*w+j]. It is
// the inner move of the A and B packing loops (a copy() per 48 or 128
// bytes spends more in the memmove call than in the move).
func copyPanels(w, np int, src, dst []float32, dstride int) {
	if np <= 0 {
		return
	}
	_ = src[np*w-1]
	_ = dst[(np-1)*dstride+w-1]
	switch {
	case hasAVXCopy && w == 12:
		copyPanels12AVX(np, unsafe.SliceData(src), unsafe.SliceData(dst), dstride)
	case hasAVXCopy && w == 32:
		copyPanels32AVX(np, unsafe.SliceData(src), unsafe.SliceData(dst), dstride)
	default:
		copyPanelsGeneric(w, np, src, dst, dstride)
	}
}

// microTAFor returns the micro-kernel that reads a full mr-row panel of a
// transposed A in place (a[l*lda+i], i < mr, l < k) for the kernel path
// ks, or nil when ks has none. Its arithmetic matches ks.micro exactly, so
// reading A in place instead of packing it changes no result bit.
func microTAFor(ks *kernels) func(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, alpha float32, add bool) {
	if ks != &avx512Kernels {
		return nil
	}
	return func(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, alpha float32, add bool) {
		sgemmKernelTAAVX512(k, unsafe.SliceData(a), unsafe.SliceData(b), ldb, unsafe.SliceData(c), ldc, alpha, boolInt(add), lda)
	}
}
