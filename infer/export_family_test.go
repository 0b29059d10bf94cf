package infer

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/internal/peer"
	"github.com/moe-llm/moe/internal/testgguf"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/safetensors"
	"github.com/moe-llm/moe/tokenizer"
)

// exportHF writes the Hugging Face directory dir as a GGUF file of type
// typ (gguf.ExportMapped, as moe export does) and returns its path.
func exportHF(t *testing.T, dir, typ string) string {
	t.Helper()
	mm, err := OpenHF(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	mix, err := gguf.ParseMix(typ)
	if err != nil {
		t.Fatal(err)
	}
	opt := gguf.ExportOptions{Mix: mix, Name: "x"}
	tok := mm.Tok
	tmpl, _, err := ReadChat(dir, tok)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl != nil {
		opt.ChatTemplate = tmpl.Source()
	}
	out := filepath.Join(t.TempDir(), "x.gguf")
	if err := gguf.ExportMapped(context.Background(), out, mm, opt); err != nil {
		t.Fatal(err)
	}
	return out
}

// llamaSimple runs llama.cpp's llama-simple on model for n greedy tokens
// of prompt and returns what it prints; "" (logged) when llama.cpp is not
// built here.
func llamaSimple(t *testing.T, model string, n int, prompt string) string {
	t.Helper()
	bin := peer.Bin("llama-simple")
	if bin == "" {
		t.Logf("llama.cpp's llama-simple is not built here: moe side only (set %s to a built llama.cpp tree)", peer.Env)
		return ""
	}
	return peer.Simple(t, bin, model, n, prompt)
}

// qwenTok returns the qwen3moe fixture's tokenizer.
func qwenTok(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := gguf.ReadTokenizer(filepath.Join("testdata", "family", "qwen3moe-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// mutatedModel returns testConfig(true) over tok's vocabulary changed by
// mut, with randomWeights(3, 0.3) for it.
func mutatedModel(t *testing.T, tok *tokenizer.Tokenizer, mut func(*config.Config)) (*config.Config, *model.Weights) {
	t.Helper()
	cfg := testConfig(true)
	cfg.VocabSize = tok.VocabSize()
	mut(cfg)
	return cfg, randomWeights(t, cfg, 3, 0.3)
}

// sameLayout fails unless the GGUF files got and want hold the same
// tensors (names, dims, types, bytes) and the same architecture and
// {arch}.* keys. The tokenizer keys are not
// compared: a Hugging Face directory's vocabulary is read back through
// tokenizer.json (which has no scores), checked by the greedy tokens.
//
// With f16Fallback a tensor the fixture stores as F32 may be F16 (with the
// F32 values rounded): llama.cpp's converter and llama-quantize fall back
// to F16 for rows that are not whole blocks, make_family.py to F32.
func sameLayout(t *testing.T, got, want string, f16Fallback bool) {
	t.Helper()
	g := testgguf.Open(t, got)
	w := testgguf.Open(t, want)
	arch, _ := w.Get("general.architecture")
	if a, _ := g.Get("general.architecture"); a != arch {
		t.Fatalf("architecture %v, want %v", a, arch)
	}
	for _, kv := range w.KV {
		if !strings.HasPrefix(kv.Key, fmt.Sprint(arch)+".") {
			continue
		}
		v, ok := g.Get(kv.Key)
		if !ok {
			t.Errorf("missing metadata %s = %v", kv.Key, kv.Value)
		} else if fmt.Sprint(v) != fmt.Sprint(kv.Value) {
			t.Errorf("metadata %s = %v, want %v", kv.Key, v, kv.Value)
		}
	}
	for _, kv := range g.KV {
		if _, ok := w.Get(kv.Key); !ok && strings.HasPrefix(kv.Key, fmt.Sprint(arch)+".") {
			t.Errorf("extra metadata %s = %v", kv.Key, kv.Value)
		}
	}
	if len(g.Tensors) != len(w.Tensors) {
		t.Errorf("%d tensors, want %d", len(g.Tensors), len(w.Tensors))
	}
	for i := range w.Tensors {
		wt := &w.Tensors[i]
		gt, ok := g.Tensor(wt.Name)
		if !ok {
			t.Errorf("missing tensor %s", wt.Name)
			continue
		}
		if f16Fallback && reflect.DeepEqual(gt.Dims, wt.Dims) && gt.Type == gguf.F16 && wt.Type == gguf.F32 {
			w32 := make([]float32, wt.Elements())
			if err := w.ReadFloat32(wt.Name, w32); err != nil {
				t.Fatal(err)
			}
			h, err1 := gguf.Encode(gguf.F16, w32)
			gb, err2 := g.TensorData(gt)
			if err1 != nil || err2 != nil || !bytes.Equal(gb, h) {
				t.Errorf("tensor %s: not the fixture's values rounded to f16 (%v, %v)", wt.Name, err1, err2)
			}
			continue
		}
		if !reflect.DeepEqual(gt.Dims, wt.Dims) || gt.Type != wt.Type {
			t.Errorf("tensor %s: %v %s, want %v %s", wt.Name, gt.Dims, gt.Type, wt.Dims, wt.Type)
			continue
		}
		gb, err1 := g.TensorData(gt)
		wb, err2 := w.TensorData(wt)
		if err1 != nil || err2 != nil || !bytes.Equal(gb, wb) {
			t.Errorf("tensor %s: bytes differ (%v, %v)", wt.Name, err1, err2)
		}
	}
}

// TestExportHFDirLayout writes each family fixture as a Hugging Face
// directory, exports that to GGUF as moe export does, and checks the file
// is the converter's: the fixture's tensors byte for byte, its
// architecture keys and chat template; at q8_0 the file's tensors are the
// q8_0 fixture's (gguf-py's quantization). moe reading the exported file
// computes the fixture's logits and greedy tokens, and where llama.cpp is
// built (MOE_LLAMA_CPP) llama-simple prints the same text for the exported
// file as for the fixture.
func TestExportHFDirLayout(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	for _, arch := range hfFamilies {
		t.Run(arch, func(t *testing.T) {
			path := filepath.Join("testdata", "family", arch+"-f32.gguf")
			dir := writeHFFromGGUF(t, path, hfWrite{dtype: safetensors.F32})
			out := exportHF(t, dir, "f32")
			sameLayout(t, out, path, false)
			if got, want := loadT(t, out, pool).Template, loadT(t, path, pool).Template; want == nil || got == nil || got.Source() != want.Source() {
				t.Errorf("the chat template did not go with the model")
			}
			checkSameGreedy(t, loadT(t, out, pool), loadT(t, path, pool), []int32{84, 258, 39, 101, 3, 200}, 16, 0)
			q8 := exportHF(t, dir, "q8_0")
			sameLayout(t, q8, filepath.Join("testdata", "family", arch+"-q8_0.gguf"), true)
			if got, want := llamaSimple(t, out, 16, "Hello the world"), llamaSimple(t, path, 16, "Hello the world"); got != want {
				t.Errorf("llama-simple: exported %q, fixture %q", got, want)
			}
		})
	}
}

// TestExportHFDirBF16 checks that a bfloat16 Hugging Face directory
// exports at bf16 with its matrices copied as stored (the export computes
// exactly what the directory does) and at q8_0 as moe quantize re-types
// the bf16 export.
func TestExportHFDirBF16(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	dir := writeHFFromGGUF(t, filepath.Join("testdata", "family", "qwen2moe-f32.gguf"), hfWrite{dtype: safetensors.BF16})
	src := loadT(t, dir, pool)
	bf := exportHF(t, dir, "bf16")
	f, err := gguf.Open(bf)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := f.Tensor("blk.0.attn_q.weight")
	norm, _ := f.Tensor("blk.0.attn_norm.weight")
	if q == nil || q.Type != gguf.BF16 || norm == nil || norm.Type != gguf.F32 {
		t.Errorf("bf16 export: attn_q %v, attn_norm %v; want BF16 and F32", q, norm)
	}
	f.Close()
	checkSameGreedy(t, loadT(t, bf, pool), src, []int32{84, 258, 39, 101, 3, 200}, 16, 0)
	// At q8_0: what moe quantize (llama-quantize's rules) makes of the bf16
	// export, byte for byte.
	mix, err := gguf.ParseMix("q8_0")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(t.TempDir(), "q.gguf")
	if _, err := gguf.QuantizeFile(context.Background(), bf, want, gguf.QuantizeOptions{Mix: mix}); err != nil {
		t.Fatal(err)
	}
	sameLayout(t, exportHF(t, dir, "q8_0"), want, false)
}

// TestExportHFDirLayoutOSSDeepseek is TestExportHFDirLayout for the
// families with their own Hugging Face readers: gpt-oss and deepseek2 (V2
// with and without q LoRA, V3 routing). The fixture deepseek2kvb stores
// the older single attn_kv_b; its export is written in the split layout
// the current converter writes (the deepseek2 fixture's), and compared by
// logits.
func TestExportHFDirLayoutOSSDeepseek(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	for _, name := range []string{"gpt-oss", "deepseek2", "deepseek2v3", "deepseek2kvb"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "family", name+"-f32.gguf")
			var dir string
			if name == "gpt-oss" {
				dir = ossHFDir(t, "f32", safetensors.F32, true)
			} else {
				dir = ds2HFDir(t, name+"-f32")
			}
			out := exportHF(t, dir, "f32")
			if name != "deepseek2kvb" {
				sameLayout(t, out, path, false)
			}
			checkSameGreedy(t, loadT(t, out, pool), loadT(t, path, pool), []int32{84, 258, 39, 101, 3, 200}, 16, 0)
			if got, want := llamaSimple(t, out, 16, "Hello the world"), llamaSimple(t, path, 16, "Hello the world"); got != want {
				t.Errorf("llama-simple: exported %q, fixture %q", got, want)
			}
			if name == "gpt-oss" {
				// gpt-oss's own config leaves YaRN untruncated, which
				// llama.cpp computes truncated: refused unless inexact.
				mm, err := OpenHF(ossHFDir(t, "f32", safetensors.F32, false))
				if err != nil {
					t.Fatal(err)
				}
				defer mm.Close()
				x := filepath.Join(t.TempDir(), "x.gguf")
				err = gguf.ExportMapped(context.Background(), x, mm, gguf.ExportOptions{Type: gguf.F32})
				if err == nil || !strings.Contains(err.Error(), "untruncated") || strings.Contains(err.Error(), "\n") {
					t.Errorf("truncate: false: got %v, want one line naming the untruncated YaRN range", err)
				}
				if err := gguf.ExportMapped(context.Background(), x, mm, gguf.ExportOptions{Type: gguf.F32, AllowInexact: true}); err != nil {
					t.Errorf("truncate: false with AllowInexact: %v", err)
				}
				// The published layout: MXFP4 experts (kept as stored) and
				// Q8_0 attention, from a directory of the q8_0 fixture's
				// values: its tensors byte for byte.
				q8 := exportHF(t, ossHFDir(t, "q8_0", safetensors.F32, true), "q8_0")
				sameLayout(t, q8, filepath.Join("testdata", "family", "gpt-oss-q8_0.gguf"), false)
			}
		})
	}
}

// TestExportTrainedFamilies exports training-model weights that llama.cpp's
// llama architecture cannot hold (gguf.Export, as moe export of a run
// directory does) and checks the file is written in the family's layout
// and that moe reading it computes the weights' logits and greedy tokens:
// per-head q/k norms as qwen3moe, full-width ones as olmoe, a qwen2_moe
// model's gated shared expert and q/k/v biases as qwen2moe, Granite's
// scales and ungated shared expert as granitemoe. Where llama.cpp is built
// (MOE_LLAMA_CPP), llama-simple loads each file and runs it.
func TestExportTrainedFamilies(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	tok := qwenTok(t)
	for name, c := range map[string]struct {
		mut  func(c *config.Config)
		arch string
	}{
		"qk_norm_per_head": {func(c *config.Config) { c.QKNorm, c.QKNormPerHead = true, true }, "qwen3moe"},
		"qk_norm_full": {func(c *config.Config) {
			c.QKNorm, c.RouterOrder = true, config.RouterSoftmaxTopK
			c.NumKVHeads = c.NumHeads // llama.cpp's olmoe norms q and k n_embd wide: no grouped-query attention
		}, "olmoe"},
		"qwen2moe": {func(c *config.Config) {
			c.ModelType, c.RouterOrder, c.QKVBias = config.TypeQwen2MoE, config.RouterSoftmaxTopK, true
			c.SharedExpertIntermediateSize, c.SharedExpertGate = 8, true
		}, "qwen2moe"},
		"granitemoe": {func(c *config.Config) {
			c.ModelType, c.SharedExpertIntermediateSize = config.TypeGraniteMoE, 8
			c.EmbeddingMultiplier, c.ResidualMultiplier, c.AttentionMultiplier, c.LogitsScaling = 1.7, 0.6, 0.3, 2.5
		}, "granitemoe"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, w := mutatedModel(t, tok, c.mut)
			out := filepath.Join(t.TempDir(), "x.gguf")
			if err := gguf.Export(context.Background(), out, cfg, w, tok, gguf.ExportOptions{Name: "x"}); err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			arch, _ := f.Get("general.architecture")
			_, moeKey := f.Get(gguf.KeyMoEConfig)
			f.Close()
			if arch != c.arch || moeKey {
				t.Fatalf("architecture %v (moe.config written: %v), want %s", arch, moeKey, c.arch)
			}
			want, err := New(cfg, w, tok, pool)
			if err != nil {
				t.Fatal(err)
			}
			checkSameGreedy(t, loadT(t, out, pool), want, []int32{84, 258, 39, 101, 3, 200}, 8, 1e-5)
			llamaSimple(t, out, 4, "Hello") // loads and runs in llama.cpp
		})
	}
}

