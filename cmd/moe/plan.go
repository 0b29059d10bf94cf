package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"moe/config"
	"moe/plan"
)

// runPlan implements `moe plan CONFIG`: parameter counts, FLOPs, memory,
// training time and cost, as a table or --json.
func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", "CONFIG [--json] [--gpu a100|h100] [--gpus N] [--mfu F] [--tokens N] [--price USD_PER_GPU_HOUR] [--context N] [--batch-tokens N]\n\n"+
		"CONFIG is a config.json, a directory holding one, or a preset: "+strings.Join(config.PresetNames(), ", ")+".\n"+
		"Unset flags take the preset's published setup (gpt4, gpt3) or: 1024 H100s, 40% MFU, $2/GPU-hour,\n"+
		"20 training tokens per active parameter, 4M-token batches, the config's context length.", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	gpu := fs.String("gpu", "", "GPU type: a100 (312 TFLOP/s) or h100 (989 TFLOP/s dense bf16)")
	gpus := fs.Int("gpus", 0, "number of GPUs")
	mfu := fs.Float64("mfu", 0, "model FLOPs utilisation, in (0, 1]")
	tokens := fs.Float64("tokens", 0, "training tokens (e.g. 13e12)")
	price := fs.Float64("price", 0, "USD per GPU-hour (default: the GPU's, a100 $1, h100 $2)")
	ctxLen := fs.Int("context", 0, "context length for FLOPs and KV cache")
	batch := fs.Float64("batch-tokens", 0, "global batch size in tokens")
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
		name string
		bad  bool
	}{
		{"gpus", *gpus < 1}, {"mfu", !(*mfu > 0 && *mfu <= 1)}, {"tokens", !(*tokens > 0 && *tokens < 1e30)},
		{"price", !(*price >= 0 && *price < 1e9)}, {"context", *ctxLen < 1 || *ctxLen > 1<<30}, {"batch-tokens", !(*batch > 0 && *batch < 1e30)},
	} {
		if set[c.name] && c.bad {
			return usagef("--%s: out of range", c.name)
		}
	}
	if set["gpu"] {
		if _, err := plan.LookupGPU(*gpu); err != nil {
			return usageError{err}
		}
	}
	cfg, err := config.Resolve(pos[0])
	if err != nil {
		return err
	}
	r, err := plan.New(cfg, plan.Options{
		GPU: *gpu, GPUs: *gpus, MFU: *mfu, Tokens: *tokens, PricePerGPUHour: *price, Context: *ctxLen, BatchTokens: *batch,
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
			return fmt.Errorf("plan: write JSON: %w", err)
		}
		return nil
	}
	return r.WriteText(stdout)
}
