package gguf

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
)

// TestDeepseek2Config checks the configs and matrices the deepseek2
// fixtures map onto.
func TestDeepseek2Config(t *testing.T) {
	for _, c := range []struct {
		name  string
		check func(*config.Config) bool
	}{
		{"deepseek2", func(c *config.Config) bool {
			rs := c.RopeScaling
			return c.ModelType == config.TypeDeepseekV2 && c.KVLoraRank == 32 && c.QLoraRank == 0 &&
				c.QKNopeHeadDim == 32 && c.QKRopeHeadDim == 16 && c.VHeadDim == 32 && !c.SigmoidScoring() &&
				!c.NormTopKProb && c.RoutedScale() == 1 && rs != nil && rs.Type == config.RopeYaRN && rs.Factor == 4 &&
				rs.OriginalMaxPositionEmbeddings == 64 && math.Abs(rs.MscaleAllDim-0.707) < 1e-6 && rs.Mscale == rs.MscaleAllDim
		}},
		{"deepseek2v3", func(c *config.Config) bool {
			g, u, byMax := c.GroupLimited()
			return c.ModelType == config.TypeDeepseekV3 && c.QLoraRank == 32 && c.SigmoidScoring() &&
				c.HasRouterScoreBias() && c.NormTopKProb && c.RoutedScale() == 2.5 && g == 4 && u == 2 && !byMax &&
				c.RopeScaling == nil
		}},
		{"deepseek2kvb", func(c *config.Config) bool {
			return c.ModelType == config.TypeDeepseekV2 && c.QKNopeHeadDim == 32 && c.VHeadDim == 32
		}},
	} {
		mm, err := OpenModel(familyFixture(c.name, "q8_0"), PlaceMapped)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		cfg := mm.Cfg
		if !c.check(cfg) || cfg.LayerIsMoE(0) || !cfg.LayerIsMoE(1) || cfg.SharedExpertIntermediateSize != 32 {
			t.Errorf("%s: config %+v", c.name, *cfg)
		}
		a := mm.Layers[1].MLA
		if a == nil || len(a.KB) != 4 || len(a.VB) != 4 || a.KB[0].Rows != 32 || a.KB[0].Cols != 32 || a.KVA.Rows != 48 {
			t.Fatalf("%s: latent attention matrices %+v", c.name, a)
		}
		if c.name == "deepseek2kvb" {
			// The key rows transposed into float32, the value rows in place.
			if a.KB[0].Type != F32 || a.VB[0].Type != Q8_0 {
				t.Errorf("%s: k_b %v, v_b %v, want f32 and q8_0", c.name, a.KB[0].Type, a.VB[0].Type)
			}
		} else if a.KB[0].Type != Q8_0 {
			t.Errorf("%s: k_b %v, want q8_0 kept as stored", c.name, a.KB[0].Type)
		}
		mm.Close()
	}
}

// TestDeepseek2BadShape checks that a deepseek2 tensor of the wrong shape
// is a one-line error naming it, and that the file is refused as training
// weights naming latent attention.
func TestDeepseek2BadShape(t *testing.T) {
	for _, c := range []struct{ fixture, name string }{
		{"deepseek2", "blk.1.attn_k_b.weight"}, {"deepseek2", "blk.0.attn_kv_a_mqa.weight"},
		{"deepseek2v3", "blk.1.attn_q_b.weight"}, {"deepseek2v3", "blk.1.exp_probs_b.bias"},
		{"deepseek2kvb", "blk.1.attn_kv_b.weight"}, {"deepseek2", "blk.0.ffn_gate.weight"},
	} {
		f, err := Open(familyFixture(c.fixture, "f32"))
		if err != nil {
			t.Fatal(err)
		}
		ti, ok := f.Tensor(c.name)
		if !ok {
			t.Fatalf("no %s", c.name)
		}
		ti.Dims[0] *= 2
		_, err = mapModel(f)
		f.Close()
		if err == nil || !strings.Contains(err.Error(), `"`+c.name+`"`) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s with doubled dims: got %v, want a one-line error naming it", c.name, err)
		}
	}
	_, _, _, err := ReadModel(context.Background(), familyFixture("deepseek2", "f32"))
	if err == nil || !strings.Contains(err.Error(), "inference only") || !strings.Contains(err.Error(), "latent attention") {
		t.Fatalf("got %v, want an error saying the file runs for inference only (latent attention)", err)
	}
}
