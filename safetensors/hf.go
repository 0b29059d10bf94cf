package safetensors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/internal/memest"
	"github.com/moe-llm/moe/model"
)

// naming is how a Hugging Face model type names its feed-forward tensors.
type naming struct {
	router           string // relative to "model.layers.N."
	expert           string // format with the expert index
	gate, up, down   string // expert projection names
	shared           string // shared-expert prefix ("" for none)
	denseGate, dense string
}

var (
	// mixtralNames is Mixtral's block_sparse_moe (w1 = gate, w3 = up, w2 = down).
	mixtralNames = naming{router: "block_sparse_moe.gate", expert: "block_sparse_moe.experts.%d.", gate: "w1", up: "w3", down: "w2"}
	// mlpNames is the qwen2_moe / qwen3_moe / olmoe layout.
	mlpNames = naming{router: "mlp.gate", expert: "mlp.experts.%d.", gate: "gate_proj", up: "up_proj", down: "down_proj", shared: "mlp.shared_expert."}
)

// namesFor returns the naming of cfg's model type.
func namesFor(cfg *config.Config) naming {
	if cfg.ModelType == config.TypeMixtral || cfg.ModelType == config.TypeMistral || cfg.ModelType == config.TypeLlama {
		return mixtralNames
	}
	return mlpNames
}

// hfTensor is one parameter: its Hugging Face name and shape, and the moe
// view holding it.
type hfTensor struct {
	name  string
	shape []int64
	view  []float32
}

// hfTensors lists every parameter of w under its Hugging Face name.
func hfTensors(cfg *config.Config, w *model.Weights, nm naming) []hfTensor {
	d := int64(cfg.HiddenSize)
	var out []hfTensor
	add := func(name string, view []float32, shape ...int64) {
		out = append(out, hfTensor{name, shape, view})
	}
	rows := func(v []float32) int64 { return int64(len(v)) / d }
	add("model.embed_tokens.weight", w.Embed, int64(cfg.VocabSize), d)
	for i := range w.Layers {
		l := &w.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", l.AttnNorm, d)
		add(p+"self_attn.q_proj.weight", l.Wq, rows(l.Wq), d)
		add(p+"self_attn.k_proj.weight", l.Wk, rows(l.Wk), d)
		add(p+"self_attn.v_proj.weight", l.Wv, rows(l.Wv), d)
		add(p+"self_attn.o_proj.weight", l.Wo, d, rows(l.Wo))
		if l.QKVBias != nil {
			qd, kvd := len(l.Wq)/int(d), len(l.Wk)/int(d)
			add(p+"self_attn.q_proj.bias", l.QKVBias[:qd], int64(qd))
			add(p+"self_attn.k_proj.bias", l.QKVBias[qd:qd+kvd], int64(kvd))
			add(p+"self_attn.v_proj.bias", l.QKVBias[qd+kvd:], int64(kvd))
		}
		if l.QNorm != nil {
			add(p+"self_attn.q_norm.weight", l.QNorm, int64(len(l.QNorm)))
			add(p+"self_attn.k_norm.weight", l.KNorm, int64(len(l.KNorm)))
		}
		add(p+"post_attention_layernorm.weight", l.FFNNorm, d)
		if len(l.Router) == 0 {
			ff := rows(l.Gate)
			add(p+"mlp.gate_proj.weight", l.Gate, ff, d)
			add(p+"mlp.up_proj.weight", l.Up, ff, d)
			add(p+"mlp.down_proj.weight", l.Down, d, ff)
			continue
		}
		add(p+nm.router+".weight", l.Router, int64(cfg.NumExperts), d)
		if l.RouterScoreBias != nil {
			// DeepSeek-V3's name for the noaux_tc selection bias.
			add(p+nm.router+".e_score_correction_bias", l.RouterScoreBias, int64(cfg.NumExperts))
		}
		for e := range l.ExpertGate {
			q := p + fmt.Sprintf(nm.expert, e)
			fe := rows(l.ExpertGate[e])
			add(q+nm.gate+".weight", l.ExpertGate[e], fe, d)
			add(q+nm.up+".weight", l.ExpertUp[e], fe, d)
			add(q+nm.down+".weight", l.ExpertDown[e], d, fe)
		}
		if s := rows(l.SharedGate); s > 0 {
			q := p + nm.shared
			if nm.shared == "" {
				q = p + "block_sparse_moe.shared_expert."
			}
			add(q+"gate_proj.weight", l.SharedGate, s, d)
			add(q+"up_proj.weight", l.SharedUp, s, d)
			add(q+"down_proj.weight", l.SharedDown, d, s)
			if l.SharedGateInp != nil {
				add(p+"mlp.shared_expert_gate.weight", l.SharedGateInp, 1, d)
			}
		}
	}
	add("model.norm.weight", w.FinalNorm, d)
	if !cfg.TieWordEmbeddings {
		add("lm_head.weight", w.LMHead, int64(cfg.VocabSize), d)
	}
	return out
}

