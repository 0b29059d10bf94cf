package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// toyConfig is a small model whose gradients finite differences can check:
// GQA (4 query heads over 2 kv heads), head dim 4 with nh·hd ≠ d.
func toyConfig() *config.Config {
	return &config.Config{
		ModelType: "mixtral", VocabSize: 11, HiddenSize: 8, IntermediateSize: 12,
		NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadDim: 4,
		MaxPositionEmbeddings: 64, RopeTheta: 10000, RMSNormEps: 1e-5, InitStd: 0.3,
	}
}

func moeToy(mut func(c *config.Config)) *config.Config {
	c := toyConfig()
	c.NumExperts, c.ExpertsPerToken, c.MoEIntermediateSize = 4, 2, 6
	c.RouterAuxLossCoef, c.RouterZLossCoef = 0.1, 0.05
	if mut != nil {
		mut(c)
	}
	return c
}

// eachRouting runs f as a subtest for each routing kind, with a model of
// that kind (weights seeded by seed, pool as given, attention in blocks of
// block rows) and an RNG seeded by (rs, rs+1).
func eachRouting(t *testing.T, pool *compute.Pool, seed uint64, block int, rs uint64, f func(t *testing.T, rk routingKind, m *Model, r *rand.Rand)) {
	for _, rk := range routingKinds() {
		t.Run(rk.name, func(t *testing.T) {
			m := initModel(t, rk.cfg, pool, seed)
			m.attnBlock = block
			f(t, rk, m, rand.New(rand.NewPCG(rs, rs+1)))
		})
	}
}

// routingKinds are the configurations every gradient check runs over.
// routingKind is one routing configuration the gradient tests cover.
type routingKind struct {
	name string
	cfg  *config.Config
	opt  ForwardOptions
}

