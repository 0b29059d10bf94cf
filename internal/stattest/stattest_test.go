package stattest

import (
	"math/rand/v2"
	"testing"
)

// TestChiSquare checks the test's two sides: draws from the stated
// distribution pass, draws from another one or an impossible outcome
// fail, and Critical matches tabulated quantiles of χ².
func TestChiSquare(t *testing.T) {
	for _, c := range []struct {
		df   int
		want float64 // the 1−1e-4 quantile from tables
	}{{4, 23.51}, {10, 35.56}, {20, 52.39}} {
		if got := Critical(c.df); got < c.want*0.97 || got > c.want*1.03 {
			t.Errorf("Critical(%d) = %.2f, tables %.2f", c.df, got, c.want)
		}
	}
	w := []float64{1, 2, 0, 3, 0.01, 4}
	draw := func(w []float64, r *rand.Rand) int {
		var total float64
		for _, v := range w {
			total += v
		}
		x := r.Float64() * total
		for i, v := range w {
			if x < v {
				return i
			}
			x -= v
		}
		return len(w) - 1
	}
	r := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, len(w))
	for range 50000 {
		counts[draw(w, r)]++
	}
	if stat, df := ChiSquareDense(counts, w); df != 4 || stat > Critical(df) {
		t.Errorf("draws from the distribution: χ² %.1f, %d df (critical %.1f)", stat, df, Critical(df))
	}
	other := []float64{1, 2, 0, 3, 0.01, 3.5}
	if stat, df := ChiSquareDense(counts, other); stat <= Critical(df) {
		t.Errorf("draws from another distribution pass: χ² %.1f, %d df", stat, df)
	}
	counts[2]++
	if stat, df := ChiSquareDense(counts, w); stat <= Critical(df) {
		t.Errorf("an impossible outcome passes: χ² %.1f, %d df", stat, df)
	}
}
