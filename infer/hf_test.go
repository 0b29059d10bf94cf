package infer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/internal/testgguf"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/safetensors"
	"github.com/moe-llm/moe/tokenizer"
)

// hfFamilies are the family fixtures whose Hugging Face directories
// safetensors.OpenMapped reads (gpt-oss and deepseek2 have their own
// readers and tests).
var hfFamilies = []string{"qwen3moe", "olmoe", "qwen2moe", "granitemoe", "llama"}

// hfTestNames is the Hugging Face naming of each family's feed-forward
// tensors (relative to model.layers.N.), written here from the families'
// modeling code independently of safetensors' table.
var hfTestNames = map[string]struct {
	router, expert, gate, up, down string
	// stacked: Granite's input_linear [E, 2ff, d] (gate rows, then up
	// rows) and output_linear [E, d, ff], and the shared expert's
	// shared_mlp.input_linear [2s, d] and output_linear [d, s].
	stacked            bool
	shared, sharedGate string
}{
	config.TypeMixtral:    {router: "block_sparse_moe.gate.weight", expert: "block_sparse_moe.experts.%d.", gate: "w1", up: "w3", down: "w2"},
	config.TypeQwen3MoE:   {router: "mlp.gate.weight", expert: "mlp.experts.%d.", gate: "gate_proj", up: "up_proj", down: "down_proj"},
	config.TypeOLMoE:      {router: "mlp.gate.weight", expert: "mlp.experts.%d.", gate: "gate_proj", up: "up_proj", down: "down_proj"},
	config.TypeQwen2MoE:   {router: "mlp.gate.weight", expert: "mlp.experts.%d.", gate: "gate_proj", up: "up_proj", down: "down_proj", shared: "mlp.shared_expert.", sharedGate: "mlp.shared_expert_gate.weight"},
	config.TypeGraniteMoE: {router: "block_sparse_moe.router.layer.weight", stacked: true},
}

// hfTestConfig is cfg as the family's own config.json spells it.
func hfTestConfig(cfg *config.Config) map[string]any {
	c := map[string]any{
		"model_type": cfg.ModelType, "vocab_size": cfg.VocabSize, "hidden_size": cfg.HiddenSize,
		"intermediate_size": cfg.IntermediateSize, "num_hidden_layers": cfg.NumLayers,
		"num_attention_heads": cfg.NumHeads, "num_key_value_heads": cfg.KVHeads(),
		"max_position_embeddings": cfg.MaxPositionEmbeddings, "rms_norm_eps": cfg.RMSNormEps,
		"rope_theta": cfg.RopeTheta, "tie_word_embeddings": cfg.TieWordEmbeddings, "hidden_act": "silu",
		"num_experts_per_tok": cfg.ExpertsPerToken, "norm_topk_prob": cfg.NormTopKProb,
	}
	if cfg.HeadDim > 0 {
		c["head_dim"] = cfg.HeadDim
	}
	switch cfg.ModelType {
	case config.TypeQwen2MoE, config.TypeQwen3MoE, config.TypeOLMoE:
		c["num_experts"] = cfg.NumExperts
	default:
		c["num_local_experts"] = cfg.NumExperts
	}
	if cfg.MoEIntermediateSize > 0 {
		c["moe_intermediate_size"] = cfg.MoEIntermediateSize
	}
	switch {
	case cfg.SharedExpertIntermediateSize == 0:
	case cfg.ModelType == config.TypeGraniteMoE:
		c["shared_intermediate_size"] = cfg.SharedExpertIntermediateSize
	default:
		c["shared_expert_intermediate_size"] = cfg.SharedExpertIntermediateSize
	}
	if cfg.ModelType == config.TypeGraniteMoE {
		c["embedding_multiplier"], c["residual_multiplier"] = cfg.EmbeddingMultiplier, cfg.ResidualMultiplier
		c["attention_multiplier"], c["logits_scaling"] = cfg.AttentionMultiplier, cfg.LogitsScaling
	}
	return c
}

