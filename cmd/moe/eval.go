package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
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

// newEvalResult turns an evaluation into what eval prints, and an error
// when its loss is not finite.
func newEvalResult(res train.EvalResult, T int, routing string, seconds float64) (evalResult, error) {
	out := evalResult{Tokens: res.Tokens, Bytes: res.Bytes, SeqLen: T, Routing: routing, Seconds: seconds}
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
		err := fmt.Errorf("the loss is %v over %d tokens: the model's outputs are not finite (diverged or corrupt weights)", res.Loss, res.Tokens)
		out.Error = err.Error()
		return out, err
	}
	out.Loss, out.Perplexity, out.BitsPerByte = new(res.Loss), new(res.Perplexity()), new(res.BitsPerByte())
	return out, nil
}

// runEval implements `moe eval`: the model's cross-entropy on a text, as
// loss (nats/token), perplexity and bits per byte of text.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", "--model MODEL --data [NAME=]PATH... [--experts [--png FILE]] [--json]", stderr)
	modelPath := fs.String("model", "", "model: a run directory or a checkpoint file")
	var sources sourceList
	fs.Var(&sources, "data", "text to evaluate on: a text file, a directory or a .jsonl file with a \"text\" field, optionally NAME=PATH; repeatable (each is evaluated on its own)")
	experts := fs.Bool("experts", false, "also report which experts each --data source's tokens chose (table, and a heat map in --png)")
	pngPath := fs.String("png", "", "heat map of --experts (default: experts-eval.png in the run directory, or in the current one)")
	jsonOut := fs.Bool("json", false, "print one JSON object")
	seqLen := fs.Int("seq-len", 0, "window length in tokens (0 = the model's context)")
	batch := fs.Int("batch", 4, "windows per forward pass")
	maxTokens := fs.Int("max-tokens", 0, "evaluate only the first N predicted tokens (0 = all)")
	threads := fs.Int("threads", 0, "compute threads (0 = all cores)")
	routing := fs.String("routing", "causal", "MoE routing: causal (as in generation) or train (the batch routing used in training: capacity dropping, batch expert choice)")
	llamaPPL := fs.Bool("llama-perplexity", false, "score as llama.cpp's llama-perplexity: the text tokenized whole (BOS first where the vocabulary adds it), cut into chunks of --seq-len tokens whose first token becomes BOS where the vocabulary adds it, each chunk's second half scored")
	if err := parseFlagsNoArgs(fs, args, "the text goes in --data PATH"); err != nil {
		return err
	}
	switch {
	case *modelPath == "":
		return usagef("--model is required")
	case len(sources) == 0:
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
	defer im.Close()
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
	var names []string
	var srcs []data.Source
	for i, spec := range sources {
		src, err := data.ParseSource(spec)
		if err != nil {
			return err
		}
		srcs = append(srcs, src)
		name := src.Name
		if !strings.Contains(spec, "=") || name == "" {
			name = fmt.Sprintf("%d:%s", i, filepath.Base(src.Path))
		}
		names = append(names, name)
	}
	var roles *train.ExpertRoles
	var evalOne func(i int, src data.Source) (train.EvalResult, error)
	if why := model.Supported(im.Cfg); why != nil || *llamaPPL {
		// Files the training model cannot hold (a gated shared expert,
		// Granite's scales, ...) and llama-perplexity's scoring run on the
		// inference model, with causal routing.
		switch {
		case (*experts || *routing != "causal") && why != nil:
			return usagef("--experts and --routing train need the training model, which cannot hold %s: %v", *modelPath, why)
		case *experts || *routing != "causal":
			return usagef("--experts and --routing train do not apply to --llama-perplexity")
		case *llamaPPL && *maxTokens > 0:
			return usagef("--max-tokens does not apply to --llama-perplexity (it scores whole chunks)")
		}
		evalOne = func(_ int, src data.Source) (train.EvalResult, error) {
			return evalInfer(ctx, im, src, T, *maxTokens, *llamaPPL)
		}
	} else {
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
		w, err := im.Float32Weights(ctx)
		if err != nil {
			return err
		}
		copy(m.W.Flat, w.Flat)
		if *experts && !im.Cfg.IsMoE() {
			return usagef("--experts: %s is a dense model", *modelPath)
		}
		if *experts {
			roles = train.NewExpertRoles(names, im.Cfg.NumLayers, im.Cfg.NumExperts)
		}
		tm := train.NewModel(m, *routing == "causal")
		evalOne = func(i int, src data.Source) (train.EvalResult, error) {
			ids, _, err := train.SourceTokens(ctx, im.Tok, src)
			if err != nil {
				return train.EvalResult{}, err
			}
			if roles != nil {
				return train.EvaluateRoles(ctx, tm, roles, i, ids, *batch, T, *maxTokens, train.TextBytes(im.Tok))
			}
			return train.Evaluate(ctx, tm, ids, *batch, T, *maxTokens, train.TextBytes(im.Tok))
		}
	}
	var outs []evalResult
	var bad error
	for i, src := range srcs {
		res, err := evalOne(i, src)
		if err != nil {
			return err
		}
		out, err := newEvalResult(res, T, *routing, time.Since(t0).Seconds())
		if err != nil && bad == nil {
			bad = err
		}
		outs = append(outs, out)
	}
	path := *pngPath
	if path == "" {
		path = "experts-eval.png"
		if st, err := os.Stat(*modelPath); err == nil && st.IsDir() {
			path = filepath.Join(*modelPath, path)
		}
	}
	if *jsonOut {
		if len(outs) == 1 && roles == nil {
			if err := printJSON(stdout, outs[0]); err != nil {
				return err
			}
			return bad
		}
		if roles != nil {
			if err := writeExpertRoles(roles, path, io.Discard); err != nil {
				return err
			}
		}
		if err := printJSON(stdout, struct {
			Sources []string           `json:"sources"`
			Results []evalResult       `json:"results"`
			Experts *train.ExpertRoles `json:"experts,omitempty"`
		}{names, outs, roles}); err != nil {
			return err
		}
		return bad
	}
	if bad != nil {
		return bad
	}
	for i, out := range outs {
		prefix := ""
		if len(outs) > 1 {
			prefix = names[i] + ": "
		}
		fmt.Fprintf(stdout, "%sloss %.4f nats/token, perplexity %.2f, %.4f bits/byte (%d tokens, %d bytes, window %d, %s routing, %.1fs)\n",
			prefix, *out.Loss, *out.Perplexity, *out.BitsPerByte, out.Tokens, out.Bytes, T, *routing, out.Seconds)
	}
	if roles == nil {
		return nil
	}
	fmt.Fprintln(stdout)
	return writeExpertRoles(roles, path, stdout)
}

