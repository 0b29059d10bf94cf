package serve

import (
	"context"
	"math"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/moe-llm/moe/infer"
)

// TestSpeculativeSampleDistribution checks the accept/resample rule: a
// token drawn from the draft's q and passed through infer.SpeculativeAccept is
// distributed as the target's p (chi-square over 200k draws).
func TestSpeculativeSampleDistribution(t *testing.T) {
	p := []float32{0.05, 0.4, 0.1, 0.25, 0.2, 0}
	q := []float32{0.3, 0.1, 0.1, 0.1, 0.2, 0.2}
	s := infer.NewSampler(infer.SampleOptions{Temperature: 1, Seed: 11})
	const n = 200000
	counts := make([]float64, len(p))
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
	chi := 0.0
	for i, pi := range p {
		if pi == 0 {
			if counts[i] != 0 {
				t.Errorf("token %d has p=0 but was produced %v times", i, counts[i])
			}
			continue
		}
		e := float64(pi) * n
		chi += (counts[i] - e) * (counts[i] - e) / e
	}
	// 4 degrees of freedom: P(chi² > 18.5) ≈ 0.001.
	if chi > 18.5 {
		t.Errorf("chi-square %.1f: counts %v, want proportions %v", chi, counts, p)
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
