// Package testtok builds small tokenizers for tests.
package testtok

import (
	"testing"

	"github.com/moe-llm/moe/tokenizer"
)

// Bytes returns a byte-level tokenizer without merges: ids 0-255 are the
// single bytes and specials follow from 256 in order. <|endoftext|>, which
// every tokenizer needs, is added first when specials lack it.
func Bytes(t testing.TB, specials ...string) *tokenizer.Tokenizer {
	t.Helper()
	vocab := make([][]byte, 256)
	for i := range vocab {
		vocab[i] = []byte{byte(i)}
	}
	sp := map[string]int32{}
	hasEOT := false
	for _, s := range specials {
		hasEOT = hasEOT || s == tokenizer.EndOfText
	}
	if !hasEOT {
		specials = append([]string{tokenizer.EndOfText}, specials...)
	}
	for i, s := range specials {
		sp[s] = int32(256 + i)
	}
	tok, err := tokenizer.New(vocab, sp)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
