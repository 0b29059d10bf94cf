package compute

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGemmBF16T checks GemmBF16T against a float64 reference on the
// bf16-rounded B over row counts, column tails, depths and strides, that C
// outside the product is untouched, and that each row's result is bit for
// bit the one it gets when computed alone.
func TestGemmBF16T(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, m := range []int{1, 2, 3, 4, 5, 9, 16} {
		for _, n := range []int{5, 64, 72, 200} {
			for _, k := range []int{1, 3, 64, 257} {
				lda, ldb, ldc := k+3, n+5, n+2
				a := make([]float32, (m-1)*lda+k)
				for i := range a {
					a[i] = float32(r.NormFloat64())
				}
				b := make([]BF16, (k-1)*ldb+n)
				for i := range b {
					b[i] = ToBF16(float32(r.NormFloat64()))
				}
				const sentinel = 12345
				c := make([]float32, (m-1)*ldc+n+1)
				for i := range c {
					c[i] = sentinel
				}
				GemmBF16T(m, n, k, a, lda, b, ldb, c, ldc)
				for i := 0; i < m; i++ {
					for j := 0; j < ldc && i*ldc+j < len(c); j++ {
						got := c[i*ldc+j]
						if j >= n {
							if got != sentinel {
								t.Fatalf("m%d n%d k%d: C[%d][%d] outside the product written", m, n, k, i, j)
							}
							continue
						}
						var want, mag float64
						for l := 0; l < k; l++ {
							p := float64(a[i*lda+l]) * float64(b[l*ldb+j].Float32())
							want += p
							mag += math.Abs(p)
						}
						if d := math.Abs(float64(got) - want); d > 1e-5*mag+1e-6 {
							t.Fatalf("m%d n%d k%d: C[%d][%d] = %g, want %g", m, n, k, i, j, got, want)
						}
					}
					// The row alone gives the same bits.
					one := make([]float32, n)
					GemmBF16T(1, n, k, a[i*lda:], lda, b, ldb, one, n)
					for j := range one {
						if one[j] != c[i*ldc+j] {
							t.Fatalf("m%d n%d k%d: row %d col %d is %g in the batch, %g alone", m, n, k, i, j, c[i*ldc+j], one[j])
						}
					}
				}
			}
		}
	}
	if err := checkGemmBF16T(2, 64, 8, make([]float32, 8), 8, make([]BF16, 64*8), 64, make([]float32, 128), 64); err == nil {
		t.Fatal("short A accepted")
	}
}
