package compute

import "fmt"

// batchSerialFlops is the per-product work below which GemmBatched runs
// whole products in parallel instead of splitting each one.
const batchSerialFlops = 1 << 22

// GemmBatched computes batch independent products
// C_i = alpha·op(A_i)·op(B_i) + beta·C_i for i < batch, where A_i starts at
// a[i*strideA], B_i at b[i*strideB] and C_i at c[i*strideC], each laid out
// as in Gemm (attention's per-head products, experts of equal size). A
// stride of 0 shares one operand across the batch (not allowed for C).
// Small products run whole on separate workers; large ones one after the
// other, each split over the pool. Inconsistent shapes or overlapping C
// blocks panic with CheckGemmBatched's error before memory is touched.
func GemmBatched(p *Pool, transA, transB bool, batch, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int) {
	if err := CheckGemmBatched(transA, transB, batch, m, n, k, a, lda, strideA, b, ldb, strideB, c, ldc, strideC); err != nil {
		panic(err)
	}
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	one := func(p *Pool, i int) {
		gemm(defaultKernels, p, transA, transB, m, n, k, alpha, a[i*strideA:], lda,
			bmat{f32: b[i*strideB:], ld: ldb, trans: transB}, beta, c[i*strideC:], ldc)
	}
	if 2*float64(m)*float64(n)*float64(k) < batchSerialFlops && batch > 1 {
		p.Run(batch, func(i int) { one(nil, i) })
		return
	}
	for i := 0; i < batch; i++ {
		one(p, i)
	}
}

// CheckGemmBatched returns an error naming the problem if a GemmBatched
// call with these arguments would read or write out of bounds, or if the C
// blocks overlap; nil otherwise.
func CheckGemmBatched(transA, transB bool, batch, m, n, k int, a []float32, lda, strideA int, b []float32, ldb, strideB int, c []float32, ldc, strideC int) error {
	if batch < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		return fmt.Errorf("gemm batched: negative batch or stride (batch=%d strides %d, %d, %d)", batch, strideA, strideB, strideC)
	}
	if batch == 0 {
		return nil
	}
	last := batch - 1
	tail := func(s []float32, stride int) []float32 {
		if off := last * stride; off <= len(s) {
			return s[off:]
		}
		return nil
	}
	// The last product has the least room; earlier ones share its shape.
	if err := CheckGemm(transA, transB, m, n, k, tail(a, strideA), lda, tail(b, strideB), ldb, tail(c, strideC), ldc); err != nil {
		return fmt.Errorf("gemm batched: product %d: %w", last, err)
	}
	if batch > 1 && m > 0 && n > 0 && strideC < (m-1)*ldc+n {
		return fmt.Errorf("gemm batched: C blocks of %d×%d (stride %d) overlap with strideC %d", m, n, ldc, strideC)
	}
	return nil
}