// TestExportTrainedFamiliesRefused checks that training-model weights no
// family's llama.cpp graph computes are refused with one line naming what
// does not fit.
func TestExportTrainedFamiliesRefused(t *testing.T) {
	tok := qwenTok(t)
	for name, c := range map[string]struct {
		mut  func(c *config.Config)
		want string
	}{
		// testConfig has 4 heads over 2 kv heads.
		"olmoe_gqa": {func(c *config.Config) { c.QKNorm, c.RouterOrder = true, config.RouterSoftmaxTopK }, "grouped-query attention"},
		"olmoe_renormalised": {func(c *config.Config) {
			c.QKNorm, c.NumKVHeads = true, c.NumHeads
		}, "top-k weights normalised otherwise"},
		"gpt_oss_shared": {func(c *config.Config) {
			c.ModelType, c.AttentionBias, c.AttentionSinks, c.RouterBias, c.ExpertBias, c.SwiGLULimit = config.TypeGPTOSS, true, true, true, true, 7
			c.SlidingWindow, c.LayerTypes = 4, []string{config.LayerSlidingAttention, config.LayerFullAttention}
			c.SharedExpertIntermediateSize = 8
		}, "a shared expert"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, w := mutatedModel(t, tok, c.mut)
			err := gguf.Export(context.Background(), filepath.Join(t.TempDir(), "x.gguf"), cfg, w, tok, gguf.ExportOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want one line naming %q", err, c.want)
			}
		})
	}
}
