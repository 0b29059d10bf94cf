package plan

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

func mustConfig(t *testing.T, nameOrPath string) *config.Config {
	t.Helper()
	c, err := config.Resolve(nameOrPath)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPublishedCounts checks parameter counts from real config.json values
// against the totals their publishers give.
func TestPublishedCounts(t *testing.T) {
	cases := []struct {
		config string
		// published total and active parameters; 0 = none published.
		total, active float64
		// exact totals where the Hugging Face checkpoint's count is known.
		exact int64
		// tol is the relative tolerance (default 1%).
		tol float64
		// activeNoEmbed compares active minus the input embedding table
		// (gpt-oss's convention: the unembedding counts, the lookup not).
		activeNoEmbed bool
	}{
		{config: "mixtral-8x7b", total: 46.7e9, active: 12.9e9, exact: 46_702_792_704},
		{config: "llama-2-7b", total: 6.74e9, exact: 6_738_415_616},
		{config: "mistral-7b", total: 7.24e9, exact: 7_241_732_096},
		{config: "qwen1.5-moe-a2.7b", total: 14.3e9, active: 2.7e9},
		// Qwen publishes "3.3B activated" to two figures for 3.35B.
		{config: "qwen3-30b-a3b", total: 30.5e9, active: 3.3e9, exact: 30_532_122_624, tol: 0.02},
		{config: "olmoe-1b-7b", total: 6.92e9, active: 1.28e9, exact: 6_919_161_856},
		{config: "gpt-oss-20b", total: 20.91e9, active: 3.61e9, activeNoEmbed: true},
		{config: "gpt-oss-120b", total: 116.83e9, active: 5.13e9, activeNoEmbed: true},
		// DeepSeek publishes 15.7B total and 2.4B activated to two figures
		// (2.45B without the input embedding); V3's 671B and 37B (36.6B)
		// are the main model without its multi-token-prediction layer.
		{config: "deepseek-v2-lite", total: 15.7e9, active: 2.4e9, activeNoEmbed: true, tol: 0.025},
		{config: "deepseek-v3", total: 671e9, active: 37e9, activeNoEmbed: true, tol: 0.015},
		{config: "gpt3", total: 175e9},
		{config: filepath.Join("testdata", "gpt3-175b.json"), total: 175e9},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.config), func(t *testing.T) {
			p := Count(mustConfig(t, tc.config))
			tol := tc.tol
			if tol == 0 {
				tol = 0.01
			}
			if rel := math.Abs(float64(p.Total)-tc.total) / tc.total; rel > tol {
				t.Errorf("total %d, published %.4g (off by %.2f%%)", p.Total, tc.total, 100*rel)
			}
			if tc.exact != 0 && p.Total != tc.exact {
				t.Errorf("total %d, checkpoint has exactly %d", p.Total, tc.exact)
			}
			if tc.active != 0 {
				a := float64(p.Active)
				if tc.activeNoEmbed {
					a -= float64(p.Embedding)
				}
				if rel := math.Abs(a-tc.active) / tc.active; rel > tol {
					t.Errorf("active %.0f, published %.4g (off by %.2f%%)", a, tc.active, 100*rel)
				}
			}
			sum := p.Embedding + p.Position + p.LMHead + p.Attention + p.Router + p.RoutedExperts + p.SharedExperts + p.DenseFFN + p.Norms
			if sum != p.Total {
				t.Errorf("parts sum to %d, total is %d", sum, p.Total)
			}
		})
	}
}

