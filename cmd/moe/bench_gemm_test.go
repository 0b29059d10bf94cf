package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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
