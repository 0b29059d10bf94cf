package safetensors

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/tokenizer"
)

// hfLayout is how one Hugging Face model type names the feed-forward
// tensors of a MoE layer (relative to "model.layers.N."), as llama.cpp's
// converter reads them. Attention, norms and embeddings are named alike in
// every family (see OpenMapped).
type hfLayout struct {
	// router is the router's weight (experts × hidden).
	router string
	// expert is the prefix of expert e's own tensors gate, up and down (a
	// format taking e); "" when the experts are always stacked in gateUp
	// and downs: [E, 2·width, hidden] (gate rows, then up rows) and [E,
	// hidden, width], each with or without a ".weight" suffix. A layout
	// with both reads the stacked form when the directory has it (newer
	// transformers save Qwen's experts fused).
	expert, gate, up, down string
	gateUp, downs          string
	// shared is the prefix of the shared expert's gate_proj, up_proj and
	// down_proj; sharedGateUp and sharedDown its stacked form (as gateUp
	// and downs without the expert axis); sharedGate its sigmoid gate
	// [1, hidden].
	shared, sharedGateUp, sharedDown, sharedGate string
}

var (
	// mixtralLayout is Mixtral's block_sparse_moe (w1 gate, w3 up, w2 down).
	mixtralLayout = hfLayout{router: "block_sparse_moe.gate.weight", expert: "block_sparse_moe.experts.%d.",
		gate: "w1.weight", up: "w3.weight", down: "w2.weight"}
	// qwenLayout is the mlp.experts layout of qwen3_moe (and olmoe, which
	// has no fused form).
	qwenLayout = hfLayout{router: "mlp.gate.weight", expert: "mlp.experts.%d.",
		gate: "gate_proj.weight", up: "up_proj.weight", down: "down_proj.weight",
		gateUp: "mlp.experts.gate_up_proj", downs: "mlp.experts.down_proj"}
	olmoeLayout = hfLayout{router: qwenLayout.router, expert: qwenLayout.expert,
		gate: qwenLayout.gate, up: qwenLayout.up, down: qwenLayout.down}
	// hfLayouts are the model types OpenMapped reads.
	hfLayouts = map[string]hfLayout{
		config.TypeLlama:    mixtralLayout,
		config.TypeMistral:  mixtralLayout,
		config.TypeMixtral:  mixtralLayout,
		config.TypeQwen3MoE: qwenLayout,
		config.TypeOLMoE:    olmoeLayout,
		config.TypeQwen2MoE: {router: qwenLayout.router, expert: qwenLayout.expert, gate: qwenLayout.gate, up: qwenLayout.up,
			down: qwenLayout.down, gateUp: qwenLayout.gateUp, downs: qwenLayout.downs,
			shared: "mlp.shared_expert.", sharedGate: "mlp.shared_expert_gate.weight"},
		config.TypeGraniteMoE: {router: "block_sparse_moe.router.layer.weight", gateUp: "block_sparse_moe.input_linear.weight",
			downs: "block_sparse_moe.output_linear.weight", sharedGateUp: "shared_mlp.input_linear.weight", sharedDown: "shared_mlp.output_linear.weight"},
	}
)

// qtypes are the safetensors dtypes OpenMapped uses in place.
var qtypes = map[string]compute.QType{F32: compute.QF32, F16: compute.QF16, BF16: compute.QBF16}

