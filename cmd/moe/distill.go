package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/moe-llm/moe/train"
)

// runDistill implements `moe distill`: train a draft model for speculative
// decoding on a target's own next-token distributions (train.Distill).
func runDistill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := train.DistillOptions{Steps: 1000, Batch: 8, LR: 1e-3, Warmup: 20, Seed: 1}
	var jsonOut, quiet bool
	fs := newFlagSet("distill", "--target MODEL (--config PRESET | --draft RUNDIR) --data TEXT --out RUNDIR [flags]", stderr)
	fs.StringVar(&o.Target, "target", "", "the model to draft for: a run directory, checkpoint or .gguf file")
	fs.StringVar(&o.Config, "config", "", "draft architecture (preset or config path), random start; its vocabulary is the target's")
	fs.StringVar(&o.Draft, "draft", "", "instead of --config: a draft run directory to continue from")
	fs.StringVar(&o.Data, "data", "", "UTF-8 text file (the last 5% is held out for the acceptance measurement)")
	fs.StringVar(&o.Out, "out", "", "run directory for the distilled draft")
	fs.IntVar(&o.Steps, "steps", o.Steps, "optimizer steps")
	fs.DurationVar(&o.MaxTime, "max-time", 0, "stop after this wall time (0 = no limit)")
	fs.IntVar(&o.Batch, "batch", o.Batch, "sequences per step")
	fs.IntVar(&o.SeqLen, "seq-len", 0, "tokens per sequence (0 = 128, at most both contexts)")
	fs.Float64Var(&o.LR, "lr", o.LR, "peak learning rate (cosine decay to a tenth)")
	fs.IntVar(&o.Warmup, "warmup", o.Warmup, "warmup steps")
	fs.IntVar(&o.Generate, "generate", 0, "train on the target's own sampled continuations of this many tokens after corpus prompts (0 = corpus windows)")
	fs.BoolVar(&o.GenerateGreedy, "generate-greedy", false, "with --generate: the target's greedy continuations instead of samples (drafts for greedy decoding)")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the draft's initialisation, the data order and sampling")
	fs.IntVar(&o.Threads, "threads", 0, "compute threads (0 = all cores)")
	fs.IntVar(&o.EvalPrompts, "eval-prompts", 8, "held-out prompts for the acceptance measurement")
	fs.IntVar(&o.EvalTokens, "eval-tokens", 64, "tokens generated per acceptance prompt")
	outputFlags(fs, &jsonOut, &quiet)
	if err := parseFlagsNoArgs(fs, args, ""); err != nil {
		return err
	}
	switch {
	case o.Target == "":
		return usagef("--target MODEL is required")
	case (o.Config == "") == (o.Draft == ""):
		return usagef("give exactly one of --config and --draft")
	case o.Data == "":
		return usagef("--data TEXT is required")
	case o.Out == "":
		return usagef("--out RUNDIR is required")
	case o.Steps < 1 || o.Batch < 1 || o.SeqLen < 0 || o.Generate < 0 || o.MaxTime < 0 || o.EvalPrompts < 1 || o.EvalTokens < 1:
		return usagef("--steps, --batch, --eval-prompts and --eval-tokens must be positive; --seq-len, --generate and --max-time not negative")
	case !(o.LR > 0):
		return usagef("--lr must be positive, got %v", o.LR)
	}
	level, progress := slog.LevelInfo, stderr
	if quiet {
		level, progress = slog.LevelWarn, nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	sum, err := train.Distill(ctx, o, progress, log)
	if err != nil {
		return err
	}
	if jsonOut {
		return printJSON(stdout, sum)
	}
	fmt.Fprintf(stdout, "distilled %d steps (%s): KL %.4f → %.4f; greedy acceptance (K = 4, held-out prompts) %.1f%% → %.1f%%\ncheckpoint: %s\n",
		sum.Steps, time.Duration(sum.Seconds*float64(time.Second)).Round(time.Second), sum.KLFirst, sum.KL,
		100*sum.AcceptBefore, 100*sum.AcceptAfter, sum.Checkpoint)
	return nil
}
