package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/model"
)

// overflowingRun writes a run whose weights are finite but so large that
// the forward pass overflows: the loss is not a number.
func overflowingRun(t *testing.T) (dir, text string) {
	t.Helper()
	src, cfg, flat := interchangeRun(t)
	w, err := model.NewWeights(cfg, flat)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range [][]float32{w.FinalNorm, w.LMHead} {
		for i := range x {
			x[i] *= 1e30 // logits of ±1e60: +Inf and -Inf, then NaN
		}
	}
	if _, err := checkpoint.Save(src, checkpoint.Header{Step: 2, Config: cfg}, []checkpoint.Tensor{{Name: checkpoint.SectionWeights, Data: flat}}, 0); err != nil {
		t.Fatal(err)
	}
	text = filepath.Join(t.TempDir(), "t.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("The cat sat on the mat. ", 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	return src, text
}

// TestEvalNaNLoss checks that a non-finite loss exits 1, and that --json
// still prints one valid object (null loss and an error field).
func TestEvalNaNLoss(t *testing.T) {
	dir, text := overflowingRun(t)
	code, out, errs := moeCLI("eval", "--model", dir, "--data", text, "--seq-len", "16", "--max-tokens", "32")
	if code != 1 || !strings.Contains(errs, "loss") {
		t.Errorf("eval of a diverged model: exit %d, stdout %q, stderr %q; want exit 1 naming the loss", code, out, errs)
	}
	code, out, errs = moeCLI("eval", "--model", dir, "--data", text, "--seq-len", "16", "--max-tokens", "32", "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("eval --json printed %q (stderr %q): %v", out, errs, err)
	}
	if code != 1 || v["loss"] != nil || v["error"] == nil || v["tokens"] == nil {
		t.Errorf("eval --json of a diverged model: exit %d, %v; want exit 1, loss null and an error", code, v)
	}
}

// TestMemoryRefusals checks that commands whose flags imply more memory
// than the machine has refuse at once, naming the estimate and the flag.
func TestMemoryRefusals(t *testing.T) {
	dir, text := overflowingRun(t)
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"train", "--config", "tiny", "--out", t.TempDir(), "--data", text, "--batch", "100000000"}, "--batch"},
		{[]string{"eval", "--model", dir, "--data", text, "--batch", "100000000", "--max-tokens", "5000"}, "--batch"},
		{[]string{"serve", "--model", dir, "--queue", "4000000000", "--addr", "127.0.0.1:0"}, "--queue"},
		{[]string{"serve", "--model", dir, "--kv-tokens", "2000000000000", "--addr", "127.0.0.1:0"}, "--kv-tokens"},
	} {
		code, _, errs := moeCLI(c.args...)
		if code == 0 || !strings.Contains(errs, c.flag) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("moe %s: exit %d, stderr %q; want one line naming %s", strings.Join(c.args, " "), code, errs, c.flag)
		}
		if c.args[0] != "serve" || c.flag != "--queue" {
			if !strings.Contains(errs, "needs about") || !strings.Contains(errs, "available") {
				t.Errorf("moe %s: %q lacks the estimate", strings.Join(c.args, " "), errs)
			}
		}
	}
}
