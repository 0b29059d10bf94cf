package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moe-llm/moe/config"
)

// TestSwiGLUClamped checks gpt_oss's clamped SwiGLU against its float64
// definition, g·σ(α·g)·(u+1) with g = min(gate, limit) and u = clamp(up,
// ±limit), and its backward against central differences of that
// definition, on inputs on both sides of every clamp (none within the
// difference step of a kink).
func TestSwiGLUClamped(t *testing.T) {
	const limit, h = 0.7, 1e-4
	ref := func(g, u float64) float64 {
		g = math.Min(g, limit)
		u = math.Max(math.Min(u, limit), -limit)
		return g / (1 + math.Exp(-config.SwiGLUAlpha*g)) * (u + 1)
	}
	r := rand.New(rand.NewPCG(1, 2))
	const n = 200
	gate, up, dout := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range gate {
		for {
			gate[i], up[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
			if math.Abs(math.Abs(float64(gate[i]))-limit) > 10*h && math.Abs(math.Abs(float64(up[i]))-limit) > 10*h {
				break
			}
		}
		dout[i] = float32(r.NormFloat64())
	}
	out, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
	SwiGLUClamped(out, gate, up, limit)
	swigluClampedBackward(dg, du, dout, gate, up, limit)
	clampedG, clampedU := 0, 0
	for i := range gate {
		g, u, d := float64(gate[i]), float64(up[i]), float64(dout[i])
		if w := ref(g, u); math.Abs(float64(out[i])-w) > 1e-6*(1+math.Abs(w)) {
			t.Fatalf("out[%d] = %v, want %v", i, out[i], w)
		}
		wg := d * (ref(g+h, u) - ref(g-h, u)) / (2 * h)
		wu := d * (ref(g, u+h) - ref(g, u-h)) / (2 * h)
		if math.Abs(float64(dg[i])-wg) > 1e-4*(1+math.Abs(wg)) || math.Abs(float64(du[i])-wu) > 1e-4*(1+math.Abs(wu)) {
			t.Fatalf("gradients at gate %v up %v: %v, %v; want %v, %v", g, u, dg[i], du[i], wg, wu)
		}
		if g > limit {
			clampedG++
		}
		if math.Abs(u) > limit {
			clampedU++
		}
	}
	if clampedG < 10 || clampedU < 10 {
		t.Fatalf("only %d gate and %d up inputs clamped", clampedG, clampedU)
	}
}
