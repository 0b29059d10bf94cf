package tokenizer

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
)

// This file is the reference for the hand-written llama.cpp stages: the
// patterns of llama.cpp's llm_tokenizer_bpe run by regexp2 over the text as
// llama.cpp's unicode_regex_split collapses it (non-ASCII characters stand
// for their category; \p{...} becomes the category plus llama.cpp's ASCII
// set; non-ASCII whitespace becomes \v).

const (
	reGPT2           = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
	reDeepseekV3Main = `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + "`" + `{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// llamaPatterns are llama.cpp's patterns for the pre-tokenizers that it
// runs with std::regex.
var llamaPatterns = map[string][]string{
	"default":        {`[\p{P}\$\+<=>\^~\|]+`, reGPT2, `\p{N}+`, `[0-9][0-9][0-9]`},
	"falcon":         {`[\p{P}\$\+<=>\^~\|` + "`" + `]+`, reGPT2, `[0-9][0-9][0-9]`},
	"deepseek-llm":   {"[\r\n]", reDeepseekLLMLetters, reDeepseekLLMPunct, `\s+$`, reCJK, `\p{N}+`},
	"deepseek-v3":    {`\p{N}{1,3}`, reDeepseekV3CJK, reDeepseekV3Main},
	"deepseek-coder": {"[\r\n]", `\s?\p{L}+`, `\s?\p{P}+`, reCJK, `\p{N}`},
	"gpt-4o":         {`[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`},
}

// regexPreTokenizer builds the reference pre-tokenizer from llamaPatterns.
func regexPreTokenizer(t testing.TB, name string) *preTokenizer {
	p := &preTokenizer{name: name}
	for _, e := range llamaPatterns[name] {
		st, err := newRegexStage(e)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p.stages = append(p.stages, st)
	}
	return p
}

// regexStage runs a llama.cpp pattern with regexp2.
type regexStage struct {
	re       *regexp2.Regexp
	collapse bool
}

// Collapsed category characters, as llama.cpp's unicode_regex_split.
const (
	catOther  = 0xD0
	catNumber = 0xD1
	catLetter = 0xD2
	catPunct  = 0xD3
	catMark   = 0xD4
	catSymbol = 0xD5
)

// categorySets are what llama.cpp substitutes for \p{...} in a collapsed
// pattern: the category's stand-in character and its ASCII members.
var categorySets = map[string]string{
	`\p{N}`:  `\u00D10-9`,
	`\p{L}`:  `\u00D2A-Za-z`,
	`\p{P}`:  `\u00D3!-#%-*,-/:-;?-@\[-\]_\{\}`,
	`\p{M}`:  `\u00D4`,
	`\p{S}`:  `\u00D5\$\+<->\^` + "`" + `\|`,
	`\p{Lu}`: `\u00D2A-Za-z`, `\p{Ll}`: `\u00D2A-Za-z`, `\p{Lt}`: `\u00D2A-Za-z`,
	`\p{Lm}`: `\u00D2A-Za-z`, `\p{Lo}`: `\u00D2A-Za-z`,
}

// newRegexStage compiles a llama.cpp pattern for regexp2: with \p{...}
// categories it is rewritten for the collapsed text; "$" (end of the piece
// in C++'s ECMAScript grammar) becomes \z.
func newRegexStage(expr string) (regexStage, error) {
	collapse := false
	for k := range categorySets {
		if strings.Contains(expr, k) {
			collapse = true
		}
	}
	var sb strings.Builder
	inside := false
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '\\' && i+1 < len(expr) && expr[i+1] == 'p' && collapse:
			j := strings.IndexByte(expr[i:], '}')
			set, ok := categorySets[expr[i:i+j+1]]
			if j < 0 || !ok {
				return regexStage{}, fmt.Errorf("unsupported category in %q", expr)
			}
			if !inside {
				sb.WriteString("[" + set + "]")
			} else {
				sb.WriteString(set)
			}
			i += j
		case c == '\\' && i+1 < len(expr):
			sb.WriteByte(c)
			sb.WriteByte(expr[i+1])
			i++
		case c == '[':
			inside = true
			sb.WriteByte(c)
		case c == ']':
			inside = false
			sb.WriteByte(c)
		case c == '$' && !inside:
			sb.WriteString(`\z`)
		default:
			sb.WriteByte(c)
		}
	}
	re, err := regexp2.Compile(sb.String(), regexp2.None)
	if err != nil {
		return regexStage{}, err
	}
	return regexStage{re: re, collapse: collapse}, nil
}

