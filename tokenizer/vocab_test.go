package tokenizer

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// smallSPM is a hand-made SentencePiece-style vocabulary: <unk>, <s>,
// </s>, the 256 byte tokens (ids 3..258), a few pieces with scores and a
// user-defined <tag>.
func smallSPM(t *testing.T) *Tokenizer {
	t.Helper()
	spec := NewSpec(ModelSPM)
	spec.BOS, spec.EOS, spec.UNK = 1, 2, 0
	add := func(s string, typ int32, score float32) {
		spec.Tokens = append(spec.Tokens, s)
		spec.Types = append(spec.Types, typ)
		spec.Scores = append(spec.Scores, score)
	}
	add("<unk>", TypeUnknown, 0)
	add("<s>", TypeControl, 0)
	add("</s>", TypeControl, 0)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), TypeByte, 0)
	}
	for _, p := range []struct {
		s     string
		score float32
	}{{"▁", -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {"w", -2}, {"r", -2}, {"d", -2},
		{"▁h", -3}, {"ll", -3}, {"he", -4}, {"▁he", -5}, {"llo", -5}, {"▁hello", -6}} {
		add(p.s, TypeNormal, p.score)
	}
	add("<tag>", TypeUserDefined, 0)
	return mustTok(t)(NewFromSpec(spec))
}

func TestSPMHandMade(t *testing.T) {
	tok := smallSPM(t)
	byteTok := func(b byte) int32 { return 3 + int32(b) }
	for _, c := range []struct {
		in                   string
		addSpecial, parseSpc bool
		want                 []int32
	}{
		// ▁h and ll (score -3) merge first, leftmost first; then ▁he, llo, ▁hello.
		{"hello", false, false, []int32{272}},
		{"hello", true, false, []int32{1, 272}},
		{"hello wd", false, false, []int32{272, 259, 264, 266}},
		// é has no token: its two bytes fall back to <0xC3> <0xA9>.
		{"hé", false, false, []int32{267, byteTok(0xC3), byteTok(0xA9)}},
		// User-defined tokens are always matched; text after a special
		// gets the space prefix again.
		{"a<tag>b", false, false, []int32{259, byteTok('a'), 273, 259, byteTok('b')}},
		{"<s>hello", false, true, []int32{1, 272}},
		// Without parse_special, <s> is text: he (-4) loses to ll (-3).
		{"<s>hello", false, false, []int32{259, byteTok('<'), byteTok('s'), byteTok('>'), 269, 271}},
		{"", true, false, []int32{1}},
		// As llama.cpp, a 0xF8-0xFF byte starts a 4-byte symbol: it takes the
		// U+2581 after it into its byte fallback.
		{"\xfe hello", false, false, []int32{259, byteTok(0xFE), byteTok(0xE2), byteTok(0x96), byteTok(0x81), 269, 271}},
	} {
		if got := tok.Tokenize([]byte(c.in), c.addSpecial, c.parseSpc); !slices.Equal(got, c.want) {
			t.Errorf("Tokenize(%q, %v, %v) = %v, want %v", c.in, c.addSpecial, c.parseSpc, got, c.want)
		}
	}
	for _, c := range []struct {
		id      int32
		special bool
		want    string
	}{{272, false, " hello"}, {1, false, ""}, {1, true, "<s>"}, {byteTok(0xC3), false, "\xc3"}, {273, false, "<tag>"}, {0, false, ""}} {
		if got := string(tok.Piece(c.id, c.special)); got != c.want {
			t.Errorf("Piece(%d, %v) = %q, want %q", c.id, c.special, got, c.want)
		}
	}
	if !tok.AddSpacePrefix() || tok.Model() != ModelSPM || tok.Attr(3) != AttrByte || !tok.IsSpecial(1) || tok.IsSpecial(273) {
		t.Error("SPM accessors")
	}
	if s := tok.Specials(); s.BOS != 1 || s.EOS != 2 || !s.AddBOS || s.AddEOS || !slices.Contains(s.EOG, 2) {
		t.Errorf("Specials = %+v", s)
	}
}

