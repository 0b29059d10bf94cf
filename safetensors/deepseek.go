package safetensors

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
)

// IsDeepseekDir reports whether dir is a Hugging Face deepseek_v2 or
// deepseek_v3 checkpoint: a config.json of that model_type beside
// safetensors files.
func IsDeepseekDir(dir string) bool {
	return isHFDirOf(dir, (*config.Config).MLA)
}

// ReadDeepseek reads a Hugging Face deepseek_v2/deepseek_v3 directory
// (config.json, safetensors, tokenizer.json) for inference, in the layout
// llama.cpp's deepseek2 files have (gguf.MLAMatrices): every matrix as a
// float32 copy, kv_b_proj split per head into the transposed key rows
// (attn_k_b) and the value rows (attn_v_b), the routed experts, shared
// experts (mlp.shared_experts) and dense layers' MLPs, and V3's
// e_score_correction_bias. The rotated query and key rows stay in the
// checkpoint's order, which is llama.cpp's (pairs 2i, 2i+1). Every tensor
// must be used; multi-token-prediction layers beyond num_hidden_layers are
// refused.
func ReadDeepseek(ctx context.Context, dir string) (*gguf.Mapped, error) {
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	if !cfg.MLA() || !cfg.IsMoE() {
		return nil, fmt.Errorf("import %s: model_type %q is not a DeepSeek MoE with latent attention", dir, cfg.ModelType)
	}
	set, err := OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	r := &hfReader{set: set, used: map[string]bool{}}
	d, nh := cfg.HiddenSize, cfg.NumHeads
	nope, rope, rank, vd := cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.KVLoraRank, cfg.VHeadDim
	m := &gguf.Mapped{Cfg: cfg, Layers: make([]gguf.LayerMatrices, cfg.NumLayers)}
	ffn := func(p string, width int) gguf.ExpertMatrices {
		return gguf.ExpertMatrices{Gate: r.matrix(p+"gate_proj.weight", width, d),
			Up: r.matrix(p+"up_proj.weight", width, d), Down: r.matrix(p+"down_proj.weight", d, width)}
	}
	err = readHF(ctx, r, m, func(l int, L *gguf.LayerMatrices, p string) {
		a := &gguf.MLAMatrices{}
		if q := cfg.QLoraRank; q > 0 {
			a.QA = r.matrix(p+"self_attn.q_a_proj.weight", q, d)
			a.QANorm = r.vec(p+"self_attn.q_a_layernorm.weight", q)
			a.QB = r.matrix(p+"self_attn.q_b_proj.weight", nh*(nope+rope), q)
		} else {
			a.Q = r.matrix(p+"self_attn.q_proj.weight", nh*(nope+rope), d)
		}
		a.KVA = r.matrix(p+"self_attn.kv_a_proj_with_mqa.weight", rank+rope, d)
		a.KVANorm = r.vec(p+"self_attn.kv_a_layernorm.weight", rank)
		a.KB, a.VB = r.kvB(p+"self_attn.kv_b_proj.weight", nh, nope, vd, rank)
		L.MLA = a
		L.O = r.matrix(p+"self_attn.o_proj.weight", d, nh*vd)
		if !cfg.LayerIsMoE(l) {
			L.FFN = ffn(p+"mlp.", cfg.IntermediateSize)
			return
		}
		E := cfg.NumExperts
		L.Router = r.matrix(p+"mlp.gate.weight", E, d)
		if cfg.HasRouterScoreBias() {
			L.ScoreBias = r.vec(p+"mlp.gate.e_score_correction_bias", E)
		}
		L.Experts = make([]gguf.ExpertMatrices, E)
		for e := range L.Experts {
			L.Experts[e] = ffn(fmt.Sprintf("%smlp.experts.%d.", p, e), cfg.ExpertSize())
		}
		if s := cfg.SharedExpertIntermediateSize; s > 0 {
			L.Shared = ffn(p+"mlp.shared_experts.", s)
		}
	})
	if r.err != nil {
		return nil, fmt.Errorf("import %s: %w", dir, r.err)
	}
	if err != nil {
		return nil, err
	}
	if err := finishImport(dir, set, r.used, m, "model (unsupported feature, e.g. multi-token prediction)"); err != nil {
		return nil, err
	}
	return m, nil
}

