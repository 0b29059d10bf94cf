package compute

import "fmt"

// bf16TCols is the width of the column blocks GemmBF16T's kernels compute.
const bf16TCols = 64

// bf16TRows is the most rows of A one kernel call handles.
const bf16TRows = 4

// checkGemmBF16T reports whether the arguments of GemmBF16T are consistent.
func checkGemmBF16T(m, n, k int, a []float32, lda int, b []BF16, ldb int, c []float32, ldc int) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("compute: GemmBF16T: negative size m=%d n=%d k=%d", m, n, k)
	}
	if m == 0 || n == 0 {
		return nil
	}
	if lda < k || ldb < n || ldc < n {
		return fmt.Errorf("compute: GemmBF16T: leading dimensions lda=%d ldb=%d ldc=%d too small for m=%d n=%d k=%d", lda, ldb, ldc, m, n, k)
	}
	if k > 0 && (len(a) < (m-1)*lda+k || len(b) < (k-1)*ldb+n) {
		return fmt.Errorf("compute: GemmBF16T: A holds %d floats and B %d values, too few for m=%d n=%d k=%d", len(a), len(b), m, n, k)
	}
	if len(c) < (m-1)*ldc+n {
		return fmt.Errorf("compute: GemmBF16T: C holds %d floats, too few for %d×%d (ldc %d)", len(c), m, n, ldc)
	}
	return nil
}

// GemmBF16T computes C = A·B on the calling goroutine for a few rows of a
// float32 A (m×k, row stride lda) and a bfloat16 B stored k×n (row stride
// ldb; a weight matrix kept transposed, in×out), accumulating in float32.
// It is the small-batch (decode, verification) product over bf16 weights:
// B is streamed once per four rows of A with broadcast-FMA kernels (no
// horizontal sums), and every output is summed over l = 0..k-1 in order,
// so a row's result does not depend on m or on how the columns are split.
// Inconsistent shapes panic with checkGemmBF16T's error.
func GemmBF16T(m, n, k int, a []float32, lda int, b []BF16, ldb int, c []float32, ldc int) {
	if err := checkGemmBF16T(m, n, k, a, lda, b, ldb, c, ldc); err != nil {
		panic(err)
	}
	if emptyProduct(m, n, k, c, ldc) {
		return
	}
	j := 0
	if bf16TKernels {
		for ; j+bf16TCols <= n; j += bf16TCols {
			for i0 := 0; i0 < m; i0 += bf16TRows {
				ma := min(bf16TRows, m-i0)
				rowAxpyBF16x4(ma, k, a[i0*lda:], lda, b[j:], ldb, c[i0*ldc+j:], ldc)
			}
		}
	}
	if j < n {
		gemmBF16TGeneric(m, n-j, k, a, lda, b[j:], ldb, c[j:], ldc)
	}
}

// emptyProduct reports whether the m×n product C = A·B over k terms needs
// no arithmetic: m or n is 0, or k is 0, when it sets C's m×n block (row
// stride ldc) to zeros.
func emptyProduct(m, n, k int, c []float32, ldc int) bool {
	if m == 0 || n == 0 {
		return true
	}
	if k != 0 {
		return false
	}
	for i := 0; i < m; i++ {
		clear(c[i*ldc : i*ldc+n])
	}
	return true
}

// gemmBF16TGeneric is the portable GemmBF16T (and its column tail).
func gemmBF16TGeneric(m, n, k int, a []float32, lda int, b []BF16, ldb int, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		crow := c[i*ldc : i*ldc+n]
		clear(crow)
		for l := 0; l < k; l++ {
			av := a[i*lda+l]
			brow := b[l*ldb : l*ldb+n]
			for jj, bv := range brow {
				crow[jj] += av * bv.Float32()
			}
		}
	}
}
