// Package peer finds llama.cpp, the implementation tests compare moe with,
// through the environment variable MOE_LLAMA_CPP: a llama.cpp source tree
// (models/, gguf-py/) with its tools built under build/bin. Only tests
// import it.
package peer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Env names the environment variable that gives the llama.cpp tree.
const Env = "MOE_LLAMA_CPP"

// Root returns $MOE_LLAMA_CPP, or skips tb with a message naming the
// variable and what the test needs from the tree.
func Root(tb testing.TB, needs string) string {
	tb.Helper()
	root := os.Getenv(Env)
	if root == "" {
		tb.Skipf("%s is not set (a llama.cpp source tree with %s)", Env, needs)
	}
	return root
}

// Bin returns $MOE_LLAMA_CPP/build/bin/name when the variable is set and
// that file exists, else "".
func Bin(name string) string {
	root := os.Getenv(Env)
	if root == "" {
		return ""
	}
	p := filepath.Join(root, "build", "bin", name)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return ""
	}
	return p
}

// NeedBin returns Bin(name), or skips tb with a message naming the
// variable when the tool is not built.
func NeedBin(tb testing.TB, name string) string {
	tb.Helper()
	p := Bin(name)
	if p == "" {
		tb.Skipf("llama.cpp's %s is not built here (set %s to a llama.cpp source tree with its tools built under build/bin)", name, Env)
	}
	return p
}

// Simple runs llama.cpp's llama-simple (bin) on model for n greedy tokens
// of prompt and returns what it prints — the prompt's tokens as text (BOS
// and a SentencePiece space prefix included, where the vocabulary adds
// them) and then the generated text — without the final newline. It fails
// tb when the tool fails, runs past a minute or prints nothing.
func Simple(tb testing.TB, bin, model string, n int, prompt string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, "-m", model, "-n", strconv.Itoa(n), prompt).Output()
	if err != nil {
		tb.Fatalf("llama-simple %s: %v", model, err)
	}
	if len(b) == 0 {
		tb.Fatalf("llama-simple %s printed nothing", model)
	}
	return strings.TrimSuffix(string(b), "\n")
}
