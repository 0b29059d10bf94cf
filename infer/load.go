package infer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/tokenizer"
)

// loadRunDir loads a run directory (its newest checkpoint and its
// tokenizer) or a checkpoint file inside one.
func loadRunDir(path string, pool *compute.Pool) (*Model, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("infer: model %s does not exist", path)
	}
	if err != nil {
		return nil, fmt.Errorf("infer: model %s: %w", path, err)
	}
	dir := path
	if !st.IsDir() {
		dir = filepath.Dir(path)
	}
	cfg, w, err := checkpoint.LoadModel(path)
	if err != nil {
		return nil, fmt.Errorf("infer: load model %s: %w", path, err)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, tokenizer.FileName))
	if err != nil {
		return nil, fmt.Errorf("infer: load model %s: %w", path, err)
	}
	m, err := New(cfg, w, tok, pool)
	if err != nil {
		return nil, fmt.Errorf("infer: load model %s: %w", path, err)
	}
	return m, nil
}

// mappedModel builds the inference model of path from its opened tensors,
// releasing them if that fails.
func mappedModel(path string, mm *gguf.Mapped, pool *compute.Pool) (*Model, error) {
	m, err := newMapped(mm, pool)
	if err != nil {
		mm.Close()
		return nil, fmt.Errorf("infer: load model %s: %w", path, err)
	}
	m.path = path
	return m, nil
}

// loadGGUF opens a .gguf file for inference: it is mapped read-only and
// its matrices are multiplied in their stored types, in place.
func loadGGUF(path string, pool *compute.Pool, place gguf.Placement) (*Model, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("infer: model %s does not exist", path)
	}
	mm, err := gguf.OpenModel(path, place)
	if err != nil {
		return nil, fmt.Errorf("infer: load model %s: %w", path, err)
	}
	return mappedModel(path, mm, pool)
}