// checkSupported rejects configs moe's model cannot run or whose extra
// parameters have no place in model.Weights.
func checkSupported(cfg *config.Config) error { return checkFeatures(cfg, false) }

// checkFeatures rejects configs that moe cannot run. mapped allows what
// only inference from mapped weights runs (gguf.Mapped).
func checkFeatures(cfg *config.Config, mapped bool) error {
	c := cfg
	if mapped {
		c = cfg.Clone()
		c.QKNorm, c.QKNormPerHead, c.QKVBias, c.SharedExpertGate = false, false, false, false
		c.EmbeddingMultiplier, c.ResidualMultiplier, c.AttentionMultiplier, c.LogitsScaling = 0, 0, 0, 0
	}
	if err := model.Supported(c); err != nil {
		return err
	}
	var bad []string
	for _, f := range []struct {
		on   bool
		what string
	}{
		{c.MLPBias || c.ExpertBias || c.RouterBias, "MLP, expert or router biases (read only in gpt_oss's layout)"},
		{c.PlainMLP, "a plain MLP"},
		{c.LayerNorm, "LayerNorm"},
		{c.LearnedPositions, "learned positions"},
		{gguf.SlidingWindowMatters(c), "sliding-window attention shorter than the context"},
		{c.HiddenAct != "" && c.HiddenAct != "silu" && c.HiddenAct != "swish", "activation " + c.HiddenAct},
	} {
		if f.on {
			bad = append(bad, f.what)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the model uses %s, which moe does not implement", strings.Join(bad, ", "))
	}
	return nil
}

// LoadHF reads a Hugging Face checkpoint directory: config.json plus
// model.safetensors (or shards with model.safetensors.index.json), in the
// llama / mistral / mixtral naming (qwen-style "mlp.experts" MoE naming is
// also read), granitemoe's stacked experts, or gpt_oss's layout
// (ReadGPTOSS). Every tensor must be used, except rotary inv_freq buffers.
func LoadHF(ctx context.Context, dir string) (*config.Config, *model.Weights, error) {
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	if cfg.ModelType == config.TypeGPTOSS {
		// gpt_oss's own layout (interleaved gate and up, MXFP4 experts):
		// read as inference maps it, then decode.
		if err := memest.CheckWeights(cfg, "import "+dir); err != nil {
			return nil, nil, err
		}
		mm, err := ReadGPTOSS(ctx, dir)
		if err != nil {
			return nil, nil, err
		}
		defer mm.Close()
		w, err := gguf.Float32Weights(ctx, mm)
		if err != nil {
			return nil, nil, fmt.Errorf("import %s: %w", dir, err)
		}
		return cfg, w, nil
	}
	if err := checkSupported(cfg); err != nil {
		return nil, nil, fmt.Errorf("import %s: %w", dir, err)
	}
	if err := memest.CheckWeights(cfg, "import "+dir); err != nil {
		return nil, nil, err
	}
	if lay, ok := hfLayouts[cfg.ModelType]; ok && lay.expert == "" {
		// Experts stacked in one tensor (granitemoe): read them as
		// inference maps them, then decode.
		mm, err := mapTensors(dir, cfg, nil, lay)
		if err != nil {
			return nil, nil, fmt.Errorf("import %s: %w", dir, err)
		}
		defer mm.Close()
		w, err := gguf.Float32Weights(ctx, mm)
		if err != nil {
			return nil, nil, fmt.Errorf("import %s: %w", dir, err)
		}
		return cfg, w, nil
	}
	set, err := OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer set.Close()
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	nm := namesFor(cfg)
	if _, ok := set.Info("model.layers.0.block_sparse_moe.gate.weight"); ok {
		nm = mixtralNames
	} else if _, ok := set.Info("model.layers.0.mlp.gate.weight"); ok {
		nm = mlpNames
	}
	used := map[string]bool{}
	for _, t := range hfTensors(cfg, w, nm) {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		info, ok := set.Info(t.name)
		if !ok {
			return nil, nil, fmt.Errorf("import %s: missing tensor %q", dir, t.name)
		}
		if !slices.Equal(info.Shape, t.shape) {
			return nil, nil, fmt.Errorf("import %s: tensor %q has shape %v, config.json needs %v", dir, t.name, info.Shape, t.shape)
		}
		data, err := set.Float32(t.name)
		if err != nil {
			return nil, nil, err
		}
		copy(t.view, data)
		used[t.name] = true
	}
	for _, n := range set.Names() {
		if !used[n] && !strings.HasSuffix(n, "rotary_emb.inv_freq") {
			if n == "lm_head.weight" && cfg.TieWordEmbeddings {
				continue // some tied checkpoints store the copy anyway
			}
			return nil, nil, fmt.Errorf("import %s: tensor %q has no place in the moe model (unsupported feature)", dir, n)
		}
	}
	return cfg, w, nil
}

// PrepareHFDir makes dir ready for SaveHF: files there that would outlive
// the export and be read back instead of (or with) its model.safetensors
// (model.safetensors.index.json, other *.safetensors shards) are removed
// with force and refused without. So is a config.json or tokenizer.json in
// a folder with no safetensors, which is not a model folder (e.g. --out .).
func PrepareHFDir(dir string, force bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var stale, foreign []string
	model := false
	for _, e := range ents {
		switch n := e.Name(); {
		case n == IndexName, strings.HasSuffix(n, ".safetensors") && n != "model.safetensors":
			stale = append(stale, n)
			model = model || n != IndexName
		case n == "model.safetensors":
			model = true
		case n == "config.json", n == "tokenizer.json":
			foreign = append(foreign, n)
		}
	}
	if model {
		foreign = nil // an (older) model folder: its config and tokenizer are replaced
	}
	if len(foreign) > 0 && !force {
		return fmt.Errorf("%s holds %s but no safetensors: not a model folder, refusing to overwrite (pass --force)", dir, strings.Join(foreign, " and "))
	}
	if len(stale) > 0 && !force {
		return fmt.Errorf("%s holds %s from another export, which would be loaded instead of the new model.safetensors (pass --force to remove them)", dir, strings.Join(stale, ", "))
	}
	for _, n := range stale {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("safetensors: removing stale %w", err)
		}
	}
	return nil
}

// SaveHF writes cfg and w as a Hugging Face checkpoint directory:
// config.json and model.safetensors in dtype (F32, F16 or BF16), with the
// naming of cfg's model type (Mixtral's for moe's own models).
func SaveHF(ctx context.Context, dir string, cfg *config.Config, w *model.Weights, dtype string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var ts []Tensor
	for _, t := range hfTensors(cfg, w, namesFor(cfg)) {
		ts = append(ts, Tensor{Name: t.name, DType: dtype, Shape: t.shape, Data: t.view})
	}
	if err := WriteFile(ctx, filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return hfConfig(cfg).Save(filepath.Join(dir, "config.json"))
}

// hfConfig is cfg as transformers reads it: static NTK-aware RoPE scaling,
// which transformers has no rope_type for, becomes the raised rope_theta
// θ·s^(d/(d−2)) it amounts to (the same frequencies, see model.RopeFreqs).
func hfConfig(cfg *config.Config) *config.Config {
	rs := cfg.RopeScaling
	if rs == nil || rs.Type != config.RopeNTK {
		return cfg
	}
	c := cfg.Clone()
	c.RopeTheta = model.RopeBase(cfg)
	c.RopeScaling = nil
	return c
}
