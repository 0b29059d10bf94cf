//go:build amd64 && !purego

package compute

import "unsafe"

// copyPanels12AVX: for p < np, copy(dst[p*dstride:p*dstride+12], src[p*12:p*12+12]).
//
//go:noescape
func copyPanels12AVX(np int, src *float32, dst *float32, dstride int)

// copyPanels32AVX: for p < np, copy(dst[p*dstride:p*dstride+32], src[p*32:p*32+32]).
//
//go:noescape
func copyPanels32AVX(np int, src *float32, dst *float32, dstride int)

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

// sgemmKernelTAAVX512: sgemmKernelAVX512 with a[l*lda+i] (a transposed A read
// in place) in place of the packed a[l*12+i]; the same instructions otherwise.
//
//go:noescape
func sgemmKernelTAAVX512(k int, a, b *float32, ldb int, c *float32, ldc int, alpha float32, add int, lda int)

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
