package infer

import (
	"context"
	"slices"
	"testing"

	"github.com/moe-llm/moe/tokenizer"
)

// TestGenerateStopsAtEndOfTurn: by default Generate stops at <|end|> (the
// chat end-of-turn) as well as at end-of-text, as llama.cpp stops at a
// GGUF's eot and eos tokens; IgnoreEOT keeps going. The model is made to
// emit <|end|> first: its output row becomes twice the row of the token
// greedy decoding picks, so its logit is twice the (positive) maximum.
func TestGenerateStopsAtEndOfTurn(t *testing.T) {
	tok := trainTestTok(t)
	end, ok := tok.Special(tokenizer.End)
	if !ok {
		t.Fatal("trained tokenizer has no <|end|>")
	}
	if got, want := DefaultStopTokens(tok), []int32{tok.EOT(), end}; !slices.Equal(got, want) {
		t.Fatalf("DefaultStopTokens = %v, want %v", got, want)
	}
	if got := ChatStopTokens(tok); !slices.Equal(got, DefaultStopTokens(tok)) {
		t.Fatalf("ChatStopTokens = %v differs from DefaultStopTokens", got)
	}
	cfg := testConfig(false)
	cfg.VocabSize = tok.VocabSize()
	w := randomWeights(t, cfg, 3, 0.2)
	m, err := New(cfg, w, tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	prompt := tok.Encode([]byte("the cat sat on"))
	ctx := context.Background()
	first, err := m.Generate(ctx, prompt, GenerateOptions{MaxTokens: 1, IgnoreEOT: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := first.Tokens[0]
	if a == end || a == tok.EOT() {
		t.Fatalf("random model already picks stop token %d first; choose another seed", a)
	}
	d := cfg.HiddenSize
	for i := 0; i < d; i++ {
		w.LMHead[int(end)*d+i] = 2 * w.LMHead[int(a)*d+i]
	}
	m, err = New(cfg, w, tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	var emitted []int32
	res, err := m.Generate(ctx, prompt, GenerateOptions{MaxTokens: 10}, func(id int32) error { emitted = append(emitted, id); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, []int32{end}) || res.StopReason != StopToken || res.Text != "" || len(emitted) != 0 {
		t.Fatalf("default stop: tokens %v, reason %q, text %q, emitted %v; want [%d] (<|end|>), %q, no text", res.Tokens, res.StopReason, res.Text, emitted, end, StopToken)
	}
	// A draft does not change where generation stops.
	draft, err := New(cfg, randomWeights(t, cfg, 4, 0.2), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = m.Generate(ctx, prompt, GenerateOptions{MaxTokens: 10, Draft: draft, DraftTokens: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, []int32{end}) || res.StopReason != StopToken {
		t.Fatalf("default stop with a draft: tokens %v, reason %q", res.Tokens, res.StopReason)
	}
	res, err = m.Generate(ctx, prompt, GenerateOptions{MaxTokens: 5, IgnoreEOT: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) != 5 || res.Tokens[0] != end || res.StopReason != StopLength {
		t.Fatalf("IgnoreEOT: tokens %v, reason %q; want 5 tokens starting with <|end|>", res.Tokens, res.StopReason)
	}
	// Explicit StopTokens replace the default set.
	res, err = m.Generate(ctx, prompt, GenerateOptions{MaxTokens: 3, StopTokens: []int32{tok.EOT()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) < 2 || res.Tokens[0] != end {
		t.Fatalf("StopTokens {EOT}: tokens %v; want generation to go past <|end|>", res.Tokens)
	}
}
