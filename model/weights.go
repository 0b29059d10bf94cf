// Package model is the MoE transformer: its parameter layout, and explicit
// forward and backward passes per layer in the manner of llm.c.
package model

import (
	"fmt"

	"github.com/moe-llm/moe/config"
)

// Layer holds one transformer block's parameters as views into a flat buffer.
// Matrices are row-major in the Hugging Face (out_features, in_features)
// layout, so a linear layer computes y = x·Wᵀ.
type Layer struct {
	AttnNorm []float32 // [d]
	Wq       []float32 // [nh*hd, d]
	Wk       []float32 // [nkv*hd, d]
	Wv       []float32 // [nkv*hd, d]
	Wo       []float32 // [d, nh*hd]
	// QKVBias is the bias of the fused [q; k; v] projection
	// [(nh+2·nkv)·hd] (qwen2_moe, gpt_oss), added before the q/k norms and
	// RoPE; nil when the config has none.
	QKVBias []float32
	// OBias is the output projection's bias [d] (attention_bias: gpt_oss),
	// or nil.
	OBias []float32
	// Sinks are the attention sink logits [nh] (gpt_oss): one per query
	// head, taking part in the softmax's normalisation with no value; nil
	// without sinks.
	Sinks []float32
	// QNorm and KNorm are the RMSNorm gains applied to q and k before
	// RoPE: [hd] per head (qwen3_moe) or [nh·hd] and [nkv·hd] over the
	// whole projection (olmoe); nil when the config has no q/k norms.
	QNorm   []float32
	KNorm   []float32
	FFNNorm []float32 // [d]

	// Dense SwiGLU feed-forward (NumExperts == 0): down(silu(gate(x)) * up(x)).
	Gate []float32 // [ff, d]
	Up   []float32 // [ff, d]
	Down []float32 // [d, ff]
	// Their biases (mlp_bias; nil without): [ff], [ff], [d].
	GateBias, UpBias, DownBias []float32

	// Sparse MoE feed-forward.
	Router []float32 // [E, d]
	// RouterScoreBias is the per-expert selection bias of loss-free
	// balancing (topk_method noaux_tc; HF e_score_correction_bias), or nil.
	// It gets no gradient: training moves it after each optimizer step
	// (Model.BalanceRouters).
	RouterScoreBias []float32   // [E]
	ExpertGate      [][]float32 // E × [ffe, d]
	ExpertUp        [][]float32 // E × [ffe, d]
	ExpertDown      [][]float32 // E × [d, ffe]
	SharedGate      []float32   // [ffs, d] or nil
	SharedUp        []float32   // [ffs, d] or nil
	SharedDown      []float32   // [d, ffs] or nil
	// SharedGateInp is the shared expert's gate (qwen2_moe): its output is
	// scaled by sigmoid(x·SharedGateInp) per token; nil when ungated.
	SharedGateInp []float32 // [d] or nil
	// RouterBias is the router's bias [E] (gpt_oss), added to its logits;
	// nil without.
	RouterBias []float32
	// The experts' and the shared expert's projection biases
	// (moe_expert_bias: gpt_oss): E × [ffe], [ffe], [d], and [ffs], [ffs],
	// [d]; nil without.
	ExpertGateBias, ExpertUpBias, ExpertDownBias [][]float32
	SharedGateBias, SharedUpBias, SharedDownBias []float32
}

// Weights is a model's parameters: named views into one flat []float32, so
// that the optimizer, gradients and checkpoints treat all of them as a
// single vector. The same layout is used for gradients.
type Weights struct {
	Embed     []float32 // [V, d]
	Layers    []Layer
	FinalNorm []float32 // [d]
	LMHead    []float32 // [V, d]; aliases Embed when embeddings are tied
	// Flat is the whole parameter vector; every view above points into it.
	Flat []float32
	// NoDecay marks the [start,end) ranges of Flat that get no weight decay
	// (norm gains).
	NoDecay [][2]int
}

// NumParams returns the number of float32 parameters of the model that cfg
// describes, as laid out by NewWeights.
func NumParams(cfg *config.Config) int {
	n := 0
	walk(cfg, &Weights{Layers: make([]Layer, cfg.NumLayers)}, func(_ string, _ *[]float32, size int, _ bool) { n += size })
	return n
}

// NewWeights lays out the parameters of cfg over flat, which must have
// exactly NumParams(cfg) elements (nil allocates a zeroed buffer).
func NewWeights(cfg *config.Config, flat []float32) (*Weights, error) {
	n := NumParams(cfg)
	if flat == nil {
		flat = make([]float32, n)
	}
	if len(flat) != n {
		return nil, fmt.Errorf("model: weight buffer has %d floats, config needs %d", len(flat), n)
	}
	w := &Weights{Flat: flat, Layers: make([]Layer, cfg.NumLayers)}
	off := 0
	walk(cfg, w, func(_ string, dst *[]float32, size int, noDecay bool) {
		if noDecay {
			w.NoDecay = append(w.NoDecay, [2]int{off, off + size})
		}
		*dst = flat[off : off+size : off+size]
		off += size
	})
	if cfg.TieWordEmbeddings {
		w.LMHead = w.Embed
	}
	return w, nil
}

