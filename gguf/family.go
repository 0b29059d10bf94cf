package gguf

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moe-llm/moe/config"
)

// family is how one llama.cpp MoE architecture other than llama lays out
// its model (llama.cpp's src/models/<arch>.cpp and src/llama-arch.cpp): the
// tensors beyond a Mixtral-style model and the routing rule its graph uses.
type family struct {
	// arch is the general.architecture name, modelType the config's.
	arch, modelType string
	// permuteQK: the converter stores q and k rows in llama.cpp's NORM RoPE
	// order (pairs 2i, 2i+1), which moe puts back into pairs i, i+hd/2.
	permuteQK bool
	// qkNorm: attn_q_norm/attn_k_norm RMSNorm gains, per head (width
	// head_dim) or over the whole projection.
	qkNorm, qkNormPerHead bool
	// qkvBias: attn_q/k/v.bias (optional in llama.cpp: present when the
	// file has blk.0.attn_q.bias).
	qkvBias bool
	// sharedGate: the shared expert ffn_*_shexp is always present, of width
	// expert_shared_feed_forward_length (default feed_forward_length),
	// gated by sigmoid(ffn_gate_inp_shexp · x). optShared: an ungated
	// shared expert when expert_shared_feed_forward_length > 0.
	sharedGate, optShared bool
	// expertLen: the routed experts' width is expert_feed_forward_length
	// (default feed_forward_length / expert_used_count); otherwise it is
	// feed_forward_length.
	expertLen bool
	// order and normTopK are the routing rule of the family's graph.
	order    string
	normTopK bool
	// needOutput: output.weight is required (no tied embeddings).
	needOutput bool
	// scales: Granite's embedding, residual, attention and logit scales.
	scales bool
	// mla: DeepSeek's multi-head latent attention and the rest of the
	// deepseek2 layout (deepseek2Config, mlaLayer).
	mla bool
	// gptOSS: gpt-oss's pieces (see ossConfig and ossLayer): attention
	// sinks, biases everywhere, alternating sliding windows, the clamped
	// SwiGLU, YaRN, post_attention_norm as the FFN norm.
	gptOSS bool
}

// families are the llama.cpp MoE architectures moe runs besides llama.
var families = []family{
	{arch: "qwen3moe", modelType: config.TypeQwen3MoE, qkNorm: true, qkNormPerHead: true, expertLen: true,
		order: config.RouterSoftmaxTopK, normTopK: true},
	{arch: "olmoe", modelType: config.TypeOLMoE, qkNorm: true,
		order: config.RouterSoftmaxTopK, needOutput: true},
	{arch: ArchQwen2MoE, modelType: config.TypeQwen2MoE, qkvBias: true, sharedGate: true, expertLen: true,
		order: config.RouterSoftmaxTopK, needOutput: true},
	{arch: "granitemoe", modelType: config.TypeGraniteMoE, permuteQK: true, optShared: true,
		order: config.RouterTopKSoftmax, scales: true},
	{arch: archDeepseek2, modelType: config.TypeDeepseekV2, order: config.RouterSoftmaxTopK, mla: true},
	{arch: ArchGPTOSS, modelType: config.TypeGPTOSS, order: config.RouterTopKSoftmax, needOutput: true, gptOSS: true},
}

// lookupFamily returns the family of arch, or nil.
func lookupFamily(arch string) *family {
	for i := range families {
		if families[i].arch == arch {
			return &families[i]
		}
	}
	return nil
}

