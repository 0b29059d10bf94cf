package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Model types that Load reads.
const (
	TypeLlama    = "llama"
	TypeMistral  = "mistral"
	TypeMixtral  = "mixtral"
	TypeQwen2MoE = "qwen2_moe"
	TypeQwen3MoE = "qwen3_moe"
	TypeOLMoE    = "olmoe"
	// TypeGraniteMoE is IBM's Granite MoE (GraniteMoeForCausalLM).
	TypeGraniteMoE = "granitemoe"
	TypeGPTOSS     = "gpt_oss"
	// TypeDeepseekV2 and TypeDeepseekV3 are DeepSeek-V2 (Lite) and V3
	// (Moonlight): multi-head latent attention, shared experts, dense
	// leading layers; V3 routes by sigmoid scores with selection biases.
	TypeDeepseekV2 = "deepseek_v2"
	TypeDeepseekV3 = "deepseek_v3"
	// TypeGPT3 is the GPT-3 family: learned positions, LayerNorm, biases,
	// a two-matrix GELU MLP. It reads llama-style or GPT-2-style field names.
	TypeGPT3 = "gpt3"
)

// ModelTypes returns the model_type values Load accepts, sorted.
func ModelTypes() []string {
	t := []string{TypeLlama, TypeMistral, TypeMixtral, TypeQwen2MoE, TypeQwen3MoE, TypeOLMoE, TypeGraniteMoE, TypeGPTOSS, TypeGPT3,
		TypeDeepseekV2, TypeDeepseekV3}
	sort.Strings(t)
	return t
}

func knownType(t string) bool {
	for _, k := range ModelTypes() {
		if k == t {
			return true
		}
	}
	return false
}

// maxConfigBytes bounds the size of a config.json that Load reads.
const maxConfigBytes = 4 << 20

// Load reads a Hugging Face style config.json of any model type listed by
// ModelTypes, or a config that Save wrote. Errors name the file and, where
// there is one, the offending field.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a config.json", path, maxConfigBytes)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Name = path
	return c, nil
}

