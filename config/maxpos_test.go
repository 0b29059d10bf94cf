package config

import (
	"strings"
	"testing"
)

// TestMaxPositionEmbeddingsDefault: a Hugging Face config.json without
// max_position_embeddings takes the transformers default of its model type;
// a type without one (gpt3) still names the missing field; a present value
// wins over the default.
func TestMaxPositionEmbeddingsDefault(t *testing.T) {
	base := map[string]string{
		TypeLlama:    `"intermediate_size":32`,
		TypeMistral:  `"intermediate_size":32`,
		TypeMixtral:  `"intermediate_size":32,"num_local_experts":4,"num_experts_per_tok":2`,
		TypeQwen2MoE: `"intermediate_size":32,"moe_intermediate_size":8,"num_experts":4,"num_experts_per_tok":2`,
		TypeQwen3MoE: `"intermediate_size":32,"moe_intermediate_size":8,"num_experts":4,"num_experts_per_tok":2`,
		TypeOLMoE:    `"intermediate_size":32,"num_experts":4,"num_experts_per_tok":2`,
		TypeGPTOSS:   `"intermediate_size":32,"num_local_experts":4,"num_experts_per_tok":2,"head_dim":4`,
	}
	want := map[string]int{TypeLlama: 2048, TypeMistral: 131072, TypeMixtral: 131072, TypeQwen2MoE: 32768,
		TypeQwen3MoE: 32768, TypeOLMoE: 4096, TypeGPTOSS: 131072}
	for typ, extra := range base {
		js := `{"model_type":"` + typ + `","vocab_size":100,"hidden_size":16,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,` + extra + `}`
		c, err := Parse([]byte(js))
		if err != nil {
			t.Errorf("%s without max_position_embeddings: %v", typ, err)
			continue
		}
		if c.MaxPositionEmbeddings != want[typ] {
			t.Errorf("%s: max_position_embeddings defaulted to %d, want %d", typ, c.MaxPositionEmbeddings, want[typ])
		}
		if d, ok := DefaultMaxPositionEmbeddings(typ); !ok || d != want[typ] {
			t.Errorf("DefaultMaxPositionEmbeddings(%s) = %d, %v", typ, d, ok)
		}
		c, err = Parse([]byte(strings.Replace(js, `"vocab_size":100`, `"vocab_size":100,"max_position_embeddings":64`, 1)))
		if err != nil || c.MaxPositionEmbeddings != 64 {
			t.Errorf("%s with max_position_embeddings 64: %v, %+v", typ, err, c)
		}
	}
	_, err := Parse([]byte(`{"model_type":"gpt3","vocab_size":50257,"n_embd":768,"n_layer":12,"n_head":12}`))
	if err == nil || !strings.Contains(err.Error(), "max_position_embeddings: missing") {
		t.Errorf("gpt3 without n_positions: err %v, want max_position_embeddings: missing", err)
	}
	if _, ok := DefaultMaxPositionEmbeddings(TypeGPT3); ok {
		t.Error("gpt3 has a default max_position_embeddings")
	}
	_, err = Parse([]byte(strings.Replace(goodMixtral, `"max_position_embeddings":64`, `"max_position_embeddings":-1`, 1)))
	if err == nil || !strings.Contains(err.Error(), "max_position_embeddings: must not be negative") {
		t.Errorf("negative max_position_embeddings: err %v", err)
	}
}
