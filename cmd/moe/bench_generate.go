package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
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
// of a model, and with --draft (a model or ngram, repeatable) the
// speculative decode speed of each draft beside plain decoding of the same
// prompt.
func runBenchGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseBenchGenerate(args, stderr)
	if err != nil {
		return err
	}
	pool := compute.NewPool(o.threads)
	defer pool.Close()
	m, drafts, err := benchModels(o.modelPath, o.cfgName, o.draftPaths, o.draftCfg, o.place, pool)
	if err != nil {
		return err
	}
	defer func() {
		for _, d := range drafts {
			d.m.Close()
		}
		m.Close()
	}()
	for _, d := range drafts {
		useBF16(o.bf16, d.m)
	}
	useBF16(o.bf16, m)
	if o.promptTokens+o.genTokens > m.Context() {
		return usagef("--prompt-tokens + --gen-tokens = %d exceeds the model's context of %d", o.promptTokens+o.genTokens, m.Context())
	}
	ids := benchPrompt(m, o.prompt, o.promptTokens)
	stopProfile := func() {}
	if o.cpuProfile != "" {
		if stopProfile, err = startCPUProfile(o.cpuProfile); err != nil {
			return err
		}
		defer stopProfile()
	}
	prefill, seq, err := benchPrefill(m, drafts, ids, o.prefillRuns)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	plain, plainTPS, err := benchDecode(ctx, o, m, seq, drafts, ids)
	if err != nil {
		return err
	}
	stopProfile() // the report's bandwidth probe is not part of it
	out, err := benchGenerateReport(ctx, o, pool, m, drafts, ids, prefill, plain, plainTPS)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// benchGenerateOptions are the flags of `moe bench generate`.
type benchGenerateOptions struct {
	modelPath, cfgName      string
	draftPaths              stringList
	draftCfg                string
	place                   gguf.Placement
	promptTokens, genTokens int
	draftTokens             int
	fixedK                  bool
	prompt                  string // the text, --prompt-file read
	threads, runs           int
	prefillRuns             int
	sampling                infer.SampleOptions
	bf16                    bool
	cpuProfile              string
}

// parseBenchGenerate parses and checks the flags of `moe bench generate`
// and reads --prompt-file.
func parseBenchGenerate(args []string, stderr io.Writer) (*benchGenerateOptions, error) {
	var o benchGenerateOptions
	fs := newFlagSet("bench generate", "--model MODEL [--draft MODEL|ngram ...] [--prompt-tokens N] [--gen-tokens N] [--threads T] --json", stderr)
	fs.StringVar(&o.modelPath, "model", "", "model: a run directory, a .gguf file or a Hugging Face directory")
	fs.StringVar(&o.cfgName, "config", "", "instead of --model: a config path or preset, with random weights")
	fs.Var(&o.draftPaths, "draft", "draft for speculative decoding: a model sharing the tokenizer, or ngram for prompt lookup (repeatable: each is measured)")
	fs.StringVar(&o.draftCfg, "draft-config", "", "instead of --draft: a config path or preset, with random weights")
	fs.IntVar(&o.promptTokens, "prompt-tokens", 128, "prompt length in tokens")
	fs.IntVar(&o.genTokens, "gen-tokens", 128, "tokens to generate")
	fs.IntVar(&o.draftTokens, "draft-tokens", 4, "initial draft tokens per step (adapted)")
	fs.BoolVar(&o.fixedK, "fixed-draft-tokens", false, "do not adapt --draft-tokens (and never fall back to plain steps)")
	fs.StringVar(&o.prompt, "prompt", "", "prompt text (default: a built-in passage), cut or repeated to --prompt-tokens")
	promptFile := fs.String("prompt-file", "", "read the prompt text from this file (like --prompt)")
	fs.IntVar(&o.threads, "threads", 0, "worker threads (0 = all cores)")
	fs.Float64Var(&o.sampling.Temperature, "temperature", 0, "sampling temperature (0 = greedy; then the speculative text must equal the plain one)")
	fs.Uint64Var(&o.sampling.Seed, "seed", 0, "sampling seed")
	fs.IntVar(&o.runs, "runs", 3, "decode runs (alternating plain and each draft); the best of each counts")
	fs.IntVar(&o.prefillRuns, "prefill-runs", 2, "timed prefills of the prompt, each into a fresh cache; the best counts")
	fs.BoolVar(&o.bf16, "bf16", false, "compute with bfloat16 copies of the weights (half the memory traffic, rounded weights)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the timed prefill and decode runs to this file")
	fs.Bool("json", true, "print one JSON object (always on)")
	place := addWeightsFlag(fs)
	if err := parseFlagsNoArgs(fs, args, ""); err != nil {
		return nil, err
	}
	o.place = *place
	if (o.modelPath == "") == (o.cfgName == "") {
		return nil, usagef("give exactly one of --model or --config")
	}
	if o.promptTokens < 1 || o.genTokens < 1 || o.draftTokens < 1 || o.runs < 1 || o.prefillRuns < 1 {
		return nil, usagef("--prompt-tokens, --gen-tokens, --draft-tokens, --runs and --prefill-runs must be at least 1")
	}
	if o.prompt != "" && *promptFile != "" {
		return nil, usagef("give at most one of --prompt and --prompt-file")
	}
	if *promptFile != "" {
		b, err := os.ReadFile(*promptFile)
		if err != nil {
			return nil, fmt.Errorf("--prompt-file: %w", err)
		}
		o.prompt = string(b)
	}
	if err := o.sampling.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	return &o, nil
}

