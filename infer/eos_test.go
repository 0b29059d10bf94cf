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
	prompt := tok.Encode([]byte("the cat sat on"))
	ctx := context.Background()
	m := modelForcing(t, tok, prompt, end)
	var emitted []int32
	res, err := m.Generate(ctx, prompt, GenerateOptions{MaxTokens: 10}, func(id int32) error { emitted = append(emitted, id); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, []int32{end}) || res.StopReason != StopToken || res.Text != "" || len(emitted) != 0 {
		t.Fatalf("default stop: tokens %v, reason %q, text %q, emitted %v; want [%d] (<|end|>), %q, no text", res.Tokens, res.StopReason, res.Text, emitted, end, StopToken)
	}
	// A draft does not change where generation stops.
	draft, err := New(m.Cfg, randomWeights(t, m.Cfg, 4, 0.2), tok, nil)
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
