package tokenizer

import (
	"sort"
	"unicode"
	"unicode/utf8"
)

// This file holds hand-written versions of the llama.cpp pre-tokenizer
// stages that llama.cpp itself runs with std::regex over its "collapsed"
// text, where every non-ASCII character stands for its Unicode category
// (letter, number, punctuation, mark, symbol, whitespace or other) and a
// \p{...} class matches the category plus a fixed set of ASCII characters.
// The stages here reproduce those matches (tests compare them with the
// patterns run by regexp2 over the collapsed text); text between matches
// stays a piece of its own, as llama.cpp's regex split does.

// runeAt decodes the character at s[i] (invalid bytes as U+FFFD, width 1).
func runeAt(s []byte, i int) (rune, int) {
	if b := s[i]; b < utf8.RuneSelf {
		return rune(b), 1
	}
	return utf8.DecodeRune(s[i:])
}

// colSpace reports llama.cpp's \s over collapsed text: ASCII whitespace
// and every non-ASCII whitespace character (collapsed to \v).
func colSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || '\t' <= r && r <= '\r'
	}
	return unicode.IsSpace(r)
}

// colCategory reports whether non-ASCII r collapses to the category of is.
func colCategory(r rune, is func(rune) bool) bool {
	return r >= utf8.RuneSelf && !unicode.IsSpace(r) && is(r)
}

// The collapsed classes: \p{N} = [0-9] + numbers, \p{L} = [A-Za-z] +
// letters, \p{P} = llama.cpp's ASCII punctuation set + punctuation, \p{S}
// = its ASCII symbol set + symbols ('~' is in neither), \p{M} = marks.
func colNumber(r rune) bool { return '0' <= r && r <= '9' || colCategory(r, unicode.IsNumber) }
func colLetter(r rune) bool {
	return 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || colCategory(r, unicode.IsLetter)
}
func colPunct(r rune) bool {
	if r < utf8.RuneSelf {
		return '!' <= r && r <= '#' || '%' <= r && r <= '*' || ',' <= r && r <= '/' || r == ':' || r == ';' ||
			r == '?' || r == '@' || '[' <= r && r <= ']' || r == '_' || r == '{' || r == '}'
	}
	return colCategory(r, unicode.IsPunct)
}
func colSymbol(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '$' || r == '+' || '<' <= r && r <= '>' || r == '^' || r == '`' || r == '|'
	}
	return colCategory(r, unicode.IsSymbol)
}
func colMark(r rune) bool { return colCategory(r, unicode.IsMark) }

// matcher returns the end of the match starting at s[i], or -1.
type matcher func(s []byte, i int) int

// gapStage turns a matcher into a stage: a piece is a match, or the run of
// characters before the next match.
func gapStage(m matcher) nextFunc {
	return func(s []byte) int {
		if e := m(s, 0); e > 0 {
			return e
		}
		_, i := runeAt(s, 0)
		for i < len(s) && m(s, i) < 0 {
			_, w := runeAt(s, i)
			i += w
		}
		return i
	}
}

// runMatcher matches \s?[in]{min,max} (lead: the optional whitespace;
// max 0: unbounded) with a backtracking engine's choice: the whitespace is
// taken when a run follows it.
func runMatcher(in func(rune) bool, lead bool, lo, hi int) matcher {
	run := func(s []byte, i int) int {
		n := 0
		for i < len(s) && (hi == 0 || n < hi) {
			r, w := runeAt(s, i)
			if !in(r) {
				break
			}
			i += w
			n++
		}
		if n < lo {
			return -1
		}
		return i
	}
	return func(s []byte, i int) int {
		if lead {
			if r, w := runeAt(s, i); colSpace(r) && i+w < len(s) {
				if e := run(s, i+w); e > i+w {
					return e
				}
			}
		}
		if e := run(s, i); e > i {
			return e
		}
		return -1
	}
}

// runeSet is a set of code points as sorted, disjoint ranges.
type runeSet [][2]rune