// architectures lists every architecture OpenModel reads, for errors.
func architectures() string {
	names := []string{Architecture}
	for _, f := range families {
		names = append(names, f.arch)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// familyConfig builds the config of a file of family fam from its
// {arch}.* keys, as llama.cpp's loader reads them.
func familyConfig(f *File, fam *family) (*config.Config, error) {
	if fam.mla {
		return deepseek2Config(f, fam)
	}
	k := newKeyReader(f, fam.arch)
	cfg := familyBase(k, fam)
	cfg.IntermediateSize = k.int("feed_forward_length", -1)
	cfg.NormTopKProb, cfg.QKNorm, cfg.QKNormPerHead, cfg.SharedExpertGate = fam.normTopK, fam.qkNorm, fam.qkNormPerHead, fam.sharedGate
	if err := readHeads(k, cfg); err != nil {
		return nil, err
	}
	if fam.gptOSS {
		if err := ossConfig(f, k, cfg); err != nil {
			return nil, err
		}
	} else if v, ok := f.Get(fam.arch + ".rope.scaling.type"); ok && v != "none" && v != "" {
		return nil, fmt.Errorf("gguf: %s.rope.scaling.type %v is not supported", fam.arch, v)
	}
	if s := k.float("expert_weights_scale", 0); s != 0 && s != 1 {
		return nil, fmt.Errorf("gguf: %s.expert_weights_scale %g is not supported", fam.arch, s)
	}
	if fam.expertLen {
		cfg.MoEIntermediateSize = k.int("expert_feed_forward_length", cfg.IntermediateSize/max(cfg.ExpertsPerToken, 1))
	}
	switch {
	case fam.sharedGate:
		cfg.SharedExpertIntermediateSize = k.int("expert_shared_feed_forward_length", cfg.IntermediateSize)
	case fam.optShared:
		cfg.SharedExpertIntermediateSize = k.int("expert_shared_feed_forward_length", 0)
	}
	if fam.scales {
		cfg.LogitsScaling = k.float("logit_scale", -1)
		cfg.EmbeddingMultiplier = k.float("embedding_scale", 0)
		cfg.ResidualMultiplier = k.float("residual_scale", 0)
		cfg.AttentionMultiplier = k.float("attention.scale", 0)
		if cfg.LogitsScaling == 0 {
			return nil, fmt.Errorf("gguf: %s.logit_scale must not be zero", fam.arch)
		}
	}
	if k.err != nil {
		return nil, k.err
	}
	if fam.qkvBias {
		_, cfg.QKVBias = f.Tensor("blk.0.attn_q.bias")
	}
	if err := familyFinish(f, fam, cfg); err != nil {
		return nil, err
	}
	if hd := cfg.HeadDimension(); hd <= 0 || hd%2 != 0 || cfg.NumHeads%cfg.KVHeads() != 0 {
		return nil, fmt.Errorf("gguf: %s: head dimension %d must be even and %d heads a multiple of %d kv heads", fam.arch, hd, cfg.NumHeads, cfg.KVHeads())
	}
	return cfg, nil
}

// baseKey is one of the {arch}.* keys every family stores alike: the config
// field it holds (an int or a float64), its default when absent (< 0:
// required) and whether only MoE models have it.
type baseKey struct {
	key     string
	def     float64
	moe     bool
	intOf   func(*config.Config) *int
	floatOf func(*config.Config) *float64
}

// baseKeys are read by familyBase and written by familyKVs: one table of
// the names.
func baseKeys() []baseKey {
	return []baseKey{
		{key: "context_length", def: 2048, intOf: func(c *config.Config) *int { return &c.MaxPositionEmbeddings }},
		{key: "embedding_length", def: -1, intOf: func(c *config.Config) *int { return &c.HiddenSize }},
		{key: "block_count", def: -1, intOf: func(c *config.Config) *int { return &c.NumLayers }},
		{key: "attention.head_count", def: -1, intOf: func(c *config.Config) *int { return &c.NumHeads }},
		{key: "rope.freq_base", def: 10000, floatOf: func(c *config.Config) *float64 { return &c.RopeTheta }},
		{key: "attention.layer_norm_rms_epsilon", def: -1, floatOf: func(c *config.Config) *float64 { return &c.RMSNormEps }},
		{key: "expert_count", def: -1, moe: true, intOf: func(c *config.Config) *int { return &c.NumExperts }},
		{key: "expert_used_count", def: -1, moe: true, intOf: func(c *config.Config) *int { return &c.ExpertsPerToken }},
	}
}

// familyBase returns the config fields every family reads alike from its
// {arch}.* keys (baseKeys).
func familyBase(k *keyReader, fam *family) *config.Config {
	cfg := &config.Config{
		ModelType:   fam.modelType,
		HiddenAct:   "silu",
		Routing:     config.RoutingTokenChoice,
		RouterOrder: fam.order,
	}
	for _, b := range baseKeys() {
		if b.intOf != nil {
			*b.intOf(cfg) = k.int(b.key, int(b.def))
		} else {
			*b.floatOf(cfg) = k.float(b.key, b.def)
		}
	}
	return cfg
}

// familyFinish checks the expert counts, takes the vocabulary size from
// token_embd.weight and whether the embeddings are tied from the absence
// of output.weight, and validates cfg.
func familyFinish(f *File, fam *family, cfg *config.Config) error {
	if cfg.NumExperts < 2 || cfg.ExpertsPerToken < 1 {
		return fmt.Errorf("gguf: %s.expert_count %d and %s.expert_used_count %d: moe reads %s files with at least 2 experts", fam.arch, cfg.NumExperts, fam.arch, cfg.ExpertsPerToken, fam.arch)
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Dims) != 2 {
		return fmt.Errorf("gguf: missing 2-D tensor %q", "token_embd.weight")
	}
	cfg.VocabSize = int(emb.Dims[1])
	_, hasOut := f.Tensor("output.weight")
	if fam.needOutput && !hasOut {
		return fmt.Errorf("gguf: missing tensor %q (%s has no tied embeddings)", "output.weight", fam.arch)
	}
	cfg.TieWordEmbeddings = !hasOut
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("gguf: %s model metadata: %w", fam.arch, err)
	}
	return nil
}

// readHeads reads the key/value head count (default: cfg.NumHeads) and
// the head dimension (default: HiddenSize/NumHeads) into cfg, refusing a
// value length other than the key length and RoPE over part of a head.
func readHeads(k *keyReader, cfg *config.Config) error {
	cfg.NumKVHeads = k.int("attention.head_count_kv", cfg.NumHeads)
	if k.err != nil {
		return k.err
	}
	if cfg.NumHeads == 0 {
		return nil
	}
	if hd := k.int("attention.key_length", cfg.HiddenSize/cfg.NumHeads); hd != cfg.HiddenSize/cfg.NumHeads {
		cfg.HeadDim = hd
	}
	if vd := k.int("attention.value_length", cfg.HeadDimension()); vd != cfg.HeadDimension() {
		return fmt.Errorf("gguf: %sattention.value_length %d differs from key_length %d, which moe does not support", k.prefix, vd, cfg.HeadDimension())
	}
	if rd := k.int("rope.dimension_count", cfg.HeadDimension()); rd != cfg.HeadDimension() {
		return fmt.Errorf("gguf: partial RoPE (%srope.dimension_count %d of %d) is not supported", k.prefix, rd, cfg.HeadDimension())
	}
	return nil
}

// keyReader reads {arch}.* metadata, keeping the first error: a missing
// required key (default < 0) or a value of the wrong kind, each named.
type keyReader struct {
	f      *File
	prefix string
	err    error
}

func newKeyReader(f *File, arch string) *keyReader { return &keyReader{f: f, prefix: arch + "."} }

func (k *keyReader) fail(err error) {
	if k.err == nil {
		k.err = err
	}
}

// lookup returns the key's value; absent is an error when required.
func (k *keyReader) lookup(key string, required bool) (any, string, bool) {
	name := k.prefix + key
	v, ok := k.f.Get(name)
	if !ok && required {
		k.fail(fmt.Errorf("gguf: missing metadata %q", name))
	}
	return v, name, ok
}

// int returns the key's integer value, def when it is absent (an error
// when def < 0).
func (k *keyReader) int(key string, def int) int {
	v, name, ok := k.lookup(key, def < 0)
	if !ok {
		return max(def, 0)
	}
	n, ok := asInt(v)
	if !ok {
		k.fail(fmt.Errorf("gguf: metadata %q is %T, want an integer", name, v))
	}
	return n
}

// float returns the key's float value, def when it is absent (an error
// when def < 0).
func (k *keyReader) float(key string, def float64) float64 {
	v, name, ok := k.lookup(key, def < 0)
	if !ok {
		return max(def, 0)
	}
	switch x := v.(type) {
	case float32:
		return float64(x)
	case float64:
		return x
	}
	k.fail(fmt.Errorf("gguf: metadata %q is %T, want a float", name, v))
	return max(def, 0)
}
