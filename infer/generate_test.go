package infer

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/internal/stattest"
)

func TestSamplerProbs(t *testing.T) {
	logits := []float32{1, 3, 3, -2, 0.5, 2, 2.9}
	ref := func(T float64, k int, p float64) []float64 {
		ids := []int{0, 1, 2, 3, 4, 5, 6}
		slices.SortStableFunc(ids, func(a, b int) int {
			if logits[a] > logits[b] {
				return -1
			} else if logits[a] < logits[b] {
				return 1
			}
			return 0
		})
		if k > 0 {
			ids = ids[:k]
		}
		var sum float64
		for _, i := range ids {
			sum += math.Exp(float64(logits[i]) / T)
		}
		if p > 0 && p < 1 {
			cum := 0.0
			for j, i := range ids {
				cum += math.Exp(float64(logits[i])/T) / sum
				if cum >= p {
					ids = ids[:j+1]
					break
				}
			}
			sum = 0
			for _, i := range ids {
				sum += math.Exp(float64(logits[i]) / T)
			}
		}
		out := make([]float64, len(logits))
		for _, i := range ids {
			out[i] = math.Exp(float64(logits[i])/T) / sum
		}
		return out
	}
	for _, c := range []struct {
		T float64
		k int
		p float64
	}{{1, 0, 0}, {0.7, 0, 0}, {1, 2, 0}, {1, 3, 0}, {1.3, 0, 0.6}, {0.9, 4, 0.8}, {2, 0, 0.999}} {
		s := NewSampler(SampleOptions{Temperature: c.T, TopK: c.k, TopP: c.p})
		got := make([]float32, len(logits))
		s.Probs(logits, got)
		want := ref(c.T, c.k, c.p)
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-6 {
				t.Fatalf("%+v: probs %v, want %v", c, got, want)
			}
		}
	}
	// Greedy: one-hot on the first maximum.
	s := NewSampler(SampleOptions{})
	got := make([]float32, len(logits))
	s.Probs(logits, got)
	if got[1] != 1 || s.Sample(logits) != 1 {
		t.Fatalf("greedy probs %v", got)
	}
	// Top-k 2 keeps the tie pair (1, 2), not 6.
	s = NewSampler(SampleOptions{Temperature: 1, TopK: 2})
	s.Probs(logits, got)
	if got[6] != 0 || math.Abs(float64(got[1])-0.5) > 1e-6 {
		t.Fatalf("top-k ties: %v", got)
	}
	for _, bad := range []SampleOptions{{Temperature: -1}, {TopP: 1.5}, {TopK: -2}, {Temperature: math.NaN()}} {
		if bad.Validate() == nil {
			t.Fatalf("%+v accepted", bad)
		}
	}
}

func TestSamplerFrequencies(t *testing.T) {
	logits := []float32{0.2, 1.5, -0.3, 0.9, 1.4, -1}
	s := NewSampler(SampleOptions{Temperature: 0.8, TopP: 0.95, Seed: 42})
	p := make([]float32, len(logits))
	s.Probs(logits, p)
	const n = 20000
	counts := map[string]int{}
	probs := map[string]float64{}
	for i, v := range p {
		if v > 0 {
			probs[fmt.Sprint(i)] = float64(v)
		}
	}
	for i := 0; i < n; i++ {
		counts[fmt.Sprint(s.Sample(logits))]++
	}
	stat, df := stattest.ChiSquare(counts, probs, n)
	if stat > stattest.Critical(df) {
		t.Fatalf("sampler frequencies: chi2 %.1f with %d df", stat, df)
	}
	// Same seed, same stream.
	a, b := NewSampler(SampleOptions{Temperature: 1, Seed: 9}), NewSampler(SampleOptions{Temperature: 1, Seed: 9})
	for i := 0; i < 50; i++ {
		if a.Sample(logits) != b.Sample(logits) {
			t.Fatal("same seed gave different samples")
		}
	}
}

// specPair returns a small MoE target and a dense draft with different
// random weights over the same vocabulary.
func specPair(t *testing.T) (*Model, *Model) {
	tc := testConfig(true)
	tc.VocabSize = 7
	dc := &config.Config{ModelType: "llama", VocabSize: 7, HiddenSize: 8, IntermediateSize: 16, NumLayers: 1,
		NumHeads: 2, MaxPositionEmbeddings: 64, RopeTheta: 10000, RMSNormEps: 1e-5}
	return newTestModel(t, tc, 11, 0.5), newTestModel(t, dc, 12, 0.5)
}

