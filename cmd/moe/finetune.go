package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/moe-llm/moe/train"
)

// runFinetune implements `moe finetune`: instruction fine-tuning on chat
// JSONL with the loss on assistant tokens only.
func runFinetune(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := train.DefaultOptions()
	o.Config, o.Steps, o.LR, o.MinLR, o.Warmup, o.WeightDecay = "", 200, 3e-4, 3e-5, 10, 0
	o.CheckpointEvery, o.EvalEvery = 50, 50
	var data string
	var jsonOut, quiet bool
	fs := newFlagSet("finetune", "--model RUNDIR --data CHAT.jsonl --out RUNDIR2 [flags]", stderr)
	fs.StringVar(&o.Config, "model", "", "base model: a run directory or a checkpoint file")
	fs.StringVar(&data, "data", "", "chat JSONL: one {\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": ...}]} per line")
	fs.StringVar(&o.Out, "out", "", "new run directory")
	fs.IntVar(&o.Steps, "steps", o.Steps, "optimizer steps")
	fs.DurationVar(&o.MaxTime, "max-time", 0, "stop cleanly with a checkpoint after this wall time; 0 = no limit")
	fs.IntVar(&o.SeqLen, "seq-len", 0, "tokens per conversation row (longer ones are cut; 0 = the model's context, at most 256)")
	fs.IntVar(&o.Batch, "batch", o.Batch, "conversations per micro-batch")
	fs.IntVar(&o.BatchTokens, "batch-tokens", 0, "tokens per optimizer step (accumulates micro-batches; 0 = one)")
	fs.Float64Var(&o.LR, "lr", o.LR, "peak learning rate")
	fs.Float64Var(&o.MinLR, "min-lr", o.MinLR, "final learning rate of the cosine decay")
	fs.IntVar(&o.Warmup, "warmup", o.Warmup, "warmup steps")
	fs.Float64Var(&o.WeightDecay, "weight-decay", o.WeightDecay, "AdamW weight decay")
	fs.Float64Var(&o.GradClip, "grad-clip", o.GradClip, "global gradient norm clip (0 = off)")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the data order")
	fs.IntVar(&o.Threads, "threads", 0, "compute threads (0 = all cores)")
	fs.IntVar(&o.CheckpointEvery, "checkpoint-every", o.CheckpointEvery, "checkpoint every N steps (0 = only at the end)")
	fs.IntVar(&o.EvalEvery, "eval-every", o.EvalEvery, "validation loss on held-out conversations every N steps")
	fs.BoolVar(&o.Resume, "resume", false, "continue from RUNDIR2's last checkpoint")
	fs.StringVar(&o.Precision, "precision", "", "matmul arithmetic: float32, or bf16 (bf16 inputs on AVX-512 BF16 dot products, float32 accumulation, master weights and AdamW state); default float32, or with --resume the checkpoint's")
	outputFlags(fs, &jsonOut, &quiet)
	if err := parseFlagsNoArgs(fs, args, "the conversations go in --data CHAT.jsonl"); err != nil {
		return err
	}
	switch {
	case o.Config == "" && !o.Resume:
		return usagef("--model RUNDIR is required")
	case data == "":
		return usagef("--data CHAT.jsonl is required")
	case o.Out == "":
		return usagef("--out RUNDIR2 is required")
	case o.Batch <= 0 || o.Steps < 0 || o.SeqLen < 0 || o.MaxTime < 0:
		return usagef("--batch must be positive; --steps, --seq-len, --max-time not negative")
	}
	o.Data = []string{data}
	return runAndReport(ctx, o, train.Finetune, jsonOut, quiet, stdout, stderr, func(sum *train.Summary) string {
		val := valText(sum, false)
		if !math.IsNaN(sum.ValLoss) {
			val += " (assistant tokens)"
		}
		return fmt.Sprintf("%s at step %d/%d (%s): %s, %s\ncheckpoint: %s\n",
			sum.Stopped, sum.Step, sum.Steps, time.Duration(sum.Seconds*float64(time.Second)).Round(time.Second),
			lossText("train loss", sum.TrainLoss, "no step yet"), val, sum.Checkpoint)
	})
}
