package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"time"

	moedata "github.com/moe-llm/moe/data"
	"github.com/moe-llm/moe/train"
)

// sourceList is the repeatable --data flag.
type sourceList []string

func (s *sourceList) String() string { return fmt.Sprint([]string(*s)) }
func (s *sourceList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// trainFlags binds the `moe train` flags to o, whose current values are the defaults.
func trainFlags(o *train.Options, data *sourceList, jsonOut *bool, quiet *bool, stderr io.Writer) *flag.FlagSet {
	fs := newFlagSet("train", "--config CONFIG --data SOURCE... --out RUNDIR [flags]", stderr)
	fs.StringVar(&o.Config, "config", o.Config, "model config: a preset name (tiny, tiny-draft, ...) or a config.json path")
	fs.Var(data, "data", "training data SOURCE: PATH or NAME=PATH[@EPOCHS] (a text file, a directory or a .jsonl file); repeatable, and further positional arguments are sources too")
	fs.StringVar(&o.Out, "out", o.Out, "run directory (config, tokenizer, data shards, checkpoints, metrics)")
	fs.IntVar(&o.Steps, "steps", o.Steps, "optimizer steps (the length of the cosine schedule)")
	fs.DurationVar(&o.MaxTime, "max-time", o.MaxTime, "stop cleanly with a checkpoint after this wall time (e.g. 5m); 0 = no limit")
	fs.IntVar(&o.BatchTokens, "batch-tokens", o.BatchTokens, "tokens per optimizer step; micro-batches of batch×seq-len are accumulated up to it (0 = one micro-batch)")
	fs.IntVar(&o.BatchTokensStart, "batch-tokens-start", o.BatchTokensStart, "ramp the tokens per step up linearly from this to --batch-tokens over --batch-ramp-tokens training tokens (whole micro-batches, rounded up)")
	fs.Int64Var(&o.BatchRampTokens, "batch-ramp-tokens", o.BatchRampTokens, "length of the batch-size ramp in training tokens (with --batch-tokens-start; must end within the run)")
	fs.IntVar(&o.SeqLen, "seq-len", o.SeqLen, "training sequence length (0 = the config's context, at most 256)")
	fs.IntVar(&o.Batch, "batch", o.Batch, "sequences per micro-batch")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "random seed (initialisation, validation split, data order)")
	fs.IntVar(&o.CheckpointEvery, "checkpoint-every", o.CheckpointEvery, "save a checkpoint every N steps (0 = only at the end)")
	fs.IntVar(&o.KeepCheckpoints, "keep-checkpoints", o.KeepCheckpoints, "number of newest checkpoints to keep")
	fs.BoolVar(&o.Resume, "resume", o.Resume, "continue from RUNDIR's last checkpoint with the run's saved settings")
	fs.StringVar(&o.ResumeFrom, "resume-from", o.ResumeFrom, "start from the weights (config, tokenizer) of another run's newest checkpoint, with a fresh optimizer; a --seq-len above its context extends the context")
	fs.StringVar(&o.RopeScaling, "rope-scaling", o.RopeScaling, "with --resume-from and a longer --seq-len: linear, ntk or yarn RoPE scaling by new/old context (empty: plain RoPE)")
	fs.Float64Var(&o.LR, "lr", o.LR, "peak learning rate")
	fs.Float64Var(&o.MinLR, "min-lr", o.MinLR, "learning rate at the end of the cosine decay")
	fs.IntVar(&o.Warmup, "warmup", o.Warmup, "linear warmup steps")
	fs.Float64Var(&o.WeightDecay, "weight-decay", o.WeightDecay, "AdamW decoupled weight decay (not applied to norm gains)")
	fs.Float64Var(&o.GradClip, "grad-clip", o.GradClip, "clip the global gradient norm to this (0 = off)")
	fs.Float64Var(&o.Beta1, "beta1", o.Beta1, "AdamW beta1")
	fs.Float64Var(&o.Beta2, "beta2", o.Beta2, "AdamW beta2")
	fs.IntVar(&o.EvalEvery, "eval-every", o.EvalEvery, "evaluate on the validation split every N steps (0 = only at the end)")
	fs.IntVar(&o.EvalTokens, "eval-tokens", o.EvalTokens, "validation tokens per evaluation")
	fs.Float64Var(&o.ValFraction, "val-fraction", o.ValFraction, "fraction of documents held out for validation")
	fs.IntVar(&o.VocabSize, "vocab-size", o.VocabSize, "size of the BPE tokenizer to train (0 = the config's vocab_size)")
	fs.StringVar(&o.Tokenizer, "tokenizer", o.Tokenizer, "use another run's tokenizer (its RUNDIR or tokenizer.json) instead of training one")
	fs.IntVar(&o.Threads, "threads", o.Threads, "compute threads (0 = all cores); resume bit-exactly needs the same")
	fs.StringVar(&o.Precision, "precision", o.Precision, "matmul arithmetic: float32, or bf16 (bf16 inputs on AVX-512 BF16 dot products, float32 accumulation, master weights and AdamW state); saved with the run")
	fs.StringVar(&o.SamplePrompt, "sample-prompt", o.SamplePrompt, "prompt of the sample printed at the end")
	fs.IntVar(&o.SampleTokens, "sample-tokens", o.SampleTokens, "tokens of the sample printed at the end (0 = none)")
	outputFlags(fs, jsonOut, quiet)
	return fs
}

