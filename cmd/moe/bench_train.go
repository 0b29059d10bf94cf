package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
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
	// Precision is the arithmetic of the matmuls of the fields above (the
	// first of --precision's).
	Precision string `json:"precision"`
	// TrainFLOPsPerToken is 3× the forward FLOPs per token at this
	// sequence length (moe plan's count: forward + backward).
	TrainFLOPsPerToken float64 `json:"train_flops_per_token"`
	// PeakGFLOPS is this machine's float32 peak for the threads used,
	// measured (compute.MeasurePeak); MFU is the model FLOPs achieved over it.
	PeakGFLOPS float64 `json:"peak_gflops"`
	MFU        float64 `json:"mfu"`
	// Precisions has one entry per precision timed, in --precision's order
	// (both: float32 then bf16, alternated round by round).
	Precisions []benchPrecision `json:"precisions"`
	// With two precisions, RoundRatios[r] is round r's tokens/s of the
	// second over the first (rounds adjacent in time, so a shared
	// machine's load shifts both alike), CPURoundRatios the same per
	// CPU-second; the medians summarise them.
	RoundRatios         []float64 `json:"round_ratios,omitempty"`
	MedianRoundRatio    float64   `json:"median_round_ratio,omitempty"`
	CPURoundRatios      []float64 `json:"cpu_round_ratios,omitempty"`
	MedianCPURoundRatio float64   `json:"median_cpu_round_ratio,omitempty"`
}

