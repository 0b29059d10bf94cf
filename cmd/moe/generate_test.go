package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/tokenizer"
)

// writeRunDir writes a run directory with a random-weight model of cfg and
// a tokenizer trained on text, as `moe train` would leave it.
func writeRunDir(t *testing.T, cfg *config.Config, tok *tokenizer.Tokenizer, seed uint64) string {
	t.Helper()
	dir := t.TempDir()
	c := *cfg
	c.VocabSize = tok.VocabSize()
	m, err := infer.RandomModel(&c, seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.Save(dir, checkpoint.Header{Step: 1, Config: &c}, []checkpoint.Tensor{{Name: checkpoint.SectionWeights, Data: m.W.Flat}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := tok.Save(filepath.Join(dir, tokenizer.FileName)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func trainTok(t *testing.T, text string, size int) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte(text)) }, size)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func smallCfg(moe bool) *config.Config {
	c := &config.Config{ModelType: "mixtral", HiddenSize: 32, IntermediateSize: 48, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		MaxPositionEmbeddings: 48, RopeTheta: 10000, RMSNormEps: 1e-5, InitStd: 0.3, TieWordEmbeddings: true}
	if moe {
		c.NumExperts, c.ExpertsPerToken = 4, 2
	}
	return c
}

func TestGenerateCLI(t *testing.T) {
	text := strings.Repeat("In the beginning God created the heaven and the earth. And the earth was without form. ", 20)
	tok := trainTok(t, text, 300)
	target := writeRunDir(t, smallCfg(true), tok, 1)
	draft := writeRunDir(t, smallCfg(false), tok, 2)

	code, out, errs := moeCLI("generate", "--model", target, "--prompt", "In the beginning", "--max-tokens", "12", "--json", "--ignore-eot")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var plain map[string]any
	if err := json.Unmarshal([]byte(out), &plain); err != nil {
		t.Fatalf("bad JSON %q: %v", out, err)
	}
	for _, k := range []string{"text", "tokens", "seconds", "tokens_per_second"} {
		if _, ok := plain[k]; !ok {
			t.Fatalf("JSON lacks %q: %s", k, out)
		}
	}
	if plain["tokens"].(float64) != 12 {
		t.Fatalf("tokens = %v", plain["tokens"])
	}
	code, out, errs = moeCLI("generate", "--model", target, "--prompt", "In the beginning", "--max-tokens", "12", "--json", "--ignore-eot",
		"--draft", draft, "--draft-tokens", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var spec map[string]any
	if err := json.Unmarshal([]byte(out), &spec); err != nil {
		t.Fatal(err)
	}
	if spec["text"] != plain["text"] {
		t.Fatalf("greedy text with a draft %q differs from %q", spec["text"], plain["text"])
	}
	for _, k := range []string{"proposed", "accepted", "acceptance_rate"} {
		if _, ok := spec[k]; !ok {
			t.Fatalf("JSON lacks %q: %s", k, out)
		}
	}
	// Prompt lookup (--draft ngram, no model) keeps the greedy text too.
	code, out, errs = moeCLI("generate", "--model", target, "--prompt", "In the beginning God created the heaven and the earth. In the beginning", "--max-tokens", "12", "--json", "--ignore-eot")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var plain2, ngram map[string]any
	json.Unmarshal([]byte(out), &plain2)
	code, out, errs = moeCLI("generate", "--model", target, "--prompt", "In the beginning God created the heaven and the earth. In the beginning", "--max-tokens", "12", "--json", "--ignore-eot",
		"--draft", "ngram", "--draft-tokens", "3", "--fixed-draft-tokens")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if err := json.Unmarshal([]byte(out), &ngram); err != nil {
		t.Fatal(err)
	}
	if ngram["text"] != plain2["text"] || ngram["proposed"].(float64) == 0 {
		t.Fatalf("greedy text with --draft ngram %q (%v proposed) differs from %q", ngram["text"], ngram["proposed"], plain2["text"])
	}
	// Streaming text equals the JSON text.
	code, out, errs = moeCLI("generate", "--model", target, "--prompt", "In the beginning", "--max-tokens", "12", "--ignore-eot")
	j1, _ := json.Marshal(out) // JSON turns invalid UTF-8 into U+FFFD
	var streamed string
	json.Unmarshal(j1, &streamed)
	if code != 0 || streamed != plain["text"].(string)+"\n" {
		t.Fatalf("exit %d, streamed %q, want %q (%s)", code, out, plain["text"], errs)
	}

	// Errors: exit status and a message that names the problem.
	var ot strings.Builder
	for i := 0; i < 600; i++ {
		fmt.Fprintf(&ot, "zebra%d quartz%d ", i*7919%1000, i)
	}
	otherTok := trainTok(t, ot.String(), 300)
	if otherTok.VocabSize() != tok.VocabSize() {
		t.Fatalf("fixture: other tokenizer has %d tokens, want %d", otherTok.VocabSize(), tok.VocabSize())
	}
	other := writeRunDir(t, smallCfg(false), otherTok, 3)
	corrupt := t.TempDir()
	os.WriteFile(filepath.Join(corrupt, checkpoint.FileName(1)), []byte("not a checkpoint"), 0o644)
	badGGUF := filepath.Join(t.TempDir(), "bad.gguf")
	os.WriteFile(badGGUF, []byte("GGUF but not really"), 0o644)
	long := strings.Repeat("earth ", 200)
	checkCLI(t, []cliCase{
		{[]string{"--model", target, "--prompt", ""}, 2, "empty"},
		{[]string{"--model", target, "--prompt", long}, 1, "context"},
		{[]string{"--model", filepath.Join(t.TempDir(), "nope"), "--prompt", "x"}, 1, "does not exist"},
		{[]string{"--model", corrupt, "--prompt", "x"}, 1, "checkpoint"},
		{[]string{"--model", badGGUF, "--prompt", "x"}, 1, "bad.gguf"},
		{[]string{"--model", filepath.Join(t.TempDir(), "nope.gguf"), "--prompt", "x"}, 1, "does not exist"},
		{[]string{"--model", target, "--prompt", "x", "--draft", other}, 1, "tokenizer"},
		{[]string{"--model", target, "--prompt", "x", "--temperature", "-1"}, 2, "temperature"},
		{[]string{"--prompt", "x"}, 2, "--model"},
	}, "generate")

	// bench generate prints the fields docs/generate.md lists.
	code, out, errs = moeCLI("bench", "generate", "--model", target, "--draft", draft, "--draft", "ngram", "--prompt-tokens", "8", "--gen-tokens", "8", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errs)
	}
	var bench map[string]any
	if err := json.Unmarshal([]byte(out), &bench); err != nil {
		t.Fatal(err)
	}
	if bench["prefill_tokens_per_second"].(float64) <= 0 || bench["decode_tokens_per_second"].(float64) <= 0 || bench["identical"] != true {
		t.Fatalf("bench output %s", out)
	}
	// Each draft is reported on its own.
	per, _ := bench["drafts"].([]any)
	if len(per) != 2 {
		t.Fatalf("bench reports %d drafts, want 2: %s", len(per), out)
	}
	for i, kind := range []string{"model", "ngram"} {
		d := per[i].(map[string]any)
		if d["draft_kind"] != kind || d["identical"] != true || d["speedup"].(float64) <= 0 {
			t.Fatalf("draft %d: %v", i, d)
		}
		for _, k := range []string{"acceptance_rate", "mean_accepted_length", "verify_cost_vs_plain_step"} {
			if _, ok := d[k]; !ok {
				t.Fatalf("draft %d lacks %q: %v", i, k, d)
			}
		}
	}
}

func TestChatCLI(t *testing.T) {
	text := strings.Repeat("Let there be light: and there was light. ", 30)
	tok := trainTok(t, text, 300)
	dir := writeRunDir(t, smallCfg(true), tok, 4)
	var out, errb bytes.Buffer
	in := strings.NewReader("hello there\n\nand again\n")
	if err := chatLoop(context.Background(), []string{"--model", dir, "--max-tokens", "5", "--temperature", "0"}, in, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 2 {
		t.Fatalf("want 2 replies, got %q", out.String())
	}
	// The second turn reuses the first turn's cache.
	if !strings.Contains(errb.String(), "reused") {
		t.Fatalf("stderr %q", errb.String())
	}
	stats := strings.Split(strings.TrimSpace(errb.String()), "]")
	if len(stats) < 2 || strings.Contains(stats[1], " 0 of ") {
		t.Fatalf("second turn reused nothing: %q", errb.String())
	}
}

// TestBenchGenerateConfig runs the random-weight variant of bench generate
// (--config / --draft-config) and its usage errors.
func TestBenchGenerateConfig(t *testing.T) {
	dir := t.TempDir()
	tc, dc := smallCfg(true), smallCfg(false)
	tc.VocabSize, dc.VocabSize = 300, 300
	tp, dp := filepath.Join(dir, "t.json"), filepath.Join(dir, "d.json")
	if err := tc.Save(tp); err != nil {
		t.Fatal(err)
	}
	if err := dc.Save(dp); err != nil {
		t.Fatal(err)
	}
	code, out, errs := moeCLI("bench", "generate", "--config", tp, "--draft-config", dp, "--draft", "ngram", "--prompt-tokens", "8", "--gen-tokens", "8", "--runs", "1", "--prefill-runs", "3", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res["identical"] != true || res["decode_tokens_per_second"].(float64) <= 0 || res["prefill_tokens_per_second"].(float64) <= 0 || res["prefill_runs"] != 3.0 {
		t.Fatalf("bench output %s", out)
	}
	if per, _ := res["drafts"].([]any); len(per) != 2 {
		t.Fatalf("want the ngram and the --draft-config draft reported: %s", out)
	}
	for _, args := range [][]string{
		{"--config", tp, "--draft", "some/model"},                       // a model draft needs --model
		{"--prompt-tokens", "8"},                                        // neither --model nor --config
		{"--config", tp, "--prompt-tokens", "40", "--gen-tokens", "40"}, // beyond the context of 48
		{"--config", tp, "--gen-tokens", "0"},
		{"--config", tp, "--prefill-runs", "0"},
	} {
		if code, _, errs := moeCLI(append([]string{"bench", "generate"}, args...)...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errs)
		}
	}
}

// TestChatDropsOldTurns checks that a conversation longer than the context
// keeps going by dropping its oldest turns, and that a single message too
// long for the context is an error.
func TestChatDropsOldTurns(t *testing.T) {
	tok := trainTok(t, strings.Repeat("Let there be light: and there was light. ", 30), 300)
	dir := writeRunDir(t, smallCfg(false), tok, 5)
	var out, errb bytes.Buffer
	msg := "let there be light and there was light"
	in := strings.NewReader(strings.Repeat(msg+"\n", 6))
	if err := chatLoop(context.Background(), []string{"--model", dir, "--max-tokens", "6", "--temperature", "0"}, in, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 6 {
		t.Fatalf("%d replies to 6 messages: %q", n, out.String())
	}
	long := strings.NewReader(strings.Repeat("light ", 80) + "\n")
	err := chatLoop(context.Background(), []string{"--model", dir, "--quiet"}, long, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "context") {
		t.Fatalf("over-long message: %v", err)
	}
}
