package infer

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/safetensors"
)

// TestMatchesTrainingForward checks that the KV-cache forward pass gives the
// training forward pass's logits (model.ForwardWith with the causal routing
// + Logits) on the same weights, for dense, token-choice MoE (both router
// orders, shared expert), expert-choice MoE and a sliding window, with prefill, one token at
// a time, and two sequences batched together.
func TestMatchesTrainingForward(t *testing.T) {
	cfgs := refConfigs()
	// A sliding window shorter than the sequences, so that generation past
	// the window is checked against the training forward's band.
	sw := testConfig(true)
	sw.SlidingWindow = 4
	cfgs["moe_sliding_window"] = sw
	// YaRN: the KV-cache forward's RoPE tables come from the same config.
	yarn := testConfig(true)
	yarn.RopeScaling = &config.RopeScaling{Type: config.RopeYaRN, Factor: 4, OriginalMaxPositionEmbeddings: 8}
	cfgs["moe_rope_yarn"] = yarn
	// q/k norms (per head, full width) and q/k/v biases: one rule in both.
	for name, mut := range map[string]func(c *config.Config){
		"moe_qk_norm_per_head": func(c *config.Config) { c.QKNorm, c.QKNormPerHead = true, true },
		"moe_qk_norm_full":     func(c *config.Config) { c.QKNorm = true },
		"moe_qkv_bias":         func(c *config.Config) { c.QKVBias = true },
		"moe_granite_scales": func(c *config.Config) {
			c.EmbeddingMultiplier, c.ResidualMultiplier, c.AttentionMultiplier, c.LogitsScaling = 1.7, 0.6, 0.3, 2.5
			c.SharedExpertIntermediateSize, c.SharedExpertGate = 8, true
		},
		"moe_decoder_sparse_step": func(c *config.Config) { c.DecoderSparseStep = 2 },
		"moe_first_dense_sigmoid_shared": func(c *config.Config) {
			c.MLPOnlyLayers, c.ScoringFunc, c.TopKMethod, c.NormTopKProb = []int{0}, config.ScoringSigmoid, config.TopKNoAuxTC, true
			c.SharedExpertIntermediateSize = 8
		},
		"moe_gpt_oss": func(c *config.Config) {
			c.AttentionBias, c.AttentionSinks, c.RouterBias, c.ExpertBias, c.SwiGLULimit = true, true, true, true, 1.5
			c.SlidingWindow, c.LayerTypes = 4, []string{config.LayerSlidingAttention, config.LayerFullAttention}
			c.SharedExpertIntermediateSize = 8
		},
		"dense_mlp_bias_clamped_sinks": func(c *config.Config) {
			c.NumExperts, c.ExpertsPerToken, c.MLPBias, c.SwiGLULimit, c.AttentionSinks, c.AttentionBias = 0, 0, true, 1.5, true, true
		},
		"moe_shared_gated": func(c *config.Config) {
			c.RouterOrder, c.SharedExpertIntermediateSize, c.SharedExpertGate = config.RouterSoftmaxTopK, 8, true
		},
	} {
		c := testConfig(true)
		mut(c)
		cfgs[name] = c
	}
	for name, cfg := range cfgs {
		t.Run(name, func(t *testing.T) {
			tm, err := model.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			tm.Init(5)
			// Larger weights than the init so that routing and attention
			// are far from uniform.
			for i := range tm.W.Flat {
				tm.W.Flat[i] *= 10
			}
			// Biases start at 0 and q/k gains at 1 (times 10): make them
			// matter.
			br := rand.New(rand.NewPCG(7, 7))
			tm.W.Visit(cfg, func(name string, t []float32) {
				if strings.HasSuffix(name, "_bias") && !strings.HasSuffix(name, "router_score_bias") {
					for i := range t {
						t[i] = float32(br.NormFloat64() * 0.3)
					}
				}
			})
			for _, l := range tm.W.Layers {
				for e := range l.RouterScoreBias {
					l.RouterScoreBias[e] = float32(br.NormFloat64() * 0.3)
				}
				for _, g := range [][]float32{l.QNorm, l.KNorm} {
					for i := range g {
						g[i] = float32(1 + br.NormFloat64()*0.3)
					}
				}
			}
			const B, T = 2, 17
			r := rand.New(rand.NewPCG(1, 2))
			toks := randTokens(r, B*T, cfg.VocabSize)
			if _, err := tm.ForwardWith(toks, nil, B, T, model.ForwardOptions{Causal: true}); err != nil {
				t.Fatal(err)
			}
			want := tm.Logits()
			m, err := New(cfg, tm.W, nil, compute.NewPool(2))
			if err != nil {
				t.Fatal(err)
			}
			V := cfg.VocabSize
			const tol = 2e-3
			cmp := func(what string, got []float32, b, from int) {
				t.Helper()
				for j := 0; j*V < len(got); j++ {
					w := want[(b*T+from+j)*V : (b*T+from+j+1)*V]
					for i := range w {
						if d := got[j*V+i] - w[i]; d > tol || d < -tol {
							t.Fatalf("%s: sequence %d position %d logit %d: %g vs training %g", what, b, from+j, i, got[j*V+i], w[i])
						}
					}
				}
			}
			s0, s1 := m.NewSeq(0), m.NewSeq(0)
			lg, err := m.Forward([]*Seq{s0, s1}, [][]int32{toks[:T], toks[T : T+5]}, true)
			if err != nil {
				t.Fatal(err)
			}
			cmp("batched prefill", lg[0], 0, 0)
			cmp("batched prefill", lg[1], 1, 0)
			for p := 5; p < T; p++ {
				lg, err := m.Forward([]*Seq{s1}, [][]int32{toks[T+p : T+p+1]}, false)
				if err != nil {
					t.Fatal(err)
				}
				cmp("one at a time", lg[0], 1, p)
			}
		})
	}
}

