package config

import (
	"math"
	"strings"
	"testing"
)

// TestDeepseekConfigs parses the DeepSeek presets (real config.json files)
// and checks the fields their definitions imply, the MLA score scale, and
// that bad latent attention fields are refused by name.
func TestDeepseekConfigs(t *testing.T) {
	lite, _ := Preset("deepseek-v2-lite")
	v3, _ := Preset("deepseek-v3")
	if lite == nil || v3 == nil {
		t.Fatal("deepseek presets missing")
	}
	switch {
	case !lite.MLA() || lite.HeadDimension() != 192 || lite.RopeDim() != 64 || lite.QLoraRank != 0:
		t.Errorf("lite attention: %+v", lite)
	case lite.SharedExpertIntermediateSize != 2*1408 || len(lite.MLPOnlyLayers) != 1 || lite.LayerIsMoE(0) || !lite.LayerIsMoE(1):
		t.Errorf("lite experts: shared %d, dense %v", lite.SharedExpertIntermediateSize, lite.MLPOnlyLayers)
	case lite.NGroup != 0 || lite.SigmoidScoring() || lite.HasRouterScoreBias():
		t.Errorf("lite routing: groups %d, sigmoid %v", lite.NGroup, lite.SigmoidScoring())
	case v3.QLoraRank != 1536 || len(v3.MLPOnlyLayers) != 3 || !v3.SigmoidScoring() || !v3.HasRouterScoreBias() || v3.RoutedScale() != 2.5:
		t.Errorf("v3: %+v", v3)
	}
	if g, u, byMax := v3.GroupLimited(); g != 8 || u != 4 || byMax {
		t.Errorf("v3 groups: %d, %d, %v", g, u, byMax)
	}
	m := 0.1*0.707*math.Log(40) + 1
	if got, want := lite.MLASoftmaxScale(), m*m/math.Sqrt(192); math.Abs(got-want) > 1e-12 {
		t.Errorf("lite softmax scale %v, want %v", got, want)
	}
	data, err := hfConfigs.ReadFile("hf/deepseek-v2-lite.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to, want string }{
		{`"kv_lora_rank": 512,`, ``, "kv_lora_rank: missing"},
		{`"qk_rope_head_dim": 64`, `"qk_rope_head_dim": 63`, "qk_rope_head_dim: must be positive and even"},
		{`"moe_layer_freq": 1`, `"moe_layer_freq": 2`, "moe_layer_freq: 2 is not supported"},
		{`"n_routed_experts": 64,`, ``, "n_routed_experts: missing"},
		{`"topk_method": "greedy"`, `"topk_method": "group_limited_greedy"`, ""},
	} {
		s := strings.Replace(string(data), c.from, c.to, 1)
		_, err := Parse([]byte(s))
		if c.want == "" {
			if err != nil {
				t.Errorf("%s → %s: %v", c.from, c.to, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s → %s: err = %v, want %q", c.from, c.to, err, c.want)
		}
	}
}
