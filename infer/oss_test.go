package infer

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moe-llm/moe/compute"
)

// TestGPTOSSBatchedAndSpeculative checks that gpt-oss's pieces (sinks, the
// sliding window, biases, the clamped SwiGLU) take the same path in a
// batch of sequences at different positions as alone, and that speculative
// decoding with the model as its own draft (verification passes of
// several positions, past the window) gives the plain greedy tokens.
func TestGPTOSSBatchedAndSpeculative(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	path := filepath.Join("testdata", "family", "gpt-oss-f32.gguf")
	m, err := Load(path, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if w := m.Cfg.AttentionWindow(0); w <= 0 || w >= 7 {
		t.Fatalf("layer 0's window %d: the test needs one shorter than its prompts", w)
	}
	V := m.Cfg.VocabSize
	a := []int32{84, 258, 39, 101, 3, 200, 257, 17, 66}
	b := []int32{120, 7, 44}
	// Alone: a's 9 positions, then b's 3, then one more token each.
	alone := func(toks []int32, next int32) ([]float32, []float32) {
		s := m.NewSeq(0)
		pre, err := m.Forward([]*Seq{s}, [][]int32{toks}, true)
		if err != nil {
			t.Fatal(err)
		}
		step, err := m.Forward([]*Seq{s}, [][]int32{{next}}, false)
		if err != nil {
			t.Fatal(err)
		}
		return pre[0], step[0]
	}
	preA, stepA := alone(a, 5)
	preB, stepB := alone(b, 9)
	// Together, in one batch each time.
	sa, sb := m.NewSeq(0), m.NewSeq(0)
	pre, err := m.Forward([]*Seq{sa, sb}, [][]int32{a, b}, true)
	if err != nil {
		t.Fatal(err)
	}
	step, err := m.Forward([]*Seq{sa, sb}, [][]int32{{5}, {9}}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want []float32
	}{{"a prefill", pre[0], preA}, {"b prefill", pre[1], preB}, {"a step", step[0], stepA}, {"b step", step[1], stepB}} {
		if len(c.got) != len(c.want) || len(c.got)%V != 0 {
			t.Fatalf("%s: %d logits, alone %d", c.name, len(c.got), len(c.want))
		}
		var worst float64
		for i := range c.got {
			worst = math.Max(worst, math.Abs(float64(c.got[i]-c.want[i])))
		}
		if worst > 1e-5 {
			t.Errorf("%s: batched logits differ from alone by %.3g", c.name, worst)
		}
	}

	ctx := context.Background()
	opts := GenerateOptions{MaxTokens: 40, IgnoreEOT: true}
	plain, err := m.Generate(ctx, a, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Tokens) != 40 {
		t.Fatalf("plain: %d tokens (%s)", len(plain.Tokens), plain.StopReason)
	}
	draft, err := Load(path, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer draft.Close()
	for _, k := range []int{1, 4} {
		o := opts
		o.Draft, o.DraftTokens, o.FixedDraftTokens = draft, k, true
		res, err := m.Generate(ctx, a, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Tokens, plain.Tokens) || res.Proposed == 0 {
			t.Fatalf("K=%d: speculative greedy (%d proposed) differs from plain:\n%v\n%v", k, res.Proposed, res.Tokens, plain.Tokens)
		}
	}
}
