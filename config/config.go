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
	// qwen2_moe, qwen3_moe, olmoe, granitemoe, gpt_oss, deepseek_v2,
	// deepseek_v3, or gpt3 for the GPT-3 family.
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
	// RopeScaling stretches RoPE to a longer context (rope_scaling); nil
	// means none.
	RopeScaling       *RopeScaling `json:"rope_scaling,omitempty"`
	RMSNormEps        float64      `json:"rms_norm_eps"`
	TieWordEmbeddings bool         `json:"tie_word_embeddings"`

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
	// ScoringFunc turns router logits into expert scores (scoring_func):
	// ScoringSoftmax (default, "" too) or ScoringSigmoid.
	ScoringFunc string `json:"scoring_func,omitempty"`
	// TopKMethod is how token choice selects experts (topk_method):
	// TopKGreedy (default, "" too) or TopKNoAuxTC, which adds a per-expert
	// bias to the scores for selection only (loss-free balancing).
	TopKMethod string `json:"topk_method,omitempty"`
	// RoutedScalingFactor multiplies the routed experts' combine weights
	// (routed_scaling_factor); 0 means 1.
	RoutedScalingFactor float64 `json:"routed_scaling_factor,omitempty"`
	// moe: step γ of loss-free balancing: after every optimizer step each
	// expert's selection bias moves by γ·sign(mean load − its load); 0 means
	// DefaultRouterBiasUpdateRate.
	RouterBiasUpdateRate float64 `json:"moe_router_bias_update_rate,omitempty"`
	// moe: coefficient of the ST-MoE router z-loss.
	RouterZLossCoef float64 `json:"moe_router_z_loss_coef,omitempty"`
	// moe: initialisation standard deviation (default 0.02).
	InitStd float64 `json:"initializer_range,omitempty"`

	// HiddenAct is the feed-forward activation (hidden_act); "silu" with a
	// gated MLP is SwiGLU, the default.
	HiddenAct string `json:"hidden_act,omitempty"`
	// MLPBias adds biases to the feed-forward projections (llama mlp_bias, GPT-3).
	MLPBias bool `json:"mlp_bias,omitempty"`
	// QKVBias adds biases to the q, k and v projections but not the output
	// projection (qwen2_moe). AttentionBias covers all four.
	QKVBias bool `json:"moe_qkv_bias,omitempty"`
	// QKNormPerHead makes the q/k norms act on each head (width head_dim,
	// qwen3_moe) rather than on the whole projection (olmoe).
	QKNormPerHead bool `json:"moe_qk_norm_per_head,omitempty"`
	// RouterBias adds a bias to the router logits (gpt_oss).
	RouterBias bool `json:"moe_router_bias,omitempty"`
	// ExpertBias adds biases to every expert projection (gpt_oss).
	ExpertBias bool `json:"moe_expert_bias,omitempty"`
	// SwiGLULimit, when set, makes every feed-forward gpt_oss's clamped
	// SwiGLU (swiglu_limit): the gate g clamped above at the limit, the up
	// projection u to ±limit, and g·sigmoid(SwiGLUAlpha·g)·(u+1); 0 means
	// the plain silu(g)·u.
	SwiGLULimit float64 `json:"swiglu_limit,omitempty"`
	// SharedExpertGate adds a sigmoid gate, one d-vector, in front of the
	// shared expert (qwen2_moe).
	SharedExpertGate bool `json:"moe_shared_expert_gate,omitempty"`
	// SlidingWindow is the attention window of sliding-window layers; 0 means
	// full causal attention everywhere.
	SlidingWindow int `json:"sliding_window,omitempty"`
	// LayerTypes gives each layer's attention kind, "sliding_attention" or
	// "full_attention" (gpt_oss); empty means every layer uses SlidingWindow
	// when it is set.
	LayerTypes []string `json:"layer_types,omitempty"`
	// DecoderSparseStep makes every DecoderSparseStep-th layer sparse
	// (qwen2_moe, qwen3_moe); 0 or 1 means every layer.
	DecoderSparseStep int `json:"decoder_sparse_step,omitempty"`
	// MLPOnlyLayers lists layers (0-based) that use a dense feed-forward of
	// width IntermediateSize even in an MoE model.
	MLPOnlyLayers []int `json:"mlp_only_layers,omitempty"`
	// PlainMLP uses a two-matrix feed-forward down(act(up(x))) instead of a
	// gated one (GPT-3).
	PlainMLP bool `json:"moe_plain_mlp,omitempty"`
	// LayerNorm uses LayerNorm with a bias instead of RMSNorm (GPT-3).
	LayerNorm bool `json:"moe_layer_norm,omitempty"`
	// LearnedPositions adds a learned absolute position embedding table of
	// MaxPositionEmbeddings rows instead of RoPE (GPT-3).
	LearnedPositions bool `json:"moe_learned_positions,omitempty"`

	// Granite's scales (granitemoe); 0 means unset. EmbeddingMultiplier
	// scales the token embeddings, ResidualMultiplier each block's output
	// before it is added to the residual stream, AttentionMultiplier
	// replaces 1/sqrt(head_dim) as the attention score scale, and the
	// logits are divided by LogitsScaling.
	EmbeddingMultiplier float64 `json:"embedding_multiplier,omitempty"`
	ResidualMultiplier  float64 `json:"residual_multiplier,omitempty"`
	AttentionMultiplier float64 `json:"attention_multiplier,omitempty"`
	LogitsScaling       float64 `json:"logits_scaling,omitempty"`

	// DeepSeek's multi-head latent attention (deepseek_v2, deepseek_v3);
	// KVLoraRank 0 means none. See MLA.
	QLoraRank     int `json:"q_lora_rank,omitempty"`
	KVLoraRank    int `json:"kv_lora_rank,omitempty"`
	QKNopeHeadDim int `json:"qk_nope_head_dim,omitempty"`
	QKRopeHeadDim int `json:"qk_rope_head_dim,omitempty"`
	VHeadDim      int `json:"v_head_dim,omitempty"`
	// NGroup and TopKGroup limit token-choice routing to the experts of
	// the TopKGroup best of NGroup equal groups (n_group, topk_group;
	// DeepSeek); NGroup ≤ 1 means no groups. See GroupLimited.
	NGroup    int `json:"n_group,omitempty"`
	TopKGroup int `json:"topk_group,omitempty"`
}

