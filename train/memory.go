package train

import (
	"fmt"
	"runtime"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/internal/memest"
)

// checkMemory refuses a run whose estimated memory (float32 weights,
// gradients and AdamW moments, one micro-batch's activations) does not fit
// in the memory this machine has available, so that `moe train --config
// gpt4` or `--batch 100000000` fails at once with the estimate and the
// flag to change instead of a runtime out-of-memory crash. what names the
// job ("training", "fine-tuning").
func checkMemory(cfg *config.Config, opts Options, what string) error {
	if _, err := resolveSeqLen(&opts, cfg); err != nil {
		return nil // the caller reports a bad --seq-len itself
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return memest.Check(memest.Train(cfg, opts.Batch, opts.SeqLen, threads), what,
		fmt.Sprintf("lower --batch (%d) or --seq-len (%d), or use a smaller model", opts.Batch, opts.SeqLen))
}
