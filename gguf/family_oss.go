package gguf

import (
	"errors"
	"fmt"

	"github.com/moe-llm/moe/config"
)

// ArchGPTOSS is llama.cpp's architecture name for OpenAI's gpt-oss models
// (LLM_ARCH_OPENAI_MOE).
const ArchGPTOSS = "gpt-oss"

// ossSwiGLULimit is the clamp of gpt-oss's SwiGLU, which llama.cpp's graph
// fixes (the file has no key for it).
const ossSwiGLULimit = 7.0

// ossSWAPeriod is llama.cpp's default sliding-window period for gpt-oss:
// of every two layers the first is sliding, the second full.
const ossSWAPeriod = 2

// ossConfig adds to cfg what a gpt-oss file's keys say beyond a
// Mixtral-style model, as llama.cpp's loader reads them: the expert width
// (required), the sliding window (required) and which layers use it, and
// YaRN RoPE scaling. The pieces every gpt-oss model has are set too:
// biases, attention sinks and the clamped SwiGLU.
func ossConfig(f *File, k *keyReader, cfg *config.Config) error {
	arch := ArchGPTOSS
	cfg.AttentionBias, cfg.AttentionSinks, cfg.RouterBias, cfg.ExpertBias = true, true, true, true
	cfg.SwiGLULimit = ossSwiGLULimit
	cfg.MoEIntermediateSize = k.int("expert_feed_forward_length", -1)
	cfg.SlidingWindow = k.int("attention.sliding_window", -1)
	if k.err != nil {
		return k.err
	}
	if cfg.SlidingWindow <= 0 {
		return fmt.Errorf("gguf: %s.attention.sliding_window %d must be positive", arch, cfg.SlidingWindow)
	}
	period := ossSWAPeriod
	if v, ok := f.Get(arch + ".attention.sliding_window_pattern"); ok {
		n, ok := asInt(v)
		if !ok || n < 0 {
			// llama.cpp ignores an array here (gpt-oss's period stays 2);
			// moe refuses what it would have to guess at.
			return fmt.Errorf("gguf: metadata %q is %T, want a non-negative integer period (a per-layer pattern is not supported for %s)", arch+".attention.sliding_window_pattern", v, arch)
		}
		period = n
	}
	// llama.cpp's set_swa_pattern: layer il slides unless it is the last of
	// its period; period 0 makes every layer slide.
	cfg.LayerTypes = make([]string, max(cfg.NumLayers, 0))
	for il := range cfg.LayerTypes {
		cfg.LayerTypes[il] = config.LayerFullAttention
		if period == 0 || il%period < period-1 {
			cfg.LayerTypes[il] = config.LayerSlidingAttention
		}
	}
	if b := k.float("rope.freq_base_swa", cfg.RopeTheta); b != cfg.RopeTheta {
		return fmt.Errorf("gguf: %s.rope.freq_base_swa %g differs from rope.freq_base %g, which moe does not support", arch, b, cfg.RopeTheta)
	}
	rs, err := ossRopeScaling(f, k)
	if err != nil {
		return err
	}
	cfg.RopeScaling = rs
	return k.err
}

// ossRopeScaling reads {arch}.rope.scaling.* as llama.cpp computes with
// them: linear or YaRN with a factor, YaRN's original context, and the
// correction range rounded out to whole dimensions (ggml's
// rope_yarn_corr_dims) with beta_fast 32 and beta_slow 1, which llama.cpp
// uses whatever the file says: other betas, an attention factor or an
// extrapolation factor of the file's own are refused by name.
func ossRopeScaling(f *File, k *keyReader) (*config.RopeScaling, error) {
	name := k.prefix + "rope.scaling.type"
	v, ok := f.Get(name)
	if !ok || v == "none" || v == "" {
		return nil, nil
	}
	typ, _ := v.(string)
	if typ != config.RopeLinear && typ != config.RopeYaRN {
		return nil, fmt.Errorf("gguf: %s %v is not supported (linear and yarn are)", name, v)
	}
	rs := &config.RopeScaling{Type: typ, Factor: k.float("rope.scaling.factor", -1)}
	if typ == config.RopeYaRN {
		rs.OriginalMaxPositionEmbeddings = k.int("rope.scaling.original_context_length", 0)
	}
	for _, c := range []struct {
		key  string
		want float64
	}{
		{"rope.scaling.yarn_beta_fast", 32}, {"rope.scaling.yarn_beta_slow", 1},
		{"rope.scaling.attn_factor", 1}, {"rope.scaling.yarn_attn_factor", 1},
		{"rope.scaling.yarn_ext_factor", 1}, {"rope.scaling.yarn_log_multiplier", 0},
	} {
		if got := k.float(c.key, c.want); got != c.want {
			return nil, fmt.Errorf("gguf: %s%s %g is not supported (moe computes with %g, as llama.cpp does)", k.prefix, c.key, got, c.want)
		}
	}
	return rs, k.err
}

// ffnNormName is the tensor (after "blk.N.") of the norm in front of a
// layer's feed-forward: gpt-oss calls it post_attention_norm.
func ffnNormName(fam *family) string {
	if fam != nil && fam.gptOSS {
		return "post_attention_norm.weight"
	}
	return "ffn_norm.weight"
}

// ossLayer reads a gpt-oss layer's tensors beyond a Mixtral-style layer's:
// the per-head attention sinks, the output, router and expert biases
// (required) and the q/k/v biases (optional in llama.cpp, present when the
// file has them). vec reads a vector of dims [n], vecs an [n, count]
// tensor as count vectors of n.
func ossLayer(L *LayerMatrices, f *File, cfg *config.Config, p string, vec func(string, int) ([]float32, error), vecs func(string, int, int) ([][]float32, error)) error {
	hd := cfg.HeadDimension()
	qDim, kvDim, d := cfg.NumHeads*hd, cfg.KVHeads()*hd, cfg.HiddenSize
	E, fe := cfg.NumExperts, cfg.ExpertSize()
	var errs [9]error
	L.Sinks, errs[0] = vec(p+"attn_sinks.weight", cfg.NumHeads)
	L.OBias, errs[1] = vec(p+"attn_output.bias", d)
	L.RouterBias, errs[2] = vec(p+"ffn_gate_inp.bias", E)
	if _, ok := f.Tensor(p + "attn_q.bias"); ok {
		L.QBias, errs[3] = vec(p+"attn_q.bias", qDim)
		L.KBias, errs[4] = vec(p+"attn_k.bias", kvDim)
		L.VBias, errs[5] = vec(p+"attn_v.bias", kvDim)
	}
	var gate, up, down [][]float32
	gate, errs[6] = vecs(p+"ffn_gate_exps.bias", fe, E)
	up, errs[7] = vecs(p+"ffn_up_exps.bias", fe, E)
	down, errs[8] = vecs(p+"ffn_down_exps.bias", d, E)
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	if len(L.Experts) != E {
		return fmt.Errorf("gguf: %s: %d experts read, %d expected", p, len(L.Experts), E)
	}
	for e := range L.Experts {
		x := &L.Experts[e]
		x.GateBias, x.UpBias, x.DownBias = gate[e], up[e], down[e]
	}
	return nil
}
