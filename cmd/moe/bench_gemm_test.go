package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"testing"
)

// TestBenchGemm runs a tiny `moe bench gemm --json` and checks the contract
// fields, and that bad flags are usage errors.
func TestBenchGemm(t *testing.T) {
	var out bytes.Buffer
	err := runBenchGemm(context.Background(), []string{"--m", "33", "--n", "17", "--k", "65", "--threads", "2", "--min-time", "1ms", "--json"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("bench gemm: %v", err)
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("output %q is not JSON: %v", out.String(), err)
	}
	for _, key := range []string{"gflops", "seconds", "peak_gflops"} {
		v, ok := res[key].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", key, res[key])
		}
	}
	if res["threads"].(float64) != 2 {
		t.Errorf("threads = %v, want 2", res["threads"])
	}
	for _, args := range [][]string{{"--m", "0"}, {"--threads", "-1"}, {"--bf16", "--transa"}, {"--nope"}} {
		err := runBenchGemm(context.Background(), args, io.Discard, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("args %v: err = %v, want a usage error", args, err)
		}
	}
}

// TestBenchTrainMFU runs a small `moe bench train --json` and checks the
// MFU fields: a positive float32 peak, model FLOPs per token above 6× the
// matmul parameters a token passes through, and MFU = tokens/s × FLOPs
// per token / peak, in (0, 1).
func TestBenchTrainMFU(t *testing.T) {
	cfg := benchTrainConfig(t)
	var out bytes.Buffer
	if err := runBenchTrain(context.Background(), []string{"--config", cfg, "--steps", "1", "--batch", "2", "--threads", "2", "--json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var r benchTrainResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	// Per layer: q,k,v,o 4·32·32 and two of four experts 2·3·32·48; the LM head 64·32.
	matmul := 2*(4*32*32+2*3*32*48) + 64*32
	if r.Precision != "float32" || r.PeakGFLOPS <= 0 || r.TrainFLOPsPerToken < 6*float64(matmul) {
		t.Fatalf("precision %q, peak %v GFLOP/s, %v FLOPs per token (matmul params %d)", r.Precision, r.PeakGFLOPS, r.TrainFLOPsPerToken, matmul)
	}
	want := r.TokensPerSecond * r.TrainFLOPsPerToken / (r.PeakGFLOPS * 1e9)
	if r.MFU <= 0 || r.MFU >= 1 || math.Abs(r.MFU-want) > 1e-12*want {
		t.Fatalf("MFU %v, want %v in (0, 1)", r.MFU, want)
	}
}
