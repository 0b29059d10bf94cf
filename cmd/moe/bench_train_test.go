package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moe-llm/moe/compute"
)

// benchTrainConfig writes a tiny MoE config.json (2 layers of 4 experts,
// d 32) for bench train tests and returns its path.
func benchTrainConfig(t *testing.T) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "c.json")
	js := `{"model_type":"mixtral","vocab_size":64,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
"num_attention_heads":4,"max_position_embeddings":16,"num_local_experts":4,"num_experts_per_tok":2}`
	if err := os.WriteFile(cfg, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestBenchTrainPrecisions runs `moe bench train --precision both` and
// checks one entry per precision in order, each with its rounds, best ≥
// median, its own measured peak (bf16's at least float32's) and MFU =
// best tokens/s × FLOPs per token / peak; a bad --precision is a usage
// error.
func TestBenchTrainPrecisions(t *testing.T) {
	cfg := benchTrainConfig(t)
	var out bytes.Buffer
	args := []string{"--config", cfg, "--steps", "1", "--rounds", "3", "--batch", "2", "--threads", "2", "--precision", "both", "--json"}
	if err := runBenchTrain(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var r benchTrainResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Precisions) != 2 || r.Precisions[0].Precision != "float32" || r.Precisions[1].Precision != "bf16" || r.Precision != "float32" {
		t.Fatalf("precisions %+v (top-level %q)", r.Precisions, r.Precision)
	}
	for _, p := range r.Precisions {
		want := p.TokensPerSecond * r.TrainFLOPsPerToken / (p.PeakGFLOPS * 1e9)
		if len(p.Rounds) != 3 || p.TokensPerSecond < p.MedianTokensPerSecond || p.MedianTokensPerSecond <= 0 ||
			p.PeakGFLOPS <= 0 || math.Abs(p.MFU-want) > 1e-12*want {
			t.Fatalf("%s: %+v (MFU want %v)", p.Precision, p, want)
		}
	}
	if r.Precisions[1].PeakGFLOPS < 0.5*r.Precisions[0].PeakGFLOPS || r.TokensPerSecond != r.Precisions[0].TokensPerSecond {
		t.Fatalf("bf16 peak %v vs float32 %v; top-level tokens/s %v", r.Precisions[1].PeakGFLOPS, r.Precisions[0].PeakGFLOPS, r.TokensPerSecond)
	}
	// Round-by-round ratios pair each bf16 round with the float32 round
	// before it, in wall time and (where the platform reports it) CPU time.
	checkRatios := func(what string, ratios []float64, med float64, num, den []float64) {
		t.Helper()
		if len(ratios) != 3 || len(num) != 3 || len(den) != 3 {
			t.Fatalf("%s: ratios %v of rounds %v / %v", what, ratios, num, den)
		}
		for i, x := range ratios {
			if math.Abs(x-num[i]/den[i]) > 1e-12*x {
				t.Fatalf("%s: round %d ratio %v, want %v / %v", what, i, x, num[i], den[i])
			}
		}
		if sorted := slices.Sorted(slices.Values(ratios)); med != sorted[1] {
			t.Fatalf("%s: median %v of %v", what, med, ratios)
		}
	}
	checkRatios("wall", r.RoundRatios, r.MedianRoundRatio, r.Precisions[1].Rounds, r.Precisions[0].Rounds)
	if _, ok := compute.ProcessCPUSeconds(); ok {
		checkRatios("cpu", r.CPURoundRatios, r.MedianCPURoundRatio, r.Precisions[1].CPURounds, r.Precisions[0].CPURounds)
	}
	err := runBenchTrain(context.Background(), []string{"--config", cfg, "--precision", "fp8"}, io.Discard, io.Discard)
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("--precision fp8: err = %v, want a usage error", err)
	}
}
