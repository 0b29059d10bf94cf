package gguf

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
)

// exportTensor is one tensor ExportMapped writes: its stored type and a
// function giving its bytes in that type.
type exportTensor struct {
	Tensor
	// vector tensors (norm gains, biases) and the router stay F32.
	keepF32 bool
}

// mappedArch returns the llama.cpp architecture and family (nil for llama)
// a model of cfg is written as.
func mappedArch(cfg *config.Config) (string, *family, error) {
	switch cfg.ModelType {
	case config.TypeLlama, config.TypeMistral, config.TypeMixtral:
		return Architecture, nil, nil
	case config.TypeDeepseekV3: // V3 routing is deepseek2's gating keys
		return archDeepseek2, lookupFamily(archDeepseek2), nil
	}
	for i := range families {
		if families[i].modelType == cfg.ModelType {
			return families[i].arch, &families[i], nil
		}
	}
	return "", nil, fmt.Errorf("gguf: export: model type %q has no llama.cpp architecture moe writes (it writes %s)", cfg.ModelType, architectures())
}

// familyKVs are the {arch}.* keys of cfg as llama.cpp's converter writes
// them for fam (nil: llama), the inverse of familyConfig and configFromFile.
func familyKVs(arch string, fam *family, cfg *config.Config) ([]KV, error) {
	u32 := func(v int) uint32 { return uint32(v) }
	hd := cfg.HeadDimension()
	// The values moe computes with: the RoPE base with NTK scaling folded
	// in, the defaults of unset fields.
	c := *cfg
	c.RopeTheta, c.RMSNormEps = model.RopeBase(cfg), float64(model.NormEps(cfg))
	var kvs []KV
	for _, b := range baseKeys() {
		switch {
		case b.moe && !cfg.IsMoE():
		case b.intOf != nil:
			kvs = append(kvs, KV{arch + "." + b.key, u32(*b.intOf(&c))})
		default:
			kvs = append(kvs, KV{arch + "." + b.key, float32(*b.floatOf(&c))})
		}
	}
	kvs = append(kvs, KV{arch + ".feed_forward_length", u32(cfg.IntermediateSize)},
		KV{arch + ".attention.head_count_kv", u32(cfg.KVHeads())})
	if fam != nil && fam.mla {
		return deepseek2KVs(arch, cfg, kvs)
	}
	if fam == nil || !fam.gptOSS { // gpt-oss's converter leaves it to the head size
		kvs = append(kvs, KV{arch + ".rope.dimension_count", u32(hd)})
	}
	if cfg.HeadDim != 0 { // as the converter: only for a config's own head_dim
		kvs = append(kvs, KV{arch + ".attention.key_length", u32(hd)}, KV{arch + ".attention.value_length", u32(hd)})
	}
	if fam != nil && fam.gptOSS {
		return ossKVs(arch, cfg, kvs)
	}
	if fam == nil { // llama: linear or YaRN scaling as Export writes it
		return append(kvs, ropeScalingKVs(arch, cfg)...), nil
	}
	if cfg.RopeScaling != nil {
		return nil, fmt.Errorf("gguf: export: %s: RoPE scaling %q is not written for this family", arch, cfg.RopeScaling.Type)
	}
	if fam.expertLen {
		kvs = append(kvs, KV{arch + ".expert_feed_forward_length", u32(cfg.ExpertSize())})
	}
	if fam.sharedGate || fam.optShared && cfg.SharedExpertIntermediateSize > 0 {
		kvs = append(kvs, KV{arch + ".expert_shared_feed_forward_length", u32(cfg.SharedExpertIntermediateSize)})
	}
	if fam.scales {
		kvs = append(kvs, KV{arch + ".logit_scale", float32(cfg.LogitsScaling)},
			KV{arch + ".embedding_scale", float32(cfg.EmbeddingMultiplier)},
			KV{arch + ".residual_scale", float32(cfg.ResidualMultiplier)},
			KV{arch + ".attention.scale", float32(cfg.AttentionMultiplier)})
	}
	return kvs, nil
}

