package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// lossAndGrad runs one forward and backward pass at precision p on a fresh
// model of cfg with a pool of threads threads.
func lossAndGrad(t *testing.T, cfg *config.Config, p Precision, threads int, tokens, targets []int32, B, T int) (float64, []float32) {
	t.Helper()
	pool := compute.NewPool(threads)
	defer pool.Close()
	m := initModel(t, cfg, pool, 5)
	m.SetPrecision(p)
	st, err := m.Forward(tokens, targets, B, T)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Backward(); err != nil {
		t.Fatal(err)
	}
	return st.Loss, slices.Clone(m.G.Flat)
}

// TestBF16Precision: bf16 matmuls change the loss and gradients (they
// really round), but only at bf16's relative precision (the loss within
// 1%, the gradient's direction within a cosine of 0.999 of float32's), and
// the gradients do not depend on the thread count.
func TestBF16Precision(t *testing.T) {
	cfg := toyConfig()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.VocabSize, cfg.InitStd = 32, 48, 50, 0.1
	r := rand.New(rand.NewPCG(1, 9))
	const B, T = 3, 40
	tokens, targets := toyBatch(r, cfg.VocabSize, B, T)
	l32, g32 := lossAndGrad(t, cfg, F32, 2, tokens, targets, B, T)
	l16, g16 := lossAndGrad(t, cfg, BF16, 2, tokens, targets, B, T)
	if l16 == l32 || slices.Equal(g16, g32) {
		t.Fatalf("bf16 gave float32's loss %v and gradients: the matmuls did not round", l32)
	}
	if math.Abs(l16-l32) > 0.01*math.Abs(l32) {
		t.Fatalf("bf16 loss %v vs float32 %v: more than 1%% apart", l16, l32)
	}
	var dot, n32, n16 float64
	for i := range g32 {
		dot += float64(g32[i]) * float64(g16[i])
		n32 += float64(g32[i]) * float64(g32[i])
		n16 += float64(g16[i]) * float64(g16[i])
	}
	cos := dot / math.Sqrt(n32*n16)
	if !(cos > 0.999) {
		t.Fatalf("bf16 gradient cosine to float32's %v", cos)
	}
	t.Logf("loss float32 %.6f, bf16 %.6f; gradient cosine %.6f", l32, l16, cos)
	moe := moeToy(func(c *config.Config) { c.SharedExpertIntermediateSize = 5 })
	tokens, targets = toyBatch(r, moe.VocabSize, B, T)
	la, ga := lossAndGrad(t, moe, BF16, 1, tokens, targets, B, T)
	lb, gb := lossAndGrad(t, moe, BF16, 3, tokens, targets, B, T)
	// The loss's float64 reduction may differ in its last bit with the
	// thread count (as in float32); every gradient bit may not.
	if math.Abs(la-lb) > 1e-12*math.Abs(la) || !slices.Equal(ga, gb) {
		t.Fatalf("bf16 MoE with 1 and 3 threads: losses %v, %v; gradients equal %v", la, lb, slices.Equal(ga, gb))
	}
}

func TestParsePrecision(t *testing.T) {
	for s, want := range map[string]Precision{"": F32, "float32": F32, "fp32": F32, "bf16": BF16, "bfloat16": BF16} {
		if p, err := ParsePrecision(s); err != nil || p != want {
			t.Errorf("ParsePrecision(%q) = %v, %v; want %v", s, p, err, want)
		}
	}
	if _, err := ParsePrecision("fp8"); err == nil {
		t.Error("ParsePrecision(fp8): no error")
	}
}

// TestBF16CopiesSameBits: the bf16 copies that the norms, SwiGLU and its
// backward and the combine backward write for the next product give the
// same loss and gradient bits as products that convert their float32 A
// themselves (dense, MoE with an odd-width shared expert that falls back,
// MoE with an even one), and the copies are really used.
func TestBF16CopiesSameBits(t *testing.T) {
	dense := toyConfig()
	dense.HiddenSize, dense.IntermediateSize, dense.VocabSize, dense.InitStd = 32, 48, 50, 0.1
	cfgs := map[string]*config.Config{
		"dense":       dense,
		"moe-shared5": moeToy(func(c *config.Config) { c.SharedExpertIntermediateSize = 5 }),
		"moe-shared6": moeToy(func(c *config.Config) { c.SharedExpertIntermediateSize = 6 }),
		// The family pieces: gated shared expert, biases, clamped SwiGLU,
		// sinks, Granite's scales and a dense layer among sparse ones.
		"gated-granite-mixed": moeToy(func(c *config.Config) {
			c.SharedExpertIntermediateSize, c.SharedExpertGate, c.DecoderSparseStep = 6, true, 2
			granite(c)
		}),
		"gpt_oss-pieces": moeToy(func(c *config.Config) {
			c.AttentionBias, c.AttentionSinks, c.RouterBias, c.ExpertBias, c.SwiGLULimit = true, true, true, true, 0.7
		}),
	}
	r := rand.New(rand.NewPCG(2, 7))
	const B, T = 2, 24
	for name, cfg := range cfgs {
		tokens, targets := toyBatch(r, cfg.VocabSize, B, T)
		run := func(noCopies bool) (float64, []float32, bool) {
			pool := compute.NewPool(2)
			defer pool.Close()
			m := initModel(t, cfg, pool, 5)
			m.SetPrecision(BF16)
			m.noBF16Copies = noCopies
			st, err := m.Forward(tokens, targets, B, T)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Backward(); err != nil {
				t.Fatal(err)
			}
			return st.Loss, slices.Clone(m.G.Flat), m.a.xn16 != nil
		}
		l0, g0, used0 := run(true)
		l1, g1, used1 := run(false)
		if used0 || !used1 {
			t.Fatalf("%s: bf16 copies used without them %v, with them %v", name, used0, used1)
		}
		if math.Float64bits(l0) != math.Float64bits(l1) || !slices.Equal(g0, g1) {
			t.Fatalf("%s: loss %v with the producers' bf16 copies, %v without; gradients equal %v", name, l1, l0, slices.Equal(g0, g1))
		}
	}
}
