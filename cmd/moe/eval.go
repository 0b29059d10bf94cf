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

// evalOptions are the flags of `moe eval`.
type evalOptions struct {
	modelPath, pngPath, routing       string
	sources                           sourceList
	experts, jsonOut, llamaPPL        bool
	seqLen, batch, maxTokens, threads int
}

// evalFunc evaluates the model on src, the i-th --data source.
type evalFunc func(i int, src data.Source) (train.EvalResult, error)

// runEval implements `moe eval`: the model's cross-entropy on a text, as
// loss (nats/token), perplexity and bits per byte of text.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o evalOptions
	fs := newFlagSet("eval", "--model MODEL --data [NAME=]PATH... [--experts [--png FILE]] [--json]", stderr)
	fs.StringVar(&o.modelPath, "model", "", "model: a run directory or a checkpoint file")
	fs.Var(&o.sources, "data", "text to evaluate on: a text file, a directory or a .jsonl file with a \"text\" field, optionally NAME=PATH; repeatable (each is evaluated on its own)")
	fs.BoolVar(&o.experts, "experts", false, "also report which experts each --data source's tokens chose (table, and a heat map in --png)")
	fs.StringVar(&o.pngPath, "png", "", "heat map of --experts (default: experts-eval.png in the run directory, or in the current one)")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON object")
	fs.IntVar(&o.seqLen, "seq-len", 0, "window length in tokens (0 = the model's context)")
	fs.IntVar(&o.batch, "batch", 4, "windows per forward pass")
	fs.IntVar(&o.maxTokens, "max-tokens", 0, "evaluate only the first N predicted tokens (0 = all)")
	fs.IntVar(&o.threads, "threads", 0, "compute threads (0 = all cores)")
	fs.StringVar(&o.routing, "routing", "causal", "MoE routing: causal (as in generation) or train (the batch routing used in training: capacity dropping, batch expert choice)")
	fs.BoolVar(&o.llamaPPL, "llama-perplexity", false, "score as llama.cpp's llama-perplexity: the text tokenized whole (BOS first where the vocabulary adds it), cut into chunks of --seq-len tokens whose first token becomes BOS where the vocabulary adds it, each chunk's second half scored")
	if err := parseFlagsNoArgs(fs, args, "the text goes in --data PATH"); err != nil {
		return err
	}
	switch {
	case o.modelPath == "":
		return usagef("--model is required")
	case len(o.sources) == 0:
		return usagef("--data is required")
	case o.batch <= 0 || o.seqLen < 0 || o.maxTokens < 0 || o.threads < 0:
		return usagef("--batch must be positive; --seq-len, --max-tokens and --threads not negative")
	case o.routing != "causal" && o.routing != "train":
		return usagef("--routing %q: want causal or train", o.routing)
	}
	t0 := time.Now()
	pool := compute.NewPool(o.threads)
	defer pool.Close()
	im, err := loadEvalModel(o.modelPath, pool)
	if err != nil {
		return err
	}
	defer im.Close()
	T, err := evalWindow(o.seqLen, im.Cfg.MaxPositionEmbeddings)
	if err != nil {
		return err
	}
	names, srcs, err := evalSources(o.sources)
	if err != nil {
		return err
	}
	evalOne, roles, err := newEvaluator(ctx, &o, im, pool, names, T)
	if err != nil {
		return err
	}
	outs, bad, err := evalEach(srcs, evalOne, T, o.routing, t0)
	if err != nil {
		return err
	}
	path := evalPNGPath(o.pngPath, o.modelPath)
	if o.jsonOut {
		return printEvalJSON(stdout, names, outs, roles, path, bad)
	}
	if bad != nil {
		return bad
	}
	return printEvalText(stdout, names, outs, roles, T, o.routing, path)
}

// loadEvalModel loads the model at path for inference on pool; it fails
// (the model closed) when the model has no tokenizer.
func loadEvalModel(path string, pool *compute.Pool) (*infer.Model, error) {
	im, err := infer.Load(path, pool)
	if err != nil {
		return nil, err
	}
	if im.Tok == nil {
		im.Close()
		return nil, fmt.Errorf("model %s has no tokenizer", path)
	}
	return im, nil
}

// evalWindow returns the window length in tokens: --seq-len, or the
// model's context (maxPos) when it is 0; more than the context is a usage
// error.
func evalWindow(seqLen, maxPos int) (int, error) {
	T := seqLen
	if T == 0 {
		T = maxPos
	}
	if T > maxPos {
		return 0, usagef("--seq-len %d exceeds the model's context %d", T, maxPos)
	}
	return T, nil
}

// evalSources parses the --data specs into sources and the names they are
// reported under: NAME from NAME=PATH, else "INDEX:BASENAME".
func evalSources(specs []string) (names []string, srcs []data.Source, err error) {
	for i, spec := range specs {
		src, err := data.ParseSource(spec)
		if err != nil {
			return nil, nil, err
		}
		srcs = append(srcs, src)
		name := src.Name
		if !strings.Contains(spec, "=") || name == "" {
			name = fmt.Sprintf("%d:%s", i, filepath.Base(src.Path))
		}
		names = append(names, name)
	}
	return names, srcs, nil
}