// smallBPE is a byte-level BPE whose merge order differs from its ids: the
// first merge makes "el" (id 261), which the id order would apply last.
func smallBPE(t *testing.T, pre string, withEL bool) *Tokenizer {
	t.Helper()
	spec := NewSpec(ModelBPE)
	spec.Pre = pre
	for b := range 256 {
		spec.Tokens = append(spec.Tokens, ByteLevelEncode([]byte{byte(b)}))
	}
	spec.Tokens = append(spec.Tokens, "he", "ll", "hell", "Ġw", "hello", "el", "<|endoftext|>")
	spec.Types = make([]int32, len(spec.Tokens))
	for i := range spec.Types {
		spec.Types[i] = TypeNormal
	}
	spec.Types[262] = TypeControl
	spec.EOS = 262
	if withEL {
		spec.Merges = append(spec.Merges, [2]string{"e", "l"})
	}
	spec.Merges = append(spec.Merges, [2]string{"h", "e"}, [2]string{"l", "l"}, [2]string{"he", "ll"},
		[2]string{"Ġ", "w"}, [2]string{"hell", "o"})
	return mustTok(t)(NewFromSpec(spec))
}

func TestMergeBPEHandMade(t *testing.T) {
	for _, c := range []struct {
		pre    string
		withEL bool
		in     string
		want   []int32
	}{
		// "e l" is the first merge, so "hello" never becomes "he"+"ll".
		{"gpt-2", true, "hello", []int32{'h', 261, 'l', 'o'}},
		{"gpt-2", false, "hello", []int32{260}},
		{"gpt-2", false, "hello wow", []int32{260, 259, 'o', 'w'}},
		// llama-bpe ignores merges for a piece that is a token.
		{"llama-bpe", true, "hello", []int32{260}},
		{"llama-bpe", true, "helloo", []int32{'h', 261, 'l', 'o', 'o'}},
		// Control tokens are text unless parsed; invalid UTF-8 becomes U+FFFD.
		{"gpt-2", false, "<|endoftext|>", []int32{'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>'}},
		{"gpt-2", false, "a\xff", []int32{'a', 0xEF, 0xBF, 0xBD}},
		// A long piece goes through the heap merge.
		{"gpt-2", false, strings.Repeat("l", 70), slices.Repeat([]int32{257}, 35)},
	} {
		tok := smallBPE(t, c.pre, c.withEL)
		if got := tok.Encode([]byte(c.in)); !slices.Equal(got, c.want) {
			t.Errorf("%s (e-l merge %v): Encode(%q) = %v, want %v", c.pre, c.withEL, c.in, got, c.want)
		}
	}
	tok := smallBPE(t, "gpt-2", false)
	if got := tok.EncodeWithSpecials([]byte("hello<|endoftext|>")); !slices.Equal(got, []int32{260, 262}) {
		t.Errorf("EncodeWithSpecials = %v", got)
	}
	if tok.EOT() != 262 || string(tok.TokenBytes(259)) != " w" || tok.Piece(262, false) != nil {
		t.Error("BPE accessors")
	}
}

func TestSpecErrors(t *testing.T) {
	spec := NewSpec(ModelBPE)
	spec.Tokens = []string{"a"}
	spec.Pre = "no-such-pre"
	if _, err := NewFromSpec(spec); err == nil || !strings.Contains(err.Error(), `"no-such-pre"`) {
		t.Errorf("unknown pre-tokenizer: %v", err)
	}
	spec = NewSpec("wordpiece")
	spec.Tokens = []string{"a"}
	if _, err := NewFromSpec(spec); err == nil || !strings.Contains(err.Error(), `"wordpiece"`) {
		t.Errorf("unknown model: %v", err)
	}
	spec = NewSpec(ModelSPM)
	spec.Tokens = []string{"a"}
	spec.BOS = 5
	if _, err := NewFromSpec(spec); err == nil || !strings.Contains(err.Error(), "bos") {
		t.Errorf("bos out of range: %v", err)
	}
}

func TestSpecSaveLoad(t *testing.T) {
	for _, tok := range []*Tokenizer{smallBPE(t, "gpt-2", true), smallSPM(t)} {
		path := t.TempDir() + "/t.json"
		if err := tok.Save(path); err != nil {
			t.Fatal(err)
		}
		back, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		in := []byte("hello <s>wd hé helloo")
		if a, b := back.Tokenize(in, true, true), tok.Tokenize(in, true, true); !slices.Equal(a, b) || back.VocabSize() != tok.VocabSize() {
			t.Errorf("after Save/Load: %v, want %v", a, b)
		}
	}
}