// TestSpeculativeDistribution samples the first two tokens many times with
// speculative decoding (K = 2, so both the acceptance chain and the bonus
// token are exercised) and checks with a chi-square test that their joint
// distribution is the target's, while the draft's own is not: with the
// model draft, and with prompt lookup (its proposals are point masses; the
// prompt ends in a repeat, so it proposes "4 6" every time).
func TestSpeculativeDistribution(t *testing.T) {
	target, draft := specPair(t)
	for _, c := range []struct {
		name   string
		prompt []int32
		ngram  bool
	}{{"model", []int32{3, 1, 4}, false}, {"ngram", []int32{0, 6, 4, 6}, true}} {
		for _, so := range []SampleOptions{{Temperature: 1}, {Temperature: 1.5, TopP: 0.95, TopK: 5}} {
			t.Run(fmt.Sprintf("%s_T%v_p%v_k%d", c.name, so.Temperature, so.TopP, so.TopK), func(t *testing.T) {
				testSpeculativeDistribution(t, target, draft, c.prompt, c.ngram, so)
			})
		}
	}
}

func testSpeculativeDistribution(t *testing.T, target, draft *Model, prompt []int32, ngram bool, so SampleOptions) {
	{
		{
			joint := func(m *Model) map[string]float64 {
				V := m.Cfg.VocabSize
				s := NewSampler(so)
				p1, p2 := make([]float32, V), make([]float32, V)
				lg, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{prompt}, false)
				if err != nil {
					t.Fatal(err)
				}
				s.Probs(lg[0], p1)
				out := map[string]float64{}
				for a := 0; a < V; a++ {
					if p1[a] == 0 {
						continue
					}
					lg, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{append(slices.Clone(prompt), int32(a))}, false)
					if err != nil {
						t.Fatal(err)
					}
					s.Probs(lg[0], p2)
					for b := 0; b < V; b++ {
						if p2[b] > 0 {
							out[fmt.Sprint(a, b)] = float64(p1[a]) * float64(p2[b])
						}
					}
				}
				return out
			}
			want, draftDist := joint(target), joint(draft)
			if ngram {
				draftDist = map[string]float64{"4 6": 1}
			}
			const n = 6000
			counts := map[string]int{}
			proposed, accepted := 0, 0
			for i := 0; i < n; i++ {
				opts := GenerateOptions{MaxTokens: 3, Draft: draft, DraftTokens: 2, FixedDraftTokens: true}
				if ngram {
					opts.Draft, opts.Drafter = nil, &NgramDrafter{}
				}
				opts.Sampling = so
				opts.Sampling.Seed = uint64(i)
				res, err := target.Generate(context.Background(), prompt, opts, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Tokens) != 3 {
					t.Fatalf("got %d tokens", len(res.Tokens))
				}
				counts[fmt.Sprint(res.Tokens[0], res.Tokens[1])]++
				proposed += res.Proposed
				accepted += res.Accepted
			}
			stat, df := stattest.ChiSquare(counts, want, n)
			crit := stattest.Critical(df)
			t.Logf("speculative vs target: chi2 %.1f, %d df, critical %.1f; acceptance %d/%d", stat, df, crit, accepted, proposed)
			if stat > crit {
				t.Fatalf("speculative samples do not follow the target: chi2 %.1f > %.1f (%d df)", stat, crit, df)
			}
			dstat, ddf := stattest.ChiSquare(counts, draftDist, n)
			if dstat < stattest.Critical(ddf) {
				t.Fatalf("test has no power: samples also fit the draft's distribution (chi2 %.1f, %d df)", dstat, ddf)
			}
			if accepted == 0 || accepted == proposed {
				t.Fatalf("degenerate acceptance %d/%d", accepted, proposed)
			}
		}
	}
}

