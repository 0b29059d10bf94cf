package gguf

import (
	"fmt"
	"io"
	"os"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/tokenizer"
)

// NewMapped returns an empty Mapped of cfg and tok for a reader of another
// format (a Hugging Face directory) to fill with matrices that view memory
// it owns; Close closes closer, after which those views must not be
// touched.
func NewMapped(cfg *config.Config, tok *tokenizer.Tokenizer, closer io.Closer) *Mapped {
	return &Mapped{Cfg: cfg, Tok: tok, Layers: make([]LayerMatrices, cfg.NumLayers), closer: closer}
}

// ViewMatrix returns the rows×cols matrix of type t stored in data (used
// in place), failing when data's length is not rows·RowBytes(cols) or moe
// cannot compute with t. region identifies the allocation data lies in
// (0: unknown): Fuse joins only matrices of one nonzero region.
func ViewMatrix(name string, t compute.QType, rows, cols int, data []byte, region int) (Matrix, error) {
	if !compute.QMatMulSupported(t) {
		return Matrix{}, fmt.Errorf("tensor %q has type %s, which moe cannot compute with", name, t)
	}
	rb, err := t.RowBytes(cols)
	if err != nil || rows < 0 || len(data) != rows*rb {
		return Matrix{}, fmt.Errorf("tensor %q: %d bytes do not hold %d×%d values of type %s", name, len(data), rows, cols, t)
	}
	return Matrix{Name: name, Type: t, Rows: rows, Cols: cols, Data: data[:len(data):len(data)], region: region}, nil
}

// MapFile maps the file at path read-only and returns its bytes with the
// closer that releases them; where mapping is unavailable the file is read
// into memory instead.
func MapFile(path string) ([]byte, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close() // a mapping outlives its descriptor
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if data, unmap, err := mapFile(f, st.Size()); err == nil {
		return data, closeFunc(unmap), nil
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, closeFunc(func() error { return nil }), nil
}

// closeFunc is an io.Closer calling a function.
type closeFunc func() error

func (c closeFunc) Close() error { return c() }
