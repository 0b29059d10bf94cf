package model

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// corpus returns the bytes of the Go standard library's fmt and strings
// packages (always present with the toolchain), split 90/10 into training
// and validation text.
func corpus(tb testing.TB) (train, val []int32) {
	var all []byte
	for _, dir := range []string{"fmt", "strings"} {
		files, err := filepath.Glob(filepath.Join(runtime.GOROOT(), "src", dir, "*.go"))
		if err != nil || len(files) == 0 {
			tb.Fatalf("no Go sources under GOROOT for %s: %v", dir, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				tb.Fatal(err)
			}
			all = append(all, b...)
		}
	}
	toks := make([]int32, len(all))
	for i, c := range all {
		toks[i] = int32(c)
	}
	cut := len(toks) * 9 / 10
	return toks[:cut], toks[cut:]
}

// trainToy trains cfg on byte-level text for steps AdamW steps of B×T
// tokens and returns the model.
func trainToy(tb testing.TB, cfg *config.Config, text []int32, steps, B, T int, seed uint64) *Model {
	m, err := New(cfg, compute.NewPool(0))
	if err != nil {
		tb.Fatal(err)
	}
	m.Init(seed)
	r := rand.New(rand.NewPCG(seed, 3))
	tokens := make([]int32, B*T)
	targets := make([]int32, B*T)
	mom := make([]float32, len(m.W.Flat))
	vel := make([]float32, len(m.W.Flat))
	for step := 1; step <= steps; step++ {
		for b := 0; b < B; b++ {
			o := r.IntN(len(text) - T - 1)
			copy(tokens[b*T:(b+1)*T], text[o:o+T])
			copy(targets[b*T:(b+1)*T], text[o+1:o+T+1])
		}
		m.ZeroGrad()
		if _, err := m.Forward(tokens, targets, B, T); err != nil {
			tb.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			tb.Fatal(err)
		}
		lr := float32(3e-3 * math.Min(1, float64(step)/20))
		compute.AdamWMasked(m.W.Flat, m.G.Flat, mom, vel, m.W.NoDecay, lr, 0.9, 0.95, 1e-8, 0.1, step)
	}
	return m
}

// valLoss is the mean cross-entropy over consecutive B×T windows of text.
func valLoss(tb testing.TB, m *Model, text []int32, B, T int, opt ForwardOptions) float64 {
	var sum float64
	n := 0
	for o := 0; o+B*T+1 <= len(text); o += B * T {
		st, err := m.ForwardWith(text[o:o+B*T], text[o+1:o+B*T+1], B, T, opt)
		if err != nil {
			tb.Fatal(err)
		}
		sum += st.CELoss * float64(st.Targets)
		n += st.Targets
	}
	return sum / float64(n)
}

func ecToyConfig(routing string) *config.Config {
	return &config.Config{
		ModelType: "mixtral", VocabSize: 256, HiddenSize: 64, IntermediateSize: 128,
		NumLayers: 2, NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 256,
		RopeTheta: 10000, RMSNormEps: 1e-5, NumExperts: 8, ExpertsPerToken: 2,
		Routing: routing, CapacityFactor: 2, RouterAuxLossCoef: 0.01, RouterZLossCoef: 0.001,
	}
}

// BenchmarkExpertChoiceGap trains a small expert-choice MoE (and a
// token-choice one of the same size and budget) on Go source bytes, for
// three seeds, and reports the mean validation loss of the expert-choice
// model with its batch-wide training routing (ec_batch_val) and with the
// causal rule generation has to use (ec_causal_val), the token-choice
// baseline (tc_val), and in the log the causal rule with k = 1..4.
// Run: go test ./model -run XXX -bench ExpertChoiceGap -benchtime 1x
func BenchmarkExpertChoiceGap(b *testing.B) {
	train, val := corpus(b)
	const B, T, steps, seeds = 8, 64, 1500, 3
	for i := 0; i < b.N; i++ {
		var batch, causal, tcv float64
		var ks [5]float64
		for seed := uint64(1); seed <= seeds; seed++ {
			ec := trainToy(b, ecToyConfig(config.RoutingExpertChoice), train, steps, B, T, seed)
			eb := valLoss(b, ec, val, B, T, ForwardOptions{})
			ecs := valLoss(b, ec, val, B, T, ForwardOptions{Causal: true})
			tc := trainToy(b, ecToyConfig(config.RoutingTokenChoice), train, steps, B, T, seed)
			tl := valLoss(b, tc, val, B, T, ForwardOptions{Causal: true})
			batch += eb / seeds
			causal += ecs / seeds
			tcv += tl / seeds
			var kv [5]float64
			for k := 1; k <= 4; k++ {
				kv[k] = valLoss(b, ec, val, B, T, ForwardOptions{Causal: true, CausalK: k})
				ks[k] += kv[k] / seeds
			}
			b.Logf("seed %d: expert-choice batch %.4f, causal %.4f (gap %+.4f), causal k=1..4 %.4f %.4f %.4f %.4f; token-choice %.4f",
				seed, eb, ecs, ecs-eb, kv[1], kv[2], kv[3], kv[4], tl)
		}
		b.ReportMetric(batch, "ec_batch_val")
		b.ReportMetric(causal, "ec_causal_val")
		b.ReportMetric(tcv, "tc_val")
		b.Logf("mean over %d seeds (nats/byte): expert-choice batch %.4f, causal %.4f (gap %+.4f), causal k=1..4 %.4f %.4f %.4f %.4f; token-choice %.4f",
			seeds, batch, causal, causal-batch, ks[1], ks[2], ks[3], ks[4], tcv)
	}
}