// TestSpeculativeGreedyIdentity checks that at temperature 0 speculative
// decoding produces exactly the tokens of plain greedy decoding, for fixed
// and adaptive K, with an unrelated draft and with the target as its own
// draft (everything accepted).
func TestSpeculativeGreedyIdentity(t *testing.T) {
	target, draft := specPair(t)
	ctx := context.Background()
	prompt := []int32{1, 2, 3, 4, 5}
	plain, err := target.Generate(ctx, prompt, GenerateOptions{MaxTokens: 50}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Tokens) != 50 || plain.StopReason != StopLength {
		t.Fatalf("plain: %d tokens, stop %q", len(plain.Tokens), plain.StopReason)
	}
	self, err := New(target.Cfg, target.W, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		d     *Model
		k     int
		fixed bool
	}{{draft, 1, true}, {draft, 3, true}, {draft, 4, false}, {self, 5, true}, {self, 2, false}} {
		var streamed []int32
		res, err := target.Generate(ctx, prompt, GenerateOptions{MaxTokens: 50, Draft: c.d, DraftTokens: c.k, FixedDraftTokens: c.fixed},
			func(tok int32) error { streamed = append(streamed, tok); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Tokens, plain.Tokens) || !slices.Equal(streamed, plain.Tokens) {
			t.Fatalf("K=%d fixed=%v: speculative greedy differs:\n%v\n%v", c.k, c.fixed, res.Tokens, plain.Tokens)
		}
		if c.d == self && res.Accepted != res.Proposed {
			t.Fatalf("self-draft accepted %d of %d", res.Accepted, res.Proposed)
		}
		if res.Proposed == 0 || res.Rounds == 0 {
			t.Fatalf("nothing proposed")
		}
		t.Logf("draft K=%d fixed=%v: proposed %d accepted %d rounds %d final K %d", c.k, c.fixed, res.Proposed, res.Accepted, res.Rounds, res.FinalDraftTokens)
	}
}

func TestGenerateErrorsAndLimits(t *testing.T) {
	target, draft := specPair(t)
	ctx := context.Background()
	if _, err := target.Generate(ctx, nil, GenerateOptions{MaxTokens: 3}, nil); err == nil {
		t.Fatal("empty prompt accepted")
	}
	long := make([]int32, target.Context()+1)
	if _, err := target.Generate(ctx, long, GenerateOptions{MaxTokens: 3}, nil); err == nil {
		t.Fatal("prompt longer than the context accepted")
	}
	if _, err := target.Generate(ctx, []int32{1}, GenerateOptions{Sampling: SampleOptions{Temperature: -1}}, nil); err == nil {
		t.Fatal("bad sampling accepted")
	}
	if _, err := target.Generate(ctx, []int32{1}, GenerateOptions{Stop: []string{"x"}}, nil); err == nil {
		t.Fatal("stop strings without a tokenizer accepted")
	}
	dc := *draft.Cfg
	dc.VocabSize = 9
	other := newTestModel(t, &dc, 3, 0.1)
	if _, err := target.Generate(ctx, []int32{1}, GenerateOptions{MaxTokens: 3, Draft: other}, nil); err == nil {
		t.Fatal("draft with another vocabulary accepted")
	}
	// Generation stops when the context is full, with and without a draft.
	for _, d := range []*Model{nil, draft} {
		p := make([]int32, target.Context()-3)
		res, err := target.Generate(ctx, p, GenerateOptions{Draft: d, DraftTokens: 4}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StopReason != StopContext || len(res.Tokens) != 4 {
			t.Fatalf("draft %v: stop %q after %d tokens", d != nil, res.StopReason, len(res.Tokens))
		}
	}
	// Cancellation.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := target.Generate(cctx, []int32{1}, GenerateOptions{MaxTokens: 10}, nil); err == nil {
		t.Fatal("cancelled context ignored")
	}
}

// TestGenerateSeqReuse checks that a sequence passed in opts.Seq reuses its
// cached prefix and yields the same tokens as a fresh one.
func TestGenerateSeqReuse(t *testing.T) {
	target, draft := specPair(t)
	ctx := context.Background()
	seq, dseq := target.NewSeq(0), draft.NewSeq(0)
	prompt := []int32{1, 2, 3}
	r1, err := target.Generate(ctx, prompt, GenerateOptions{MaxTokens: 6, Seq: seq, Draft: draft, DraftSeq: dseq}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := append(append(slices.Clone(prompt), r1.Tokens...), 4, 5)
	r2, err := target.Generate(ctx, conv, GenerateOptions{MaxTokens: 6, Seq: seq, Draft: draft, DraftSeq: dseq}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r2.CachedTokens < len(prompt)+len(r1.Tokens)-1 {
		t.Fatalf("reused %d cached tokens", r2.CachedTokens)
	}
	fresh, err := target.Generate(ctx, conv, GenerateOptions{MaxTokens: 6}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fresh.Tokens, r2.Tokens) {
		t.Fatalf("reused cache gave %v, fresh %v", r2.Tokens, fresh.Tokens)
	}
}

// TestSpecPolicy checks that K grows when drafts are always accepted and
// cheap, and that the policy falls back to plain decoding when
// verification is made expensive, probing again less and less often.
func TestSpecPolicy(t *testing.T) {
	target, _ := specPair(t)
	cost := target.VerifyCost()
	const plain = 1e-3 // seconds per plain step
	up := NewSpecPolicy(SpecPolicyOptions{K: 2, MaxK: 8, Cost: cost})
	for i := 0; i < 60; i++ {
		k := up.K()
		// Every proposal accepted; a pass of m rows costs 1 + m/10 plain steps.
		up.Observe(SpecStep{K: k, Seqs: 1, Proposed: k, Accepted: k, Tokens: k + 1, Rows: k + 1,
			DraftSeconds: 1e-5 * float64(k), VerifySeconds: plain * (1 + float64(k+1)/10), Timed: true})
	}
	if up.K() < 6 {
		t.Fatalf("K stayed at %d with full acceptance and cheap verification", up.K())
	}
	// Half the proposals accepted, but verifying costs 4 plain steps (a
	// fake: e.g. the union of experts of a wide MoE): plain decoding wins.
	down := NewSpecPolicy(SpecPolicyOptions{K: 4, Cost: cost})
	plainSteps := 0
	const n = 400
	for i := 0; i < n; i++ {
		k := down.K()
		if k == 0 {
			plainSteps++
			down.Observe(SpecStep{K: 0, Seqs: 1, Tokens: 1, Rows: 1, VerifySeconds: plain, Timed: true})
			continue
		}
		down.Observe(SpecStep{K: k, Seqs: 1, Proposed: k, Accepted: k / 2, Tokens: k/2 + 1, Rows: k + 1,
			DraftSeconds: 1e-6, VerifySeconds: 4 * plain, Timed: true})
	}
	// The probes cost at most minSteps steps each, every 16, 32, 64, ... steps.
	if plainSteps < n*9/10 {
		t.Fatalf("plain decoding in only %d of %d steps although verification costs 4 plain steps", plainSteps, n)
	}
	if down.K() != 0 && down.probing == false {
		t.Fatalf("K = %d outside a probe", down.K())
	}
	// With shadow acceptance (a cheap drafter proposing, unverified, in
	// plain steps) the policy probes only when the shadow says it would
	// pay: never at shadow acceptance 0, and at the usual wait at 1.
	for _, c := range []struct {
		hit       int
		minProbes int
		maxProbes int
	}{{0, 0, 0}, {1, 1, 1 << 30}} {
		pol := NewSpecPolicy(SpecPolicyOptions{K: 4, Cost: cost})
		for pol.K() != 0 || pol.warm { // back off first, as above
			k := pol.K()
			if k == 0 {
				pol.Observe(SpecStep{K: 0, Seqs: 1, Tokens: 1, Rows: 1, VerifySeconds: plain, Timed: true})
				continue
			}
			pol.Observe(SpecStep{K: k, Seqs: 1, Proposed: k, Tokens: 1, Rows: k + 1, DraftSeconds: 1e-6, VerifySeconds: 2 * plain, Timed: true})
		}
		probes := 0
		for i := 0; i < 3*probeEvery; i++ {
			k := pol.K()
			if k > 0 {
				probes++
				// A probe that pays (every proposal accepted, cheap) keeps K.
				pol.Observe(SpecStep{K: k, Seqs: 1, Proposed: k, Accepted: k, Tokens: k + 1, Rows: k + 1, DraftSeconds: 1e-6, VerifySeconds: 1.5 * plain, Timed: true})
				continue
			}
			pol.Observe(SpecStep{K: 0, Seqs: 1, Tokens: 1, Rows: 1, VerifySeconds: plain, Timed: true, ShadowAsked: 1, ShadowProposed: 1, ShadowAccepted: c.hit})
		}
		if probes < c.minProbes || probes > c.maxProbes {
			t.Fatalf("shadow acceptance %d: %d speculative steps, want %d..%d", c.hit, probes, c.minProbes, c.maxProbes)
		}
	}
	// Same acceptance with cheap verification: speculation pays and stays.
	cheap := NewSpecPolicy(SpecPolicyOptions{K: 4, Cost: cost})
	specSteps := 0
	for i := 0; i < n; i++ {
		k := cheap.K()
		if k == 0 {
			cheap.Observe(SpecStep{K: 0, Seqs: 1, Tokens: 1, Rows: 1, VerifySeconds: plain, Timed: true})
			continue
		}
		specSteps++
		cheap.Observe(SpecStep{K: k, Seqs: 1, Proposed: k, Accepted: k / 2, Tokens: k/2 + 1, Rows: k + 1,
			DraftSeconds: 1e-6, VerifySeconds: 1.2 * plain, Timed: true})
	}
	if specSteps < n*9/10 {
		t.Fatalf("speculated in only %d of %d steps although it pays", specSteps, n)
	}
}