// TestTrainingModelFromFamilyFile checks that the training model built from
// a qwen3moe, olmoe, qwen2moe, granitemoe or gpt-oss GGUF file
// (gguf.ReadModel: per-head and full-width q/k norms, q/k/v biases and the
// gated shared expert, Granite's scales, gpt-oss's biases, sinks, clamped
// SwiGLU and sliding windows), or from that file written as a Hugging Face
// directory (safetensors.LoadHF), gives the logits of the float64
// reference of the family's definition over the file's weights, and those
// of infer's own pass over the file.
func TestTrainingModelFromFamilyFile(t *testing.T) {
	for _, c := range []struct{ arch, from string }{{"qwen3moe", "gguf"}, {"olmoe", "gguf"}, {"qwen3moe", "hf"}, {"olmoe", "hf"}, {"qwen2moe", "gguf"}, {"qwen2moe", "hf"}, {"granitemoe", "gguf"}, {"granitemoe", "hf"}, {"gpt-oss", "gguf"}, {"gpt-oss", "hf"}} {
		arch := c.arch
		t.Run(arch+"-"+c.from, func(t *testing.T) {
			path := filepath.Join("testdata", "family", arch+"-f32.gguf")
			var cfg *config.Config
			var w *model.Weights
			var err error
			if c.from == "gguf" {
				cfg, w, _, err = gguf.ReadModel(context.Background(), path)
			} else if arch == "gpt-oss" {
				cfg, w, err = safetensors.LoadHF(context.Background(), ossHFDir(t, "f32", safetensors.F32, true))
			} else {
				cfg, w, err = safetensors.LoadHF(context.Background(), writeHFFromGGUF(t, path, hfWrite{dtype: safetensors.F32}))
			}
			if err != nil {
				t.Fatal(err)
			}
			tm, err := model.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			copy(tm.W.Flat, w.Flat)
			toks := familyTokens()
			if _, err := tm.ForwardWith(toks, nil, 1, len(toks), model.ForwardOptions{Causal: true}); err != nil {
				t.Fatal(err)
			}
			want := newFamilyRef(t, path, arch).forward(toks)
			V := cfg.VocabSize
			worst := 0.0
			for p := range toks {
				worst = math.Max(worst, relErr(tm.Logits()[p*V:(p+1)*V], want[p]))
			}
			t.Logf("%s: training forward vs float64 reference: max relative logit error %.2e", arch, worst)
			if worst > 1e-4 {
				t.Fatalf("%s: training model's logits differ from the reference by %.3e relative (limit 1e-4)", arch, worst)
			}
			// And against infer's own pass over the file, in place.
			im, err := Load(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			lg, err := im.Forward([]*Seq{im.NewSeq(0)}, [][]int32{toks}, true)
			if err != nil {
				t.Fatal(err)
			}
			worst = 0
			for p := range toks {
				got := make([]float64, V)
				for i, v := range lg[0][p*V : (p+1)*V] {
					got[i] = float64(v)
				}
				worst = math.Max(worst, relErr(tm.Logits()[p*V:(p+1)*V], got))
			}
			t.Logf("%s: training forward vs infer: max relative logit error %.2e", arch, worst)
			if worst > 1e-4 {
				t.Fatalf("%s: training model's logits differ from infer's by %.3e relative (limit 1e-4)", arch, worst)
			}
		})
	}
}