// ossKVs adds gpt-oss's keys to kvs (the inverse of ossConfig): the expert
// width, the sliding window of its alternating layers and YaRN.
func ossKVs(arch string, cfg *config.Config, kvs []KV) ([]KV, error) {
	var bad []string
	add := func(cond bool, what string) {
		if cond {
			bad = append(bad, what)
		}
	}
	add(cfg.SwiGLULimit != ossSwiGLULimit, fmt.Sprintf("a SwiGLU clamp of %g (llama.cpp's is %g)", cfg.SwiGLULimit, float64(ossSwiGLULimit)))
	add(!cfg.AttentionSinks || !cfg.AttentionBias || !cfg.RouterBias || !cfg.ExpertBias, "no sinks or biases where gpt-oss has them")
	add(cfg.SharedExpertIntermediateSize > 0 || cfg.QKNorm || cfg.MLPBias, "a shared expert, q/k norms or MLP biases")
	add(cfg.RouterOrder == config.RouterSoftmaxTopK || cfg.Routing == config.RoutingExpertChoice || cfg.SigmoidScoring(), "routing other than top-k then softmax")
	for i := 0; i < cfg.NumLayers; i++ {
		add(!cfg.LayerIsMoE(i), fmt.Sprintf("dense layer %d", i))
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("gguf: export: %s model with %s: llama.cpp's %s architecture cannot express it", cfg.ModelType, strings.Join(bad, ", "), arch)
	}
	for il, typ := range cfg.LayerTypes {
		slides := il%ossSWAPeriod < ossSWAPeriod-1
		if slides != (typ == config.LayerSlidingAttention) {
			return nil, fmt.Errorf("gguf: export: %s: layer %d is %s; llama.cpp's %s slides on every other layer from the first", cfg.ModelType, il, typ, arch)
		}
	}
	kvs = append(kvs, KV{arch + ".attention.sliding_window", uint32(cfg.SlidingWindow)},
		KV{arch + ".expert_feed_forward_length", uint32(cfg.ExpertSize())})
	if rs := cfg.RopeScaling; rs != nil {
		if rs.Type != config.RopeYaRN || rs.AttentionFactor != 0 || rs.Mscale != 0 || rs.MscaleAllDim != 0 ||
			rs.BetaFast != 0 && rs.BetaFast != 32 || rs.BetaSlow != 0 && rs.BetaSlow != 1 {
			return nil, fmt.Errorf("gguf: export: %s: RoPE scaling other than YaRN with beta_fast 32, beta_slow 1 (what llama.cpp computes for %s)", cfg.ModelType, arch)
		}
		kvs = append(kvs, KV{arch + ".rope.scaling.type", config.RopeYaRN}, KV{arch + ".rope.scaling.factor", float32(rs.Factor)},
			KV{arch + ".rope.scaling.original_context_length", uint32(rs.OriginalMaxPositionEmbeddings)},
			KV{arch + ".rope.scaling.yarn_beta_fast", float32(32)}, KV{arch + ".rope.scaling.yarn_beta_slow", float32(1)})
	}
	return kvs, nil
}

