package tokenizer

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer/codec"
)

// cl100kFile writes cl100k_base in tiktoken format (base64 token, space,
// rank per line) from the vocabulary embedded in tiktoken-go, the reference.
var cl100kFile = sync.OnceValues(func() (string, error) {
	ref := codec.NewCl100kBase()
	dir, err := os.MkdirTemp("", "cl100k")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "cl100k_base.tiktoken")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(f)
	for id := uint(0); id < cl100kRanks; id++ {
		s, err := ref.Decode([]uint{id})
		if err != nil {
			return "", fmt.Errorf("reference decode %d: %w", id, err)
		}
		fmt.Fprintf(w, "%s %d\n", base64.StdEncoding.EncodeToString([]byte(s)), id)
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return path, f.Close()
})

var cl100k = sync.OnceValues(func() (*Tokenizer, error) {
	path, err := cl100kFile()
	if err != nil {
		return nil, err
	}
	return LoadTiktoken(path)
})

func mustCL100K(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := cl100k()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestCL100KPublishedIDs(t *testing.T) {
	tok := mustCL100K(t)
	// Ids published by OpenAI (tiktoken README, cookbook) for cl100k_base.
	known := map[string][]int32{
		"hello world":        {15339, 1917},
		"tiktoken is great!": {83, 1609, 5963, 374, 2294, 0},
	}
	for s, want := range known {
		if got := tok.Encode([]byte(s)); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", s, got, want)
		}
	}
	if got := tok.EncodeWithSpecials([]byte("<|endoftext|>")); !slices.Equal(got, []int32{100257}) {
		t.Errorf("EncodeWithSpecials(<|endoftext|>) = %v", got)
	}
	if tok.EOT() != 100257 {
		t.Errorf("EOT = %d", tok.EOT())
	}
	if id, _ := tok.Special("<|endofprompt|>"); id != 100276 {
		t.Errorf("<|endofprompt|> = %d", id)
	}
	if id, _ := tok.Special(End); id != 100280 || tok.VocabSize() != 100281 {
		t.Errorf("<|end|> = %d, vocab %d", id, tok.VocabSize())
	}
}

// refEncode encodes with tiktoken-go, the reference implementation.
func refEncode(t *testing.T, ref *codec.Codec, s string) []int32 {
	t.Helper()
	ids, _, err := ref.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

func TestCL100KMatchesReference(t *testing.T) {
	tok := mustCL100K(t)
	ref := codec.NewCl100kBase()
	inputs := slices.Clone(trickyStrings)
	text, err := os.ReadFile("testdata/kjv_sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs, string(text[:20000]),
		"package main\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
		strings.Repeat("!", 300), strings.Repeat(" ", 100)+"x", "1234567890123",
		"Ünïcödé ÀÉÎÕÜ ŁŚŻ Ωμέγα Привет мир こんにちは 안녕하세요",
	)
	alphabet := []rune("aZ '\"\n\r\t.,!?0129_-é中ー😀\u00a0\u2003\u3000٣①ⅫsStTlLdDmMrReEvV\u0300")
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 1500; i++ {
		n := 1 + rng.IntN(40)
		var b []byte
		for j := 0; j < n; j++ {
			b = utf8.AppendRune(b, alphabet[rng.IntN(len(alphabet))])
		}
		inputs = append(inputs, string(b))
	}
	bad := 0
	for _, s := range inputs {
		want := refEncode(t, ref, s)
		if got := tok.Encode([]byte(s)); !slices.Equal(got, want) {
			var pieces []string
			Pieces([]byte(s), func(p []byte) { pieces = append(pieces, string(p)) })
			t.Errorf("Encode(%q) = %v, reference %v (pieces %q)", s, got, want, pieces)
			if bad++; bad > 5 {
				t.FailNow()
			}
		}
	}
}

// TestCL100KLongS documents the one known divergence from tiktoken-go: the
// Rust regex engine of OpenAI's tiktoken folds 's' and U+017F 'ſ' together in
// (?i:'s), tiktoken-go's regexp2 does not; we follow tiktoken.
func TestCL100KLongS(t *testing.T) {
	var pieces []string
	Pieces([]byte("'ſ"), func(p []byte) { pieces = append(pieces, string(p)) })
	if !slices.Equal(pieces, []string{"'ſ"}) {
		t.Fatalf("pieces of 'ſ = %q, want one contraction", pieces)
	}
}

func BenchmarkEncodeCL100K(b *testing.B) {
	tok := mustCL100K(b)
	text, err := os.ReadFile("testdata/kjv_sample.txt")
	if err != nil {
		b.Fatal(err)
	}
	tok.Encode(text)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		tok.Encode(text)
	}
	reportCPU(b, c0, int64(len(text)))
}

func BenchmarkEncodeCL100KReference(b *testing.B) {
	ref := codec.NewCl100kBase()
	text, err := os.ReadFile("testdata/kjv_sample.txt")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	c0 := cpuTime()
	for b.Loop() {
		if _, _, err := ref.Encode(string(text)); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, c0, int64(len(text)))
}

// BenchmarkEncodeCL100KCold clears the piece cache before every pass, so each
// distinct piece of the text is merged from bytes once per pass.
func BenchmarkEncodeCL100KCold(b *testing.B) {
	tok := mustCL100K(b)
	text, err := os.ReadFile("testdata/kjv_sample.txt")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	c0 := cpuTime()
	for b.Loop() {
		tok.mu.Lock()
		clear(tok.cache)
		tok.mu.Unlock()
		tok.Encode(text)
	}
	reportCPU(b, c0, int64(len(text)))
}
