// Package config defines the one model description that drives moe: the
// model code, the plan arithmetic and the file formats all read a *Config.
//
// A Config is read from a Hugging Face style config.json (see Load) or from a
// named preset (see Preset). moe's own training config is the mixtral schema
// plus the extra fields marked "moe" below.
package config

// Routing kinds for sparse MoE feed-forward layers.
const (
	// RoutingTokenChoice sends each token to its top-k experts.
	RoutingTokenChoice = "token_choice"
	// RoutingExpertChoice lets each expert pick its top-C tokens (Zhou et al. 2022).
	RoutingExpertChoice = "expert_choice"
)

// Router score orders for token-choice routing.
const (
	// RouterSoftmaxTopK takes a softmax over all experts, then the top-k,
	// renormalising the k weights when NormTopKProb is set.
	RouterSoftmaxTopK = "softmax_topk"
	// RouterTopKSoftmax takes the top-k logits, then a softmax over those k (Mixtral).
	RouterTopKSoftmax = "topk_softmax"
)

// Config describes a decoder-only transformer, dense or sparse MoE.
//
// Field names in JSON follow the Hugging Face config.json of the model types
// moe reads; fields that only moe uses are documented as such.
type Config struct {
	// ModelType is the Hugging Face model_type: llama, mistral, mixtral,
	// qwen2_moe, qwen3_moe, olmoe, gpt_oss, or gpt3 for the GPT-3 family.
	ModelType string `json:"model_type"`
	// Name is a human label (a preset name or the file it came from).
	Name string `json:"-"`

	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumLayers             int     `json:"num_hidden_layers"`
	NumHeads              int     `json:"num_attention_heads"`
	NumKVHeads            int     `json:"num_key_value_heads"`
	HeadDim               int     `json:"head_dim,omitempty"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	RopeTheta             float64 `json:"rope_theta"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	TieWordEmbeddings     bool    `json:"tie_word_embeddings"`

	// NumExperts is the number of routed experts per MoE layer; 0 means a
	// dense SwiGLU feed-forward (num_local_experts / num_experts in JSON).
	NumExperts int `json:"num_local_experts,omitempty"`
	// ExpertsPerToken is top-k for token-choice routing (num_experts_per_tok).
	ExpertsPerToken int `json:"num_experts_per_tok,omitempty"`
	// MoEIntermediateSize is the feed-forward width of one routed expert when
	// it differs from IntermediateSize (qwen2_moe, qwen3_moe).
	MoEIntermediateSize int `json:"moe_intermediate_size,omitempty"`
	// SharedExpertIntermediateSize is the width of an always-on shared
	// expert; 0 means none.
	SharedExpertIntermediateSize int `json:"shared_expert_intermediate_size,omitempty"`
	// RouterAuxLossCoef scales the Switch load-balancing loss.
	RouterAuxLossCoef float64 `json:"router_aux_loss_coef,omitempty"`
	// NormTopKProb renormalises the top-k router weights to sum to one
	// (used with RouterSoftmaxTopK).
	NormTopKProb bool `json:"norm_topk_prob,omitempty"`

	// Architecture details that change parameter counts.
	AttentionBias  bool `json:"attention_bias,omitempty"`  // q/k/v/o biases
	QKNorm         bool `json:"qk_norm,omitempty"`         // RMSNorm on q and k per head (qwen3, olmoe)
	AttentionSinks bool `json:"attention_sinks,omitempty"` // one learned sink logit per head (gpt_oss)

	// moe: routing kind, RoutingTokenChoice (default) or RoutingExpertChoice.
	Routing string `json:"moe_routing,omitempty"`
	// moe: RouterSoftmaxTopK or RouterTopKSoftmax (default for mixtral).
	RouterOrder string `json:"moe_router_order,omitempty"`
	// moe: capacity factor; 0 means dropless token-choice. For expert choice
	// each expert takes C = tokens*CapacityFactor/NumExperts tokens.
	CapacityFactor float64 `json:"moe_capacity_factor,omitempty"`
	// moe: coefficient of the ST-MoE router z-loss.
	RouterZLossCoef float64 `json:"moe_router_z_loss_coef,omitempty"`
	// moe: initialisation standard deviation (default 0.02).
	InitStd float64 `json:"initializer_range,omitempty"`
}

// IsMoE reports whether the feed-forward layers are sparse mixtures of experts.
func (c *Config) IsMoE() bool { return c.NumExperts > 1 }

// HeadDimension returns HeadDim, or HiddenSize/NumHeads when HeadDim is unset.
func (c *Config) HeadDimension() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	if c.NumHeads == 0 {
		return 0
	}
	return c.HiddenSize / c.NumHeads
}

// KVHeads returns NumKVHeads, or NumHeads when it is unset (multi-head attention).
func (c *Config) KVHeads() int {
	if c.NumKVHeads > 0 {
		return c.NumKVHeads
	}
	return c.NumHeads
}

// ExpertSize returns the feed-forward width of one routed expert.
func (c *Config) ExpertSize() int {
	if c.MoEIntermediateSize > 0 {
		return c.MoEIntermediateSize
	}
	return c.IntermediateSize
}
