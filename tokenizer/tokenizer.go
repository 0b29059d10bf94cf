// Package tokenizer implements byte-level byte-pair encoding (BPE) in the
// style of GPT-2/GPT-4: a hand-written pre-tokenizer splits text into pieces
// (contractions, letter runs, 1–3 digit numbers, punctuation runs, whitespace
// runs), and each piece is encoded by repeatedly merging the adjacent pair of
// parts whose concatenation has the lowest rank in the vocabulary (the
// tiktoken algorithm). Token ids are ranks, so a vocabulary is fully described
// by the byte string of every id plus the special tokens.
//
// Encoding is lossless for any byte string, invalid UTF-8 included:
// Decode(Encode(x)) == x always holds because every single byte is a token.
package tokenizer

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
)

// FileName is the name of the tokenizer file inside a run directory.
const FileName = "tokenizer.json"

// Names of the special tokens every Tokenizer carries.
const (
	EndOfText = "<|endoftext|>"
	System    = "<|system|>"
	User      = "<|user|>"
	Assistant = "<|assistant|>"
	End       = "<|end|>"
)

// SpecialNames lists the special tokens added to every trained vocabulary, in
// id order (they follow the mergeable tokens).
var SpecialNames = [...]string{EndOfText, System, User, Assistant, End}

// maxCache bounds the per-piece encoding cache (entries); it is cleared when full.
const maxCache = 1 << 18

// Tokenizer is a byte-level BPE vocabulary with special tokens. It is safe for
// concurrent use by multiple goroutines.
type Tokenizer struct {
	// vocab[id] is the byte string of a mergeable token; nil marks an id that
	// is unused or special.
	vocab [][]byte
	// ranks maps a mergeable token's bytes to its id.
	ranks map[string]int32
	// byteID[b] is the id of the single byte b.
	byteID [256]int32
	// specials maps special token strings to ids; specialList holds them
	// sorted by decreasing length for matching.
	specials    map[string]int32
	specialList []string
	specialByID map[int32]string
	// specialFirst is the first byte shared by all special tokens, or -1.
	specialFirst int
	eot          int32
	pattern      string

	mu    sync.RWMutex
	cache map[string][]int32
}

