package safetensors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/tokenizer"
)

// writeHFDir writes tokenizer.json (doc) and tokenizer_config.json (tc,
// when not nil) into a new directory and returns its tokenizer.json path.
func writeHFDir(t *testing.T, doc, tc map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range map[string]map[string]any{"tokenizer.json": doc, "tokenizer_config.json": tc} {
		if v == nil {
			continue
		}
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "tokenizer.json")
}

// mistralLike is a small SentencePiece-like BPE tokenizer.json: byte
// fallback tokens, a few pieces and merges; "eo" is a token no merge makes.
func mistralLike(pre, norm any) map[string]any {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := range 256 {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	for i, s := range []string{"▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "llo", "▁hello", "eo"} {
		vocab[s] = 259 + i
	}
	return map[string]any{
		"added_tokens": []map[string]any{
			{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},
			{"id": 2, "content": "</s>", "special": true},
		},
		"normalizer": norm, "pre_tokenizer": pre,
		"model": map[string]any{"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "vocab": vocab,
			"merges": []string{"▁ h", "l l", "▁h e", "ll o", "▁he llo"}},
	}
}

func TestLoadHFVocabSentencePieceLike(t *testing.T) {
	legacy := map[string]any{"type": "Sequence", "normalizers": []any{
		map[string]any{"type": "Prepend", "prepend": "▁"},
		map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
	}}
	metaspace := map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": false}
	tc := map[string]any{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>"}
	for _, doc := range []map[string]any{mistralLike(nil, legacy), mistralLike(metaspace, nil)} {
		tok, err := LoadHFVocab(writeHFDir(t, doc, tc))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			in   string
			want []int32
		}{
			{"hello", []int32{1, 268}},
			{"heo", []int32{1, 266, 263}},               // no merge makes "eo"
			{"hé", []int32{1, 264, 3 + 0xC3, 3 + 0xA9}}, // byte fallback
			{"</s>hello", []int32{1, 2, 268}},
		} {
			if got := tok.Tokenize([]byte(c.in), true, true); !slices.Equal(got, c.want) {
				t.Errorf("Tokenize(%q) = %v, want %v", c.in, got, c.want)
			}
		}
		if s := tok.Specials(); s.BOS != 1 || s.EOS != 2 || !s.AddBOS {
			t.Errorf("specials %+v", s)
		}
	}
	bad := mistralLike(map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"}, nil)
	if _, err := LoadHFVocab(writeHFDir(t, bad, nil)); err == nil || !strings.Contains(err.Error(), "first") {
		t.Errorf("prepend_scheme first: %v", err)
	}
}

// byteLevelDoc is a byte-level BPE tokenizer.json with a Llama-3 Split.
func byteLevelDoc(split string) map[string]any {
	vocab := map[string]int{}
	for b := range 256 {
		vocab[tokenizer.ByteLevelEncode([]byte{byte(b)})] = b
	}
	for i, s := range []string{"he", "ll", "hell", "Ġw", "hello", "el"} {
		vocab[s] = 256 + i
	}
	return map[string]any{
		"added_tokens": []map[string]any{{"id": 262, "content": "<|eot|>", "special": true}, {"id": 263, "content": "<tool>", "special": false}},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": split}, "behavior": "Isolated"},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
		}},
		"model": map[string]any{"type": "BPE", "ignore_merges": true, "vocab": vocab,
			"merges": [][2]string{{"e", "l"}, {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"Ġ", "w"}, {"hell", "o"}}},
	}
}

