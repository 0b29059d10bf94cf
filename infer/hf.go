package infer

import (
	"context"
	"fmt"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/safetensors"
)

// OpenHF opens the weights and tokenizer of a Hugging Face model directory
// of any family moe runs: gpt_oss and deepseek_v2/v3 through their readers
// (safetensors.ReadGPTOSS, ReadDeepseek), the others mapped in place
// (safetensors.OpenMapped). Close the result to release them.
func OpenHF(path string) (*gguf.Mapped, error) {
	switch {
	case safetensors.IsGPTOSSDir(path):
		return safetensors.ReadGPTOSS(context.Background(), path)
	case safetensors.IsDeepseekDir(path):
		return safetensors.ReadDeepseek(context.Background(), path)
	}
	return safetensors.OpenMapped(path)
}

// loadHF opens a Hugging Face model directory for inference (see OpenHF):
// its matrices are multiplied in their stored types, in place where they
// are mapped, as a GGUF file's are.
func loadHF(path string, pool *compute.Pool) (*Model, error) {
	mm, err := OpenHF(path)
	if err != nil {
		return nil, fmt.Errorf("infer: load model: %w", err) // err names path
	}
	return mappedModel(path, mm, pool)
}
