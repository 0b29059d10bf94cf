package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/safetensors"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// interchangeRun writes a run directory with a random-weight tiny MoE and a
// small trained tokenizer; it returns the directory and the weights.
func interchangeRun(t *testing.T) (string, *config.Config, []float32) {
	t.Helper()
	text := strings.Repeat("The cat sat on the mat. The dog ate the cat's dinner, 42 times! ", 30)
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte(text)) }, 300)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{ModelType: config.TypeMixtral, VocabSize: tok.VocabSize(), HiddenSize: 32, IntermediateSize: 64,
		NumLayers: 2, NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64, RopeTheta: 10000, RMSNormEps: 1e-5,
		NumExperts: 4, ExpertsPerToken: 2, RouterOrder: config.RouterTopKSoftmax, HiddenAct: "silu"}
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for i := range w.Flat {
		w.Flat[i] = float32(r.NormFloat64() * 0.3)
	}
	dir := t.TempDir()
	if _, err := checkpoint.Save(dir, checkpoint.Header{Step: 1, Config: cfg}, []checkpoint.Tensor{{Name: checkpoint.SectionWeights, Data: w.Flat}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Save(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	if err := tok.Save(filepath.Join(dir, tokenizer.FileName)); err != nil {
		t.Fatal(err)
	}
	return dir, cfg, w.Flat
}

func moeCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExportImportCLI(t *testing.T) {
	src, cfg, flat := interchangeRun(t)
	tmp := t.TempDir()
	f32 := filepath.Join(tmp, "m.gguf")
	if code, _, errs := moeCLI("export", "--model", src, "--out", f32); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	q8 := filepath.Join(tmp, "m-q8.gguf")
	if code, _, errs := moeCLI("export", "--model", src, "--out", q8, "--type", "q8_0"); code != 0 {
		t.Fatalf("export q8_0: exit %d: %s", code, errs)
	}

	// GGUF → run directory gives back the exact weights.
	imp := filepath.Join(tmp, "imported")
	cfg2, w2 := importRun(t, f32, imp)
	if cfg2.NumExperts != cfg.NumExperts || len(w2.Flat) != len(flat) {
		t.Fatalf("imported config %+v", cfg2)
	}
	for i := range flat {
		if w2.Flat[i] != flat[i] {
			t.Fatalf("weight %d: %v, want %v", i, w2.Flat[i], flat[i])
		}
	}
	if code, _, _ := moeCLI("import", "--in", f32, "--out", imp); code != 1 {
		t.Errorf("import over an existing run: exit %d, want 1", code)
	}

	// Greedy generation agrees between the run directory, the f32 GGUF and
	// the re-imported run.
	gen := func(model string) string {
		code, out, errs := moeCLI("generate", "--model", model, "--prompt", "The cat", "--max-tokens", "8", "--temperature", "0", "--json", "--ignore-eot")
		if code != 0 {
			t.Fatalf("generate %s: exit %d: %s", model, code, errs)
		}
		var res struct{ Text string }
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("generate %s: %v in %q", model, err, out)
		}
		return res.Text
	}
	want := gen(src)
	if want == "" {
		t.Fatal("greedy generation from the run directory is empty; the comparison would prove nothing")
	}
	for _, m := range []string{f32, imp} {
		if got := gen(m); got != want {
			t.Errorf("generate %s: %q, want %q (as from the run directory)", m, got, want)
		}
	}
	gen(q8) // quantized: must load and run

	// A GGUF file re-exports at another type.
	q4 := filepath.Join(tmp, "m-q4.gguf")
	if code, _, errs := moeCLI("export", "--model", f32, "--out", q4, "--type", "q4_0"); code != 0 {
		t.Fatalf("re-export gguf → q4_0: exit %d: %s", code, errs)
	}
	gen(q4)

	// Hugging Face safetensors → run directory (tokenizer from the source run).
	hf := filepath.Join(tmp, "hf")
	if err := safetensors.SaveHF(context.Background(), hf, cfg, w2, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := moeCLI("import", "--in", hf, "--out", filepath.Join(tmp, "x")); code != 1 || !strings.Contains(errs, "--tokenizer") {
		t.Errorf("HF import without --tokenizer: exit %d: %s", code, errs)
	}
	hfRun := filepath.Join(tmp, "hfrun")
	if code, _, errs := moeCLI("import", "--in", hf, "--out", hfRun, "--tokenizer", src); code != 0 {
		t.Fatalf("HF import: exit %d: %s", code, errs)
	}
	if got := gen(hfRun); got != want {
		t.Errorf("generate from the HF import: %q, want %q", got, want)
	}

	// moe export --format hf writes tokenizer.json too: import needs nothing else.
	hf2 := filepath.Join(tmp, "hf2")
	if code, _, errs := moeCLI("export", "--model", src, "--format", "hf", "--out", hf2); code != 0 {
		t.Fatalf("export --format hf: exit %d: %s", code, errs)
	}
	hf2Run := filepath.Join(tmp, "hf2run")
	if code, _, errs := moeCLI("import", "--in", hf2, "--out", hf2Run); code != 0 {
		t.Fatalf("HF import with tokenizer.json: exit %d: %s", code, errs)
	}
	if got := gen(hf2Run); got != want {
		t.Errorf("generate from the HF export/import: %q, want %q", got, want)
	}
	// A Hugging Face directory exports to GGUF (llama.cpp's converter
	// layout), named after the directory.
	hfGGUF := filepath.Join(tmp, "hf2.gguf")
	if code, out, errs := moeCLI("export", "--model", hf2, "--out", hfGGUF); code != 0 || !strings.Contains(out, "wrote "+hfGGUF) {
		t.Fatalf("export of a Hugging Face directory: exit %d: %s%s", code, out, errs)
	}
	if got := gen(hfGGUF); got != want {
		t.Errorf("generate from the Hugging Face directory's GGUF export: %q, want %q", got, want)
	}
	// moe quantize takes the directory too, with llama-quantize's mixes.
	hfQ := filepath.Join(tmp, "hf2-q4_k_m.gguf")
	if code, out, errs := moeCLI("quantize", hf2, hfQ, "q4_k_m"); code != 0 || !strings.Contains(out, "wrote "+hfQ) {
		t.Fatalf("quantize of a Hugging Face directory: exit %d: %s%s", code, out, errs)
	}
	gen(hfQ)
	if f, err := gguf.Open(hfGGUF); err != nil {
		t.Error(err)
	} else {
		if n, _ := f.Get("general.name"); n != "hf2" {
			t.Errorf("general.name %v, want the directory's name", n)
		}
		f.Close()
	}
	// Imports keep the chat template the file carries (moe's own here).
	for _, run := range []string{imp, hf2Run} {
		tok, err := tokenizer.Load(filepath.Join(run, tokenizer.FileName))
		if err != nil {
			t.Fatal(err)
		}
		tmpl, _, err := infer.ReadChat(run, tok)
		if err != nil || tmpl == nil || tmpl.Source() != chattmpl.Moe {
			t.Errorf("%s: chat template %v, %v; want moe's", run, tmpl, err)
		}
	}
}

func TestExportImportUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"export"}, 2},
		{[]string{"export", "--model", "x", "--out", "y.gguf", "--type", "q7_k"}, 2},
		{[]string{"export", "--model", filepath.Join(t.TempDir(), "missing"), "--out", "y.gguf"}, 1},
		{[]string{"import", "--in", "x.gguf"}, 2},
		{[]string{"import", "--in", filepath.Join(t.TempDir(), "missing.gguf"), "--out", t.TempDir()}, 1},
		{[]string{"export", "--model", "x", "--out", "d", "--format", "hf", "--type", "q4_0"}, 2},
		{[]string{"export", "--model", "x", "--out", "d", "--format", "onnx"}, 2},
		{[]string{"export", "--help"}, 0},
		{[]string{"import", "--help"}, 0},
	} {
		code, _, errs := moeCLI(c.args...)
		if code != c.code {
			t.Errorf("moe %v: exit %d, want %d (%s)", c.args, code, c.code, errs)
		}
		if c.code == 1 && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("moe %v: error is not one line: %q", c.args, errs)
		}
	}
}

// importRun runs moe import of in (a .gguf file or a Hugging Face
// directory) into the run directory out and loads what it wrote.
func importRun(t *testing.T, in, out string) (*config.Config, *model.Weights) {
	t.Helper()
	if code, _, errs := moeCLI("import", "--in", in, "--out", out); code != 0 {
		t.Fatalf("import %s: exit %d: %s", in, code, errs)
	}
	cfg, w, err := checkpoint.LoadModel(out)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, w
}