// Resolve returns the preset called nameOrPath, or else loads the config
// file at that path (a directory means its config.json).
func Resolve(nameOrPath string) (*Config, error) {
	if c, ok := Preset(nameOrPath); ok {
		return c, nil
	}
	st, err := os.Stat(nameOrPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("config: %q is neither a preset (%s) nor an existing file", nameOrPath, strings.Join(PresetNames(), ", "))
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	p := nameOrPath
	if st.IsDir() {
		p = filepath.Join(nameOrPath, "config.json")
	}
	return Load(p)
}

// rawConfig mirrors the union of the field names of every model type Load
// reads; pointers tell a missing field from a zero one.
type rawConfig struct {
	ModelType *string `json:"model_type"`

	VocabSize             *intField       `json:"vocab_size"`
	HiddenSize            *intField       `json:"hidden_size"`
	IntermediateSize      *intField       `json:"intermediate_size"`
	NumLayers             *intField       `json:"num_hidden_layers"`
	NumHeads              *intField       `json:"num_attention_heads"`
	NumKVHeads            *intField       `json:"num_key_value_heads"`
	HeadDim               *intField       `json:"head_dim"`
	MaxPositionEmbeddings *intField       `json:"max_position_embeddings"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           *rawRopeScaling `json:"rope_scaling"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	HiddenAct             *string         `json:"hidden_act"`
	InitializerRange      *float64        `json:"initializer_range"`
	AttentionBias         *bool           `json:"attention_bias"`
	MLPBias               *bool           `json:"mlp_bias"`

	NumLocalExperts              *intField  `json:"num_local_experts"`
	NumExperts                   *intField  `json:"num_experts"`
	NumExpertsPerTok             *intField  `json:"num_experts_per_tok"`
	ExpertsPerToken              *intField  `json:"experts_per_token"` // gpt_oss
	MoEIntermediateSize          *intField  `json:"moe_intermediate_size"`
	SharedExpertIntermediateSize *intField  `json:"shared_expert_intermediate_size"`
	RouterAuxLossCoef            *float64   `json:"router_aux_loss_coef"`
	NormTopKProb                 *bool      `json:"norm_topk_prob"`
	ScoringFunc                  *string    `json:"scoring_func"`
	TopKMethod                   *string    `json:"topk_method"`
	RoutedScalingFactor          *float64   `json:"routed_scaling_factor"`
	DecoderSparseStep            *intField  `json:"decoder_sparse_step"`
	MLPOnlyLayers                []intField `json:"mlp_only_layers"`
	SlidingWindow                *intField  `json:"sliding_window"`
	UseSlidingWindow             *bool      `json:"use_sliding_window"`
	LayerTypes                   []string   `json:"layer_types"`
	QKNorm                       *bool      `json:"qk_norm"`
	SwiGLULimit                  *float64   `json:"swiglu_limit"` // gpt_oss

	// DeepSeek's (deepseek_v2, deepseek_v3).
	NRoutedExperts     *intField `json:"n_routed_experts"`
	NSharedExperts     *intField `json:"n_shared_experts"`
	FirstKDenseReplace *intField `json:"first_k_dense_replace"`
	MoELayerFreq       *intField `json:"moe_layer_freq"`
	QLoraRank          *intField `json:"q_lora_rank"`
	KVLoraRank         *intField `json:"kv_lora_rank"`
	QKNopeHeadDim      *intField `json:"qk_nope_head_dim"`
	QKRopeHeadDim      *intField `json:"qk_rope_head_dim"`
	VHeadDim           *intField `json:"v_head_dim"`
	NGroup             *intField `json:"n_group"`
	TopKGroup          *intField `json:"topk_group"`

	// GPT-2 style names, accepted for model_type gpt3.
	NEmbd      *intField `json:"n_embd"`
	NLayer     *intField `json:"n_layer"`
	NHead      *intField `json:"n_head"`
	NInner     *intField `json:"n_inner"`
	NPositions *intField `json:"n_positions"`
	LNEps      *float64  `json:"layer_norm_epsilon"`

	// moe's own fields (see Config).
	QKVBias          *bool    `json:"moe_qkv_bias"`
	QKNormPerHead    *bool    `json:"moe_qk_norm_per_head"`
	AttentionSinks   *bool    `json:"attention_sinks"`
	RouterBias       *bool    `json:"moe_router_bias"`
	ExpertBias       *bool    `json:"moe_expert_bias"`
	SharedExpertGate *bool    `json:"moe_shared_expert_gate"`
	PlainMLP         *bool    `json:"moe_plain_mlp"`
	LayerNorm        *bool    `json:"moe_layer_norm"`
	LearnedPositions *bool    `json:"moe_learned_positions"`
	Routing          *string  `json:"moe_routing"`
	RouterOrder      *string  `json:"moe_router_order"`
	CapacityFactor   *float64 `json:"moe_capacity_factor"`
	RouterZLossCoef  *float64 `json:"moe_router_z_loss_coef"`
	BiasUpdateRate   *float64 `json:"moe_router_bias_update_rate"`

	// Granite's scales.
	EmbeddingMultiplier *float64 `json:"embedding_multiplier"`
	ResidualMultiplier  *float64 `json:"residual_multiplier"`
	AttentionMultiplier *float64 `json:"attention_multiplier"`
	LogitsScaling       *float64 `json:"logits_scaling"`

	// SharedIntermediateSize is Granite-MoE-shared's name for
	// shared_expert_intermediate_size.
	SharedIntermediateSize *intField `json:"shared_intermediate_size"`
}

// Parse decodes a config.json held in memory; see Load.
func Parse(data []byte) (*Config, error) {
	var r rawConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("%s: expected %s, got JSON %s", te.Field, jsonKind(te.Type), te.Value)
		}
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("malformed JSON: data after the top-level object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed JSON: data after the top-level object")
	}
	if r.ModelType == nil {
		return nil, errors.New("model_type: missing")
	}
	mt := *r.ModelType
	if !knownType(mt) {
		return nil, fmt.Errorf("model_type: unknown %q (moe reads %s)", mt, strings.Join(ModelTypes(), ", "))
	}
	p := &parser{r: &r, t: mt}
	c := p.build()
	if p.err != nil {
		return nil, p.err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// parser maps one rawConfig onto a Config, keeping the first error.
type parser struct {
	r   *rawConfig
	t   string
	err error
}

func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf(format, args...)
	}
}

// need returns the first present field among the (name, value) pairs, or
// records a "missing" error naming the first name.
func (p *parser) need(names []string, vals ...*intField) int {
	for _, v := range vals {
		if v != nil {
			return p.nonneg(names[0], v, 0)
		}
	}
	p.fail("%s: missing", names[0])
	return 0
}

// opt returns the first present field, or def.
func (p *parser) opt(name string, def int, vals ...*intField) int {
	for _, v := range vals {
		if v != nil {
			return p.nonneg(name, v, def)
		}
	}
	return def
}

func (p *parser) nonneg(name string, v *intField, def int) int {
	if v == nil {
		return def
	}
	if *v < 0 {
		p.fail("%s: must not be negative (got %d)", name, *v)
	}
	return int(*v)
}