func routingKinds() []routingKind {
	return []routingKind{
		{"dense", toyConfig(), ForwardOptions{}},
		{"dense-tied", func() *config.Config { c := toyConfig(); c.TieWordEmbeddings = true; return c }(), ForwardOptions{}},
		{"topk_softmax", moeToy(nil), ForwardOptions{}},
		{"softmax_topk", moeToy(func(c *config.Config) { c.RouterOrder = config.RouterSoftmaxTopK }), ForwardOptions{}},
		{"softmax_topk_norm", moeToy(func(c *config.Config) { c.RouterOrder = config.RouterSoftmaxTopK; c.NormTopKProb = true }), ForwardOptions{}},
		{"capacity", moeToy(func(c *config.Config) { c.CapacityFactor = 0.75 }), ForwardOptions{}},
		{"expert_choice", moeToy(func(c *config.Config) { c.Routing = config.RoutingExpertChoice; c.CapacityFactor = 1.5 }), ForwardOptions{}},
		{"expert_choice_causal", moeToy(func(c *config.Config) { c.Routing = config.RoutingExpertChoice; c.CapacityFactor = 1.5 }), ForwardOptions{Causal: true}},
		{"sliding_window", func() *config.Config {
			c := moeToy(nil)
			c.SlidingWindow = 3
			c.LayerTypes = []string{config.LayerSlidingAttention, config.LayerFullAttention}
			return c
		}(), ForwardOptions{}},
		{"shared_expert", moeToy(func(c *config.Config) { c.SharedExpertIntermediateSize = 5; c.ExpertsPerToken = 1 }), ForwardOptions{}},
		{"shared_expert_gated", moeToy(func(c *config.Config) {
			c.SharedExpertIntermediateSize, c.SharedExpertGate = 5, true
			c.RouterOrder = config.RouterSoftmaxTopK
		}), ForwardOptions{}},
		{"granite_scales", moeToy(func(c *config.Config) { granite(c); c.SharedExpertIntermediateSize = 5 }), ForwardOptions{}},
		{"granite_scales_gated_shared", moeToy(func(c *config.Config) {
			granite(c)
			c.SharedExpertIntermediateSize, c.SharedExpertGate, c.RouterOrder = 5, true, config.RouterSoftmaxTopK
		}), ForwardOptions{}},
		{"granite_scales_dense_tied", func() *config.Config {
			c := toyConfig()
			granite(c)
			c.TieWordEmbeddings = true
			return c
		}(), ForwardOptions{}},
		{"granite_scales_expert_choice", moeToy(func(c *config.Config) {
			granite(c)
			c.Routing, c.CapacityFactor = config.RoutingExpertChoice, 1.5
		}), ForwardOptions{}},
		{"decoder_sparse_step", moeToy(func(c *config.Config) { c.DecoderSparseStep = 2 }), ForwardOptions{}},
		{"first_dense_sigmoid_noaux_tc_gated_granite", moeToy(func(c *config.Config) {
			c.MLPOnlyLayers = []int{0}
			c.ScoringFunc, c.TopKMethod, c.NormTopKProb = config.ScoringSigmoid, config.TopKNoAuxTC, true
			c.SharedExpertIntermediateSize, c.SharedExpertGate = 5, true
			granite(c)
		}), ForwardOptions{}},
		{"gpt_oss", moeToy(func(c *config.Config) {
			c.AttentionBias, c.AttentionSinks, c.RouterBias, c.ExpertBias, c.SwiGLULimit = true, true, true, true, 0.7
			c.SlidingWindow = 3
			c.LayerTypes = []string{config.LayerSlidingAttention, config.LayerFullAttention}
		}), ForwardOptions{}},
		{"expert_bias_shared_gated_clamped", moeToy(func(c *config.Config) {
			c.ExpertBias, c.RouterBias, c.SwiGLULimit = true, true, 0.7
			c.SharedExpertIntermediateSize, c.SharedExpertGate, c.RouterOrder = 5, true, config.RouterSoftmaxTopK
		}), ForwardOptions{}},
		{"dense_mlp_bias_clamped_sinks", func() *config.Config {
			c := toyConfig()
			c.MLPBias, c.SwiGLULimit, c.AttentionSinks, c.AttentionBias = true, 0.7, true, true
			return c
		}(), ForwardOptions{}},
		{"rope_yarn", moeToy(func(c *config.Config) {
			c.RopeScaling = &config.RopeScaling{Type: config.RopeYaRN, Factor: 4, OriginalMaxPositionEmbeddings: 16}
		}), ForwardOptions{}},
		{"sigmoid", moeToy(func(c *config.Config) { c.ScoringFunc = config.ScoringSigmoid }), ForwardOptions{}},
		{"sigmoid_norm_scaled", moeToy(func(c *config.Config) {
			c.ScoringFunc, c.NormTopKProb, c.RoutedScalingFactor = config.ScoringSigmoid, true, 2.5
		}), ForwardOptions{}},
		{"sigmoid_noaux_tc_shared", moeToy(func(c *config.Config) {
			c.ScoringFunc, c.TopKMethod, c.NormTopKProb = config.ScoringSigmoid, config.TopKNoAuxTC, true
			c.SharedExpertIntermediateSize, c.MoEIntermediateSize = 5, 3
		}), ForwardOptions{}},
		{"sigmoid_noaux_tc_capacity", moeToy(func(c *config.Config) {
			c.ScoringFunc, c.TopKMethod, c.CapacityFactor = config.ScoringSigmoid, config.TopKNoAuxTC, 0.75
		}), ForwardOptions{}},
		{"softmax_noaux_tc_scaled", moeToy(func(c *config.Config) {
			c.RouterOrder, c.TopKMethod, c.RoutedScalingFactor = config.RouterSoftmaxTopK, config.TopKNoAuxTC, 1.5
		}), ForwardOptions{}},
		{"sigmoid_expert_choice", moeToy(func(c *config.Config) {
			c.ScoringFunc, c.Routing, c.CapacityFactor = config.ScoringSigmoid, config.RoutingExpertChoice, 1.5
		}), ForwardOptions{}},
		{"qk_norm_per_head", moeToy(func(c *config.Config) { c.QKNorm, c.QKNormPerHead = true, true }), ForwardOptions{}},
		{"qk_norm_full", moeToy(func(c *config.Config) { c.QKNorm = true }), ForwardOptions{}},
		{"qkv_bias", moeToy(func(c *config.Config) { c.QKVBias = true }), ForwardOptions{}},
		{"dense_qkv_bias_qk_norm", func() *config.Config {
			c := toyConfig()
			c.QKVBias, c.QKNorm, c.QKNormPerHead = true, true, true
			return c
		}(), ForwardOptions{}},
		{"sigmoid_expert_choice_causal", moeToy(func(c *config.Config) {
			c.ScoringFunc, c.Routing, c.CapacityFactor = config.ScoringSigmoid, config.RoutingExpertChoice, 1.5
		}), ForwardOptions{Causal: true}},
	}
}

// granite sets Granite's four scales (embedding, residual, attention and
// logit) to values away from 1 and from each other.
func granite(c *config.Config) {
	c.EmbeddingMultiplier, c.ResidualMultiplier, c.AttentionMultiplier, c.LogitsScaling = 1.7, 0.6, 0.3, 2.5
}

