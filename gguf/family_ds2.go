package gguf

import (
	"errors"
	"fmt"
	"math"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// archDeepseek2 is llama.cpp's architecture of DeepSeek-V2/V3 (and
// Moonlight, Kimi, GigaChat...): multi-head latent attention, shared
// experts, dense leading layers.
const archDeepseek2 = "deepseek2"

// llama.cpp's expert_gating_func values (LLAMA_EXPERT_GATING_FUNC_TYPE).
const (
	gatingSoftmax = 1
	gatingSigmoid = 2
)

// MLAMatrices are the attention matrices of a multi-head latent attention
// layer (deepseek2), as llama.cpp's deepseek2 graph uses them.
type MLAMatrices struct {
	// Q gives the queries (heads × (nope+rope) rows) when the model has no
	// q LoRA; else QA (q_lora_rank rows), its RMSNorm gain QANorm, and QB
	// (heads × (nope+rope) rows of q_lora_rank). Each head's rows are its
	// nope part then its rope part, the latter in llama.cpp's NORM RoPE
	// order (pairs 2i, 2i+1).
	Q, QA, QB Matrix
	QANorm    []float32
	// KVA gives the latent vector (kv_lora_rank rows, normed by KVANorm)
	// then the shared rotated key part (rope rows, NORM order).
	KVA     Matrix
	KVANorm []float32
	// KB and VB are per head: KB[h] (kv_lora_rank rows of nope) takes a
	// query's nope part into the latent space (the key decompression,
	// absorbed into the query), VB[h] (v_head_dim rows of kv_lora_rank)
	// decompresses the attended latent vector into the head's value.
	KB, VB []Matrix
}

// deepseek2Config builds the config of a deepseek2 file from its keys as
// llama.cpp's loader reads them (src/models/deepseek2.cpp), refusing what
// moe does not compute exactly as llama.cpp does.
func deepseek2Config(f *File, fam *family) (*config.Config, error) {
	k := newKeyReader(f, fam.arch)
	cfg := familyBase(k, fam)
	cfg.MoEIntermediateSize = k.int("expert_feed_forward_length", -1)
	cfg.KVLoraRank, cfg.QLoraRank = k.int("attention.kv_lora_rank", -1), k.int("attention.q_lora_rank", 0)
	cfg.QKRopeHeadDim = k.int("rope.dimension_count", -1)
	cfg.NGroup, cfg.TopKGroup = k.int("expert_group_count", 0), k.int("expert_group_used_count", 0)
	cfg.RoutedScalingFactor = k.float("expert_weights_scale", 0)
	cfg.IntermediateSize = k.int("feed_forward_length", cfg.MoEIntermediateSize)
	cfg.NumKVHeads = cfg.NumHeads // multi-head once decompressed
	shared := k.int("expert_shared_count", -1)
	lead := k.int("leading_dense_block_count", 0)
	gating := k.int("expert_gating_func", gatingSoftmax)
	if k.err != nil {
		return nil, k.err
	}
	if cfg.NumHeads < 1 || cfg.KVLoraRank < 1 {
		return nil, fmt.Errorf("gguf: %s.attention.head_count %d and attention.kv_lora_rank %d must be positive", fam.arch, cfg.NumHeads, cfg.KVLoraRank)
	}
	// The head sizes: the split k_b/v_b layout the current converter
	// writes declares them in key_length_mla/value_length_mla (key_length
	// is then the latent key, kv_lora_rank + rope); older files with one
	// attn_kv_b tensor in key_length/value_length.
	qk, vd := k.int("attention.key_length", cfg.HiddenSize/cfg.NumHeads), k.int("attention.value_length", cfg.HiddenSize/cfg.NumHeads)
	if _, split := f.Get(fam.arch + ".attention.key_length_mla"); split {
		if qk != cfg.KVLoraRank+cfg.QKRopeHeadDim || vd != cfg.KVLoraRank {
			return nil, fmt.Errorf("gguf: %s.attention.key_length %d and value_length %d must be kv_lora_rank + rope (%d) and kv_lora_rank (%d)",
				fam.arch, qk, vd, cfg.KVLoraRank+cfg.QKRopeHeadDim, cfg.KVLoraRank)
		}
		qk, vd = k.int("attention.key_length_mla", -1), k.int("attention.value_length_mla", -1)
	}
	cfg.QKNopeHeadDim, cfg.VHeadDim = qk-cfg.QKRopeHeadDim, vd
	switch gating {
	case gatingSoftmax:
		cfg.ScoringFunc = config.ScoringSoftmax
	case gatingSigmoid:
		cfg.ScoringFunc = config.ScoringSigmoid
		cfg.ModelType = config.TypeDeepseekV3
	default:
		return nil, fmt.Errorf("gguf: %s.expert_gating_func %d is not supported (1 softmax and 2 sigmoid are)", fam.arch, gating)
	}
	if v, ok := f.Get(fam.arch + ".expert_weights_norm"); ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, fmt.Errorf("gguf: metadata %q is %T, want a bool", fam.arch+".expert_weights_norm", v)
		}
		cfg.NormTopKProb = b
	}
	if cfg.RoutedScalingFactor == 1 {
		cfg.RoutedScalingFactor = 0
	}
	if _, ok := f.Tensor("blk." + fmt.Sprint(lead) + ".exp_probs_b.bias"); ok {
		cfg.TopKMethod = config.TopKNoAuxTC
	}
	if cfg.NGroup <= 1 {
		cfg.NGroup, cfg.TopKGroup = 0, 0
	}
	if shared < 0 || lead < 0 || lead > cfg.NumLayers {
		return nil, fmt.Errorf("gguf: %s.expert_shared_count %d or leading_dense_block_count %d out of range", fam.arch, shared, lead)
	}
	cfg.SharedExpertIntermediateSize = shared * cfg.MoEIntermediateSize
	for i := range lead {
		cfg.MLPOnlyLayers = append(cfg.MLPOnlyLayers, i)
	}
	if err := deepseek2Unsupported(f, k, fam.arch); err != nil {
		return nil, err
	}
	rs, err := deepseek2Rope(f, k, fam.arch)
	if err != nil {
		return nil, err
	}
	cfg.RopeScaling = rs
	if k.err != nil {
		return nil, k.err
	}
	if err := familyFinish(f, fam, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// deepseek2Unsupported refuses the deepseek2 variants moe does not run:
// multi-token-prediction layers and attention temperature scaling.
func deepseek2Unsupported(f *File, k *keyReader, arch string) error {
	if n := k.int("nextn_predict_layers", 0); n != 0 {
		return fmt.Errorf("gguf: %s.nextn_predict_layers %d: multi-token-prediction layers are not supported", arch, n)
	}
	if s := k.float("attention.temperature_scale", 0); s != 0 {
		return fmt.Errorf("gguf: %s.attention.temperature_scale %g: attention temperature scaling is not supported", arch, s)
	}
	return nil
}

// deepseek2Rope reads a deepseek2 file's RoPE scaling: none, or YaRN with
// rope.scaling.yarn_log_multiplier (0.1·mscale_all_dim, which sets the
// attention score scale; llama.cpp then rotates without scaling the
// magnitude, as mscale = mscale_all_dim makes Hugging Face's rotation).
func deepseek2Rope(f *File, k *keyReader, arch string) (*config.RopeScaling, error) {
	v, ok := f.Get(arch + ".rope.scaling.type")
	if !ok || v == "none" || v == "" {
		return nil, nil
	}
	if v != config.RopeYaRN {
		return nil, fmt.Errorf("gguf: %s.rope.scaling.type %v is not supported (yarn is)", arch, v)
	}
	logMul := k.float("rope.scaling.yarn_log_multiplier", 0)
	if logMul <= 0 {
		return nil, fmt.Errorf("gguf: %s: YaRN without %s.rope.scaling.yarn_log_multiplier is not supported", arch, arch)
	}
	for _, key := range []string{"rope.scaling.yarn_ext_factor", "rope.scaling.yarn_attn_factor", "rope.scaling.attn_factor"} {
		if x := k.float(key, 1); x != 1 {
			return nil, fmt.Errorf("gguf: %s.%s %g is not supported", arch, key, x)
		}
	}
	// The file stores 0.1·mscale_all_dim (llama.cpp divides it back).
	all := float64(float32(logMul) / 0.1)
	rs := &config.RopeScaling{
		Type:                          config.RopeYaRN,
		Factor:                        k.float("rope.scaling.factor", -1),
		OriginalMaxPositionEmbeddings: k.int("rope.scaling.original_context_length", 0),
		BetaFast:                      k.float("rope.scaling.yarn_beta_fast", 0),
		BetaSlow:                      k.float("rope.scaling.yarn_beta_slow", 0),
		Mscale:                        all,
		MscaleAllDim:                  all,
	}
	if math.IsNaN(rs.Factor) || rs.Factor <= 1 {
		return nil, fmt.Errorf("gguf: %s.rope.scaling.factor %g must be above 1 for YaRN", arch, rs.Factor)
	}
	return rs, nil
}

// mlaLayer reads the latent attention tensors of layer prefix p: the query
// path (attn_q, or attn_q_a, attn_q_a_norm and attn_q_b), attn_kv_a_mqa
// and attn_kv_a_norm, and the per-head key and value decompressions as
// the current converter splits them (attn_k_b, attn_v_b) or as older
// files store them in one attn_kv_b, whose key rows are transposed into a
// float32 copy (region) and whose value rows are used in place.
func mlaLayer(f *File, cfg *config.Config, p string, mat func(string, int, int) (Matrix, error),
	stack func(string, int, int, int) ([]Matrix, error), vec func(string, int) ([]float32, error), region func() int) (*MLAMatrices, error) {
	d, nh := cfg.HiddenSize, cfg.NumHeads
	nope, rope, rank, vd := cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.KVLoraRank, cfg.VHeadDim
	x := &MLAMatrices{}
	var errs [7]error
	if cfg.QLoraRank > 0 {
		x.QA, errs[0] = mat(p+"attn_q_a.weight", cfg.QLoraRank, d)
		x.QANorm, errs[1] = vec(p+"attn_q_a_norm.weight", cfg.QLoraRank)
		x.QB, errs[2] = mat(p+"attn_q_b.weight", nh*(nope+rope), cfg.QLoraRank)
	} else {
		x.Q, errs[0] = mat(p+"attn_q.weight", nh*(nope+rope), d)
	}
	x.KVA, errs[3] = mat(p+"attn_kv_a_mqa.weight", rank+rope, d)
	x.KVANorm, errs[4] = vec(p+"attn_kv_a_norm.weight", rank)
	if _, split := f.Get(archDeepseek2 + ".attention.key_length_mla"); split {
		x.KB, errs[5] = stack(p+"attn_k_b.weight", rank, nope, nh)
		x.VB, errs[6] = stack(p+"attn_v_b.weight", vd, rank, nh)
	} else {
		var kvb Matrix
		if kvb, errs[5] = mat(p+"attn_kv_b.weight", nh*(nope+vd), rank); errs[5] == nil {
			x.KB, x.VB, errs[6] = splitKVB(kvb, nh, nope, vd, rank, region)
		}
	}
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return x, nil
}

// splitKVB splits an older file's attn_kv_b (per head nope key rows then
// vd value rows, of rank each) into the per-head absorbed key matrices
// (the key rows transposed to rank×nope, a float32 copy) and value
// matrices (views of the value rows).
func splitKVB(kvb Matrix, nh, nope, vd, rank int, region func() int) (kb, vb []Matrix, err error) {
	all := make([]float32, kvb.Rows*kvb.Cols)
	if err := Decode(GGMLType(kvb.Type), kvb.Data, all); err != nil {
		return nil, nil, fmt.Errorf("gguf: tensor %q: %w", kvb.Name, err)
	}
	rb := len(kvb.Data) / kvb.Rows
	kb, vb = make([]Matrix, nh), make([]Matrix, nh)
	reg := region()
	for h := range nh {
		base := h * (nope + vd)
		raw, err := Encode(F32, AbsorbedKey(all, h, nope, vd, rank))
		if err != nil {
			return nil, nil, fmt.Errorf("gguf: tensor %q: %w", kvb.Name, err)
		}
		kb[h] = Matrix{Name: fmt.Sprintf("%s[%d].k", kvb.Name, h), Type: compute.QType(F32), Rows: rank, Cols: nope, Data: raw, region: reg}
		v := kvb.Data[(base+nope)*rb : (base+nope+vd)*rb : (base+nope+vd)*rb]
		vb[h] = Matrix{Name: fmt.Sprintf("%s[%d].v", kvb.Name, h), Type: kvb.Type, Rows: vd, Cols: rank, Data: v, region: kvb.region}
	}
	return kb, vb, nil
}

// AbsorbedKey returns head h's key decompression transposed, rank×nope,
// from a whole kv_b projection kvb (per head nope key rows then vd value
// rows, of rank each, as Hugging Face's kv_b_proj and older deepseek2
// files store it): the matrix that takes a query's nope part into the
// latent space, as llama.cpp's converter writes attn_k_b.
func AbsorbedKey(kvb []float32, h, nope, vd, rank int) []float32 {
	base := h * (nope + vd)
	t := make([]float32, rank*nope)
	for i := range nope {
		for c := range rank {
			t[c*nope+i] = kvb[(base+i)*rank+c]
		}
	}
	return t
}
