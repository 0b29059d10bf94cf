package gguf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// TestViewMatrixAndMapFile checks a mapped file's bytes, a matrix view's
// size check, and that a NewMapped model's Close releases its closer.
func TestViewMatrixAndMapFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.bin")
	want := []byte("0123456789abcdef")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	data, c, err := MapFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(want) {
		t.Fatalf("mapped %q, want %q", data, want)
	}
	m, err := ViewMatrix("w", compute.QF32, 2, 2, data, 3)
	if err != nil || m.Rows != 2 || m.Cols != 2 || len(m.Data) != 16 {
		t.Fatalf("view: %+v, %v", m, err)
	}
	if _, err := ViewMatrix("w", compute.QF16, 2, 2, data, 3); err == nil || !strings.Contains(err.Error(), `"w"`) {
		t.Fatalf("16 bytes as 2×2 F16: error %v, want one naming the tensor", err)
	}
	closed := false
	mm := NewMapped(&config.Config{NumLayers: 2}, nil, closeFunc(func() error { closed = true; return c.Close() }))
	if len(mm.Layers) != 2 {
		t.Fatalf("%d layers, want 2", len(mm.Layers))
	}
	if err := mm.Close(); err != nil || !closed {
		t.Fatalf("Close: %v, closer called %v", err, closed)
	}
	if err := mm.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
