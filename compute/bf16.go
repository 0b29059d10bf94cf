package compute

import (
	"fmt"
	"math"
)

// BF16 is a bfloat16 number: the top 16 bits of a float32 (8-bit exponent,
// 7-bit mantissa). Weights may be stored as BF16 to halve memory traffic;
// the kernels widen them to float32 exactly and accumulate in float32.
type BF16 uint16

// ToBF16 rounds f to the nearest BF16 (ties to even). NaNs stay NaN (quiet),
// infinities stay infinite, and values beyond the largest BF16 round to ±Inf.
func ToBF16(f float32) BF16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep the sign, force quiet
		return BF16(u>>16 | 0x40)
	}
	u += 0x7fff + (u>>16)&1
	return BF16(u >> 16)
}

// Float32 returns h as a float32 (exact).
func (h BF16) Float32() float32 { return math.Float32frombits(uint32(h) << 16) }

// BF16FromFloat32 converts src into dst (rounding to nearest even); it
// panics if the lengths differ.
func BF16FromFloat32(dst []BF16, src []float32) {
	if len(dst) != len(src) {
		panic(fmt.Errorf("bf16: lengths differ (%d and %d)", len(dst), len(src)))
	}
	for i, v := range src {
		dst[i] = ToBF16(v)
	}
}

// GemmBF16 computes C = alpha·A·Wᵀ + beta·C with float32 A (m×k, stride lda)
// and BF16 weights W in the (out, in) layout (n×k, stride ldw), accumulating
// in float32: the matmul of a linear layer with bf16 weights. Few rows (decode,
// small expert batches) stream W once per 8 rows with the bf16 dot kernels;
// more rows widen W to float32 while packing and run the packed GEMM.
// Inconsistent shapes panic with a descriptive error before memory is
// touched.
func GemmBF16(p *Pool, m, n, k int, alpha float32, a []float32, lda int, w []BF16, ldw int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Errorf("gemm bf16: negative size m=%d n=%d k=%d", m, n, k))
	}
	for _, err := range []error{
		checkMatrix("A", m, k, len(a), lda),
		checkMatrix("W", n, k, len(w), ldw),
		checkMatrix("C", m, n, len(c), ldc),
	} {
		if err != nil {
			panic(fmt.Errorf("gemm bf16: %w", err))
		}
	}
	gemm(defaultKernels, p, false, true, m, n, k, alpha, a, lda, bmat{bf: nonNilBF16(w), ld: ldw, trans: true}, beta, c, ldc)
}

// nonNilBF16 returns w, or an empty non-nil slice (bmat tells fp32 from
// bf16 by which slice is non-nil).
func nonNilBF16(w []BF16) []BF16 {
	if w == nil {
		return []BF16{}
	}
	return w
}