// benchDecode runs the decode measurements, the prompt already in the
// caches (each run rolls them back to it). Plain and speculative runs
// alternate so that all see the same machine load; the best run of each
// counts. It returns the best plain run and its tokens per second, and
// leaves each draft's best run in it.
func benchDecode(ctx context.Context, o *benchGenerateOptions, m *infer.Model, seq *infer.Seq, drafts []*benchDraft, ids []int32) (infer.Result, float64, error) {
	var plain infer.Result
	plainTPS := 0.0
	so := o.sampling
	for r := 0; r < o.runs; r++ {
		seq.Truncate(len(ids))
		res, err := m.Generate(ctx, ids, infer.GenerateOptions{MaxTokens: o.genTokens, IgnoreEOT: true, Seq: seq, Sampling: so}, nil)
		if err != nil {
			return plain, 0, err
		}
		if tps := float64(len(res.Tokens)) / res.Seconds; tps > plainTPS {
			plain, plainTPS = res, tps
		}
		for _, d := range drafts {
			if d.tps < 0 {
				continue // its text differed: reported as it is
			}
			seq.Truncate(len(ids))
			opts := infer.GenerateOptions{MaxTokens: o.genTokens, IgnoreEOT: true, Seq: seq, Sampling: so,
				Draft: d.m, DraftSeq: d.seq, Drafter: d.drafter, DraftTokens: o.draftTokens, FixedDraftTokens: o.fixedK}
			if d.seq != nil {
				d.seq.Truncate(len(ids))
			}
			res, err := m.Generate(ctx, ids, opts, nil)
			if err != nil {
				return plain, 0, err
			}
			if so.Temperature == 0 && !slices.Equal(res.Tokens, plain.Tokens) {
				d.res, d.tps = res, -1 // a mismatch is reported whatever the speed
				continue
			}
			if tps := float64(len(res.Tokens)) / res.Seconds; tps > d.tps {
				d.res, d.tps = res, tps
			}
		}
	}
	return plain, plainTPS, nil
}