// stateDict lists the tensor shapes of a Hugging Face checkpoint of cfg,
// written independently of Count, as the naive reference.
func stateDict(cfg *config.Config) map[string][]int {
	sd := map[string][]int{}
	d, v, hd := cfg.HiddenSize, cfg.VocabSize, cfg.HeadDimension()
	nh, nkv := cfg.NumHeads, cfg.KVHeads()
	norm := func(name string, n int) {
		sd[name+".weight"] = []int{n}
		if cfg.LayerNorm {
			sd[name+".bias"] = []int{n}
		}
	}
	linear := func(name string, out, in int, bias bool) {
		sd[name+".weight"] = []int{out, in}
		if bias {
			sd[name+".bias"] = []int{out}
		}
	}
	mlp := func(name string, ff int, bias bool) {
		if cfg.PlainMLP {
			linear(name+".c_fc", ff, d, bias)
			linear(name+".c_proj", d, ff, bias)
			return
		}
		linear(name+".gate_proj", ff, d, bias)
		linear(name+".up_proj", ff, d, bias)
		linear(name+".down_proj", d, ff, bias)
	}
	sd["embed_tokens.weight"] = []int{v, d}
	if cfg.LearnedPositions {
		sd["wpe.weight"] = []int{cfg.MaxPositionEmbeddings, d}
	}
	for i := 0; i < cfg.NumLayers; i++ {
		p := fmt.Sprintf("layers.%d.", i)
		norm(p+"input_layernorm", d)
		norm(p+"post_attention_layernorm", d)
		qkvBias := cfg.AttentionBias || cfg.QKVBias
		if cfg.MLA() {
			// DeepSeek's names: q (or its LoRA), the latent projection
			// with the shared rope key, its norm, the decompression.
			rank, rope := cfg.KVLoraRank, cfg.QKRopeHeadDim
			if qr := cfg.QLoraRank; qr > 0 {
				linear(p+"self_attn.q_a_proj", qr, d, false)
				norm(p+"self_attn.q_a_layernorm", qr)
				linear(p+"self_attn.q_b_proj", nh*hd, qr, false)
			} else {
				linear(p+"self_attn.q_proj", nh*hd, d, false)
			}
			linear(p+"self_attn.kv_a_proj_with_mqa", rank+rope, d, false)
			norm(p+"self_attn.kv_a_layernorm", rank)
			linear(p+"self_attn.kv_b_proj", nh*(cfg.QKNopeHeadDim+cfg.VHeadDim), rank, false)
			linear(p+"self_attn.o_proj", d, nh*cfg.VHeadDim, false)
		} else {
			linear(p+"self_attn.q_proj", nh*hd, d, qkvBias)
			linear(p+"self_attn.k_proj", nkv*hd, d, qkvBias)
			linear(p+"self_attn.v_proj", nkv*hd, d, qkvBias)
			linear(p+"self_attn.o_proj", d, nh*hd, cfg.AttentionBias)
		}
		if cfg.QKNorm && cfg.QKNormPerHead {
			sd[p+"self_attn.q_norm.weight"] = []int{hd}
			sd[p+"self_attn.k_norm.weight"] = []int{hd}
		} else if cfg.QKNorm {
			sd[p+"self_attn.q_norm.weight"] = []int{nh * hd}
			sd[p+"self_attn.k_norm.weight"] = []int{nkv * hd}
		}
		if cfg.AttentionSinks {
			sd[p+"self_attn.sinks"] = []int{nh}
		}
		if !cfg.LayerIsMoE(i) {
			mlp(p+"mlp", cfg.IntermediateSize, cfg.MLPBias)
			continue
		}
		linear(p+"mlp.gate", cfg.NumExperts, d, cfg.RouterBias)
		if cfg.HasRouterScoreBias() {
			sd[p+"mlp.gate.e_score_correction_bias"] = []int{cfg.NumExperts}
		}
		for e := 0; e < cfg.NumExperts; e++ {
			mlp(fmt.Sprintf("%smlp.experts.%d", p, e), cfg.ExpertSize(), cfg.ExpertBias)
		}
		if s := cfg.SharedExpertIntermediateSize; s > 0 {
			mlp(p+"mlp.shared_expert", s, cfg.ExpertBias)
			if cfg.SharedExpertGate {
				linear(p+"mlp.shared_expert_gate", 1, d, false)
			}
		}
	}
	norm("norm", d)
	if !cfg.TieWordEmbeddings {
		sd["lm_head.weight"] = []int{v, d}
	}
	return sd
}

