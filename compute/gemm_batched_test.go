package compute

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestGemmBatched checks every product of a batch against the float64
// reference, for small products (parallel over the batch), large ones
// (parallel within each), a shared B (stride 0) and transposes.
func TestGemmBatched(t *testing.T) {
	pool := NewPool(3)
	defer pool.Close()
	r := rand.New(rand.NewPCG(8, 8))
	for _, tc := range []struct {
		batch, m, n, k int
		tA, tB         bool
		shareB         bool
	}{
		{5, 3, 17, 9, false, true, false},
		{4, 17, 9, 63, true, false, true},
		{2, 130, 140, 150, false, false, false},
		{3, 1, 65, 65, false, true, true},
	} {
		ar, ac, br, bc := tc.m, tc.k, tc.k, tc.n
		if tc.tA {
			ar, ac = ac, ar
		}
		if tc.tB {
			br, bc = bc, br
		}
		lda, ldb, ldc := ac+1, bc+2, tc.n+3
		sa, sb, sc := ar*lda+5, br*ldb+1, tc.m*ldc+2
		if tc.shareB {
			sb = 0
		}
		a := randSlice(r, tc.batch*sa)
		b := randSlice(r, tc.batch*max(sb, br*ldb))
		c := randSlice(r, tc.batch*sc)
		type want struct{ ref, mag []float64 }
		var wants []want
		for i := 0; i < tc.batch; i++ {
			bm := bmat{f32: b[i*sb:], ld: ldb, trans: tc.tB}
			ref, mag := refGemm(tc.tA, tc.m, tc.n, tc.k, 0.5, a[i*sa:], lda, &bm, 2, c[i*sc:], ldc)
			wants = append(wants, want{ref, mag})
		}
		GemmBatched(pool, tc.tA, tc.tB, tc.batch, tc.m, tc.n, tc.k, 0.5, a, lda, sa, b, ldb, sb, 2, c, ldc, sc)
		for i, w := range wants {
			cc := c[i*sc : i*sc+tc.m*ldc]
			// Compare the m×n block only (padding columns hold random data).
			got := make([]float32, tc.m*tc.n)
			for row := 0; row < tc.m; row++ {
				copy(got[row*tc.n:], cc[row*ldc:row*ldc+tc.n])
			}
			checkAgainst(t, "batched", tc.k, tc.m, tc.n, got, tc.n, w.ref, w.mag, 0)
		}
	}
	err := CheckGemmBatched(false, false, 2, 2, 2, 2, make([]float32, 8), 2, 4, make([]float32, 8), 2, 4, make([]float32, 8), 2, 3)
	if err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("overlapping C blocks: err = %v", err)
	}
	err = CheckGemmBatched(false, false, 3, 2, 2, 2, make([]float32, 8), 2, 4, make([]float32, 12), 2, 4, make([]float32, 12), 2, 4)
	if err == nil || !strings.Contains(err.Error(), "product 2") {
		t.Errorf("short A: err = %v", err)
	}
}
