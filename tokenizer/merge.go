package tokenizer

import (
	"math"
)

// This file is merge-list BPE as llama.cpp and Hugging Face run it: a piece
// starts as one symbol per byte, and the adjacent pair that comes first in
// the merge list (leftmost on ties) merges until no pair is in the list.
// Symbols are token ids (ids from NumTokens up stand for merge results that
// are not tokens); a final symbol that is not a token falls back to the
// tokens of its single bytes.

// noMerge is the rank of a pair that is not in the merge list.
const noMerge = math.MaxUint32

// pairRank returns the merge rank of symbols a and b and the symbol they
// merge into; rank noMerge when they do not merge.
func (t *Tokenizer) pairRank(a, b int32) (rank uint32, res int32) {
	v, ok := t.merges[uint64(uint32(a))<<32|uint64(uint32(b))]
	if !ok {
		return noMerge, -1
	}
	return uint32(v >> 32), int32(uint32(v))
}

// symBytes returns the bytes of merge symbol s.
func (t *Tokenizer) symBytes(s int32) []byte {
	if int(s) < len(t.vocab) {
		return t.vocab[s]
	}
	return t.syms[int(s)-len(t.vocab)]
}

// appendSymbol appends the token of final symbol s, or the tokens of its
// bytes when s is not a token (bytes without a token are dropped, as
// llama.cpp does).
func (t *Tokenizer) appendSymbol(dst []int32, s int32) []int32 {
	if int(s) < len(t.vocab) {
		return append(dst, s)
	}
	for _, b := range t.symBytes(s) {
		dst = t.appendFallbackByte(dst, b)
	}
	return dst
}

// mergePiece appends the merge-list BPE encoding of piece p: one symbol
// per byte, or per UTF-8 character for SentencePiece-style vocabularies.
func (t *Tokenizer) mergePiece(dst []int32, p []byte) []int32 {
	var sbuf [shortPiece]int32
	syms := sbuf[:0]
	if t.spaceMarks {
		for i := 0; i < len(p); {
			w := min(utf8Len(p[i]), len(p)-i)
			syms = append(syms, t.charSymbol(p, i, w))
			i += w
		}
	} else {
		for _, b := range p {
			syms = append(syms, t.byteSym[b])
		}
	}
	if len(syms) > shortPiece {
		syms = t.mergeSymsHeap(syms)
	} else {
		syms = t.mergeSyms(syms)
	}
	for _, s := range syms {
		if s < 0 { // a character with no symbol: its bytes fall back
			off, w := int(-s-1)>>3, int(-s-1)&7
			for _, b := range p[off : off+w] {
				dst = t.appendFallbackByte(dst, b)
			}
			continue
		}
		dst = t.appendSymbol(dst, s)
	}
	return dst
}

// charSymbol returns the symbol of the character p[i:i+w]: its token, a
// merge-only symbol, or -(i<<3|w)-1 for a character that is neither (it
// takes part in no merge and falls back to bytes).
func (t *Tokenizer) charSymbol(p []byte, i, w int) int32 {
	c := p[i : i+w]
	if id, ok := t.ranks[string(c)]; ok {
		return id
	}
	if id, ok := t.extra[string(c)]; ok {
		return id
	}
	return int32(-(i<<3 | w) - 1)
}

// appendFallbackByte appends the token of byte b (byte-level or <0xNN>),
// the unknown token when there is none for a SentencePiece-style
// vocabulary, and nothing for a byte-level one (as llama.cpp).
func (t *Tokenizer) appendFallbackByte(dst []int32, b byte) []int32 {
	if id := t.byteID[b]; id >= 0 {
		return append(dst, id)
	}
	if t.spaceMarks && t.spec.UNK != NoToken {
		return append(dst, t.spec.UNK)
	}
	return dst
}

// mergeSyms merges a short symbol list in place with a quadratic scan.
func (t *Tokenizer) mergeSyms(syms []int32) []int32 {
	if len(syms) < 2 {
		return syms
	}
	var rbuf [shortPiece]uint32
	var resbuf [shortPiece]int32
	ranks, res := rbuf[:len(syms)-1], resbuf[:len(syms)-1]
	for i := range ranks {
		ranks[i], res[i] = t.pairRank(syms[i], syms[i+1])
	}
	for len(ranks) > 0 {
		best, bi := uint32(noMerge), -1
		for i, r := range ranks {
			if r < best {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		syms[bi] = res[bi]
		syms = append(syms[:bi+1], syms[bi+2:]...)
		ranks = append(ranks[:bi], ranks[bi+1:]...)
		res = append(res[:bi], res[bi+1:]...)
		if bi < len(ranks) {
			ranks[bi], res[bi] = t.pairRank(syms[bi], syms[bi+1])
		}
		if bi > 0 {
			ranks[bi-1], res[bi-1] = t.pairRank(syms[bi-1], syms[bi])
		}
	}
	return syms
}

// mergeSymsHeap merges a long symbol list: symbols form a linked list and
// candidate merges sit in a min-heap ordered by (rank, position).
func (t *Tokenizer) mergeSymsHeap(sym []int32) []int32 {
	n := len(sym)
	next := heapMerge(n, func(i, j, _ int32) (int32, bool) {
		r, _ := t.pairRank(sym[i], sym[j])
		return int32(r), r != noMerge
	}, func(i, j int32) {
		_, sym[i] = t.pairRank(sym[i], sym[j])
	})
	out := sym[:0]
	for i := int32(0); i < int32(n); i = next[i] {
		out = append(out, sym[i])
	}
	return out
}
