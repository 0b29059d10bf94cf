package config

import (
	"fmt"
	"math"
	"slices"
)

// RoPE scaling kinds (rope_scaling.rope_type).
const (
	// RopeLinear divides every frequency by the factor (position
	// interpolation, Chen et al. 2023; HF "linear").
	RopeLinear = "linear"
	// RopeNTK raises the base to base·factor^(d/(d−2)) (static NTK-aware
	// scaling, bloc97; moe's name: HF only has the dynamic variant).
	RopeNTK = "ntk"
	// RopeYaRN interpolates the low frequencies, keeps the high ones and
	// scales attention (Peng et al. 2023; HF "yarn").
	RopeYaRN = "yarn"
)

// hfOnlyRopeTypes are transformers' rope_type values moe reads (so that
// `moe plan` works on such configs) but does not implement: a model with one
// is refused by model.Supported.
var hfOnlyRopeTypes = []string{"dynamic", "llama3", "longrope"}

// RopeScaling is Hugging Face's rope_scaling object: how RoPE stretches to
// a context longer than the one a model was trained at.
type RopeScaling struct {
	// Type is RopeLinear, RopeNTK or RopeYaRN (rope_type; older configs
	// say "type").
	Type string `json:"rope_type"`
	// Factor is the context stretch, > 1.
	Factor float64 `json:"factor"`
	// OriginalMaxPositionEmbeddings is the context the model was trained at
	// before scaling (YaRN's correction range; 0: max_position_embeddings).
	OriginalMaxPositionEmbeddings int `json:"original_max_position_embeddings,omitempty"`
	// BetaFast and BetaSlow bound YaRN's ramp in rotations (0: 32 and 1).
	BetaFast float64 `json:"beta_fast,omitempty"`
	BetaSlow float64 `json:"beta_slow,omitempty"`
	// Mscale and MscaleAllDim shape YaRN's attention factor (DeepSeek);
	// AttentionFactor, when set, is that factor itself.
	Mscale          float64 `json:"mscale,omitempty"`
	MscaleAllDim    float64 `json:"mscale_all_dim,omitempty"`
	AttentionFactor float64 `json:"attention_factor,omitempty"`
	// Truncate, when false, keeps YaRN's correction range fractional
	// instead of flooring and ceiling it (gpt-oss); nil means true.
	Truncate *bool `json:"truncate,omitempty"`
}

// YaRNTruncate reports whether YaRN's correction range is rounded out to
// whole dimensions (transformers' default).
func (s *RopeScaling) YaRNTruncate() bool { return s.Truncate == nil || *s.Truncate }

// RopeScalingImplemented reports a rope_scaling type moe reads but does
// not compute (transformers' dynamic, llama3 and longrope).
func (c *Config) RopeScalingImplemented() error {
	if s := c.RopeScaling; s != nil && slices.Contains(hfOnlyRopeTypes, s.Type) {
		return fmt.Errorf("rope_scaling.rope_type %q is not implemented (moe computes %q, %q and %q)", s.Type, RopeLinear, RopeNTK, RopeYaRN)
	}
	return nil
}

// ValidateRopeScaling checks rope_scaling: a known type and a factor > 1.
func (c *Config) ValidateRopeScaling() error {
	s := c.RopeScaling
	if s == nil {
		return nil
	}
	switch s.Type {
	case RopeLinear, RopeNTK, RopeYaRN:
	default:
		if slices.Contains(hfOnlyRopeTypes, s.Type) {
			return nil
		}
		return fmt.Errorf("rope_scaling.rope_type: unknown %q (want %q, %q or %q)", s.Type, RopeLinear, RopeNTK, RopeYaRN)
	}
	if !(s.Factor > 1) || math.IsInf(s.Factor, 0) {
		return fmt.Errorf("rope_scaling.factor: must be a finite number > 1 (got %v): a factor ≤ 1 does not extend the context", s.Factor)
	}
	if s.OriginalMaxPositionEmbeddings < 0 || s.OriginalMaxPositionEmbeddings > maxContext {
		return fmt.Errorf("rope_scaling.original_max_position_embeddings: %d out of range", s.OriginalMaxPositionEmbeddings)
	}
	return nonNegative("rope_scaling.", []namedFloat{
		{"beta_fast", s.BetaFast}, {"beta_slow", s.BetaSlow}, {"mscale", s.Mscale},
		{"mscale_all_dim", s.MscaleAllDim}, {"attention_factor", s.AttentionFactor},
	})
}

// rawRopeScaling is rope_scaling as config.json files write it.
type rawRopeScaling struct {
	Type                          *string   `json:"type"`
	RopeType                      *string   `json:"rope_type"`
	Factor                        *float64  `json:"factor"`
	OriginalMaxPositionEmbeddings *intField `json:"original_max_position_embeddings"`
	BetaFast                      *float64  `json:"beta_fast"`
	BetaSlow                      *float64  `json:"beta_slow"`
	Mscale                        *float64  `json:"mscale"`
	MscaleAllDim                  *float64  `json:"mscale_all_dim"`
	AttentionFactor               *float64  `json:"attention_factor"`
	Truncate                      *bool     `json:"truncate"`
}

// ropeScaling maps a raw rope_scaling; nil and the "default" type mean none.
func (p *parser) ropeScaling(r *rawRopeScaling) *RopeScaling {
	if r == nil {
		return nil
	}
	t := optS(r.RopeType, optS(r.Type, ""))
	if t == "" || t == "default" {
		return nil
	}
	if r.Factor == nil && !slices.Contains(hfOnlyRopeTypes, t) {
		p.fail("rope_scaling.factor: missing")
	}
	return &RopeScaling{
		Type: t, Factor: optF(r.Factor, 0),
		OriginalMaxPositionEmbeddings: p.opt("rope_scaling.original_max_position_embeddings", 0, r.OriginalMaxPositionEmbeddings),
		BetaFast:                      optF(r.BetaFast, 0), BetaSlow: optF(r.BetaSlow, 0),
		Mscale: optF(r.Mscale, 0), MscaleAllDim: optF(r.MscaleAllDim, 0), AttentionFactor: optF(r.AttentionFactor, 0),
		Truncate: r.Truncate,
	}
}
