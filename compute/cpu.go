package compute

// kernels is one implementation of the innermost loops. The blocked drivers
// in gemm.go and gemv.go are shared; only these functions differ between the
// portable Go path and the SIMD paths. A kernels value is immutable after
// package initialisation.
type kernels struct {
	// name says which path this is ("avx512", "avx2", "generic").
	name string
	// mr×nr is the GEMM micro-kernel tile.
	mr, nr int
	// micro computes the mr×nr tile C = alpha·Σ_l a[l*mr+i]·b[l*ldb+j]
	// (+ C when add), for k steps; a is a packed A panel, b has nr
	// contiguous values per step.
	micro func(k int, a, b []float32, ldb int, c []float32, ldc int, alpha float32, add bool)
	// rowAxpy does C[i][0:16·nv] += alpha·Σ_{l<k} a[i*lda+l]·b[l*ldb:+16·nv]
	// for i < ma <= rowAxpyRows, nv ∈ {1, 4}; nil if this path has none.
	rowAxpy     func(ma, nv, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, alpha float32)
	rowAxpyRows int
	// packBTrans packs an nr-column panel of a transposed B: dst[l*nr+j] =
	// src[j*ld+l] for l < kc, j < nr. It may be nil or return false (then
	// the Go loop does it).
	packBTrans func(kc int, src []float32, ld int, dst []float32) bool
	// packBTransBF16 is packBTrans for bf16 B, widening to float32.
	packBTransBF16 func(kc int, src []BF16, ld int, dst []float32) bool
	// microRows is micro over an unpacked A: a[i*lda+l] for the mr rows
	// (nil if this path has none; then A is always packed).
	microRows func(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, alpha float32, add bool)
	// dotNB(ma) is how many B rows dot handles with ma A rows (ma <= 8);
	// 0 means this path has no dot kernel.
	dotNB func(ma int) int
	// dot adds, for i < ma and j < dotNB(ma), the 16 lane partial sums
	// of a[i*lda+l]·b[j*ldb+l] over l < 16·n16 into out[(i*nb+j)*16:].
	dot func(ma, n16 int, a []float32, lda int, b []float32, ldb int, out []float32)
	// dotBF16 is dot with bf16 B rows.
	dotBF16 func(ma, n16 int, a []float32, lda int, b []BF16, ldb int, out []float32)
	// vdot returns Σ x[i]·y[i] over the first n - n%64 elements; vdotStep
	// is that 64 (1 for the generic path, which does all of them).
	vdot     func(x, y []float32) float32
	vdotStep int
	// axpy does y += alpha·x over the first n - n%vdotStep elements.
	axpy func(alpha float32, x, y []float32)
}

// CPUFeatures reports the kernel path Gemm and friends use on this machine
// ("avx512", "avx2" or "generic") and, when a slower path than the CPU
// allows is chosen on amd64, why.
func CPUFeatures() (path string, reason string) {
	return defaultKernels.name, fastPathReason
}
