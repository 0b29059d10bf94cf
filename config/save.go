package config

import (
	"encoding/json"
	"fmt"

	"github.com/moe-llm/moe/internal/atomicfile"
)

// savedConfig is what Save writes: the Config fields in the mixtral schema,
// with the expert counts always present so that a dense model reads back
// as dense.
type savedConfig struct {
	*alias
	NumExperts       int     `json:"num_local_experts"`
	ExpertsPerToken  int     `json:"num_experts_per_tok"`
	InitStd          float64 `json:"initializer_range"`
	HiddenAct        string  `json:"hidden_act"`
	AttentionBias    bool    `json:"attention_bias"`
	MLPBias          bool    `json:"mlp_bias"`
	QKVBias          bool    `json:"moe_qkv_bias"`
	QKNorm           bool    `json:"qk_norm"`
	QKNormPerHead    bool    `json:"moe_qk_norm_per_head"`
	AttentionSinks   bool    `json:"attention_sinks"`
	RouterBias       bool    `json:"moe_router_bias"`
	ExpertBias       bool    `json:"moe_expert_bias"`
	SharedExpertGate bool    `json:"moe_shared_expert_gate"`
	PlainMLP         bool    `json:"moe_plain_mlp"`
	LayerNorm        bool    `json:"moe_layer_norm"`
	LearnedPositions bool    `json:"moe_learned_positions"`
}

// alias has Config's fields without its methods.
type alias Config

// Marshal returns c as indented config.json bytes (mixtral schema plus
// moe's own fields); Parse reads them back to an equal Config.
func (c *Config) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(savedConfig{
		alias: (*alias)(c), NumExperts: c.NumExperts, ExpertsPerToken: c.ExpertsPerToken,
		InitStd: c.InitStd, HiddenAct: c.HiddenAct,
		AttentionBias: c.AttentionBias, MLPBias: c.MLPBias, QKVBias: c.QKVBias, QKNorm: c.QKNorm,
		QKNormPerHead: c.QKNormPerHead, AttentionSinks: c.AttentionSinks, RouterBias: c.RouterBias,
		ExpertBias: c.ExpertBias, SharedExpertGate: c.SharedExpertGate, PlainMLP: c.PlainMLP,
		LayerNorm: c.LayerNorm, LearnedPositions: c.LearnedPositions,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return append(data, '\n'), nil
}

// Save validates c and writes it to path as config.json, atomically: a
// temporary file in the same directory is written, synced and renamed.
func (c *Config) Save(path string) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("config: save %s: %w", path, err)
	}
	data, err := c.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("config: save %s: %w", path, err)
	}
	return nil
}