// parseRuneSet reads the members of a regex character class body such as
// "A-Za-zµÀ-Ö" (literal characters and ranges, no escapes).
func parseRuneSet(body string) runeSet {
	rs := []rune(body)
	var set runeSet
	for i := 0; i < len(rs); i++ {
		lo, hi := rs[i], rs[i]
		if i+2 < len(rs) && rs[i+1] == '-' {
			hi = rs[i+2]
			i += 2
		}
		set = append(set, [2]rune{lo, hi})
	}
	sort.Slice(set, func(i, j int) bool { return set[i][0] < set[j][0] })
	merged := set[:0]
	for _, r := range set {
		if n := len(merged); n > 0 && r[0] <= merged[n-1][1]+1 {
			merged[n-1][1] = max(merged[n-1][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// has reports whether r is in the set; non-ASCII whitespace is seen as \v,
// as llama.cpp's wide-character regex sees it.
func (set runeSet) has(r rune) bool {
	if r >= utf8.RuneSelf && unicode.IsSpace(r) {
		r = '\v'
	}
	k := sort.Search(len(set), func(k int) bool { return set[k][1] >= r })
	return k < len(set) && set[k][0] <= r
}

// classBody returns the body of the first [...] class of a pattern.
func classBody(pattern string) string {
	rs := []rune(pattern)
	start := -1
	for i, r := range rs {
		switch {
		case r == '[' && start < 0:
			start = i + 1
		case r == ']' && start >= 0:
			return string(rs[start:i])
		}
	}
	return ""
}

// Sets of the DeepSeek patterns (computed once from the patterns).
var (
	setDeepseekLLMLetters = parseRuneSet(classBody(reDeepseekLLMLetters))
	setDeepseekLLMPunct   = parseRuneSet(classBody(reDeepseekLLMPunct))
	setCJK                = parseRuneSet(classBody(reCJK))
	setDeepseekV3CJK      = parseRuneSet(classBody(reDeepseekV3CJK))
)

// isNL reports \r or \n.
func isNL(r rune) bool { return r == '\r' || r == '\n' }

// asciiPunctSym is the class [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~].
func asciiPunctSym(r rune) bool {
	return '!' <= r && r <= '/' || ':' <= r && r <= '@' || '[' <= r && r <= '`' || '{' <= r && r <= '~'
}

func letterOrMark(r rune) bool  { return colLetter(r) || colMark(r) }
func punctOrSymbol(r rune) bool { return colPunct(r) || colSymbol(r) }

// Matchers of [\p{L}\p{M}]+ and [\p{P}\p{S}]+, built once.
var (
	matchLetterMark  = runMatcher(letterOrMark, false, 1, 0)
	matchPunctSymbol = runMatcher(punctOrSymbol, false, 1, 0)
)

// matchDeepseekV3 matches DeepSeek-V3's main pattern
//
//	[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// over collapsed text.
func matchDeepseekV3(s []byte, i int) int {
	c0, w0 := runeAt(s, i)
	if c0 < utf8.RuneSelf && asciiPunctSym(c0) {
		j := i + 1
		for j < len(s) && ('A' <= s[j] && s[j] <= 'Z' || 'a' <= s[j] && s[j] <= 'z') {
			j++
		}
		if j > i+1 {
			return j
		}
	}
	if !isNL(c0) && !colLetter(c0) && !colPunct(c0) && !colSymbol(c0) && i+w0 < len(s) {
		if e := matchLetterMark(s, i+w0); e > 0 {
			return e
		}
	}
	if letterOrMark(c0) {
		return matchLetterMark(s, i)
	}
	k := i
	if c0 == ' ' && i+1 < len(s) {
		k = i + 1
	}
	if r, _ := runeAt(s, k); punctOrSymbol(r) {
		j := matchPunctSymbol(s, k)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	if colSpace(c0) {
		return i + whitespacePiece(s[i:])
	}
	return -1
}

// matchTrailingSpace matches \s+$: the whitespace run that ends the piece.
func matchTrailingSpace(s []byte, i int) int {
	for j := i; j < len(s); {
		r, w := runeAt(s, j)
		if !colSpace(r) {
			return -1
		}
		j += w
	}
	if i == len(s) {
		return -1
	}
	return len(s)
}

// matchDigits3 matches [0-9][0-9][0-9].
func matchDigits3(s []byte, i int) int {
	if i+3 <= len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
		return i + 3
	}
	return -1
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// matchNewline matches [\r\n].
func matchNewline(s []byte, i int) int {
	if s[i] == '\r' || s[i] == '\n' {
		return i + 1
	}
	return -1
}

// falconPunct is [\p{P}\$\+<=>\^~\|`] and defaultPunct the same without
// the backquote.
func falconPunct(r rune) bool {
	return colPunct(r) || r == '$' || r == '+' || '<' <= r && r <= '>' || r == '^' || r == '~' || r == '|' || r == '`'
}
func defaultPunct(r rune) bool { return r != '`' && falconPunct(r) }

// handStages returns the hand-written stages of the regex-defined
// pre-tokenizers, or nil.
func handStages(name string) []stage {
	gpt2 := nextFunc(nextPieceGPT2)
	switch name {
	case "", "default":
		return []stage{gapStage(runMatcher(defaultPunct, false, 1, 0)), gpt2,
			gapStage(runMatcher(colNumber, false, 1, 0)), gapStage(matchDigits3)}
	case "falcon":
		return []stage{gapStage(runMatcher(falconPunct, false, 1, 0)), gpt2, gapStage(matchDigits3)}
	case "deepseek-llm":
		return []stage{gapStage(matchNewline), gapStage(runMatcher(setDeepseekLLMLetters.has, true, 1, 0)),
			gapStage(runMatcher(setDeepseekLLMPunct.has, true, 1, 0)), gapStage(matchTrailingSpace),
			gapStage(runMatcher(setCJK.has, false, 1, 0)), gapStage(runMatcher(colNumber, false, 1, 0))}
	case "deepseek-v3", "hunyuan-dense", "joyai-llm":
		return []stage{gapStage(runMatcher(colNumber, false, 1, 3)), gapStage(runMatcher(setDeepseekV3CJK.has, false, 1, 0)),
			gapStage(matchDeepseekV3)}
	case "deepseek-coder":
		return []stage{gapStage(matchNewline), gapStage(runMatcher(colLetter, true, 1, 0)), gapStage(runMatcher(colPunct, true, 1, 0)),
			gapStage(runMatcher(setCJK.has, false, 1, 0)), gapStage(runMatcher(colNumber, false, 1, 1))}
	}
	return nil
}
