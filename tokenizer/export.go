package tokenizer

import (
	"fmt"
	"math"
)

// This file holds the accessors the interchange formats (GGUF, Hugging Face
// tokenizer.json) need: a constructor from raw token bytes and the merge list
// equivalent to the rank-based BPE.

// New builds a tokenizer with the cl100k pre-tokenizer from mergeable token
// bytes (index = id = BPE rank, nil for an id that is special or unused) and
// special tokens (which must include EndOfText). It validates the vocabulary
// as Load does.
func New(vocab [][]byte, specials map[string]int32) (*Tokenizer, error) {
	return newTokenizer(vocab, specials, PatternCL100K)
}

// NewRanked builds a rank-based (tiktoken-style) tokenizer like New but
// with the pre-tokenizer named pre (a tokenizer.ggml.pre name such as
// "o200k" for o200k_base). Invalid UTF-8 is replaced by U+FFFD before
// pre-tokenizing, as tiktoken-go and llama.cpp do.
func NewRanked(vocab [][]byte, specials map[string]int32, pre string) (*Tokenizer, error) {
	if pre == PatternCL100K {
		return nil, fmt.Errorf("tokenizer: use New for cl100k")
	}
	return newTokenizer(vocab, specials, pre)
}

// NumMergeable returns the length of the mergeable-token table: every id
// below it is a mergeable token, a special token or a hole.
func (t *Tokenizer) NumMergeable() int { return len(t.vocab) }

// Merges returns the BPE merge list equivalent to the tokenizer's ranks, in
// the form llama.cpp's and Hugging Face's BPE use: for each mergeable token
// of two or more bytes, in id (rank) order, the ids of the two tokens whose
// merge makes it. The pair is found as Hugging Face's tiktoken converter
// does: run the rank-based merge on the token's own bytes using only tokens
// of lower rank; it ends in exactly two parts for any vocabulary that BPE
// training produced. Tokens that do not end in two parts are skipped.
func (t *Tokenizer) Merges() [][2]int32 {
	var out [][2]int32
	var bounds []int
	for id, tok := range t.vocab {
		if len(tok) < 2 {
			continue
		}
		bounds = bounds[:0]
		for i := 0; i <= len(tok); i++ {
			bounds = append(bounds, i)
		}
		for len(bounds) > 3 {
			best, bi := int32(math.MaxInt32), -1
			for i := 0; i+2 < len(bounds); i++ {
				if r := t.rankOf(tok[bounds[i]:bounds[i+2]]); r < int32(id) && r < best {
					best, bi = r, i
				}
			}
			if bi < 0 {
				break
			}
			bounds = append(bounds[:bi+1], bounds[bi+2:]...)
		}
		if len(bounds) != 3 {
			continue
		}
		a, aok := t.ranks[string(tok[:bounds[1]])]
		b, bok := t.ranks[string(tok[bounds[1]:])]
		if aok && bok && a < int32(id) && b < int32(id) {
			out = append(out, [2]int32{a, b})
		}
	}
	return out
}
