package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/data"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/internal/memest"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/train"
)

// evalResult is what `moe eval --json` prints. A non-finite loss (a
// diverged model) is printed as null losses and an error.
type evalResult struct {
	Loss        *float64 `json:"loss"`
	Perplexity  *float64 `json:"perplexity"`
	BitsPerByte *float64 `json:"bits_per_byte"`
	Tokens      int      `json:"tokens"`
	Bytes       int      `json:"bytes"`
	SeqLen      int      `json:"seq_len"`
	Routing     string   `json:"routing"`
	Seconds     float64  `json:"seconds"`
	Error       string   `json:"error,omitempty"`
}

// runEval implements `moe eval`: the model's cross-entropy on a text, as
// loss (nats/token), perplexity and bits per byte of text.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", "--model MODEL --data PATH [--json]", stderr)
	modelPath := fs.String("model", "", "model: a run directory or a checkpoint file")
	dataPath := fs.String("data", "", "text to evaluate on: a text file, a directory or a .jsonl file with a \"text\" field")
	jsonOut := fs.Bool("json", false, "print one JSON object")
	seqLen := fs.Int("seq-len", 0, "window length in tokens (0 = the model's context)")
	batch := fs.Int("batch", 4, "windows per forward pass")
	maxTokens := fs.Int("max-tokens", 0, "evaluate only the first N predicted tokens (0 = all)")
	threads := fs.Int("threads", 0, "compute threads (0 = all cores)")
	routing := fs.String("routing", "causal", "MoE routing: causal (as in generation) or train (the batch routing used in training: capacity dropping, batch expert choice)")
	if err := parseFlagsNoArgs(fs, args, "the text goes in --data PATH"); err != nil {
		return err
	}
	switch {
	case *modelPath == "":
		return usagef("--model is required")
	case *dataPath == "":
		return usagef("--data is required")
	case *batch <= 0 || *seqLen < 0 || *maxTokens < 0 || *threads < 0:
		return usagef("--batch must be positive; --seq-len, --max-tokens and --threads not negative")
	case *routing != "causal" && *routing != "train":
		return usagef("--routing %q: want causal or train", *routing)
	}
	t0 := time.Now()
	pool := compute.NewPool(*threads)
	defer pool.Close()
	im, err := infer.Load(*modelPath, pool)
	if err != nil {
		return err
	}
	if im.Tok == nil {
		return fmt.Errorf("model %s has no tokenizer", *modelPath)
	}
	T := *seqLen
	if T == 0 {
		T = im.Cfg.MaxPositionEmbeddings
	}
	if T > im.Cfg.MaxPositionEmbeddings {
		return usagef("--seq-len %d exceeds the model's context %d", T, im.Cfg.MaxPositionEmbeddings)
	}
	// The loaded weights are resident already; the model copy, its
	// gradient buffer and the activations must still fit.
	if err := memest.CheckLoaded(memest.Eval(im.Cfg, *batch, T, pool.Threads()), 4*memest.Params(im.Cfg), "eval",
		fmt.Sprintf("lower --batch (%d) or --seq-len (%d)", *batch, T)); err != nil {
		return err
	}
	m, err := model.New(im.Cfg, pool)
	if err != nil {
		return err
	}
	copy(m.W.Flat, im.W.Flat)
	src, err := data.ParseSource(*dataPath)
	if err != nil {
		return err
	}
	ids, _, err := train.SourceTokens(ctx, im.Tok, src)
	if err != nil {
		return err
	}
	res, err := train.Evaluate(ctx, train.NewModel(m, *routing == "causal"), ids, *batch, T, *maxTokens, train.TextBytes(im.Tok))
	if err != nil {
		return err
	}
	out := evalResult{Tokens: res.Tokens, Bytes: res.Bytes, SeqLen: T, Routing: *routing, Seconds: time.Since(t0).Seconds()}
	var bad error
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
		bad = fmt.Errorf("the loss is %v over %d tokens: the model's outputs are not finite (diverged or corrupt weights)", res.Loss, res.Tokens)
		out.Error = bad.Error()
	} else {
		out.Loss, out.Perplexity, out.BitsPerByte = new(res.Loss), new(res.Perplexity()), new(res.BitsPerByte())
	}
	if *jsonOut {
		if err := printJSON(stdout, out); err != nil {
			return err
		}
		return bad
	}
	if bad != nil {
		return bad
	}
	fmt.Fprintf(stdout, "loss %.4f nats/token, perplexity %.2f, %.4f bits/byte (%d tokens, %d bytes, window %d, %s routing, %.1fs)\n",
		*out.Loss, *out.Perplexity, *out.BitsPerByte, out.Tokens, out.Bytes, T, *routing, out.Seconds)
	return nil
}
