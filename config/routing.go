package config

import (
	"fmt"
	"math"
)

// Router scoring functions (scoring_func).
const (
	// ScoringSoftmax scores experts with a softmax over the router logits
	// (the default).
	ScoringSoftmax = "softmax"
	// ScoringSigmoid scores each expert independently with σ(logit)
	// (DeepSeek-V3).
	ScoringSigmoid = "sigmoid"
)

// Top-k selection methods (topk_method).
const (
	// TopKGreedy selects the experts of highest score (the default).
	TopKGreedy = "greedy"
	// TopKNoAuxTC selects by score plus a per-expert bias that training
	// moves towards balanced load after every optimizer step
	// (auxiliary-loss-free balancing, DeepSeek-V3); the combine weights
	// use the unbiased scores.
	TopKNoAuxTC = "noaux_tc"
	// TopKGroupLimited selects within the TopKGroup of NGroup expert
	// groups whose best score is highest (DeepSeek-V2); other methods
	// with groups rank a group by the sum of its two best scores
	// (DeepSeek-V3, and llama.cpp for every deepseek2 file).
	TopKGroupLimited = "group_limited_greedy"
)

// DefaultRouterBiasUpdateRate is the bias step γ of loss-free balancing
// when moe_router_bias_update_rate is unset (DeepSeek-V3's value).
const DefaultRouterBiasUpdateRate = 0.001

// SigmoidScoring reports whether router scores are σ(logit) rather than a
// softmax.
func (c *Config) SigmoidScoring() bool { return c.ScoringFunc == ScoringSigmoid }

// HasRouterScoreBias reports whether each MoE layer carries a selection
// bias per expert (topk_method noaux_tc).
func (c *Config) HasRouterScoreBias() bool { return c.IsMoE() && c.TopKMethod == TopKNoAuxTC }

// RoutedScale returns routed_scaling_factor, or 1 when it is unset.
func (c *Config) RoutedScale() float64 {
	if c.RoutedScalingFactor > 0 {
		return c.RoutedScalingFactor
	}
	return 1
}

// BiasUpdateRate returns moe_router_bias_update_rate, or
// DefaultRouterBiasUpdateRate when it is unset.
func (c *Config) BiasUpdateRate() float64 {
	if c.RouterBiasUpdateRate > 0 {
		return c.RouterBiasUpdateRate
	}
	return DefaultRouterBiasUpdateRate
}

// ValidateScoring checks scoring_func, topk_method, routed_scaling_factor and
// moe_router_bias_update_rate.
func (c *Config) ValidateScoring() error {
	switch c.ScoringFunc {
	case "", ScoringSoftmax, ScoringSigmoid:
	default:
		return fmt.Errorf("scoring_func: unknown %q (want %q or %q)", c.ScoringFunc, ScoringSoftmax, ScoringSigmoid)
	}
	switch c.TopKMethod {
	case "", TopKGreedy, TopKGroupLimited:
	case TopKNoAuxTC:
		if c.Routing == RoutingExpertChoice {
			return fmt.Errorf("topk_method: %q needs token-choice routing (moe_routing is %q)", c.TopKMethod, c.Routing)
		}
	default:
		return fmt.Errorf("topk_method: unknown %q (want %q, %q or %q)", c.TopKMethod, TopKGreedy, TopKNoAuxTC, TopKGroupLimited)
	}
	if err := c.validateGroups(); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"routed_scaling_factor", c.RoutedScalingFactor},
		{"moe_router_bias_update_rate", c.RouterBiasUpdateRate},
	} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return fmt.Errorf("%s: must be a finite non-negative number (got %v)", f.name, f.v)
		}
	}
	return nil
}

// GroupLimited returns the expert groups of group-limited routing: the
// number of groups, how many of them a token's experts may come from, and
// whether a group ranks by its best score (else by the sum of its two
// best). groups is 0 when routing is not group-limited.
func (c *Config) GroupLimited() (groups, used int, byMax bool) {
	if c.NGroup <= 1 || !c.IsMoE() || c.TopKGroup >= c.NGroup {
		return 0, 0, false
	}
	return c.NGroup, c.TopKGroup, c.TopKMethod == TopKGroupLimited
}

// MaxExpertGroups bounds n_group (DeepSeek-V3 has 8).
const MaxExpertGroups = 64

// validateGroups checks n_group and topk_group: groups of equal size, at
// least two experts each when ranked by their two best, enough experts in
// the chosen groups for num_experts_per_tok.
func (c *Config) validateGroups() error {
	if c.NGroup < 0 || c.TopKGroup < 0 {
		return fmt.Errorf("n_group %d and topk_group %d must not be negative", c.NGroup, c.TopKGroup)
	}
	g, used, byMax := c.GroupLimited()
	if g == 0 {
		return nil
	}
	switch per := c.NumExperts / g; {
	case g > MaxExpertGroups:
		return fmt.Errorf("n_group: %d groups, more than moe handles (%d)", g, MaxExpertGroups)
	case c.NumExperts%g != 0:
		return fmt.Errorf("n_group: %d does not divide the %d experts", g, c.NumExperts)
	case used < 1:
		return fmt.Errorf("topk_group: must be at least 1 with n_group %d", g)
	case per < 2 && !byMax:
		return fmt.Errorf("n_group: %d groups of %d expert, but a group ranks by its two best", g, per)
	case used*per < c.ExpertsPerToken:
		return fmt.Errorf("topk_group: %d groups of %d experts hold fewer than num_experts_per_tok (%d)", used, per, c.ExpertsPerToken)
	}
	return nil
}
