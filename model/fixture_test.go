package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// fixture is model/testdata/moe_fixture.bin, written by make_fixture.py
// (PyTorch, float64).
type fixture struct {
	Config  config.Config `json:"config"`
	B, T    int
	Tokens  []int32   `json:"tokens"`
	Targets []int32   `json:"targets"`
	Loss    float64   `json:"loss"`
	CELoss  float64   `json:"ce_loss"`
	Losses  []float64 `json:"losses"`
	AdamW   struct {
		LR, Beta1, Beta2, Eps float64
		WeightDecay           float64 `json:"weight_decay"`
	} `json:"adamw"`
	Sections []struct {
		Name string `json:"name"`
		Len  int    `json:"len"`
	} `json:"sections"`
	data map[string][]float32
}

func readFixture(path string) (*fixture, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	const magic = "MOEFIX1\n"
	if !bytes.HasPrefix(raw, []byte(magic)) || len(raw) < len(magic)+4 {
		return nil, fmt.Errorf("%s: not a moe fixture", path)
	}
	raw = raw[len(magic):]
	hl := int(binary.LittleEndian.Uint32(raw))
	raw = raw[4:]
	if hl > len(raw) {
		return nil, fmt.Errorf("%s: truncated header", path)
	}
	f := &fixture{data: map[string][]float32{}}
	if err := json.Unmarshal(raw[:hl], f); err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	raw = raw[hl:]
	for _, s := range f.Sections {
		if len(raw) < 4*s.Len {
			return nil, fmt.Errorf("%s: section %s truncated", path, s.Name)
		}
		v := make([]float32, s.Len)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		f.data[s.Name] = v
		raw = raw[4*s.Len:]
	}
	return f, nil
}

// TestMatchesPyTorch compares logits, every parameter's gradient and the
// losses of 10 AdamW steps with the PyTorch implementation in
// testdata/make_fixture.py, as llm.c's test_gpt2 does: the main fixture
// (token-choice top-2 of 4, GQA), softmax-then-top-k with renormalisation,
// capacity dropping, a shared expert and tied embeddings, and expert choice.
func TestMatchesPyTorch(t *testing.T) {
	for _, name := range []string{"moe_fixture.bin", "moe_fixture_softmax_topk.bin", "moe_fixture_expert_choice.bin"} {
		t.Run(name, func(t *testing.T) { matchFixture(t, "testdata/"+name) })
	}
}

func matchFixture(t *testing.T, path string) {
	fx, err := readFixture(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fx.Config
	m, err := New(&cfg, compute.NewPool(2))
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.data["weights"]) != len(m.W.Flat) {
		t.Fatalf("fixture has %d weights, model %d", len(fx.data["weights"]), len(m.W.Flat))
	}
	copy(m.W.Flat, fx.data["weights"])
	st, err := m.Forward(fx.Tokens, fx.Targets, fx.B, fx.T)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CapacityFactor > 0 && cfg.Routing != config.RoutingExpertChoice && st.DroppedFrac == 0 {
		t.Errorf("capacity factor %v dropped nothing", cfg.CapacityFactor)
	}
	// Logits.
	want := fx.data["logits"]
	var maxDiff float64
	for i, v := range m.Logits() {
		maxDiff = math.Max(maxDiff, math.Abs(float64(v-want[i])))
	}
	t.Logf("logits: max |Δ| = %.3g", maxDiff)
	if maxDiff > 5e-5 {
		t.Errorf("logits differ from PyTorch by up to %.3g", maxDiff)
	}
	t.Logf("loss %.7f (PyTorch %.7f), CE %.7f (PyTorch %.7f)", st.Loss, fx.Loss, st.CELoss, fx.CELoss)
	if math.Abs(st.Loss-fx.Loss) > 1e-5 || math.Abs(st.CELoss-fx.CELoss) > 1e-5 {
		t.Errorf("loss %.7f / CE %.7f, PyTorch %.7f / %.7f", st.Loss, st.CELoss, fx.Loss, fx.CELoss)
	}
	// Gradients, tensor by tensor.
	m.ZeroGrad()
	if err := m.Backward(); err != nil {
		t.Fatal(err)
	}
	wantG := fx.data["grads"]
	off := 0
	var worst float64
	m.G.Visit(&cfg, func(name string, g []float32) {
		var num, den, maxAbs float64
		for i, v := range g {
			w := float64(wantG[off+i])
			num += (float64(v) - w) * (float64(v) - w)
			den += w * w
			maxAbs = math.Max(maxAbs, math.Abs(w))
		}
		off += len(g)
		rel := math.Sqrt(num / math.Max(den, 1e-30))
		worst = math.Max(worst, rel)
		if rel > 1e-4 {
			t.Errorf("%s: gradient relative L2 error %.3g vs PyTorch (max |g| %.3g)", name, rel, maxAbs)
		}
	})
	t.Logf("gradients: worst per-tensor relative L2 error %.3g", worst)

	// Ten AdamW steps on the same batch.
	mom := make([]float32, len(m.W.Flat))
	vel := make([]float32, len(m.W.Flat))
	h := fx.AdamW
	for step := 1; step <= len(fx.Losses); step++ {
		m.ZeroGrad()
		st, err := m.Forward(fx.Tokens, fx.Targets, fx.B, fx.T)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Backward(); err != nil {
			t.Fatal(err)
		}
		compute.AdamWMasked(m.W.Flat, m.G.Flat, mom, vel, m.W.NoDecay, float32(h.LR), float32(h.Beta1),
			float32(h.Beta2), float32(h.Eps), float32(h.WeightDecay), step)
		w := fx.Losses[step-1]
		t.Logf("step %d: loss %.6f PyTorch %.6f", step, st.Loss, w)
		if math.Abs(st.Loss-w) > 2e-5*math.Max(1, w) {
			t.Errorf("step %d: loss %.6f, PyTorch %.6f", step, st.Loss, w)
		}
	}
}
