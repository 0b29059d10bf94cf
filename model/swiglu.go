package model

import (
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// swiglu computes the feed-forward activation of cfg into out: silu(gate)
// ⊙ up, or gpt_oss's clamped SwiGLU when the config has swiglu_limit.
func (m *Model) swiglu(out, gate, up []float32) {
	if m.swiLimit == 0 {
		compute.SwiGLU(out, gate, up)
		return
	}
	SwiGLUClamped(out, gate, up, m.swiLimit)
}

// swigluBackward writes the gradients of swiglu's gate and up inputs from
// dout (dgate and dup may alias gate and up).
func (m *Model) swigluBackward(dgate, dup, dout, gate, up []float32) {
	if m.swiLimit == 0 {
		compute.SwiGLUBackward(dgate, dup, dout, gate, up)
		return
	}
	swigluClampedBackward(dgate, dup, dout, gate, up, m.swiLimit)
}

// SwiGLUClamped computes gpt_oss's clamped SwiGLU into out, as ggml's
// swiglu_oai does: with g = min(gate, limit) and u = clamp(up, −limit,
// limit), out = g·sigmoid(α·g)·(u+1), α = config.SwiGLUAlpha. Training and
// inference share it.
func SwiGLUClamped(out, gate, up []float32, limit float32) {
	const alpha = float32(config.SwiGLUAlpha)
	_ = out[len(gate)-1]
	_ = up[len(gate)-1]
	for i, g := range gate {
		g = min(g, limit)
		u := min(max(up[i], -limit), limit)
		out[i] = g * compute.Sigmoid(alpha*g) * (u + 1)
	}
}

// swigluClampedBackward is SwiGLUClamped's backward: the clamps pass the
// gradient inside [−limit, limit] (limit included, as torch.clamp does) and
// stop it outside.
func swigluClampedBackward(dgate, dup, dout, gate, up []float32, limit float32) {
	const alpha = float32(config.SwiGLUAlpha)
	for i, g0 := range gate {
		u0, d := up[i], dout[i]
		g := min(g0, limit)
		u := min(max(u0, -limit), limit)
		s := compute.Sigmoid(alpha * g)
		dg := d * (u + 1) * s * (1 + alpha*g*(1-s))
		du := d * g * s
		if g0 > limit {
			dg = 0
		}
		if u0 < -limit || u0 > limit {
			du = 0
		}
		dgate[i], dup[i] = dg, du
	}
}
