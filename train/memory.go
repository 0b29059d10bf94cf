package train

import (
	"fmt"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

// trainingBytes estimates the memory a training run of cfg holds at the
// least: float32 weights, gradients and the two AdamW moments.
func trainingBytes(cfg *config.Config) int64 {
	return int64(model.NumParams(cfg)) * 16
}

// checkMemory refuses a config whose training state cannot fit in this
// machine's physical memory, so that `moe train --config gpt4` fails with a
// message instead of a runtime out-of-memory crash. Where the memory size is
// unknown it lets the run try.
func checkMemory(cfg *config.Config) error {
	need, have := trainingBytes(cfg), physicalMemory()
	if have > 0 && need > have {
		return fmt.Errorf("%d parameters need %.1f GiB for weights, gradients and AdamW moments, more than this machine's %.1f GiB of memory",
			model.NumParams(cfg), float64(need)/(1<<30), float64(have)/(1<<30))
	}
	return nil
}
