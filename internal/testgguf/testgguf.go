// Package testgguf opens GGUF files for tests. Only tests import it.
package testgguf

import (
	"testing"

	"github.com/moe-llm/moe/gguf"
)

// Open opens the GGUF file path, closed when the test ends; an error fails
// tb.
func Open(tb testing.TB, path string) *gguf.File {
	tb.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}