// newEvaluator returns how each source is evaluated with windows of T
// tokens: on the inference model for files the training model cannot hold
// and for --llama-perplexity, else on a training-model copy of im's
// weights. roles collects the sources' routing for --experts (nil
// without it).
func newEvaluator(ctx context.Context, o *evalOptions, im *infer.Model, pool *compute.Pool, names []string, T int) (evalOne evalFunc, roles *train.ExpertRoles, err error) {
	if why := model.Supported(im.Cfg); why != nil || o.llamaPPL {
		evalOne, err = inferEvaluator(ctx, o, im, T, why)
		return evalOne, nil, err
	}
	return trainEvaluator(ctx, o, im, pool, names, T)
}

// inferEvaluator returns the evaluation on the inference model, with
// causal routing, of files the training model cannot hold (why says
// what it cannot hold; nil when it can) and of --llama-perplexity's
// scoring. Flags that need the training model are usage errors.
func inferEvaluator(ctx context.Context, o *evalOptions, im *infer.Model, T int, why error) (evalFunc, error) {
	switch {
	case (o.experts || o.routing != "causal") && why != nil:
		return nil, usagef("--experts and --routing train need the training model, which cannot hold %s: %v", o.modelPath, why)
	case o.experts || o.routing != "causal":
		return nil, usagef("--experts and --routing train do not apply to --llama-perplexity")
	case o.llamaPPL && o.maxTokens > 0:
		return nil, usagef("--max-tokens does not apply to --llama-perplexity (it scores whole chunks)")
	}
	return func(_ int, src data.Source) (train.EvalResult, error) {
		return evalInfer(ctx, im, src, T, o.maxTokens, o.llamaPPL)
	}, nil
}

// trainEvaluator returns the evaluation on a training model holding a
// float32 copy of im's weights, with --routing's routing, after checking
// that the copy, its gradient buffer and the activations fit beside the
// loaded weights. With --experts it also returns the ExpertRoles the
// evaluation fills, one row per name.
func trainEvaluator(ctx context.Context, o *evalOptions, im *infer.Model, pool *compute.Pool, names []string, T int) (evalFunc, *train.ExpertRoles, error) {
	if err := memest.CheckLoaded(memest.Eval(im.Cfg, o.batch, T, pool.Threads()), 4*memest.Params(im.Cfg), "eval",
		fmt.Sprintf("lower --batch (%d) or --seq-len (%d)", o.batch, T)); err != nil {
		return nil, nil, err
	}
	m, err := model.New(im.Cfg, pool)
	if err != nil {
		return nil, nil, err
	}
	w, err := im.Float32Weights(ctx)
	if err != nil {
		return nil, nil, err
	}
	copy(m.W.Flat, w.Flat)
	if o.experts && !im.Cfg.IsMoE() {
		return nil, nil, usagef("--experts: %s is a dense model", o.modelPath)
	}
	var roles *train.ExpertRoles
	if o.experts {
		roles = train.NewExpertRoles(names, im.Cfg.NumLayers, im.Cfg.NumExperts)
	}
	tm := train.NewModel(m, o.routing == "causal")
	return func(i int, src data.Source) (train.EvalResult, error) {
		ids, _, err := train.SourceTokens(ctx, im.Tok, src)
		if err != nil {
			return train.EvalResult{}, err
		}
		if roles != nil {
			return train.EvaluateRoles(ctx, tm, roles, i, ids, o.batch, T, o.maxTokens, train.TextBytes(im.Tok))
		}
		return train.Evaluate(ctx, tm, ids, o.batch, T, o.maxTokens, train.TextBytes(im.Tok))
	}, roles, nil
}

// evalEach evaluates every source in turn, stopping at the first error.
// A source whose loss is not finite still has its result; bad is the
// first such source's error.
func evalEach(srcs []data.Source, evalOne evalFunc, T int, routing string, t0 time.Time) (outs []evalResult, bad, err error) {
	for i, src := range srcs {
		res, err := evalOne(i, src)
		if err != nil {
			return nil, nil, err
		}
		out, err := newEvalResult(res, T, routing, time.Since(t0).Seconds())
		if err != nil && bad == nil {
			bad = err
		}
		outs = append(outs, out)
	}
	return outs, bad, nil
}

// evalPNGPath is where --experts' heat map goes: --png, else
// experts-eval.png in the model's run directory, or in the current one
// when the model is a file.
func evalPNGPath(pngPath, modelPath string) string {
	if pngPath != "" {
		return pngPath
	}
	path := "experts-eval.png"
	if st, err := os.Stat(modelPath); err == nil && st.IsDir() {
		path = filepath.Join(modelPath, path)
	}
	return path
}

// printEvalJSON prints the results as one JSON object: a single source's
// result alone, else the sources, their results and (with roles) the
// expert routing, whose heat map then goes to path. It returns bad (a
// source's non-finite loss) once printed.
func printEvalJSON(stdout io.Writer, names []string, outs []evalResult, roles *train.ExpertRoles, path string, bad error) error {
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

// printEvalText prints a line per source (prefixed with its name when
// there are several) of windows of T tokens and routing, then with roles
// the expert table, writing the heat map to path.
func printEvalText(stdout io.Writer, names []string, outs []evalResult, roles *train.ExpertRoles, T int, routing, path string) error {
	for i, out := range outs {
		prefix := ""
		if len(outs) > 1 {
			prefix = names[i] + ": "
		}
		fmt.Fprintf(stdout, "%sloss %.4f nats/token, perplexity %.2f, %.4f bits/byte (%d tokens, %d bytes, window %d, %s routing, %.1fs)\n",
			prefix, *out.Loss, *out.Perplexity, *out.BitsPerByte, out.Tokens, out.Bytes, T, routing, out.Seconds)
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
