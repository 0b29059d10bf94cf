package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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
	const prompt, n = "Hello the world", "16"
	fams := append(slices.Clone(familyChats), familyChat{arch: "deepseek2v3"}, familyChat{arch: "deepseek2kvb"})
	dir := t.TempDir()
	gen := func(model string) string {
		t.Helper()
		r := ok(t, "generate", "--model", model, "--prompt", prompt, "--max-tokens", n, "--temperature", "0")
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
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			b, err := exec.CommandContext(ctx, bin, "-m", out, "-n", n, prompt).Output()
			cancel()
			if err != nil {
				t.Fatalf("llama-simple %s %s: %v", fam.arch, typ, err)
			}
			if typ == "q8_0" && fam.arch != "gpt-oss" {
				continue
			}
			if s := strings.TrimSuffix(string(b), "\n"); s != fam.promptPrefix+prompt+got {
				t.Errorf("%s %s: llama.cpp %q, moe %q", fam.arch, typ, s, fam.promptPrefix+prompt+got)
			}
		}
	}
	if bin == "" {
		t.Log("llama.cpp's llama-simple is not built here: moe side only (set MOE_LLAMA_CPP to a built llama.cpp tree, or MOE_LLAMA_SIMPLE)")
	}
}
