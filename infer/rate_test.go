package infer

import (
	"context"
	"math"
	"testing"
)

// TestTokensPerSecondOverDecode: the rate counts only the tokens generated
// after the first forward pass, over the time they took; when the first pass
// produced everything it is the tokens over the whole call.
func TestTokensPerSecondOverDecode(t *testing.T) {
	for _, c := range []struct {
		r    Result
		want float64
	}{
		{Result{Tokens: make([]int32, 5), PrefillTokens: 1, Seconds: 3, PrefillSeconds: 1, DecodeSeconds: 2}, 2},
		{Result{Tokens: make([]int32, 5), PrefillTokens: 3, Seconds: 3, PrefillSeconds: 1, DecodeSeconds: 2}, 1},
		// Everything came from the first (prefill) round: a microsecond of
		// bookkeeping after it must not read as a million tokens a second.
		{Result{Tokens: make([]int32, 5), PrefillTokens: 5, Seconds: 0.5, PrefillSeconds: 0.499999, DecodeSeconds: 1e-6}, 10},
		{Result{Tokens: make([]int32, 1), PrefillTokens: 1, Seconds: 0.25, PrefillSeconds: 0.25}, 4},
		{Result{}, 0},
	} {
		if got := c.r.TokensPerSecond(); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%+v: TokensPerSecond = %g, want %g", c.r, got, c.want)
		}
	}
}

// TestSpeculativeRateWhenOutputFitsFirstRound reproduces the QA report: with
// a draft that agrees with the target, a short output comes entirely from the
// first round, and the reported rate must not exceed the tokens over the
// whole call.
func TestSpeculativeRateWhenOutputFitsFirstRound(t *testing.T) {
	tok := trainTestTok(t)
	m := tokModel(t, tok, true, 5, 0.2)
	prompt := tok.Encode([]byte("the cat sat on the mat. the dog sat on the log."))
	res, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 4, IgnoreEOT: true, Draft: m, DraftTokens: 4, FixedDraftTokens: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) != 4 || res.Rounds != 1 || res.PrefillTokens != 4 {
		t.Fatalf("self-draft: %d tokens in %d rounds, %d from the prefill round; want 4 in 1 round, all 4", len(res.Tokens), res.Rounds, res.PrefillTokens)
	}
	if got, want := res.TokensPerSecond(), 4/res.Seconds; math.Abs(got-want) > 1e-9*want {
		t.Fatalf("TokensPerSecond = %g, want tokens/seconds = %g", got, want)
	}
	// Longer: later rounds are decode; the rate covers only their tokens.
	res, err = m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 12, IgnoreEOT: true, Draft: m, DraftTokens: 2, FixedDraftTokens: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.PrefillTokens != 3 || len(res.Tokens) != 12 {
		t.Fatalf("K=2 self-draft: %d tokens, %d from the prefill round; want 12 and 3", len(res.Tokens), res.PrefillTokens)
	}
	if got, want := res.TokensPerSecond(), 9/res.DecodeSeconds; math.Abs(got-want) > 1e-9*want {
		t.Fatalf("TokensPerSecond = %g, want 9 decode tokens / %gs = %g", got, res.DecodeSeconds, want)
	}
	// Plain decoding: the first token is the prefill's.
	res, err = m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 3, IgnoreEOT: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.PrefillTokens != 1 {
		t.Fatalf("plain: PrefillTokens = %d, want 1", res.PrefillTokens)
	}
}
