package infer

import (
	"fmt"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/safetensors"
)

// loadHF opens a Hugging Face model directory for inference: its
// safetensors are mapped read-only and their matrices multiplied in their
// stored types, in place, as a GGUF file's are.
func loadHF(path string, pool *compute.Pool) (*Model, error) {
	mm, err := safetensors.OpenMapped(path)
	if err != nil {
		return nil, fmt.Errorf("infer: load model: %w", err) // err names path
	}
	return mappedModel(path, mm, pool)
}
