package gguf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// Architecture is the llama.cpp architecture moe models are written as:
// Mixtral-style MoE models are "llama" with expert tensors.
const Architecture = "llama"

// ArchQwen2MoE is llama.cpp's qwen2moe architecture, which moe uses for
// MoE models whose router weights are softmax probabilities that are not
// renormalised after the top-k (expert-choice models at inference,
// softmax_topk without norm_topk_prob): llama.cpp's llama architecture
// always renormalises, its qwen2moe architecture does not.
const ArchQwen2MoE = "qwen2moe"

// shexpWidth is the width of the zero shared expert that a qwen2moe file
// needs (llama.cpp requires the tensors); its down projection is zero, so it
// adds nothing.
const shexpWidth = 32

// KeyMoEConfig is the metadata key holding moe's whole config.json, so that
// a moe → GGUF → moe round trip restores the fields llama.cpp has no key for
// (routing kind, capacity factor, loss coefficients, ...). llama.cpp ignores
// it.
const KeyMoEConfig = "moe.config"

// llama.cpp token types (llama_token_type).
const (
	tokenNormal      int32 = 1
	tokenUnknown     int32 = 2
	tokenControl     int32 = 3
	tokenUserDefined int32 = 4
	tokenUnused      int32 = 5
	tokenByte        int32 = 6
)

// preTokenizer is llama.cpp's name for the cl100k pre-tokenizer regex that
// moe's tokenizer implements (Llama 3 uses the same one).
const preTokenizer = "llama-bpe"

// ChatTemplate is moe's chat format (see chattmpl.Moe) as a Jinja
// template, written to exported files as tokenizer.chat_template.
const ChatTemplate = chattmpl.Moe

// HasChatTokens reports whether tok has the special tokens of moe's chat
// format.
func HasChatTokens(tok *tokenizer.Tokenizer) bool {
	for _, n := range []string{tokenizer.System, tokenizer.User, tokenizer.Assistant, tokenizer.End} {
		if _, ok := tok.Special(n); !ok {
			return false
		}
	}
	return true
}

// ExportOptions controls Export.
type ExportOptions struct {
	// Type is the type of every weight matrix when Mix is unset: F32 (the
	// default) or any type ParseType names. Norm gains and the router stay
	// F32; a matrix whose rows are not whole blocks falls back as
	// llama-quantize's rules say (q4_K to q5_0, ..., then F16).
	Type GGMLType
	// Mix, when its Name is set, chooses each tensor's type by
	// llama-quantize's rules for that mix (q4_k_m: output Q6_K, some
	// attention V and FFN down Q6_K, the rest Q4_K) and sets
	// general.file_type to it.
	Mix Mix
	// Name is general.name (default "moe").
	Name string
	// AllowInexact writes models that neither llama.cpp architecture runs
	// exactly (see CheckLlamaCompatible, CheckQwen2MoECompatible) as
	// "llama": moe reads them back exactly, llama.cpp refuses them or
	// routes differently.
	AllowInexact bool
	// ChatTemplate is the tokenizer.chat_template to write: the model's
	// own. Empty means moe's (ChatTemplate) when the tokenizer has its
	// chat tokens, else none.
	ChatTemplate string
}

// CheckLlamaCompatible reports whether llama.cpp's "llama" architecture
// computes the same function as moe for cfg: RMSNorm, RoPE, SwiGLU, no
// biases, and for MoE models every layer sparse, no shared expert, and
// token-choice routing whose k weights are renormalised (top-k then softmax,
// or softmax, top-k and renormalisation; llama.cpp does the latter). The
// error names the first difference.
func CheckLlamaCompatible(cfg *config.Config) error {
	if err := checkStructure(cfg); err != nil {
		return err
	}
	if !cfg.IsMoE() {
		return nil
	}
	if cfg.Routing == config.RoutingExpertChoice {
		return errors.New("expert-choice routing (llama.cpp routes token-choice top-k with renormalised weights; moe's causal rule for expert choice does not renormalise)")
	}
	if cfg.RouterOrder == config.RouterSoftmaxTopK && !cfg.NormTopKProb && cfg.ExpertsPerToken < cfg.NumExperts {
		return errors.New("softmax_topk routing without norm_topk_prob (llama.cpp's llama architecture always renormalises the top-k weights)")
	}
	if cfg.SharedExpertIntermediateSize > 0 {
		return errors.New("a shared expert (llama.cpp's llama architecture has none)")
	}
	for i := 0; i < cfg.NumLayers; i++ {
		if !cfg.LayerIsMoE(i) {
			return fmt.Errorf("layer %d is dense in an MoE model (llama.cpp's llama architecture makes every layer sparse)", i)
		}
	}
	return nil
}

