package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/gguf"
)

func TestQuantizeCLI(t *testing.T) {
	src, _, _ := interchangeRun(t)
	tmp := t.TempDir()
	// Run directory → q4_k_m (through export), then GGUF → q8_0 and q6_k.
	qkm := filepath.Join(tmp, "m-q4_k_m.gguf")
	if code, out, errs := moeCLI("quantize", src, qkm, "Q4_K_M"); code != 0 || !strings.Contains(out, "q4_k_m") {
		t.Fatalf("quantize run dir: exit %d: %s%s", code, out, errs)
	}
	f32 := filepath.Join(tmp, "m.gguf")
	if code, _, errs := moeCLI("export", "--model", src, "--out", f32); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	q8 := filepath.Join(tmp, "m-q8_0.gguf")
	if code, out, errs := moeCLI("quantize", f32, q8, "q8_0"); code != 0 || !strings.Contains(out, "re-typed") {
		t.Fatalf("quantize gguf: exit %d: %s%s", code, out, errs)
	}
	for _, c := range []struct {
		path string
		ft   uint32
		name string
		want gguf.GGMLType
	}{
		// hidden size 32: rows are not whole 256-blocks, so q4_K falls back
		// to q5_0 and the output's q6_K to q8_0, as llama-quantize does.
		{qkm, 15, "blk.0.attn_q.weight", gguf.Q5_0},
		{qkm, 15, "output.weight", gguf.Q8_0},
		{qkm, 15, "blk.0.attn_norm.weight", gguf.F32},
		{q8, 7, "blk.1.ffn_up_exps.weight", gguf.Q8_0},
	} {
		f, err := gguf.Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		ti, ok := f.Tensor(c.name)
		if ft, _ := f.Get("general.file_type"); ft != c.ft || !ok || ti.Type != c.want {
			t.Errorf("%s: file type %v, %s %v; want %d, %s", filepath.Base(c.path), ft, c.name, ti, c.ft, c.want)
		}
		f.Close()
	}
	for _, m := range []string{qkm, q8} {
		if code, out, errs := moeCLI("generate", "--model", m, "--prompt", "The cat", "--max-tokens", "4", "--temperature", "0"); code != 0 || out == "" {
			t.Errorf("generate %s: exit %d: %s", m, code, errs)
		}
	}
	// Re-quantizing is refused unless asked for, naming the tensor.
	code, _, errs := moeCLI("quantize", q8, filepath.Join(tmp, "x.gguf"), "q4_0")
	if code != 1 || !strings.Contains(errs, "already quantized") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("requantize: exit %d: %q", code, errs)
	}
	if code, _, errs := moeCLI("quantize", "--allow-requantize", q8, filepath.Join(tmp, "x.gguf"), "q4_0"); code != 0 {
		t.Errorf("requantize allowed: exit %d: %s", code, errs)
	}
}

func TestQuantizeUsage(t *testing.T) {
	checkCLI(t, []cliCase{
		{[]string{"quantize"}, 2, "want IN OUT TYPE"},
		{[]string{"quantize", "a.gguf", "b.gguf"}, 2, "want IN OUT TYPE"},
		{[]string{"quantize", "a.gguf", "b.gguf", "q7_k"}, 2, "q4_k_m"},
		{[]string{"quantize", "a.gguf", "a.gguf", "q8_0"}, 2, "same file"},
		{[]string{"quantize", filepath.Join(t.TempDir(), "missing.gguf"), "b.gguf", "q8_0"}, 1, "no such file"},
		{[]string{"quantize", "--help"}, 0, ""},
	})
}