// IsHFDir reports whether dir looks like a Hugging Face model directory:
// a config.json beside safetensors weights.
func IsHFDir(dir string) bool {
	if st, err := os.Stat(filepath.Join(dir, "config.json")); err != nil || st.IsDir() {
		return false
	}
	if _, err := os.Stat(filepath.Join(dir, IndexName)); err == nil {
		return true
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	return len(m) > 0
}

// OpenMapped opens the Hugging Face model directory dir for inference:
// config.json, the safetensors weights mapped read-only and used in place
// in their stored type (F32, F16 or BF16: no float32 copy), tokenizer.json
// with tokenizer_config.json. The tensors are named as llama.cpp's
// converter reads them for the model types llama, mistral, mixtral,
// qwen2_moe, qwen3_moe, olmoe and granitemoe; every tensor's shape is
// checked against the config and every tensor must have a place. Hugging
// Face stores q and k rows in the rotate-half RoPE order moe computes
// with, so none are permuted (llama.cpp's converter permutes them for
// llama and granite). Close the result to release the mappings.
func OpenMapped(dir string) (*gguf.Mapped, error) {
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err // names config.json
	}
	m, err := openMapped(dir, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}

// openMapped is OpenMapped after config.json is read.
func openMapped(dir string, cfg *config.Config) (*gguf.Mapped, error) {
	lay, ok := hfLayouts[cfg.ModelType]
	if !ok {
		names := make([]string, 0, len(hfLayouts))
		for t := range hfLayouts {
			names = append(names, t)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("model_type %q cannot be run from a Hugging Face directory (moe maps %s; gpt_oss and deepseek_v2/v3 through ReadGPTOSS and ReadDeepseek)", cfg.ModelType, strings.Join(names, ", "))
	}
	if err := checkFeatures(cfg, true); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.ModelType, err)
	}
	tok, err := LoadHFVocab(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("tokenizer has %d ids but config.json's vocab_size is %d", tok.VocabSize(), cfg.VocabSize)
	}
	return mapTensors(dir, cfg, tok, lay)
}

