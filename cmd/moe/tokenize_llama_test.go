package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/internal/peer"
)

// crossTexts are texts for the llama-tokenize cross-check: specials,
// spaces after specials, CJK, emoji, invalid UTF-8, numbers, code.
var crossTexts = []string{
	"Hello world! 你好 <s> 123",
	"<|endoftext|>The quick brown fox\n\n  jumps  over 12345 lazy dogs.</s>",
	"def f(x):\n\treturn x**2  # 😀👍🏽 e\u0301cole\r\n",
	"\xff\xfe bad \x80 bytes \xe3\x81 truncated",
	"  leading spaces and trailing   ",
	"ÀÉÎ ﬁ ＡＢＣ１２３ 가나다 カタカナ",
}

// TestTokenizeMatchesLlamaTokenize runs llama.cpp's llama-tokenize
// (MOE_LLAMA_CPP/build/bin) and moe tokenize on the same vocabulary files
// and texts and compares the ids (BOS/EOS as the file asks, control tokens
// parsed: both tools' defaults).
func TestTokenizeMatchesLlamaTokenize(t *testing.T) {
	root, bin := llamaTokenize(t)
	vocabs, _ := filepath.Glob(filepath.Join(root, "models", "ggml-vocab-*.gguf"))
	dir := t.TempDir()
	n := 0
	for _, vocab := range vocabs {
		if strings.Contains(vocab, "bert") {
			continue // WordPiece: not a model moe reads
		}
		for i, text := range crossTexts {
			file := filepath.Join(dir, "t.txt")
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if g, w := bothTokenize(t, bin, vocab, file); g != w {
				t.Errorf("%s text %d %q:\nmoe        %s\nllama.cpp  %s", filepath.Base(vocab), i, text, g, w)
			}
			n++
		}
	}
	t.Logf("%d vocabulary/text pairs compared", n)
}

// llamaTokenize returns MOE_LLAMA_CPP and its built llama-tokenize, or
// skips the test.
func llamaTokenize(t *testing.T) (root, bin string) {
	t.Helper()
	return peer.Root(t, "models/ggml-vocab-*.gguf"), peer.NeedBin(t, "llama-tokenize")
}

// bothTokenize returns the ids moe tokenize and llama-tokenize print for
// the text in file with vocab (both tools' defaults: BOS/EOS as the file
// asks, control tokens parsed).
func bothTokenize(t *testing.T, bin, vocab, file string) (moe, llama string) {
	t.Helper()
	cmd := exec.Command(bin, "-m", vocab, "-f", file, "--ids", "--log-disable", "--no-escape")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %s", bin, err, errb.String())
	}
	var got, merr bytes.Buffer
	if code := run([]string{"tokenize", "--model", vocab, "--file", file, "--ids"}, &got, &merr); code != 0 {
		t.Fatalf("moe tokenize %s: %s", vocab, merr.String())
	}
	return strings.TrimSpace(got.String()), lastLine(out.String())
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// TestFamilyPromptsTokenizeLikeLlamaTokenize: on each family fixture
// (infer/testdata/family), the chat prompt its template renders (a system
// message, an earlier reply; BOS text dropped where the vocabulary adds
// BOS) and the cross-check texts tokenize to llama-tokenize's ids, BOS
// included where the file asks for it.
func TestFamilyPromptsTokenizeLikeLlamaTokenize(t *testing.T) {
	_, bin := llamaTokenize(t)
	pool := compute.NewPool(1)
	defer pool.Close()
	dir := t.TempDir()
	msgs := []infer.Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Hello there"},
		{Role: "assistant", Content: "Hi. What is it?"}, {Role: "user", Content: "And the other"}}
	for _, arch := range []string{"qwen3moe", "olmoe", "qwen2moe", "granitemoe", "llama", "gpt-oss"} {
		path := filepath.Join("..", "..", "infer", "testdata", "family", arch+"-f32.gguf")
		m, err := infer.Load(path, pool)
		if err != nil {
			t.Fatal(err)
		}
		prompt, err := m.ChatPrompt(msgs, true)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i, text := range append([]string{prompt}, crossTexts...) {
			file := filepath.Join(dir, "t.txt")
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if g, w := bothTokenize(t, bin, path, file); g != w {
				t.Errorf("%s text %d %q:\nmoe        %s\nllama.cpp  %s", arch, i, text, g, w)
			}
		}
	}
}