func TestCountMatchesStateDict(t *testing.T) {
	for _, name := range config.PresetNames() {
		cfg := mustConfig(t, name)
		if cfg.NumExperts > 64 && cfg.NumLayers > 40 {
			// Keep the map small: the reference is the same code path for
			// fewer layers.
			cfg.NumLayers = 4
			cfg.LayerTypes = cfg.LayerTypes[:min(len(cfg.LayerTypes), 4)]
		}
		var n int64
		for _, shape := range stateDict(cfg) {
			s := int64(1)
			for _, x := range shape {
				s *= int64(x)
			}
			n += s
		}
		if got := Count(cfg).Total; got != n {
			t.Errorf("%s: Count %d, state dict %d", name, got, n)
		}
	}
}

// TestCountMatchesTrainingLayout checks that Count gives the number of
// parameters the training model lays out (model.NumParams) for every preset
// it can train, shrunk to a few layers, and for small configs with the
// families' pieces: q/k norms, q/k/v biases, the gated shared expert,
// Granite's scales, dense layers among sparse ones and gpt_oss's biases and
// sinks.
func TestCountMatchesTrainingLayout(t *testing.T) {
	small := func(mut func(c *config.Config)) *config.Config {
		c := &config.Config{ModelType: config.TypeQwen2MoE, VocabSize: 50, HiddenSize: 16, IntermediateSize: 40,
			NumLayers: 4, NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64,
			NumExperts: 4, ExpertsPerToken: 2, MoEIntermediateSize: 8}
		mut(c)
		return c
	}
	cfgs := map[string]*config.Config{
		"qwen2moe": small(func(c *config.Config) {
			c.QKVBias, c.SharedExpertIntermediateSize, c.SharedExpertGate, c.DecoderSparseStep = true, 24, true, 2
		}),
		"granite": small(func(c *config.Config) {
			c.EmbeddingMultiplier, c.ResidualMultiplier, c.AttentionMultiplier, c.LogitsScaling = 12, 0.22, 0.015, 8
			c.TieWordEmbeddings, c.SharedExpertIntermediateSize = true, 24
		}),
		"first_dense_qk_norm": small(func(c *config.Config) { c.MLPOnlyLayers, c.QKNorm, c.QKNormPerHead = []int{0, 1}, true, true }),
		"gpt_oss_shared_dense": small(func(c *config.Config) {
			c.AttentionBias, c.AttentionSinks, c.RouterBias, c.ExpertBias, c.SwiGLULimit = true, true, true, true, 7
			c.SharedExpertIntermediateSize, c.MLPOnlyLayers, c.MLPBias = 24, []int{3}, true
		}),
		"sigmoid_noaux_tc": small(func(c *config.Config) {
			c.MLPOnlyLayers, c.ScoringFunc, c.TopKMethod = []int{0}, config.ScoringSigmoid, config.TopKNoAuxTC
		}),
	}
	for _, name := range config.PresetNames() {
		cfg := mustConfig(t, name)
		cfg.NumLayers = min(cfg.NumLayers, 4)
		cfg.LayerTypes = cfg.LayerTypes[:min(len(cfg.LayerTypes), cfg.NumLayers)]
		if model.Supported(cfg) == nil {
			cfgs[name] = cfg
		}
	}
	for name, cfg := range cfgs {
		if err := model.Supported(cfg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := Count(cfg).Total, int64(model.NumParams(cfg)); got != want {
			t.Errorf("%s: Count %d, the training model lays out %d", name, got, want)
		}
	}
	t.Logf("%d configs", len(cfgs))
}

func TestFLOPsAndMemory(t *testing.T) {
	cfg := mustConfig(t, "gpt-oss-20b") // sliding-window layers exercise the caps
	const ctx = 300
	r, err := New(cfg, Options{Context: ctx, Tokens: 1e9, GPU: "h100", GPUs: 8, MFU: 0.5, PricePerGPUHour: 3, BatchTokens: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	p := r.Params
	matmul := float64(p.ActiveNonEmbedding) + float64(cfg.VocabSize*cfg.HiddenSize)
	if r.ForwardMatmulFLOPsPerToken != 2*matmul {
		t.Errorf("matmul FLOPs %g, want %g", r.ForwardMatmulFLOPsPerToken, 2*matmul)
	}
	// Naive references: loop over layers, and over positions for the mean.
	width := float64(cfg.NumHeads * cfg.HeadDimension())
	var fwd, sumTrain, kv float64
	for l := 0; l < cfg.NumLayers; l++ {
		keys := ctx
		if cfg.LayerTypes[l] == "sliding_attention" {
			keys = cfg.SlidingWindow
		}
		fwd += 4 * width * float64(keys)
		kv += 2 * 2 * float64(cfg.KVHeads()*cfg.HeadDimension()) * float64(keys)
		for pos := 1; pos <= ctx; pos++ {
			sumTrain += 4 * width * float64(min(pos, keys))
		}
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9*math.Abs(want) {
			t.Errorf("%s = %g, want %g", what, got, want)
		}
	}
	near("attention FLOPs", r.ForwardAttentionFLOPsPerToken, fwd)
	near("train attention FLOPs", r.TrainAttentionFLOPs, 3*sumTrain/ctx*1e9)
	near("train matmul FLOPs", r.TrainMatmulFLOPs, 6*matmul*1e9)
	near("KV bytes per sequence", r.KVCacheBytesPerSequence, kv)
	near("KV bytes per token", r.KVCacheBytesPerToken, kv/ctx)
	near("bf16 weights", r.WeightBytes["bf16"], 2*float64(p.Total))
	near("int4 weights", r.WeightBytes["int4"], 0.5*float64(p.Total))
	near("training memory", r.TrainMemoryBytes, 16*float64(p.Total))
	if want := int(math.Ceil(2 * float64(p.Total) / 80e9)); r.GPUsForBF16Weights != want {
		t.Errorf("GPUs for bf16 weights %d, want %d", r.GPUsForBF16Weights, want)
	}
	secs := r.TrainFLOPs / (8 * 989e12 * 0.5)
	near("train days", r.TrainDays, secs/86400)
	near("cost", r.CostUSD, secs/3600*8*3)
	near("tokens per expert", r.TokensPerExpertPerBatch, float64(1<<20)*4/32)
}

func TestGPT4(t *testing.T) {
	r, err := New(mustConfig(t, "gpt4"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The account's own figures, reproduced by the preset.
	within := func(what string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got-want) > tol*want {
			t.Errorf("%s = %.4g, want %.4g ± %.0f%%", what, got, want, 100*tol)
		}
	}
	within("total", float64(r.Total), 1.8e12, 0.03)
	within("per expert", float64(r.Expert), 111e9, 0.01)
	within("attention", float64(r.Attention), 55e9, 0.02)
	within("active", float64(r.Active), 280e9, 0.01)
	within("forward matmul FLOPs", r.ForwardMatmulFLOPsPerToken, 560e9, 0.01)
	within("6ND", r.TrainMatmulFLOPs, 2.15e25, 0.02)
	within("days", r.TrainDays, 95, 0.06)
	within("tokens per expert", r.TokensPerExpertPerBatch, 7.5e6, 1e-9)
	if r.GPUs != 25000 || r.GPU != "a100" || r.Context != 8192 || r.TrainTokens != 13e12 {
		t.Errorf("defaults are not the account's: %+v", r)
	}
	verdicts := map[string]string{}
	for _, c := range r.Checks {
		if c.Claim == "" || c.Stated == "" || c.Computed == "" || c.Verdict == "" {
			t.Errorf("incomplete check %+v", c)
		}
		verdicts[c.Claim] = c.Verdict
	}
	for claim, prefix := range map[string]string{
		"total parameters":                           "ok",
		"parameters used per token":                  "ok",
		"forward FLOPs per token":                    "wrong",
		"training compute":                           "ok",
		"GPU count":                                  "ok",
		"GPU count as sometimes quoted":              "wrong",
		"training time":                              "ok",
		"MFU":                                        "ok",
		"cost":                                       "inconsistent",
		"tokens per expert per batch":                "ok",
		"GPT-3 size as sometimes quoted":             "wrong",
		"shared attention parameters":                "ok",
		"2.15e25: count or rate":                     "ok as a FLOP count",
		"attention parameters (Chinese translation)": "wrong: 亿 is 10^8, so 55 亿 is 5.50B, 10× below",
		"cost of one hour (Chinese translation)":     "wrong: one hour of 25,000 A100s at $1 costs $25.0K",
	} {
		v, ok := verdicts[claim]
		if !ok {
			t.Errorf("no check for %q", claim)
			continue
		}
		if !strings.HasPrefix(v, prefix) {
			t.Errorf("%s: verdict %q, want %q…", claim, v, prefix)
		}
	}
	if v := verdicts["shared attention parameters"]; !strings.Contains(v, "multi-query") || !strings.Contains(v, "28.1B") {
		t.Errorf("attention verdict does not give the MQA figure: %q", v)
	}
	// Checks use the account's figures whatever the options say.
	r2, err := New(mustConfig(t, "gpt4"), Options{GPUs: 7, GPU: "h100"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Checks) != len(r.Checks) || r2.Checks[5] != r.Checks[5] {
		t.Error("checks changed with the options")
	}
	if r2.PricePerGPUHour != 2 {
		t.Errorf("h100 default price %v", r2.PricePerGPUHour)
	}
	other, _ := New(mustConfig(t, "mixtral-8x7b"), Options{})
	if len(other.Checks) != 0 {
		t.Error("checks on a non-gpt4 config")
	}
}

// TestSlip: a power-of-ten slip is found whichever way it goes, and only
// within the tolerance.
func TestSlip(t *testing.T) {
	for _, c := range []struct {
		stated, computed float64
		want             int
	}{
		{560e12, 560e9, 3}, {5.5e9, 55.5e9, -1}, {55e9, 55.5e9, 0}, {1e12, 175e9, 0},
		{63e6, 25e3, 0}, {700e9, 560e9, 0}, {5.6e9, 560e9, -2}, {0, 1, 0},
	} {
		if got := slip(c.stated, c.computed, 0.05); got != c.want {
			t.Errorf("slip(%g, %g) = %d, want %d", c.stated, c.computed, got, c.want)
		}
	}
	if width("55 亿") != 5 || width("abc") != 3 {
		t.Errorf("width: %d %d", width("55 亿"), width("abc"))
	}
}

func TestOptionErrors(t *testing.T) {
	cfg := mustConfig(t, "tiny")
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{GPU: "tpu"}, "--gpu"},
		{Options{GPUs: -1}, "--gpus"},
		{Options{MFU: 1.5}, "--mfu"},
		{Options{MFU: math.NaN()}, "--mfu"},
		{Options{Tokens: -5}, "--tokens"},
		{Options{PricePerGPUHour: -1}, "--price"},
		{Options{Context: -3}, "--context"},
		{Options{BatchTokens: -1}, "--batch-tokens"},
	} {
		if _, err := New(cfg, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.o, err, tc.want)
		}
	}
	bad := cfg.Clone()
	bad.ExpertsPerToken = 99
	if _, err := New(bad, Options{}); err == nil || !strings.Contains(err.Error(), "num_experts_per_tok") {
		t.Errorf("invalid config accepted: %v", err)
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{HumanCount(1.8e12), "1.80T"},
		{HumanCount(46.7e9), "46.7B"},
		{HumanCount(175e9), "175B"},
		{HumanCount(4096), "4.10K"},
		{HumanCount(12), "12"},
		{SI(560e9, "FLOP"), "560 GFLOP"},
		{SI(3.67e12, "B"), "3.67 TB"},
		{SI(312e12, "FLOP/s"), "312 TFLOP/s"},
		{SI(5, "B"), "5.00 B"},
		{Sci(2.15e25), "2.15e25"},
		{thousands(25000), "25,000"},
		{thousands(-1234567), "-1,234,567"},
		{money(63e6), "$63.0M"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestTextTable(t *testing.T) {
	r, err := New(mustConfig(t, "gpt4"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"1.83T", "280B", "25,000 × A100", "7.50M", "wrong unit", "GFLOP", "checks against the published account"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Columns line up: in the parameter table every row's total column ends
	// at the same offset.
	lines := strings.Split(out, "\n")
	end := -1
	for _, l := range lines[2:10] {
		if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "  exact") {
			break
		}
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		i := len([]rune(l[:strings.LastIndex(l, "  ")]))
		if end >= 0 && i != end {
			t.Errorf("misaligned row %q", l)
		}
		end = i
	}
}

func TestExpertChoiceActive(t *testing.T) {
	cfg := mustConfig(t, "tiny")
	cfg.Routing = config.RoutingExpertChoice
	cfg.ExpertsPerToken = 0
	cfg.CapacityFactor = 1.5
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := Count(cfg)
	base := p.Total - p.RoutedExperts
	if want := base + int64(math.Round(1.5*float64(p.Expert))); p.Active != want {
		t.Errorf("active %d, want %d (1.5 experts per token)", p.Active, want)
	}
	r, err := New(cfg, Options{BatchTokens: 800})
	if err != nil {
		t.Fatal(err)
	}
	if r.TokensPerExpertPerBatch != 800*1.5/8 {
		t.Errorf("tokens per expert %v", r.TokensPerExpertPerBatch)
	}
}

// FuzzPlan checks that every config the reader accepts plans without a
// panic and with finite, non-negative figures that add up.
func FuzzPlan(f *testing.F) {
	for _, n := range config.PresetNames() {
		c, _ := config.Preset(n)
		data, err := c.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, 512)
	}
	f.Fuzz(func(t *testing.T, data []byte, ctx int) {
		cfg, err := config.Parse(data)
		if err != nil {
			return
		}
		if ctx < 1 || ctx > 1<<20 {
			ctx = 1 + (ctx&0xffff+0xffff)%0xffff
		}
		r, err := New(cfg, Options{Context: ctx})
		if err != nil {
			t.Fatalf("accepted config does not plan: %v", err)
		}
		p := r.Params
		if p.Total <= 0 || p.Active <= 0 || p.Active > p.Total || p.Expert > p.RoutedExperts {
			t.Fatalf("counts: %+v", p)
		}
		for name, v := range map[string]float64{
			"forward": r.ForwardFLOPsPerToken, "train": r.TrainFLOPs, "kv": r.KVCacheBytesPerToken,
			"days": r.TrainDays, "cost": r.CostUSD, "per expert": r.TokensPerExpertPerBatch,
		} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("%s = %v", name, v)
			}
		}
		var b strings.Builder
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBatchRamp checks the ramp's points (tokens per expert per step =
// batch·k/E) and its step count against stepping through the ramp.
func TestBatchRamp(t *testing.T) {
	cfg, _ := config.Preset("mixtral-8x7b")
	r, err := New(cfg, Options{Tokens: 1e12, BatchTokens: 4e6, BatchTokensStart: 1e6, BatchRampTokens: 1e11})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Ramp) != 5 {
		t.Fatalf("%d ramp points", len(r.Ramp))
	}
	for i, p := range r.Ramp {
		b := 1e6 + 3e6*float64(i)/4
		if p.BatchTokens != b || p.Consumed != 1e11*float64(i)/4 || p.TokensPerExpert != b*2/8 {
			t.Errorf("point %d: %+v, want batch %v and %v per expert", i, p, b, b*2/8)
		}
	}
	// Step through the ramp: each step takes the batch of the tokens seen.
	steps, seen := 0.0, 0.0
	for seen < 1e11 {
		seen += 1e6 + 3e6*seen/1e11
		steps++
	}
	if math.Abs(r.RampSteps-steps)/steps > 1e-3 {
		t.Errorf("ramp steps %v, stepping gives %v", r.RampSteps, steps)
	}
	for _, bad := range []Options{
		{Tokens: 1e9, BatchTokens: 4e6, BatchTokensStart: 1e6, BatchRampTokens: 2e9},
		{Tokens: 1e12, BatchTokens: 4e6, BatchTokensStart: 8e6, BatchRampTokens: 1e9},
		{Tokens: 1e12, BatchTokens: 4e6, BatchTokensStart: 1e6},
	} {
		if _, err := New(cfg, bad); err == nil || !strings.Contains(err.Error(), "ramp") {
			t.Errorf("%+v: err = %v", bad, err)
		}
	}
}