// benchGenerateReport assembles bench generate's JSON object: prefill and
// plain decode speed, the weight bytes each token reads against the
// measured memory bandwidth, and each draft's speculative figures.
func benchGenerateReport(ctx context.Context, o *benchGenerateOptions, pool *compute.Pool, m *infer.Model, drafts []*benchDraft, ids []int32, prefill float64, plain infer.Result, plainTPS float64) (map[string]any, error) {
	out := map[string]any{
		"prefill_tokens_per_second": float64(len(ids)) / prefill,
		"decode_tokens_per_second":  plainTPS,
		"prompt_tokens":             len(ids),
		"gen_tokens":                len(plain.Tokens),
		"threads":                   pool.Threads(),
		"model":                     o.modelPath + o.cfgName,
		"total_params":              m.NumParams(),
		"bf16":                      o.bf16,
		"runs":                      o.runs,
		"prefill_runs":              o.prefillRuns,
		"temperature":               o.sampling.Temperature,
		"qmatmul_kernels":           compute.QMatMulKernels(),
	}
	// Decode reads the active weights once per token: beside the read
	// bandwidth measured now, that says how close to the memory limit it runs.
	active := m.ActiveWeightBytes()
	out["active_weight_bytes_per_token"] = active
	out["decode_bytes_per_second"] = float64(active) * plainTPS
	if bw := compute.MeasureBandwidth(ctx, pool, 1<<30, 5); bw > 0 {
		out["memory_bandwidth"] = bw
		out["bandwidth_fraction"] = float64(active) * plainTPS / bw
	}
	// Time of one plain decode step: the prompt was cached but for its last
	// token, so the first token came from a one-token pass as well.
	plainStep := plain.Seconds / float64(max(1, len(plain.Tokens)))
	var per []map[string]any
	for _, d := range drafts {
		r, err := d.report(ctx, m, ids, o.genTokens, plain, plainTPS, plainStep, o.sampling.Temperature == 0)
		if err != nil {
			return nil, err
		}
		per = append(per, r)
	}
	if len(per) > 0 {
		// The first draft's figures at the top level (the fields
		// docs/generate.md lists), every draft's under "drafts".
		for k, v := range per[0] {
			out[k] = v
		}
		out["plain_decode_tokens_per_second"] = plainTPS
		out["plain_seconds"] = plain.Seconds
		out["drafts"] = per
	}
	return out, nil
}

// benchDraft is one draft measured by bench generate: a model (m, with
// its sequence) or a model-free drafter.
type benchDraft struct {
	name    string
	m       *infer.Model
	seq     *infer.Seq
	drafter infer.Drafter
	res     infer.Result // best run
	tps     float64      // its tokens per second; -1: text differed
}

// benchModels loads the target (a model or a random-weight config) and
// the drafts: each --draft (a model or ngram) and --draft-config.
func benchModels(modelPath, cfgName string, draftPaths []string, draftCfg string, place gguf.Placement, pool *compute.Pool) (*infer.Model, []*benchDraft, error) {
	var m *infer.Model
	var err error
	if modelPath != "" {
		if m, _, err = loadModels(modelPath, "", place, pool); err != nil {
			return nil, nil, err
		}
	} else {
		cfg, err := config.Resolve(cfgName)
		if err != nil {
			return nil, nil, err
		}
		if m, err = infer.RandomModel(cfg, 1, pool); err != nil {
			return nil, nil, err
		}
	}
	var drafts []*benchDraft
	for _, p := range draftPaths {
		if p == ngramDraft {
			drafts = append(drafts, &benchDraft{name: p, drafter: drafterFor(p)})
			continue
		}
		if modelPath == "" {
			return nil, nil, usagef("--draft MODEL needs --model; use --draft-config with --config")
		}
		d, err := loadDraft(m, modelPath, p, place, pool)
		if err != nil {
			return nil, nil, err
		}
		drafts = append(drafts, &benchDraft{name: p, m: d})
	}
	if draftCfg != "" {
		for _, d := range drafts {
			if d.m != nil {
				return nil, nil, usagef("give at most one of --draft MODEL and --draft-config (--draft ngram goes with either)")
			}
		}
		cfg, err := config.Resolve(draftCfg)
		if err != nil {
			return nil, nil, err
		}
		d, err := infer.RandomModel(cfg, 2, pool)
		if err != nil {
			return nil, nil, err
		}
		if err := infer.CheckDraft(m, d); err != nil {
			return nil, nil, err
		}
		drafts = append(drafts, &benchDraft{name: draftCfg, m: d})
	}
	return m, drafts, nil
}

