package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/tiktoken-go/tokenizer/codec"
)

// TestPreTokenizersMatchLlamaTokenize covers the pre-tokenizers that
// llama.cpp ships no test vocabulary for: o200k's tokens (those a test text
// can reach, merges derived from the ranks) are written as vocab-only GGUFs
// naming each pre-tokenizer, and moe tokenize must give llama-tokenize's ids.
func TestPreTokenizersMatchLlamaTokenize(t *testing.T) {
	_, bin := llamaTokenize(t)
	text := strings.Join(crossTexts, "\n") + " nai\u0308ve Cafe\u0301 re\u0301sume\u0301s Zoe\u0308 HTTPServer isOK DON'T e\u0301cole aÉb 東京は日本 1234567 ~a `x` x'ſ\n\n  "
	ref := codec.NewO200kBase()
	const n = 199998
	full := make([][]byte, n)
	for id := range full {
		s, err := ref.Decode([]uint{uint(id)})
		if err != nil {
			t.Fatal(err)
		}
		full[id] = []byte(s)
	}
	rank, err := tokenizer.NewRanked(full, map[string]int32{tokenizer.EndOfText: 199999}, "o200k")
	if err != nil {
		t.Fatal(err)
	}
	// Keep the tokens that are substrings of some piece of any pre-tokenizer.
	keep := make([][]byte, n)
	for id, b := range full {
		if len(b) == 1 {
			keep[id] = b // every single byte stays a token
		}
	}
	clean := []byte(strings.ToValidUTF8(text, "\uFFFD"))
	pres := []string{"gpt-4o", "qwen2", "llama-bpe", "deepseek-v3", "deepseek-llm", "kimi-k2", "olmo", "command-r", "default", "bailingmoe"}
	for _, pre := range append(pres, "o200k") {
		tokenizer.Split(pre, clean, func(p []byte) {
			for i := range p {
				for j := i + 2; j <= len(p) && j-i <= 24; j++ {
					if ids := rank.Encode(p[i:j]); len(ids) == 1 {
						keep[ids[0]] = full[ids[0]]
					}
				}
			}
		})
	}
	sub, err := tokenizer.NewRanked(keep, map[string]int32{tokenizer.EndOfText: 199999}, "o200k")
	if err != nil {
		t.Fatal(err)
	}
	spec := tokenizer.NewSpec(tokenizer.ModelBPE)
	spec.EOS = 199999
	for id := range int32(200000) {
		switch b := sub.TokenBytes(id); {
		case sub.IsSpecial(id):
			spec.Tokens, spec.Types = append(spec.Tokens, string(b)), append(spec.Types, tokenizer.TypeControl)
		case b != nil:
			spec.Tokens, spec.Types = append(spec.Tokens, tokenizer.ByteLevelEncode(b)), append(spec.Types, tokenizer.TypeNormal)
		default:
			spec.Tokens, spec.Types = append(spec.Tokens, fmt.Sprintf("[PAD%d]", id)), append(spec.Types, tokenizer.TypeUnused)
		}
	}
	for _, m := range sub.Merges() {
		spec.Merges = append(spec.Merges, [2]string{tokenizer.ByteLevelEncode(sub.TokenBytes(m[0])), tokenizer.ByteLevelEncode(sub.TokenBytes(m[1]))})
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "t.txt")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pre := range pres {
		s := *spec
		s.Pre = pre
		kvs, err := gguf.SpecKVs(&s, len(s.Tokens))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, pre+".gguf")
		if err := gguf.WriteFile(t.Context(), path, append([]gguf.KV{{Key: "general.architecture", Value: "llama"}}, kvs...), nil); err != nil {
			t.Fatal(err)
		}
		if g, w := bothTokenize(t, bin, path, file); g != w {
			t.Errorf("pre %s:\nmoe        %s\nllama.cpp  %s", pre, g, w)
		}
	}
}
