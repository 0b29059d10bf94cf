package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// llamaSimple finds llama.cpp's llama-simple: $MOE_LLAMA_SIMPLE, or
// build/bin/llama-simple under $MOE_LLAMA_CPP (a llama.cpp tree built
// beside the project). Outside checks run exported GGUF files with
// llama.cpp; where it is built, so does this test.
func llamaSimple() string {
	var tree string
	if d := os.Getenv("MOE_LLAMA_CPP"); d != "" {
		tree = filepath.Join(d, "build", "bin", "llama-simple")
	}
	for _, p := range []string{os.Getenv("MOE_LLAMA_SIMPLE"), tree} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

func TestGGUFRunsInLlamaCpp(t *testing.T) {
	bin := llamaSimple()
	if bin == "" {
		t.Skip("llama.cpp's llama-simple is not built here (set MOE_LLAMA_CPP to a built llama.cpp tree, or MOE_LLAMA_SIMPLE)")
	}
	base, _ := trained(t)
	dir := t.TempDir()
	for _, typ := range []string{"f32", "q8_0"} { // q4_0 parts at near-ties: llama.cpp rounds activations to q8_0
		g := filepath.Join(dir, typ+".gguf")
		ok(t, "export", "--model", base, "--out", g, "--type", typ)
		for _, prompt := range []string{"And God said", "In the beginning"} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, bin, "-m", g, "-n", "12", prompt).Output()
			cancel()
			if err != nil {
				t.Fatalf("llama-simple %s: %v", typ, err)
			}
			// Greedy in both: llama-simple prints the prompt and then the text.
			r := ok(t, "generate", "--model", g, "--prompt", prompt, "--max-tokens", "12", "--temperature", "0")
			got := strings.TrimSuffix(string(out), "\n")
			want := prompt + strings.TrimSuffix(r.stdout, "\n")
			if got != want {
				t.Errorf("%s, prompt %q: llama.cpp %q, moe %q", typ, prompt, got, want)
			}
		}
	}
}
