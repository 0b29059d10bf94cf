//go:build amd64 && !purego

package compute

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// hasBF16Mixed says whether this CPU and OS run the AVX-512 BF16 kernels.
var hasBF16Mixed = hasAVX512 && cpu.X86.HasAVX512BF16

// defaultMixed is the kernel set GemmBF16Mixed uses here.
var defaultMixed = func() *mixedKernels {
	if hasBF16Mixed {
		return &avx512Mixed
	}
	return &genericMixed
}()

// avx512Mixed is the AVX-512 BF16 kernel set.
var avx512Mixed = mixedKernels{micro: microBF16AVX512, microRows: microRowsBF16AVX512, cvtRow: cvtRowAVX512, cvtPairs: cvtPairsAVX512,
	transpose: transposePairsAVX512, packATrans: packATransPanelAVX512, packB: packBPanelAVX512,
	packATrans16: packATransBF16PanelAVX512}

// packATransBF16PanelAVX512 is packATrans16 on bf16PackATransBF16AVX512.
func packATransBF16PanelAVX512(kp, np int, x []BF16, ld int, dst []uint32, pstride int) {
	if kp == 0 || np == 0 {
		return
	}
	_ = x[(2*kp-1)*ld+np*mixedMR-1]
	_ = dst[(np-1)*pstride+kp*mixedMR-1]
	bf16PackATransBF16AVX512(kp, np, (*uint16)(unsafe.Pointer(&x[0])), ld, &dst[0], pstride)
}

// packATransPanelAVX512 is packATrans on bf16PackATransAVX512.
func packATransPanelAVX512(kp, np int, x []float32, ld int, dst []uint32, pstride int) {
	packPanelsAVX512(bf16PackATransAVX512, mixedMR, kp, np, x, ld, dst, pstride)
}

// packBPanelAVX512 is packB on bf16PackBAVX512.
func packBPanelAVX512(kp, np int, x []float32, ld int, dst []uint32, pstride int) {
	packPanelsAVX512(bf16PackBAVX512, mixedNR, kp, np, x, ld, dst, pstride)
}

// packPanelsAVX512 runs the pair-packing kernel pack over np panels of
// width w after checking that x and dst cover what it touches.
func packPanelsAVX512(pack func(kp, np int, x *float32, ld int, dst *uint32, pstride int), w, kp, np int, x []float32, ld int, dst []uint32, pstride int) {
	if kp == 0 || np == 0 {
		return
	}
	_ = x[(2*kp-1)*ld+np*w-1]
	_ = dst[(np-1)*pstride+kp*w-1]
	pack(kp, np, &x[0], ld, &dst[0], pstride)
}

// transposePairsAVX512 is transpose on the float32 GEMM's 16×16 register
// transposes (which move 32-bit lanes, so pairs pass through bit for bit)
// for whole blocks of 16 pairs, the portable loop for the rest.
func transposePairsAVX512(kp int, src, dst []uint32) {
	_ = src[mixedNR*kp-1]
	_ = dst[mixedNR*kp-1]
	n16 := kp / 16
	if n16 > 0 {
		f32 := func(u *uint32) *float32 { return (*float32)(unsafe.Pointer(u)) }
		transpose16AVX512(n16, f32(&src[0]), kp, f32(&dst[0]), mixedNR)
		transpose16AVX512(n16, f32(&src[16*kp]), kp, f32(&dst[16]), mixedNR)
	}
	for j := 0; j < mixedNR; j++ {
		for q := 16 * n16; q < kp; q++ {
			dst[q*mixedNR+j] = src[j*kp+q]
		}
	}
}

// microBF16AVX512 is the mixedMicro on sbgemmKernelAVX512.
func microBF16AVX512(kp int, a, b []uint32, c []float32, ldc int, alpha float32, add bool) {
	if kp == 0 {
		microBF16Generic(kp, a, b, c, ldc, alpha, add)
		return
	}
	_ = a[kp*mixedMR-1]
	_ = b[kp*mixedNR-1]
	_ = c[(mixedMR-1)*ldc+mixedNR-1]
	sbgemmKernelAVX512(kp, unsafe.SliceData(a), unsafe.SliceData(b), unsafe.SliceData(c), ldc, alpha, boolInt(add))
}

// microRowsBF16AVX512 is microRows on sbgemmKernelRowsAVX512.
func microRowsBF16AVX512(kp int, a []uint32, lda int, b []uint32, c []float32, ldc int, alpha float32, add bool) {
	if kp == 0 {
		microRowsBF16Generic(kp, a, lda, b, c, ldc, alpha, add)
		return
	}
	_ = a[(mixedMR-1)*lda+kp-1]
	_ = b[kp*mixedNR-1]
	_ = c[(mixedMR-1)*ldc+mixedNR-1]
	sbgemmKernelRowsAVX512(kp, unsafe.SliceData(a), lda, unsafe.SliceData(b), unsafe.SliceData(c), ldc, alpha, boolInt(add))
}

// boolInt is 1 for true, 0 for false.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cvtRowAVX512 is cvtRow: bf16CvtRowAVX512 over whole 32-float blocks,
// the portable loop for the rest.
func cvtRowAVX512(src []float32, dst []uint32) {
	n := len(src) &^ 31
	if n > 0 {
		_ = dst[n/2-1]
		bf16CvtRowAVX512(n, unsafe.SliceData(src), unsafe.SliceData(dst))
	}
	if r := len(src) - n; r > 0 {
		// The tail through one zero-padded block.
		var s [32]float32
		var d [16]uint32
		copy(s[:], src[n:])
		bf16CvtRowAVX512(32, &s[0], &d[0])
		copy(dst[n/2:n/2+r/2], d[:])
	}
}

// cvtPairsAVX512 is cvtPairs: bf16CvtPairsAVX512 over whole 16-float
// blocks, the portable loop for the rest.
func cvtPairsAVX512(x, y []float32, dst []uint32) {
	n := len(x) &^ 15
	if n > 0 {
		_ = y[n-1]
		_ = dst[n-1]
		bf16CvtPairsAVX512(n, unsafe.SliceData(x), unsafe.SliceData(y), unsafe.SliceData(dst))
	}
	if r := len(x) - n; r > 0 {
		// The tail through one zero-padded block.
		var xs, ys [16]float32
		var d [16]uint32
		copy(xs[:], x[n:])
		copy(ys[:], y[n:len(x)])
		bf16CvtPairsAVX512(16, &xs[0], &ys[0], &d[0])
		copy(dst[n:len(x)], d[:])
	}
}

// probeBF16 runs n iterations of 16 independent zmm VDPBF16PS and returns
// the FLOPs done (a dot of two pairs is 4 FLOP per lane); ok is false
// without AVX-512 BF16.
func probeBF16(n int) (flops float64, ok bool) {
	if !hasBF16Mixed || n <= 0 {
		return 0, false
	}
	dpbf16LoopAVX512(n)
	return float64(n) * 16 * 64, true
}

// fastMixed returns the AVX-512 BF16 kernel set, or nil where the CPU
// lacks it.
func fastMixed() *mixedKernels {
	if hasBF16Mixed {
		return &avx512Mixed
	}
	return nil
}