// mapTensors maps dir's tensors in lay's naming into a model of cfg with
// tokenizer tok (nil: none).
func mapTensors(dir string, cfg *config.Config, tok *tokenizer.Tokenizer, lay hfLayout) (*gguf.Mapped, error) {
	set, err := OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close() // the mappings outlive the descriptors
	mp := &hfMapper{set: set, maps: map[*File][]byte{}, regions: map[*File]int{}, used: map[string]bool{}}
	m := gguf.NewMapped(cfg, tok, mp)
	if err := mp.fill(m, lay); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// hfMapper maps a Set's files and hands out views of its tensors.
type hfMapper struct {
	set     *Set
	maps    map[*File][]byte
	regions map[*File]int
	closers []io.Closer
	used    map[string]bool
}

// Close releases every mapping.
func (h *hfMapper) Close() error {
	var errs []error
	for _, c := range h.closers {
		errs = append(errs, c.Close())
	}
	h.closers, h.maps = nil, nil
	return errors.Join(errs...)
}

// tensor returns the bytes and dtype of tensor name, which must have
// shape, and the region of the file it lies in.
func (h *hfMapper) tensor(name string, shape ...int64) ([]byte, compute.QType, int, error) {
	info, ok := h.set.Info(name)
	if !ok {
		return nil, 0, 0, fmt.Errorf("missing tensor %q", name)
	}
	if !slices.Equal(info.Shape, shape) {
		return nil, 0, 0, fmt.Errorf("tensor %q has shape %v, config.json needs %v", name, info.Shape, shape)
	}
	t, ok := qtypes[info.DType]
	if !ok {
		return nil, 0, 0, fmt.Errorf("tensor %q has dtype %s; moe reads F32, F16 and BF16", name, info.DType)
	}
	f := h.set.where[name]
	data, ok := h.maps[f]
	if !ok {
		var c io.Closer
		var err error
		if data, c, err = gguf.MapFile(f.Path); err != nil {
			return nil, 0, 0, err
		}
		h.closers = append(h.closers, c)
		h.maps[f], h.regions[f] = data, len(h.closers)
	}
	if info.End > int64(len(data)) {
		return nil, 0, 0, fmt.Errorf("tensor %q lies past the end of %s (file changed?)", name, f.Path)
	}
	h.used[name] = true
	return data[info.Begin:info.End:info.End], t, h.regions[f], nil
}

// has reports whether the directory has tensor name.
func (h *hfMapper) has(name string) bool {
	_, ok := h.set.Info(name)
	return ok
}

// resolve returns name, or name.weight when only that exists.
func (h *hfMapper) resolve(name string) string {
	if !h.has(name) && h.has(name+".weight") {
		return name + ".weight"
	}
	return name
}

// parts reads tensor name of shape [n, sum(rows), cols] (without the n
// axis when n is 0) as, for each of the n (or 1) slices, one matrix per
// entry of rows, stacked in that order.
func (h *hfMapper) parts(name string, n, cols int, rows ...int) ([][]gguf.Matrix, error) {
	total := 0
	for _, r := range rows {
		total += r
	}
	shape := []int64{int64(total), int64(cols)}
	if n > 0 {
		shape = append([]int64{int64(n)}, shape...)
	}
	data, t, region, err := h.tensor(name, shape...)
	if err != nil {
		return nil, err
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	out := make([][]gguf.Matrix, max(n, 1))
	off := 0
	for e := range out {
		for _, r := range rows {
			label := name
			if n > 0 {
				label = fmt.Sprintf("%s[%d]", name, e)
			}
			m, err := gguf.ViewMatrix(label, t, r, cols, data[off:off+r*rb], region)
			if err != nil {
				return nil, err
			}
			out[e] = append(out[e], m)
			off += r * rb
		}
	}
	return out, nil
}

// mat reads the rows×cols matrix name.
func (h *hfMapper) mat(name string, rows, cols int) (gguf.Matrix, error) {
	ms, err := h.parts(name, 0, cols, rows)
	if err != nil {
		return gguf.Matrix{}, err
	}
	return ms[0][0], nil
}

// vec decodes the small tensor name of shape to float32.
func (h *hfMapper) vec(name string, shape ...int64) ([]float32, error) {
	data, t, _, err := h.tensor(name, shape...)
	if err != nil {
		return nil, err
	}
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	out := make([]float32, n)
	if err := compute.Dequantize(t, data, out); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return out, nil
}

// ffn reads a dense feed-forward or an expert from prefix's gate, up and
// down tensors.
func (h *hfMapper) ffn(prefix, gate, up, down string, width, d int) (gguf.ExpertMatrices, error) {
	var x gguf.ExpertMatrices
	var errs [3]error
	x.Gate, errs[0] = h.mat(prefix+gate, width, d)
	x.Up, errs[1] = h.mat(prefix+up, width, d)
	x.Down, errs[2] = h.mat(prefix+down, d, width)
	return x, firstErr(errs[:]...)
}

// stacked reads n experts (n 0: one, without the expert axis) from a
// gate-and-up tensor and a down tensor.
func (h *hfMapper) stacked(gateUp, down string, n, width, d int) ([]gguf.ExpertMatrices, error) {
	gu, err := h.parts(gateUp, n, d, width, width)
	if err != nil {
		return nil, err
	}
	dn, err := h.parts(down, n, width, d)
	if err != nil {
		return nil, err
	}
	out := make([]gguf.ExpertMatrices, len(gu))
	for e := range out {
		out[e] = gguf.ExpertMatrices{Gate: gu[e][0], Up: gu[e][1], Down: dn[e][0]}
	}
	return out, nil
}

// fill reads every tensor of m's config into m and fails on any tensor of
// the directory that has no place.
func (h *hfMapper) fill(m *gguf.Mapped, lay hfLayout) error {
	cfg := m.Cfg
	d, hd, V := cfg.HiddenSize, cfg.HeadDimension(), cfg.VocabSize
	qDim, kvDim := cfg.NumHeads*hd, cfg.KVHeads()*hd
	var err error
	if m.Embed, err = h.mat("model.embed_tokens.weight", V, d); err != nil {
		return err
	}
	for i := range m.Layers {
		L := &m.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		a := p + "self_attn."
		var errs [12]error
		L.AttnNorm, errs[0] = h.vec(p+"input_layernorm.weight", int64(d))
		L.FFNNorm, errs[1] = h.vec(p+"post_attention_layernorm.weight", int64(d))
		L.Q, errs[2] = h.mat(a+"q_proj.weight", qDim, d)
		L.K, errs[3] = h.mat(a+"k_proj.weight", kvDim, d)
		L.V, errs[4] = h.mat(a+"v_proj.weight", kvDim, d)
		L.O, errs[5] = h.mat(a+"o_proj.weight", d, qDim)
		if cfg.QKNorm {
			qn, kn := qDim, kvDim
			if cfg.QKNormPerHead {
				qn, kn = hd, hd
			}
			L.QNorm, errs[6] = h.vec(a+"q_norm.weight", int64(qn))
			L.KNorm, errs[7] = h.vec(a+"k_norm.weight", int64(kn))
		}
		if cfg.QKVBias {
			L.QBias, errs[8] = h.vec(a+"q_proj.bias", int64(qDim))
			L.KBias, errs[9] = h.vec(a+"k_proj.bias", int64(kvDim))
			L.VBias, errs[10] = h.vec(a+"v_proj.bias", int64(kvDim))
		}
		if err := firstErr(errs[:]...); err != nil {
			return err
		}
		if err := h.fillFFN(L, cfg, lay, i); err != nil {
			return err
		}
	}
	if m.FinalNorm, err = h.vec("model.norm.weight", int64(d)); err != nil {
		return err
	}
	m.Output = m.Embed
	if !cfg.TieWordEmbeddings {
		if m.Output, err = h.mat("lm_head.weight", V, d); err != nil {
			return err
		}
	}
	for _, n := range h.set.Names() {
		if h.used[n] || strings.HasSuffix(n, "rotary_emb.inv_freq") || n == "lm_head.weight" && cfg.TieWordEmbeddings {
			continue
		}
		return fmt.Errorf("tensor %q has no place in the %s model (unsupported feature)", n, cfg.ModelType)
	}
	return nil
}

// fillFFN reads layer i's feed-forward part: dense, or router, routed
// experts and shared expert in lay's naming.
func (h *hfMapper) fillFFN(L *gguf.LayerMatrices, cfg *config.Config, lay hfLayout, i int) error {
	d, p := cfg.HiddenSize, fmt.Sprintf("model.layers.%d.", i)
	var err error
	if !cfg.LayerIsMoE(i) {
		L.FFN, err = h.ffn(p+"mlp.", "gate_proj.weight", "up_proj.weight", "down_proj.weight", cfg.IntermediateSize, d)
		return err
	}
	E, fe := cfg.NumExperts, cfg.ExpertSize()
	if L.Router, err = h.mat(p+lay.router, E, d); err != nil {
		return err
	}
	if gu := h.resolve(p + lay.gateUp); lay.expert == "" || lay.gateUp != "" && h.has(gu) {
		if L.Experts, err = h.stacked(gu, h.resolve(p+lay.downs), E, fe, d); err != nil {
			return err
		}
	} else {
		L.Experts = make([]gguf.ExpertMatrices, E)
		for e := range L.Experts {
			if L.Experts[e], err = h.ffn(p+fmt.Sprintf(lay.expert, e), lay.gate, lay.up, lay.down, fe, d); err != nil {
				return err
			}
		}
	}
	s := cfg.SharedExpertIntermediateSize
	switch {
	case s == 0:
	case lay.shared != "":
		L.Shared, err = h.ffn(p+lay.shared, "gate_proj.weight", "up_proj.weight", "down_proj.weight", s, d)
	case lay.sharedGateUp != "":
		var x []gguf.ExpertMatrices
		if x, err = h.stacked(p+lay.sharedGateUp, p+lay.sharedDown, 0, s, d); err == nil {
			L.Shared = x[0]
		}
	default:
		err = fmt.Errorf("%s has no shared expert, but shared_expert_intermediate_size is %d", cfg.ModelType, s)
	}
	if err != nil {
		return err
	}
	if cfg.SharedExpertGate {
		if lay.sharedGate == "" || s == 0 {
			return fmt.Errorf("%s has no gated shared expert", cfg.ModelType)
		}
		L.SharedGateInp, err = h.vec(p+lay.sharedGate, 1, int64(d))
	}
	return err
}

// firstErr returns the first non-nil error: one line, naming one tensor.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
