package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/moe-llm/moe/compute"
)

// TestPooledRMSNorm checks the pooled RMSNorm forward and backward against
// the serial compute versions over several row blocks, and that the
// backward's bits do not depend on the thread count.
func TestPooledRMSNorm(t *testing.T) {
	const rows, d = 200, 24 // four normBwdRows blocks, the last partial
	r := rand.New(rand.NewPCG(1, 2))
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	x, g, dout := vec(rows*d), vec(d), vec(rows*d)
	wantOut, wantRstd := make([]float32, rows*d), make([]float32, rows)
	compute.RMSNorm(wantOut, x, g, rows, d, 1e-5, wantRstd)
	wantDx, wantDg := vec(rows*d), vec(d)
	dx0, dg0 := slices.Clone(wantDx), slices.Clone(wantDg)
	compute.RMSNormBackward(wantDx, wantDg, dout, x, g, wantRstd, rows, d)

	var first []float32
	for _, th := range []int{1, 2, 3} {
		p := compute.NewPool(th)
		out, rstd := make([]float32, rows*d), make([]float32, rows)
		rmsNorm(p, out, x, g, rows, d, 1e-5, rstd, nil)
		if !slices.Equal(out, wantOut) || !slices.Equal(rstd, wantRstd) {
			t.Fatalf("threads %d: pooled RMSNorm differs from the serial one", th)
		}
		dx, dg := slices.Clone(dx0), slices.Clone(dg0)
		part := make([]float32, (rows+normBwdRows-1)/normBwdRows*d)
		rmsNormBackward(p, dx, dg, dout, x, g, rstd, rows, d, part)
		if !slices.Equal(dx, wantDx) {
			t.Fatalf("threads %d: dx differs from the serial backward", th)
		}
		for i := range dg {
			if math.Abs(float64(dg[i]-wantDg[i])) > 1e-4*(1+math.Abs(float64(wantDg[i]))) {
				t.Fatalf("threads %d: dg[%d] = %v, serial %v", th, i, dg[i], wantDg[i])
			}
		}
		if first == nil {
			first = append(dx, dg...)
		} else if !slices.Equal(first, append(dx, dg...)) {
			t.Fatalf("threads %d: bits differ from one thread", th)
		}
		p.Close()
	}
}