// CheckQwen2MoECompatible reports whether llama.cpp's qwen2moe architecture
// computes the same function as moe for cfg: an MoE model whose every layer
// is sparse, without a shared expert, with q width equal to the hidden size,
// routing by softmax over all experts then top-k without renormalisation
// (expert-choice models at inference; softmax_topk without norm_topk_prob).
func CheckQwen2MoECompatible(cfg *config.Config) error {
	if err := checkStructure(cfg); err != nil {
		return err
	}
	switch {
	case !cfg.IsMoE():
		return errors.New("a dense model")
	case cfg.SharedExpertIntermediateSize > 0:
		return errors.New("an ungated shared expert (llama.cpp's qwen2moe gates it with a sigmoid)")
	case cfg.NumHeads*cfg.HeadDimension() != cfg.HiddenSize:
		return fmt.Errorf("query width %d differs from the hidden size %d", cfg.NumHeads*cfg.HeadDimension(), cfg.HiddenSize)
	case cfg.Routing != config.RoutingExpertChoice && !(cfg.RouterOrder == config.RouterSoftmaxTopK && !cfg.NormTopKProb):
		return errors.New("renormalised top-k routing")
	}
	for i := 0; i < cfg.NumLayers; i++ {
		if !cfg.LayerIsMoE(i) {
			return fmt.Errorf("layer %d is dense", i)
		}
	}
	return nil
}

// exportArch picks the architecture for cfg: llama when llama.cpp's llama
// graph matches moe, else qwen2moe when that one matches, else (with
// allowInexact) llama.
func exportArch(cfg *config.Config, allowInexact bool) (string, error) {
	errLlama := CheckLlamaCompatible(cfg)
	if errLlama == nil {
		return Architecture, nil
	}
	if CheckQwen2MoECompatible(cfg) == nil {
		return ArchQwen2MoE, nil
	}
	if allowInexact {
		return Architecture, nil
	}
	return "", fmt.Errorf("llama.cpp cannot run this model exactly: %w (pass AllowInexact / --allow-inexact to write it anyway for moe)", errLlama)
}

// checkStructure rejects configs whose parameters GGUF's llama tensors
// cannot hold at all.
func checkStructure(cfg *config.Config) error {
	var bad []string
	add := func(cond bool, what string) {
		if cond {
			bad = append(bad, what)
		}
	}
	add(cfg.AttentionBias || cfg.QKVBias, "attention biases")
	add(cfg.MLPBias || cfg.ExpertBias || cfg.RouterBias, "feed-forward or router biases")
	add(cfg.QKNorm, "q/k norms")
	add(cfg.AttentionSinks, "attention sinks")
	add(cfg.SharedExpertGate, "a gated shared expert")
	add(cfg.PlainMLP, "a plain (ungated) MLP")
	add(cfg.LayerNorm, "LayerNorm")
	add(cfg.LearnedPositions, "learned positions")
	add(cfg.HiddenAct != "" && cfg.HiddenAct != "silu" && cfg.HiddenAct != "swish", "activation "+cfg.HiddenAct)
	add(SlidingWindowMatters(cfg), "sliding-window attention")
	if rs := cfg.RopeScaling; rs != nil {
		add(rs.Mscale != 0 || rs.MscaleAllDim != 0 || rs.AttentionFactor != 0 || !rs.YaRNTruncate(),
			"a YaRN attention factor of its own (mscale, mscale_all_dim, attention_factor) or an untruncated YaRN range")
	}
	add(cfg.SigmoidScoring() || cfg.HasRouterScoreBias() || cfg.RoutedScale() != 1,
		"sigmoid router scores, selection biases or routed_scaling_factor (DeepSeek-V3 routing)")
	if len(bad) > 0 {
		return fmt.Errorf("the model has %s, which GGUF's llama architecture cannot express", strings.Join(bad, ", "))
	}
	if hd := cfg.HeadDimension(); hd <= 0 || hd%2 != 0 {
		return fmt.Errorf("head dimension %d must be positive and even for RoPE", hd)
	}
	return nil
}

