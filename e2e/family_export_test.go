package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/internal/peer"
	"github.com/moe-llm/moe/internal/testgguf"
)

// TestFamiliesExport runs `moe export` on the f32 file of each family
// fixture (infer/testdata/family) at f32 and q8_0 and checks that moe
// generates from the f32 export what it generates from the fixture, and,
// where llama.cpp's llama-simple is built, that llama.cpp loads every
// export and prints moe's greedy text for the f32 ones (and gpt-oss's
// q8_0 one; llama-simple's f16 KV cache parts from moe at near-ties in
// other q8_0 texts, see TestFamiliesGenerate).
func TestFamiliesExport(t *testing.T) {
	bin := llamaSimple()
	const prompt, n = "Hello the world", 16
	fams := append(slices.Clone(familyChats), familyChat{arch: "deepseek2v3"}, familyChat{arch: "deepseek2kvb"})
	dir := t.TempDir()
	gen := func(model string) string {
		t.Helper()
		r := ok(t, "generate", "--model", model, "--prompt", prompt, "--max-tokens", fmt.Sprint(n), "--temperature", "0")
		return strings.TrimSuffix(r.stdout, "\n")
	}
	for _, fam := range fams {
		src := familyFile(t, fam.arch, "f32")
		want := gen(src)
		if want == "" {
			t.Fatalf("%s: moe generates nothing from the fixture; the comparison would prove nothing", fam.arch)
		}
		for _, typ := range []string{"f32", "q8_0"} {
			out := filepath.Join(dir, fam.arch+"-"+typ+".gguf")
			r := ok(t, "export", "--model", src, "--out", out, "--type", typ, "--name", "exported")
			if !strings.Contains(r.stdout, "wrote "+out) {
				t.Errorf("%s %s: export printed %q", fam.arch, typ, r.stdout)
			}
			got := gen(out)
			if typ == "f32" && got != want {
				t.Errorf("%s: moe generates %q from the export, %q from the fixture", fam.arch, got, want)
			}
			if bin == "" {
				continue
			}
			s := peer.Simple(t, bin, out, n, prompt) // every export loads in llama.cpp
			if typ == "q8_0" && fam.arch != "gpt-oss" {
				continue
			}
			if s != fam.promptPrefix+prompt+got {
				t.Errorf("%s %s: llama.cpp %q, moe %q", fam.arch, typ, s, fam.promptPrefix+prompt+got)
			}
		}
	}
	if bin == "" {
		t.Log("llama.cpp's llama-simple is not built here: moe side only (set MOE_LLAMA_CPP to a built llama.cpp tree, or MOE_LLAMA_SIMPLE)")
	}
}

// TestFamiliesFinetuneExport exports the zero-step fine-tune of each family
// fixture the training model holds (a run directory whose config has the
// family's pieces: q/k norms, biases, a gated shared expert, Granite's
// scales, gpt-oss's sinks and biases) and checks the file is of the
// fixture's architecture, carries its chat template, and generates in moe
// (and, where llama-simple is built, in llama.cpp) the fixture's greedy
// text.
func TestFamiliesFinetuneExport(t *testing.T) {
	dir := t.TempDir()
	chat := writeFile(t, dir, "chat.jsonl", `{"messages":[{"role":"user","content":"Hello"},{"role":"assistant","content":"Hello the world"}]}`+"\n")
	bin := llamaSimple()
	const prompt, n = "Hello the world", 16
	for _, fam := range familyChats {
		if fam.arch == "deepseek2" { // latent attention: not a training model
			continue
		}
		src := familyFile(t, fam.arch, "f32")
		run := filepath.Join(dir, fam.arch)
		seqLen := "256"
		if fam.arch == "gpt-oss" {
			seqLen = "1024" // the harmony template's system preamble is long
		}
		ok(t, "finetune", "--model", src, "--data", chat, "--out", run, "--steps", "0", "--seq-len", seqLen, "--quiet")
		out := filepath.Join(dir, fam.arch+".gguf")
		ok(t, "export", "--model", run, "--out", out)
		for _, key := range []string{"general.architecture", "tokenizer.chat_template"} {
			if got, want := ggufValue(t, out, key), ggufValue(t, src, key); got != want || got == nil {
				t.Errorf("%s: export's %s %.60v, the fixture's %.60v", fam.arch, key, got, want)
			}
		}
		gen := func(model string) string {
			r := ok(t, "generate", "--model", model, "--prompt", prompt, "--max-tokens", fmt.Sprint(n), "--temperature", "0")
			return strings.TrimSuffix(r.stdout, "\n")
		}
		want := gen(src)
		if got := gen(out); got != want {
			t.Errorf("%s: moe generates %q from the fine-tune's export, %q from the fixture", fam.arch, got, want)
		}
		if bin == "" {
			continue
		}
		if s := peer.Simple(t, bin, out, n, prompt); s != fam.promptPrefix+prompt+want {
			t.Errorf("%s: llama.cpp %q on the fine-tune's export, moe %q on the fixture", fam.arch, s, fam.promptPrefix+prompt+want)
		}
	}
}

// ggufValue returns the metadata value key of the GGUF file at path (nil
// when absent).
func ggufValue(t *testing.T, path, key string) any {
	t.Helper()
	f := testgguf.Open(t, path)
	v, _ := f.Get(key)
	return v
}
