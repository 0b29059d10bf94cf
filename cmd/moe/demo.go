package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/moe-llm/moe/train"
)

// demoCorpus is the built-in public-domain corpus of the demo, relative to
// the repository root (see examples/data/README.md).
const demoCorpus = "examples/data/kjv-genesis-exodus.txt"

// runDemo implements `moe demo`: the end-to-end run of the README on the
// built-in corpus — train a BPE tokenizer and the tiny MoE for a couple of
// minutes, evaluate on held-out text and print a sample. It is `moe train`
// with settings chosen for a short run; a second call continues the run.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := train.DefaultOptions()
	o.Data = []string{demoCorpus}
	o.Out = filepath.Join("runs", "demo")
	o.Steps, o.Batch, o.LR, o.MinLR, o.Warmup = 400, 4, 3e-3, 3e-4, 20
	o.EvalEvery, o.EvalTokens, o.CheckpointEvery = 50, 16384, 50
	o.MaxTime = 3 * time.Minute
	o.SamplePrompt, o.SampleTokens = "And God said", 60
	data := o.Data[0]
	fs := newFlagSet("demo", "[--out RUNDIR] [--max-time D] [--data PATH] [--threads T]", stderr)
	fs.StringVar(&o.Out, "out", o.Out, "run directory (continued when it already holds this demo's run)")
	fs.DurationVar(&o.MaxTime, "max-time", o.MaxTime, "wall-time budget of this invocation")
	fs.StringVar(&data, "data", data, "training text (the built-in corpus by default)")
	fs.IntVar(&o.Threads, "threads", o.Threads, "compute threads (0 = all cores)")
	fs.StringVar(&o.SamplePrompt, "prompt", o.SamplePrompt, "prompt of the sample printed at the end")
	if err := parseFlagsNoArgs(fs, args, ""); err != nil {
		return err
	}
	o.Data = []string{data}
	if _, err := os.Stat(data); err != nil {
		return fmt.Errorf("demo corpus: %w (run moe demo from the repository root, or give --data)", err)
	}
	if _, err := os.Stat(filepath.Join(o.Out, train.RunFile)); err == nil {
		o.Resume = true
	}
	fmt.Fprintf(stdout, "moe demo: training the tiny MoE (8 experts, top-2) on %s for up to %s into %s\n", data, o.MaxTime, o.Out)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sum, err := train.Run(ctx, o, stderr, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s at step %d/%d after %s: %d tokens, train loss %.3f, held-out loss %.3f (%.3f bits per byte)\n",
		sum.Stopped, sum.Step, sum.Steps, time.Duration(sum.Seconds*float64(time.Second)).Round(time.Second),
		sum.Tokens, sum.TrainLoss, sum.ValLoss, sum.ValBitsPerByte)
	if sum.Sample != "" {
		fmt.Fprintf(stdout, "sample:\n%s\n", sum.Sample)
	}
	fmt.Fprintf(stdout, "next: moe generate --model %s --prompt %q   (also: moe chat, moe serve, moe eval, moe export)\n", o.Out, "In the beginning")
	return nil
}