// collapseRune is llama.cpp's stand-in for a non-ASCII character.
func collapseRune(r rune) rune {
	switch {
	case isSpaceRune(r):
		return 0x0B
	case unicode.IsLetter(r):
		return catLetter
	case unicode.IsNumber(r):
		return catNumber
	case unicode.IsPunct(r):
		return catPunct
	case unicode.IsMark(r):
		return catMark
	case unicode.IsSymbol(r):
		return catSymbol
	}
	return catOther
}

// isSpaceRune is llama.cpp's (and Go's) whitespace set.
func isSpaceRune(r rune) bool { return unicode.IsSpace(r) }

func (st regexStage) split(s []byte, emit func([]byte)) {
	runes := make([]rune, 0, len(s))
	offs := make([]int, 0, len(s)+1)
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRune(s[i:])
		if r >= utf8.RuneSelf {
			if st.collapse {
				r = collapseRune(r)
			} else if isSpaceRune(r) {
				r = 0x0B
			}
		}
		runes = append(runes, r)
		offs = append(offs, i)
		i += w
	}
	offs = append(offs, len(s))
	last := 0
	m, err := st.re.FindRunesMatch(runes)
	for ; m != nil && err == nil; m, err = st.re.FindNextMatch(m) {
		if m.RuneLength == 0 {
			continue
		}
		if m.RuneIndex > last {
			emit(s[offs[last]:offs[m.RuneIndex]])
		}
		emit(s[offs[m.RuneIndex]:offs[m.RuneIndex+m.RuneLength]])
		last = m.RuneIndex + m.RuneLength
	}
	if last < len(runes) {
		emit(s[offs[last]:])
	}
}

// TestLlamaStagesMatchRegexp compares the hand-written stages of the
// regex-defined pre-tokenizers with the reference on mixed text.
func TestLlamaStagesMatchRegexp(t *testing.T) {
	text := strings.ToValidUTF8(mixedText(t, 5), "\uFFFD") + " trailing  \t\u3000 ~a ~1 a~b 12345 ０１２ ＡＢＣ！～ 　x `x` a`b ``"
	for name := range llamaPatterns {
		hand, err := preTokenizerNamed(name)
		if err != nil {
			t.Fatal(err)
		}
		ref := regexPreTokenizer(t, name)
		for _, s := range strings.SplitAfter(text, "\n\n") {
			var got, want []string
			hand.each([]byte(s), func(p []byte) { got = append(got, string(p)) })
			ref.each([]byte(s), func(p []byte) { want = append(want, string(p)) })
			if !slices.Equal(got, want) {
				for k := range min(len(got), len(want)) {
					if got[k] != want[k] {
						t.Fatalf("%s: piece %d = %q, regexp %q (in %q)", name, k, got[k], want[k], s)
					}
				}
				t.Fatalf("%s: %d pieces, regexp %d", name, len(got), len(want))
			}
		}
	}
}

// TestGPT4oLlamaDiffersFromO200K pins where llama.cpp's gpt-4o departs
// from the o200k pattern: a combining mark is not a letter, and a
// non-ASCII letter is both cases.
func TestGPT4oLlamaDiffersFromO200K(t *testing.T) {
	for _, c := range []struct {
		in          string
		llama, real []string
	}{
		{"e\u0301cole", []string{"e", "\u0301cole"}, []string{"e\u0301cole"}},
		{"aÉb", []string{"aÉb"}, []string{"a", "Éb"}},
		{"x'ſ", []string{"x", "'ſ"}, []string{"x'ſ"}},
	} {
		var ref []string
		regexPreTokenizer(t, "gpt-4o").each([]byte(c.in), func(p []byte) { ref = append(ref, string(p)) })
		if !slices.Equal(ref, c.llama) {
			t.Errorf("reference gpt-4o %q = %q, want %q", c.in, ref, c.llama)
		}
		if got := splitPieces(t, "gpt-4o", c.in); !slices.Equal(got, c.llama) {
			t.Errorf("gpt-4o %q = %q, want %q", c.in, got, c.llama)
		}
		if got := splitPieces(t, "o200k", c.in); !slices.Equal(got, c.real) {
			t.Errorf("o200k %q = %q, want %q", c.in, got, c.real)
		}
	}
}
