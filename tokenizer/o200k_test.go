package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
	"github.com/tiktoken-go/tokenizer/codec"
)

// o200kRanks is the number of mergeable ranks in o200k_base.
const o200kRanks = 199998

// o200k builds o200k_base from the vocabulary embedded in tiktoken-go, the
// reference, with the o200k pre-tokenizer.
var o200k = sync.OnceValues(func() (*Tokenizer, error) {
	ref := codec.NewO200kBase()
	vocab := make([][]byte, o200kRanks)
	for id := range vocab {
		s, err := ref.Decode([]uint{uint(id)})
		if err != nil {
			return nil, fmt.Errorf("reference decode %d: %w", id, err)
		}
		vocab[id] = []byte(s)
	}
	return NewRanked(vocab, map[string]int32{EndOfText: 199999, "<|endofprompt|>": 200018}, "o200k")
})

func mustO200K(t testing.TB) *Tokenizer {
	t.Helper()
	return mustTok(t)(o200k())
}

// mixedText is a large text of prose, code, CJK, emoji (with joiners and
// modifiers), combining marks, odd whitespace, numbers and invalid UTF-8.
func mixedText(tb testing.TB, seed uint64) string {
	var sb strings.Builder
	sb.Write(kjvSample(tb)[:30000])
	parts := []string{
		"package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := 0; i < 10; i++ {\n\t\tfmt.Printf(\"%d: %q\\n\", i, s[i:])\n\t}\n}\n",
		"def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\r\n",
		"東京は日本の首都です。中文测试，标点符号！한국어 문장입니다. ひらがなカタカナ",
		"emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ done", "e\u0301cole Cafe\u0301 nai\u0308ve", "HTTPServer isOK McDonald'S DON'T i'm",
		"\u00a0\u2003x\u3000y \t\n\n  \n", "1234567890 3.14159 ١٢٣ ⅫⅣ", "path/to/file.go // x//y ///",
		"\xff\xfe bad \x80 bytes \xe3\x81 truncated", "ǅungla ǈ Ǉ ῼ ᾈ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙", "'s 'S 'ſ 'LL 're",
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	alphabet := []rune("aZ '\"\n\r\t.,!?/0129_-é中ー😀\u00a0\u2003\u3000٣①ⅫsStTlLdDmMrReEvV\u0300\u0301ǅʰ〆ß")
	for range 400 {
		sb.WriteString(parts[rng.IntN(len(parts))])
		for j := rng.IntN(30); j > 0; j-- {
			sb.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
	}
	return sb.String()
}

// o200kPattern is GPT-4o's split pattern as tiktoken publishes it.
const o200kPattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// regexpPieces splits valid UTF-8 s with regexp2's interpreter (the (?:)
// wrapper keeps tiktoken-go's generated matcher out).
func regexpPieces(t testing.TB, pattern, s string) []string {
	return findAll(t, regexp2.MustCompile(`(?:`+pattern+`)`, regexp2.None), s)
}

// findAll returns every match of re in s, in order.
func findAll(t testing.TB, re *regexp2.Regexp, s string) []string {
	var out []string
	m, err := re.FindStringMatch(s)
	for ; m != nil && err == nil; m, err = re.FindNextMatch(m) {
		out = append(out, m.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func splitPieces(t testing.TB, pre, s string) []string {
	var out []string
	if err := Split(pre, []byte(s), func(p []byte) { out = append(out, string(p)) }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHandWrittenPreTokenizersMatchRegexp compares each hand-written
// pre-tokenizer with its pattern run by regexp2 on mixed valid UTF-8.
func TestHandWrittenPreTokenizersMatchRegexp(t *testing.T) {
	llama3 := `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2 := strings.Replace(llama3, `\p{N}{1,3}`, `\p{N}`, 1)
	gpt2 := `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	text := strings.ToValidUTF8(mixedText(t, 3), "\uFFFD")
	var chunks []string
	for i := 0; i < len(text); i += 997 {
		j := min(i+997, len(text))
		for j < len(text) && !utf8.RuneStart(text[j]) {
			j++
		}
		chunks = append(chunks, text[i:j])
		i = j - 997
	}
	for _, c := range []struct{ pre, pattern string }{
		{"o200k", o200kPattern}, {"llama-bpe", llama3}, {"qwen2", qwen2}, {"gpt-2", gpt2},
	} {
		for _, s := range chunks {
			if got, want := splitPieces(t, c.pre, s), regexpPieces(t, c.pattern, s); !slices.Equal(got, want) {
				for k := range min(len(got), len(want)) {
					if got[k] != want[k] {
						t.Fatalf("%s: piece %d = %q, regexp %q", c.pre, k, got[k], want[k])
					}
				}
				t.Fatalf("%s: %d pieces, regexp %d", c.pre, len(got), len(want))
			}
		}
	}
}

// TestO200KMatchesTiktoken encodes a large mixed text (invalid UTF-8
// included) with o200k_base through the gpt-4o pre-tokenizer and compares
// with tiktoken-go.
func TestO200KMatchesTiktoken(t *testing.T) {
	tok := mustO200K(t)
	ref := codec.NewO200kBase()
	text := mixedText(t, 7)
	if utf8.ValidString(text) {
		t.Fatal("test text should hold invalid UTF-8")
	}
	// Compare paragraph by paragraph so that a difference is local.
	for _, s := range strings.SplitAfter(text, "\n\n") {
		want := refEncode(t, ref, s)
		got := tok.Encode([]byte(s))
		if !slices.Equal(got, want) {
			t.Fatalf("Encode(%q) =\n%v, tiktoken-go\n%v\npieces %q", s, got, want, splitPieces(t, "o200k", strings.ToValidUTF8(s, "\uFFFD")))
		}
	}
	t.Logf("%d bytes, %d tokens", len(text), len(tok.Encode([]byte(text))))
	if got := tok.EncodeWithSpecials([]byte("a<|endoftext|>")); !slices.Equal(got, []int32{64, 199999}) {
		t.Errorf("EncodeWithSpecials = %v", got)
	}
}

// FuzzO200KPieces compares the gpt-4o pre-tokenizer with regexp2.
func FuzzO200KPieces(f *testing.F) {
	f.Add("HTTPServer isOK e\u0301cole 'S")
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		if got, want := splitPieces(t, "o200k", s), regexpPieces(t, o200kPattern, s); !slices.Equal(got, want) {
			t.Fatalf("pieces(%q) = %q, regexp %q", s, got, want)
		}
	})
}

// BenchmarkPreTokenizers reports the splitting speed (MB/s) of every
// pre-tokenizer family on mixed text, and BPE encoding with o200k.
func BenchmarkPreTokenizers(b *testing.B) {
	text := []byte(strings.ToValidUTF8(mixedText(b, 11), "\uFFFD"))
	for _, name := range PreTokenizers() {
		b.Run(name, func(b *testing.B) {
			p, err := preTokenizerNamed(name)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(text)))
			n := 0
			for b.Loop() {
				p.each(text, func([]byte) { n++ })
			}
		})
	}
	b.Run("cl100k", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			Pieces(text, func([]byte) {})
		}
	})
}

func BenchmarkEncodeO200K(b *testing.B) { benchEncodeWarm(b, mustO200K(b)) }

// o200kMergeList returns o200k_base as a merge-list vocabulary (the
// merges derived from the ranks, as Hugging Face's converter does), read
// through NewFromSpec like a GGUF or tokenizer.json vocabulary. With text,
// only the tokens that are substrings of its pieces are kept (all that BPE
// can reach on it), which keeps deriving the merges fast.
func o200kMergeList(rank *Tokenizer, text []byte) (*Tokenizer, error) {
	vocab := make([][]byte, o200kRanks)
	if text == nil {
		copy(vocab, rank.vocab)
	} else {
		Split("o200k", llamaUTF8(text), func(p []byte) {
			for i := range p {
				for j := i + 1; j <= len(p); j++ {
					if id, ok := rank.ranks[string(p[i:j])]; ok {
						vocab[id] = rank.vocab[id]
					}
				}
			}
		})
		for b := range 256 {
			vocab[rank.byteID[b]] = rank.vocab[rank.byteID[b]]
		}
	}
	sub, err := NewRanked(vocab, map[string]int32{EndOfText: 199999}, "o200k")
	if err != nil {
		return nil, err
	}
	spec := NewSpec(ModelBPE)
	spec.Pre, spec.IgnoreMerges, spec.EOS = "o200k", true, 199999
	spec.Tokens = make([]string, 200000)
	spec.Types = make([]int32, len(spec.Tokens))
	for id := range spec.Tokens {
		switch b := sub.TokenBytes(int32(id)); {
		case sub.IsSpecial(int32(id)):
			spec.Tokens[id], spec.Types[id] = string(b), TypeControl
		case b != nil:
			spec.Tokens[id], spec.Types[id] = ByteLevelEncode(b), TypeNormal
		default:
			spec.Tokens[id], spec.Types[id] = fmt.Sprintf("[PAD%d]", id), TypeUnused
		}
	}
	for _, m := range sub.Merges() {
		spec.Merges = append(spec.Merges, [2]string{ByteLevelEncode(sub.TokenBytes(m[0])), ByteLevelEncode(sub.TokenBytes(m[1]))})
	}
	return NewFromSpec(spec)
}

// TestO200KMergeListMatchesRanks checks the merge-list engine at scale:
// o200k as merges encodes the mixed text as the rank-based o200k does.
func TestO200KMergeListMatchesRanks(t *testing.T) {
	rank := mustO200K(t)
	text := []byte(mixedText(t, 13) + strings.Repeat("abc", 200) + strings.Repeat(" ", 300))
	merges, err := o200kMergeList(rank, text)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := merges.Encode(text), rank.Encode(text); !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("token %d: merges %d, ranks %d", i, got[i], want[i])
			}
		}
		t.Fatalf("%d tokens, ranks %d", len(got), len(want))
	}
}

func BenchmarkEncodeO200KMergeList(b *testing.B) {
	tok, err := o200kMergeList(mustO200K(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	benchEncodeWarm(b, tok)
}
