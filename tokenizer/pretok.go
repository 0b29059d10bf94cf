package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// PatternCL100K names GPT-4's pre-tokenizer, the regular expression
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// implemented by hand (Go's regexp has no look-ahead). Bytes that are not
// valid UTF-8 are treated one at a time as punctuation.
const PatternCL100K = "cl100k"

// Character classes used by the pre-tokenizer.
const (
	clsOther  = iota // punctuation, symbols, invalid bytes
	clsLetter        // \p{L}
	clsNumber        // \p{N}
	clsSpace         // \s other than \r \n
	clsNL            // \r or \n
)

// asciiClass is the class of every ASCII byte; it is computed by a pure
// function at init and never modified.
var asciiClass = func() (c [128]uint8) {
	for i := range c {
		r := rune(i)
		switch {
		case r == '\r' || r == '\n':
			c[i] = clsNL
		case unicode.IsSpace(r):
			c[i] = clsSpace
		case unicode.IsLetter(r):
			c[i] = clsLetter
		case unicode.IsNumber(r):
			c[i] = clsNumber
		default:
			c[i] = clsOther
		}
	}
	return c
}()

// classAt returns the class of the character starting at s[i], its width in
// bytes and the rune (utf8.RuneError for an invalid byte). i < len(s).
func classAt(s []byte, i int) (cls uint8, w int, r rune) {
	b := s[i]
	if b < utf8.RuneSelf {
		return asciiClass[b], 1, rune(b)
	}
	r, w = utf8.DecodeRune(s[i:])
	switch {
	case r == utf8.RuneError && w == 1:
		return clsOther, 1, r
	case unicode.IsLetter(r):
		return clsLetter, w, r
	case unicode.IsNumber(r):
		return clsNumber, w, r
	case unicode.IsSpace(r):
		return clsSpace, w, r
	}
	return clsOther, w, r
}

// nextPiece returns the length of the first pre-token of s (len(s) > 0).
func nextPiece(s []byte) int { return nextPieceCL(s, 3, true) }

// nextPieceLlama3 is llama.cpp's Llama 3 pre-tokenizer (llama-bpe): cl100k
// with contractions matched in ASCII case only.
func nextPieceLlama3(s []byte) int { return nextPieceCL(s, 3, false) }

// nextPieceQwen2 is llama.cpp's Qwen2 pre-tokenizer: Llama 3's with one
// digit per number piece (\p{N} instead of \p{N}{1,3}).
func nextPieceQwen2(s []byte) int { return nextPieceCL(s, 1, false) }

// nextPieceCL returns the length of the first piece of the cl100k family:
// maxDigits is the longest number piece and fold says whether the
// contractions use Unicode case folding (tiktoken) or ASCII case (llama.cpp).
func nextPieceCL(s []byte, maxDigits int, fold bool) int {
	c0, w0, _ := classAt(s, 0)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if s[0] == '\'' && len(s) > 1 {
		if n := contraction(s, fold); n > 0 {
			return n
		}
	}
	switch c0 {
	case clsLetter:
		return letters(s, w0)
	case clsNumber:
		return numberPiece(s, w0, maxDigits)
	case clsOther, clsSpace:
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if w0 < len(s) {
			if c, _, _ := classAt(s, w0); c == clsLetter {
				return letters(s, w0)
			}
		}
	}
	if n := punctPiece(s, c0); n > 0 {
		return n
	}
	return whitespacePiece(s)
}

// numberPiece matches \p{N}{1,maxDigits} at a number character s[0] of
// width w0.
func numberPiece(s []byte, w0, maxDigits int) int {
	i := w0
	for k := 1; k < maxDigits && i < len(s); k++ {
		c, w, _ := classAt(s, i)
		if c != clsNumber {
			break
		}
		i += w
	}
	return i
}

// punctPiece matches ' ?[^\s\p{L}\p{N}]+[\r\n]*' at s[0] (of class c0)
// and returns its length, or 0.
func punctPiece(s []byte, c0 uint8) int {
	start := -1
	if c0 == clsOther {
		start = 0
	} else if s[0] == ' ' && len(s) > 1 {
		if c, _, _ := classAt(s, 1); c == clsOther {
			start = 1
		}
	}
	if start < 0 {
		return 0
	}
	i := start
	for i < len(s) {
		c, w, _ := classAt(s, i)
		if c != clsOther {
			break
		}
		i += w
	}
	for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

// letters returns the end of the run of letters starting at s[i].
func letters(s []byte, i int) int {
	for i < len(s) {
		b := s[i]
		if b < utf8.RuneSelf {
			if asciiClass[b] != clsLetter {
				return i
			}
			i++
			continue
		}
		c, w, _ := classAt(s, i)
		if c != clsLetter {
			return i
		}
		i += w
	}
	return i
}

// contraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d) where s[0] is an apostrophe and
// returns its length or 0. With fold, case folding follows Unicode simple
// folding, under which 's' also matches U+017F LATIN SMALL LETTER LONG S;
// without, only ASCII case is ignored (llama.cpp).
func contraction(s []byte, fold bool) int {
	_, w1, r1 := classAt(s, 1)
	switch r1 {
	case 's', 'S', 't', 'T', 'm', 'M', 'd', 'D':
		return 1 + w1
	case 'ſ':
		if fold {
			return 1 + w1
		}
		return 0
	}
	if len(s) < 3 {
		return 0
	}
	r2 := s[2]
	switch {
	case (r1 == 'r' || r1 == 'R') && (r2 == 'e' || r2 == 'E'),
		(r1 == 'v' || r1 == 'V') && (r2 == 'e' || r2 == 'E'),
		(r1 == 'l' || r1 == 'L') && (r2 == 'l' || r2 == 'L'):
		return 3
	}
	return 0
}

// Pieces calls fn with each pre-token of s in order; the pieces concatenate
// to s. It is exported for inspection and tests.
func Pieces(s []byte, fn func(piece []byte)) {
	for len(s) > 0 {
		n := nextPiece(s)
		fn(s[:n])
		s = s[n:]
	}
}
