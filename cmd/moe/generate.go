package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/internal/memest"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// ngramDraft is the --draft value that selects prompt-lookup drafting
// (infer.NgramDrafter) instead of a draft model; a model directory named
// ngram is still reachable as ./ngram.
const ngramDraft = "ngram"

// placementFlag is the --weights flag: where a GGUF file's weights live.
type placementFlag struct{ p gguf.Placement }

func (f *placementFlag) String() string { return f.p.String() }
func (f *placementFlag) Set(s string) (err error) {
	f.p, err = gguf.ParsePlacement(s)
	return err
}

// addWeightsFlag defines --weights on fs (generate, chat, serve, bench
// generate).
func addWeightsFlag(fs *flag.FlagSet) *gguf.Placement {
	f := &placementFlag{}
	fs.Var(f, "weights", "where a GGUF file's weights live: auto (huge pages when the system offers them and memory allows, else mmap), mmap (the file's pages in place: least memory, fastest start) or huge (a copy on transparent huge pages: faster decoding)")
	return &f.p
}

// decodeFlags are the flags moe generate and moe chat share: the model,
// the token limit, sampling, the draft, threads, weights placement and bf16.
type decodeFlags struct {
	model, draft string
	maxTokens    int
	draftTokens  int
	threads      int
	place        *gguf.Placement
	bf16         bool
	sampling     infer.SampleOptions
}

// addDecodeFlags registers the decodeFlags on fs with def as the sampling
// defaults; maxTokensHelp describes --max-tokens.
func addDecodeFlags(fs *flag.FlagSet, def infer.SampleOptions, maxTokensHelp string) *decodeFlags {
	f := &decodeFlags{sampling: def}
	fs.StringVar(&f.model, "model", "", "model: a run directory, a .gguf file or a Hugging Face directory")
	fs.IntVar(&f.maxTokens, "max-tokens", 256, maxTokensHelp)
	fs.Float64Var(&f.sampling.Temperature, "temperature", def.Temperature, "sampling temperature; 0 = greedy (deterministic)")
	fs.IntVar(&f.sampling.TopK, "top-k", def.TopK, "keep only the K most likely tokens (0 = all)")
	fs.Float64Var(&f.sampling.TopP, "top-p", def.TopP, "nucleus sampling: keep the most likely tokens up to this probability mass")
	fs.Uint64Var(&f.sampling.Seed, "seed", def.Seed, "random seed for sampling")
	fs.StringVar(&f.draft, "draft", "", "speculative decoding: a draft model sharing the tokenizer, or ngram for prompt lookup (no model)")
	fs.IntVar(&f.draftTokens, "draft-tokens", 4, "initial number of tokens the draft proposes per step (adapted at run time)")
	fs.IntVar(&f.threads, "threads", 0, "worker threads (0 = all cores)")
	f.place = addWeightsFlag(fs)
	fs.BoolVar(&f.bf16, "bf16", false, "compute with bfloat16 copies of the weights (half the memory traffic, rounded weights)")
	return f
}

// parse parses args, which must hold no positional arguments (noArgs says
// where the input goes instead), and checks the decode flags.
func (f *decodeFlags) parse(fs *flag.FlagSet, args []string, noArgs string) error {
	if err := parseFlagsNoArgs(fs, args, noArgs); err != nil {
		return err
	}
	return f.check()
}

// check returns a usage error for a missing --model, a --draft-tokens
// below 1, sampling options out of range or a --max-tokens below 1.
func (f *decodeFlags) check() error {
	if f.model == "" {
		return usagef("--model is required")
	}
	if f.draftTokens < 1 {
		return usagef("--draft-tokens must be at least 1")
	}
	if err := f.sampling.Validate(); err != nil {
		return usagef("%v", err)
	}
	if f.maxTokens < 1 {
		return usagef("--max-tokens must be at least 1")
	}
	return nil
}

// open starts the worker pool and loads the model and draft (nil without
// one), in bfloat16 when --bf16 asks; release frees them and the pool.
func (f *decodeFlags) open() (m, d *infer.Model, release func(), err error) {
	pool := compute.NewPool(f.threads)
	m, d, err = loadModels(f.model, f.draft, *f.place, pool)
	if err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	useBF16(f.bf16, m, d)
	return m, d, func() { closeModels(m, d); pool.Close() }, nil
}

// loadModels loads the target model and, if draftPath names a model, the
// draft, checking that they share a tokenizer; place says where GGUF
// weights live. (moe chat, serve and bench generate use it too.)
func loadModels(modelPath, draftPath string, place gguf.Placement, pool *compute.Pool) (*infer.Model, *infer.Model, error) {
	m, err := infer.LoadPlaced(modelPath, pool, place)
	if err != nil {
		return nil, nil, err
	}
	if m.Tok == nil {
		m.Close()
		return nil, nil, fmt.Errorf("model %s has no tokenizer", modelPath)
	}
	d, err := loadDraft(m, modelPath, draftPath, place, pool)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, d, nil
}

// loadDraft loads the draft model draftPath for m (nil for none or ngram).
func loadDraft(m *infer.Model, modelPath, draftPath string, place gguf.Placement, pool *compute.Pool) (*infer.Model, error) {
	if draftPath == "" || draftPath == ngramDraft {
		return nil, nil
	}
	d, err := infer.LoadPlaced(draftPath, pool, place)
	if err != nil {
		return nil, fmt.Errorf("draft: %w", err)
	}
	if err := infer.CheckDraft(m, d); err != nil {
		d.Close()
		return nil, fmt.Errorf("draft %s cannot draft for %s: %w", draftPath, modelPath, err)
	}
	return d, nil
}

