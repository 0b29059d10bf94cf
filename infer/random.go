package infer

import (
	"fmt"
	"math/rand/v2"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

// RandomModel returns a model of cfg with random weights (normal(0, InitStd
// or 0.02), norm gains 1) and no tokenizer: for benchmarks and tests that
// need the cost of a configuration, not its quality.
func RandomModel(cfg *config.Config, seed uint64, pool *compute.Pool) (*Model, error) {
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("infer: random model: %w", err)
	}
	std := cfg.InitStd
	if std <= 0 {
		std = 0.02
	}
	r := rand.New(rand.NewPCG(seed, 0x726e64))
	for i := range w.Flat {
		w.Flat[i] = float32(r.NormFloat64() * std)
	}
	for _, nd := range w.NoDecay {
		for i := nd[0]; i < nd[1]; i++ {
			w.Flat[i] = 1
		}
	}
	return New(cfg, w, nil, pool)
}
