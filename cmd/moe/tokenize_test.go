package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/tokenizer"
)

// writeVocabGGUF writes a vocab-only GGUF (no tensors) holding a byte-level
// BPE whose first merge ("e l") makes "hello" encode as h, el, l, o.
func writeVocabGGUF(t *testing.T, addBOS bool) string {
	t.Helper()
	var tokens []string
	var types []int32
	for b := range 256 {
		tokens = append(tokens, tokenizer.ByteLevelEncode([]byte{byte(b)}))
		types = append(types, tokenizer.TypeNormal)
	}
	tokens = append(tokens, "he", "ll", "el", "<|bos|>")
	types = append(types, tokenizer.TypeNormal, tokenizer.TypeNormal, tokenizer.TypeNormal, tokenizer.TypeControl)
	path := filepath.Join(t.TempDir(), "vocab.gguf")
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "tokenizer.ggml.model", Value: "gpt2"},
		{Key: "tokenizer.ggml.pre", Value: "gpt-2"},
		{Key: "tokenizer.ggml.tokens", Value: tokens},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.merges", Value: []string{"e l", "h e", "l l"}},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(259)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(259)},
		{Key: "tokenizer.ggml.add_bos_token", Value: addBOS},
	}
	if err := gguf.WriteFile(context.Background(), path, kvs, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTokenizeVocabOnlyGGUF(t *testing.T) {
	for _, c := range []struct {
		addBOS bool
		args   []string
		want   string
	}{
		{false, []string{"--ids", "hello"}, "[104, 258, 108, 111]\n"},
		{true, []string{"--ids", "hello"}, "[259, 104, 258, 108, 111]\n"},
		{true, []string{"--ids", "--no-bos", "hello"}, "[104, 258, 108, 111]\n"},
		{false, []string{"--json", "he<|bos|>"}, `{"ids":[256,259],"pieces":["he","<|bos|>"]}` + "\n"},
		{false, []string{"--json", "--no-parse-special", "<|"}, `{"ids":[60,124],"pieces":["<","|"]}` + "\n"},
		{false, []string{"ll"}, "   257 -> \"ll\"\n"},
	} {
		path := writeVocabGGUF(t, c.addBOS)
		var out, errb bytes.Buffer
		if code := run(append([]string{"tokenize", "--model", path}, c.args...), &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errb.String())
		}
		if out.String() != c.want {
			t.Errorf("%v: got %q, want %q", c.args, out.String(), c.want)
		}
	}
}

func TestTokenizeErrors(t *testing.T) {
	path := writeVocabGGUF(t, false)
	checkCLI(t, []cliCase{
		{[]string{"x"}, 2, "--model is required"},
		{[]string{"--model", path}, 2, "give TEXT or --file"},
		{[]string{"--model", path, "--file", path, "x"}, 2, "not both"},
		{[]string{"--model", filepath.Join(t.TempDir(), "none.gguf"), "x"}, 1, "none.gguf"},
	}, "tokenize")
}
