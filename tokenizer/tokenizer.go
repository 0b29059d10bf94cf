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
	eot         int32
	pattern     string

	// Vocabularies from model files (see NewFromSpec); spec is nil for
	// moe's own tokenizers, which encode by rank (kindRank).
	size int // VocabSize
	kind kind
	spec *Spec
	pre  *preTokenizer
	// attrs[id] is the token's kind; partition lists the special ids
	// matched in text, longest first.
	attrs     []Attr
	partition []int32
	// Merge-list BPE: merges maps (left, right) symbols to rank<<32 |
	// result; byteSym[b] is the symbol of byte b; symbols from
	// len(vocab) up are merge results that are not tokens (syms, extra).
	merges  map[uint64]uint64
	byteSym [256]int32
	syms    [][]byte
	extra   map[string]int32
	// SPM: scores by id and whether text gets a leading space.
	scores         []float32
	spmSpacePrefix bool
	// ignoreMerges: a piece that is a token encodes as it; sanitize:
	// invalid UTF-8 becomes U+FFFD before pre-tokenizing (llama.cpp).
	ignoreMerges, sanitize bool
	// spaceMarks: SentencePiece-like merge-list BPE (Spec.SpaceMarks).
	spaceMarks        bool
	bos, eos, eotTurn int32
	eog               []int32
	addBOS, addEOS    bool

	mu    sync.RWMutex
	cache map[string][]int32
}

