package gguf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moe-llm/moe/internal/peer"
)

// llamaVocabTests reads llama.cpp's tokenizer test vectors for vocab: the
// .inp file's texts (separated by "\n__ggml_vocab_test__\n") and the .out
// file's ids, one line per text (see its tests/test-tokenizer-0.cpp).
func llamaVocabTests(t *testing.T, vocab string) (texts []string, ids [][]int32) {
	t.Helper()
	inp, err := os.ReadFile(vocab + ".inp")
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(vocab + ".out")
	if err != nil {
		t.Fatal(err)
	}
	const sep = "\n__ggml_vocab_test__\n"
	texts = strings.Split(strings.TrimSuffix(string(inp), sep), sep)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d texts but %d id lines", vocab, len(texts), len(lines))
	}
	for _, l := range lines {
		var row []int32
		for _, f := range strings.Fields(l) {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s.out: %q", vocab, l)
			}
			row = append(row, int32(v))
		}
		ids = append(ids, row)
	}
	return texts, ids
}

// unsupportedVocabs are llama.cpp's test vocabularies whose tokenizer
// model moe does not implement (WordPiece).
var unsupportedVocabs = map[string]string{
	"bert-bge": "tokenizer model \"bert\" (WordPiece)",
}

// TestLlamaCppVocabs encodes llama.cpp's test texts with every ggml-vocab
// file and compares with the ids llama.cpp's own test expects (encoding
// without BOS/EOS and without parsing control tokens, as
// test-tokenizer-0 does).
func TestLlamaCppVocabs(t *testing.T) {
	root := peer.Root(t, "models/ggml-vocab-*.gguf")
	files, _ := filepath.Glob(filepath.Join(root, "models", "ggml-vocab-*.gguf"))
	if len(files) == 0 {
		t.Fatalf("no models/ggml-vocab-*.gguf under MOE_LLAMA_CPP=%s", root)
	}
	tested := 0
	for _, path := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "ggml-vocab-"), ".gguf")
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat(path + ".inp"); err != nil {
				t.Skipf("%s has no .inp/.out test vectors", filepath.Base(path))
			}
			tok, err := ReadTokenizer(path)
			if why, ok := unsupportedVocabs[name]; ok {
				if err == nil {
					t.Fatalf("expected an error for %s", why)
				}
				t.Skipf("moe does not implement %s: %v", why, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			texts, want := llamaVocabTests(t, path)
			bad := 0
			for i, s := range texts {
				got := tok.Tokenize([]byte(s), false, false)
				if !slices.Equal(got, want[i]) {
					t.Errorf("%q: got %v, llama.cpp %v", s, got, want[i])
					if bad++; bad > 5 {
						t.FailNow()
					}
				}
			}
			tested++
		})
	}
	fmt.Fprintf(os.Stderr, "llama.cpp vocabularies matched: %d\n", tested)
}

// TestSpecKVsRoundTrip writes llama.cpp's test vocabularies back with
// SpecKVs (vocab-only files) and checks that they read back to tokenizers
// that encode alike.
func TestSpecKVsRoundTrip(t *testing.T) {
	root := peer.Root(t, "models/ggml-vocab-*.gguf")
	for _, name := range []string{"llama-spm", "deepseek-llm", "phi-3", "gpt-2"} {
		path := filepath.Join(root, "models", "ggml-vocab-"+name+".gguf")
		tok, err := ReadTokenizer(path)
		if err != nil {
			t.Fatal(err)
		}
		kvs, err := SpecKVs(tok.Spec(), len(tok.Spec().Tokens)+3)
		if err != nil {
			t.Fatal(err)
		}
		kvs = append(kvs, KV{"general.name", tok.Spec().Name})
		out := filepath.Join(t.TempDir(), name+".gguf")
		if err := WriteFile(t.Context(), out, kvs, nil); err != nil {
			t.Fatal(err)
		}
		back, err := ReadTokenizer(out)
		if err != nil {
			t.Fatal(err)
		}
		texts, _ := llamaVocabTests(t, path)
		for _, s := range texts {
			in := []byte(s + " <s> <|endoftext|>")
			if a, b := back.Tokenize(in, true, true), tok.Tokenize(in, true, true); !slices.Equal(a, b) {
				t.Fatalf("%s: %q: %v after the round trip, %v before", name, s, a, b)
			}
		}
		if back.VocabSize() != tok.VocabSize() {
			t.Errorf("%s: vocab %d, want %d", name, back.VocabSize(), tok.VocabSize())
		}
	}
}

// BenchmarkLlamaCppVocabEncode reports encoding speed (MB/s; the BPE piece
// cache warm after the first run) of llama.cpp's test vocabularies on their
// own test texts repeated, without BOS/EOS.
func BenchmarkLlamaCppVocabEncode(b *testing.B) {
	root := peer.Root(b, "models/ggml-vocab-*.gguf")
	for _, name := range []string{"gpt-2", "llama-spm", "deepseek-llm", "deepseek-coder", "starcoder", "falcon"} {
		path := filepath.Join(root, "models", "ggml-vocab-"+name+".gguf")
		inp, err := os.ReadFile(path + ".inp")
		if err != nil {
			b.Fatal(err)
		}
		text := bytes.Repeat(bytes.ReplaceAll(inp, []byte("\n__ggml_vocab_test__\n"), []byte("\n")), 20)
		tok, err := ReadTokenizer(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tok.Tokenize(text, false, false)
			}
		})
	}
}
