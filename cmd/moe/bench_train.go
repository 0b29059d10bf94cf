package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/plan"
	"github.com/moe-llm/moe/train"
)

// benchTrainResult is what `moe bench train --json` prints.
type benchTrainResult struct {
	TokensPerSecond float64 `json:"tokens_per_second"`
	Batch           int     `json:"batch"`
	SeqLen          int     `json:"seq_len"`
	Threads         int     `json:"threads"`
	Steps           int     `json:"steps"`
	SecondsPerStep  float64 `json:"seconds_per_step"`
	// ForwardBackwardFraction is the share of a step spent outside the
	// optimizer update.
	OptimizerSeconds float64 `json:"optimizer_seconds_per_step"`
	Params           int     `json:"params"`
	Loss             float64 `json:"loss"`
	Config           string  `json:"config"`
	// Precision is the arithmetic of the matmuls (float32: bf16 training is
	// not implemented yet).
	Precision string `json:"precision"`
	// TrainFLOPsPerToken is 3× the forward FLOPs per token at this
	// sequence length (moe plan's count: forward + backward).
	TrainFLOPsPerToken float64 `json:"train_flops_per_token"`
	// PeakGFLOPS is this machine's float32 peak for the threads used,
	// measured (compute.MeasurePeak); MFU is the model FLOPs achieved over it.
	PeakGFLOPS float64 `json:"peak_gflops"`
	MFU        float64 `json:"mfu"`
}

// runBenchTrain implements `moe bench train`: forward + backward + AdamW
// steps on random tokens at the config's context and a fixed batch.
func runBenchTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench train", "--config CONFIG [--threads T] [--json]", stderr)
	cfgName := fs.String("config", "tiny", "model config: a preset name or a config.json path")
	threads := fs.Int("threads", 0, "compute threads (0 = all cores)")
	batch := fs.Int("batch", 8, "sequences per step")
	seqLen := fs.Int("seq-len", 0, "tokens per sequence (0 = the config's context)")
	steps := fs.Int("steps", 5, "timed steps (after one warm-up step)")
	saveConfig := fs.String("save-config", "", "also write the resolved config.json here (for benchmarks/train/torch_train.py)")
	jsonOut := fs.Bool("json", false, "print one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed steps to this file")
	if err := parseFlagsNoArgs(fs, args, ""); err != nil {
		return err
	}
	if *batch <= 0 || *steps <= 0 || *seqLen < 0 || *threads < 0 {
		return usagef("--batch and --steps must be positive; --seq-len and --threads not negative")
	}
	cfg, err := config.Resolve(*cfgName)
	if err != nil {
		return err
	}
	if *saveConfig != "" {
		if err := cfg.Save(*saveConfig); err != nil {
			return err
		}
	}
	T := *seqLen
	if T == 0 {
		T = cfg.MaxPositionEmbeddings
	}
	if T <= 0 {
		return fmt.Errorf("config %s has no context length (max_position_embeddings)", *cfgName)
	}
	// Weights, gradients and two moments: 16 bytes per parameter.
	n := model.NumParams(cfg)
	if need := int64(n) * 16; need > 64<<30 {
		return fmt.Errorf("config %s has %d parameters: training state needs %.0f GiB, too much for bench train", *cfgName, n, float64(need)/(1<<30))
	}
	pool := compute.NewPool(*threads)
	defer pool.Close()
	m, err := model.New(cfg, pool)
	if err != nil {
		return err
	}
	m.Init(1)
	opt := train.NewAdamW(len(m.W.Flat), pool.Threads())
	tr := &train.Trainer{Model: train.NewModel(m, false), Opt: opt, Data: &train.RandomBatches{V: cfg.VocabSize},
		Schedule: train.Schedule{LR: 1e-3, MinLR: 1e-4, Warmup: 10, Total: 1000}, B: *batch, T: T, Accum: 1}
	if _, err := tr.TrainStep(ctx); err != nil { // warm-up: allocations, page faults
		return err
	}
	var loss, optSec float64
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	t0 := time.Now()
	for i := 0; i < *steps; i++ {
		res, err := tr.TrainStep(ctx)
		if err != nil {
			return err
		}
		loss = res.Loss
		optSec += tr.LastUpdateSeconds
	}
	sec := time.Since(t0).Seconds()
	out := benchTrainResult{TokensPerSecond: float64(*batch*T**steps) / sec, Batch: *batch, SeqLen: T, Threads: pool.Threads(),
		Steps: *steps, SecondsPerStep: sec / float64(*steps), OptimizerSeconds: optSec / float64(*steps), Params: n, Loss: loss, Config: *cfgName,
		Precision: "float32"}
	if r, err := plan.New(cfg, plan.Options{Context: T}); err == nil {
		out.TrainFLOPsPerToken = 3 * r.ForwardFLOPsPerToken
		out.PeakGFLOPS = compute.MeasurePeak(ctx, pool.Threads()).GFLOPS
		if out.PeakGFLOPS > 0 {
			out.MFU = out.TokensPerSecond * out.TrainFLOPsPerToken / (out.PeakGFLOPS * 1e9)
		}
	}
	if *jsonOut {
		return printJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "%s: %.0f tokens/s training (batch %d × %d, %d threads, %.3f s/step of which AdamW %.3f s, %d params)\n",
		*cfgName, out.TokensPerSecond, *batch, T, out.Threads, out.SecondsPerStep, out.OptimizerSeconds, n)
	if out.PeakGFLOPS > 0 {
		fmt.Fprintf(stdout, "  MFU %.1f%%: %.2f GFLOP/s of model FLOPs (%.3g per token, 3× forward) against a measured %s peak of %.0f GFLOP/s\n",
			100*out.MFU, out.TokensPerSecond*out.TrainFLOPsPerToken/1e9, out.TrainFLOPsPerToken, out.Precision, out.PeakGFLOPS)
	}
	return nil
}
