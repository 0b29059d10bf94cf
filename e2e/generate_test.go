package e2e

import (
	"math"
	"strings"
	"testing"
)

// TestSpeculativeShortOutputRate is the QA report's repro: with a draft, an
// output that fits in the first round used to report ~10⁶ tokens/s (tokens
// over the microseconds after the prefill pass). tokens_per_second is now
// decode_tokens / decode_seconds, or tokens / seconds when the first pass
// produced them all.
func TestSpeculativeShortOutputRate(t *testing.T) {
	base, draft := trained(t)
	prompt := strings.Repeat("1 ", 30)
	// The target drafting for itself accepts every proposal: all 5 tokens
	// come from the first round, the case the report hit.
	for _, c := range []struct{ draft, k string }{{base, "4"}, {base, "8"}, {draft, "4"}} {
		k := c.k
		m := generate(t, "--model", base, "--draft", c.draft, "--draft-tokens", k, "--prompt", prompt, "--max-tokens", "5", "--temperature", "0")
		numbers(t, m, "decode_tokens", "decode_seconds", "prefill_seconds")
		tokens, secs, rate := number(t, m, "tokens"), number(t, m, "seconds"), number(t, m, "tokens_per_second")
		dt, ds := number(t, m, "decode_tokens"), number(t, m, "decode_seconds")
		want := tokens / secs
		if dt > 0 {
			want = dt / ds
		}
		if math.Abs(rate-want) > 1e-6*want || rate <= 0 || dt < 0 || dt > tokens {
			t.Errorf("K=%s: tokens_per_second %v, want %v (tokens %v, seconds %v, decode %v in %vs)", k, rate, want, tokens, secs, dt, ds)
		}
		// A few tokens of a micro model cannot take under 10 µs each.
		if rate > 1e5 {
			t.Errorf("K=%s: tokens_per_second %v is absurd", k, rate)
		}
		if c.draft == base && (dt != 0 || number(t, m, "rounds") != 1) {
			t.Errorf("self-draft K=%s: %v decode tokens in %v rounds; want all 5 from the first round", k, dt, m["rounds"])
		}
	}
}
