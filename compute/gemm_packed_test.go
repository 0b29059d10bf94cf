package compute

import (
	"math/rand/v2"
	"testing"
)

// TestGemmPacked checks GemmPacked against the float64 reference for
// fp32 and bf16 weights on every kernel path, over odd shapes that cross
// the depth blocking and the panel width.
func TestGemmPacked(t *testing.T) {
	pool := NewPool(3)
	defer pool.Close()
	r := rand.New(rand.NewPCG(11, 11))
	for _, ks := range paths() {
		for _, sh := range [][3]int{{1, 1, 1}, {3, 17, 65}, {17, 63, 1000}, {65, 257, 63}, {1, 1000, 257}, {100, 33, 1030}} {
			m, n, k := sh[0], sh[1], sh[2]
			for _, bf := range []bool{false, true} {
				lda, ldw, ldc := k+1, k+3, n+2
				a := randSlice(r, m*lda)
				wf := randSlice(r, n*ldw)
				bm := bmat{f32: wf, ld: ldw, trans: true}
				if bf {
					w := make([]BF16, len(wf))
					BF16FromFloat32(w, wf)
					bm = bmat{bf: w, ld: ldw, trans: true}
				}
				pb := packB(ks, pool, bm, n, k)
				c := randSlice(r, m*ldc)
				for i := 0; i < m; i++ {
					for j := n; j < ldc; j++ {
						c[i*ldc+j] = 3
					}
				}
				ref, mag := refGemm(false, m, n, k, -1, a, lda, &bm, 0.5, c, ldc)
				var p *Pool
				if m > 50 {
					p = pool
				}
				gemmPacked(p, m, -1, a, lda, pb, 0.5, c, ldc)
				checkAgainst(t, ks.name+"/packed", k, m, n, c, ldc, ref, mag, 3)
			}
		}
	}
	if _, err := PackB(nil, make([]float32, 5), 3, 2, 3); err == nil {
		t.Errorf("PackB accepted a short W")
	}
	if _, err := PackB(nil, nil, 1, 0, 1); err == nil {
		t.Errorf("PackB accepted n=0")
	}
	pb, err := PackB(pool, []float32{1, 2, 3, 4, 5, 6}, 3, 2, 3)
	if err != nil || pb.N() != 2 || pb.K() != 3 {
		t.Fatalf("PackB: %v %v", pb, err)
	}
	c := make([]float32, 2)
	GemmPacked(nil, 1, 1, []float32{1, 1, 1}, 3, pb, 0, c, 2)
	if c[0] != 6 || c[1] != 15 {
		t.Fatalf("GemmPacked = %v, want [6 15]", c)
	}
}
