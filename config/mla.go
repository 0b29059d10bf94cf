package config

import (
	"fmt"
	"math"
)

// MLA reports whether attention is DeepSeek's multi-head latent
// attention: keys and values are decompressed per head from one shared
// latent vector of KVLoraRank (normalised), keys and queries are
// QKNopeHeadDim dimensions without position plus QKRopeHeadDim rotated
// ones (the rotated key part shared by all heads), values VHeadDim wide;
// queries come from the hidden state directly or through a rank-QLoraRank
// bottleneck with its own norm.
func (c *Config) MLA() bool { return c.KVLoraRank > 0 }

// RopeDim returns the number of dimensions of a query or key head that
// RoPE rotates: QKRopeHeadDim under MLA, else the whole head.
func (c *Config) RopeDim() int {
	if c.MLA() {
		return c.QKRopeHeadDim
	}
	return c.HeadDimension()
}

// MLASoftmaxScale returns the attention score scale of an MLA model:
// 1/sqrt(QKNopeHeadDim+QKRopeHeadDim), times mscale² under YaRN with
// mscale_all_dim set, mscale = 0.1·mscale_all_dim·ln(factor) + 1
// (DeepSeek-V2's definition, which llama.cpp's deepseek2 graph computes
// from rope.scaling.yarn_log_multiplier).
func (c *Config) MLASoftmaxScale() float64 {
	s := 1 / math.Sqrt(float64(c.QKNopeHeadDim+c.QKRopeHeadDim))
	if rs := c.RopeScaling; rs != nil && rs.Type == RopeYaRN && rs.MscaleAllDim > 0 && rs.Factor > 1 {
		m := 0.1*rs.MscaleAllDim*math.Log(rs.Factor) + 1
		s *= m * m
	}
	return s
}

// validateMLA checks the latent attention sizes when kv_lora_rank is set.
func (c *Config) validateMLA() error {
	if c.KVLoraRank < 0 || c.QLoraRank < 0 {
		return fmt.Errorf("kv_lora_rank %d and q_lora_rank %d must not be negative", c.KVLoraRank, c.QLoraRank)
	}
	if !c.MLA() {
		if c.QLoraRank > 0 {
			return fmt.Errorf("q_lora_rank: %d set without kv_lora_rank", c.QLoraRank)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"kv_lora_rank", c.KVLoraRank}, {"q_lora_rank", c.QLoraRank}, {"qk_nope_head_dim", c.QKNopeHeadDim},
		{"qk_rope_head_dim", c.QKRopeHeadDim}, {"v_head_dim", c.VHeadDim},
	} {
		if f.v > maxDim {
			return fmt.Errorf("%s: %d is implausibly large (limit %d)", f.name, f.v, maxDim)
		}
	}
	switch {
	case c.QKNopeHeadDim < 1:
		return fmt.Errorf("qk_nope_head_dim: must be at least 1 with kv_lora_rank %d (got %d)", c.KVLoraRank, c.QKNopeHeadDim)
	case c.QKRopeHeadDim < 2 || c.QKRopeHeadDim%2 != 0:
		return fmt.Errorf("qk_rope_head_dim: must be positive and even (got %d)", c.QKRopeHeadDim)
	case c.VHeadDim < 1:
		return fmt.Errorf("v_head_dim: must be at least 1 with kv_lora_rank %d (got %d)", c.KVLoraRank, c.VHeadDim)
	}
	return nil
}

// deepseek reads the fields of a deepseek_v2/deepseek_v3 config.json that
// the other types do not have: the latent attention sizes, the shared
// experts (n_shared_experts of moe_intermediate_size each), the dense
// leading layers (first_k_dense_replace) and the expert groups, which
// only the group-limited and noaux_tc methods use (greedy ignores them).
func (p *parser) deepseek(c *Config) {
	r := p.r
	c.QLoraRank = p.opt("q_lora_rank", 0, r.QLoraRank)
	c.KVLoraRank = p.need([]string{"kv_lora_rank"}, r.KVLoraRank)
	c.QKNopeHeadDim = p.need([]string{"qk_nope_head_dim"}, r.QKNopeHeadDim)
	c.QKRopeHeadDim = p.need([]string{"qk_rope_head_dim"}, r.QKRopeHeadDim)
	c.VHeadDim = p.need([]string{"v_head_dim"}, r.VHeadDim)
	if r.NSharedExperts != nil { // else shared_expert_intermediate_size (a config moe saved)
		c.SharedExpertIntermediateSize = p.opt("n_shared_experts", 0, r.NSharedExperts) * c.ExpertSize()
	}
	if f := p.opt("moe_layer_freq", 1, r.MoELayerFreq); f != 1 {
		p.fail("moe_layer_freq: %d is not supported (every layer after first_k_dense_replace is sparse)", f)
	}
	if k := p.opt("first_k_dense_replace", 0, r.FirstKDenseReplace); k > 0 && k <= maxLayers {
		for i := range min(k, c.NumLayers) {
			c.MLPOnlyLayers = append(c.MLPOnlyLayers, i)
		}
	}
	if c.TopKMethod != TopKGroupLimited && c.TopKMethod != TopKNoAuxTC {
		return
	}
	c.NGroup = p.opt("n_group", 0, r.NGroup)
	c.TopKGroup = p.opt("topk_group", 0, r.TopKGroup)
}
