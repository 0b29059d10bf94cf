package tokenizer

import (
	"fmt"
	"unicode/utf8"
)

// This file holds the pre-tokenizers that GGUF's tokenizer.ggml.pre names.
// As in llama.cpp, a pre-tokenizer is a list of stages: the first splits
// the text into pieces, each later stage splits every piece further (text a
// stage's pattern does not match stays a piece of its own). The hot
// families (GPT-2, Llama 3, Qwen2, GPT-4o) have hand-written stages; the
// others run the pattern with regexp2 over llama.cpp's "collapsed" text,
// where every non-ASCII character stands for its Unicode category, so that
// the pieces are the ones llama.cpp makes.

// stage splits s into consecutive pieces.
type stage interface {
	split(s []byte, emit func(piece []byte))
}

// nextFunc is a hand-written stage: it returns the length of the first
// piece of a non-empty s.
type nextFunc func(s []byte) int

func (f nextFunc) split(s []byte, emit func([]byte)) {
	for len(s) > 0 {
		n := f(s)
		emit(s[:n])
		s = s[n:]
	}
}

// preTokenizer is a named list of stages.
type preTokenizer struct {
	name   string
	stages []stage
	// ignoreMerges: a piece that is a token encodes as that token.
	ignoreMerges bool
	// cleanSpaces: detokenizing removes the space before . , ! ? and some
	// contractions (llama.cpp's clean_spaces, Hugging Face's
	// clean_up_tokenization_spaces).
	cleanSpaces bool
}

// noCleanSpaces are the pre-tokenizers for which llama.cpp turns
// clean_spaces off.
var noCleanSpaces = map[string]bool{
	"deepseek-llm": true, "deepseek-coder": true, "deepseek-v3": true, "hunyuan-dense": true, "joyai-llm": true,
	"command-r": true, "qwen2": true, "deepseek-r1-qwen": true, "kormo": true, "f2llmv2": true, "hunyuan": true,
	"solar-open": true, "smollm": true, "gpt-4o": true, "o200k": true, "llama4": true, "kanana2": true, "talkie": true, "minimax-m2": true,
	"trillion": true, "granite-docling": true, "grok-2": true, "bailingmoe": true, "bailingmoe2": true, "llada-moe": true, "kimi-k2": true,
}

// each calls fn with every piece of s in order.
func (p *preTokenizer) each(s []byte, fn func([]byte)) {
	p.run(s, 0, fn)
}

func (p *preTokenizer) run(s []byte, k int, fn func([]byte)) {
	if k == len(p.stages) {
		fn(s)
		return
	}
	if f, ok := p.stages[k].(nextFunc); ok {
		for len(s) > 0 {
			n := f(s)
			p.run(s[:n], k+1, fn)
			s = s[n:]
		}
		return
	}
	p.stages[k].split(s, func(piece []byte) { p.run(piece, k+1, fn) })
}

// Patterns of llama.cpp's DeepSeek pre-tokenizers; the hand-written stages
// take their character sets from them.
const (
	reDeepseekLLMLetters = "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+"
	reDeepseekLLMPunct   = "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+"
	reCJK                = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
	reDeepseekV3CJK      = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+"
)

