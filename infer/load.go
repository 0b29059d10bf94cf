package infer

import (
	"errors"
	"fmt"

	"moe/compute"
)

// loadRunDir loads a run directory. It is wired to the checkpoint package.
func loadRunDir(dir string, pool *compute.Pool) (*Model, error) {
	return nil, fmt.Errorf("infer: load %s: run directories cannot be loaded yet (checkpoint reader missing)", dir)
}

// loadGGUF loads a .gguf file.
func loadGGUF(path string, pool *compute.Pool) (*Model, error) {
	return nil, fmt.Errorf("infer: load %s: %w", path, errors.New("GGUF models cannot be loaded yet"))
}