// newTokenizer builds a Tokenizer from mergeable token bytes (index = id, nil
// allowed for holes) and special tokens. It validates that every single byte
// is present, that tokens are unique and that special ids do not collide.
func newTokenizer(vocab [][]byte, specials map[string]int32, pattern string) (*Tokenizer, error) {
	var pre *preTokenizer
	if pattern != PatternCL100K {
		var err error
		if pre, err = preTokenizerNamed(pattern); err != nil {
			return nil, err
		}
	}
	t := &Tokenizer{
		vocab:       vocab,
		ranks:       make(map[string]int32, len(vocab)),
		specials:    make(map[string]int32, len(specials)),
		specialByID: make(map[int32]string, len(specials)),
		pattern:     pattern,
		cache:       make(map[string][]int32),
		pre:         pre,
		sanitize:    pre != nil,
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
	t.partition = make([]int32, len(t.specialList))
	for i, name := range t.specialList {
		t.partition[i] = specials[name]
	}
	eot, ok := t.specials[EndOfText]
	if !ok {
		return nil, fmt.Errorf("tokenizer: no %s special token", EndOfText)
	}
	t.eot = eot
	t.computeSize()
	return t, nil
}

// VocabSize returns one more than the largest token id (mergeable or special):
// the number of rows an embedding table needs.
func (t *Tokenizer) VocabSize() int { return t.size }

// computeSize sets size from the vocabulary and the special ids; unused
// placeholder tokens at the end of a file vocabulary do not count.
func (t *Tokenizer) computeSize() {
	n := len(t.vocab)
	for _, id := range t.specials {
		if int(id) >= n {
			n = int(id) + 1
		}
	}
	for t.attrs != nil && n > 0 && n <= len(t.attrs) && t.attrs[n-1] == AttrUnused {
		n--
	}
	t.size = n
}

// EOT returns the id of the end-of-text token that separates documents:
// for a vocabulary read from a model file its EOS (else EOT) token, or
// NoToken when it names neither.
func (t *Tokenizer) EOT() int32 { return t.eot }

// Special returns the id of the named special token, e.g. "<|user|>".
func (t *Tokenizer) Special(name string) (int32, bool) {
	id, ok := t.specials[name]
	return id, ok
}

// IsSpecial reports whether id is a control (or unknown) token: one that
// prints as nothing unless asked (see Piece). moe's own special tokens are
// control tokens; user-defined tokens of a file vocabulary are not.
func (t *Tokenizer) IsSpecial(id int32) bool {
	return t.Attr(id)&(AttrControl|AttrUnknown) != 0
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

// Encode tokenizes plain text: control token strings in s are encoded as
// ordinary text, never as special tokens (user-defined tokens of a file
// vocabulary are still matched, as llama.cpp does). No BOS/EOS is added.
func (t *Tokenizer) Encode(s []byte) []int32 {
	return t.AppendEncode(make([]int32, 0, len(s)/3+1), s)
}

// AppendEncode appends the encoding of s (as Encode) to dst and returns it.
func (t *Tokenizer) AppendEncode(dst []int32, s []byte) []int32 {
	if t.kind == kindRank && t.pre == nil {
		for len(s) > 0 {
			n := nextPiece(s)
			dst = t.appendPiece(dst, s[:n])
			s = s[n:]
		}
		return dst
	}
	return t.tokenize(dst, s, false, false)
}

// EncodeWithSpecials tokenizes s, turning every occurrence of a special
// token string (e.g. "<|endoftext|>") into its id. Special tokens are
// matched longest first over the whole text, as llama.cpp does; no BOS/EOS
// is added.
func (t *Tokenizer) EncodeWithSpecials(s []byte) []int32 {
	return t.tokenize(make([]int32, 0, len(s)/3+1), s, false, true)
}

// Tokenize encodes s as llama.cpp's llama_tokenize: addSpecial adds BOS and
// EOS where the vocabulary asks for them, parseSpecial matches control
// tokens in the text (user-defined tokens are always matched).
func (t *Tokenizer) Tokenize(s []byte, addSpecial, parseSpecial bool) []int32 {
	return t.tokenize(make([]int32, 0, len(s)/3+2), s, addSpecial, parseSpecial)
}

func (t *Tokenizer) tokenize(dst []int32, s []byte, addSpecial, parseSpecial bool) []int32 {
	if addSpecial && t.addBOS {
		dst = append(dst, t.bos)
	}
	prevSpecial := true // SPM: text after a special token gets the space prefix
	for _, f := range t.partitionSpecials(s, parseSpecial) {
		if f.id >= 0 {
			dst = append(dst, f.id)
			prevSpecial = true
			continue
		}
		text := s[f.start:f.end]
		switch t.kind {
		case kindSPM:
			dst = t.spmEncode(dst, text, t.spmSpacePrefix && prevSpecial)
		case kindRank:
			if t.pre != nil {
				dst = t.bpeEncode(dst, text)
				break
			}
			for len(text) > 0 {
				n := nextPiece(text)
				dst = t.appendPiece(dst, text[:n])
				text = text[n:]
			}
		default:
			if t.spaceMarks {
				if text := escapeSpaces(text, t.spmSpacePrefix && prevSpecial); text != "" {
					dst = t.mergePiece(dst, []byte(text))
				}
				break
			}
			dst = t.bpeEncode(dst, text)
		}
		prevSpecial = false
	}
	if addSpecial && t.addEOS {
		dst = append(dst, t.eos)
	}
	return dst
}

// bpeEncode appends the merge-list BPE encoding of a text fragment.
func (t *Tokenizer) bpeEncode(dst []int32, text []byte) []int32 {
	if t.sanitize {
		text = llamaUTF8(text)
	}
	if len(t.pre.stages) == 1 {
		if f, ok := t.pre.stages[0].(nextFunc); ok {
			for len(text) > 0 {
				n := f(text)
				dst = t.appendPiece(dst, text[:n])
				text = text[n:]
			}
			return dst
		}
	}
	t.pre.each(text, func(p []byte) { dst = t.appendPiece(dst, p) })
	return dst
}

// appendPiece appends the BPE encoding of one pre-tokenized piece.
func (t *Tokenizer) appendPiece(dst []int32, p []byte) []int32 {
	if t.kind == kindRank {
		if len(p) == 1 {
			return append(dst, t.byteID[p[0]])
		}
		if id, ok := t.ranks[string(p)]; ok {
			return append(dst, id)
		}
	} else if t.ignoreMerges {
		if id, ok := t.ranks[string(p)]; ok {
			return append(dst, id)
		}
	}
	t.mu.RLock()
	ids, ok := t.cache[string(p)]
	t.mu.RUnlock()
	if ok {
		return append(dst, ids...)
	}
	start := len(dst)
	if t.kind == kindRank {
		dst = t.bytePairMerge(dst, p)
	} else {
		dst = t.mergePiece(dst, p)
	}
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