// deepseek2KVs adds deepseek2's keys to kvs (the inverse of
// deepseek2Config) for the split attn_k_b/attn_v_b layout the current
// converter writes: one latent kv head of kv_lora_rank + rope, the MLA head
// sizes in key_length_mla/value_length_mla.
func deepseek2KVs(arch string, cfg *config.Config, kvs []KV) ([]KV, error) {
	u32 := func(v int) uint32 { return uint32(v) }
	lead := 0
	for lead < cfg.NumLayers && !cfg.LayerIsMoE(lead) {
		lead++
	}
	for i := lead; i < cfg.NumLayers; i++ {
		if !cfg.LayerIsMoE(i) {
			return nil, fmt.Errorf("gguf: export: %s: dense layer %d after sparse ones (llama.cpp's %s has only leading dense layers)", cfg.ModelType, i, arch)
		}
	}
	fe := cfg.ExpertSize()
	if cfg.SharedExpertIntermediateSize%max(fe, 1) != 0 {
		return nil, fmt.Errorf("gguf: export: %s: shared expert width %d is not a whole number of experts of %d", cfg.ModelType, cfg.SharedExpertIntermediateSize, fe)
	}
	gating := uint32(gatingSoftmax)
	if cfg.SigmoidScoring() {
		gating = gatingSigmoid
	}
	for i, kv := range kvs { // one latent kv head
		if kv.Key == arch+".attention.head_count_kv" {
			kvs[i].Value = uint32(1)
		}
	}
	kvs = append(kvs, KV{arch + ".vocab_size", u32(cfg.VocabSize)},
		KV{arch + ".leading_dense_block_count", u32(lead)},
		KV{arch + ".attention.q_lora_rank", u32(cfg.QLoraRank)},
		KV{arch + ".attention.kv_lora_rank", u32(cfg.KVLoraRank)},
		KV{arch + ".attention.key_length", u32(cfg.KVLoraRank + cfg.QKRopeHeadDim)},
		KV{arch + ".attention.value_length", u32(cfg.KVLoraRank)},
		KV{arch + ".attention.key_length_mla", u32(cfg.QKNopeHeadDim + cfg.QKRopeHeadDim)},
		KV{arch + ".attention.value_length_mla", u32(cfg.VHeadDim)},
		KV{arch + ".expert_feed_forward_length", u32(fe)},
		KV{arch + ".expert_shared_count", u32(cfg.SharedExpertIntermediateSize / max(fe, 1))},
		KV{arch + ".expert_gating_func", gating},
		KV{arch + ".rope.dimension_count", u32(cfg.QKRopeHeadDim)})
	if cfg.NGroup > 1 {
		kvs = append(kvs, KV{arch + ".expert_group_count", u32(cfg.NGroup)}, KV{arch + ".expert_group_used_count", u32(cfg.TopKGroup)})
	}
	if s := cfg.RoutedScale(); s != 1 {
		kvs = append(kvs, KV{arch + ".expert_weights_scale", float32(s)})
	}
	if cfg.NormTopKProb {
		kvs = append(kvs, KV{arch + ".expert_weights_norm", true})
	}
	if rs := cfg.RopeScaling; rs != nil {
		if rs.Type != config.RopeYaRN || rs.MscaleAllDim <= 0 || rs.Mscale != rs.MscaleAllDim || rs.AttentionFactor != 0 {
			return nil, fmt.Errorf("gguf: export: %s: RoPE scaling other than YaRN with mscale = mscale_all_dim (what llama.cpp computes for %s)", cfg.ModelType, arch)
		}
		kvs = append(kvs, KV{arch + ".rope.scaling.type", config.RopeYaRN}, KV{arch + ".rope.scaling.factor", float32(rs.Factor)},
			KV{arch + ".rope.scaling.original_context_length", u32(rs.OriginalMaxPositionEmbeddings)},
			KV{arch + ".rope.scaling.yarn_log_multiplier", float32(0.1 * rs.MscaleAllDim)})
		// llama.cpp's defaults, 32 and 1, go without a key.
		if rs.BetaFast != 0 && rs.BetaFast != 32 {
			kvs = append(kvs, KV{arch + ".rope.scaling.yarn_beta_fast", float32(rs.BetaFast)})
		}
		if rs.BetaSlow != 0 && rs.BetaSlow != 1 {
			kvs = append(kvs, KV{arch + ".rope.scaling.yarn_beta_slow", float32(rs.BetaSlow)})
		}
	}
	return kvs, nil
}