// intField is a JSON integer; it also takes integral numbers written with a
// fraction or exponent (4096.0, 1e3), as some converted configs have.
type intField int

// maxIntField bounds an intField so that it is exact in a float64.
const maxIntField = 1 << 53

// UnmarshalJSON implements json.Unmarshaler.
func (f *intField) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != math.Trunc(v) || math.Abs(v) > maxIntField {
		kind := "number " + s
		switch {
		case strings.HasPrefix(s, `"`):
			kind = "string"
		case s == "true" || s == "false":
			kind = "bool"
		case strings.HasPrefix(s, "["):
			kind = "array"
		case strings.HasPrefix(s, "{"):
			kind = "object"
		}
		return &json.UnmarshalTypeError{Value: kind, Type: reflect.TypeOf(0)}
	}
	*f = intField(v)
	return nil
}

func optF(v *float64, def float64) float64 {
	if v == nil {
		return def
	}
	return *v
}

func optB(v *bool, def bool) bool {
	if v == nil {
		return def
	}
	return *v
}

func optS(v *string, def string) string {
	if v == nil {
		return def
	}
	return *v
}

// DefaultMaxPositionEmbeddings returns the max_position_embeddings that
// Hugging Face transformers' configuration class for modelType uses when a
// config.json leaves it out (LlamaConfig 2048; MistralConfig and
// MixtralConfig 4096*32 = 131072; Qwen2MoeConfig and Qwen3MoeConfig 32768;
// OlmoeConfig 4096; GptOssConfig 131072), and false for a type without one.
func DefaultMaxPositionEmbeddings(modelType string) (int, bool) {
	switch modelType {
	case TypeLlama:
		return 2048, true
	case TypeMistral, TypeMixtral, TypeGPTOSS:
		return 131072, true
	case TypeQwen2MoE, TypeQwen3MoE:
		return 32768, true
	case TypeOLMoE:
		return 4096, true
	case TypeGraniteMoE:
		return 2048, true
	}
	return 0, false
}

// build makes the Config from the parsed fields, in steps: the sizes every
// type needs, the optional architecture and routing fields, the experts'
// counts and widths, and last the facts each model type leaves implicit
// (which may override an optional field's generic default).
func (p *parser) build() *Config {
	c := &Config{ModelType: p.t}
	p.buildSizes(c)
	p.buildOptional(c)
	p.buildExperts(c)
	p.buildTypeDefaults(c)
	return c
}

// buildSizes reads the vocabulary, width, depth, heads, context, norm
// epsilon and activation, under GPT-3's names too for that type.
func (p *parser) buildSizes(c *Config) {
	r, t := p.r, p.t
	gpt := t == TypeGPT3
	c.VocabSize = p.need([]string{"vocab_size"}, r.VocabSize)
	if gpt {
		c.HiddenSize = p.need([]string{"hidden_size"}, r.HiddenSize, r.NEmbd)
		c.NumLayers = p.need([]string{"num_hidden_layers"}, r.NumLayers, r.NLayer)
		c.NumHeads = p.need([]string{"num_attention_heads"}, r.NumHeads, r.NHead)
		c.IntermediateSize = p.opt("intermediate_size", 4*c.HiddenSize, r.IntermediateSize, r.NInner)
		c.MaxPositionEmbeddings = p.need([]string{"max_position_embeddings"}, r.MaxPositionEmbeddings, r.NPositions)
		c.RMSNormEps = optF(r.RMSNormEps, optF(r.LNEps, 1e-5))
		c.HiddenAct = optS(r.HiddenAct, "gelu")
	} else {
		c.HiddenSize = p.need([]string{"hidden_size"}, r.HiddenSize)
		c.NumLayers = p.need([]string{"num_hidden_layers"}, r.NumLayers)
		c.NumHeads = p.need([]string{"num_attention_heads"}, r.NumHeads)
		if def, ok := DefaultMaxPositionEmbeddings(t); ok {
			c.MaxPositionEmbeddings = p.opt("max_position_embeddings", def, r.MaxPositionEmbeddings)
		} else {
			c.MaxPositionEmbeddings = p.need([]string{"max_position_embeddings"}, r.MaxPositionEmbeddings)
		}
		c.RMSNormEps = optF(r.RMSNormEps, 1e-6)
		c.HiddenAct = optS(r.HiddenAct, "silu")
	}
}

