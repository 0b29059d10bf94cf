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
		`"topk_method":"sparse_greedy"`:                          "topk_method: unknown",
		`"topk_method":"noaux_tc","moe_routing":"expert_choice"`: "topk_method: \"noaux_tc\" needs token-choice",
		`"routed_scaling_factor":-1`:                             "routed_scaling_factor",
		`"moe_router_bias_update_rate":-0.1`:                     "moe_router_bias_update_rate",
	} {
		if _, err := Parse([]byte(add(extra))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", extra, err, want)
		}
	}
}

// TestGroupLimited checks n_group/topk_group: what GroupLimited reports and
// the configs validation refuses, each naming the field.
func TestGroupLimited(t *testing.T) {
	base, err := Parse([]byte(goodMixtral)) // 4 experts, top-2
	if err != nil {
		t.Fatal(err)
	}
	if g, _, _ := base.GroupLimited(); g != 0 {
		t.Fatalf("no groups: GroupLimited = %d", g)
	}
	ok := base.Clone()
	ok.NGroup, ok.TopKGroup, ok.TopKMethod = 2, 1, TopKGroupLimited
	if g, u, byMax := ok.GroupLimited(); g != 2 || u != 1 || !byMax {
		t.Fatalf("GroupLimited = %d, %d, %v", g, u, byMax)
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		groups, used int
		method, want string
	}{
		{3, 1, "", "n_group: 3 does not divide"},
		{2, 0, "", "topk_group: must be at least 1"},
		{4, 1, "", "two best"},
		{4, 1, TopKGroupLimited, "fewer than num_experts_per_tok"},
		{-1, 0, "", "must not be negative"},
	} {
		bad := base.Clone()
		bad.NGroup, bad.TopKGroup, bad.TopKMethod = c.groups, c.used, c.method
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("n_group %d topk_group %d %q: err = %v, want %q", c.groups, c.used, c.method, err, c.want)
		}
	}
}
