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
	case "", TopKGreedy:
	case TopKNoAuxTC:
		if c.Routing == RoutingExpertChoice {
			return fmt.Errorf("topk_method: %q needs token-choice routing (moe_routing is %q)", c.TopKMethod, c.Routing)
		}
	default:
		return fmt.Errorf("topk_method: unknown %q (want %q or %q)", c.TopKMethod, TopKGreedy, TopKNoAuxTC)
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