func TestLoadHFVocabByteLevel(t *testing.T) {
	llama3 := `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	tok, err := LoadHFVocab(writeHFDir(t, byteLevelDoc(llama3), map[string]any{"eos_token": "<|eot|>"}))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Pattern() != "llama-bpe" {
		t.Errorf("pattern %q", tok.Pattern())
	}
	// ignore_merges: "hello" is a token; "helloo" is not, and "e l" merges first.
	for _, c := range []struct {
		in   string
		want []int32
	}{
		{"hello wow", []int32{260, 259, 'o', 'w'}},
		{"helloo", []int32{'h', 261, 'l', 'o', 'o'}},
		{"a<tool>b<|eot|>", []int32{'a', 263, 'b', 262}},
	} {
		if got := tok.Tokenize([]byte(c.in), false, true); !slices.Equal(got, c.want) {
			t.Errorf("Tokenize(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	if tok.EOT() != 262 || !tok.IsSpecial(262) || tok.IsSpecial(263) {
		t.Error("special tokens")
	}
	if _, err := LoadHFVocab(writeHFDir(t, byteLevelDoc(`\w+`), nil)); err == nil || !strings.Contains(err.Error(), `\\w+`) {
		t.Errorf("unknown Split regex: %v", err)
	}
	if got, err := OpenTokenizer(filepath.Dir(writeHFDir(t, byteLevelDoc(llama3), nil))); err != nil || got.VocabSize() != 264 {
		t.Errorf("OpenTokenizer(HF dir) = %v", err)
	}
}

// TestHFSentencePieceLikeToGGUF writes the Mistral-like vocabulary as GGUF
// ("llama" with merge-order scores) and checks the SPM reading of it
// encodes like the merge-list BPE on texts whose tokens all have merges.
func TestHFSentencePieceLikeToGGUF(t *testing.T) {
	legacy := map[string]any{"type": "Sequence", "normalizers": []any{
		map[string]any{"type": "Prepend", "prepend": "▁"},
		map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
	}}
	tok, err := LoadHFVocab(writeHFDir(t, mistralLike(nil, legacy), nil))
	if err != nil {
		t.Fatal(err)
	}
	kvs, err := gguf.SpecKVs(tok.Spec(), tok.VocabSize())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v.gguf")
	if err := gguf.WriteFile(t.Context(), path, kvs, nil); err != nil {
		t.Fatal(err)
	}
	back, err := gguf.ReadTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Model() != tokenizer.ModelSPM {
		t.Fatalf("model %v", back.Model())
	}
	for _, s := range []string{"hello", "hello hello", "hé llo", "lllll"} {
		if a, b := back.Tokenize([]byte(s), true, true), tok.Tokenize([]byte(s), true, true); !slices.Equal(a, b) {
			t.Errorf("%q: GGUF %v, tokenizer.json %v", s, a, b)
		}
	}
}

// TestSaveHFSpecRoundTrip writes file vocabularies back as tokenizer.json
// and checks that they read back to tokenizers that encode alike.
func TestSaveHFSpecRoundTrip(t *testing.T) {
	llama3 := `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	legacy := map[string]any{"type": "Sequence", "normalizers": []any{
		map[string]any{"type": "Prepend", "prepend": "▁"},
		map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
	}}
	tc := map[string]any{"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>"}
	for _, src := range []string{
		writeHFDir(t, byteLevelDoc(llama3), map[string]any{"eos_token": "<|eot|>"}),
		writeHFDir(t, mistralLike(nil, legacy), tc),
	} {
		tok, err := LoadHFVocab(src)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := SaveHFTokenizer(dir, tok); err != nil {
			t.Fatal(err)
		}
		back, err := LoadHFVocab(filepath.Join(dir, "tokenizer.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"hello wow helloo", "hé llo <tool>x</s>", "lllll heo"} {
			if a, b := back.Tokenize([]byte(s), true, true), tok.Tokenize([]byte(s), true, true); !slices.Equal(a, b) {
				t.Errorf("%q: %v after the round trip, %v before", s, a, b)
			}
		}
		if back.EOT() != tok.EOT() || back.VocabSize() != tok.VocabSize() {
			t.Errorf("eot %d vocab %d, want %d %d", back.EOT(), back.VocabSize(), tok.EOT(), tok.VocabSize())
		}
	}
}