// benchPrecision is the throughput of one precision over the rounds.
type benchPrecision struct {
	Precision string `json:"precision"`
	// TokensPerSecond is the best round's; Median the median round's.
	TokensPerSecond       float64   `json:"tokens_per_second"`
	MedianTokensPerSecond float64   `json:"median_tokens_per_second"`
	Rounds                []float64 `json:"rounds_tokens_per_second"`
	// CPURounds is each round's tokens per second of this process's CPU
	// time (all threads; time spent descheduled by other load does not
	// count), where the platform reports it.
	CPURounds []float64 `json:"rounds_tokens_per_cpu_second,omitempty"`
	// PeakGFLOPS is this precision's measured peak (compute.MeasurePeak,
	// compute.MeasurePeakBF16) and MFU the best round's model FLOPs over it.
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
	steps := fs.Int("steps", 5, "timed steps per round (after one warm-up step per precision)")
	precision := fs.String("precision", "float32", "matmul arithmetic: float32, bf16, or both (alternated round by round in the same model)")
	rounds := fs.Int("rounds", 1, "timed rounds per precision (best and median reported)")
	saveConfig := fs.String("save-config", "", "also write the resolved config.json here (for benchmarks/train/torch_train.py)")
	jsonOut := fs.Bool("json", false, "print one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed steps to this file")
	if err := parseFlagsNoArgs(fs, args, ""); err != nil {
		return err
	}
	if *batch <= 0 || *steps <= 0 || *rounds <= 0 || *seqLen < 0 || *threads < 0 {
		return usagef("--batch, --steps and --rounds must be positive; --seq-len and --threads not negative")
	}
	var precs []model.Precision
	if *precision == "both" {
		precs = []model.Precision{model.F32, model.BF16}
	} else {
		p, err := model.ParsePrecision(*precision)
		if err != nil {
			return usagef("--precision: %v (or both)", err)
		}
		precs = []model.Precision{p}
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
	for _, p := range precs {
		if p == model.BF16 && !compute.HasBF16Kernels() {
			fmt.Fprintln(stderr, "warning: this CPU lacks AVX512_BF16; bf16 matmuls run on the portable Go kernel (much slower)")
		}
		m.SetPrecision(p)
		if _, err := tr.TrainStep(ctx); err != nil { // warm-up: allocations, page faults
			return err
		}
	}
	var loss, optSec float64
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	tps, cpuTPS := make([][]float64, len(precs)), make([][]float64, len(precs))
	var firstSec float64 // seconds of the first precision's timed steps
	for r := 0; r < *rounds; r++ {
		for pi, p := range precs {
			m.SetPrecision(p)
			cpu0, cpuOK := compute.ProcessCPUSeconds()
			t0 := time.Now()
			for i := 0; i < *steps; i++ {
				res, err := tr.TrainStep(ctx)
				if err != nil {
					return err
				}
				if pi == 0 {
					loss = res.Loss
					optSec += tr.LastUpdateSeconds
				}
			}
			sec := time.Since(t0).Seconds()
			if cpu1, ok := compute.ProcessCPUSeconds(); ok && cpuOK && cpu1 > cpu0 {
				cpuTPS[pi] = append(cpuTPS[pi], float64(*batch*T**steps)/(cpu1-cpu0))
			}
			if pi == 0 {
				firstSec += sec
			}
			tps[pi] = append(tps[pi], float64(*batch*T**steps)/sec)
		}
	}
	nFirst := float64(*steps * *rounds)
	out := benchTrainResult{Batch: *batch, SeqLen: T, Threads: pool.Threads(),
		Steps: *steps, SecondsPerStep: firstSec / nFirst, OptimizerSeconds: optSec / nFirst, Params: n, Loss: loss, Config: *cfgName,
		Precision: precs[0].String()}
	r, planErr := plan.New(cfg, plan.Options{Context: T})
	if planErr == nil {
		out.TrainFLOPsPerToken = 3 * r.ForwardFLOPsPerToken
	}
	for pi, p := range precs {
		bp := benchPrecision{Precision: p.String(), Rounds: tps[pi], CPURounds: cpuTPS[pi]}
		bp.TokensPerSecond = slices.Max(tps[pi])
		bp.MedianTokensPerSecond = median(tps[pi])
		if planErr == nil {
			if p == model.BF16 {
				bp.PeakGFLOPS = compute.MeasurePeakBF16(ctx, pool.Threads()).GFLOPS
			} else {
				bp.PeakGFLOPS = compute.MeasurePeak(ctx, pool.Threads()).GFLOPS
			}
			if bp.PeakGFLOPS > 0 {
				bp.MFU = bp.TokensPerSecond * out.TrainFLOPsPerToken / (bp.PeakGFLOPS * 1e9)
			}
		}
		out.Precisions = append(out.Precisions, bp)
	}
	if len(precs) == 2 {
		out.RoundRatios, out.MedianRoundRatio = roundRatios(tps[1], tps[0])
		if len(cpuTPS[0]) == *rounds && len(cpuTPS[1]) == *rounds {
			out.CPURoundRatios, out.MedianCPURoundRatio = roundRatios(cpuTPS[1], cpuTPS[0])
		}
	}
	out.TokensPerSecond = out.Precisions[0].TokensPerSecond
	out.PeakGFLOPS, out.MFU = out.Precisions[0].PeakGFLOPS, out.Precisions[0].MFU
	if *jsonOut {
		return printJSON(stdout, out)
	}
	for _, bp := range out.Precisions {
		fmt.Fprintf(stdout, "%s %s: %.0f tokens/s training, best of %d rounds (median %.0f; batch %d × %d, %d threads, %d params)\n",
			*cfgName, bp.Precision, bp.TokensPerSecond, len(bp.Rounds), bp.MedianTokensPerSecond, *batch, T, out.Threads, n)
		if bp.PeakGFLOPS > 0 {
			fmt.Fprintf(stdout, "  MFU %.1f%%: %.2f GFLOP/s of model FLOPs (%.3g per token, 3× forward) against a measured %s peak of %.0f GFLOP/s\n",
				100*bp.MFU, bp.TokensPerSecond*out.TrainFLOPsPerToken/1e9, out.TrainFLOPsPerToken, bp.Precision, bp.PeakGFLOPS)
		}
	}
	if len(out.Precisions) == 2 {
		a, b := out.Precisions[0], out.Precisions[1]
		fmt.Fprintf(stdout, "  %s/%s: best %.2f×, median %.2f×; round by round median %.2f× (%.2f–%.2f)",
			b.Precision, a.Precision, b.TokensPerSecond/a.TokensPerSecond, b.MedianTokensPerSecond/a.MedianTokensPerSecond,
			out.MedianRoundRatio, slices.Min(out.RoundRatios), slices.Max(out.RoundRatios))
		if len(out.CPURoundRatios) > 0 {
			fmt.Fprintf(stdout, "; per CPU-second median %.2f× (%.2f–%.2f)", out.MedianCPURoundRatio, slices.Min(out.CPURoundRatios), slices.Max(out.CPURoundRatios))
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "  %s: %.3f s/step of which AdamW %.3f s\n", out.Precision, out.SecondsPerStep, out.OptimizerSeconds)
	return nil
}

// median returns the median of xs (not empty): the middle value, or the
// mean of the two middle ones.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// roundRatios returns num[r]/den[r] for each round and their median.
func roundRatios(num, den []float64) ([]float64, float64) {
	out := make([]float64, len(num))
	for r := range num {
		out[r] = num[r] / den[r]
	}
	return out, median(out)
}

// startCPUProfile starts a CPU profile written to path; stop ends it and
// closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return sync.OnceFunc(func() { pprof.StopCPUProfile(); f.Close() }), nil
}
