package model

import (
	"math/rand/v2"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// benchConfig is the MoE of the PyTorch comparison in docs/train.md: d 256, 4
// layers, 8 experts top-2 (ff 512), vocab 4096.
func benchConfig() *config.Config {
	return &config.Config{
		ModelType: "mixtral", VocabSize: 4096, HiddenSize: 256, IntermediateSize: 512,
		NumLayers: 4, NumHeads: 8, NumKVHeads: 4, MaxPositionEmbeddings: 1024,
		RopeTheta: 10000, RMSNormEps: 1e-5, NumExperts: 8, ExpertsPerToken: 2,
		RouterAuxLossCoef: 0.01, RouterZLossCoef: 0.001,
	}
}

func benchTrainStep(b *testing.B, cfg *config.Config, B, T int) {
	m := initModel(b, cfg, compute.NewPool(0), 1)
	r := rand.New(rand.NewPCG(1, 1))
	tokens, targets := toyBatch(r, cfg.VocabSize, B, T)
	if _, err := m.Forward(tokens, targets, B, T); err != nil { // warm up buffers
		b.Fatal(err)
	}
	if err := m.Backward(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Forward(tokens, targets, B, T); err != nil {
			b.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkTrainStepMoE is forward+backward on that comparison MoE at a
// batch of 8×256; tokens/s is the figure to compare.
func BenchmarkTrainStepMoE(b *testing.B) { benchTrainStep(b, benchConfig(), 8, 256) }

// BenchmarkTrainStepMoESmall is the MoE at a 2×64 batch, for quick profiles.
func BenchmarkTrainStepMoESmall(b *testing.B) { benchTrainStep(b, benchConfig(), 2, 64) }

// BenchmarkTrainStepDense is the same with a dense FFN of the active width.
func BenchmarkTrainStepDense(b *testing.B) {
	c := benchConfig()
	c.NumExperts, c.ExpertsPerToken, c.IntermediateSize = 0, 0, 1024
	benchTrainStep(b, c, 8, 256)
}
