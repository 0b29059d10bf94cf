package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
)

// benchText is the default prompt text of `moe bench generate` (Genesis 1,
// King James Version, public domain), repeated to the requested length.
const benchText = "In the beginning God created the heaven and the earth. And the earth was without form, and void; " +
	"and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. " +
	"And God said, Let there be light: and there was light. And God saw the light, that it was good: " +
	"and God divided the light from the darkness. And God called the light Day, and the darkness he called Night. " +
	"And the evening and the morning were the first day. "

// runBenchGenerate implements `moe bench generate`: prefill and decode speed
// of a model, and with --draft the speculative decode speed beside plain
// decoding of the same prompt (greedy, so the texts must be identical).
func runBenchGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench generate", "--model MODEL [--draft MODEL] [--prompt-tokens N] [--gen-tokens N] [--threads T] --json", stderr)
	modelPath := fs.String("model", "", "model: a run directory or a .gguf file")
	cfgName := fs.String("config", "", "instead of --model: a config path or preset, with random weights")
	draftPath := fs.String("draft", "", "draft model for speculative decoding")
	draftCfg := fs.String("draft-config", "", "instead of --draft: a config path or preset, with random weights")
	promptTokens := fs.Int("prompt-tokens", 128, "prompt length in tokens")
	genTokens := fs.Int("gen-tokens", 128, "tokens to generate")
	draftTokens := fs.Int("draft-tokens", 4, "initial draft tokens per step (adapted)")
	fixedK := fs.Bool("fixed-draft-tokens", false, "do not adapt --draft-tokens")
	prompt := fs.String("prompt", "", "prompt text (default: a built-in passage), cut or repeated to --prompt-tokens")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	temp := fs.Float64("temperature", 0, "sampling temperature (0 = greedy; then the speculative text must equal the plain one)")
	seed := fs.Uint64("seed", 0, "sampling seed")
	runs := fs.Int("runs", 3, "decode runs (alternating plain and speculative); the best of each counts")
	bf16 := fs.Bool("bf16", false, "compute with bfloat16 copies of the weights (half the memory traffic, rounded weights)")
	fs.Bool("json", true, "print one JSON object (always on)")
	if err := parseFlagsNoArgs(fs, args, ""); err != nil {
		return err
	}
	if (*modelPath == "") == (*cfgName == "") {
		return usagef("give exactly one of --model or --config")
	}
	if *promptTokens < 1 || *genTokens < 1 || *draftTokens < 1 || *runs < 1 {
		return usagef("--prompt-tokens, --gen-tokens, --draft-tokens and --runs must be at least 1")
	}
	modelName, draftName := *modelPath+*cfgName, *draftPath+*draftCfg
	pool := compute.NewPool(*threads)
	defer pool.Close()
	var m, d *infer.Model
	var err error
	if *modelPath != "" {
		if m, d, err = loadModels(*modelPath, *draftPath, pool); err != nil {
			return err
		}
	} else {
		cfg, err := config.Resolve(*cfgName)
		if err != nil {
			return err
		}
		if m, err = infer.RandomModel(cfg, 1, pool); err != nil {
			return err
		}
		if *draftPath != "" {
			return usagef("--draft needs --model; use --draft-config with --config")
		}
	}
	defer closeModels(m, d)
	if *draftCfg != "" {
		if d != nil {
			return usagef("give at most one of --draft and --draft-config")
		}
		cfg, err := config.Resolve(*draftCfg)
		if err != nil {
			return err
		}
		if d, err = infer.RandomModel(cfg, 2, pool); err != nil {
			return err
		}
		if err := infer.CheckDraft(m, d); err != nil {
			return err
		}
	}
	useBF16(*bf16, m, d)
	if *promptTokens+*genTokens > m.Context() {
		return usagef("--prompt-tokens + --gen-tokens = %d exceeds the model's context of %d", *promptTokens+*genTokens, m.Context())
	}
	ids := benchPrompt(m, *prompt, *promptTokens)

	// Warm up: touch the weights (first use of fresh memory is slow).
	warm := m.NewSeq(0)
	if _, err := m.Forward([]*infer.Seq{warm}, [][]int32{ids}, false); err != nil {
		return err
	}
	if d != nil {
		if _, err := d.Forward([]*infer.Seq{d.NewSeq(0)}, [][]int32{ids}, false); err != nil {
			return err
		}
	}
	// Prefill: best of two.
	prefill := 0.0
	var seq *infer.Seq
	for i := 0; i < 2; i++ {
		seq = m.NewSeq(0)
		t := time.Now()
		if _, err := m.Forward([]*infer.Seq{seq}, [][]int32{ids}, false); err != nil {
			return err
		}
		if s := time.Since(t).Seconds(); prefill == 0 || s < prefill {
			prefill = s
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Decode: greedy, the prompt already in the cache (each run rolls the
	// caches back to it). With a draft, plain and speculative runs
	// alternate so that both see the same machine load; the best run of
	// each counts.
	var dseq *infer.Seq
	if d != nil {
		dseq = d.NewSeq(0)
		if _, err := d.Forward([]*infer.Seq{dseq}, [][]int32{ids}, false); err != nil {
			return err
		}
	}
	so := infer.SampleOptions{Temperature: *temp, Seed: *seed}
	if err := so.Validate(); err != nil {
		return usagef("%v", err)
	}
	var plain, spec infer.Result
	plainTPS, specTPS := 0.0, 0.0
	for r := 0; r < *runs; r++ {
		seq.Truncate(len(ids))
		res, err := m.Generate(ctx, ids, infer.GenerateOptions{MaxTokens: *genTokens, IgnoreEOT: true, Seq: seq, Sampling: so}, nil)
		if err != nil {
			return err
		}
		if tps := float64(len(res.Tokens)) / res.Seconds; tps > plainTPS {
			plain, plainTPS = res, tps
		}
		if d == nil {
			continue
		}
		seq.Truncate(len(ids))
		dseq.Truncate(len(ids))
		res, err = m.Generate(ctx, ids, infer.GenerateOptions{MaxTokens: *genTokens, IgnoreEOT: true, Seq: seq, Sampling: so,
			Draft: d, DraftSeq: dseq, DraftTokens: *draftTokens, FixedDraftTokens: *fixedK}, nil)
		if err != nil {
			return err
		}
		if *temp == 0 && !slices.Equal(res.Tokens, plain.Tokens) {
			spec, specTPS = res, -1 // a mismatch is reported whatever the speed
			break
		}
		if tps := float64(len(res.Tokens)) / res.Seconds; tps > specTPS {
			spec, specTPS = res, tps
		}
	}
	out := map[string]any{
		"prefill_tokens_per_second": float64(len(ids)) / prefill,
		"decode_tokens_per_second":  plainTPS,
		"prompt_tokens":             len(ids),
		"gen_tokens":                len(plain.Tokens),
		"threads":                   pool.Threads(),
		"model":                     modelName,
		"total_params":              m.NumParams(),
		"bf16":                      *bf16,
		"runs":                      *runs,
		"temperature":               *temp,
	}
	if d != nil {
		// Draft alone, for its cost per token.
		dseq.Truncate(len(ids))
		dgen, err := d.Generate(ctx, ids, infer.GenerateOptions{MaxTokens: *genTokens, IgnoreEOT: true, Seq: dseq}, nil)
		if err != nil {
			return err
		}
		out["decode_tokens_per_second"] = specTPS
		out["plain_decode_tokens_per_second"] = plainTPS
		out["draft_decode_tokens_per_second"] = float64(len(dgen.Tokens)) / dgen.Seconds
		out["speedup"] = specTPS / plainTPS
		out["proposed"] = spec.Proposed
		out["accepted"] = spec.Accepted
		out["acceptance_rate"] = spec.AcceptanceRate()
		out["rounds"] = spec.Rounds
		out["draft_tokens_final"] = spec.FinalDraftTokens
		if *temp == 0 {
			out["identical"] = slices.Equal(spec.Tokens, plain.Tokens)
		}
		out["verify_experts_touched_per_round"] = 0.0
		if spec.Rounds > 0 {
			out["verify_experts_touched_per_round"] = float64(spec.TargetTouched) / float64(spec.Rounds)
		}
		out["draft"] = draftName
		out["spec_seconds"] = spec.Seconds
		out["spec_draft_seconds"] = spec.DraftSeconds
		out["spec_verify_seconds"] = spec.VerifySeconds
		out["plain_seconds"] = plain.Seconds
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// benchPrompt returns n prompt tokens: the text (or the built-in passage)
// encoded and repeated, or random ids for a model without a tokenizer.
func benchPrompt(m *infer.Model, text string, n int) []int32 {
	if m.Tok == nil {
		r := rand.New(rand.NewPCG(7, 7))
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(r.IntN(m.Cfg.VocabSize))
		}
		return ids
	}
	if text == "" {
		text = benchText
	}
	base := m.Tok.Encode([]byte(text))
	if len(base) == 0 {
		base = []int32{m.Tok.EOT()}
	}
	ids := make([]int32, 0, n)
	for len(ids) < n {
		ids = append(ids, base[:min(len(base), n-len(ids))]...)
	}
	return ids
}
