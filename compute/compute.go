// Package compute holds moe's numerical kernels: GEMM/GEMV, element-wise
// transformer ops and the optimizer update, as plain Go functions over
// row-major float32 slices. Fast SIMD paths are chosen at run time, with a
// portable fallback that is always tested against them.
package compute

import "runtime"

// Pool is a persistent set of worker goroutines that kernels split their
// work over. A nil *Pool runs everything on the calling goroutine.
type Pool struct {
	threads int
}

// NewPool returns a pool of n workers; n <= 0 means runtime.GOMAXPROCS(0).
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return &Pool{threads: n}
}

// Threads returns the number of workers (1 for a nil pool).
func (p *Pool) Threads() int {
	if p == nil {
		return 1
	}
	return p.threads
}

// Close stops the pool's workers. A closed pool must not be used again.
func (p *Pool) Close() {}

// Gemm computes C = alpha·op(A)·op(B) + beta·C, where op(A) is m×k and op(B)
// is k×n. All matrices are row-major with row strides lda, ldb and ldc; op(X)
// is X or Xᵀ as transA/transB say. beta == 0 overwrites C (NaNs in C are not
// propagated).
func Gemm(p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for l := 0; l < k; l++ {
				var av, bv float32
				if transA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				if transB {
					bv = b[j*ldb+l]
				} else {
					bv = b[l*ldb+j]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}