// drafterFor returns the model-free drafter --draft names (prompt lookup
// for ngram), or nil.
func drafterFor(draftPath string) infer.Drafter {
	if draftPath == ngramDraft {
		return &infer.NgramDrafter{}
	}
	return nil
}

// closeModels releases the models loadModels returned (d may be nil).
func closeModels(m, d *infer.Model) {
	m.Close()
	d.Close()
}

// runGenerate implements `moe generate`.
func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate", "--model MODEL --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--draft MODEL|ngram --draft-tokens K] [--stop TEXT] [--ignore-eos] [--json]\n\n"+
		"Generation ends at --max-tokens, at a --stop string, or at an end-of-generation token\n"+
		"(<|endoftext|> or the chat end-of-turn <|end|>; --ignore-eos keeps going).", stderr)
	df := addDecodeFlags(fs, infer.SampleOptions{TopP: 1}, "most tokens to generate")
	prompt := fs.String("prompt", "", "prompt text")
	fixedK := fs.Bool("fixed-draft-tokens", false, "do not adapt --draft-tokens")
	var ignoreEOS bool
	fs.BoolVar(&ignoreEOS, "ignore-eos", false, "keep generating past end-of-generation tokens (by default generation stops at end of text and end of turn: the file's eos/eot/eom and its chat template's end markers, as llama.cpp does)")
	fs.BoolVar(&ignoreEOS, "ignore-eot", false, "the same as --ignore-eos")
	var stops stringList
	fs.Var(&stops, "stop", "stop when the text contains this string (repeatable)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of streaming text")
	if err := df.parse(fs, args, "the prompt goes in --prompt TEXT"); err != nil {
		return err
	}
	if *prompt == "" {
		return usagef("--prompt is empty: give some text to continue")
	}
	m, d, release, err := df.open()
	if err != nil {
		return err
	}
	defer release()
	ids := m.EncodePrompt(*prompt)
	if len(ids) > m.Context() {
		return fmt.Errorf("prompt is %d tokens, longer than the model's context of %d tokens", len(ids), m.Context())
	}
	// The weights are loaded; the KV cache of prompt+max-tokens positions
	// (at most the context) must still fit, for the draft too.
	kv := min(len(ids)+min(df.maxTokens, m.Context()), m.Context())
	var draftCfg *config.Config
	if d != nil {
		draftCfg = d.Cfg
	}
	if err := memest.Check(memest.Inference(m.Cfg, draftCfg, 0, kv, 1, 0), "generate", fmt.Sprintf("lower --max-tokens (%d)", df.maxTokens)); err != nil {
		return err
	}
	// Special tokens print as their strings, as llama.cpp's llama-simple prints them.
	opts := infer.GenerateOptions{MaxTokens: df.maxTokens, Stop: stops, IgnoreEOT: ignoreEOS, Sampling: df.sampling,
		Draft: d, Drafter: drafterFor(df.draft), DraftTokens: df.draftTokens, FixedDraftTokens: *fixedK, KeepSpecial: true}
	w := bufio.NewWriter(stdout)
	if !*asJSON {
		opts.Text = func(s string) error {
			if _, err := w.WriteString(s); err != nil {
				return err
			}
			return w.Flush()
		}
	}
	res, err := m.Generate(ctx, ids, opts, nil)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(w)
			w.Flush()
		}
		return err
	}
	if *asJSON {
		out := map[string]any{
			"text":              res.Text,
			"tokens":            len(res.Tokens),
			"prompt_tokens":     res.PromptTokens,
			"seconds":           res.Seconds,
			"prefill_seconds":   res.PrefillSeconds,
			"decode_seconds":    res.DecodeSeconds,
			"decode_tokens":     len(res.Tokens) - res.PrefillTokens,
			"tokens_per_second": res.TokensPerSecond(),
			"stop_reason":       res.StopReason,
		}
		if df.draft != "" {
			out["proposed"] = res.Proposed
			out["accepted"] = res.Accepted
			out["acceptance_rate"] = res.AcceptanceRate()
			out["rounds"] = res.Rounds
			out["draft_tokens_final"] = res.FinalDraftTokens
		}
		enc := json.NewEncoder(stdout)
		return enc.Encode(out)
	}
	fmt.Fprintln(w)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	fmt.Fprintf(stderr, "[%d prompt tokens, %d generated in %.2fs: %.1f tok/s decode, stop: %s", res.PromptTokens, len(res.Tokens), res.Seconds, res.TokensPerSecond(), res.StopReason)
	if df.draft != "" {
		fmt.Fprintf(stderr, "; draft proposed %d, accepted %d (%.0f%%), final K %d", res.Proposed, res.Accepted, 100*res.AcceptanceRate(), res.FinalDraftTokens)
	}
	fmt.Fprintln(stderr, "]")
	return nil
}

// useBF16 switches the given models (nil ones skipped) to bf16 weights.
func useBF16(on bool, models ...*infer.Model) {
	for _, m := range models {
		if m != nil {
			m.UseBF16(on)
		}
	}
}