// buildOptional reads the optional architecture, routing and scaling
// fields with their generic defaults.
func (p *parser) buildOptional(c *Config) {
	r, gpt := p.r, p.t == TypeGPT3
	// GPT-3 is the only type whose architecture defaults to tied embeddings,
	// biases, a plain MLP, LayerNorm and learned positions.
	c.TieWordEmbeddings = optB(r.TieWordEmbeddings, gpt)
	c.AttentionBias = optB(r.AttentionBias, gpt)
	c.MLPBias = optB(r.MLPBias, gpt)
	c.PlainMLP = optB(r.PlainMLP, gpt)
	c.LayerNorm = optB(r.LayerNorm, gpt)
	c.LearnedPositions = optB(r.LearnedPositions, gpt)
	c.NumKVHeads = p.opt("num_key_value_heads", c.NumHeads, r.NumKVHeads)
	c.HeadDim = p.opt("head_dim", 0, r.HeadDim)
	c.InitStd = optF(r.InitializerRange, 0.02)
	c.RopeScaling = p.ropeScaling(r.RopeScaling)
	c.RouterAuxLossCoef = optF(r.RouterAuxLossCoef, 0)
	c.NormTopKProb = optB(r.NormTopKProb, false)
	c.ScoringFunc = optS(r.ScoringFunc, "")
	c.TopKMethod = optS(r.TopKMethod, "")
	c.RoutedScalingFactor = optF(r.RoutedScalingFactor, 0)
	c.RouterBiasUpdateRate = optF(r.BiasUpdateRate, 0)
	c.QKVBias = optB(r.QKVBias, false)
	c.QKNorm = optB(r.QKNorm, false)
	c.QKNormPerHead = optB(r.QKNormPerHead, false)
	c.AttentionSinks = optB(r.AttentionSinks, false)
	c.RouterBias = optB(r.RouterBias, false)
	c.ExpertBias = optB(r.ExpertBias, false)
	c.SwiGLULimit = optF(r.SwiGLULimit, 0)
	c.SharedExpertGate = optB(r.SharedExpertGate, false)
	c.Routing = optS(r.Routing, "")
	c.RouterOrder = optS(r.RouterOrder, "")
	c.CapacityFactor = optF(r.CapacityFactor, 0)
	c.RouterZLossCoef = optF(r.RouterZLossCoef, 0)
	c.EmbeddingMultiplier = optF(r.EmbeddingMultiplier, 0)
	c.ResidualMultiplier = optF(r.ResidualMultiplier, 0)
	c.AttentionMultiplier = optF(r.AttentionMultiplier, 0)
	c.LogitsScaling = optF(r.LogitsScaling, 0)
	c.DecoderSparseStep = p.opt("decoder_sparse_step", 0, r.DecoderSparseStep)
	for _, l := range r.MLPOnlyLayers {
		c.MLPOnlyLayers = append(c.MLPOnlyLayers, int(l))
	}
	c.SlidingWindow = p.opt("sliding_window", 0, r.SlidingWindow)
	if len(r.LayerTypes) > 0 {
		c.LayerTypes = append([]string(nil), r.LayerTypes...)
	}
}

// buildExperts reads the routed and shared experts' counts and the
// feed-forward widths, whose field names and requiredness differ by type.
func (p *parser) buildExperts(c *Config) {
	r, t := p.r, p.t
	// Routed experts: the field name differs by model type; a config that
	// Save wrote uses num_local_experts whatever its type.
	expertsName := "num_local_experts"
	switch t {
	case TypeQwen2MoE, TypeQwen3MoE, TypeOLMoE:
		expertsName = "num_experts"
	}
	topkName := "num_experts_per_tok"
	switch t {
	case TypeLlama, TypeMistral, TypeGPT3:
		// Dense unless moe's own fields say otherwise.
		c.NumExperts = p.opt(expertsName, 0, r.NumLocalExperts, r.NumExperts)
		c.ExpertsPerToken = p.opt(topkName, 0, r.NumExpertsPerTok, r.ExpertsPerToken)
	case TypeGPTOSS:
		c.NumExperts = p.need([]string{expertsName}, r.NumLocalExperts, r.NumExperts)
		c.ExpertsPerToken = p.need([]string{topkName}, r.NumExpertsPerTok, r.ExpertsPerToken)
	case TypeDeepseekV2, TypeDeepseekV3:
		expertsName = "n_routed_experts"
		c.NumExperts = p.need([]string{expertsName}, r.NRoutedExperts, r.NumLocalExperts)
		c.ExpertsPerToken = p.opt(topkName, 0, r.NumExpertsPerTok)
	default:
		c.NumExperts = p.need([]string{expertsName}, r.NumLocalExperts, r.NumExperts)
		c.ExpertsPerToken = p.opt(topkName, 0, r.NumExpertsPerTok)
	}
	if c.NumExperts > 0 && c.ExpertsPerToken == 0 && r.NumExpertsPerTok == nil && r.ExpertsPerToken == nil &&
		optS(r.Routing, "") != RoutingExpertChoice {
		p.fail("%s: missing (%s is %d)", topkName, expertsName, c.NumExperts)
	}
	c.SharedExpertIntermediateSize = p.opt("shared_expert_intermediate_size", 0, r.SharedExpertIntermediateSize, r.SharedIntermediateSize)

	switch t {
	case TypeQwen2MoE, TypeQwen3MoE:
		c.MoEIntermediateSize = p.need([]string{"moe_intermediate_size"}, r.MoEIntermediateSize)
		// intermediate_size only matters for the dense layers.
		if c.hasDenseLayer() {
			c.IntermediateSize = p.need([]string{"intermediate_size"}, r.IntermediateSize)
		} else {
			c.IntermediateSize = p.opt("intermediate_size", 0, r.IntermediateSize)
		}
	case TypeGPT3:
		// Set above.
	default:
		c.IntermediateSize = p.need([]string{"intermediate_size"}, r.IntermediateSize)
		c.MoEIntermediateSize = p.opt("moe_intermediate_size", 0, r.MoEIntermediateSize)
	}
}

