package train

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
)

// loadBase reads the base model of a fine-tune: a run directory or
// checkpoint file (the tokenizer then comes from its directory: nil here),
// or a GGUF file, whose weights are decoded to float32 and whose own
// tokenizer comes back. A GGUF file of a family the training model cannot
// hold (a gated shared expert, Granite's scales, ...) is refused, naming what
// the training model lacks.
func loadBase(ctx context.Context, path string, threads int) (*config.Config, *model.Weights, *tokenizer.Tokenizer, error) {
	if !strings.EqualFold(filepath.Ext(path), ".gguf") {
		cfg, w, err := checkpoint.LoadModel(path)
		return cfg, w, nil, err
	}
	pool := compute.NewPool(threads)
	defer pool.Close()
	im, err := infer.Load(path, pool)
	if err != nil {
		return nil, nil, nil, err
	}
	defer im.Close()
	if err := model.Supported(im.Cfg); err != nil {
		return nil, nil, nil, fmt.Errorf("%s cannot be fine-tuned: the training model cannot hold it (%v)", path, err)
	}
	if im.Tok == nil {
		return nil, nil, nil, fmt.Errorf("%s has no tokenizer", path)
	}
	w, err := im.Float32Weights(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return im.Cfg, w, im.Tok, nil
}
