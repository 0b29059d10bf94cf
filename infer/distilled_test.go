package infer_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/train"
)

// TestDistilledDraftSamplingExact runs the chi-square test of speculative
// sampling (CheckSpeculativeDistribution: the joint distribution of the
// first two sampled tokens must be the target's) with a draft made by
// train.Distill for a Q8_0 GGUF target: a draft trained toward it, so
// that proposals pass through the acceptance branch as well as the
// residual one, on the quantized-GGUF path. (A random target distils
// slowly: in these few steps the KL falls by two thirds, and a few percent
// of the proposals are accepted.)
func TestDistilledDraftSamplingExact(t *testing.T) {
	if testing.Short() {
		t.Skip("distils a draft and samples 6000 times; run without -short")
	}
	dir := t.TempDir()
	text := strings.Repeat("In the beginning God created the heaven and the earth. And the earth was without form, and void. ", 40)
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte(text)) }, 300)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{ModelType: "mixtral", VocabSize: tok.VocabSize(), HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64, RopeTheta: 10000, RMSNormEps: 1e-5, InitStd: 0.3,
		TieWordEmbeddings: true, NumExperts: 4, ExpertsPerToken: 2}
	rm, err := infer.RandomModel(cfg, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target.gguf")
	if err := gguf.Export(context.Background(), target, cfg, rm.W, tok, gguf.ExportOptions{Type: gguf.Q8_0, AllowInexact: true}); err != nil {
		t.Fatal(err)
	}
	dc := *cfg
	dc.NumExperts, dc.ExpertsPerToken = 0, 0
	draftCfg := filepath.Join(dir, "draft.json")
	if err := dc.Save(draftCfg); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(data, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "draft")
	sum, err := train.Distill(context.Background(), train.DistillOptions{Target: target, Config: draftCfg, Data: data, Out: out,
		Steps: 200, Batch: 4, SeqLen: 32, LR: 3e-3, Warmup: 5, Seed: 3, Threads: 1, EvalPrompts: 4, EvalTokens: 12},
		io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !(sum.KL < 0.6*sum.KLFirst) {
		t.Fatalf("distillation did not learn: KL %.3f -> %.3f", sum.KLFirst, sum.KL)
	}
	pool := compute.NewPool(1)
	t.Cleanup(pool.Close)
	load := func(path string) *infer.Model {
		m, err := infer.Load(path, pool)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	t.Logf("distilled: KL %.3f -> %.3f, greedy acceptance %.2f -> %.2f", sum.KLFirst, sum.KL, sum.AcceptBefore, sum.AcceptAfter)
	tm, dm := load(target), load(out)
	prompt := tok.Encode([]byte("And the earth was"))
	infer.CheckSpeculativeDistribution(t, tm, dm, prompt, false, infer.SampleOptions{Temperature: 1, TopK: 20})
}