// floats decodes matrices stacked in order to one float32 slice.
func floats(t *testing.T, ms ...gguf.Matrix) []float32 {
	t.Helper()
	var out []float32
	for _, m := range ms {
		v := make([]float32, m.Rows*m.Cols)
		if err := compute.Dequantize(m.Type, m.Data, v); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		out = append(out, v...)
	}
	return out
}

// hfWrite is how writeHFFromGGUF lays a directory out.
type hfWrite struct {
	dtype string
	// shard splits the tensors in two files with an index; fused stacks
	// the experts as mlp.experts.gate_up_proj [E, 2ff, d] and
	// mlp.experts.down_proj [E, d, ff], as newer transformers save Qwen's.
	shard, fused bool
}

// writeHFFromGGUF writes the GGUF model at path as a Hugging Face
// directory laid out as w says, and returns it. The matrices are taken as
// gguf.OpenModel returns them, but for q and k of the families whose rows
// llama.cpp's converter permutes: those are un-permuted from the raw file
// here, and checked equal to OpenModel's.
func writeHFFromGGUF(t *testing.T, path string, w hfWrite) string {
	t.Helper()
	mm, err := gguf.OpenModel(path, gguf.PlaceMapped)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	cfg := mm.Cfg
	names, ok := hfTestNames[cfg.ModelType]
	if !ok {
		t.Fatalf("no Hugging Face names for %s", cfg.ModelType)
	}
	d := int64(cfg.HiddenSize)
	// f is the raw file of a family whose q/k rows the converter permutes.
	var f *gguf.File
	if raw, _ := gguf.Open(path); raw != nil {
		defer raw.Close()
		if a, _ := raw.Get("general.architecture"); a == "llama" || a == "granitemoe" {
			f = raw
		}
	}
	var ts []safetensors.Tensor
	add := func(name string, v []float32, shape ...int64) {
		ts = append(ts, safetensors.Tensor{Name: name, DType: w.dtype, Shape: shape, Data: v})
	}
	mat := func(name string, m gguf.Matrix) { add(name, floats(t, m), int64(m.Rows), int64(m.Cols)) }
	add("model.embed_tokens.weight", floats(t, mm.Embed), int64(cfg.VocabSize), d)
	for i, L := range mm.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", L.AttnNorm, d)
		add(p+"post_attention_layernorm.weight", L.FFNNorm, d)
		q, k := floats(t, L.Q), floats(t, L.K)
		if f != nil {
			// llama.cpp's converter stores these families' q and k rows
			// permuted for its RoPE; Hugging Face's order is the inverse.
			q = hfUnpermute(t, f, fmt.Sprintf("blk.%d.attn_q.weight", i), cfg.NumHeads)
			k = hfUnpermute(t, f, fmt.Sprintf("blk.%d.attn_k.weight", i), cfg.KVHeads())
			if maxDiff32(q, floats(t, L.Q)) != 0 || maxDiff32(k, floats(t, L.K)) != 0 {
				t.Fatalf("layer %d: gguf.OpenModel's q/k rows are not Hugging Face's order", i)
			}
		}
		add(p+"self_attn.q_proj.weight", q, int64(L.Q.Rows), d)
		add(p+"self_attn.k_proj.weight", k, int64(L.K.Rows), d)
		mat(p+"self_attn.v_proj.weight", L.V)
		mat(p+"self_attn.o_proj.weight", L.O)
		if L.QNorm != nil {
			add(p+"self_attn.q_norm.weight", L.QNorm, int64(len(L.QNorm)))
			add(p+"self_attn.k_norm.weight", L.KNorm, int64(len(L.KNorm)))
		}
		if L.QBias != nil {
			add(p+"self_attn.q_proj.bias", L.QBias, int64(len(L.QBias)))
			add(p+"self_attn.k_proj.bias", L.KBias, int64(len(L.KBias)))
			add(p+"self_attn.v_proj.bias", L.VBias, int64(len(L.VBias)))
		}
		mat(p+names.router, L.Router)
		E, fe := int64(len(L.Experts)), int64(L.Experts[0].Gate.Rows)
		if names.stacked || w.fused {
			var gu, dn []float32
			for _, x := range L.Experts {
				gu = append(gu, floats(t, x.Gate, x.Up)...)
				dn = append(dn, floats(t, x.Down)...)
			}
			if w.fused {
				add(p+"mlp.experts.gate_up_proj", gu, E, 2*fe, d)
				add(p+"mlp.experts.down_proj", dn, E, d, fe)
			} else {
				add(p+"block_sparse_moe.input_linear.weight", gu, E, 2*fe, d)
				add(p+"block_sparse_moe.output_linear.weight", dn, E, d, fe)
			}
		} else {
			for e, x := range L.Experts {
				q := p + fmt.Sprintf(names.expert, e)
				mat(q+names.gate+".weight", x.Gate)
				mat(q+names.up+".weight", x.Up)
				mat(q+names.down+".weight", x.Down)
			}
		}
		if s := L.Shared; s.Gate.Rows > 0 && names.stacked {
			add(p+"shared_mlp.input_linear.weight", floats(t, s.Gate, s.Up), 2*int64(s.Gate.Rows), d)
			mat(p+"shared_mlp.output_linear.weight", s.Down)
		} else if s.Gate.Rows > 0 {
			if names.shared == "" {
				t.Fatalf("%s: a shared expert without a Hugging Face name", cfg.ModelType)
			}
			mat(p+names.shared+"gate_proj.weight", L.Shared.Gate)
			mat(p+names.shared+"up_proj.weight", L.Shared.Up)
			mat(p+names.shared+"down_proj.weight", L.Shared.Down)
		}
		if L.SharedGateInp != nil {
			add(p+names.sharedGate, L.SharedGateInp, 1, d)
		}
	}
	add("model.norm.weight", mm.FinalNorm, d)
	if !cfg.TieWordEmbeddings {
		add("lm_head.weight", floats(t, mm.Output), int64(cfg.VocabSize), d)
	}

	dir := t.TempDir()
	ctx := context.Background()
	writeJSON := func(name string, v any) {
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if w.shard {
		half := len(ts) / 2
		wm := map[string]string{}
		for i, part := range [][]safetensors.Tensor{ts[:half], ts[half:]} {
			file := fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)
			if err := safetensors.WriteFile(ctx, filepath.Join(dir, file), part, nil); err != nil {
				t.Fatal(err)
			}
			for _, x := range part {
				wm[x.Name] = file
			}
		}
		writeJSON(safetensors.IndexName, map[string]any{"metadata": map[string]any{}, "weight_map": wm})
	} else if err := safetensors.WriteFile(ctx, filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	writeJSON("config.json", hfTestConfig(cfg))
	writeHFTokenizer(t, dir, path, mm.Tok)
	return dir
}

