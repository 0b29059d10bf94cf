package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDistillCLI distills a draft for a small random MoE target from a
// random dense draft: the KL to the target must fall, the acceptance on
// held-out prompts must rise, and the output must load as a --draft that
// keeps greedy text identical.
func TestDistillCLI(t *testing.T) {
	text := strings.Repeat("In the beginning God created the heaven and the earth. And the earth was without form, and void. ", 40)
	tok := trainTok(t, text, 300)
	target := writeRunDir(t, smallCfg(true), tok, 1)
	draft := writeRunDir(t, smallCfg(false), tok, 2)
	data := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(data, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "distilled")
	code, stdout, errs := moeCLI("distill", "--target", target, "--draft", draft, "--data", data, "--out", out,
		"--steps", "200", "--batch", "4", "--seq-len", "32", "--lr", "3e-3", "--warmup", "5", "--eval-prompts", "4", "--eval-tokens", "12", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var sum struct {
		Steps      int
		KL         float64 `json:"kl"`
		KLFirst    float64 `json:"kl_first"`
		Before     float64 `json:"acceptance_before"`
		After      float64 `json:"acceptance_after"`
		Checkpoint string
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	t.Logf("%+v", sum)
	if sum.Steps != 200 || !(sum.KL < 0.7*sum.KLFirst) || !(sum.After > sum.Before) {
		t.Fatalf("distillation did not learn: %s", stdout)
	}
	prompt := []string{"generate", "--model", target, "--prompt", "And the earth", "--max-tokens", "16", "--json", "--ignore-eot"}
	_, plain, _ := moeCLI(prompt...)
	code, spec, errs := moeCLI(append(prompt, "--draft", out)...)
	if code != 0 {
		t.Fatalf("generate with the distilled draft: exit %d: %s", code, errs)
	}
	var a, b map[string]any
	json.Unmarshal([]byte(plain), &a)
	json.Unmarshal([]byte(spec), &b)
	if a["text"] == nil || a["text"] != b["text"] {
		t.Fatalf("greedy text with the distilled draft %q, without %q", b["text"], a["text"])
	}
	// --generate: the target's own sampled continuations (batched) as data.
	code, stdout, errs = moeCLI("distill", "--target", target, "--draft", draft, "--data", data, "--out", filepath.Join(t.TempDir(), "gen"),
		"--steps", "30", "--batch", "4", "--seq-len", "32", "--generate", "16", "--lr", "3e-3", "--warmup", "5", "--eval-prompts", "2", "--eval-tokens", "8", "--json", "--quiet")
	var gen struct {
		KL      float64 `json:"kl"`
		KLFirst float64 `json:"kl_first"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &gen) != nil || !(gen.KL < gen.KLFirst) {
		t.Fatalf("--generate: exit %d, %s %s", code, stdout, errs)
	}
	// Usage errors name the flag.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", data, "--out", out, "--config", "tiny-draft"}, "--target"},
		{[]string{"--target", target, "--data", data, "--out", out}, "--config and --draft"},
		{[]string{"--target", target, "--draft", draft, "--out", out}, "--data"},
		{[]string{"--target", target, "--draft", draft, "--data", data, "--out", out, "--lr", "0"}, "--lr"},
	} {
		code, _, errs := moeCLI(append([]string{"distill"}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", c.args, code, errs, c.want)
		}
	}
}

// TestDistillGGUFTarget distills a draft for a target loaded from a Q8_0
// GGUF file (a Mixtral-layout export of a random MoE run): distill must
// read the file as the target (its weights, its vocabulary), lower the KL
// to it, and the draft it writes must load as a --draft of the GGUF model
// and keep greedy text identical, with the model draft and with prompt
// lookup.
func TestDistillGGUFTarget(t *testing.T) {
	text := strings.Repeat("In the beginning God created the heaven and the earth. And the earth was without form, and void. ", 40)
	tok := trainTok(t, text, 300)
	run := writeRunDir(t, smallCfg(true), tok, 1)
	draft := writeRunDir(t, smallCfg(false), tok, 2)
	dir := t.TempDir()
	target := filepath.Join(dir, "target.gguf")
	if code, _, errs := moeCLI("export", "--model", run, "--out", target, "--type", "q8_0"); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	data := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(data, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "distilled")
	code, stdout, errs := moeCLI("distill", "--target", target, "--draft", draft, "--data", data, "--out", out,
		"--steps", "60", "--batch", "4", "--seq-len", "32", "--lr", "3e-3", "--warmup", "5", "--eval-prompts", "2", "--eval-tokens", "8", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("distill from a GGUF target: exit %d: %s", code, errs)
	}
	var sum struct {
		KL      float64 `json:"kl"`
		KLFirst float64 `json:"kl_first"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("bad JSON %q: %v", stdout, err)
	}
	if !(sum.KL < sum.KLFirst) {
		t.Fatalf("distillation from the GGUF target did not lower the KL: %s", stdout)
	}
	gen := []string{"generate", "--model", target, "--prompt", "And the earth", "--max-tokens", "16", "--json", "--ignore-eot"}
	code, plain, errs := moeCLI(gen...)
	if code != 0 {
		t.Fatalf("generate on the GGUF target: exit %d: %s", code, errs)
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(plain), &want); err != nil || want["text"] == nil {
		t.Fatalf("bad JSON %q: %v", plain, err)
	}
	for _, d := range []string{out, "ngram"} {
		code, spec, errs := moeCLI(append(gen, "--draft", d)...)
		if code != 0 {
			t.Fatalf("generate --draft %s on the GGUF target: exit %d: %s", d, code, errs)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(spec), &got); err != nil || got["text"] != want["text"] {
			t.Fatalf("--draft %s: greedy text %q, plain %q (%v)", d, got["text"], want["text"], err)
		}
		if p, _ := got["proposed"].(float64); d == out && p <= 0 {
			t.Fatalf("--draft %s proposed nothing: %s", d, spec)
		}
	}
}