// checkMappedFamily refuses a model whose pieces the family's llama.cpp
// graph does not compute (or computes differently), naming the first.
func checkMappedFamily(arch string, fam *family, cfg *config.Config) error {
	var err error
	bad := func(cond bool, what string) {
		if cond && err == nil {
			err = fmt.Errorf("gguf: export: %s model with %s: llama.cpp's %s architecture cannot express it", cfg.ModelType, what, arch)
		}
	}
	if fam == nil {
		bad(checkStructure(cfg) != nil, "features beyond llama's")
		bad(cfg.IsMoE() && CheckLlamaCompatible(cfg) != nil, "routing or layers llama.cpp's llama MoE computes differently")
		return err
	}
	if fam.mla || fam.gptOSS {
		return nil // their keys (deepseek2KVs, ossKVs) refuse what they cannot write
	}
	bad(cfg.QKNorm != fam.qkNorm || cfg.QKNorm && cfg.QKNormPerHead != fam.qkNormPerHead, "q/k norms of another kind")
	if fam.qkNorm && !fam.qkNormPerHead { // olmoe's q and k norms are n_embd wide
		hd := cfg.HeadDimension()
		bad(cfg.NumHeads*hd != cfg.HiddenSize || cfg.KVHeads()*hd != cfg.HiddenSize, "q or k projections narrower or wider than the hidden size (grouped-query attention or a head_dim of its own)")
	}
	bad(cfg.QKVBias && !fam.qkvBias, "q/k/v biases")
	bad(cfg.AttentionBias || cfg.MLPBias || cfg.ExpertBias || cfg.RouterBias || cfg.AttentionSinks, "output, feed-forward or router biases, or attention sinks")
	bad(cfg.SharedExpertGate != fam.sharedGate, "a shared expert gated otherwise")
	bad(cfg.SharedExpertIntermediateSize > 0 && !fam.sharedGate && !fam.optShared, "a shared expert")
	bad(cfg.PlainMLP || cfg.LayerNorm || cfg.LearnedPositions || cfg.HiddenAct != "" && cfg.HiddenAct != "silu" && cfg.HiddenAct != "swish", "another MLP, norm, activation or positions")
	bad(SlidingWindowMatters(cfg), "sliding-window attention")
	bad(cfg.Routing == config.RoutingExpertChoice || cfg.SigmoidScoring() || cfg.HasRouterScoreBias() || cfg.RoutedScale() != 1, "expert-choice or DeepSeek-V3 routing")
	// Renormalised top-k weights: top-k then softmax is softmax, top-k and
	// renormalisation; whether they are renormalised matters for 1 < k < E.
	renorm := func(order string, norm bool) bool { return order != config.RouterSoftmaxTopK || norm }
	bad(cfg.ExpertsPerToken > 1 && cfg.ExpertsPerToken < cfg.NumExperts && renorm(cfg.RouterOrder, cfg.NormTopKProb) != renorm(fam.order, fam.normTopK),
		"top-k weights normalised otherwise")
	bad(!fam.scales && (cfg.EmbeddingMultiplier != 0 || cfg.ResidualMultiplier != 0 || cfg.AttentionMultiplier != 0 || cfg.LogitsScaling != 0), "Granite's scales")
	for i := 0; i < cfg.NumLayers; i++ {
		bad(!cfg.LayerIsMoE(i), fmt.Sprintf("dense layer %d", i))
	}
	return err
}

// exportFamilyConfig returns the config a run directory's model is written
// with when llama.cpp's llama architecture (or the qwen2moe one with a
// placeholder shared expert, see exportArch) cannot run it exactly: its own
// model type when that is a family's, else qwen3_moe for per-head q/k
// norms, olmoe for full-width ones and granitemoe for Granite's scales.
// nil means Export's llama path, as before.
func exportFamilyConfig(cfg *config.Config) *config.Config {
	scales := cfg.EmbeddingMultiplier != 0 || cfg.ResidualMultiplier != 0 || cfg.AttentionMultiplier != 0 || cfg.LogitsScaling != 0
	if _, err := exportArch(cfg, false); err == nil && !scales {
		return nil
	}
	c := *cfg
	if _, fam, err := mappedArch(&c); err == nil && fam != nil {
		return &c
	}
	switch {
	case c.QKNorm && c.QKNormPerHead:
		c.ModelType = config.TypeQwen3MoE
	case c.QKNorm:
		c.ModelType = config.TypeOLMoE
	case scales:
		c.ModelType = config.TypeGraniteMoE
	default:
		return nil
	}
	return &c
}

