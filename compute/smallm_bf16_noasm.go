//go:build !amd64 || purego

package compute

// bf16TKernels says whether GemmBF16T has its vector kernels here.
const bf16TKernels = false

// rowAxpyBF16x4 is never called without the vector kernels.
func rowAxpyBF16x4(ma, k int, a []float32, lda int, b []BF16, ldb int, c []float32, ldc int) {
	gemmBF16TGeneric(ma, bf16TCols, k, a, lda, b, ldb, c, ldc)
}
