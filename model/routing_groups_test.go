package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/moe-llm/moe/config"
)

// TestRouteRowGroups checks group-limited routing against a naive float64
// selection: sigmoid scores plus a selection bias, the best groups by the
// sum of their two best keys (or by their best, group_limited_greedy), the
// top k of those groups' experts, weights the unbiased scores renormalised
// and scaled.
func TestRouteRowGroups(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const E, G, used, k = 12, 4, 2, 3
	for _, method := range []string{config.TopKNoAuxTC, config.TopKGroupLimited} {
		cfg := &config.Config{NumExperts: E, ExpertsPerToken: k, Routing: config.RoutingTokenChoice,
			RouterOrder: config.RouterSoftmaxTopK, ScoringFunc: config.ScoringSigmoid, TopKMethod: method,
			NormTopKProb: true, RoutedScalingFactor: 2.5, NGroup: G, TopKGroup: used}
		differs := 0
		for trial := 0; trial < 200; trial++ {
			z, bias := make([]float32, E), make([]float32, E)
			for e := range z {
				z[e] = float32(rng.NormFloat64() * 2)
				bias[e] = float32(rng.NormFloat64() * 0.3)
			}
			sel, w := make([]int32, k), make([]float32, k)
			RouteRow(cfg, z, bias, make([]float32, 2*E), sel, w)

			s, key := make([]float64, E), make([]float64, E)
			for e := range z {
				s[e] = 1 / (1 + math.Exp(-float64(z[e])))
				key[e] = s[e] + float64(bias[e])
			}
			per := E / G
			gs := make([]float64, G)
			for g := range gs {
				v := slices.Clone(key[g*per : (g+1)*per])
				sort.Sort(sort.Reverse(sort.Float64Slice(v)))
				gs[g] = v[0] + v[1]
				if method == config.TopKGroupLimited {
					gs[g] = v[0]
				}
			}
			order := []int{0, 1, 2, 3}
			sort.SliceStable(order, func(a, b int) bool { return gs[order[a]] > gs[order[b]] })
			masked := slices.Clone(key)
			for _, g := range order[used:] {
				for e := g * per; e < (g+1)*per; e++ {
					masked[e] = math.Inf(-1)
				}
			}
			ex := make([]int, E)
			for e := range ex {
				ex[e] = e
			}
			sort.SliceStable(ex, func(a, b int) bool { return masked[ex[a]] > masked[ex[b]] })
			plain := slices.Clone(ex)
			sort.SliceStable(plain, func(a, b int) bool { return key[plain[a]] > key[plain[b]] })
			if !slices.Equal(plain[:k], ex[:k]) {
				differs++
			}
			var sum float64
			for _, e := range ex[:k] {
				sum += s[e]
			}
			for j, e := range ex[:k] {
				if int(sel[j]) != e || math.Abs(float64(w[j])-2.5*s[e]/sum) > 1e-6 {
					t.Fatalf("%s trial %d: got %v %v, want experts %v", method, trial, sel, w, ex[:k])
				}
			}
		}
		if differs == 0 {
			t.Fatalf("%s: the groups never changed the selection: the test checks nothing", method)
		}
	}
}
