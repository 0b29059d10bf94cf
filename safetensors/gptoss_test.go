package safetensors

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadGPTOSSErrors checks that a gpt_oss directory with a missing, a
// misshapen or a wrongly typed tensor fails with one line naming it, and
// that another model type's directory is not taken for gpt_oss.
func TestReadGPTOSSErrors(t *testing.T) {
	const cfg = `{"model_type":"gpt_oss","vocab_size":8,"hidden_size":32,"intermediate_size":32,"num_hidden_layers":1,
"num_attention_heads":2,"num_key_value_heads":1,"head_dim":16,"num_local_experts":2,"num_experts_per_tok":1,
"sliding_window":4,"layer_types":["sliding_attention"]}`
	f32 := func(name string, shape ...int64) Tensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		return Tensor{Name: name, DType: F32, Shape: shape, Data: make([]float32, n)}
	}
	for _, c := range []struct {
		tensors []Tensor
		want    string
	}{
		{[]Tensor{f32("model.norm.weight", 32)}, `missing tensor "model.embed_tokens.weight"`},
		{[]Tensor{f32("model.embed_tokens.weight", 8, 31)}, `tensor "model.embed_tokens.weight" has shape [8 31], config.json needs [8 32]`},
		{[]Tensor{{Name: "model.embed_tokens.weight", DType: U8, Shape: []int64{8, 32}, Raw: make([]byte, 256)}}, `tensor "model.embed_tokens.weight" has dtype U8`},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(context.Background(), filepath.Join(dir, "model.safetensors"), c.tensors, nil); err != nil {
			t.Fatal(err)
		}
		if !IsGPTOSSDir(dir) {
			t.Fatal("not recognised as a gpt_oss directory")
		}
		_, err := ReadGPTOSS(context.Background(), dir)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("got %v, want one line containing %s", err, c.want)
		}
	}
	// Not gpt_oss: not recognised.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(cfg, "gpt_oss", "mixtral", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if IsGPTOSSDir(dir) {
		t.Error("a mixtral directory taken for gpt_oss")
	}
}
