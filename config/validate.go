package config

import (
	"fmt"
	"math"
)

// Upper bounds far above every released model (the largest have ~126
// layers, 25,600-wide hidden states, 384 experts, 262,144-token
// vocabularies and 10M-token contexts) but low enough that a config can
// neither overflow the counts the plan computes nor make a loader allocate
// per-layer or per-position tables without bound before the weights are
// checked. The implied parameter bytes are checked against the machine's
// memory separately (internal/memest).
const (
	maxDim       = 1 << 18 // hidden, feed-forward and head widths
	maxVocab     = 1 << 24
	maxLayers    = 1 << 10
	maxHeads     = 1 << 12
	maxExperts   = 1 << 12
	maxContext   = 1 << 24
	maxParamsEst = 1e13
)

// Validate checks that c describes a model moe can reason about. Each error
// names the JSON field at fault, e.g.
// "num_experts_per_tok (4) > num_local_experts (2)".
func (c *Config) Validate() error {
	if !knownType(c.ModelType) {
		return fmt.Errorf("model_type: unknown %q", c.ModelType)
	}
	type bound struct {
		name      string
		v, lo, hi int
	}
	ffRequired := 0
	if c.hasDenseLayer() || c.MoEIntermediateSize == 0 {
		ffRequired = 1
	}
	for _, b := range []bound{
		{"vocab_size", c.VocabSize, 1, maxVocab},
		{"hidden_size", c.HiddenSize, 1, maxDim},
		{"num_hidden_layers", c.NumLayers, 1, maxLayers},
		{"num_attention_heads", c.NumHeads, 1, maxHeads},
		{"num_key_value_heads", c.NumKVHeads, 0, maxHeads},
		{"head_dim", c.HeadDim, 0, maxDim},
		{"intermediate_size", c.IntermediateSize, ffRequired, maxDim},
		{"moe_intermediate_size", c.MoEIntermediateSize, 0, maxDim},
		{"shared_expert_intermediate_size", c.SharedExpertIntermediateSize, 0, maxDim},
		{"max_position_embeddings", c.MaxPositionEmbeddings, 1, maxContext},
		{"num_local_experts", c.NumExperts, 0, maxExperts},
		{"num_experts_per_tok", c.ExpertsPerToken, 0, maxExperts},
		{"sliding_window", c.SlidingWindow, 0, maxContext},
		{"decoder_sparse_step", c.DecoderSparseStep, 0, maxLayers},
	} {
		if b.v < b.lo {
			if b.lo == 1 && b.v == 0 {
				return fmt.Errorf("%s: missing or zero", b.name)
			}
			return fmt.Errorf("%s: must be at least %d (got %d)", b.name, b.lo, b.v)
		}
		if b.v > b.hi {
			return fmt.Errorf("%s: %d is implausibly large (limit %d)", b.name, b.v, b.hi)
		}
	}
	if kv := c.KVHeads(); c.NumHeads%kv != 0 {
		return fmt.Errorf("num_key_value_heads: %d does not divide num_attention_heads (%d)", kv, c.NumHeads)
	}
	if c.HeadDim == 0 && !c.MLA() && c.HiddenSize%c.NumHeads != 0 {
		return fmt.Errorf("num_attention_heads: %d does not divide hidden_size (%d); set head_dim", c.NumHeads, c.HiddenSize)
	}
	if c.NumExperts > 0 {
		// Expert-choice routing has no per-token top-k.
		if c.ExpertsPerToken < 1 && c.Routing != RoutingExpertChoice {
			return fmt.Errorf("num_experts_per_tok: must be at least 1 with %d experts (got %d)", c.NumExperts, c.ExpertsPerToken)
		}
		if c.ExpertsPerToken > c.NumExperts {
			return fmt.Errorf("num_experts_per_tok (%d) > num_local_experts (%d)", c.ExpertsPerToken, c.NumExperts)
		}
	} else if c.ExpertsPerToken > 0 {
		return fmt.Errorf("num_experts_per_tok: %d set but the model has no experts (num_local_experts is 0)", c.ExpertsPerToken)
	}
	if c.SharedExpertIntermediateSize > 0 && !c.IsMoE() {
		return fmt.Errorf("shared_expert_intermediate_size: %d set on a dense model", c.SharedExpertIntermediateSize)
	}
	for i, j := range c.MLPOnlyLayers {
		if j < 0 || j >= c.NumLayers {
			return fmt.Errorf("mlp_only_layers[%d]: layer %d outside [0, %d)", i, j, c.NumLayers)
		}
	}
	if len(c.LayerTypes) > 0 {
		if len(c.LayerTypes) != c.NumLayers {
			return fmt.Errorf("layer_types: %d entries for %d layers", len(c.LayerTypes), c.NumLayers)
		}
		for i, t := range c.LayerTypes {
			if t != LayerSlidingAttention && t != LayerFullAttention {
				return fmt.Errorf("layer_types[%d]: unknown %q (want %q or %q)", i, t, LayerSlidingAttention, LayerFullAttention)
			}
		}
	}
	if err := nonNegative("", []namedFloat{
		{"rope_theta", c.RopeTheta},
		{"rms_norm_eps", c.RMSNormEps},
		{"router_aux_loss_coef", c.RouterAuxLossCoef},
		{"moe_capacity_factor", c.CapacityFactor},
		{"moe_router_z_loss_coef", c.RouterZLossCoef},
		{"initializer_range", c.InitStd},
		{"swiglu_limit", c.SwiGLULimit},
	}); err != nil {
		return err
	}
	switch c.Routing {
	case "", RoutingTokenChoice, RoutingExpertChoice:
	default:
		return fmt.Errorf("moe_routing: unknown %q (want %q or %q)", c.Routing, RoutingTokenChoice, RoutingExpertChoice)
	}
	switch c.RouterOrder {
	case "", RouterSoftmaxTopK, RouterTopKSoftmax:
	default:
		return fmt.Errorf("moe_router_order: unknown %q (want %q or %q)", c.RouterOrder, RouterSoftmaxTopK, RouterTopKSoftmax)
	}
	if err := c.ValidateScoring(); err != nil {
		return err
	}
	if err := c.ValidateRopeScaling(); err != nil {
		return err
	}
	if err := c.validateMLA(); err != nil {
		return err
	}
	// A rough size bound so that exact integer counts cannot overflow.
	d := float64(c.HiddenSize)
	attn := float64(c.HeadDimension()) * float64(c.NumHeads+c.KVHeads()) * 2 * d
	ff := 3 * d * (float64(c.IntermediateSize) + float64(c.NumExperts)*float64(c.ExpertSize()) + float64(c.SharedExpertIntermediateSize))
	est := float64(c.NumLayers)*(attn+ff) + 2*float64(c.VocabSize)*d + float64(c.MaxPositionEmbeddings)*d
	if est > maxParamsEst {
		return fmt.Errorf("hidden_size: the config describes about %.3g parameters, more than moe handles (%.0g)", est, maxParamsEst)
	}
	return nil
}

// namedFloat is a float field with its JSON name.
type namedFloat struct {
	name string
	v    float64
}

// nonNegative returns an error naming (after prefix) the first of fields
// that is NaN, infinite or negative.
func nonNegative(prefix string, fields []namedFloat) error {
	for _, f := range fields {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return fmt.Errorf("%s%s: must be a finite non-negative number (got %v)", prefix, f.name, f.v)
		}
	}
	return nil
}
