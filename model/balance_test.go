package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
)

// skewedRouterModel returns a one-layer sigmoid, noaux_tc model whose
// router favours experts 0 and 1 for every token: their router rows get a
// large component along the mean normalised input of the batch.
func skewedRouterModel(t *testing.T, tokens []int32, B, T int) *Model {
	t.Helper()
	cfg := moeToy(func(c *config.Config) {
		c.NumLayers, c.NumExperts, c.ExpertsPerToken = 1, 8, 2
		c.ScoringFunc, c.TopKMethod, c.NormTopKProb = config.ScoringSigmoid, config.TopKNoAuxTC, true
		c.RouterAuxLossCoef = 0
	})
	m := initModel(t, cfg, nil, 5)
	clear(m.W.Layers[0].RouterScoreBias)
	if _, err := m.Forward(tokens, nil, B, T); err != nil {
		t.Fatal(err)
	}
	d, N := cfg.HiddenSize, B*T
	mu := make([]float64, d)
	for i := 0; i < N; i++ {
		for c := 0; c < d; c++ {
			mu[c] += float64(m.a.layers[0].xn2[i*d+c]) / float64(N)
		}
	}
	var n2 float64
	for _, v := range mu {
		n2 += v * v
	}
	R := m.W.Layers[0].Router
	for e, gain := range []float64{4, 3} {
		for c := 0; c < d; c++ {
			R[e*d+c] += float32(gain * mu[c] / n2)
		}
	}
	return m
}

// maxLoad returns the largest fraction of selections any expert of layer 0 got.
func maxLoad(st Stats) float64 {
	mx := 0.0
	for _, f := range st.RoutedLoad[0] {
		mx = math.Max(mx, f)
	}
	return mx
}

// TestBalanceRoutersEvensSkewedLoad checks loss-free balancing: a router
// skewed towards two of eight experts (the favourite takes 42% of the top-2
// selections against a fair 12.5%) is brought within 1.25× of the mean load
// by bias updates alone (the router weights do not change) within 300 steps
// at rate 0.01, and the favoured experts' biases end negative.
func TestBalanceRoutersEvensSkewedLoad(t *testing.T) {
	const B, T, steps, rate = 4, 16, 300, 0.01
	r := rand.New(rand.NewPCG(1, 1))
	tokens, _ := toyBatch(r, 11, B, T)
	m := skewedRouterModel(t, tokens, B, T)
	st, err := m.Forward(tokens, nil, B, T)
	if err != nil {
		t.Fatal(err)
	}
	if mx := maxLoad(st); mx < 0.35 {
		t.Fatalf("router not skewed: max load %.3f", mx)
	}
	start := maxLoad(st)
	// The sign rule keeps the biases moving, so single steps jitter around
	// the balance: judge the load averaged over the last 50 steps.
	avg := make([]float64, 8)
	for s := 0; s < steps; s++ {
		st, err = m.Forward(tokens, nil, B, T)
		if err != nil {
			t.Fatal(err)
		}
		if s >= steps-50 {
			for e, f := range st.RoutedLoad[0] {
				avg[e] += f / 50
			}
		}
		if err := m.BalanceRouters(st.RoutedLoad, rate); err != nil {
			t.Fatal(err)
		}
	}
	tail := slices.Max(avg)
	t.Logf("max expert load: %.3f before, %.3f averaged over the last 50 of %d steps (fair: 0.125)", start, tail, steps)
	if tail > 1.25/8 {
		t.Fatalf("max load %.3f after %d bias steps, want ≤ %.3f", tail, steps, 1.25/8)
	}
	b := m.W.Layers[0].RouterScoreBias
	if b[0] >= 0 || b[1] >= 0 {
		t.Fatalf("favoured experts' biases %v %v should have gone negative", b[0], b[1])
	}
}

func TestBalanceRoutersRejectsBadLoad(t *testing.T) {
	cfg := moeToy(func(c *config.Config) { c.TopKMethod = config.TopKNoAuxTC })
	m := initModel(t, cfg, nil, 1)
	for _, load := range [][][]float64{{{0.5, 0.5, 0, 0}}, {{0.5, 0.5}, {1, 0, 0, 0}}} {
		if err := m.BalanceRouters(load, 0.01); err == nil || !strings.Contains(err.Error(), "router load") {
			t.Errorf("load %v: err = %v", load, err)
		}
	}
	// A model without selection biases ignores the call.
	plain := initModel(t, moeToy(nil), nil, 1)
	if err := plain.BalanceRouters(nil, 0.01); err != nil {
		t.Fatal(err)
	}
}

// TestCountRoutes checks the per-source counts against the routing the
// forward recorded, for token choice (with capacity dropping: counts are
// selections) and expert choice.
func TestCountRoutes(t *testing.T) {
	for _, cfg := range []*config.Config{
		moeToy(func(c *config.Config) { c.CapacityFactor = 0.75 }),
		moeToy(func(c *config.Config) { c.Routing, c.CapacityFactor = config.RoutingExpertChoice, 1.5 }),
	} {
		m := initModel(t, cfg, nil, 3)
		r := rand.New(rand.NewPCG(2, 2))
		tokens, targets := toyBatch(r, cfg.VocabSize, 2, 5)
		src := []int16{0, 0, 1, 1, 1, 0, 1, -1, 1, 1} // -1: not counted
		counts := make([][][]uint64, cfg.NumLayers)
		for l := range counts {
			counts[l] = [][]uint64{make([]uint64, 4), make([]uint64, 4)}
		}
		if err := m.CountRoutes(src, counts); err == nil {
			t.Fatal("CountRoutes before a forward accepted")
		}
		if _, err := m.Forward(tokens, targets, 2, 5); err != nil {
			t.Fatal(err)
		}
		if err := m.CountRoutes(src, counts); err != nil {
			t.Fatal(err)
		}
		for l := range counts {
			la := &m.a.layers[l]
			want := [2][4]uint64{}
			if la.k > 0 {
				for i, e := range la.sel[:10*la.k] {
					if src[i/la.k] >= 0 {
						want[src[i/la.k]][e]++
					}
				}
			} else {
				for e := 0; e < 4; e++ {
					for _, tk := range la.asTok[la.expOff[e]:la.expOff[e+1]] {
						if src[tk] >= 0 {
							want[src[tk]][e]++
						}
					}
				}
			}
			var total uint64
			for s := range want {
				for e := range want[s] {
					total += counts[l][s][e]
					if counts[l][s][e] != want[s][e] {
						t.Fatalf("%s layer %d source %d expert %d: %d, want %d", cfg.Routing, l, s, e, counts[l][s][e], want[s][e])
					}
				}
			}
			if exp := uint64(9 * cfg.ExpertsPerToken); la.k > 0 && total != exp {
				t.Fatalf("layer %d: %d selections counted, want %d (dropped ones included)", l, total, exp)
			}
		}
		if err := m.CountRoutes([]int16{0, 2, 0, 0, 0, 0, 0, 0, 0, 0}, counts); err == nil || !strings.Contains(err.Error(), "source 2") {
			t.Errorf("out-of-range source: %v", err)
		}
	}
}
