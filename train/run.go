package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/data"
	"github.com/moe-llm/moe/internal/atomicfile"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
)

// File names inside a run directory.
const (
	RunFile     = "run.json"      // the options of the run (for --resume)
	MetricsFile = "metrics.jsonl" // one JSON record per step
	LossSVGFile = "loss.svg"      // loss curve
	DataDir     = "data"          // prepared token shards
	ConfigFile  = "config.json"
)

// Options configure a training run (`moe train`). The JSON form is saved
// as RUNDIR/run.json so that --resume can continue with the same settings.
type Options struct {
	// Config is a preset name or a config.json path.
	Config string `json:"config"`
	// Data are source specs, PATH or NAME=PATH[@EPOCHS].
	Data []string `json:"data"`
	// Out is the run directory.
	Out string `json:"-"`
	// Steps is the number of optimizer steps (the cosine schedule's length).
	Steps int `json:"steps"`
	// MaxTime stops the run cleanly (with a checkpoint) after this wall time
	// of this invocation; 0 means no limit.
	MaxTime time.Duration `json:"-"`
	// BatchTokens is the number of tokens per optimizer step; micro-batches
	// of Batch×SeqLen are accumulated up to it (0: one micro-batch).
	BatchTokens int `json:"batch_tokens"`
	// BatchTokensStart and BatchRampTokens ramp the tokens per step up
	// linearly from BatchTokensStart to BatchTokens over the first
	// BatchRampTokens training tokens (see BatchRamp; 0: no ramp).
	BatchTokensStart int   `json:"batch_tokens_start,omitempty"`
	BatchRampTokens  int64 `json:"batch_ramp_tokens,omitempty"`
	// SeqLen is the training context (0: the config's, at most 256).
	SeqLen int `json:"seq_len"`
	// Batch is the number of sequences per micro-batch.
	Batch int `json:"batch"`
	// Seed drives initialisation, the validation split and data order.
	Seed uint64 `json:"seed"`
	// CheckpointEvery saves a checkpoint every so many steps (0: only at the end).
	CheckpointEvery int `json:"checkpoint_every"`
	// KeepCheckpoints is how many checkpoints to keep (default 2).
	KeepCheckpoints int `json:"keep_checkpoints"`
	// Optimizer and schedule.
	LR          float64 `json:"lr"`
	MinLR       float64 `json:"min_lr"`
	Warmup      int     `json:"warmup"`
	WeightDecay float64 `json:"weight_decay"`
	GradClip    float64 `json:"grad_clip"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	// EvalEvery evaluates on the validation split every so many steps (0: only at the end).
	EvalEvery int `json:"eval_every"`
	// EvalTokens bounds the validation tokens per evaluation.
	EvalTokens int `json:"eval_tokens"`
	// ValFraction is the fraction of documents held out for validation.
	ValFraction float64 `json:"val_fraction"`
	// VocabSize is the tokenizer size to train (0: the config's vocab_size).
	VocabSize int `json:"vocab_size"`
	// Tokenizer is another run directory (or tokenizer.json) whose tokenizer to use.
	Tokenizer string `json:"tokenizer,omitempty"`
	// Threads is the number of compute threads (0: all cores). Bit-exact
	// resume needs the same number.
	Threads int `json:"threads"`
	// SamplePrompt and SampleTokens: print a sample at the end of the run
	// (unless it was interrupted).
	SamplePrompt string `json:"sample_prompt,omitempty"`
	SampleTokens int    `json:"sample_tokens"`
	// Resume continues from the last checkpoint in Out.
	Resume bool `json:"-"`
	// ResumeFrom starts this run from the weights of another run's newest
	// checkpoint (its config and, unless Tokenizer is set, its tokenizer)
	// with a fresh optimizer and schedule: continued pre-training, and with
	// a SeqLen above that run's context, context extension.
	ResumeFrom string `json:"resume_from,omitempty"`
	// RopeScaling, with ResumeFrom and a longer SeqLen, sets the extended
	// model's rope_scaling: config.RopeLinear, RopeNTK or RopeYaRN with
	// factor SeqLen / the old context and original_max_position_embeddings
	// the old context. Empty keeps plain RoPE (extrapolation).
	RopeScaling string `json:"rope_scaling,omitempty"`
	// Precision is the arithmetic of the model's matmuls: "float32" (or
	// empty) or "bf16" (inputs rounded to bfloat16, float32 accumulation,
	// master weights and optimizer state; see model.BF16). A resume must
	// use the checkpoint's; Finetune resumes an empty one in it.
	Precision string `json:"precision,omitempty"`
}

// DefaultOptions returns the defaults of `moe train`.
func DefaultOptions() Options {
	return Options{Config: "tiny", Steps: 1000, Batch: 8, Seed: 1, CheckpointEvery: 100, KeepCheckpoints: 2,
		LR: 1e-3, MinLR: 1e-4, Warmup: 50, WeightDecay: 0.1, GradClip: 1, Beta1: 0.9, Beta2: 0.95,
		EvalEvery: 100, EvalTokens: 32768, ValFraction: 0.05, SampleTokens: 0}
}

// ReadRunOptions reads the options saved in a run directory.
func ReadRunOptions(dir string) (Options, error) {
	var o Options
	b, err := os.ReadFile(filepath.Join(dir, RunFile))
	if err != nil {
		return o, fmt.Errorf("train: %w", err)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("train: %s: %w", filepath.Join(dir, RunFile), err)
	}
	o.Out = dir
	return o, nil
}

// Summary is what a run reports when it ends.
type Summary struct {
	Step           int     `json:"step"`
	Steps          int     `json:"steps"`
	Tokens         int64   `json:"tokens"`
	TrainLoss      float64 `json:"train_loss"`
	ValLoss        float64 `json:"val_loss"`
	ValBitsPerByte float64 `json:"val_bits_per_byte"`
	Seconds        float64 `json:"seconds"`
	Checkpoint     string  `json:"checkpoint"`
	// Stopped says why the run ended: "done", "max-time" or "interrupted".
	Stopped string `json:"stopped"`
	Sample  string `json:"sample,omitempty"`
}

// validate checks options for values that make no sense.
func (o *Options) validate() error {
	if _, err := model.ParsePrecision(o.Precision); err != nil {
		return fmt.Errorf("--precision: %w", err)
	}
	switch {
	case o.Out == "":
		return errors.New("no run directory (--out)")
	case len(o.Data) == 0:
		return errors.New("no training data (--data)")
	case o.Steps < 0 || o.Batch <= 0 || o.SeqLen < 0 || o.BatchTokens < 0:
		return fmt.Errorf("steps %d, batch %d, seq-len %d and batch-tokens %d must not be negative (batch > 0)", o.Steps, o.Batch, o.SeqLen, o.BatchTokens)
	case !(o.LR > 0) || o.MinLR < 0 || o.MinLR > o.LR || o.Warmup < 0:
		return fmt.Errorf("learning rate %g must be > 0 with 0 <= min-lr %g <= lr and warmup %d >= 0", o.LR, o.MinLR, o.Warmup)
	case o.WeightDecay < 0 || o.GradClip < 0 || o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1:
		return errors.New("weight decay and grad clip must be >= 0, betas in [0,1)")
	case o.ValFraction <= 0 || o.ValFraction >= 1:
		return fmt.Errorf("val fraction %g must be in (0,1)", o.ValFraction)
	case o.EvalEvery < 0 || o.EvalTokens < 0 || o.CheckpointEvery < 0 || o.Threads < 0 || o.MaxTime < 0:
		return errors.New("eval-every, eval-tokens, checkpoint-every, threads and max-time must not be negative")
	case (o.BatchTokensStart != 0 || o.BatchRampTokens != 0) &&
		(o.BatchTokensStart <= 0 || o.BatchRampTokens <= 0 || o.BatchTokens <= 0 || o.BatchTokensStart > o.BatchTokens):
		return fmt.Errorf("batch ramp: --batch-tokens-start %d and --batch-ramp-tokens %d must both be positive, with --batch-tokens %d set and at least the start",
			o.BatchTokensStart, o.BatchRampTokens, o.BatchTokens)
	}
	return nil
}

// Run trains a model as opts says, writing everything into opts.Out, and
// stops cleanly (with a checkpoint) when ctx is cancelled or MaxTime has
// passed. Progress goes to progress (may be nil), logs to log.
func Run(ctx context.Context, opts Options, progress io.Writer, log *slog.Logger) (*Summary, error) {
	start := time.Now()
	if log == nil {
		log = slog.Default()
	}
	if opts.KeepCheckpoints <= 0 {
		opts.KeepCheckpoints = 2
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	sources := make([]data.Source, len(opts.Data))
	for i, s := range opts.Data {
		src, err := data.ParseSource(s)
		if err != nil {
			return nil, err
		}
		sources[i] = src
	}

	// A checkpoint to resume from.
	ck, err := resumePoint(opts, "run", log)
	if err != nil {
		return nil, err
	}
	if opts.Resume && ck == nil {
		log.Info("no checkpoint to resume from; starting from scratch", "dir", opts.Out)
	}

	// The model config.
	cfgPath := filepath.Join(opts.Out, ConfigFile)
	var cfg *config.Config
	var from *checkpoint.Checkpoint // the run extended (ResumeFrom)
	switch {
	case ck != nil && ck.Header.Config != nil:
		cfg = ck.Header.Config
	case opts.ResumeFrom != "":
		// Also when resuming before this run's first checkpoint: the
		// weights come from the other run again.
		from, cfg, err = extendFrom(&opts, log)
	case opts.Resume && fileExists(cfgPath):
		cfg, err = config.Load(cfgPath)
	default:
		cfg, err = config.Resolve(opts.Config)
	}
	if err != nil {
		return nil, err
	}
	if err := model.Supported(cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", opts.Config, err)
	}
	if err := checkMemory(cfg, opts, "training"); err != nil {
		return nil, fmt.Errorf("config %s: %w", opts.Config, err)
	}

	// The tokenizer.
	tok, err := runTokenizer(ctx, opts, cfg, sources, log)
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("tokenizer has %d tokens but the model's vocab_size is %d", tok.VocabSize(), cfg.VocabSize)
	}
	if ck == nil {
		if err := cfg.Save(cfgPath); err != nil {
			return nil, err
		}
	}
	accum, err := resolveSeqLen(&opts, cfg)
	if err != nil {
		return nil, err
	}
	ramp, err := opts.batchRamp()
	if err != nil {
		return nil, err
	}
	T := opts.SeqLen
	if err := writeJSONAtomic(filepath.Join(opts.Out, RunFile), opts); err != nil {
		return nil, fmt.Errorf("saving run options: %w", err)
	}

	// The data.
	dataDir := filepath.Join(opts.Out, DataDir)
	man, err := data.Prepare(ctx, sources, tok, dataDir, data.PrepareOptions{ValFraction: opts.ValFraction, Seed: opts.Seed, Logger: log, Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("preparing data: %w", err)
	}
	batches, err := openTrainBatches(dataDir, man, opts.Batch, T, opts.Seed)
	if err != nil {
		return nil, err
	}
	defer batches.Close()
	val, err := readValTokens(dataDir, man, opts.EvalTokens+1)
	if err != nil {
		return nil, err
	}
	if len(val) < 2 {
		log.Warn("validation split is empty; no validation loss will be reported")
	}

	// The model and optimizer.
	pool := compute.NewPool(opts.Threads)
	defer pool.Close()
	m, opt, tr, rng, err := newRunTrainer(cfg, opts, pool, batches, accum, log)
	if err != nil {
		return nil, err
	}
	tr.Ramp = ramp
	if cfg.IsMoE() {
		names := make([]string, len(man.Sources))
		for i, sm := range man.Sources {
			names[i] = sourceName(sm.Name, i)
		}
		tr.Roles = NewExpertRoles(names, cfg.NumLayers, cfg.NumExperts)
	}
	if ck != nil {
		if err := restore(ck, m, opt, tr, batches, rng); err != nil {
			return nil, err
		}
		if ck.Header.Threads != 0 && ck.Header.Threads != pool.Threads() {
			log.Warn("resuming with a different thread count: the result will not be bit-identical to an uninterrupted run",
				"checkpoint_threads", ck.Header.Threads, "threads", pool.Threads())
		}
	} else {
		m.Init(opts.Seed)
		if from != nil {
			w := from.Section(checkpoint.SectionWeights)
			if len(w) != len(m.W.Flat) {
				return nil, fmt.Errorf("--resume-from %s: checkpoint holds %d weights, the model needs %d", opts.ResumeFrom, len(w), len(m.W.Flat))
			}
			copy(m.W.Flat, w)
		}
	}
	log.Info("training", "config", opts.Config, "params", len(m.W.Flat), "layers", cfg.NumLayers, "experts", cfg.NumExperts,
		"batch", opts.Batch, "seq_len", T, "accum", accum, "steps", opts.Steps, "threads", pool.Threads(),
		"train_tokens", man.Tokens(data.SplitTrain), "val_tokens", man.Tokens(data.SplitVal))

	bytesOf := TextBytes(tok)
	evaluate := func() (EvalResult, error) {
		if len(val) < 2 {
			return EvalResult{Loss: math.NaN()}, nil
		}
		return Evaluate(ctx, modelAdapter{m, true}, val, opts.Batch, T, opts.EvalTokens, bytesOf)
	}
	sess := &session{opts: opts, cfg: cfg, m: m, opt: opt, tr: tr, batches: batches, rng: rng, threads: pool.Threads(),
		evaluate: evaluate, log: log, progress: progress, start: start}
	sum, err := sess.loop(ctx, ck)
	if err != nil {
		return nil, err
	}
	if sum.Stopped != "interrupted" && opts.SampleTokens > 0 {
		s, err := sample(context.WithoutCancel(ctx), cfg, m, tok, pool, opts.SamplePrompt, opts.SampleTokens, rng.Uint64())
		if err != nil {
			log.Warn("sample failed", "err", err)
		} else {
			sum.Sample = s
		}
	}
	return sum, nil
}

// extendFrom reads the newest checkpoint of opts.ResumeFrom and returns it
// with its config, adapted to opts: a SeqLen above its context raises
// max_position_embeddings to it, with opts.RopeScaling's rope_scaling
// (factor new/old). The run's tokenizer is the old run's unless
// opts.Tokenizer names one.
func extendFrom(opts *Options, log *slog.Logger) (*checkpoint.Checkpoint, *config.Config, error) {
	path, err := checkpoint.Latest(opts.ResumeFrom)
	if err != nil {
		return nil, nil, fmt.Errorf("--resume-from %s: %w", opts.ResumeFrom, err)
	}
	ck, err := checkpoint.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--resume-from: %w", err)
	}
	if ck.Header.Config == nil {
		return nil, nil, fmt.Errorf("--resume-from: checkpoint %s has no config", path)
	}
	cfg := ck.Header.Config.Clone()
	old := cfg.MaxPositionEmbeddings
	if opts.Tokenizer == "" {
		opts.Tokenizer = opts.ResumeFrom
	}
	if opts.SeqLen > old {
		cfg.MaxPositionEmbeddings = opts.SeqLen
		if opts.RopeScaling != "" {
			if cfg.RopeScaling != nil {
				return nil, nil, fmt.Errorf("--rope-scaling: %s already has rope_scaling %q; extending it twice is not supported", opts.ResumeFrom, cfg.RopeScaling.Type)
			}
			cfg.RopeScaling = &config.RopeScaling{Type: opts.RopeScaling, Factor: float64(opts.SeqLen) / float64(old), OriginalMaxPositionEmbeddings: old}
		}
	} else if opts.RopeScaling != "" {
		return nil, nil, fmt.Errorf("--rope-scaling %s needs --seq-len above the context of %s (%d)", opts.RopeScaling, opts.ResumeFrom, old)
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("--resume-from %s: extended config: %w", opts.ResumeFrom, err)
	}
	log.Info("starting from another run", "checkpoint", path, "step", ck.Header.Step, "context", old,
		"new_context", cfg.MaxPositionEmbeddings, "rope_scaling", opts.RopeScaling)
	return ck, cfg, nil
}

// resumePoint returns the checkpoint in opts.Out to resume from: the latest
// one with opts.Resume, nil for a fresh start (no --resume, or nothing saved
// yet). A fresh start must not land on another run's checkpoints (the newer
// steps would win over, and prune, the new run's): that is an error, whose
// message names the job (what: "run", "fine-tune").
func resumePoint(opts Options, what string, log *slog.Logger) (*checkpoint.Checkpoint, error) {
	if opts.Resume {
		// A corrupt newest checkpoint falls back to the previous one.
		ck, skipped, err := checkpoint.ReadResumable(opts.Out)
		for _, e := range skipped {
			log.Warn("newest checkpoint is corrupt; set aside as .corrupt, falling back to the previous one", "err", e)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if ck != nil {
			log.Info("resuming", "checkpoint", ck.Path, "step", ck.Header.Step)
			return ck, nil
		}
	}
	if paths, err := checkpoint.List(opts.Out); err == nil && len(paths) > 0 {
		return nil, fmt.Errorf("run directory %s already holds checkpoints (%s): pass --resume to continue that %s, or choose a new --out", opts.Out, filepath.Base(paths[0]), what)
	}
	return nil, nil
}

// resolveSeqLen sets opts.SeqLen (0: the model's context, at most 256),
// checks it against cfg and returns how many micro-batches of
// opts.Batch×SeqLen tokens one optimizer step accumulates for
// opts.BatchTokens (1 when 0).
func resolveSeqLen(opts *Options, cfg *config.Config) (int, error) {
	T := opts.SeqLen
	if T == 0 {
		T = min(cfg.MaxPositionEmbeddings, 256)
	}
	if T <= 0 || (cfg.MaxPositionEmbeddings > 0 && T > cfg.MaxPositionEmbeddings) {
		return 0, fmt.Errorf("seq-len %d must be in [1, max_position_embeddings %d]", T, cfg.MaxPositionEmbeddings)
	}
	opts.SeqLen = T
	accum := 1
	if opts.BatchTokens > 0 {
		accum = max(1, (opts.BatchTokens+opts.Batch*T-1)/(opts.Batch*T))
	}
	return accum, nil
}

// batchRamp returns the run's batch-size ramp (nil without one), after
// resolveSeqLen; a ramp the run's steps never finish is an error.
func (o *Options) batchRamp() (*BatchRamp, error) {
	if o.BatchRampTokens == 0 {
		return nil, nil
	}
	r := &BatchRamp{Start: o.BatchTokensStart, End: o.BatchTokens, Tokens: o.BatchRampTokens, Micro: o.Batch * o.SeqLen}
	if n := r.RunTokens(o.Steps); n < r.Tokens {
		return nil, fmt.Errorf("--batch-ramp-tokens %d is longer than the run: its %d steps consume only %d tokens, so the batch would never reach --batch-tokens %d (shorten the ramp or add steps)",
			r.Tokens, o.Steps, n, r.End)
	}
	return r, nil
}

// newRunTrainer returns the model of cfg on pool (uninitialised, in
// opts.Precision, with a warning when bf16 matmuls run on the portable
// kernel), the AdamW optimizer (with opts' hyper-parameters), the Trainer
// of the model over data (micro-batches of opts.Batch×opts.SeqLen, accum
// per step, opts' learning-rate schedule) and the run's RNG seeded from
// opts.Seed.
func newRunTrainer(cfg *config.Config, opts Options, pool *compute.Pool, data Batches, accum int, log *slog.Logger) (*model.Model, *AdamW, *Trainer, *rand.PCG, error) {
	m, err := model.New(cfg, pool)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	prec, _ := model.ParsePrecision(opts.Precision) // validated
	m.SetPrecision(prec)
	if prec == model.BF16 && !compute.HasBF16Kernels() {
		log.Warn("--precision bf16: this CPU lacks AVX512_BF16; the matmuls run on the portable Go kernel (same results, much slower than float32)")
	}
	opt := NewAdamW(len(m.W.Flat), pool.Threads())
	opt.Beta1, opt.Beta2, opt.WeightDecay, opt.GradClip = opts.Beta1, opts.Beta2, opts.WeightDecay, opts.GradClip
	tr := &Trainer{Model: modelAdapter{m, false}, Opt: opt, Data: data, B: opts.Batch, T: opts.SeqLen, Accum: accum,
		Schedule: Schedule{LR: opts.LR, MinLR: opts.MinLR, Warmup: opts.Warmup, Total: opts.Steps}}
	return m, opt, tr, rand.NewPCG(opts.Seed, opts.Seed^0x5851f42d4c957f2d), nil
}

// session is a set-up training run: everything the step loop needs.
type session struct {
	opts     Options
	cfg      *config.Config
	m        *model.Model
	opt      *AdamW
	tr       *Trainer
	batches  Batches
	rng      *rand.PCG
	threads  int
	evaluate func() (EvalResult, error)
	log      *slog.Logger
	progress io.Writer
	start    time.Time // when the command started (for MaxTime)
}

// loop runs optimizer steps until opts.Steps, ctx's cancellation or
// MaxTime, logging metrics, evaluating and saving checkpoints; it always
// leaves a checkpoint of the last completed step. ck is the checkpoint the
// session resumed from (nil for a fresh run).
func (s *session) loop(ctx context.Context, ck *checkpoint.Checkpoint) (*Summary, error) {
	opts, tr, log := s.opts, s.tr, s.log
	keep := -1
	if ck != nil {
		keep = ck.Header.Step
	}
	ml, err := OpenMetrics(filepath.Join(opts.Out, MetricsFile), keep)
	if err != nil {
		return nil, err
	}
	defer ml.Close()
	save := func() (string, error) {
		return saveCheckpoint(opts, s.cfg, s.m, s.opt, tr, s.batches, s.rng, s.threads)
	}
	startTokens := tr.Tokens
	sum := &Summary{Steps: opts.Steps, Stopped: "done", ValLoss: math.NaN(), ValBitsPerByte: math.NaN(), TrainLoss: math.NaN()}
	bar := NewProgress(s.progress, opts.Steps)
	startStep, lastSaved := tr.Step, tr.Step
	sessionStart := time.Now()
	for tr.Step < opts.Steps {
		if ctx.Err() != nil {
			sum.Stopped = "interrupted"
			break
		}
		if opts.MaxTime > 0 && time.Since(s.start) >= opts.MaxTime {
			sum.Stopped = "max-time"
			break
		}
		t0 := time.Now()
		before := tr.Tokens
		res, err := tr.TrainStep(ctx)
		if err != nil {
			if ctx.Err() != nil { // interrupted inside the step: its work was discarded
				sum.Stopped = "interrupted"
				break
			}
			return nil, err
		}
		dt := time.Since(t0).Seconds()
		rec := Record{Step: res.Step, Tokens: res.Tokens, TrainLoss: res.Loss, LR: res.LR, AuxLoss: res.AuxLoss, ZLoss: res.ZLoss,
			GradNorm: res.GradNorm, ExpertLoad: res.ExpertLoad, RoutedLoad: res.RoutedLoad, DroppedFrac: res.Dropped,
			BatchTokens: int(res.Tokens - before), TokensPerSecond: float64(res.Tokens-before) / dt, ElapsedSeconds: time.Since(sessionStart).Seconds()}
		sum.TrainLoss = res.Loss
		note := ""
		// The last step (by count or by --max-time) is always evaluated.
		last := tr.Step == opts.Steps || (opts.MaxTime > 0 && time.Since(s.start) >= opts.MaxTime)
		if (opts.EvalEvery > 0 && tr.Step%opts.EvalEvery == 0) || last {
			ev, err := s.evaluate()
			if err != nil {
				return nil, err
			}
			if ev.Tokens > 0 {
				vl, bpb := ev.Loss, ev.BitsPerByte()
				rec.ValLoss, rec.ValBitsPerByte = &vl, &bpb
				sum.ValLoss, sum.ValBitsPerByte = vl, bpb
				note = fmt.Sprintf("val %.4f (%.3f bpb)", vl, bpb)
				log.Debug("eval", "step", tr.Step, "val_loss", vl, "bits_per_byte", bpb)
			}
		}
		if err := ml.Write(rec); err != nil {
			return nil, err
		}
		if opts.CheckpointEvery > 0 && tr.Step%opts.CheckpointEvery == 0 && tr.Step < opts.Steps {
			if _, err := save(); err != nil {
				return nil, err
			}
			lastSaved = tr.Step
			writeLossSVG(opts.Out, log)
		}
		done := tr.Step - startStep
		elapsed := time.Since(sessionStart)
		eta := time.Duration(float64(elapsed) / float64(done) * float64(opts.Steps-tr.Step))
		tps := float64(tr.Tokens-startTokens) / elapsed.Seconds()
		bar.Update(tr.Step, res.Loss, tps, eta, note, note != "" || tr.Step == opts.Steps)
	}
	bar.Done()
	if tr.Step == startStep && sum.Stopped == "done" {
		// No step to take (--steps 0 or already there): evaluate the model
		// as it is, e.g. an extended model before any training.
		ev, err := s.evaluate()
		if err != nil {
			return nil, err
		}
		if ev.Tokens > 0 {
			sum.ValLoss, sum.ValBitsPerByte = ev.Loss, ev.BitsPerByte()
		}
	}
	sum.Step, sum.Tokens = tr.Step, tr.Tokens
	sum.Checkpoint = filepath.Join(opts.Out, checkpoint.FileName(tr.Step))
	if tr.Step != lastSaved || !fileExists(sum.Checkpoint) {
		if sum.Checkpoint, err = save(); err != nil {
			return nil, err
		}
	}
	writeLossSVG(opts.Out, log)
	sum.Seconds = time.Since(s.start).Seconds()
	return sum, nil
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeJSONAtomic writes v as indented JSON to path atomically.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// writeLossSVG redraws RUNDIR/loss.svg from metrics.jsonl.
func writeLossSVG(dir string, log *slog.Logger) {
	recs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		log.Warn("loss curve", "err", err)
		return
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, LossSVGFile), LossSVG(recs, "moe train: "+filepath.Base(dir)), 0o644); err != nil {
		log.Warn("loss curve", "err", err)
	}
}

// runTokenizer returns the run's tokenizer: RUNDIR's, another run's
// (opts.Tokenizer), or one trained on the sources; it is saved into RUNDIR.
func runTokenizer(ctx context.Context, opts Options, cfg *config.Config, sources []data.Source, log *slog.Logger) (*tokenizer.Tokenizer, error) {
	path := filepath.Join(opts.Out, tokenizer.FileName)
	var want *tokenizer.Tokenizer // the --tokenizer one
	if opts.Tokenizer != "" {
		src := opts.Tokenizer
		if st, err := os.Stat(src); err == nil && st.IsDir() {
			src = filepath.Join(src, tokenizer.FileName)
		}
		tok, err := tokenizer.Load(src)
		if err != nil {
			return nil, fmt.Errorf("--tokenizer: %w", err)
		}
		want = tok
	}
	if fileExists(path) {
		tok, err := tokenizer.Load(path)
		if err != nil {
			return nil, err
		}
		if want != nil && data.TokenizerFingerprint(want) != data.TokenizerFingerprint(tok) {
			return nil, fmt.Errorf("--tokenizer %s differs from the tokenizer already in %s: choose a new --out", opts.Tokenizer, opts.Out)
		}
		return tok, nil
	}
	if want != nil {
		return want, want.Save(path)
	}
	vs := opts.VocabSize
	if vs == 0 {
		vs = cfg.VocabSize
	}
	if vs > cfg.VocabSize {
		return nil, fmt.Errorf("--vocab-size %d exceeds the model's vocab_size %d", vs, cfg.VocabSize)
	}
	log.Info("training tokenizer", "vocab_size", vs)
	t0 := time.Now()
	tok, err := data.TrainTokenizer(ctx, sources, vs, 0)
	if err != nil {
		return nil, err
	}
	log.Info("tokenizer trained", "vocab_size", tok.VocabSize(), "seconds", time.Since(t0).Seconds())
	return tok, tok.Save(path)
}

// TextBytes returns a function giving the number of text bytes a token
// stands for (0 for special tokens such as end-of-text), for bits per byte.
func TextBytes(tok *tokenizer.Tokenizer) func(int32) int {
	return func(id int32) int {
		if tok.IsSpecial(id) {
			return 0
		}
		return len(tok.TokenBytes(id))
	}
}