// weightsMapped views the training model's weights w as an inference
// model's matrices (float32 copies), for ExportMapped.
func weightsMapped(cfg *config.Config, w *model.Weights, tok *tokenizer.Tokenizer) (*Mapped, error) {
	if cfg.MLA() {
		return nil, fmt.Errorf("gguf: export: %s: the training model has no latent attention to write", cfg.ModelType)
	}
	if len(w.Layers) != cfg.NumLayers {
		return nil, fmt.Errorf("gguf: export: weights have %d layers, config %d", len(w.Layers), cfg.NumLayers)
	}
	var errs []error
	mat := func(name string, v []float32, rows, cols int) Matrix {
		raw, err := Encode(F32, v)
		errs = append(errs, err)
		if err == nil && len(v) != rows*cols {
			errs = append(errs, fmt.Errorf("gguf: export: %s has %d values, want %d×%d", name, len(v), rows, cols))
		}
		return Matrix{Name: name, Type: F32, Rows: rows, Cols: cols, Data: raw}
	}
	ffn := func(name string, gate, up, down []float32, width, d int) ExpertMatrices {
		return ExpertMatrices{Gate: mat(name+".gate", gate, width, d), Up: mat(name+".up", up, width, d), Down: mat(name+".down", down, d, width)}
	}
	at := func(bs [][]float32, e int) []float32 {
		if bs == nil {
			return nil
		}
		return bs[e]
	}
	d, hd, V := cfg.HiddenSize, cfg.HeadDimension(), cfg.VocabSize
	qd, kd := cfg.NumHeads*hd, cfg.KVHeads()*hd
	m := NewMapped(cfg, tok, nil)
	m.Embed = mat("embed", w.Embed, V, d)
	m.Output = mat("lm_head", w.LMHead, V, d)
	m.FinalNorm = w.FinalNorm
	for i := range w.Layers {
		l, L := &w.Layers[i], &m.Layers[i]
		p := fmt.Sprintf("layer %d ", i)
		L.AttnNorm, L.FFNNorm, L.QNorm, L.KNorm = l.AttnNorm, l.FFNNorm, l.QNorm, l.KNorm
		L.Q, L.K, L.V, L.O = mat(p+"q", l.Wq, qd, d), mat(p+"k", l.Wk, kd, d), mat(p+"v", l.Wv, kd, d), mat(p+"o", l.Wo, d, qd)
		if b := l.QKVBias; b != nil {
			L.QBias, L.KBias, L.VBias = b[:qd], b[qd:qd+kd], b[qd+kd:]
		}
		L.OBias, L.Sinks = l.OBias, l.Sinks
		if !cfg.LayerIsMoE(i) {
			L.FFN = ffn(p+"ffn", l.Gate, l.Up, l.Down, len(l.Gate)/d, d)
			L.FFN.GateBias, L.FFN.UpBias, L.FFN.DownBias = l.GateBias, l.UpBias, l.DownBias
			continue
		}
		fe := cfg.ExpertSize()
		L.Router, L.RouterBias, L.ScoreBias = mat(p+"router", l.Router, cfg.NumExperts, d), l.RouterBias, l.RouterScoreBias
		L.Experts = make([]ExpertMatrices, len(l.ExpertGate))
		for e := range L.Experts {
			x := ffn(fmt.Sprintf("%sexpert %d", p, e), l.ExpertGate[e], l.ExpertUp[e], l.ExpertDown[e], fe, d)
			x.GateBias, x.UpBias, x.DownBias = at(l.ExpertGateBias, e), at(l.ExpertUpBias, e), at(l.ExpertDownBias, e)
			L.Experts[e] = x
		}
		if s := len(l.SharedGate) / d; s > 0 {
			if l.SharedGateBias != nil {
				return nil, fmt.Errorf("gguf: export: %s: shared-expert biases have no llama.cpp tensor", cfg.ModelType)
			}
			L.Shared = ffn(p+"shared", l.SharedGate, l.SharedUp, l.SharedDown, s, d)
		}
		L.SharedGateInp = l.SharedGateInp
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// ExportMapped writes m, a model opened for inference (from a GGUF file or a
// Hugging Face directory), as a GGUF file at path (atomically) in llama.cpp's
// converter layout for its family: the architecture's name, tensor names
// and {arch}.* keys, the tokenizer as read and opt.ChatTemplate. The weight
// matrices are written in the types opt.Mix chooses (a matrix already of
// its type is copied byte for byte); vectors and the router stay F32.
func ExportMapped(ctx context.Context, path string, m *Mapped, opt ExportOptions) error {
	kvs, tensors, err := mappedParts(m, opt)
	if err != nil {
		return err
	}
	return WriteFile(ctx, path, kvs, tensors)
}

// familyHeader returns the architecture and family a model of cfg is
// written as and its {arch}.* keys, or an error naming what the family's
// llama.cpp graph cannot compute.
func familyHeader(cfg *config.Config, allowInexact bool) (string, *family, []KV, error) {
	arch, fam, err := mappedArch(cfg)
	if err != nil {
		return "", nil, nil, err
	}
	if err := checkMappedFamily(arch, fam, cfg); err != nil {
		return "", nil, nil, err
	}
	if rs := cfg.RopeScaling; rs != nil && rs.Type == config.RopeYaRN && !rs.YaRNTruncate() && !allowInexact {
		// gpt-oss's own config says truncate: false; its converter writes
		// the file anyway, and llama.cpp rounds the range out.
		return "", nil, nil, fmt.Errorf("gguf: export: %s: YaRN with an untruncated correction range (rope_scaling.truncate false), which llama.cpp's %s truncates: it would compute otherwise (pass AllowInexact / --allow-inexact to write it as llama.cpp's converter does)", cfg.ModelType, arch)
	}
	kvs, err := familyKVs(arch, fam, cfg)
	return arch, fam, kvs, err
}

// mappedParts builds the metadata and tensor list of ExportMapped.
func mappedParts(m *Mapped, opt ExportOptions) ([]KV, []Tensor, error) {
	cfg := m.Cfg
	arch, fam, akv, err := familyHeader(cfg, opt.AllowInexact)
	if err != nil {
		return nil, nil, err
	}
	if m.Tok == nil {
		return nil, nil, errors.New("gguf: export: a tokenizer is required")
	}
	mix := opt.Mix
	if mix.Name == "" {
		if mix, err = PureMix(opt.Type); err != nil {
			return nil, nil, fmt.Errorf("gguf: export: %w", err)
		}
	}
	name := opt.Name
	if name == "" {
		name = "moe"
	}
	kvs := []KV{
		{"general.architecture", arch},
		{"general.name", name},
		{"general.file_type", mix.FileType},
		{"general.quantization_version", uint32(2)},
	}
	kvs = append(kvs, akv...)
	kvs, err = appendTokenizerKVs(kvs, m.Tok, cfg.VocabSize, opt.ChatTemplate)
	if err != nil {
		return nil, nil, err
	}

	var ts []exportTensor
	vec := func(name string, v []float32, dims ...uint64) {
		if len(dims) == 0 {
			dims = []uint64{uint64(len(v))}
		}
		ts = append(ts, exportTensor{Tensor{Name: name, Dims: dims, Type: F32, Data: func() ([]byte, error) { return Encode(F32, v) }}, true})
	}
	// mats writes matrices of one type stacked (an expert tensor, or the
	// per-head attn_k_b/attn_v_b: 3-D when the name is one of those),
	// with rows permuted by perm when it is set.
	mats := func(name string, keep bool, perm func([]byte, int) []byte, ms ...Matrix) error {
		if len(ms) == 0 {
			return fmt.Errorf("gguf: export: %s: no matrices", name)
		}
		first := ms[0]
		var size int
		for _, x := range ms {
			if x.Type != first.Type || x.Rows != first.Rows || x.Cols != first.Cols {
				return fmt.Errorf("gguf: export: %s: the stacked matrices differ in type or shape (%s %d×%d, %s %d×%d)", name, first.Name, first.Rows, first.Cols, x.Name, x.Rows, x.Cols)
			}
			size += len(x.Data)
		}
		dims := []uint64{uint64(first.Cols), uint64(first.Rows)}
		if strings.Contains(name, "_exps.") || strings.Contains(name, "_b.weight") && !strings.Contains(name, "_q_b.") {
			dims = append(dims, uint64(len(ms)))
		}
		ts = append(ts, exportTensor{Tensor{Name: name, Dims: dims, Type: first.Type, Data: func() ([]byte, error) {
			out := make([]byte, 0, size)
			for _, x := range ms {
				if perm != nil {
					out = append(out, perm(x.Data, len(x.Data)/x.Rows)...)
				} else {
					out = append(out, x.Data...)
				}
			}
			return out, nil
		}}, keep})
		return nil
	}
	// The converter permutes q and k rows for llama.cpp's normal RoPE in
	// llama and granite; moe's (and Hugging Face's) order is rotate-half.
	var permQ, permK func([]byte, int) []byte
	if fam == nil || fam.permuteQK {
		hd := cfg.HeadDimension()
		permQ = func(b []byte, rb int) []byte { return ropePermute(b, cfg.NumHeads, hd, rb, true) }
		permK = func(b []byte, rb int) []byte { return ropePermute(b, cfg.KVHeads(), hd, rb, true) }
	}
	var errs []error
	errs = append(errs, mats("token_embd.weight", false, nil, m.Embed))
	for i := range m.Layers {
		L := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		vec(p+"attn_norm.weight", L.AttnNorm)
		if a := L.MLA; a != nil {
			if a.QA.Rows > 0 {
				errs = append(errs, mats(p+"attn_q_a.weight", false, nil, a.QA), mats(p+"attn_q_b.weight", false, nil, a.QB))
				vec(p+"attn_q_a_norm.weight", a.QANorm)
			} else {
				errs = append(errs, mats(p+"attn_q.weight", false, nil, a.Q))
			}
			vec(p+"attn_kv_a_norm.weight", a.KVANorm)
			errs = append(errs, mats(p+"attn_kv_a_mqa.weight", false, nil, a.KVA),
				mats(p+"attn_k_b.weight", false, nil, a.KB...), mats(p+"attn_v_b.weight", false, nil, a.VB...))
		} else {
			errs = append(errs, mats(p+"attn_q.weight", false, permQ, L.Q), mats(p+"attn_k.weight", false, permK, L.K),
				mats(p+"attn_v.weight", false, nil, L.V))
		}
		errs = append(errs, mats(p+"attn_output.weight", false, nil, L.O))
		if L.Sinks != nil {
			vec(p+"attn_sinks.weight", L.Sinks)
		}
		if L.OBias != nil {
			vec(p+"attn_output.bias", L.OBias)
		}
		if L.QNorm != nil {
			vec(p+"attn_q_norm.weight", L.QNorm)
			vec(p+"attn_k_norm.weight", L.KNorm)
		}
		if L.QBias != nil {
			vec(p+"attn_q.bias", L.QBias)
			vec(p+"attn_k.bias", L.KBias)
			vec(p+"attn_v.bias", L.VBias)
		}
		vec(p+ffnNormName(fam), L.FFNNorm)
		if len(L.Experts) == 0 {
			errs = append(errs, mats(p+"ffn_gate.weight", false, nil, L.FFN.Gate), mats(p+"ffn_up.weight", false, nil, L.FFN.Up),
				mats(p+"ffn_down.weight", false, nil, L.FFN.Down))
			continue
		}
		gate, up, down := make([]Matrix, len(L.Experts)), make([]Matrix, len(L.Experts)), make([]Matrix, len(L.Experts))
		for e, x := range L.Experts {
			gate[e], up[e], down[e] = x.Gate, x.Up, x.Down
		}
		errs = append(errs, mats(p+"ffn_gate_inp.weight", true, nil, L.Router), mats(p+"ffn_gate_exps.weight", false, nil, gate...),
			mats(p+"ffn_up_exps.weight", false, nil, up...), mats(p+"ffn_down_exps.weight", false, nil, down...))
		if L.RouterBias != nil {
			vec(p+"ffn_gate_inp.bias", L.RouterBias)
		}
		if L.ScoreBias != nil {
			vec(p+"exp_probs_b.bias", L.ScoreBias)
		}
		if L.Experts[0].GateBias != nil {
			var gb, ub, db []float32
			for _, x := range L.Experts {
				gb, ub, db = append(gb, x.GateBias...), append(ub, x.UpBias...), append(db, x.DownBias...)
			}
			E := uint64(len(L.Experts))
			vec(p+"ffn_gate_exps.bias", gb, uint64(len(L.Experts[0].GateBias)), E)
			vec(p+"ffn_up_exps.bias", ub, uint64(len(L.Experts[0].UpBias)), E)
			vec(p+"ffn_down_exps.bias", db, uint64(len(L.Experts[0].DownBias)), E)
		}
		if L.SharedGateInp != nil {
			vec(p+"ffn_gate_inp_shexp.weight", L.SharedGateInp)
		}
		if s := L.Shared; s.Gate.Rows > 0 {
			errs = append(errs, mats(p+"ffn_gate_shexp.weight", false, nil, s.Gate), mats(p+"ffn_up_shexp.weight", false, nil, s.Up),
				mats(p+"ffn_down_shexp.weight", false, nil, s.Down))
		}
	}
	vec("output_norm.weight", m.FinalNorm)
	if !cfg.TieWordEmbeddings || fam != nil && fam.needOutput {
		errs = append(errs, mats("output.weight", false, nil, m.Output))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	tensors, err := mixTensors(mix, MixModel{Layers: cfg.NumLayers, Experts: cfg.NumExperts, Heads: cfg.NumHeads, KVHeads: cfg.KVHeads()}, ts)
	if err != nil {
		return nil, nil, fmt.Errorf("gguf: export: %w", err)
	}
	return kvs, tensors, nil
}

// mixTensors gives each tensor the type mix chooses (keepF32 ones stay
// F32, quantized ones keep their type); a tensor whose type changes is
// decoded to float32 and encoded again when the writer reaches it.
func mixTensors(mix Mix, model MixModel, ts []exportTensor) ([]Tensor, error) {
	mt := make([]MixTensor, len(ts))
	for i, t := range ts {
		mt[i] = MixTensor{Name: t.Name, Dims: t.Dims, Type: t.Type}
	}
	types, err := mix.TensorTypes(model, mt)
	if err != nil {
		return nil, err
	}
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		out[i] = t.Tensor
		from, to, src := t.Type, types[i], t.Data
		if t.keepF32 {
			to = F32
		}
		if quantized(from) {
			// Stored quantized (gpt-oss's MXFP4 experts): kept as the
			// converter keeps them, re-encoding would only add error.
			to = from
		}
		if from == to {
			continue
		}
		out[i].Type = to
		n := 1
		for _, d := range t.Dims {
			n *= int(d)
		}
		out[i].Data = func() ([]byte, error) {
			raw, err := src()
			if err != nil {
				return nil, err
			}
			vals := make([]float32, n)
			if err := compute.Dequantize(from, raw, vals); err != nil {
				return nil, err
			}
			return Encode(to, vals)
		}
	}
	return out, nil
}