// ropeScalingKVs returns the {arch}.rope.scaling.* keys llama.cpp reads for
// linear and YaRN scaling (NTK-aware scaling is the base, see model.RopeBase).
func ropeScalingKVs(arch string, cfg *config.Config) []KV {
	rs := cfg.RopeScaling
	if rs == nil || rs.Type == config.RopeNTK {
		return nil
	}
	kvs := []KV{{arch + ".rope.scaling.type", rs.Type}, {arch + ".rope.scaling.factor", float32(rs.Factor)}}
	if rs.Type == config.RopeYaRN {
		orig := rs.OriginalMaxPositionEmbeddings
		if orig == 0 {
			orig = cfg.MaxPositionEmbeddings
		}
		kvs = append(kvs, KV{arch + ".rope.scaling.original_context_length", uint32(orig)})
		if rs.BetaFast != 0 {
			kvs = append(kvs, KV{arch + ".rope.scaling.yarn_beta_fast", float32(rs.BetaFast)})
		}
		if rs.BetaSlow != 0 {
			kvs = append(kvs, KV{arch + ".rope.scaling.yarn_beta_slow", float32(rs.BetaSlow)})
		}
	}
	return kvs
}

// SlidingWindowMatters reports whether cfg restricts attention to a window
// shorter than its context (a window at least as long as the context, as
// Mistral 7B v0.1's 4096 under a 4096 context, changes nothing).
func SlidingWindowMatters(cfg *config.Config) bool {
	for _, t := range cfg.LayerTypes {
		if t == config.LayerSlidingAttention && cfg.SlidingWindow > 0 && cfg.SlidingWindow < cfg.MaxPositionEmbeddings {
			return true
		}
	}
	return len(cfg.LayerTypes) == 0 && cfg.SlidingWindow > 0 && cfg.SlidingWindow < cfg.MaxPositionEmbeddings
}

// Export writes the model as a GGUF file at path (atomically) in llama.cpp's
// "llama" architecture, with tok as a "gpt2" byte-level BPE tokenizer; a
// model that architecture cannot hold is written in the layout of its
// family (see exportFamilyConfig and ExportMapped).
func Export(ctx context.Context, path string, cfg *config.Config, w *model.Weights, tok *tokenizer.Tokenizer, opt ExportOptions) error {
	if fc := exportFamilyConfig(cfg); fc != nil {
		// Beyond llama's architecture: the family's layout (q/k norms as
		// qwen3moe or olmoe, a gated shared expert as qwen2moe, ...).
		if _, _, _, err := familyHeader(fc, opt.AllowInexact); err != nil {
			return err
		}
		m, err := weightsMapped(fc, w, tok)
		if err != nil {
			return err
		}
		return ExportMapped(ctx, path, m, opt)
	}
	kvs, tensors, err := exportParts(cfg, w, tok, opt)
	if err != nil {
		return err
	}
	return WriteFile(ctx, path, kvs, tensors)
}

