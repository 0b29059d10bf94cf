package infer

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/moe-llm/moe/internal/stattest"
)

// refProbs is the float64 reference of Sampler.Probs: a full sort of the
// vocabulary, math.Exp, top-k, then the top-p nucleus, renormalised.
func refProbs(o SampleOptions, logits []float32) []float64 {
	V := len(logits)
	out := make([]float64, V)
	if o.Temperature == 0 {
		out[Argmax(logits)] = 1
		return out
	}
	ids := make([]int, V)
	for i := range ids {
		ids[i] = i
	}
	sort.SliceStable(ids, func(a, b int) bool { return logits[ids[a]] > logits[ids[b]] })
	k := o.TopK
	if k <= 0 || k > V {
		k = V
	}
	ids = ids[:k]
	mx := float64(logits[ids[0]])
	ex := make([]float64, k)
	var sum float64
	for j, id := range ids {
		ex[j] = math.Exp((float64(logits[id]) - mx) / o.Temperature)
		sum += ex[j]
	}
	if o.TopP > 0 && o.TopP < 1 {
		var cum float64
		for j := range ids {
			cum += ex[j] / sum
			if cum >= o.TopP {
				ids, ex = ids[:j+1], ex[:j+1]
				break
			}
		}
		sum = 0
		for _, e := range ex {
			sum += e
		}
	}
	for j, id := range ids {
		out[id] = ex[j] / sum
	}
	return out
}

// TestProbsMatchReference checks Probs (vectorised exp, heap top-k,
// thresholded top-p) against the float64 full-sort reference, with ties.
func TestProbsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, V := range []int{1, 7, 300, 4096} {
		logits := make([]float32, V)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * 3)
			if i%5 == 3 {
				logits[i] = logits[i-1] // ties
			}
		}
		for _, o := range []SampleOptions{
			{Temperature: 0}, {Temperature: 1}, {Temperature: 0.7}, {Temperature: 1.3, TopK: 5},
			{Temperature: 1, TopP: 0.9}, {Temperature: 0.5, TopP: 0.3}, {Temperature: 2, TopP: 0.999},
			{Temperature: 1, TopK: 40, TopP: 0.8}, {Temperature: 1, TopK: 1}, {Temperature: 1, TopK: V},
		} {
			s := NewSampler(o)
			got := make([]float32, V)
			s.Probs(logits, got)
			want := refProbs(o, logits)
			for i := range want {
				if d := math.Abs(float64(got[i]) - want[i]); d > 2e-6+1e-5*want[i] {
					t.Fatalf("V=%d %+v: p[%d] = %g, want %g", V, o, i, got[i], want[i])
				}
				if (got[i] == 0) != (want[i] == 0) {
					t.Fatalf("V=%d %+v: p[%d] = %g, want %g (support differs)", V, o, i, got[i], want[i])
				}
			}
		}
	}
}

// TestSampleMatchesProbs checks that Sample's fast full-vocabulary path
// draws from the distribution Probs reports (chi-square over 100k draws).
func TestSampleMatchesProbs(t *testing.T) {
	logits := []float32{0.5, 2, -1, 1.5, 0, 2, -3, 1}
	for _, o := range []SampleOptions{{Temperature: 1, Seed: 3}, {Temperature: 0.6, Seed: 4}, {Temperature: 1, TopP: 0.8, Seed: 5}} {
		s := NewSampler(o)
		p := make([]float32, len(logits))
		s.Probs(logits, p)
		const n = 100000
		counts := make([]int, len(logits))
		for range n {
			counts[s.Sample(logits)]++
		}
		if chi, df := stattest.ChiSquareDense(counts, p); chi > stattest.Critical(df) {
			t.Errorf("%+v: chi-square %.1f over %d df: counts %v, p %v", o, chi, df, counts, p)
		}
	}
}

// BenchmarkSample times one draw over a 4096-token vocabulary per option set.
func BenchmarkSample(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, 4096)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	for _, c := range []struct {
		name string
		o    SampleOptions
	}{{"greedy", SampleOptions{}}, {"T1", SampleOptions{Temperature: 1}}, {"T0.7", SampleOptions{Temperature: 0.7}},
		{"topk40", SampleOptions{Temperature: 1, TopK: 40}}, {"topp0.9", SampleOptions{Temperature: 1, TopP: 0.9}}} {
		b.Run(c.name, func(b *testing.B) {
			s := NewSampler(c.o)
			for range b.N {
				s.Sample(logits)
			}
		})
	}
}

// TestSampleProbsBlocks checks SampleProbs over several blocks, with zero
// entries (never drawn) and unnormalised mass (chi-square over 200k draws).
func TestSampleProbsBlocks(t *testing.T) {
	p := make([]float32, 3*sampleBlock+5)
	for i := range p {
		if i%3 != 0 {
			p[i] = float32(1 + i%7)
		}
	}
	s := NewSampler(SampleOptions{Temperature: 1, Seed: 9})
	const n = 200000
	counts := make([]int, len(p))
	for range n {
		counts[s.SampleProbs(p)]++
	}
	if chi, df := stattest.ChiSquareDense(counts, p); chi > stattest.Critical(df) {
		t.Errorf("chi-square %.1f over %d df", chi, df)
	}
}