// Visit calls f for every parameter tensor in layout order with its name
// (Hugging Face style, e.g. "layers.3.expert.5.gate") and its view.
func (w *Weights) Visit(cfg *config.Config, f func(name string, t []float32)) {
	walk(cfg, w, func(name string, dst *[]float32, _ int, _ bool) { f(name, *dst) })
}

// walk calls f for every parameter tensor of cfg in layout order with its
// name, the slot in w that holds its view, its element count and whether it
// is exempt from weight decay.
func walk(cfg *config.Config, w *Weights, f func(name string, dst *[]float32, size int, noDecay bool)) {
	d, hd := cfg.HiddenSize, cfg.HeadDimension()
	nh, nkv := cfg.NumHeads, cfg.KVHeads()
	f("embed", &w.Embed, cfg.VocabSize*d, false)
	for i := range w.Layers {
		l := &w.Layers[i]
		p := fmt.Sprintf("layers.%d.", i)
		f(p+"attn_norm", &l.AttnNorm, d, true)
		f(p+"wq", &l.Wq, nh*hd*d, false)
		f(p+"wk", &l.Wk, nkv*hd*d, false)
		f(p+"wv", &l.Wv, nkv*hd*d, false)
		f(p+"wo", &l.Wo, d*nh*hd, false)
		if cfg.QKVBias || cfg.AttentionBias {
			f(p+"qkv_bias", &l.QKVBias, (nh+2*nkv)*hd, true)
		}
		if cfg.AttentionBias {
			f(p+"o_bias", &l.OBias, d, true)
		}
		if cfg.AttentionSinks {
			f(p+"sinks", &l.Sinks, nh, true)
		}
		if cfg.QKNorm {
			qn, kn := qkNormWidths(cfg)
			f(p+"q_norm", &l.QNorm, qn, true)
			f(p+"k_norm", &l.KNorm, kn, true)
		}
		f(p+"ffn_norm", &l.FFNNorm, d, true)
		if !cfg.LayerIsMoE(i) {
			ff := cfg.IntermediateSize
			f(p+"gate", &l.Gate, ff*d, false)
			f(p+"up", &l.Up, ff*d, false)
			f(p+"down", &l.Down, d*ff, false)
			if cfg.MLPBias {
				ffnBiases(f, p, ff, d, &l.GateBias, &l.UpBias, &l.DownBias)
			}
			continue
		}
		f(p+"router", &l.Router, cfg.NumExperts*d, false)
		if cfg.RouterBias {
			f(p+"router_bias", &l.RouterBias, cfg.NumExperts, true)
		}
		if cfg.HasRouterScoreBias() {
			f(p+"router_score_bias", &l.RouterScoreBias, cfg.NumExperts, true)
		}
		ffe := cfg.ExpertSize()
		if len(l.ExpertGate) != cfg.NumExperts {
			l.ExpertGate = make([][]float32, cfg.NumExperts)
			l.ExpertUp = make([][]float32, cfg.NumExperts)
			l.ExpertDown = make([][]float32, cfg.NumExperts)
			if cfg.ExpertBias {
				l.ExpertGateBias = make([][]float32, cfg.NumExperts)
				l.ExpertUpBias = make([][]float32, cfg.NumExperts)
				l.ExpertDownBias = make([][]float32, cfg.NumExperts)
			}
		}
		for e := 0; e < cfg.NumExperts; e++ {
			q := fmt.Sprintf("%sexpert.%d.", p, e)
			f(q+"gate", &l.ExpertGate[e], ffe*d, false)
			f(q+"up", &l.ExpertUp[e], ffe*d, false)
			f(q+"down", &l.ExpertDown[e], d*ffe, false)
			if cfg.ExpertBias {
				ffnBiases(f, q, ffe, d, &l.ExpertGateBias[e], &l.ExpertUpBias[e], &l.ExpertDownBias[e])
			}
		}
		if s := cfg.SharedExpertIntermediateSize; s > 0 {
			f(p+"shared.gate", &l.SharedGate, s*d, false)
			f(p+"shared.up", &l.SharedUp, s*d, false)
			f(p+"shared.down", &l.SharedDown, d*s, false)
			if cfg.ExpertBias {
				ffnBiases(f, p+"shared.", s, d, &l.SharedGateBias, &l.SharedUpBias, &l.SharedDownBias)
			}
			if cfg.SharedExpertGate {
				f(p+"shared.gate_inp", &l.SharedGateInp, d, false)
			}
		}
	}
	f("final_norm", &w.FinalNorm, d, true)
	if !cfg.TieWordEmbeddings {
		f("lm_head", &w.LMHead, cfg.VocabSize*d, false)
	}
}

// ffnBiases walks the biases of the feed-forward at prefix p (width ff,
// model width d): gate and up, adjacent so that they fuse, then down.
func ffnBiases(f func(name string, dst *[]float32, size int, noDecay bool), p string, ff, d int, gate, up, down *[]float32) {
	f(p+"gate_bias", gate, ff, true)
	f(p+"up_bias", up, ff, true)
	f(p+"down_bias", down, d, true)
}

// qkNormWidths returns the widths of cfg's q and k norm gains: the head
// dimension for per-head norms, else the whole q and k projections.
func qkNormWidths(cfg *config.Config) (q, k int) {
	hd := cfg.HeadDimension()
	if cfg.QKNormPerHead {
		return hd, hd
	}
	return cfg.NumHeads * hd, cfg.KVHeads() * hd
}