// exportParts builds the metadata and tensor list of Export.
func exportParts(cfg *config.Config, w *model.Weights, tok *tokenizer.Tokenizer, opt ExportOptions) ([]KV, []Tensor, error) {
	if err := checkStructure(cfg); err != nil {
		return nil, nil, fmt.Errorf("gguf: export: %w", err)
	}
	arch, err := exportArch(cfg, opt.AllowInexact)
	if err != nil {
		return nil, nil, fmt.Errorf("gguf: export: %w", err)
	}
	qwen := arch == ArchQwen2MoE
	mix := opt.Mix
	if mix.Name == "" {
		if mix, err = PureMix(opt.Type); err != nil {
			return nil, nil, fmt.Errorf("gguf: export: %w", err)
		}
	}
	if len(w.Layers) != cfg.NumLayers {
		return nil, nil, fmt.Errorf("gguf: export: weights have %d layers, config %d", len(w.Layers), cfg.NumLayers)
	}
	if tok == nil {
		return nil, nil, errors.New("gguf: export: a tokenizer is required")
	}
	name := opt.Name
	if name == "" {
		name = "moe"
	}
	d, hd := cfg.HiddenSize, cfg.HeadDimension()
	nh, nkv := cfg.NumHeads, cfg.KVHeads()
	ff := cfg.IntermediateSize
	if cfg.IsMoE() {
		ff = cfg.ExpertSize()
	}
	cfgJSON, err := cfg.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("gguf: export: %w", err)
	}
	u32 := func(v int) uint32 { return uint32(v) }
	kvs := []KV{
		{"general.architecture", arch},
		{"general.name", name},
		{"general.file_type", mix.FileType},
		{"general.quantization_version", uint32(2)},
		{arch + ".vocab_size", u32(cfg.VocabSize)},
		{arch + ".context_length", u32(cfg.MaxPositionEmbeddings)},
		{arch + ".embedding_length", u32(d)},
		{arch + ".block_count", u32(cfg.NumLayers)},
		{arch + ".feed_forward_length", u32(ff)},
		{arch + ".attention.head_count", u32(nh)},
		{arch + ".attention.head_count_kv", u32(nkv)},
		{arch + ".attention.key_length", u32(hd)},
		{arch + ".attention.value_length", u32(hd)},
		{arch + ".rope.dimension_count", u32(hd)},
		{arch + ".rope.freq_base", float32(model.RopeBase(cfg))},
		{arch + ".attention.layer_norm_rms_epsilon", model.NormEps(cfg)},
	}
	kvs = append(kvs, ropeScalingKVs(arch, cfg)...)
	if cfg.IsMoE() {
		kvs = append(kvs, KV{arch + ".expert_count", u32(cfg.NumExperts)}, KV{arch + ".expert_used_count", u32(model.RoutedK(cfg))})
	}
	if qwen {
		kvs = append(kvs, KV{arch + ".expert_feed_forward_length", u32(cfg.ExpertSize())},
			KV{arch + ".expert_shared_feed_forward_length", uint32(shexpWidth)})
	}
	kvs = append(kvs, KV{KeyMoEConfig, string(cfgJSON)})
	kvs, err = appendTokenizerKVs(kvs, tok, cfg.VocabSize, opt.ChatTemplate)
	if err != nil {
		return nil, nil, err
	}

	var tensors []Tensor
	// add appends one tensor whose source is an HF (out, in) matrix (or a
	// vector when out == 0), stored as ggml dims [in, out(, n)].
	// lazy computes a source (a permuted or stacked copy) only when the
	// writer reaches the tensor, so that export holds one copy at a time.
	// The types are chosen once every tensor is listed (the mix rules
	// count attention-V tensors); keepF32 tensors stay F32.
	var sources []func() []float32
	var keep []bool
	lazy := func(name string, src func() []float32, keepF32 bool, dims ...uint64) {
		tensors = append(tensors, Tensor{Name: name, Dims: dims, Type: F32})
		sources = append(sources, src)
		keep = append(keep, keepF32)
	}
	add := func(name string, src []float32, keepF32 bool, dims ...uint64) {
		lazy(name, func() []float32 { return src }, keepF32, dims...)
	}
	mat := func(out, in int) []uint64 { return []uint64{uint64(in), uint64(out)} }
	V := cfg.VocabSize
	add("token_embd.weight", w.Embed, false, mat(V, d)...)
	for i := range w.Layers {
		l := &w.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		add(p+"attn_norm.weight", l.AttnNorm, true, uint64(d))
		if qwen { // NeoX RoPE, as moe's: no permutation
			add(p+"attn_q.weight", l.Wq, false, mat(nh*hd, d)...)
			add(p+"attn_k.weight", l.Wk, false, mat(nkv*hd, d)...)
		} else {
			lazy(p+"attn_q.weight", func() []float32 { return ropePermute(l.Wq, nh, hd, d, true) }, false, mat(nh*hd, d)...)
			lazy(p+"attn_k.weight", func() []float32 { return ropePermute(l.Wk, nkv, hd, d, true) }, false, mat(nkv*hd, d)...)
		}
		add(p+"attn_v.weight", l.Wv, false, mat(nkv*hd, d)...)
		add(p+"attn_output.weight", l.Wo, false, mat(d, nh*hd)...)
		add(p+"ffn_norm.weight", l.FFNNorm, true, uint64(d))
		if len(l.Router) == 0 {
			f := len(l.Gate) / d
			add(p+"ffn_gate.weight", l.Gate, false, mat(f, d)...)
			add(p+"ffn_up.weight", l.Up, false, mat(f, d)...)
			add(p+"ffn_down.weight", l.Down, false, mat(d, f)...)
			continue
		}
		E, fe := cfg.NumExperts, cfg.ExpertSize()
		add(p+"ffn_gate_inp.weight", l.Router, true, mat(E, d)...)
		lazy(p+"ffn_gate_exps.weight", func() []float32 { return concat(l.ExpertGate) }, false, uint64(d), uint64(fe), uint64(E))
		lazy(p+"ffn_up_exps.weight", func() []float32 { return concat(l.ExpertUp) }, false, uint64(d), uint64(fe), uint64(E))
		lazy(p+"ffn_down_exps.weight", func() []float32 { return concat(l.ExpertDown) }, false, uint64(fe), uint64(d), uint64(E))
		if qwen {
			// A shared expert that adds nothing: zero projections behind a
			// gate of ones (the gate input is a sum of activations, never
			// exactly zero in practice: llama.cpp computes sigmoid as silu(x)/x).
			ones := make([]float32, d)
			for j := range ones {
				ones[j] = 1
			}
			zeros := make([]float32, shexpWidth*d)
			add(p+"ffn_gate_inp_shexp.weight", ones, true, uint64(d))
			add(p+"ffn_gate_shexp.weight", zeros, false, mat(shexpWidth, d)...)
			add(p+"ffn_up_shexp.weight", zeros, false, mat(shexpWidth, d)...)
			add(p+"ffn_down_shexp.weight", zeros, false, mat(d, shexpWidth)...)
		}
		if s := len(l.SharedGate) / d; s > 0 {
			add(p+"ffn_gate_shexp.weight", l.SharedGate, false, mat(s, d)...)
			add(p+"ffn_up_shexp.weight", l.SharedUp, false, mat(s, d)...)
			add(p+"ffn_down_shexp.weight", l.SharedDown, false, mat(d, s)...)
		}
	}
	add("output_norm.weight", w.FinalNorm, true, uint64(d))
	if !cfg.TieWordEmbeddings || qwen { // qwen2moe requires output.weight
		add("output.weight", w.LMHead, false, mat(V, d)...)
	}
	mt := make([]MixTensor, len(tensors))
	for i, t := range tensors {
		mt[i] = MixTensor{Name: t.Name, Dims: t.Dims, Type: F32}
	}
	experts := 0
	if cfg.IsMoE() {
		experts = cfg.NumExperts
	}
	types, err := mix.TensorTypes(MixModel{Layers: cfg.NumLayers, Experts: experts, Heads: nh, KVHeads: nkv}, mt)
	if err != nil {
		return nil, nil, fmt.Errorf("gguf: export: %w", err)
	}
	for i := range tensors {
		t, src := types[i], sources[i]
		if keep[i] {
			t = F32
		}
		tensors[i].Type = t
		tensors[i].Data = func() ([]byte, error) { return Encode(t, src()) }
	}
	return kvs, tensors, nil
}

