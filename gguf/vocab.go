package gguf

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/moe-llm/moe/tokenizer"
)

// This file reads a GGUF vocabulary (the tokenizer.ggml.* metadata) as
// llama.cpp's llama_vocab::load does, for the "gpt2" (byte-level BPE with a
// merge list and a named pre-tokenizer) and "llama" (SentencePiece-style)
// tokenizer models.

// ReadTokenizer reads only the vocabulary of the GGUF file at path (no
// tensor data), as llama-tokenize does; it works on vocab-only files.
func ReadTokenizer(path string) (*tokenizer.Tokenizer, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tok, err := readTokenizer(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if tok == nil {
		return nil, fmt.Errorf("gguf: %s has no tokenizer (tokenizer.ggml.model)", path)
	}
	return tok, nil
}

// ReadVocab returns the vocabulary of f as a tokenizer.Spec; nil when the
// file has no tokenizer.ggml.model.
func ReadVocab(f *File) (*tokenizer.Spec, error) {
	mv, ok := f.Get("tokenizer.ggml.model")
	if !ok {
		return nil, nil
	}
	model, _ := mv.(string)
	var spec *tokenizer.Spec
	switch model {
	case "gpt2":
		spec = tokenizer.NewSpec(tokenizer.ModelBPE)
		spec.BOS, spec.EOS = 11, 11 // llama.cpp's defaults
	case "llama":
		spec = tokenizer.NewSpec(tokenizer.ModelSPM)
		spec.BOS, spec.EOS, spec.UNK = 1, 2, 0
	default:
		return nil, fmt.Errorf("gguf: tokenizer.ggml.model %q is not supported (moe reads \"gpt2\" and \"llama\")", mv)
	}
	tv, _ := f.Get("tokenizer.ggml.tokens")
	tokens, ok := tv.([]string)
	if !ok || len(tokens) == 0 {
		return nil, fmt.Errorf("gguf: tokenizer.ggml.tokens is missing or not a string array")
	}
	if len(tokens) > tokenizer.MaxVocabSize {
		return nil, fmt.Errorf("gguf: tokenizer.ggml.tokens has %d tokens, more than %d", len(tokens), tokenizer.MaxVocabSize)
	}
	spec.Tokens = tokens
	if v, ok := f.Get("tokenizer.ggml.token_type"); ok {
		if spec.Types, ok = v.([]int32); !ok || len(spec.Types) != len(tokens) {
			return nil, fmt.Errorf("gguf: tokenizer.ggml.token_type must be %d int32 values", len(tokens))
		}
	}
	if v, ok := f.Get("tokenizer.ggml.scores"); ok {
		if spec.Scores, ok = v.([]float32); !ok || len(spec.Scores) != len(tokens) {
			return nil, fmt.Errorf("gguf: tokenizer.ggml.scores must be %d float32 values", len(tokens))
		}
	}
	if v, ok := f.Get("general.name"); ok {
		spec.Name, _ = v.(string)
	}
	if model == "gpt2" {
		pre := "default"
		if v, ok := f.Get("tokenizer.ggml.pre"); ok {
			if pre, ok = v.(string); !ok {
				return nil, fmt.Errorf("gguf: tokenizer.ggml.pre is not a string")
			}
		} else {
			slog.Warn("gguf: no tokenizer.ggml.pre; using llama.cpp's \"default\" pre-tokenizer")
		}
		spec.Pre = pre
		switch pre {
		case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "tekken", "chameleon":
			spec.AddBOS = true // llama.cpp's default for these; the file may override it
		}
		mv, ok := f.Get("tokenizer.ggml.merges")
		merges, isStr := mv.([]string)
		if !ok && pre == "kimi-k2" {
			merges, isStr = nil, true // llama.cpp lets Kimi-K2 go without merges
		}
		if !isStr {
			return nil, fmt.Errorf("gguf: tokenizer.ggml.merges is missing or not a string array")
		}
		spec.Merges = make([][2]string, len(merges))
		for i, m := range merges {
			k := -1
			if len(m) > 1 {
				k = strings.IndexByte(m[1:], ' ')
			}
			if k < 0 {
				return nil, fmt.Errorf("gguf: tokenizer.ggml.merges[%d] %q is not two tokens", i, m)
			}
			spec.Merges[i] = [2]string{m[:k+1], m[k+2:]}
		}
	}
	for _, p := range []struct {
		key string
		dst *int32
	}{
		{"bos_token_id", &spec.BOS}, {"eos_token_id", &spec.EOS}, {"eot_token_id", &spec.EOT},
		{"eom_token_id", &spec.EOM}, {"unknown_token_id", &spec.UNK}, {"padding_token_id", &spec.PAD},
	} {
		if int(*p.dst) >= len(tokens) {
			*p.dst = tokenizer.NoToken // llama.cpp disables a default out of range
		}
		v, ok := f.Get("tokenizer.ggml." + p.key)
		if !ok {
			continue
		}
		id, isInt := asInt(v)
		if !isInt || id < 0 || id >= len(tokens) {
			return nil, fmt.Errorf("gguf: tokenizer.ggml.%s = %v is not a token id below %d", p.key, v, len(tokens))
		}
		*p.dst = int32(id)
	}
	for _, p := range []struct {
		key string
		dst *bool
	}{{"add_bos_token", &spec.AddBOS}, {"add_eos_token", &spec.AddEOS}, {"add_space_prefix", &spec.AddSpacePrefix}} {
		v, ok := f.Get("tokenizer.ggml." + p.key)
		if !ok {
			continue
		}
		b, isBool := v.(bool)
		if !isBool {
			return nil, fmt.Errorf("gguf: tokenizer.ggml.%s is not a bool", p.key)
		}
		*p.dst = b
	}
	return spec, nil
}

// readTokenizer builds the tokenizer of f; nil when the file has none.
func readTokenizer(f *File) (*tokenizer.Tokenizer, error) {
	spec, err := ReadVocab(f)
	if err != nil || spec == nil {
		return nil, err
	}
	tok, err := tokenizer.NewFromSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	return tok, nil
}

// SpecKVs returns the tokenizer.ggml.* metadata that stores spec as
// llama.cpp's converter does, padded with unused tokens to vocabSize rows.
func SpecKVs(spec *tokenizer.Spec, vocabSize int) ([]KV, error) {
	n := len(spec.Tokens)
	if n > vocabSize {
		return nil, fmt.Errorf("tokenizer has %d tokens but the model embeds only %d", n, vocabSize)
	}
	tokens := make([]string, vocabSize)
	types := make([]int32, vocabSize)
	copy(tokens, spec.Tokens)
	for id := range types {
		switch {
		case id >= n:
			tokens[id], types[id] = fmt.Sprintf("[PAD%d]", id), tokenizer.TypeUnused
		case spec.Types != nil:
			types[id] = spec.Types[id]
		default:
			types[id] = tokenizer.TypeNormal
		}
	}
	kvs := []KV{{"tokenizer.ggml.tokens", tokens}, {"tokenizer.ggml.token_type", types}}
	switch {
	case spec.Model == tokenizer.ModelBPE && spec.SpaceMarks:
		// llama.cpp has no merge-list SentencePiece model: write "llama"
		// with each token scored by the first merge that makes it, which
		// merges alike when every multi-character token has a merge (as in
		// vocabularies converted from SentencePiece).
		scores := make([]float32, vocabSize)
		for i := range scores {
			scores[i] = -1e9
		}
		first := map[string]int{}
		for r, m := range spec.Merges {
			if _, ok := first[m[0]+m[1]]; !ok {
				first[m[0]+m[1]] = r
			}
		}
		for id, tok := range spec.Tokens {
			if r, ok := first[tok]; ok {
				scores[id] = -float32(r)
			}
		}
		kvs = append([]KV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.pre", "default"}}, kvs...)
		kvs = append(kvs, KV{"tokenizer.ggml.scores", scores}, KV{"tokenizer.ggml.add_space_prefix", spec.AddSpacePrefix})
	case spec.Model == tokenizer.ModelBPE:
		merges := make([]string, len(spec.Merges))
		for i, m := range spec.Merges {
			merges[i] = m[0] + " " + m[1]
		}
		pre := spec.Pre
		switch pre {
		case "":
			pre = "default"
		case "o200k":
			pre = "gpt-4o" // llama.cpp's name (it runs its own approximation of the pattern)
		}
		kvs = append([]KV{{"tokenizer.ggml.model", "gpt2"}, {"tokenizer.ggml.pre", pre}}, kvs...)
		kvs = append(kvs, KV{"tokenizer.ggml.merges", merges})
	case spec.Model == tokenizer.ModelSPM:
		scores := make([]float32, vocabSize)
		copy(scores, spec.Scores)
		kvs = append([]KV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.pre", "default"}}, kvs...)
		kvs = append(kvs, KV{"tokenizer.ggml.scores", scores}, KV{"tokenizer.ggml.add_space_prefix", spec.AddSpacePrefix})
	default:
		return nil, fmt.Errorf("tokenizer model %q cannot be written to GGUF", spec.Model)
	}
	for _, p := range []struct {
		key string
		id  int32
	}{{"bos_token_id", spec.BOS}, {"eos_token_id", spec.EOS}, {"eot_token_id", spec.EOT}, {"eom_token_id", spec.EOM},
		{"unknown_token_id", spec.UNK}, {"padding_token_id", spec.PAD}} {
		if p.id != tokenizer.NoToken {
			kvs = append(kvs, KV{"tokenizer.ggml." + p.key, uint32(p.id)})
		}
	}
	kvs = append(kvs, KV{"tokenizer.ggml.add_bos_token", spec.AddBOS}, KV{"tokenizer.ggml.add_eos_token", spec.AddEOS})
	return kvs, nil
}
