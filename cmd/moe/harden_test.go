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

// TestHFStaleAndForeignFiles checks that export --format hf does not leave
// old shards that import would load instead of the new weights, and that
// import and export refuse to overwrite an unrelated config.json or
// tokenizer.json unless --force.
func TestHFStaleAndForeignFiles(t *testing.T) {
	src, cfg, flat := interchangeRun(t)
	tmp := t.TempDir()
	// An older sharded export of other weights.
	old := filepath.Join(tmp, "hf")
	if code, _, errs := moeCLI("export", "--model", src, "--out", old, "--format", "hf"); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	if err := os.Rename(filepath.Join(old, "model.safetensors"), filepath.Join(old, "model-00001-of-00001.safetensors")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(old, "model.safetensors.index.json"), []byte(`{"metadata":{},"weight_map":{"model.embed_tokens.weight":"model-00001-of-00001.safetensors"}}`), 0o644)
	// New weights exported over it.
	for i := range flat {
		flat[i] = -flat[i]
	}
	if _, err := checkpoint.Save(src, checkpoint.Header{Step: 5, Config: cfg}, []checkpoint.Tensor{{Name: checkpoint.SectionWeights, Data: flat}}, 0); err != nil {
		t.Fatal(err)
	}
	code, _, errs := moeCLI("export", "--model", src, "--out", old, "--format", "hf")
	if code == 0 || !strings.Contains(errs, "model.safetensors.index.json") || !strings.Contains(errs, "--force") {
		t.Errorf("export over shards: exit %d, %q; want a refusal naming the index and --force", code, errs)
	}
	if code, _, errs := moeCLI("export", "--model", src, "--out", old, "--format", "hf", "--force"); code != 0 {
		t.Fatalf("export --force: exit %d: %s", code, errs)
	}
	for _, stale := range []string{"model.safetensors.index.json", "model-00001-of-00001.safetensors"} {
		if _, err := os.Stat(filepath.Join(old, stale)); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", stale, err)
		}
	}
	_, w := importRun(t, old, filepath.Join(tmp, "imp"))
	for i := range flat {
		if w.Flat[i] != flat[i] {
			t.Fatalf("import loaded old weights: weight %d = %v, want %v", i, w.Flat[i], flat[i])
		}
	}

	// A folder with someone else's config.json and tokenizer.json.
	for _, cmd := range [][]string{
		{"export", "--model", src, "--format", "hf", "--out"},
		{"import", "--in", old, "--out"},
	} {
		dir := t.TempDir()
		mine := []byte(`{"not":"a model"}`)
		os.WriteFile(filepath.Join(dir, "config.json"), mine, 0o644)
		os.WriteFile(filepath.Join(dir, "tokenizer.json"), mine, 0o644)
		code, _, errs := moeCLI(append(cmd, dir)...)
		if code == 0 || !strings.Contains(errs, "config.json") || !strings.Contains(errs, "--force") {
			t.Errorf("%s into a foreign folder: exit %d, %q", cmd[0], code, errs)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "config.json")); string(b) != string(mine) {
			t.Errorf("%s overwrote an unrelated config.json", cmd[0])
		}
		if code, _, errs := moeCLI(append(append(cmd, dir), "--force")...); code != 0 {
			t.Errorf("%s --force: exit %d: %s", cmd[0], code, errs)
		}
	}
}
