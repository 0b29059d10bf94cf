package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/internal/stattest"
)

// TestSpeculativeSampleDistribution checks the accept/resample rule: a
// token drawn from the draft's q and passed through infer.SpeculativeAccept is
// distributed as the target's p (chi-square over 200k draws).
func TestSpeculativeSampleDistribution(t *testing.T) {
	p := []float32{0.05, 0.4, 0.1, 0.25, 0.2, 0}
	q := []float32{0.3, 0.1, 0.1, 0.1, 0.2, 0.2}
	s := infer.NewSampler(infer.SampleOptions{Temperature: 1, Seed: 11})
	const n = 200000
	counts := make([]int, len(p))
	accepted := 0
	buf := make([]float32, len(p))
	for range n {
		d := s.SampleProbs(q)
		copy(buf, p)
		tok, ok := infer.SpeculativeAccept(s, buf, q, d, buf)
		counts[tok]++
		if ok {
			accepted++
		}
	}
	if chi, df := stattest.ChiSquareDense(counts, p); chi > stattest.Critical(df) {
		t.Errorf("chi-square %.1f over %d df: counts %v, want proportions %v", chi, df, counts, p)
	}
	// Acceptance rate is Σ min(p, q) = 0.05+0.1+0.1+0.1+0.2 = 0.55.
	if r := float64(accepted) / n; math.Abs(r-0.55) > 0.01 {
		t.Errorf("acceptance %.3f, want 0.55", r)
	}
}

// TestRealModelSpeculativeSampling serves sampled requests with a draft
// identical to the target, which must accept (nearly) every proposal, and
// with a different draft, which must still answer every request in full.
func TestRealModelSpeculativeSampling(t *testing.T) {
	tok := testTokenizer(t)
	m := testModel(t, tok, 32, 2, 4, 96, 1)
	for _, c := range []struct {
		name      string
		draftSeed uint64
		minRate   float64
	}{{"same", 1, 0.95}, {"other", 2, 0}} {
		draft := testModel(t, tok, 32, 2, 4, 96, c.draftSeed)
		srv, err := NewFromModel(m, draft, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		ts := serveOnLoopback(t, srv)
		cl := client(ts, "")
		total := 0
		for i := range 4 {
			res, err := cl.Completions.New(context.Background(), openai.CompletionNewParams{Model: "moe",
				Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("And God saw")},
				MaxTokens: openai.Int(24), Temperature: openai.Float(0.9), TopP: openai.Float(0.95), Seed: openai.Int(int64(i))})
			if err != nil {
				t.Fatal(err)
			}
			u := res.Usage.CompletionTokens
			if res.Choices[0].FinishReason == "length" && u != 24 || u < 1 || u > 24 {
				t.Errorf("%s: %d tokens, finish %s", c.name, u, res.Choices[0].FinishReason)
			}
			total += int(u)
		}
		_, metrics := rawDo(t, ts, "GET", "/metrics", "", nil)
		prop := metricValue(metrics, "moe_speculative_proposed_tokens_total")
		acc := metricValue(metrics, "moe_speculative_accepted_tokens_total")
		if prop <= 0 || acc/prop < c.minRate {
			t.Errorf("%s draft: %v of %v proposals accepted, want rate >= %v", c.name, acc, prop, c.minRate)
		}
		t.Logf("%s draft: %d tokens, %v/%v proposals accepted", c.name, total, acc, prop)
		ts.stop(t)
	}
}