// concat returns the concatenation of parts (the stacked expert tensor).
func concat(parts [][]float32) []float32 {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]float32, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ropePermute reorders the rows of a q or k projection (nHeads·hd rows of
// cols) between Hugging Face's rotate_half RoPE layout, where row i of a
// head pairs with row i+hd/2, and llama.cpp's normal RoPE layout, where rows
// 2i and 2i+1 pair (convert_hf_to_gguf's permute). toGGUF selects the
// direction. A row is cols elements of T (floats, or a quantized row's
// bytes).
func ropePermute[T any](src []T, nHeads, hd, cols int, toGGUF bool) []T {
	dst := make([]T, len(src))
	half := hd / 2
	for h := 0; h < nHeads; h++ {
		for i := 0; i < half; i++ {
			for s := 0; s < 2; s++ {
				hf := (h*hd + s*half + i) * cols
				gg := (h*hd + 2*i + s) * cols
				if toGGUF {
					copy(dst[gg:gg+cols], src[hf:hf+cols])
				} else {
					copy(dst[hf:hf+cols], src[gg:gg+cols])
				}
			}
		}
	}
	return dst
}

// tokenizerKVs returns the tokenizer.ggml.* metadata for tok, padded with
// unused placeholder tokens to the model's vocabSize.
func tokenizerKVs(tok *tokenizer.Tokenizer, vocabSize int) ([]KV, error) {
	if spec := tok.Spec(); spec != nil {
		return SpecKVs(spec, vocabSize) // a vocabulary read from a model file goes back as read
	}
	if tok.VocabSize() > vocabSize {
		return nil, fmt.Errorf("tokenizer has %d ids but the model embeds only %d", tok.VocabSize(), vocabSize)
	}
	tokens := make([]string, vocabSize)
	types := make([]int32, vocabSize)
	for id := range tokens {
		b := tok.TokenBytes(int32(id))
		switch {
		case tok.IsSpecial(int32(id)):
			tokens[id], types[id] = string(b), tokenControl
		case b != nil:
			tokens[id], types[id] = BytesToToken(b), tokenNormal
		default:
			tokens[id], types[id] = fmt.Sprintf("<|moe_unused_%d|>", id), tokenUnused
		}
	}
	pairs := tok.Merges()
	merges := make([]string, len(pairs))
	for i, p := range pairs {
		merges[i] = BytesToToken(tok.TokenBytes(p[0])) + " " + BytesToToken(tok.TokenBytes(p[1]))
	}
	eot := uint32(tok.EOT())
	kvs := []KV{
		{"tokenizer.ggml.model", "gpt2"},
		{"tokenizer.ggml.pre", preTokenizer},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.merges", merges},
		{"tokenizer.ggml.bos_token_id", eot},
		{"tokenizer.ggml.eos_token_id", eot},
		{"tokenizer.ggml.add_bos_token", false},
		{"tokenizer.ggml.add_eos_token", false},
	}
	if end, ok := tok.Special(tokenizer.End); ok {
		kvs = append(kvs, KV{"tokenizer.ggml.eot_token_id", uint32(end)})
		if HasChatTokens(tok) {
			kvs = append(kvs, KV{"tokenizer.chat_template", ChatTemplate})
		}
	}
	return kvs, nil
}

// ReadModel reads a GGUF file of llama.cpp's "llama" architecture into a moe
// config, float32 weights (dequantized, RoPE rows restored to Hugging Face
// order) and tokenizer. The tokenizer is nil when the file has none.
func ReadModel(ctx context.Context, path string) (*config.Config, *model.Weights, *tokenizer.Tokenizer, error) {
	f, err := Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	cfg, w, err := readWeights(ctx, f)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	tok, err := readTokenizer(f)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if tok != nil && tok.VocabSize() > cfg.VocabSize {
		return nil, nil, nil, fmt.Errorf("%s: tokenizer has %d ids but the model embeds only %d", path, tok.VocabSize(), cfg.VocabSize)
	}
	return cfg, w, tok, nil
}

// LoadModel reads a GGUF model for inference (see ReadModel); a file
// without a usable tokenizer is an error.
func LoadModel(path string) (*config.Config, *model.Weights, *tokenizer.Tokenizer, error) {
	cfg, w, tok, err := ReadModel(context.Background(), path)
	if err != nil {
		return nil, nil, nil, err
	}
	if tok == nil {
		return nil, nil, nil, fmt.Errorf("gguf: %s has no tokenizer (tokenizer.ggml.tokens)", path)
	}
	return cfg, w, tok, nil
}

// readWeights builds the config (from moe.config, else the llama.* keys)
// and decodes every tensor to float32, failing on any tensor it does not
// use.
func readWeights(ctx context.Context, f *File) (*config.Config, *model.Weights, error) {
	mm, err := mapModel(f)
	if err != nil {
		return nil, nil, err
	}
	w, err := Float32Weights(ctx, mm)
	if err != nil {
		return nil, nil, err
	}
	return mm.Cfg, w, nil
}

// Float32Weights decodes the matrices of mm (a GGUF file's, or a Hugging
// Face directory's mapped by the safetensors package) into the training
// model's float32 weights; a config the training model cannot hold is an
// error naming what it lacks.
func Float32Weights(ctx context.Context, mm *Mapped) (*model.Weights, error) {
	cfg := mm.Cfg
	if err := model.Supported(cfg); err != nil {
		return nil, fmt.Errorf("gguf: the %s model runs for inference only, not as moe weights: %w", cfg.ModelType, err)
	}
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	dec := func(dst []float32, x Matrix) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := Decode(GGMLType(x.Type), x.Data, dst); err != nil {
			return fmt.Errorf("gguf: tensor %q: %w", x.Name, err)
		}
		return nil
	}
	// ffn decodes one feed-forward, and copies its biases where the
	// layout has them (gpt-oss).
	ffn := func(gate, up, down []float32, x ExpertMatrices, gateB, upB, downB []float32) error {
		copy(gateB, x.GateBias)
		copy(upB, x.UpBias)
		copy(downB, x.DownBias)
		return errors.Join(dec(gate, x.Gate), dec(up, x.Up), dec(down, x.Down))
	}
	at := func(bs [][]float32, e int) []float32 {
		if bs == nil {
			return nil
		}
		return bs[e]
	}
	errs := []error{dec(w.Embed, mm.Embed)}
	copy(w.FinalNorm, mm.FinalNorm)
	if !cfg.TieWordEmbeddings {
		errs = append(errs, dec(w.LMHead, mm.Output))
	}
	for i := range w.Layers {
		l, x := &w.Layers[i], &mm.Layers[i]
		copy(l.AttnNorm, x.AttnNorm)
		copy(l.FFNNorm, x.FFNNorm)
		copy(l.QNorm, x.QNorm)
		copy(l.KNorm, x.KNorm)
		if l.QKVBias != nil { // [q; k; v], as model lays it out
			qd, kd := len(x.QBias), len(x.KBias)
			copy(l.QKVBias, x.QBias)
			copy(l.QKVBias[qd:], x.KBias)
			copy(l.QKVBias[qd+kd:], x.VBias)
		}
		copy(l.OBias, x.OBias)
		copy(l.Sinks, x.Sinks)
		errs = append(errs, dec(l.Wq, x.Q), dec(l.Wk, x.K), dec(l.Wv, x.V), dec(l.Wo, x.O))
		if !cfg.LayerIsMoE(i) {
			errs = append(errs, ffn(l.Gate, l.Up, l.Down, x.FFN, l.GateBias, l.UpBias, l.DownBias))
			continue
		}
		errs = append(errs, dec(l.Router, x.Router))
		copy(l.RouterBias, x.RouterBias)
		for e := range x.Experts {
			errs = append(errs, ffn(l.ExpertGate[e], l.ExpertUp[e], l.ExpertDown[e], x.Experts[e],
				at(l.ExpertGateBias, e), at(l.ExpertUpBias, e), at(l.ExpertDownBias, e)))
		}
		if len(l.SharedGate) > 0 {
			errs = append(errs, ffn(l.SharedGate, l.SharedUp, l.SharedDown, x.Shared, l.SharedGateBias, l.SharedUpBias, l.SharedDownBias))
		}
		copy(l.SharedGateInp, x.SharedGateInp)
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return w, nil
}

// configFromFile returns the config stored under moe.config, or one built
// from the llama.* keys for files other tools wrote.
func configFromFile(f *File) (*config.Config, error) {
	if v, ok := f.Get(KeyMoEConfig); ok {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("gguf: %s is %T, want a string", KeyMoEConfig, v)
		}
		cfg, err := config.Parse([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("gguf: %s: %w", KeyMoEConfig, err)
		}
		return cfg, nil
	}
	k := newKeyReader(f, Architecture)
	var rs *config.RopeScaling
	if v, ok := f.Get("llama.rope.scaling.type"); ok && v != "none" && v != "" {
		if v != config.RopeLinear && v != config.RopeYaRN {
			return nil, fmt.Errorf("gguf: RoPE scaling %v is not supported (linear and yarn are)", v)
		}
		rs = &config.RopeScaling{Type: v.(string), Factor: k.float("rope.scaling.factor", 0),
			OriginalMaxPositionEmbeddings: k.int("rope.scaling.original_context_length", 0),
			BetaFast:                      k.float("rope.scaling.yarn_beta_fast", 0), BetaSlow: k.float("rope.scaling.yarn_beta_slow", 0)}
	}
	cfg := &config.Config{
		ModelType:             config.TypeLlama,
		HiddenSize:            k.int("embedding_length", -1),
		IntermediateSize:      k.int("feed_forward_length", -1),
		NumLayers:             k.int("block_count", -1),
		NumHeads:              k.int("attention.head_count", -1),
		MaxPositionEmbeddings: k.int("context_length", 2048),
		RopeTheta:             k.float("rope.freq_base", 10000),
		RMSNormEps:            k.float("attention.layer_norm_rms_epsilon", 1e-5),
		NumExperts:            k.int("expert_count", 0),
		ExpertsPerToken:       k.int("expert_used_count", 0),
		HiddenAct:             "silu",
		RopeScaling:           rs,
	}
	if err := readHeads(k, cfg); err != nil {
		return nil, err
	}
	if cfg.NumExperts > 0 {
		cfg.ModelType = config.TypeMixtral
		cfg.RouterOrder = config.RouterTopKSoftmax
		cfg.Routing = config.RoutingTokenChoice
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Dims) != 2 {
		return nil, errors.New("gguf: missing 2-D tensor token_embd.weight")
	}
	cfg.VocabSize = int(emb.Dims[1])
	_, hasOut := f.Tensor("output.weight")
	cfg.TieWordEmbeddings = !hasOut
	if k.err != nil {
		return nil, k.err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gguf: model metadata: %w", err)
	}
	return cfg, nil
}

// AsInt converts an integer metadata value (any width, signed or not) to
// int; false for another type or a value outside the int32 range.
func AsInt(v any) (int, bool) { return asInt(v) }

// asInt converts any integer metadata value to int.
func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case uint8:
		return int(x), true
	case int8:
		return int(x), true
	case uint16:
		return int(x), true
	case int16:
		return int(x), true
	case uint32:
		return int(x), true
	case int32:
		return int(x), true
	case uint64:
		if x > math.MaxInt32 {
			return 0, false
		}
		return int(x), true
	case int64:
		if x > math.MaxInt32 || x < math.MinInt32 {
			return 0, false
		}
		return int(x), true
	}
	return 0, false
}

// appendTokenizerKVs appends tok's tokenizer keys (tokenizerKVs) to kvs,
// with chatTemplate, when not empty, replacing the tokenizer's own
// tokenizer.chat_template.
func appendTokenizerKVs(kvs []KV, tok *tokenizer.Tokenizer, vocab int, chatTemplate string) ([]KV, error) {
	tkv, err := tokenizerKVs(tok, vocab)
	if err != nil {
		return nil, fmt.Errorf("gguf: export: %w", err)
	}
	kvs = append(kvs, tkv...)
	if chatTemplate != "" {
		kvs = slices.DeleteFunc(kvs, func(kv KV) bool { return kv.Key == "tokenizer.chat_template" })
		kvs = append(kvs, KV{"tokenizer.chat_template", chatTemplate})
	}
	return kvs, nil
}
