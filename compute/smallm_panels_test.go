package compute

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGemmPanels checks PackPanels + GemmPanels against a float64 reference
// over row counts, widths with a padded last panel, depths across the depth
// block, column ranges and strides; that C outside [j0, j1) is untouched;
// and that each row's result is bit for bit the one it gets alone.
func TestGemmPanels(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, m := range []int{1, 2, 5, 6, 7, 13, 16} {
		for _, n := range []int{64, 100, 200} {
			for _, k := range []int{1, 3, 128, 300} {
				w := make([]float32, n*k)
				for i := range w {
					w[i] = float32(r.NormFloat64())
				}
				panels := make([]float32, PanelsLen(n, k))
				if err := PackPanels(panels, w, n, k); err != nil {
					t.Fatal(err)
				}
				lda, ldc := k+2, n+3
				a := make([]float32, (m-1)*lda+k)
				for i := range a {
					a[i] = float32(r.NormFloat64())
				}
				for _, rng := range [][2]int{{0, n}, {64, n}} {
					j0, j1 := rng[0], rng[1]
					const sentinel = -777
					c := make([]float32, (m-1)*ldc+n)
					for i := range c {
						c[i] = sentinel
					}
					GemmPanels(m, n, k, a, lda, panels, j0, j1, c, ldc)
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							got := c[i*ldc+j]
							if j < j0 || j >= j1 {
								if got != sentinel {
									t.Fatalf("m%d n%d k%d [%d,%d): C[%d][%d] written", m, n, k, j0, j1, i, j)
								}
								continue
							}
							var want, mag float64
							for l := 0; l < k; l++ {
								p := float64(a[i*lda+l]) * float64(w[j*k+l])
								want += p
								mag += math.Abs(p)
							}
							if d := math.Abs(float64(got) - want); d > 1e-5*mag+1e-6 {
								t.Fatalf("m%d n%d k%d: C[%d][%d] = %g, want %g", m, n, k, i, j, got, want)
							}
						}
						one := make([]float32, n)
						GemmPanels(1, n, k, a[i*lda:], lda, panels, j0, j1, one, n)
						for j := j0; j < j1; j++ {
							if one[j] != c[i*ldc+j] {
								t.Fatalf("m%d n%d k%d: row %d col %d is %g in the batch, %g alone", m, n, k, i, j, c[i*ldc+j], one[j])
							}
						}
					}
				}
			}
		}
	}
	if err := PackPanels(make([]float32, 10), make([]float32, 64*4), 64, 4); err == nil {
		t.Fatal("short destination accepted")
	}
}
