package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// nextPieceGPT2 returns the length of the first piece of GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// (contractions in lower case only), as llama.cpp's gpt2 splitter.
func nextPieceGPT2(s []byte) int {
	if s[0] == '\'' && len(s) > 1 {
		switch s[1] {
		case 's', 't', 'm', 'd':
			return 2
		}
		if len(s) > 2 {
			switch string(s[1:3]) {
			case "re", "ve", "ll":
				return 3
			}
		}
	}
	c0, w0, _ := classAt(s, 0)
	cls, i := c0, 0
	if s[0] == ' ' && len(s) > 1 {
		cls, _, _ = classAt(s, 1)
		i = 1
	}
	switch cls {
	case clsLetter:
		return letters(s, i)
	case clsNumber, clsOther:
		for i < len(s) {
			c, w, _ := classAt(s, i)
			if c != cls {
				break
			}
			i += w
		}
		return i
	}
	// Whitespace run s[:end]; \s+(?!\S) leaves the last space to the next piece.
	end, lastW := 0, 0
	for end < len(s) {
		c, w, _ := classAt(s, end)
		if c != clsSpace && c != clsNL {
			break
		}
		lastW = w
		end += w
	}
	switch {
	case end == 0:
		return w0
	case end < len(s) && end > lastW:
		return end - lastW
	}
	return end
}

// o200k character classes: the two letter sets of GPT-4o's pattern.
const (
	oUpper  = 1 << iota // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	oLower              // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
	oLetter             // \p{L}
	oNumber             // \p{N}
	oSpace              // \s
	oNL                 // \r \n
)

// o200kClass is the class set of every ASCII byte, computed once.
var o200kASCII = func() (c [128]uint8) {
	for i := range c {
		c[i] = o200kRuneClass(rune(i))
	}
	return c
}()

func o200kRuneClass(r rune) uint8 {
	switch {
	case r == '\r' || r == '\n':
		return oSpace | oNL
	case unicode.IsSpace(r):
		return oSpace
	case unicode.IsNumber(r):
		return oNumber
	case unicode.IsMark(r):
		return oUpper | oLower
	case unicode.IsUpper(r) || unicode.IsTitle(r):
		return oUpper | oLetter
	case unicode.IsLower(r):
		return oLower | oLetter
	case unicode.IsLetter(r): // Lm, Lo
		return oUpper | oLower | oLetter
	}
	return 0
}

// o200kAt returns the classes and width of the character at s[i]; invalid
// bytes are one-byte punctuation. With llama, non-ASCII characters get
// llama.cpp's collapsed classes: every letter is both upper and lower, and
// marks are not letters.
func o200kAt(s []byte, i int, llama bool) (uint8, int) {
	if b := s[i]; b < utf8.RuneSelf {
		return o200kASCII[b], 1
	}
	r, w := utf8.DecodeRune(s[i:])
	if r == utf8.RuneError && w == 1 {
		return 0, 1
	}
	if llama {
		switch {
		case unicode.IsSpace(r):
			return oSpace, w
		case unicode.IsLetter(r):
			return oUpper | oLower | oLetter, w
		case unicode.IsNumber(r):
			return oNumber, w
		}
		return 0, w
	}
	return o200kRuneClass(r), w
}

// o200kPrefix reports whether class c matches [^\r\n\p{L}\p{N}].
func o200kPrefix(c uint8) bool { return c&(oNL|oLetter|oNumber) == 0 }

// o200kWord1 matches [upper]*[lower]+ at s[i:] and returns its end, or -1.
func o200kWord1(s []byte, i int, llama bool) int {
	lastLower, lastW := -1, 0 // last character of the upper run that is also lower
	for i < len(s) {
		c, w := o200kAt(s, i, llama)
		if c&oUpper == 0 {
			break
		}
		if c&oLower != 0 {
			lastLower, lastW = i, w
		}
		i += w
	}
	if i < len(s) {
		if c, _ := o200kAt(s, i, llama); c&oLower != 0 {
			return o200kRun(s, i, oLower, llama)
		}
	}
	if lastLower < 0 {
		return -1
	}
	// Backtracking gives the lower run the last character both sets share.
	return lastLower + lastW
}

// o200kWord2 matches [upper]+[lower]* at s[i:] and returns its end, or -1.
func o200kWord2(s []byte, i int, llama bool) int {
	e := o200kRun(s, i, oUpper, llama)
	if e == i {
		return -1
	}
	return o200kRun(s, e, oLower, llama)
}

// o200kRun returns the end of the run of characters with a class in mask
// starting at s[i].
func o200kRun(s []byte, i int, mask uint8, llama bool) int {
	for i < len(s) {
		c, w := o200kAt(s, i, llama)
		if c&mask == 0 {
			break
		}
		i += w
	}
	return i
}