// smallSPMBPE is a hand-made SentencePiece-like merge-list BPE (Hugging
// Face BPE with byte_fallback): "eo" is a token but no merge makes it.
func smallSPMBPE(t *testing.T) *Tokenizer {
	t.Helper()
	spec := NewSpec(ModelBPE)
	spec.SpaceMarks, spec.AddSpacePrefix, spec.AddBOS = true, true, true
	spec.BOS, spec.EOS, spec.UNK = 1, 2, 0
	spec.Tokens = []string{"<unk>", "<s>", "</s>"}
	spec.Types = []int32{TypeUnknown, TypeControl, TypeControl}
	for b := range 256 {
		spec.Tokens = append(spec.Tokens, fmt.Sprintf("<0x%02X>", b))
		spec.Types = append(spec.Types, TypeByte)
	}
	for _, s := range []string{"▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "llo", "▁hello", "eo"} { // ids 259..269
		spec.Tokens = append(spec.Tokens, s)
		spec.Types = append(spec.Types, TypeNormal)
	}
	spec.Merges = [][2]string{{"▁", "h"}, {"l", "l"}, {"▁h", "e"}, {"ll", "o"}, {"▁he", "llo"}}
	return mustTok(t)(NewFromSpec(spec))
}

func TestSPMLikeBPEHandMade(t *testing.T) {
	tok := smallSPMBPE(t)
	byteTok := func(b byte) int32 { return 3 + int32(b) }
	for _, c := range []struct {
		in   string
		want []int32
	}{
		{"hello", []int32{1, 268}},
		// "eo" is a token, but no merge makes it: e and o stay apart.
		{"heo", []int32{1, 266, 263}},
		{"hé", []int32{1, 264, byteTok(0xC3), byteTok(0xA9)}},
		{"hello hello", []int32{1, 268, 268}},
		{strings.Repeat("l", 70), append([]int32{1, 259}, slices.Repeat([]int32{265}, 35)...)},
	} {
		if got := tok.Tokenize([]byte(c.in), true, true); !slices.Equal(got, c.want) {
			t.Errorf("Tokenize(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := string(tok.Piece(268, false)); got != " hello" || !tok.AddSpacePrefix() {
		t.Errorf("Piece(268) = %q", got)
	}
}

func TestDetokenize(t *testing.T) {
	spm := smallSPM(t)
	for _, c := range []struct {
		ids                   []int32
		removeSpecial, unpars bool
		want                  string
	}{
		{[]int32{272, 259, 264}, false, false, "hello w"},
		// As llama.cpp: only the first token loses its leading space, and
		// dropping BOS turns the removal off.
		{[]int32{1, 272}, false, false, " hello"},
		{[]int32{1, 272}, true, false, " hello"},
		{[]int32{1, 272}, false, true, "<s> hello"},
		{[]int32{3 + 0xC3, 3 + 0xA9}, false, false, "é"},
	} {
		if got := string(spm.Detokenize(c.ids, c.removeSpecial, c.unpars)); got != c.want {
			t.Errorf("SPM Detokenize(%v, %v, %v) = %q, want %q", c.ids, c.removeSpecial, c.unpars, got, c.want)
		}
	}
	bpe := smallBPE(t, "gpt-2", false) // gpt-2 cleans spaces
	for in, want := range map[string]string{
		"hello , wow .":     "hello, wow.",
		"a ' b":             "a'b",
		"it 's we 're x 'd": "it's we're x 'd",
	} {
		if got := string(bpe.Detokenize(bpe.Encode([]byte(in)), false, false)); got != want {
			t.Errorf("gpt-2 Detokenize(Encode(%q)) = %q, want %q", in, got, want)
		}
	}
	if got := string(smallBPE(t, "qwen2", false).Detokenize(bpe.Encode([]byte("a , b")), false, false)); got != "a , b" {
		t.Errorf("qwen2 does not clean spaces: %q", got)
	}
}

func TestKimiK2Pieces(t *testing.T) {
	for in, want := range map[string][]string{
		"你好world":          {"你好", "world"},
		"9! 中東":            {"9", "!", " ", "中東"},
		"Hello你好 x":        {"Hello", "你好", " x"},
		" HELLOworld's!\n": {" HELLOworld's", "!\n"},
		"1234567":          {"123", "456", "7"},
		"a\u0301b":         {"a", "\u0301b"},
		"  \n\nx  y":       {"  \n\n", "x", " ", " y"},
	} {
		var got []string
		if err := Split("kimi-k2", []byte(in), func(p []byte) { got = append(got, string(p)) }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("kimi-k2 %q = %q, want %q", in, got, want)
		}
	}
}
