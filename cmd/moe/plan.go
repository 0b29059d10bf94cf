package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/plan"
)

// runPlan implements `moe plan CONFIG`: parameter counts, FLOPs, memory,
// training time and cost, as a table or --json.
func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", "CONFIG [--json] [--gpu a100|h100] [--gpus N] [--mfu F] [--tokens N] [--price USD_PER_GPU_HOUR] [--context N] [--batch-tokens N] [--batch-tokens-start N --batch-ramp-tokens T]\n\n"+
		"CONFIG is a config.json, a directory holding one, or a preset: "+strings.Join(config.PresetNames(), ", ")+".\n"+
		"Unset flags take the preset's published setup (gpt4, gpt3) or: 1024 H100s, 40% MFU, $2/GPU-hour,\n"+
		"20 training tokens per active parameter, 4M-token batches, the config's context length.", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	gpu := fs.String("gpu", "", "GPU type: a100 (312 TFLOP/s) or h100 (989 TFLOP/s dense bf16)")
	gpus := fs.Int("gpus", 0, "number of GPUs")
	mfu := fs.Float64("mfu", 0, "model FLOPs utilisation, in (0, 1]")
	var tokens, batch, batchStart, rampTokens siFloat
	fs.Var(&tokens, "tokens", "training tokens (e.g. 13T, 300B or 1.3e13)")
	price := fs.Float64("price", 0, "USD per GPU-hour (default: the GPU's, a100 $1, h100 $2)")
	ctxLen := fs.Int("context", 0, "context length for FLOPs and KV cache")
	fs.Var(&batch, "batch-tokens", "global batch size in tokens (e.g. 60M)")
	fs.Var(&batchStart, "batch-tokens-start", "batch ramp: the batch at the start (grows linearly to --batch-tokens)")
	fs.Var(&rampTokens, "batch-ramp-tokens", "batch ramp: its length in training tokens (e.g. 12B)")
	localBatch := fs.Int("batch", 0, "moe train's --batch, for the local memory estimate (default 8)")
	localSeq := fs.Int("seq-len", 0, "moe train's --seq-len, for the local memory estimate (default min(context, 256))")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one CONFIG (a preset name or a config.json path), got %d arguments", len(pos))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, c := range []struct {
		name, want string
		bad        bool
	}{
		{"gpus", "at least 1", *gpus < 1},
		{"mfu", "in (0, 1]", !(*mfu > 0 && *mfu <= 1)},
		{"tokens", "positive, below 1e30", !(float64(tokens) > 0 && float64(tokens) < 1e30)},
		{"price", "in [0, 1e9)", !(*price >= 0 && *price < 1e9)},
		{"context", "in [1, 2^30]", *ctxLen < 1 || *ctxLen > 1<<30},
		{"batch-tokens", "positive, below 1e30", !(float64(batch) > 0 && float64(batch) < 1e30)},
		{"batch", "at least 1", *localBatch < 1},
		{"seq-len", "at least 1", *localSeq < 1},
	} {
		if set[c.name] && c.bad {
			got := fs.Lookup(c.name).Value.String()
			if got == "" {
				got = "0"
			}
			return usagef("--%s: out of range (want %s, got %s)", c.name, c.want, got)
		}
	}
	if set["gpu"] {
		if _, err := plan.LookupGPU(*gpu); err != nil {
			var names []string
			for _, g := range plan.GPUs() {
				names = append(names, g.Name)
			}
			return usagef("--gpu: unknown GPU %q (want one of %s)", *gpu, strings.Join(names, ", "))
		}
	}
	cfg, err := config.Resolve(pos[0])
	if err != nil {
		return err
	}
	r, err := plan.New(cfg, plan.Options{
		GPU: *gpu, GPUs: *gpus, MFU: *mfu, Tokens: float64(tokens), PricePerGPUHour: *price, Context: *ctxLen, BatchTokens: float64(batch),
		BatchTokensStart: float64(batchStart), BatchRampTokens: float64(rampTokens),
		LocalBatch: *localBatch, LocalSeqLen: *localSeq,
	})
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write JSON: %w", err)
		}
		return nil
	}
	return r.WriteText(stdout)
}

// siFloat is a flag value that takes a number with an optional SI or count
// suffix: 13T, 60M, 4k, 2.5e12.
type siFloat float64

func (f *siFloat) String() string {
	if f == nil || *f == 0 {
		return ""
	}
	return strconv.FormatFloat(float64(*f), 'g', -1, 64)
}

func (f *siFloat) Set(s string) error {
	mul := 1.0
	t := strings.TrimSpace(s)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mul = 1e3
		case 'M':
			mul = 1e6
		case 'B', 'G':
			mul = 1e9
		case 'T':
			mul = 1e12
		case 'P':
			mul = 1e15
		}
		if mul != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number (use e.g. 13T, 60M or 1.3e13)", s)
	}
	*f = siFloat(v * mul)
	return nil
}