// newTokenizer builds a Tokenizer from mergeable token bytes (index = id, nil
// allowed for holes) and special tokens. It validates that every single byte
// is present, that tokens are unique and that special ids do not collide.
func newTokenizer(vocab [][]byte, specials map[string]int32, pattern string) (*Tokenizer, error) {
	if pattern != PatternCL100K {
		return nil, fmt.Errorf("tokenizer: unknown pre-tokenizer pattern %q", pattern)
	}
	t := &Tokenizer{
		vocab:       vocab,
		ranks:       make(map[string]int32, len(vocab)),
		specials:    make(map[string]int32, len(specials)),
		specialByID: make(map[int32]string, len(specials)),
		pattern:     pattern,
		cache:       make(map[string][]int32),
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	for id, b := range vocab {
		if b == nil {
			continue
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("tokenizer: token %d is empty", id)
		}
		if prev, dup := t.ranks[string(b)]; dup {
			return nil, fmt.Errorf("tokenizer: tokens %d and %d have the same bytes %q", prev, id, b)
		}
		t.ranks[string(b)] = int32(id)
		if len(b) == 1 {
			t.byteID[b[0]] = int32(id)
		}
	}
	for i, id := range t.byteID {
		if id < 0 {
			return nil, fmt.Errorf("tokenizer: vocabulary lacks single byte 0x%02x; byte-level BPE needs all 256", i)
		}
	}
	for s, id := range specials {
		if s == "" {
			return nil, fmt.Errorf("tokenizer: empty special token string")
		}
		if id < 0 || id >= MaxVocabSize {
			return nil, fmt.Errorf("tokenizer: special token %q id %d outside [0, %d)", s, id, MaxVocabSize)
		}
		if int(id) < len(vocab) && vocab[id] != nil {
			return nil, fmt.Errorf("tokenizer: special token %q id %d collides with a mergeable token", s, id)
		}
		if other, dup := t.specialByID[id]; dup {
			return nil, fmt.Errorf("tokenizer: special tokens %q and %q share id %d", other, s, id)
		}
		t.specials[s] = id
		t.specialByID[id] = s
		t.specialList = append(t.specialList, s)
	}
	sort.Slice(t.specialList, func(i, j int) bool {
		a, b := t.specialList[i], t.specialList[j]
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
	t.specialFirst = -1
	for i, name := range t.specialList {
		if i == 0 {
			t.specialFirst = int(name[0])
		} else if int(name[0]) != t.specialFirst {
			t.specialFirst = -1
			break
		}
	}
	eot, ok := t.specials[EndOfText]
	if !ok {
		return nil, fmt.Errorf("tokenizer: no %s special token", EndOfText)
	}
	t.eot = eot
	return t, nil
}

// VocabSize returns one more than the largest token id (mergeable or special):
// the number of rows an embedding table needs.
func (t *Tokenizer) VocabSize() int {
	n := len(t.vocab)
	for _, id := range t.specials {
		if int(id) >= n {
			n = int(id) + 1
		}
	}
	return n
}

// EOT returns the id of the end-of-text token that separates documents.
func (t *Tokenizer) EOT() int32 { return t.eot }

// Special returns the id of the named special token, e.g. "<|user|>".
func (t *Tokenizer) Special(name string) (int32, bool) {
	id, ok := t.specials[name]
	return id, ok
}

// IsSpecial reports whether id is a special token.
func (t *Tokenizer) IsSpecial(id int32) bool {
	_, ok := t.specialByID[id]
	return ok
}

// Pattern returns the name of the pre-tokenizer the vocabulary uses.
func (t *Tokenizer) Pattern() string { return t.pattern }

// TokenBytes returns the bytes of token id (the special token's string for a
// special token, nil for an id outside the vocabulary). The returned slice
// must not be modified.
func (t *Tokenizer) TokenBytes(id int32) []byte {
	if id >= 0 && int(id) < len(t.vocab) && t.vocab[id] != nil {
		return t.vocab[id]
	}
	if s, ok := t.specialByID[id]; ok {
		return []byte(s)
	}
	return nil
}

// Decode concatenates the bytes of ids. Ids outside the vocabulary decode to
// nothing.
func (t *Tokenizer) Decode(ids []int32) []byte {
	n := 0
	for _, id := range ids {
		n += len(t.TokenBytes(id))
	}
	out := make([]byte, 0, n)
	for _, id := range ids {
		out = append(out, t.TokenBytes(id)...)
	}
	return out
}

// Encode tokenizes plain text: special token strings in s are encoded as
// ordinary text, never as special tokens.
func (t *Tokenizer) Encode(s []byte) []int32 {
	return t.AppendEncode(make([]int32, 0, len(s)/3+1), s)
}

// AppendEncode appends the encoding of s (as Encode) to dst and returns it.
func (t *Tokenizer) AppendEncode(dst []int32, s []byte) []int32 {
	for len(s) > 0 {
		n := nextPiece(s)
		dst = t.appendPiece(dst, s[:n])
		s = s[n:]
	}
	return dst
}

// EncodeWithSpecials tokenizes s, turning every occurrence of a special token
// string (e.g. "<|endoftext|>") into its special id. At one position the
// longest matching special wins. It runs in time linear in len(s).
func (t *Tokenizer) EncodeWithSpecials(s []byte) []int32 {
	out := make([]int32, 0, len(s)/3+1)
	start := 0
	for i := 0; i < len(s); {
		j := t.nextSpecialStart(s, i)
		if j < 0 {
			break
		}
		matched := false
		for _, name := range t.specialList {
			if len(s)-j >= len(name) && string(s[j:j+len(name)]) == name {
				out = t.AppendEncode(out, s[start:j])
				out = append(out, t.specials[name])
				i = j + len(name)
				start = i
				matched = true
				break
			}
		}
		if !matched {
			i = j + 1
		}
	}
	return t.AppendEncode(out, s[start:])
}

// nextSpecialStart returns the first position ≥ i whose byte starts some
// special token, or -1.
func (t *Tokenizer) nextSpecialStart(s []byte, i int) int {
	if t.specialFirst >= 0 {
		k := bytes.IndexByte(s[i:], byte(t.specialFirst))
		if k < 0 {
			return -1
		}
		return i + k
	}
	for ; i < len(s); i++ {
		for _, name := range t.specialList {
			if s[i] == name[0] {
				return i
			}
		}
	}
	return -1
}

// appendPiece appends the BPE encoding of one pre-tokenized piece.
func (t *Tokenizer) appendPiece(dst []int32, p []byte) []int32 {
	if len(p) == 1 {
		return append(dst, t.byteID[p[0]])
	}
	if id, ok := t.ranks[string(p)]; ok {
		return append(dst, id)
	}
	t.mu.RLock()
	ids, ok := t.cache[string(p)]
	t.mu.RUnlock()
	if ok {
		return append(dst, ids...)
	}
	start := len(dst)
	dst = t.bytePairMerge(dst, p)
	if len(p) <= 256 {
		ids := append([]int32(nil), dst[start:]...)
		t.mu.Lock()
		if len(t.cache) >= maxCache {
			clear(t.cache)
		}
		t.cache[string(p)] = ids
		t.mu.Unlock()
	}
	return dst
}