// LayerIsMoE reports whether layer i (0-based) has a sparse MoE feed-forward,
// honouring DecoderSparseStep and MLPOnlyLayers.
func (c *Config) LayerIsMoE(i int) bool {
	if !c.IsMoE() {
		return false
	}
	for _, j := range c.MLPOnlyLayers {
		if j == i {
			return false
		}
	}
	if c.DecoderSparseStep > 1 && (i+1)%c.DecoderSparseStep != 0 {
		return false
	}
	return true
}

// AttentionWindow returns the number of keys layer i attends to at most: the
// sliding window for sliding-window layers, 0 for full causal attention.
func (c *Config) AttentionWindow(i int) int {
	if c.SlidingWindow <= 0 {
		return 0
	}
	if len(c.LayerTypes) == 0 {
		return c.SlidingWindow
	}
	if i >= 0 && i < len(c.LayerTypes) && c.LayerTypes[i] == LayerSlidingAttention {
		return c.SlidingWindow
	}
	return 0
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	d := *c
	d.LayerTypes = append([]string(nil), c.LayerTypes...)
	d.MLPOnlyLayers = append([]int(nil), c.MLPOnlyLayers...)
	if c.LayerTypes == nil {
		d.LayerTypes = nil
	}
	if c.MLPOnlyLayers == nil {
		d.MLPOnlyLayers = nil
	}
	if c.RopeScaling != nil {
		rs := *c.RopeScaling
		if rs.Truncate != nil {
			t := *rs.Truncate
			rs.Truncate = &t
		}
		d.RopeScaling = &rs
	}
	return &d
}

// SwiGLUAlpha is the sigmoid slope of gpt_oss's clamped SwiGLU (see
// Config.SwiGLULimit).
const SwiGLUAlpha = 1.702

// Layer attention kinds used in LayerTypes.
const (
	// LayerSlidingAttention attends to the last SlidingWindow keys.
	LayerSlidingAttention = "sliding_attention"
	// LayerFullAttention attends to every earlier key.
	LayerFullAttention = "full_attention"
)

// IsMoE reports whether the feed-forward layers are sparse mixtures of experts.
func (c *Config) IsMoE() bool { return c.NumExperts > 1 }

// HeadDimension returns the query and key head width: under MLA
// QKNopeHeadDim+QKRopeHeadDim, else HeadDim, or HiddenSize/NumHeads when
// HeadDim is unset.
func (c *Config) HeadDimension() int {
	if c.MLA() {
		return c.QKNopeHeadDim + c.QKRopeHeadDim
	}
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
