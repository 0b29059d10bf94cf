package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/internal/peer"
	"github.com/moe-llm/moe/internal/testgguf"
)

// runTool runs a llama.cpp tool with a one-minute limit and returns stdout.
func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestQuantizeLikeLlamaQuantize: on a model with rows of 256, moe quantize
// and llama-quantize write the same tensor types and the same bytes for
// every mix; llama-quantize's files load in moe and moe's in llama.cpp.
func TestQuantizeLikeLlamaQuantize(t *testing.T) {
	lq := peer.NeedBin(t, "llama-quantize")
	simple := peer.NeedBin(t, "llama-simple")
	base, _ := trained(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "q256")
	ok(t, append([]string{"train", "--config", testdata(t, "quant256.json"), "--data", testdata(t, "corpus.txt"),
		"--tokenizer", base, "--out", run, "--steps", "10", "--seed", "5"}, trainArgs()...)...)
	f32 := filepath.Join(dir, "f32.gguf")
	ok(t, "export", "--model", run, "--out", f32)
	const prompt = "And God said"
	for _, mix := range []string{"q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "q3_k_m", "q2_k", "iq4_xs"} {
		ours := filepath.Join(dir, "moe-"+mix+".gguf")
		theirs := filepath.Join(dir, "llama-"+mix+".gguf")
		ok(t, "quantize", f32, ours, mix)
		runTool(t, lq, f32, theirs, strings.ToUpper(mix), "2")
		sameAsLlamaQuantize(t, mix, ours, theirs)
		// llama-quantize's file runs in moe; moe's in llama.cpp.
		r := ok(t, "generate", "--model", theirs, "--prompt", prompt, "--max-tokens", "12", "--temperature", "0")
		out := strings.TrimSuffix(runTool(t, simple, "-m", ours, "-n", "12", prompt), "\n")
		if !strings.HasPrefix(out, prompt) || len(out) <= len(prompt) {
			t.Errorf("%s: llama-simple on moe's file printed %q", mix, out)
		}
		want := prompt + strings.TrimSuffix(r.stdout, "\n")
		t.Logf("%s: llama.cpp on moe's file %q; moe on llama-quantize's file %q (identical: %v)", mix, out, want, out == want)
	}
}

// sameAsLlamaQuantize checks that moe's quantized file ours and
// llama-quantize's theirs have the same general.file_type and the same
// tensors, each of the same type and bytes.
func sameAsLlamaQuantize(t *testing.T, mix, ours, theirs string) {
	t.Helper()
	a := testgguf.Open(t, ours)
	b := testgguf.Open(t, theirs)
	if fa, fb := getKV(a, "general.file_type"), getKV(b, "general.file_type"); fa != fb {
		t.Errorf("%s: general.file_type %v, llama-quantize %v", mix, fa, fb)
	}
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%s: %d tensors, llama-quantize %d", mix, len(a.Tensors), len(b.Tensors))
	}
	same := 0
	for i := range a.Tensors {
		ta := &a.Tensors[i]
		tb, found := b.Tensor(ta.Name)
		if !found || tb.Type != ta.Type {
			t.Errorf("%s: tensor %s is %s, llama-quantize %v", mix, ta.Name, ta.Type, tb)
			continue
		}
		da, _ := a.TensorData(ta)
		db, _ := b.TensorData(tb)
		if !bytes.Equal(da, db) {
			t.Errorf("%s: tensor %s (%s): bytes differ from llama-quantize's", mix, ta.Name, ta.Type)
			continue
		}
		same++
	}
	t.Logf("%s: %d tensors, all types and bytes equal to llama-quantize's: %v", mix, same, same == len(a.Tensors))
}

func getKV(f *gguf.File, key string) any {
	v, _ := f.Get(key)
	return v
}

// TestExportCheckpointFileE2E: moe export takes a checkpoint file of a
// trained run, as generate does.
func TestExportCheckpointFileE2E(t *testing.T) {
	base, _ := trained(t)
	cks, err := filepath.Glob(filepath.Join(base, "checkpoint-*.moeckpt"))
	if err != nil || len(cks) == 0 {
		t.Fatalf("no checkpoint files in %s (%v)", base, err)
	}
	out := filepath.Join(t.TempDir(), "m.gguf")
	ok(t, "export", "--model", cks[len(cks)-1], "--out", out, "--type", "q8_0")
	ok(t, "generate", "--model", out, "--prompt", "And God", "--max-tokens", "4")
	usage(t, "export", "--model", base, "--out", out, "q4_0")
}