// nextPieceO200K returns the length of the first piece of GPT-4o's (o200k)
// pattern
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// with a backtracking regex engine's semantics (tiktoken's, Hugging Face's).
func nextPieceO200K(s []byte) int { return nextPieceO200KAs(s, false) }

// nextPieceGPT4o is llama.cpp's version of the same pattern (its "gpt-4o"
// pre-tokenizer): run over collapsed text, a non-ASCII letter counts as
// both upper and lower case, marks are not letters, and contractions match
// in ASCII case only.
func nextPieceGPT4o(s []byte) int { return nextPieceO200KAs(s, true) }

func nextPieceO200KAs(s []byte, llama bool) int {
	c0, w0 := o200kAt(s, 0, llama)
	word := func(end int) int {
		if end < len(s) && s[end] == '\'' && end+1 < len(s) {
			end += contraction(s[end:], !llama)
		}
		return end
	}
	for _, f := range [...]func([]byte, int, bool) int{o200kWord1, o200kWord2} {
		if o200kPrefix(c0) {
			if e := f(s, w0, llama); e > 0 {
				return word(e)
			}
		}
		if e := f(s, 0, llama); e > 0 {
			return word(e)
		}
	}
	if c0&oNumber != 0 {
		i := w0
		for k := 1; k < 3 && i < len(s); k++ {
			c, w := o200kAt(s, i, llama)
			if c&oNumber == 0 {
				break
			}
			i += w
		}
		return i
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
	isOther := func(c uint8) bool { return c&(oSpace|oLetter|oNumber) == 0 }
	start := -1
	if isOther(c0) {
		start = 0
	} else if s[0] == ' ' && len(s) > 1 {
		if c, _ := o200kAt(s, 1, llama); isOther(c) {
			start = 1
		}
	}
	if start >= 0 {
		i := start
		for i < len(s) {
			c, w := o200kAt(s, i, llama)
			if !isOther(c) {
				break
			}
			i += w
		}
		for i < len(s) && (s[i] == '\r' || s[i] == '\n' || s[i] == '/') {
			i++
		}
		return i
	}
	return whitespacePiece(s)
}

// whitespacePiece matches \s*[\r\n]+|\s+(?!\S)|\s+ at a whitespace
// character s[0].
func whitespacePiece(s []byte) int {
	end, lastNL, lastW := 0, -1, 0
	for end < len(s) {
		c, w, _ := classAt(s, end)
		if c != clsSpace && c != clsNL {
			break
		}
		if c == clsNL {
			lastNL = end
		}
		lastW = w
		end += w
	}
	switch {
	case lastNL >= 0:
		return lastNL + 1
	case end == len(s) || end == lastW:
		return end
	default:
		return end - lastW
	}
}

// isHan reports llama.cpp's Han ranges (CJK Unified Ideographs, extensions
// A–F, compatibility ideographs and their supplement).
func isHan(r rune) bool {
	switch {
	case 0x4E00 <= r && r <= 0x9FFF, 0x3400 <= r && r <= 0x4DBF, 0x20000 <= r && r <= 0x2A6DF,
		0x2A700 <= r && r <= 0x2EBEF, 0xF900 <= r && r <= 0xFAFF, 0x2F800 <= r && r <= 0x2FA1F:
		return true
	}
	return false
}

// kimiAt returns the class of the character at s[i] for Kimi-K2's splitter:
// like classAt, with Han characters apart (han).
func kimiAt(s []byte, i int) (cls uint8, w int, han bool) {
	c, w, r := classAt(s, i)
	return c, w, c == clsLetter && isHan(r)
}

// nextPieceKimiK2 is llama.cpp's Kimi-K2 splitter (its own simplification
// of the pattern): Han runs, then words of non-Han letters (any case) with
// an optional leading non-letter, non-number and an optional ASCII-case
// contraction, then cl100k's number, punctuation and whitespace rules.
func nextPieceKimiK2(s []byte) int {
	c0, w0, han0 := kimiAt(s, 0)
	if han0 {
		i := w0
		for i < len(s) {
			_, w, han := kimiAt(s, i)
			if !han {
				break
			}
			i += w
		}
		return i
	}
	i := -1
	if c0 == clsLetter {
		i = 0
	} else if c0 != clsNL && c0 != clsNumber && w0 < len(s) {
		if c1, _, han1 := kimiAt(s, w0); c1 == clsLetter && !han1 {
			i = w0
		}
	}
	if i >= 0 {
		for i < len(s) {
			c, w, han := kimiAt(s, i)
			if c != clsLetter || han {
				break
			}
			i += w
		}
		if i+1 < len(s) && s[i] == '\'' {
			i += contraction(s[i:], false)
		}
		return i
	}
	if c0 == clsNumber {
		return numberPiece(s, w0, 3)
	}
	if n := punctPiece(s, c0); n > 0 {
		return n
	}
	return whitespacePiece(s) // c0 is whitespace: Han letters were taken above
}
