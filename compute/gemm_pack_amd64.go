//go:build amd64 && !purego

package compute

import "unsafe"

//go:noescape
func copyPanels12AVX(np int, src *float32, dst *float32, dstride int)

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