// initModel builds a model of cfg on pool (nil: serial) and initialises its
// weights with seed.
func initModel(t testing.TB, cfg *config.Config, pool *compute.Pool, seed uint64) *Model {
	t.Helper()
	m, err := New(cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	// Biases start at 0 and q/k gains at 1; move them so that their
	// gradients are checked away from those special points.
	r0 := rand.New(rand.NewPCG(seed, 78))
	m.W.Visit(cfg, func(name string, t []float32) {
		if strings.HasSuffix(name, "_bias") && !strings.HasSuffix(name, "router_score_bias") {
			for i := range t {
				t[i] = float32(r0.NormFloat64() * 0.3)
			}
		}
	})
	// Selection biases start at 0; give them values of the size of the
	// score gaps so that they change which experts are chosen.
	r := rand.New(rand.NewPCG(seed, 77))
	for _, l := range m.W.Layers {
		for e := range l.RouterScoreBias {
			l.RouterScoreBias[e] = float32(r.NormFloat64() * 0.2)
		}
		for _, g := range [][]float32{l.QNorm, l.KNorm} {
			for i := range g {
				g[i] = float32(1 + r.NormFloat64()*0.3)
			}
		}
	}
	return m
}

func toyBatch(r *rand.Rand, V, B, T int) (tokens, targets []int32) {
	tokens = make([]int32, B*T)
	targets = make([]int32, B*T)
	for i := range tokens {
		tokens[i] = int32(r.IntN(V))
		targets[i] = int32(r.IntN(V))
	}
	targets[1] = -1 // ignored
	return
}

// routingSignature hashes every discrete routing decision of the last
// forward, so that a finite difference that flips one can be discarded.
func (m *Model) routingSignature() uint64 {
	h := fnv.New64a()
	cfg, N := m.Cfg, m.a.B*m.a.T
	// The clamps of gpt_oss's SwiGLU are kinks too: which gate and up
	// inputs (rows of [gate | up], f wide each) are clamped.
	clamped := func(buf []float32, f int) {
		lim := m.swiLimit
		var idx []int
		for i, v := range buf {
			if v > lim || (i/f)%2 == 1 && v < -lim {
				idx = append(idx, i)
			}
		}
		fmt.Fprint(h, idx)
	}
	for l, la := range m.a.layers {
		if m.swiLimit != 0 {
			switch {
			case !cfg.LayerIsMoE(l):
				clamped(la.gu[:N*2*cfg.IntermediateSize], cfg.IntermediateSize)
			default:
				clamped(la.guA[:la.expOff[cfg.NumExperts]*2*cfg.ExpertSize()], cfg.ExpertSize())
				if s := cfg.SharedExpertIntermediateSize; s > 0 {
					clamped(la.guS[:N*2*s], s)
				}
			}
		}
		if la.expOff == nil {
			continue
		}
		A := la.expOff[len(la.expOff)-1]
		slots := slices.Clone(la.asSlot[:A])
		slices.Sort(slots) // the set of (token, expert) pairs, not their order
		fmt.Fprint(h, slots)
	}
	return h.Sum64()
}

// TestGradientsFiniteDifference checks, for every routing kind, the
// gradient of every parameter tensor of every layer (and the embedding,
// final norm and LM head) against central finite differences of the loss.
func TestGradientsFiniteDifference(t *testing.T) {
	eachRouting(t, compute.NewPool(2), 7, 2, 1, func(t *testing.T, rk routingKind, m *Model, r *rand.Rand) { // blocks of 2: the blocked causal GEMMs
		const B, T = 2, 5
		tokens, targets := toyBatch(r, rk.cfg.VocabSize, B, T)
		st, err := m.ForwardWith(tokens, targets, B, T, rk.opt)
		if err != nil {
			t.Fatal(err)
		}
		if rk.name == "capacity" && st.DroppedFrac == 0 {
			t.Fatal("capacity factor 0.75 dropped nothing")
		}
		sig := m.routingSignature()
		m.ZeroGrad()
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
		grad := slices.Clone(m.G.Flat)
		loss := func() float64 {
			s, err := m.ForwardWith(tokens, targets, B, T, rk.opt)
			if err != nil {
				t.Fatal(err)
			}
			return s.Loss
		}
		checked, skipped := 0, 0
		off := 0
		m.W.Visit(rk.cfg, func(name string, w []float32) {
			start := off
			off += len(w)
			var num, den float64
			n := 0
			for _, i := range probeIdx(r, len(w), 6) {
				const h = 1e-3
				old := w[i]
				w[i] = old + h
				lp := loss()
				sp := m.routingSignature()
				w[i] = old - h
				lm := loss()
				sm := m.routingSignature()
				w[i] = old
				if sp != sig || sm != sig {
					skipped++
					continue
				}
				fd := (lp - lm) / (2 * h)
				g := float64(grad[start+i])
				num += (g - fd) * (g - fd)
				den += fd*fd + g*g
				n++
				checked++
			}
			if n == 0 {
				return
			}
			rel := math.Sqrt(num / math.Max(den, 1e-12))
			if rel > 2e-2 && math.Sqrt(num/float64(n)) > 2e-4 {
				t.Errorf("%s: gradient differs from finite differences: relative error %.3g (rms abs %.3g)", name, rel, math.Sqrt(num/float64(n)))
			}
		})
		if skipped > checked/4 {
			t.Errorf("%d probes skipped for routing flips, only %d checked", skipped, checked)
		}
	})
}

func probeIdx(r *rand.Rand, n, k int) []int {
	if n <= k {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := make([]int, k)
	for i := range idx {
		idx[i] = r.IntN(n)
	}
	return idx
}

func TestGradientAccumulates(t *testing.T) {
	cfg := moeToy(nil)
	m := initModel(t, cfg, nil, 3)
	r := rand.New(rand.NewPCG(5, 6))
	tokens, targets := toyBatch(r, cfg.VocabSize, 2, 6)
	run := func() {
		if _, err := m.Forward(tokens, targets, 2, 6); err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
	}
	m.ZeroGrad()
	run()
	one := slices.Clone(m.G.Flat)
	run()
	for i, g := range m.G.Flat {
		if math.Abs(float64(g-2*one[i])) > 1e-6*(1+math.Abs(float64(g))) {
			t.Fatalf("accumulated grad[%d] = %v, want 2×%v", i, g, one[i])
		}
	}
	if err := m.Backward(); err == nil {
		t.Fatal("second Backward without Forward accepted")
	}
	if _, err := m.Forward(tokens, nil, 2, 6); err != nil {
		t.Fatal(err)
	}
	if err := m.Backward(); err == nil {
		t.Fatal("Backward after a forward without targets accepted")
	}
}

func TestForwardRejectsBadInput(t *testing.T) {
	cfg := toyConfig()
	m := initModel(t, cfg, nil, 1)
	for _, c := range []struct {
		name    string
		tokens  []int32
		targets []int32
		B, T    int
		want    string
	}{
		{"length", []int32{1, 2, 3}, nil, 1, 2, "tokens"},
		{"token range", []int32{1, 11}, nil, 1, 2, "vocabulary"},
		{"negative token", []int32{-1, 2}, nil, 1, 2, "vocabulary"},
		{"target range", []int32{1, 2}, []int32{1, 99}, 1, 2, "vocabulary"},
		{"target length", []int32{1, 2}, []int32{1}, 1, 2, "targets"},
		{"zero batch", nil, nil, 0, 2, "positive"},
	} {
		_, err := m.Forward(c.tokens, c.targets, c.B, c.T)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	for _, bad := range []func(c *config.Config){
		func(c *config.Config) { c.RouterBias = true }, // on a dense model
		func(c *config.Config) { c.SwiGLULimit = -1 },
		func(c *config.Config) { c.NumKVHeads = 3 },
		func(c *config.Config) { c.HeadDim = 3 },
		func(c *config.Config) { c.NumExperts = 4; c.ExpertsPerToken = 5 },
		func(c *config.Config) { c.NumExperts = 4; c.ExpertsPerToken = 1; c.Routing = "hash" },
		func(c *config.Config) { c.LayerNorm = true },
		func(c *config.Config) { c.HiddenAct = "gelu" },
		func(c *config.Config) { c.LayerTypes = []string{"local", "full_attention"} },
		func(c *config.Config) { c.NumExperts, c.ExpertsPerToken, c.MLPOnlyLayers = 4, 1, []int{2} },
		func(c *config.Config) {
			c.NumExperts, c.ExpertsPerToken, c.DecoderSparseStep, c.IntermediateSize = 4, 1, 2, 0
		},
		func(c *config.Config) { c.SharedExpertGate = true }, // no shared expert
	} {
		c := toyConfig()
		bad(c)
		if _, err := New(c, nil); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	// q/k norms (per head or full width) and q/k/v biases train.
	for _, ok := range []func(c *config.Config){
		func(c *config.Config) { c.QKNorm = true },
		func(c *config.Config) { c.QKNorm, c.QKNormPerHead = true, true },
		func(c *config.Config) { c.QKVBias = true },
	} {
		c := toyConfig()
		ok(c)
		if _, err := New(c, nil); err != nil {
			t.Errorf("config %+v refused: %v", c, err)
		}
	}
}

// TestCausalRoutingIsCausal checks that with the causal routing the logits
// at position t do not depend on later tokens (what generation needs), for
// every routing kind, and that Route reproduces the forward's choices.
func TestCausalRoutingIsCausal(t *testing.T) {
	eachRouting(t, nil, 11, 3, 8, func(t *testing.T, rk routingKind, m *Model, r *rand.Rand) {
		cfg := rk.cfg
		const T, P = 9, 5
		tokens, _ := toyBatch(r, cfg.VocabSize, 1, T)
		if _, err := m.ForwardWith(tokens, nil, 1, T, ForwardOptions{Causal: true}); err != nil {
			t.Fatal(err)
		}
		full := slices.Clone(m.Logits())
		if cfg.IsMoE() {
			la := &m.a.layers[1]
			k := RoutedK(cfg)
			sel, w, probs := make([]int32, k), make([]float32, k), make([]float32, 2*cfg.NumExperts)
			for tok := 0; tok < T; tok++ {
				RouteRow(cfg, la.rlog[tok*cfg.NumExperts:(tok+1)*cfg.NumExperts], m.W.Layers[1].RouterScoreBias, probs, sel, w)
				want := slices.Clone(la.selW[tok*k : (tok+1)*k])
				for j := range want {
					want[j] *= float32(cfg.RoutedScale())
				}
				if !slices.Equal(sel, la.sel[tok*k:(tok+1)*k]) || !slices.Equal(w, want) {
					t.Fatalf("token %d: Route gives %v %v, forward %v %v", tok, sel, w, la.sel[tok*k:(tok+1)*k], la.selW[tok*k:(tok+1)*k])
				}
			}
		}
		if _, err := m.ForwardWith(tokens[:P], nil, 1, P, ForwardOptions{Causal: true}); err != nil {
			t.Fatal(err)
		}
		for i, v := range m.Logits() {
			if math.Abs(float64(v-full[i])) > 1e-5 {
				t.Fatalf("logit %d of a %d-token prefix = %v, in the %d-token sequence %v", i, P, v, T, full[i])
			}
		}
	})
}

// TestPresetsSupported checks that the presets moe trains are accepted and
// that a model for them builds with the expected parameter count.
func TestPresetsSupported(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-draft", "mixtral-8x7b"} {
		cfg, ok := config.Preset(name)
		if !ok {
			t.Fatalf("preset %s missing", name)
		}
		if err := Supported(cfg); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
	}
	for _, name := range config.PresetNames() {
		cfg, _ := config.Preset(name)
		t.Logf("%s: supported = %v", name, Supported(cfg))
	}
}

// TestGPTOSSTrainable checks that gpt_oss's config is accepted for
// training (biases, sinks, clamped SwiGLU, alternating sliding windows)
// while GPT-3's (LayerNorm, plain MLP, learned positions) and DeepSeek's
// latent attention are still refused, naming the piece.
func TestGPTOSSTrainable(t *testing.T) {
	for name, want := range map[string]string{"gpt-oss-20b": "", "gpt3": "plain", "deepseek-v2-lite": "latent attention"} {
		cfg, ok := config.Preset(name)
		if !ok {
			t.Fatalf("preset %s missing", name)
		}
		err := Supported(cfg)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: got %v, want %q", name, err, want)
		}
	}
}

// TestSlidingWindowLimitsAttention checks that with a window of W keys a
// one-layer model's logits at positions ≥ W ignore the first token, while
// position W−1 still sees it.
func TestSlidingWindowLimitsAttention(t *testing.T) {
	cfg := moeToy(nil)
	cfg.NumLayers, cfg.SlidingWindow = 1, 2
	m := initModel(t, cfg, nil, 5)
	const T = 5
	tokens := []int32{1, 2, 3, 4, 5}
	opt := ForwardOptions{Causal: true}
	if _, err := m.ForwardWith(tokens, nil, 1, T, opt); err != nil {
		t.Fatal(err)
	}
	a := slices.Clone(m.Logits())
	tokens[0] = 7
	if _, err := m.ForwardWith(tokens, nil, 1, T, opt); err != nil {
		t.Fatal(err)
	}
	b := m.Logits()
	V := cfg.VocabSize
	if slices.Equal(a[V:2*V], b[V:2*V]) {
		t.Error("position 1 does not see token 0 inside the window")
	}
	if !slices.Equal(a[2*V:], b[2*V:]) {
		t.Error("positions ≥ 2 see token 0 outside a window of 2")
	}
}

// TestDeterministic checks that two identical models on the same pool give
// bit-identical losses and gradients (resumed training relies on it).
func TestDeterministic(t *testing.T) {
	cfg := moeToy(func(c *config.Config) { c.SharedExpertIntermediateSize = 5 })
	pool := compute.NewPool(2)
	defer pool.Close()
	r := rand.New(rand.NewPCG(3, 3))
	tokens, targets := toyBatch(r, cfg.VocabSize, 3, 7)
	var grads [][]float32
	var losses []float64
	for range 2 {
		m := initModel(t, cfg, pool, 9)
		m.attnBlock = 4
		for range 2 {
			st, err := m.Forward(tokens, targets, 3, 7)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Backward(); err != nil {
				t.Fatal(err)
			}
			losses = append(losses, st.Loss)
		}
		grads = append(grads, slices.Clone(m.G.Flat))
	}
	if losses[0] != losses[2] || losses[1] != losses[3] || !slices.Equal(grads[0], grads[1]) {
		t.Fatalf("runs differ: losses %v", losses)
	}
}

func TestCausalKOverride(t *testing.T) {
	cfg := moeToy(func(c *config.Config) { c.Routing = config.RoutingExpertChoice; c.CapacityFactor = 1.5 })
	m := initModel(t, cfg, nil, 2)
	r := rand.New(rand.NewPCG(4, 4))
	tokens, _ := toyBatch(r, cfg.VocabSize, 2, 5)
	for _, k := range []int{0, 1, 3, 4, 9} {
		if _, err := m.ForwardWith(tokens, nil, 2, 5, ForwardOptions{Causal: true, CausalK: k}); err != nil {
			t.Fatal(err)
		}
		want := k
		if k == 0 {
			want = 2 // round(1.5)
		}
		want = min(want, cfg.NumExperts)
		for l, la := range m.a.layers {
			if la.k != want || la.expOff[cfg.NumExperts] != 10*want {
				t.Fatalf("CausalK %d layer %d: k %d, %d assignments; want k %d", k, l, la.k, la.expOff[cfg.NumExperts], want)
			}
		}
	}
	if _, err := m.ForwardWith(tokens, nil, 2, 5, ForwardOptions{Causal: true, CausalK: -1}); err == nil {
		t.Fatal("negative CausalK accepted")
	}
}

func TestExpertChoiceDroppedFrac(t *testing.T) {
	cfg := moeToy(func(c *config.Config) { c.Routing = config.RoutingExpertChoice; c.CapacityFactor = 0.5 })
	m := initModel(t, cfg, nil, 2)
	r := rand.New(rand.NewPCG(6, 6))
	tokens, _ := toyBatch(r, cfg.VocabSize, 2, 5)
	st, err := m.Forward(tokens, nil, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	// 4 experts × C = ceil(10·0.5/4) = 2 slots cover at most 8 of 10 tokens.
	if st.DroppedFrac < 0.2 || st.DroppedFrac > 1 {
		t.Fatalf("DroppedFrac %v, want in [0.2, 1]", st.DroppedFrac)
	}
	for l, load := range st.ExpertLoad {
		for e, f := range load {
			if f != 0.25 {
				t.Fatalf("layer %d expert %d load %v, want 0.25 (expert choice is balanced)", l, e, f)
			}
		}
	}
	st, err = m.ForwardWith(tokens, nil, 2, 5, ForwardOptions{Causal: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.DroppedFrac != 0 {
		t.Fatalf("causal routing dropped %v", st.DroppedFrac)
	}
}

// TestLayerInputGradients checks each layer's backward on its own: the
// gradient Backward computes for the input of layer l (the residual stream
// res[l]) against central finite differences of the loss recomputed from
// layer l on, for every routing kind.
func TestLayerInputGradients(t *testing.T) {
	eachRouting(t, nil, 17, 2, 10, func(t *testing.T, rk routingKind, m *Model, r *rand.Rand) {
		cfg := rk.cfg
		const B, T = 2, 5
		tokens, targets := toyBatch(r, cfg.VocabSize, B, T)
		if _, err := m.ForwardWith(tokens, targets, B, T, rk.opt); err != nil {
			t.Fatal(err)
		}
		sig := m.routingSignature()
		L := cfg.NumLayers
		inputs := make([][]float32, L)
		for l := range inputs {
			inputs[l] = slices.Clone(m.a.res[l])
		}
		dx := make([][]float32, L)
		m.layerGradHook = func(l int, d []float32) { dx[l] = slices.Clone(d) }
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
		m.layerGradHook = nil
		skipped, checked := 0, 0
		for l := L - 1; l >= 0; l-- {
			var num, den float64
			for _, i := range probeIdx(r, len(inputs[l]), 12) {
				loss := func(v float32) float64 {
					// Restore every earlier layer's activations, then rerun from l.
					if _, err := m.ForwardWith(tokens, targets, B, T, rk.opt); err != nil {
						t.Fatal(err)
					}
					copy(m.a.res[l], inputs[l])
					m.a.res[l][i] = v
					return m.forwardFrom(l, tokens, targets, B, T, rk.opt).Loss
				}
				const h = 1e-3
				x := inputs[l][i]
				lp := loss(x + h)
				sp := m.routingSignature()
				lm := loss(x - h)
				sm := m.routingSignature()
				if sp != sig || sm != sig {
					skipped++
					continue
				}
				fd := (lp - lm) / (2 * h)
				g := float64(dx[l][i])
				num += (g - fd) * (g - fd)
				den += g*g + fd*fd
				checked++
			}
			if rel := math.Sqrt(num / math.Max(den, 1e-12)); rel > 2e-2 {
				t.Errorf("layer %d input gradient: relative error %.3g against finite differences", l, rel)
			}
		}
		if skipped > checked/4 {
			t.Errorf("%d probes skipped for routing flips, only %d checked", skipped, checked)
		}
	})
}

func TestInit(t *testing.T) {
	cfg := moeToy(func(c *config.Config) {
		c.SharedExpertIntermediateSize = 5
		c.InitStd = 0
		c.HiddenSize = 64
		c.NumLayers = 8
	})
	m := initModel(t, cfg, nil, 1)
	outStd := 0.02 / math.Sqrt(16)
	m.W.Visit(cfg, func(name string, w []float32) {
		var s, ss float64
		for _, v := range w {
			s += float64(v)
			ss += float64(v) * float64(v)
		}
		n := float64(len(w))
		mean, std := s/n, math.Sqrt(ss/n-(s/n)*(s/n))
		switch {
		case strings.HasSuffix(name, "norm"):
			if mean != 1 || std != 0 {
				t.Errorf("%s: mean %v std %v, want gains of 1", name, mean, std)
			}
		case strings.HasSuffix(name, "wo") || strings.HasSuffix(name, "down"):
			if math.Abs(std-outStd) > 0.15*outStd {
				t.Errorf("%s: std %v, want %v", name, std, outStd)
			}
		default:
			if math.Abs(std-0.02) > 0.15*0.02 {
				t.Errorf("%s: std %v, want 0.02", name, std)
			}
		}
	})
	m2 := initModel(t, cfg, nil, 1)
	if !slices.Equal(m.W.Flat, m2.W.Flat) {
		t.Error("Init is not deterministic")
	}
	m2.Init(2)
	if slices.Equal(m.W.Flat, m2.W.Flat) {
		t.Error("Init ignores the seed")
	}
}

// TestQKNormBiasParams checks that q/k norm gains and q/k/v biases are laid
// out only when the config asks for them, with the widths of each kind
// (per-head gains of head_dim, full-width ones of nh·hd and nkv·hd), that
// Init sets gains to 1 and biases to 0, and that they get no weight decay.
func TestQKNormBiasParams(t *testing.T) {
	base := moeToy(nil)
	n0 := NumParams(base)
	hd, nh, nkv, L := base.HeadDimension(), base.NumHeads, base.KVHeads(), base.NumLayers
	for _, c := range []struct {
		name  string
		mut   func(c *config.Config)
		extra int // per layer
	}{
		{"per_head", func(c *config.Config) { c.QKNorm, c.QKNormPerHead = true, true }, 2 * hd},
		{"full", func(c *config.Config) { c.QKNorm = true }, (nh + nkv) * hd},
		{"bias", func(c *config.Config) { c.QKVBias = true }, (nh + 2*nkv) * hd},
	} {
		// (The gated shared expert's gate gets weight decay; see
		// TestSharedGateParams.)
		t.Run(c.name, func(t *testing.T) {
			cfg := moeToy(c.mut)
			if got, want := NumParams(cfg), n0+L*c.extra; got != want {
				t.Fatalf("NumParams = %d, want %d", got, want)
			}
			m, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(3)
			for _, l := range m.W.Layers {
				if cfg.QKNorm != (l.QNorm != nil) || cfg.QKNorm != (l.KNorm != nil) || cfg.QKVBias != (l.QKVBias != nil) {
					t.Fatalf("q/k norms %v/%v, biases %v for qk_norm %v, qkv_bias %v", l.QNorm != nil, l.KNorm != nil, l.QKVBias != nil, cfg.QKNorm, cfg.QKVBias)
				}
				for _, g := range [][]float32{l.QNorm, l.KNorm} {
					for _, v := range g {
						if v != 1 {
							t.Fatalf("q/k gain %v after Init, want 1", v)
						}
					}
				}
				for _, v := range l.QKVBias {
					if v != 0 {
						t.Fatalf("q/k/v bias %v after Init, want 0", v)
					}
				}
			}
			decay := 0
			for _, r := range m.W.NoDecay {
				decay += r[1] - r[0]
			}
			m0, err := New(base, nil)
			if err != nil {
				t.Fatal(err)
			}
			decay0 := 0
			for _, r := range m0.W.NoDecay {
				decay0 += r[1] - r[0]
			}
			if decay-decay0 != L*c.extra {
				t.Errorf("%d more floats exempt from weight decay, want %d", decay-decay0, L*c.extra)
			}
		})
	}
}

// TestSharedGateParams checks that the gated shared expert's gate, one
// d-vector per layer, is laid out only with moe_shared_expert_gate, that
// plan counts the same parameters, and that a config without the gate
// keeps the layout older checkpoints were written in.
func TestSharedGateParams(t *testing.T) {
	ungated := moeToy(func(c *config.Config) { c.SharedExpertIntermediateSize = 5 })
	gated := moeToy(func(c *config.Config) { c.SharedExpertIntermediateSize, c.SharedExpertGate = 5, true })
	d, L := gated.HiddenSize, gated.NumLayers
	if got, want := NumParams(gated), NumParams(ungated)+L*d; got != want {
		t.Fatalf("NumParams = %d, want %d", got, want)
	}
	var names []string
	w, err := NewWeights(gated, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Visit(gated, func(name string, _ []float32) { names = append(names, name) })
	w0, err := NewWeights(ungated, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names0 []string
	w0.Visit(ungated, func(name string, _ []float32) { names0 = append(names0, name) })
	// The ungated layout is the gated one without the gates.
	var stripped []string
	for _, n := range names {
		if !strings.HasSuffix(n, "shared.gate_inp") {
			stripped = append(stripped, n)
		}
	}
	if !slices.Equal(stripped, names0) || len(names) != len(names0)+L {
		t.Fatalf("gated layout %v, ungated %v", names, names0)
	}
	for _, l := range w.Layers {
		if len(l.SharedGateInp) != d {
			t.Fatalf("gate of %d floats, want %d", len(l.SharedGateInp), d)
		}
	}
	for _, l := range w0.Layers {
		if l.SharedGateInp != nil {
			t.Fatal("ungated shared expert has a gate")
		}
	}
}

// TestDenseLayersInMoE checks the layout of an MoE model with dense layers
// (decoder_sparse_step, mlp_only_layers): those layers hold a dense SwiGLU
// of intermediate_size and no router or experts, Stats report no expert
// load for them, and CountRoutes counts nothing there.
func TestDenseLayersInMoE(t *testing.T) {
	for _, c := range []struct {
		name  string
		mut   func(c *config.Config)
		dense []bool
	}{
		{"decoder_sparse_step", func(c *config.Config) { c.NumLayers, c.DecoderSparseStep = 4, 2 }, []bool{true, false, true, false}},
		{"mlp_only_layers", func(c *config.Config) { c.NumLayers, c.MLPOnlyLayers = 3, []int{0, 2} }, []bool{true, false, true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := moeToy(c.mut)
			m := initModel(t, cfg, nil, 4)
			d, ff, E := cfg.HiddenSize, cfg.IntermediateSize, cfg.NumExperts
			for l, L := range m.W.Layers {
				if c.dense[l] != (L.Router == nil) || c.dense[l] != (len(L.Gate) == ff*d) || c.dense[l] == (len(L.ExpertGate) == E) {
					t.Fatalf("layer %d: router %d, dense gate %d, %d experts; want dense %v", l, len(L.Router), len(L.Gate), len(L.ExpertGate), c.dense[l])
				}
			}
			r := rand.New(rand.NewPCG(1, 1))
			tokens, targets := toyBatch(r, cfg.VocabSize, 2, 5)
			st, err := m.Forward(tokens, targets, 2, 5)
			if err != nil {
				t.Fatal(err)
			}
			counts := make([][][]uint64, cfg.NumLayers)
			for l := range counts {
				counts[l] = [][]uint64{make([]uint64, E)}
			}
			if err := m.CountRoutes(make([]int16, 10), counts); err != nil {
				t.Fatal(err)
			}
			for l := range c.dense {
				var n uint64
				for _, v := range counts[l][0] {
					n += v
				}
				if c.dense[l] != (st.ExpertLoad[l] == nil) || c.dense[l] != (n == 0) {
					t.Fatalf("layer %d: expert load %v, %d routes counted; want dense %v", l, st.ExpertLoad[l], n, c.dense[l])
				}
			}
		})
	}
}