// readHF reads the embedding, the output matrix (the embedding again when
// tied) and the final norm of a Hugging Face checkpoint into m, then layer
// by layer the two norms, calling layer for the rest of layer l (its
// tensors' prefix p, "model.layers.l."). It stops at the first error of ctx
// or r.
func readHF(ctx context.Context, r tensorReader, m *gguf.Mapped, layer func(l int, L *gguf.LayerMatrices, p string)) error {
	d, V := m.Cfg.HiddenSize, m.Cfg.VocabSize
	m.Embed = r.matrix("model.embed_tokens.weight", V, d)
	m.Output = m.Embed
	if !m.Cfg.TieWordEmbeddings {
		m.Output = r.matrix("lm_head.weight", V, d)
	}
	m.FinalNorm = r.vec("model.norm.weight", d)
	for l := range m.Layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		L := &m.Layers[l]
		p := fmt.Sprintf("model.layers.%d.", l)
		L.AttnNorm = r.vec(p+"input_layernorm.weight", d)
		L.FFNNorm = r.vec(p+"post_attention_layernorm.weight", d)
		layer(l, L, p)
		if err := r.failed(); err != nil {
			return err
		}
	}
	return r.failed()
}

// tensorReader is what readHF needs of a checkpoint reader.
type tensorReader interface {
	matrix(name string, rows, cols int) gguf.Matrix
	vec(name string, n int) []float32
	failed() error // the first error kept
}

// finishImport fails on any tensor of set that used does not hold (it has
// no place in the what being read), then attaches dir's tokenizer to m,
// refusing one with more ids than the model embeds.
func finishImport(dir string, set *Set, used map[string]bool, m *gguf.Mapped, what string) error {
	for _, n := range set.Names() {
		if !used[n] {
			return fmt.Errorf("import %s: tensor %q has no place in the %s", dir, n, what)
		}
	}
	tok, err := OpenTokenizer(dir)
	if err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	if tok.VocabSize() > m.Cfg.VocabSize {
		return fmt.Errorf("import %s: tokenizer has %d ids but the model embeds only %d", dir, tok.VocabSize(), m.Cfg.VocabSize)
	}
	m.Tok = tok
	return nil
}

// hfReader reads a checkpoint's tensors as float32, keeping the first
// error (a missing tensor or a wrong shape, named) and which tensors were
// read.
type hfReader struct {
	set  *Set
	used map[string]bool
	err  error
}

// failed returns the first error kept.
func (r *hfReader) failed() error { return r.err }

// floats returns tensor name of the given shape as float32.
func (r *hfReader) floats(name string, shape ...int64) []float32 {
	if r.err != nil {
		return nil
	}
	t, ok := r.set.Info(name)
	if !ok {
		r.err = fmt.Errorf("missing tensor %q", name)
		return nil
	}
	if !slices.Equal(t.Shape, shape) {
		r.err = fmt.Errorf("tensor %q has shape %v, the config needs %v", name, t.Shape, shape)
		return nil
	}
	r.used[name] = true
	v, err := r.set.Float32(name)
	if err != nil {
		r.err = err
	}
	return v
}

// vec returns a 1-D tensor of n values.
func (r *hfReader) vec(name string, n int) []float32 { return r.floats(name, int64(n)) }

// matrix returns a rows×cols tensor as a float32 gguf.Matrix.
func (r *hfReader) matrix(name string, rows, cols int) gguf.Matrix {
	return f32Matrix(name, r.floats(name, int64(rows), int64(cols)), rows, cols)
}

// kvB splits kv_b_proj (per head nope key rows then vd value rows, of
// rank each) into per-head absorbed key matrices (rank×nope, transposed)
// and value matrices (vd×rank).
func (r *hfReader) kvB(name string, nh, nope, vd, rank int) (kb, vb []gguf.Matrix) {
	all := r.floats(name, int64(nh*(nope+vd)), int64(rank))
	if all == nil {
		return nil, nil
	}
	kb, vb = make([]gguf.Matrix, nh), make([]gguf.Matrix, nh)
	for h := range nh {
		base := h * (nope + vd)
		kb[h] = f32Matrix(fmt.Sprintf("%s[%d].k", name, h), gguf.AbsorbedKey(all, h, nope, vd, rank), rank, nope)
		vb[h] = f32Matrix(fmt.Sprintf("%s[%d].v", name, h), all[(base+nope)*rank:(base+nope+vd)*rank], vd, rank)
	}
	return kb, vb
}

// f32Matrix wraps rows×cols float32 values as a gguf.Matrix of type F32.
func f32Matrix(name string, v []float32, rows, cols int) gguf.Matrix {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return gguf.Matrix{Name: name, Type: compute.QType(gguf.F32), Rows: rows, Cols: cols, Data: b}
}
