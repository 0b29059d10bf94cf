package tokenizer

import (
	"fmt"
	"strings"
)

// This file is SentencePiece-style BPE as llama.cpp runs it for GGUF's
// "llama" tokenizer model: spaces become U+2581, the text is split into
// UTF-8 characters, and the adjacent pair whose concatenation is the token
// with the highest score merges first (leftmost on ties) until no adjacent
// concatenation is a token. Symbols that are not tokens fall back to the
// <0xNN> byte tokens.

// spaceMark is SentencePiece's visible space, U+2581.
const spaceMark = "\u2581"

// initSPM sets up a SentencePiece-style vocabulary.
func (t *Tokenizer) initSPM(spec *Spec) error {
	n := len(spec.Tokens)
	if spec.Scores != nil && len(spec.Scores) != n {
		return fmt.Errorf("tokenizer: %d scores for %d tokens", len(spec.Scores), n)
	}
	t.kind = kindSPM
	t.pattern = "spm"
	t.spmSpacePrefix = spec.AddSpacePrefix
	t.scores = spec.Scores
	t.initSPMTexts(spec)
	return nil
}

// initSPMTexts sets up the token texts of a SentencePiece-style
// vocabulary: lookup by text (U+2581 for spaces), bytes for decoding, and
// the <0xNN> byte-fallback tokens.
func (t *Tokenizer) initSPMTexts(spec *Spec) {
	for id, s := range spec.Tokens {
		t.ranks[s] = int32(id) // llama.cpp: the last id with a text wins
		a := t.attrs[id]
		switch {
		case a&AttrByte != 0:
			t.vocab[id] = byteTokenValue(s)
		case a&AttrNormal != 0:
			t.vocab[id] = []byte(strings.ReplaceAll(s, spaceMark, " "))
		case a&(AttrControl|AttrUserDefined|AttrUnknown) != 0:
			t.vocab[id] = []byte(s)
		}
	}
	for b := range 256 {
		if id, ok := t.ranks[fmt.Sprintf("<0x%02X>", b)]; ok {
			t.byteID[b] = id
		} else if id, ok := t.ranks[string([]byte{byte(b)})]; ok {
			t.byteID[b] = id
		}
	}
}

// utf8Len is the length of the UTF-8 sequence a byte's high nibble
// announces, as llama.cpp's unicode_len_utf8: 1 for ASCII and continuation
// bytes, 2 for 0xC0–0xDF, 3 for 0xE0–0xEF, 4 for 0xF0–0xFF (so an invalid
// 0xF8–0xFF byte takes the next three bytes with it into one symbol).
func utf8Len(b byte) int {
	return int([16]uint8{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4}[b>>4])
}

// escapeSpaces returns frag with spaces as U+2581, prefixed by one when
// prefix is set.
func escapeSpaces(frag []byte, prefix bool) string {
	var sb strings.Builder
	sb.Grow(len(frag) + len(frag)/4 + 3)
	if prefix {
		sb.WriteString(spaceMark)
	}
	for len(frag) > 0 {
		i := 0
		for i < len(frag) && frag[i] != ' ' {
			i++
		}
		sb.Write(frag[:i])
		if i < len(frag) {
			sb.WriteString(spaceMark)
			i++
		}
		frag = frag[i:]
	}
	return sb.String()
}

// spmBigram is a candidate merge of symbol left with its successor.
type spmBigram struct {
	score       float32
	left, right int32
	size        int32
}

// spmHeap is a binary max-heap of bigrams: highest score first, then
// leftmost (typed, so pushing does not allocate).
type spmHeap []spmBigram

func (h spmHeap) before(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score > h[j].score
	}
	return h[i].left < h[j].left
}

func (h *spmHeap) push(b spmBigram) {
	*h = append(*h, b)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.before(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *spmHeap) pop() spmBigram {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q = q[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && q.before(l, m) {
			m = l
		}
		if r := l + 1; r < n && q.before(r, m) {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

// spmEncode appends the encoding of one text fragment; prefix adds the
// leading space of add_space_prefix.
func (t *Tokenizer) spmEncode(dst []int32, frag []byte, prefix bool) []int32 {
	text := escapeSpaces(frag, prefix)
	if text == "" {
		return dst
	}
	// Symbols: start, length and links, indexed by symbol number.
	var start, size, prev, next []int32
	for off := 0; off < len(text); {
		w := min(utf8Len(text[off]), len(text)-off)
		k := int32(len(start))
		start = append(start, int32(off))
		size = append(size, int32(w))
		prev = append(prev, k-1)
		off += w
		if off == len(text) {
			next = append(next, -1)
		} else {
			next = append(next, k+1)
		}
	}
	h := make(spmHeap, 0, len(start))
	try := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		sz := size[l] + size[r]
		id, ok := t.ranks[text[start[l]:start[l]+sz]]
		if !ok {
			return
		}
		var score float32
		if t.scores != nil {
			score = t.scores[id]
		}
		h.push(spmBigram{score: score, left: l, right: r, size: sz})
	}
	for i := int32(1); i < int32(len(start)); i++ {
		try(i-1, i)
	}
	for len(h) > 0 {
		b := h.pop()
		l, r := b.left, b.right
		if size[l] == 0 || size[r] == 0 || size[l]+size[r] != b.size {
			continue
		}
		size[l] += size[r]
		size[r] = 0
		next[l] = next[r]
		if next[r] >= 0 {
			prev[next[r]] = l
		}
		try(prev[l], l)
		try(l, next[l])
	}
	for i := int32(0); i >= 0; i = next[i] {
		s := text[start[i] : start[i]+size[i]]
		if id, ok := t.ranks[s]; ok {
			dst = append(dst, id)
			continue
		}
		for j := 0; j < len(s); j++ {
			if id := t.byteID[s[j]]; id >= 0 {
				dst = append(dst, id)
			} else if t.spec.UNK != NoToken {
				dst = append(dst, t.spec.UNK)
			}
		}
	}
	return dst
}