// evalInfer evaluates im (the inference model, causal routing) on src:
// windows of T predicted tokens over the text as eval tokenizes it, or,
// with llamaPPL, llama-perplexity's chunks (see infer.PerplexityChunks),
// each document tokenized whole with BOS where the vocabulary adds it.
func evalInfer(ctx context.Context, im *infer.Model, src data.Source, T, maxTokens int, llamaPPL bool) (train.EvalResult, error) {
	var windows [][]int32
	from := 0
	if llamaPPL {
		var ids []int32
		if _, err := data.Documents(ctx, src, func(doc []byte) error {
			ids = append(ids, im.Tok.Tokenize(doc, true, false)...)
			return nil
		}); err != nil {
			return train.EvalResult{}, fmt.Errorf("eval data: %w", err)
		}
		var err error
		if windows, err = im.PerplexityChunks(ids, T); err != nil {
			return train.EvalResult{}, err
		}
		from = T / 2
	} else {
		ids, _, err := train.SourceTokens(ctx, im.Tok, src)
		if err != nil {
			return train.EvalResult{}, err
		}
		if maxTokens > 0 && maxTokens+1 < len(ids) {
			ids = ids[:maxTokens+1]
		}
		if len(ids) < 2 {
			return train.EvalResult{}, fmt.Errorf("eval: need at least 2 tokens, have %d", len(ids))
		}
		for pos := 0; pos+1 < len(ids); pos += T {
			windows = append(windows, ids[pos:min(pos+T+1, len(ids))])
		}
	}
	bytesOf := train.TextBytes(im.Tok)
	var r train.EvalResult
	sum, n, err := im.Score(ctx, windows, from, func(id int32) { r.Bytes += bytesOf(id) })
	if err != nil {
		return r, err
	}
	r.SumLoss, r.Tokens, r.Loss = sum, n, sum/float64(n)
	return r, nil
}
