//go:build amd64 && !purego

package compute

import "unsafe"

// The kernels in smallm_bf16_amd64.s: C[0:ma, 0:64] (+)= A[0:ma, 0:k]·B[0:k,
// 0:64] for B in bf16, ma = 1..4 rows (R1..R4), accumulators in registers.

//go:noescape
func rowAxpyBF16x4R1AVX512(k int, a *float32, lda int, b *BF16, ldb int, c *float32, ldc int, add int)

//go:noescape
func rowAxpyBF16x4R2AVX512(k int, a *float32, lda int, b *BF16, ldb int, c *float32, ldc int, add int)

//go:noescape
func rowAxpyBF16x4R3AVX512(k int, a *float32, lda int, b *BF16, ldb int, c *float32, ldc int, add int)

//go:noescape
func rowAxpyBF16x4R4AVX512(k int, a *float32, lda int, b *BF16, ldb int, c *float32, ldc int, add int)

// bf16TKernels says whether GemmBF16T has its vector kernels here.
var bf16TKernels = hasAVX512

// rowAxpyBF16x4 overwrites C[0:ma, 0:64] with A[0:ma, 0:k]·B[0:k, 0:64];
// the caller has checked that the slices hold those elements.
func rowAxpyBF16x4(ma, k int, a []float32, lda int, b []BF16, ldb int, c []float32, ldc int) {
	_ = a[(ma-1)*lda+k-1]
	_ = b[(k-1)*ldb+bf16TCols-1]
	_ = c[(ma-1)*ldc+bf16TCols-1]
	pa, pb, pc := unsafe.SliceData(a), unsafe.SliceData(b), unsafe.SliceData(c)
	switch ma {
	case 1:
		rowAxpyBF16x4R1AVX512(k, pa, lda, pb, ldb, pc, ldc, 0)
	case 2:
		rowAxpyBF16x4R2AVX512(k, pa, lda, pb, ldb, pc, ldc, 0)
	case 3:
		rowAxpyBF16x4R3AVX512(k, pa, lda, pb, ldb, pc, ldc, 0)
	default:
		rowAxpyBF16x4R4AVX512(k, pa, lda, pb, ldb, pc, ldc, 0)
	}
}