// hfUnpermute reads the q or k projection name of heads heads from f and
// undoes llama.cpp's converter permutation: its row h·hd + 2i + j is
// Hugging Face's row h·hd + j·hd/2 + i.
func hfUnpermute(t *testing.T, f *gguf.File, name string, heads int) []float32 {
	t.Helper()
	info, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	cols, rows := int(info.Dims[0]), int(info.Dims[1])
	src := make([]float32, rows*cols)
	if err := f.ReadFloat32(name, src); err != nil {
		t.Fatal(err)
	}
	hd := rows / heads
	dst := make([]float32, len(src))
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				from, to := h*hd+2*i+j, h*hd+j*hd/2+i
				copy(dst[to*cols:(to+1)*cols], src[from*cols:(from+1)*cols])
			}
		}
	}
	return dst
}

// writeHFTokenizer writes tok as tokenizer.json and tokenizer_config.json
// with the GGUF file's chat template. A SentencePiece vocabulary (scores,
// no merges) has no Hugging Face BPE form: its tokens are written as a
// byte-fallback BPE without merges, enough for models compared by ids.
func writeHFTokenizer(t *testing.T, dir, path string, tok *tokenizer.Tokenizer) {
	t.Helper()
	spec := *tok.Spec()
	if spec.Model == tokenizer.ModelSPM {
		spec.Model, spec.SpaceMarks, spec.Scores = tokenizer.ModelBPE, true, nil
	}
	bpe, err := tokenizer.NewFromSpec(&spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := safetensors.SaveHFTokenizer(dir, bpe); err != nil {
		t.Fatal(err)
	}
	f := testgguf.Open(t, path)
	src, ok := f.Get("tokenizer.chat_template")
	if !ok {
		return
	}
	name := filepath.Join(dir, "tokenizer_config.json")
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var tc map[string]any
	if err := json.Unmarshal(data, &tc); err != nil {
		t.Fatal(err)
	}
	tc["chat_template"] = src
	if data, err = json.Marshal(tc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// greedyLogits runs prompt through m, then n greedy steps, returning every
// step's logits and the chosen tokens.
func greedyLogits(t *testing.T, m *Model, prompt []int32, n int) ([][]float32, []int32) {
	t.Helper()
	s := m.NewSeq(0)
	out, err := m.Forward([]*Seq{s}, [][]int32{prompt}, false)
	if err != nil {
		t.Fatal(err)
	}
	var all [][]float32
	var toks []int32
	for {
		logits := append([]float32(nil), out[0]...)
		all = append(all, logits)
		best := int32(0)
		for i, v := range logits {
			if v > logits[best] {
				best = int32(i)
			}
		}
		toks = append(toks, best)
		if len(toks) == n {
			return all, toks
		}
		if out, err = m.Forward([]*Seq{s}, [][]int32{{best}}, false); err != nil {
			t.Fatal(err)
		}
	}
}

// checkSameGreedy runs prompt and n greedy steps through got and want and
// fails unless every step's logits agree within limit and the tokens are
// the same.
func checkSameGreedy(t *testing.T, got, want *Model, prompt []int32, n int, limit float64) {
	t.Helper()
	wl, wt := greedyLogits(t, want, prompt, n)
	gl, gt := greedyLogits(t, got, prompt, n)
	worst := 0.0
	for s := range wl {
		worst = math.Max(worst, maxDiff32(gl[s], wl[s]))
	}
	t.Logf("max logit difference %.2e over %d steps", worst, n)
	if worst > limit || fmt.Sprint(gt) != fmt.Sprint(wt) {
		t.Fatalf("logits differ by %.3e (limit %g), greedy tokens %v, want %v", worst, limit, gt, wt)
	}
}

// loadT loads path or fails the test.
func loadT(t *testing.T, path string, pool *compute.Pool) *Model {
	t.Helper()
	m, err := Load(path, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestHFDirMatchesGGUF writes each family fixture as a Hugging Face
// directory and checks that infer.Load of it computes the GGUF file's
// logits and greedy tokens, and reads its chat template.
func TestHFDirMatchesGGUF(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	prompt := []int32{84, 258, 39, 101, 3, 200}
	for i, arch := range hfFamilies {
		t.Run(arch, func(t *testing.T) {
			path := filepath.Join("testdata", "family", arch+"-f32.gguf")
			dir := writeHFFromGGUF(t, path, hfWrite{dtype: safetensors.F32, shard: i%2 == 1})
			want, got := loadT(t, path, pool), loadT(t, dir, pool)
			if got.Cfg.ModelType != want.Cfg.ModelType || got.Cfg.NormTopKProb != want.Cfg.NormTopKProb || got.Cfg.RouterOrder != want.Cfg.RouterOrder {
				t.Fatalf("config: HF %s %v %s, GGUF %s %v %s", got.Cfg.ModelType, got.Cfg.NormTopKProb, got.Cfg.RouterOrder,
					want.Cfg.ModelType, want.Cfg.NormTopKProb, want.Cfg.RouterOrder)
			}
			checkSameGreedy(t, got, want, prompt, 16, 1e-5)
			if want.Template != nil && (got.Template == nil || got.Template.Source() != want.Template.Source()) {
				t.Errorf("chat template not read from tokenizer_config.json")
			}
		})
	}
}

// TestHFDirFusedExperts checks Qwen's experts saved fused
// (mlp.experts.gate_up_proj, mlp.experts.down_proj) give the GGUF logits.
func TestHFDirFusedExperts(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	for _, arch := range []string{"qwen3moe", "qwen2moe"} {
		t.Run(arch, func(t *testing.T) {
			path := filepath.Join("testdata", "family", arch+"-f32.gguf")
			dir := writeHFFromGGUF(t, path, hfWrite{dtype: safetensors.F32, fused: true})
			checkSameGreedy(t, loadT(t, dir, pool), loadT(t, path, pool), []int32{9, 40, 121}, 8, 1e-5)
		})
	}
}

// TestHFDir16Bit checks the 16-bit dtypes are used in place: a BF16 or
// F16 directory computes what an F32 directory of the rounded weights
// computes.
func TestHFDir16Bit(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	path := filepath.Join("testdata", "family", "qwen2moe-f32.gguf")
	for dtype, qt := range map[string]compute.QType{safetensors.BF16: compute.QBF16, safetensors.F16: compute.QF16} {
		t.Run(dtype, func(t *testing.T) { test16Bit(t, pool, path, dtype, qt) })
	}
}

func test16Bit(t *testing.T, pool *compute.Pool, path, dtype string, qt compute.QType) {
	bf := writeHFFromGGUF(t, path, hfWrite{dtype: dtype})
	// Round the weights by rewriting the directory's tensors as F32.
	set, err := safetensors.OpenDir(bf)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var ts []safetensors.Tensor
	for _, n := range set.Names() {
		info, _ := set.Info(n)
		v, err := set.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: info.Shape, Data: v})
	}
	f32 := t.TempDir()
	if err := safetensors.WriteFile(context.Background(), filepath.Join(f32, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"config.json", "tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join(bf, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(f32, n), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, b := loadT(t, bf, pool), loadT(t, f32, pool)
	if q := a.file.Layers[0].Q.Type; q != qt {
		t.Fatalf("%s q_proj is used as %s", dtype, q)
	}
	checkSameGreedy(t, a, b, []int32{5, 77, 200}, 8, 1e-4)
}

// TestHFDirErrors checks that a directory with a missing or misshapen
// tensor, an extra tensor or an unknown model_type fails with one error
// naming it.
func TestHFDirErrors(t *testing.T) {
	path := filepath.Join("testdata", "family", "qwen3moe-f32.gguf")
	src := writeHFFromGGUF(t, path, hfWrite{dtype: safetensors.F32})
	copyDir := func(t *testing.T) string {
		dir := t.TempDir()
		ents, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	// edit replaces from with to (same length) in file of a copy.
	edit := func(t *testing.T, file, from, to string) string {
		dir := copyDir(t)
		p := filepath.Join(dir, file)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		if !strings.Contains(s, from) {
			t.Fatalf("%s has no %q", file, from)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(s, from, to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, c := range []struct {
		name, file, from, to, want string
	}{
		{"missing", "model.safetensors", `"model.layers.1.self_attn.k_norm.weight"`, `"model.layers.1.self_attn.k_norX.weight"`, `missing tensor "model.layers.1.self_attn.k_norm.weight"`},
		{"type", "config.json", `"qwen3_moe"`, `"qwen3_moX"`, `qwen3_moX`},
		{"unmapped", "config.json", `"qwen3_moe"`, `"gpt3"`, `model_type "gpt3"`},
		{"no place", "config.json", `"num_hidden_layers": 2`, `"num_hidden_layers": 1`, `"model.layers.1.input_layernorm.weight" has no place`},
		{"dtype", "model.safetensors", `"dtype":"F32","shape":[64]`, `"dtype":"I32","shape":[64]`, `has dtype I32`},
		{"shape", "config.json", `"moe_intermediate_size": `, `"moe_intermediate_size": 1`, `has shape`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := edit(t, c.file, c.from, c.to)
			_, err := Load(dir, nil)
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, c.want)
			}
		})
	}
}

// TestHFDirOfMoeModel checks a moe model exported by safetensors.SaveHF
// (Mixtral's naming, or a dense llama) runs from the directory as it does
// from its float32 weights: moe's training layout and the mapped Hugging
// Face path agree on every name and on the RoPE row order.
func TestHFDirOfMoeModel(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	tok := qwenTok(t)
	for _, typ := range []string{config.TypeMixtral, config.TypeLlama} {
		t.Run(typ, func(t *testing.T) {
			cfg := &config.Config{
				ModelType: typ, VocabSize: 300, HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
				NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64, RopeTheta: 10000, RMSNormEps: 1e-5,
				HiddenAct: "silu",
			}
			if typ == config.TypeMixtral {
				cfg.NumExperts, cfg.ExpertsPerToken, cfg.RouterOrder = 4, 2, config.RouterTopKSoftmax
			}
			w, err := model.NewWeights(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(3, 4))
			for i := range w.Flat {
				w.Flat[i] = float32(r.NormFloat64() * 0.3)
			}
			dir := t.TempDir()
			if err := safetensors.SaveHF(context.Background(), dir, cfg, w, safetensors.F32); err != nil {
				t.Fatal(err)
			}
			if err := safetensors.SaveHFTokenizer(dir, tok); err != nil {
				t.Fatal(err)
			}
			want, err := New(cfg, w, tok, pool)
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			checkSameGreedy(t, loadT(t, dir, pool), want, []int32{7, 99, 150, 3}, 8, 1e-5)
		})
	}
}

// TestHFGenerationConfigEnds checks that a Hugging Face directory's
// generation_config.json eos_token_id (a list here, as Qwen3's and
// Llama 3's are) adds end-of-generation tokens the tokenizer does not
// name, that a single id works too, and that an id outside the vocabulary
// fails with one line naming the file.
func TestHFGenerationConfigEnds(t *testing.T) {
	path := filepath.Join("testdata", "family", "qwen3moe-f32.gguf")
	dir := writeHFFromGGUF(t, path, hfWrite{dtype: safetensors.F32})
	m := loadT(t, dir, nil)
	start, ok := m.Tok.Special("<|im_start|>")
	if !ok {
		t.Fatal("no <|im_start|> in the fixture's vocabulary")
	}
	if slices.Contains(m.StopTokens(), start) {
		t.Fatalf("<|im_start|> already stops generation: the test would prove nothing")
	}
	gc := filepath.Join(dir, "generation_config.json")
	for _, c := range []struct {
		json string
		want []int32
	}{{fmt.Sprintf(`{"eos_token_id": [%d, %d]}`, m.Tok.EOT(), start), []int32{m.Tok.EOT(), start}}, {fmt.Sprintf(`{"eos_token_id": %d}`, start), []int32{start}}} {
		if err := os.WriteFile(gc, []byte(c.json), 0o644); err != nil {
			t.Fatal(err)
		}
		g := loadT(t, dir, nil)
		if !slices.Equal(g.EndTokens, c.want) || !slices.Contains(g.StopTokens(), start) {
			t.Errorf("%s: end tokens %v (stops %v), want %v", c.json, g.EndTokens, g.StopTokens(), c.want)
		}
	}
	if err := os.WriteFile(gc, []byte(`{"eos_token_id": [1, 99999]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "generation_config.json: eos_token_id 99999") || strings.Contains(err.Error(), "\n") {
		t.Errorf("out-of-vocabulary eos_token_id: got %v", err)
	}
}
