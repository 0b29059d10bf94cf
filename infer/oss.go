package infer

import (
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// addRowBias adds bias to every row of x (rows of len(bias)); a nil bias
// adds nothing.
func addRowBias(x, bias []float32) {
	n := len(bias)
	if n == 0 {
		return
	}
	for o := 0; o+n <= len(x); o += n {
		compute.Add(x[o:o+n], bias)
	}
}

// swigluClamped computes gpt-oss's clamped SwiGLU into out, as ggml's
// swiglu_oai does: with g = min(gate, limit) and u = clamp(up, −limit,
// limit), out = g·sigmoid(α·g)·(u+1), α = config.SwiGLUAlpha.
func swigluClamped(out, gate, up []float32, limit float32) {
	const alpha = float32(config.SwiGLUAlpha)
	_ = out[len(gate)-1]
	_ = up[len(gate)-1]
	for i, g := range gate {
		g = min(g, limit)
		u := min(max(up[i], -limit), limit)
		out[i] = g * compute.Sigmoid(alpha*g) * (u + 1)
	}
}