// preTokenizerNamed builds the pre-tokenizer llama.cpp uses for a
// tokenizer.ggml.pre value.
func preTokenizerNamed(name string) (*preTokenizer, error) {
	p := &preTokenizer{name: name, cleanSpaces: !noCleanSpaces[name]}
	if name == "" {
		p.name = "default"
	}
	switch name {
	case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
		p.stages = []stage{nextFunc(nextPieceLlama3)}
		p.ignoreMerges = true
	case "dbrx", "smaug-bpe", "glm4", "chatglm-bpe":
		p.stages = []stage{nextFunc(nextPieceLlama3)}
	case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "hunyuan", "solar-open", "megrez", "grok-2",
		"bailingmoe", "bailingmoe2", "llada-moe": // Ling's pattern differs in form only (checked in tests)
		p.stages = []stage{nextFunc(nextPieceQwen2)}
	case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
		"modern-bert", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4", "jina-v1-en", "jina-v2-code", "roberta-bpe":
		p.stages = []stage{nextFunc(nextPieceGPT2)}
	case "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2":
		p.stages = []stage{nextFunc(nextDigit), nextFunc(nextPieceGPT2)}
	case "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2":
		p.stages = []stage{nextFunc(nextPieceGPT4o)}
	case "kimi-k2":
		p.stages = []stage{nextFunc(nextPieceKimiK2)}
	case "o200k":
		// Not a llama.cpp name: GPT-4o's pattern with its real semantics
		// (tiktoken, Hugging Face), for tiktoken files and tokenizer.json.
		p.stages = []stage{nextFunc(nextPieceO200K)}
	default:
		if p.stages = handStages(name); p.stages == nil {
			return nil, fmt.Errorf("tokenizer: unknown pre-tokenizer %q (tokenizer.ggml.pre)", name)
		}
	}
	return p, nil
}

// PreTokenizers lists the tokenizer.ggml.pre names moe knows, one per
// family (aliases omitted).
func PreTokenizers() []string {
	return []string{"default", "gpt-2", "llama-bpe", "qwen2", "olmo", "mpt", "starcoder", "refact", "command-r",
		"falcon", "deepseek-llm", "deepseek-coder", "deepseek-v3", "gpt-4o", "o200k", "kimi-k2", "dbrx"}
}

// Split calls fn with the pieces the named pre-tokenizer makes of s (s
// should be valid UTF-8; llama.cpp replaces invalid bytes by U+FFFD
// first, as Tokenizer does for file vocabularies). It is exported for
// inspection, tests and benchmarks.
func Split(name string, s []byte, fn func(piece []byte)) error {
	p, err := preTokenizerNamed(name)
	if err != nil {
		return err
	}
	p.each(s, fn)
	return nil
}

// llamaUTF8 returns s as llama.cpp sees it before pre-tokenizing: each byte
// that does not start a UTF-8 sequence (by llama.cpp's lenient decoding)
// becomes U+FFFD. Valid UTF-8 is returned as is.
func llamaUTF8(s []byte) []byte {
	if utf8.Valid(s) {
		return s
	}
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, w := lenientRune(s[i:])
		if w == 0 {
			out = utf8.AppendRune(out, utf8.RuneError)
			i++
			continue
		}
		out = utf8.AppendRune(out, r) // surrogates and out-of-range runes become U+FFFD
		i += w
	}
	return out
}

// lenientRune decodes like llama.cpp's unicode_cpt_from_utf8: the lead
// byte's length with continuation bytes checked, no overlong or surrogate
// check; width 0 on failure.
func lenientRune(s []byte) (rune, int) {
	b := s[0]
	var n int
	var r rune
	switch {
	case b < 0x80:
		return rune(b), 1
	case b&0x40 == 0:
		return 0, 0
	case b&0x20 == 0:
		n, r = 2, rune(b&0x1F)
	case b&0x10 == 0:
		n, r = 3, rune(b&0x0F)
	case b&0x08 == 0:
		n, r = 4, rune(b&0x07)
	default:
		return 0, 0
	}
	if len(s) < n {
		return 0, 0
	}
	for k := 1; k < n; k++ {
		if s[k]&0xC0 != 0x80 {
			return 0, 0
		}
		r = r<<6 | rune(s[k]&0x3F)
	}
	return r, n
}

// nextDigit is the stage \p{N}: every number character is a piece, and so
// is every run between them.
func nextDigit(s []byte) int {
	c, w, _ := classAt(s, 0)
	if c == clsNumber {
		return w
	}
	i := w
	for i < len(s) {
		c, w, _ := classAt(s, i)
		if c == clsNumber {
			break
		}
		i += w
	}
	return i
}