// benchPrefill warms the models up (first use of fresh memory is slow),
// times the prefill of ids (best of runs) and returns the seconds and the
// target's sequence holding ids; each draft model gets a sequence holding
// them too.
func benchPrefill(m *infer.Model, drafts []*benchDraft, ids []int32, runs int) (float64, *infer.Seq, error) {
	if _, err := m.Forward([]*infer.Seq{m.NewSeq(0)}, [][]int32{ids}, false); err != nil {
		return 0, nil, err
	}
	prefill := 0.0
	var seq *infer.Seq
	for i := 0; i < runs; i++ {
		seq = m.NewSeq(0)
		t := time.Now()
		if _, err := m.Forward([]*infer.Seq{seq}, [][]int32{ids}, false); err != nil {
			return 0, nil, err
		}
		if s := time.Since(t).Seconds(); prefill == 0 || s < prefill {
			prefill = s
		}
	}
	for _, d := range drafts {
		if d.m == nil {
			continue
		}
		d.seq = d.m.NewSeq(0)
		if _, err := d.m.Forward([]*infer.Seq{d.seq}, [][]int32{ids}, false); err != nil {
			return 0, nil, err
		}
	}
	return prefill, seq, nil
}

// report returns d's figures: speed and speedup over plain decoding,
// acceptance, mean accepted length (drafts accepted per verification
// round), the verification pass's cost relative to a plain step, the
// experts it touched, and whether the greedy text was identical.
func (d *benchDraft) report(ctx context.Context, m *infer.Model, ids []int32, gen int, plain infer.Result, plainTPS, plainStep float64, greedy bool) (map[string]any, error) {
	r := d.res
	kind := "model"
	if d.m == nil {
		kind = d.name
	}
	o := map[string]any{
		"draft":                            d.name,
		"draft_kind":                       kind,
		"decode_tokens_per_second":         d.tps,
		"speedup":                          d.tps / plainTPS,
		"proposed":                         r.Proposed,
		"accepted":                         r.Accepted,
		"acceptance_rate":                  r.AcceptanceRate(),
		"rounds":                           r.Rounds,
		"draft_tokens_final":               r.FinalDraftTokens,
		"spec_seconds":                     r.Seconds,
		"spec_draft_seconds":               r.DraftSeconds,
		"spec_verify_seconds":              r.VerifySeconds,
		"mean_accepted_length":             0.0,
		"verify_cost_vs_plain_step":        0.0,
		"verify_experts_touched_per_round": 0.0,
	}
	if greedy {
		o["identical"] = slices.Equal(r.Tokens, plain.Tokens)
	}
	if r.Rounds > 0 {
		o["mean_accepted_length"] = float64(r.Accepted) / float64(r.Rounds)
		o["verify_experts_touched_per_round"] = float64(r.TargetTouched) / float64(r.Rounds)
		if plainStep > 0 {
			o["verify_cost_vs_plain_step"] = r.VerifySeconds / float64(r.Rounds) / plainStep
		}
	}
	if d.m != nil {
		// The draft alone, for its cost per token.
		d.seq.Truncate(len(ids))
		dgen, err := d.m.Generate(ctx, ids, infer.GenerateOptions{MaxTokens: gen, IgnoreEOT: true, Seq: d.seq}, nil)
		if err != nil {
			return nil, err
		}
		o["draft_decode_tokens_per_second"] = float64(len(dgen.Tokens)) / dgen.Seconds
	}
	return o, nil
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