// buildTypeDefaults sets the per-type architecture facts that the HF
// config.json leaves implicit: RoPE base, biases and norms, router order.
func (p *parser) buildTypeDefaults(c *Config) {
	r, t := p.r, p.t
	defOrder := ""
	switch t {
	case TypeLlama:
		c.RopeTheta = optF(r.RopeTheta, 10000)
	case TypeMistral:
		c.RopeTheta = optF(r.RopeTheta, 10000)
	case TypeMixtral:
		c.RopeTheta = optF(r.RopeTheta, 1e6)
		defOrder = RouterTopKSoftmax
	case TypeQwen2MoE:
		c.RopeTheta = optF(r.RopeTheta, 10000)
		c.QKVBias = optB(r.QKVBias, true)
		if c.SharedExpertIntermediateSize > 0 {
			c.SharedExpertGate = optB(r.SharedExpertGate, true)
		}
		defOrder = RouterSoftmaxTopK
	case TypeQwen3MoE:
		c.RopeTheta = optF(r.RopeTheta, 10000)
		c.QKNorm = optB(r.QKNorm, true)
		c.QKNormPerHead = optB(r.QKNormPerHead, true)
		defOrder = RouterSoftmaxTopK
	case TypeOLMoE:
		c.RopeTheta = optF(r.RopeTheta, 10000)
		c.QKNorm = optB(r.QKNorm, true)
		defOrder = RouterSoftmaxTopK
	case TypeGraniteMoE:
		c.RopeTheta = optF(r.RopeTheta, 10000)
		defOrder = RouterTopKSoftmax
	case TypeGPTOSS:
		c.RopeTheta = optF(r.RopeTheta, 150000)
		c.AttentionBias = optB(r.AttentionBias, true)
		c.AttentionSinks = optB(r.AttentionSinks, true)
		c.RouterBias = optB(r.RouterBias, true)
		c.ExpertBias = optB(r.ExpertBias, true)
		c.SwiGLULimit = optF(r.SwiGLULimit, 7)
		defOrder = RouterTopKSoftmax
	case TypeGPT3:
		c.RopeTheta = optF(r.RopeTheta, 0)
	case TypeDeepseekV2, TypeDeepseekV3:
		c.RopeTheta = optF(r.RopeTheta, 10000)
		p.deepseek(c)
		defOrder = RouterSoftmaxTopK
	}
	if c.RouterOrder == "" && c.NumExperts > 0 {
		c.RouterOrder = defOrder
	}
	// Qwen's sliding_window field is inert unless use_sliding_window is set.
	if r.UseSlidingWindow != nil && !*r.UseSlidingWindow {
		c.SlidingWindow = 0
	}
}

// hasDenseLayer reports whether any layer has a dense feed-forward.
func (c *Config) hasDenseLayer() bool {
	if !c.IsMoE() || c.NumLayers <= 0 {
		return true
	}
	if c.DecoderSparseStep > 1 {
		return true // layer 0 is dense
	}
	for _, j := range c.MLPOnlyLayers {
		if j >= 0 && j < c.NumLayers {
			return true
		}
	}
	return false
}

// jsonKind names a Go type the way a config.json author thinks of it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}
