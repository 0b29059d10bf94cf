package infer

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
)

// TestFamilyChatSpecials checks, on each family fixture (its real chat
// template, bos/eos ids and add_bos_token as make_family.py writes them),
// BOS and end-of-generation as llama.cpp handles them: a vocabulary that
// adds BOS gets exactly one, whether or not its template writes bos_token
// (llama.cpp drops the template's, then tokenizing adds it); one that does
// not add BOS keeps what the template writes; the chat tokens are the
// tokens of the rendered prompt text as generate encodes it; and
// generation stops at the file's eos and at the tokens llama.cpp treats as
// end of generation by their text.
func TestFamilyChatSpecials(t *testing.T) {
	pool := compute.NewPool(1)
	defer pool.Close()
	msgs := []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hello"},
		{Role: "assistant", Content: "Hi."}, {Role: "user", Content: "the other"}}
	for _, c := range []struct {
		arch    string
		addBOS  bool
		first   string   // the prompt's first token
		textBOS string   // what the rendered text starts with
		stops   []string // the end-of-generation tokens, by text
	}{
		{"qwen3moe", false, "<|im_start|>", "<|im_start|>", []string{"<|endoftext|>", "<|im_end|>"}},
		{"qwen2moe", false, "<|im_start|>", "<|im_start|>", []string{"<|endoftext|>", "<|im_end|>"}},
		{"olmoe", false, "<|endoftext|>", "<|endoftext|><|system|>", []string{"<|endoftext|>"}},
		{"granitemoe", true, "<|end_of_text|>", "<|start_of_role|>", []string{"<|end_of_text|>", "<|endoftext|>"}},
		{"llama", true, "<s>", " [INST]", []string{"</s>"}},
		// harmony: <|end|> closes a message but does not end generation
		// once <|return|> and <|call|> exist (llama.cpp's rule).
		{"gpt-oss", false, "<|start|>", "<|start|>system<|message|>", []string{"<|call|>", "<|endoftext|>", "<|return|>"}},
	} {
		m := loadT(t, filepath.Join("testdata", "family", c.arch+"-f32.gguf"), pool)
		sp := m.Tok.Specials()
		if sp.AddBOS != c.addBOS {
			t.Errorf("%s: add_bos %v, want %v", c.arch, sp.AddBOS, c.addBOS)
		}
		text, err := m.ChatPrompt(msgs, true)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(text, c.textBOS) {
			t.Errorf("%s: prompt text starts %q, want %q", c.arch, text[:min(len(text), 20)], c.textBOS)
		}
		ids, err := m.EncodeChat(msgs, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(m.Tok.TokenBytes(ids[0])); got != c.first {
			t.Errorf("%s: first chat token %q, want %q", c.arch, got, c.first)
		}
		if len(ids) > 1 && ids[1] == sp.BOS {
			t.Errorf("%s: the chat prompt starts with BOS twice", c.arch)
		}
		if gen := m.EncodePrompt(text); !slices.Equal(gen, ids) {
			t.Errorf("%s: chat tokens %v differ from generate's encoding of the rendered prompt %v", c.arch, ids, gen)
		}
		if gen := m.EncodePrompt("Hello"); (gen[0] == sp.BOS) != c.addBOS {
			t.Errorf("%s: generate's prompt starts with %q (add_bos %v)", c.arch, m.Tok.TokenBytes(gen[0]), c.addBOS)
		}
		var stops []string
		for _, id := range m.StopTokens() {
			stops = append(stops, string(m.Tok.TokenBytes(id)))
		}
		sort.Strings(stops)
		if !slices.Equal(stops, c.stops) {
			t.Errorf("%s: stop tokens %q, want %q", c.arch, stops, c.stops)
		}
	}
}

// TestScoreMatchesReference: Score's cross-entropy sum on a family file
// equals the float64 reference forward's (familyRef), and
// PerplexityChunks cuts whole chunks whose first token is BOS exactly
// where the vocabulary adds it.
func TestScoreMatchesReference(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	toks := []int32{84, 258, 39, 101, 3, 200, 257, 17, 66, 120}
	for _, arch := range familyFixtures {
		path := filepath.Join("testdata", "family", arch+"-f32.gguf")
		m := loadT(t, path, pool)
		want := 0.0
		logits := newFamilyRef(t, path, arch).forward(toks)
		const from = 3
		for p := from; p+1 < len(toks); p++ {
			mx := math.Inf(-1)
			for _, v := range logits[p] {
				mx = math.Max(mx, v)
			}
			s := 0.0
			for _, v := range logits[p] {
				s += math.Exp(v - mx)
			}
			want += mx + math.Log(s) - logits[p][toks[p+1]]
		}
		var seen []int32
		got, n, err := m.Score(context.Background(), [][]int32{toks}, from, func(id int32) { seen = append(seen, id) })
		if err != nil {
			t.Fatal(err)
		}
		if n != len(toks)-1-from || !slices.Equal(seen, toks[from+1:]) {
			t.Fatalf("%s: scored %d targets %v, want %v", arch, n, seen, toks[from+1:])
		}
		if math.Abs(got-want) > 1e-4*math.Abs(want) {
			t.Errorf("%s: cross-entropy sum %.6f, float64 reference %.6f", arch, got, want)
		}

		chunks, err := m.PerplexityChunks(append(toks, toks...), 8)
		if err != nil {
			t.Fatal(err)
		}
		sp := m.Tok.Specials()
		if len(chunks) != 2 || len(chunks[1]) != 8 || (chunks[1][0] == sp.BOS) != sp.AddBOS || !slices.Equal(chunks[1][1:], append(toks, toks...)[9:16]) {
			t.Errorf("%s: chunks %v (add_bos %v)", arch, chunks, sp.AddBOS)
		}
		if _, err := m.PerplexityChunks(toks, 8); err == nil {
			t.Errorf("%s: 10 tokens made chunks of 8 (llama-perplexity needs two chunks' worth)", arch)
		}
	}
}

// TestGenerateStopsAtTextEOG: a model over the qwen2moe fixture's
// vocabulary, whose eos is <|endoftext|>, stops by default at <|im_end|>,
// which llama.cpp counts as end of generation by its text alone.
func TestGenerateStopsAtTextEOG(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "family", "qwen2moe-f32.gguf"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imEnd, ok := f.Tok.Special("<|im_end|>")
	if !ok || f.Tok.Specials().EOS == imEnd {
		t.Fatalf("fixture: <|im_end|> %d (found %v), eos %d", imEnd, ok, f.Tok.Specials().EOS)
	}
	prompt := f.EncodePrompt("the other")
	m := modelForcing(t, f.Tok, prompt, imEnd)
	res, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, []int32{imEnd}) || res.StopReason != StopToken || res.Text != "" {
		t.Fatalf("tokens %v, reason %q, text %q; want [%d] (<|im_end|>), %q", res.Tokens, res.StopReason, res.Text, imEnd, StopToken)
	}
}