// TestRealModelNgramSpeculative serves greedy requests with prompt lookup
// (no draft model), alone and four at a time: the text must equal plain
// greedy decoding, and the drafter must have proposed (the prompts repeat
// themselves; random-weight text rarely repeats, so little is accepted and
// the policy soon falls back to plain steps). A sampled request
// through the same path must come back in full.
func TestRealModelNgramSpeculative(t *testing.T) {
	tok := testTokenizer(t)
	m := testModel(t, tok, 32, 2, 4, 160, 1)
	// K fixed: this random-weight target never continues a repetition,
	// so the adaptive policy (which starts prompt lookup with plain steps
	// until its unverified proposals would have paid) would never
	// speculate, and the test is of the speculative path.
	srv, err := NewFromModel(m, nil, Options{NgramDraft: true, DraftTokens: 4, FixedDraftTokens: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOnLoopback(t, srv)
	cl := client(ts, "")
	prompts := []string{"And God said, Let there be light. And God said, Let there", "the earth the earth the earth the", "abc abc abc", "In the beginning"}
	complete := func(p string, temp float64) *openai.Completion {
		res, err := cl.Completions.New(context.Background(), openai.CompletionNewParams{Model: "moe",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(p)}, MaxTokens: openai.Int(40), Temperature: openai.Float(temp)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, p := range prompts {
		want := referenceText(t, m, tok.Encode([]byte(p)), 40, []int32{tok.EOT()})
		if got := complete(p, 0).Choices[0].Text; got != want {
			t.Errorf("prompt lookup %q, plain %q", got, want)
		}
	}
	var wg sync.WaitGroup
	for _, p := range prompts {
		wg.Go(func() {
			want := referenceText(t, m, tok.Encode([]byte(p)), 40, []int32{tok.EOT()})
			if got := complete(p, 0).Choices[0].Text; got != want {
				t.Errorf("batched prompt lookup %q, plain %q", got, want)
			}
		})
	}
	wg.Wait()
	if res := complete(prompts[0], 0.8); res.Usage.CompletionTokens < 1 || res.Choices[0].FinishReason == "length" && res.Usage.CompletionTokens != 40 {
		t.Errorf("sampled: %d tokens, finish %s", res.Usage.CompletionTokens, res.Choices[0].FinishReason)
	}
	_, metrics := rawDo(t, ts, "GET", "/metrics", "", nil)
	prop, acc := metricValue(metrics, "moe_speculative_proposed_tokens_total"), metricValue(metrics, "moe_speculative_accepted_tokens_total")
	if prop <= 0 {
		t.Errorf("prompt lookup proposed nothing")
	}
	t.Logf("prompt lookup: %v of %v proposals accepted", acc, prop)
}

// TestNgramPolicyBacksOff serves a greedy request with prompt lookup on a
// fake engine whose passes cost 2 ms per token, so verifying K proposals
// costs K+1 plain steps, while the fake's text rarely repeats: the policy
// must fall back to plain steps and only probe now and then. Without it
// (K = 4 every step) the target would be fed ~4 rejected proposals per
// token; the bound allows the probes (≤ 4 proposals for ≤ 3 steps each, at
// doubling intervals).
func TestNgramPolicyBacksOff(t *testing.T) {
	eng := &fakeEngine{ctxLen: 512, perTok: 2 * time.Millisecond}
	ts := startServer(t, eng, Options{NgramDraft: true, DraftTokens: 4})
	prompt := strings.Repeat("abcdefgh", 4)
	const n = 200
	code, body := rawDo(t, ts, "POST", "/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":%d,"temperature":0}`, prompt, n), nil)
	var cr completionResponse
	if code != 200 || json.Unmarshal([]byte(body), &cr) != nil {
		t.Fatalf("%d %s", code, body)
	}
	if want := greedyText(prompt, n, 0); cr.Choices[0].Text != want {
		t.Fatalf("prompt lookup output %q, want %q", cr.Choices[0].Text, want)
	}
	_, m := rawDo(t, ts, "GET", "/metrics", "", nil)
	prop, acc := metricValue(m, "moe_speculative_proposed_tokens_total"), metricValue(m, "moe_speculative_accepted_tokens_total")
	eng.mu.Lock()
	fed := eng.fedTokens
	eng.mu.Unlock()
	wasted := fed - len(prompt) - n
	t.Logf("proposed %v, accepted %v; target fed %d tokens for %d prompt + %d generated", prop, acc, fed, len(prompt), n)
	if prop <= 0 {
		t.Fatalf("no probe: nothing proposed")
	}
	if wasted > n*35/100 {
		t.Fatalf("target verified %d rejected tokens for %d generated: the policy did not back off", wasted, n)
	}
}