// runTrain implements `moe train`.
func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// First pass: find --out and --resume, so that a resumed run's saved
	// settings become the defaults that explicit flags override.
	o := train.DefaultOptions()
	var data sourceList
	var jsonOut, quiet bool
	pre := trainFlags(&o, &data, &jsonOut, &quiet, io.Discard)
	if _, err := parseFlags(pre, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			trainFlags(&o, &data, &jsonOut, &quiet, stderr).Usage()
		}
		return err
	}
	base := train.DefaultOptions()
	nothingSaved := false
	if o.Resume && o.Out != "" {
		saved, err := train.ReadRunOptions(o.Out)
		switch {
		case err == nil:
			base = saved
		case errors.Is(err, os.ErrNotExist):
			// Nothing saved yet: the flags must describe the run.
			nothingSaved = true
		default:
			return err
		}
	}
	o = base
	data = nil
	fs := trainFlags(&o, &data, &jsonOut, &quiet, stderr)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	data = append(data, pos...)
	if len(data) > 0 {
		o.Data = data
	}
	switch {
	case o.Out == "":
		return usagef("--out RUNDIR is required")
	case len(o.Data) == 0 && nothingSaved:
		return usagef("--resume: nothing to resume in %s (no %s); give --data SOURCE to start a new run there", o.Out, train.RunFile)
	case len(o.Data) == 0:
		return usagef("--data SOURCE is required")
	case o.Batch <= 0 || o.Steps < 0 || o.SeqLen < 0 || o.BatchTokens < 0 || o.MaxTime < 0:
		return usagef("--batch must be positive and --steps, --seq-len, --batch-tokens, --max-time not negative")
	}
	// Check every source before the first log line, so that a missing or
	// malformed one fails with exactly one line on stderr.
	for _, spec := range o.Data {
		src, err := moedata.ParseSource(spec)
		if err != nil {
			return err
		}
		if _, err := os.Stat(src.Path); err != nil {
			return fmt.Errorf("data source %q: %w", spec, err)
		}
	}
	return runAndReport(ctx, o, train.Run, jsonOut, quiet, stdout, stderr, func(sum *train.Summary) string {
		text := fmt.Sprintf("%s at step %d/%d (%d tokens, %s): %s, %s\ncheckpoint: %s\n",
			sum.Stopped, sum.Step, sum.Steps, sum.Tokens, time.Duration(sum.Seconds*float64(time.Second)).Round(time.Second),
			lossText("train loss", sum.TrainLoss, "no step yet"), valText(sum, true), sum.Checkpoint)
		if sum.Sample != "" {
			text += fmt.Sprintf("sample:\n%s\n", sum.Sample)
		}
		return text
	})
}

// outputFlags binds the --json and --quiet flags of `moe train` and `moe
// finetune`; the current values are the defaults.
func outputFlags(fs *flag.FlagSet, jsonOut, quiet *bool) {
	fs.BoolVar(jsonOut, "json", *jsonOut, "print the summary as one JSON object")
	fs.BoolVar(quiet, "quiet", *quiet, "no progress line and info logs")
}

// runAndReport runs a training job (train.Run or train.Finetune) with a
// text logger and a progress line on stderr (--quiet: warnings only, no
// progress line), then prints its summary to stdout: one JSON object (NaN
// losses as -1) with --json, otherwise what text returns.
func runAndReport(ctx context.Context, o train.Options,
	run func(context.Context, train.Options, io.Writer, *slog.Logger) (*train.Summary, error),
	jsonOut, quiet bool, stdout, stderr io.Writer, text func(*train.Summary) string) error {
	level := slog.LevelInfo
	progress := stderr
	if quiet {
		level, progress = slog.LevelWarn, nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	sum, err := run(ctx, o, progress, log)
	if err != nil {
		return err
	}
	if jsonOut {
		return printJSON(stdout, jsonSafe(sum))
	}
	fmt.Fprint(stdout, text(sum))
	return nil
}

// printJSON prints v to w as one line of JSON (the --json output of train,
// finetune, eval and bench train).
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	fmt.Fprintln(w, string(b))
	return nil
}

// lossText formats "name X" with four decimals, or returns none when v is
// NaN.
func lossText(name string, v float64, none string) string {
	if math.IsNaN(v) {
		return none
	}
	return fmt.Sprintf("%s %.4f", name, v)
}

// valText formats the validation part of a summary line: "val loss X" (and
// ", val bits/byte Y" with bpb), or "no evaluation yet" when the run
// stopped (e.g. on Ctrl-C) before its first evaluation.
func valText(sum *train.Summary, bpb bool) string {
	if math.IsNaN(sum.ValLoss) {
		return "no evaluation yet"
	}
	if bpb {
		return fmt.Sprintf("val loss %.4f, %s", sum.ValLoss, lossText("val bits/byte", sum.ValBitsPerByte, "val bits/byte n/a"))
	}
	return fmt.Sprintf("val loss %.4f", sum.ValLoss)
}

// jsonSafe replaces the NaN losses of a summary (no evaluation yet) by -1.
func jsonSafe(s *train.Summary) *train.Summary {
	c := *s
	for _, p := range []*float64{&c.TrainLoss, &c.ValLoss, &c.ValBitsPerByte} {
		if *p != *p {
			*p = -1
		}
	}
	return &c
}
