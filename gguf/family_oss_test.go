package gguf

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// TestGPTOSSConfig checks the config and tensors a gpt-oss file (as
// llama.cpp's converter writes it) maps onto: biases, sinks, the clamped
// SwiGLU, the sliding window on even layers, YaRN from the rope.scaling
// keys, post_attention_norm as the FFN norm, MXFP4 experts kept as stored.
func TestGPTOSSConfig(t *testing.T) {
	mm, err := OpenModel(familyFixture(ArchGPTOSS, "q8_0"), PlaceMapped)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	c := mm.Cfg
	if c.ModelType != config.TypeGPTOSS || !c.AttentionBias || !c.AttentionSinks || !c.RouterBias || !c.ExpertBias ||
		c.SwiGLULimit != 7 || c.RouterOrder != config.RouterTopKSoftmax || c.NormTopKProb || c.HeadDim != 32 ||
		c.MoEIntermediateSize != 32 || c.SlidingWindow != 4 || c.TieWordEmbeddings ||
		!slices.Equal(c.LayerTypes, []string{config.LayerSlidingAttention, config.LayerFullAttention}) ||
		c.AttentionWindow(0) != 4 || c.AttentionWindow(1) != 0 {
		t.Errorf("config %+v", *c)
	}
	if rs := c.RopeScaling; rs == nil || rs.Type != config.RopeYaRN || rs.Factor != 4 || rs.OriginalMaxPositionEmbeddings != 64 ||
		!rs.YaRNTruncate() || rs.BetaFast != 0 || rs.BetaSlow != 0 {
		t.Errorf("rope scaling %+v, want yarn ×4 from 64 positions, truncated, default betas (as ggml)", rs)
	}
	L := mm.Layers[1]
	if len(L.Sinks) != 4 || len(L.OBias) != 64 || len(L.RouterBias) != 4 || len(L.QBias) != 128 || len(L.KBias) != 64 || len(L.VBias) != 64 || len(L.FFNNorm) != 64 {
		t.Errorf("layer 1 vectors: sinks %d, o bias %d, router bias %d, q/k/v bias %d/%d/%d, ffn norm %d",
			len(L.Sinks), len(L.OBias), len(L.RouterBias), len(L.QBias), len(L.KBias), len(L.VBias), len(L.FFNNorm))
	}
	for e, x := range L.Experts {
		if x.Gate.Type != compute.QMXFP4 || x.Down.Type != compute.QMXFP4 || len(x.GateBias) != 32 || len(x.UpBias) != 32 || len(x.DownBias) != 64 {
			t.Errorf("expert %d: types %v/%v, biases %d/%d/%d", e, x.Gate.Type, x.Down.Type, len(x.GateBias), len(x.UpBias), len(x.DownBias))
		}
	}
	if L.Q.Type != Q8_0 {
		t.Errorf("attention q type %v, want q8_0", L.Q.Type)
	}
	// The expert biases are the file's rows: expert 2's down bias is the
	// third row of blk.1.ffn_down_exps.bias.
	all := make([]float32, 64*4)
	if err := mm.f.ReadFloat32("blk.1.ffn_down_exps.bias", all); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(L.Experts[2].DownBias, all[128:192]) {
		t.Error("expert 2's down bias is not row 2 of ffn_down_exps.bias")
	}
}

// TestOSSRopeScaling checks the rope.scaling keys: YaRN and linear read,
// an unknown type, betas, attention or extrapolation factors that llama.cpp
// would not use refused by name.
func TestOSSRopeScaling(t *testing.T) {
	p := ArchGPTOSS + ".rope.scaling."
	for _, c := range []struct {
		kvs  []KV
		want string // error substring; "" for success
		typ  string
	}{
		{nil, "", ""},
		{[]KV{{p + "type", "none"}}, "", ""},
		{[]KV{{p + "type", "yarn"}, {p + "factor", float32(8)}, {p + "original_context_length", uint32(512)},
			{p + "yarn_beta_fast", float32(32)}, {p + "yarn_beta_slow", float32(1)}}, "", config.RopeYaRN},
		{[]KV{{p + "type", "linear"}, {p + "factor", float32(2)}}, "", config.RopeLinear},
		{[]KV{{p + "type", "longrope"}, {p + "factor", float32(2)}}, p + "type longrope", ""},
		{[]KV{{p + "type", "yarn"}}, p + "factor", ""},
		{[]KV{{p + "type", "yarn"}, {p + "factor", float32(8)}, {p + "yarn_beta_fast", float32(16)}}, p + "yarn_beta_fast 16", ""},
		{[]KV{{p + "type", "yarn"}, {p + "factor", float32(8)}, {p + "attn_factor", float32(0.5)}}, p + "attn_factor 0.5", ""},
		{[]KV{{p + "type", "yarn"}, {p + "factor", float32(8)}, {p + "yarn_ext_factor", float32(0)}}, p + "yarn_ext_factor 0", ""},
	} {
		path := filepath.Join(t.TempDir(), "keys.gguf")
		if err := WriteFile(context.Background(), path, append([]KV{{"general.architecture", ArchGPTOSS}}, c.kvs...), nil); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := ossRopeScaling(f, newKeyReader(f, ArchGPTOSS))
		f.Close()
		switch {
		case c.want != "":
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v: got %v, %v; want an error naming %s", c.kvs, rs, err, c.want)
			}
		case err != nil:
			t.Errorf("%v: %v", c.kvs, err)
		case c.typ == "" && rs != nil, c.typ != "" && (rs == nil || rs.Type != c.typ):
			t.Errorf("%v: got %+v, want type %q", c.kvs, rs, c.typ)
		}
	}
}
