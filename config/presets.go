package config

import (
	"embed"
	"fmt"
	"path"
	"sort"
	"strings"
)

// hfConfigs holds real Hugging Face config.json files, one per preset named
// after the file (e.g. hf/mixtral-8x7b.json is the preset "mixtral-8x7b").
//
//go:embed hf/*.json
var hfConfigs embed.FS

// GPT-4 as described by the published account (see docs/plan.md): 120
// layers, 16 experts of ~111B parameters each, top-2 routing, ~55B of
// attention, 8k context. The account gives no widths; these reproduce its
// totals: 4·d²·120 = 55.5B of multi-head attention at d = 10752 (84 heads of
// 128), and 3·d·ff·120 = 111.0B per SwiGLU expert at ff = 28672 = 8d/3
// (which is the same 8d² per layer as a two-matrix MLP of width 4d).
const (
	gpt4Hidden = 10752
	gpt4FF     = 28672
	gpt4Layers = 120
	gpt4Heads  = 84
	// gpt4Vocab is the size of cl100k_base, GPT-4's tokenizer (100256
	// ordinary tokens plus specials).
	gpt4Vocab = 100277
)

func gpt4Preset() *Config {
	return &Config{
		ModelType:             TypeMixtral,
		VocabSize:             gpt4Vocab,
		HiddenSize:            gpt4Hidden,
		IntermediateSize:      gpt4FF,
		NumLayers:             gpt4Layers,
		NumHeads:              gpt4Heads,
		NumKVHeads:            gpt4Heads,
		MaxPositionEmbeddings: 8192,
		RopeTheta:             10000,
		RMSNormEps:            1e-5,
		NumExperts:            16,
		ExpertsPerToken:       2,
		RouterAuxLossCoef:     0.01,
		Routing:               RoutingTokenChoice,
		RouterOrder:           RouterTopKSoftmax,
		InitStd:               0.02,
		HiddenAct:             "silu",
	}
}

// gpt3Preset is GPT-3 175B (Brown et al. 2020, table 2.1): 96 layers,
// d_model 12288, 96 heads of 128, d_ff = 4·d_model, 2048 context, the GPT-2
// byte-level BPE vocabulary of 50257, learned positions, LayerNorm, biases
// and tied embeddings.
func gpt3Preset() *Config {
	return &Config{
		ModelType:             TypeGPT3,
		VocabSize:             50257,
		HiddenSize:            12288,
		IntermediateSize:      4 * 12288,
		NumLayers:             96,
		NumHeads:              96,
		NumKVHeads:            96,
		MaxPositionEmbeddings: 2048,
		RMSNormEps:            1e-5,
		TieWordEmbeddings:     true,
		AttentionBias:         true,
		MLPBias:               true,
		PlainMLP:              true,
		LayerNorm:             true,
		LearnedPositions:      true,
		HiddenAct:             "gelu",
		InitStd:               0.02,
	}
}

// builtinPresets returns every preset, freshly built.
func builtinPresets() (map[string]*Config, error) {
	m := tinyPresets()
	m["gpt4"] = gpt4Preset()
	m["gpt3"] = gpt3Preset()
	entries, err := hfConfigs.ReadDir("hf")
	if err != nil {
		return nil, fmt.Errorf("config: embedded presets: %w", err)
	}
	for _, e := range entries {
		data, err := hfConfigs.ReadFile(path.Join("hf", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("config: embedded preset %s: %w", e.Name(), err)
		}
		c, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("config: embedded preset %s: %w", e.Name(), err)
		}
		m[strings.TrimSuffix(e.Name(), ".json")] = c
	}
	for name, c := range m {
		c.Name = name
	}
	return m, nil
}

// Preset returns a fresh copy of the named preset: gpt4 (the published
// account), gpt3, tiny, tiny-draft, or one of the real Hugging Face configs
// listed by PresetNames (mixtral-8x7b, llama-2-7b, ...).
func Preset(name string) (*Config, bool) {
	if name == "" || strings.ContainsAny(name, `/\`) {
		return nil, false
	}
	m, err := builtinPresets()
	if err != nil {
		return nil, false
	}
	c, ok := m[name]
	return c, ok
}

// PresetNames returns the names Preset accepts, sorted.
func PresetNames() []string {
	m, err := builtinPresets()
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
