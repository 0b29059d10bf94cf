package config

import "testing"

// forwardFLOPs counts the multiply-adds (×2) of one token's forward pass at
// full context: the active matrices (attention projections, the routed
// experts a token uses or the dense FFN, the router, the LM head) and the
// attention scores and weighted values.
func forwardFLOPs(c *Config) float64 {
	d, hd, nh, nkv := float64(c.HiddenSize), float64(c.HeadDimension()), float64(c.NumHeads), float64(c.KVHeads())
	attn := d*nh*hd*2 + d*nkv*hd*2
	ffn := 3 * d * float64(c.IntermediateSize)
	if c.IsMoE() {
		ffn = 3*d*float64(c.ExpertSize())*float64(c.ExpertsPerToken) + d*float64(c.NumExperts)
	}
	scores := 2 * float64(c.MaxPositionEmbeddings) * nh * hd
	return 2*(float64(c.NumLayers)*(attn+ffn+scores)) + 2*d*float64(c.VocabSize)
}

func TestTinyPresets(t *testing.T) {
	tiny, ok1 := Preset("tiny")
	draft, ok2 := Preset("tiny-draft")
	if !ok1 || !ok2 {
		t.Fatal("tiny presets missing")
	}
	for _, c := range []*Config{tiny, draft} {
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	if !tiny.IsMoE() || tiny.NumExperts != 8 || tiny.ExpertsPerToken != 2 {
		t.Fatalf("tiny should be an 8-expert top-2 MoE: %+v", tiny)
	}
	if draft.IsMoE() || draft.VocabSize != tiny.VocabSize || draft.MaxPositionEmbeddings != tiny.MaxPositionEmbeddings {
		t.Fatalf("tiny-draft should be dense with tiny's vocabulary and context: %+v", draft)
	}
	if r := forwardFLOPs(tiny) / forwardFLOPs(draft); r < 10 {
		t.Fatalf("tiny-draft is only %.1fx cheaper per token than tiny, want >= 10x", r)
	}
}
