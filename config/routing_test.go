package config

import (
	"strings"
	"testing"
)

// TestScoringFields checks that the DeepSeek-V3 routing fields are read
// under their Hugging Face names, survive Marshal/Parse, default sensibly
// and reject bad values with the field's name.
func TestScoringFields(t *testing.T) {
	add := func(extra string) string {
		return strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":64,`+extra, 1)
	}
	c, err := Parse([]byte(add(`"scoring_func":"sigmoid","topk_method":"noaux_tc","routed_scaling_factor":2.5,"moe_router_bias_update_rate":0.002`)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.SigmoidScoring() || !c.HasRouterScoreBias() || c.RoutedScale() != 2.5 || c.BiasUpdateRate() != 0.002 {
		t.Fatalf("fields not read: %+v", c)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(b)
	if err != nil || c2.ScoringFunc != c.ScoringFunc || c2.TopKMethod != c.TopKMethod ||
		c2.RoutedScalingFactor != 2.5 || c2.RouterBiasUpdateRate != 0.002 {
		t.Fatalf("round trip: %+v, %v", c2, err)
	}
	plain, _ := Parse([]byte(goodMixtral))
	if plain.SigmoidScoring() || plain.HasRouterScoreBias() || plain.RoutedScale() != 1 || plain.BiasUpdateRate() != DefaultRouterBiasUpdateRate {
		t.Fatalf("defaults: %+v", plain)
	}
	for extra, want := range map[string]string{
		`"scoring_func":"tanh"`:                                  "scoring_func: unknown",
		`"topk_method":"group_limited_greedy"`:                   "topk_method: unknown",
		`"topk_method":"noaux_tc","moe_routing":"expert_choice"`: "topk_method: \"noaux_tc\" needs token-choice",
		`"routed_scaling_factor":-1`:                             "routed_scaling_factor",
		`"moe_router_bias_update_rate":-0.1`:                     "moe_router_bias_update_rate",
	} {
		if _, err := Parse([]byte(add(extra))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", extra, err, want)
		}
	}
}
