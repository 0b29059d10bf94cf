package gguf

import (
	"context"
	"errors"
	"fmt"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
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
	kvs := []KV{
		{arch + ".context_length", u32(cfg.MaxPositionEmbeddings)},
		{arch + ".embedding_length", u32(cfg.HiddenSize)},
		{arch + ".block_count", u32(cfg.NumLayers)},
		{arch + ".feed_forward_length", u32(cfg.IntermediateSize)},
		{arch + ".attention.head_count", u32(cfg.NumHeads)},
		{arch + ".attention.head_count_kv", u32(cfg.KVHeads())},
		{arch + ".rope.dimension_count", u32(hd)},
		{arch + ".rope.freq_base", float32(cfg.RopeTheta)},
		{arch + ".attention.layer_norm_rms_epsilon", float32(cfg.RMSNormEps)},
	}
	if cfg.HeadDim != 0 { // as the converter: only for a config's own head_dim
		kvs = append(kvs, KV{arch + ".attention.key_length", u32(hd)}, KV{arch + ".attention.value_length", u32(hd)})
	}
	if cfg.RopeScaling != nil {
		return nil, fmt.Errorf("gguf: export: %s: RoPE scaling %q is not written for this family", arch, cfg.RopeScaling.Type)
	}
	if cfg.IsMoE() {
		kvs = append(kvs, KV{arch + ".expert_count", u32(cfg.NumExperts)}, KV{arch + ".expert_used_count", u32(cfg.ExpertsPerToken)})
	}
	if fam == nil {
		return kvs, nil
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
	bad(fam.mla || fam.gptOSS, "multi-head latent attention or gpt-oss's attention (not yet written from a Hugging Face directory)")
	bad(cfg.QKNorm != fam.qkNorm || cfg.QKNorm && cfg.QKNormPerHead != fam.qkNormPerHead, "q/k norms of another kind")
	bad(cfg.QKVBias && !fam.qkvBias, "q/k/v biases")
	bad(cfg.SharedExpertGate != fam.sharedGate, "a shared expert gated otherwise")
	bad(cfg.NormTopKProb != fam.normTopK && cfg.ExpertsPerToken > 1 && fam.order == config.RouterSoftmaxTopK, "top-k weights normalised otherwise")
	bad(!fam.scales && (cfg.EmbeddingMultiplier != 0 || cfg.ResidualMultiplier != 0 || cfg.AttentionMultiplier != 0 || cfg.LogitsScaling != 0), "Granite's scales")
	for i := 0; i < cfg.NumLayers; i++ {
		bad(!cfg.LayerIsMoE(i), fmt.Sprintf("dense layer %d", i))
	}
	return err
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

// mappedParts builds the metadata and tensor list of ExportMapped.
func mappedParts(m *Mapped, opt ExportOptions) ([]KV, []Tensor, error) {
	cfg := m.Cfg
	arch, fam, err := mappedArch(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := checkMappedFamily(arch, fam, cfg); err != nil {
		return nil, nil, err
	}
	if m.Tok == nil || m.Tok.Spec() == nil {
		return nil, nil, errors.New("gguf: export: the model's tokenizer has no vocabulary to write")
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
	akv, err := familyKVs(arch, fam, cfg)
	if err != nil {
		return nil, nil, err
	}
	kvs = append(kvs, akv...)
	tkv, err := SpecKVs(m.Tok.Spec(), cfg.VocabSize)
	if err != nil {
		return nil, nil, fmt.Errorf("gguf: export: %w", err)
	}
	kvs = append(kvs, tkv...)
	if opt.ChatTemplate != "" {
		kvs = append(kvs, KV{"tokenizer.chat_template", opt.ChatTemplate})
	}

	var ts []exportTensor
	vec := func(name string, v []float32, dims ...uint64) {
		if len(dims) == 0 {
			dims = []uint64{uint64(len(v))}
		}
		ts = append(ts, exportTensor{Tensor{Name: name, Dims: dims, Type: F32, Data: func() ([]byte, error) { return Encode(F32, v) }}, true})
	}
	// mats writes matrices of one type stacked (an expert tensor when
	// there are several), with rows permuted by perm when it is set.
	mats := func(name string, keep bool, perm func([]byte, int) []byte, ms ...Matrix) error {
		first := ms[0]
		var size int
		for _, x := range ms {
			if x.Type != first.Type || x.Rows != first.Rows || x.Cols != first.Cols {
				return fmt.Errorf("gguf: export: %s: the stacked matrices differ in type or shape (%s %d×%d, %s %d×%d)", name, first.Name, first.Rows, first.Cols, x.Name, x.Rows, x.Cols)
			}
			size += len(x.Data)
		}
		dims := []uint64{uint64(first.Cols), uint64(first.Rows)}
		if len(ms) > 1 {
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
		errs = append(errs, mats(p+"attn_q.weight", false, permQ, L.Q), mats(p+"attn_k.weight", false, permK, L.K),
			mats(p+"attn_v.weight", false, nil, L.V), mats(p+"attn_output.weight", false, nil, L.O))
		if L.QNorm != nil {
			vec(p+"attn_q_norm.weight", L.QNorm)
			vec(p+"attn_k_norm.weight", L.KNorm)
		}
		if L.QBias != nil {
			vec(p+"attn_q.bias", L.QBias)
			vec(p+"attn_k.bias", L.KBias)
			vec(p+"attn_v.bias", L.VBias)
		}
		vec(p+"ffn_norm.weight", L.FFNNorm)
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
// F32, as their source); a tensor whose type changes is decoded to float32
// and encoded again when the writer reaches it.
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
