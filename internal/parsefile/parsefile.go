// Package parsefile opens a file for a parser that reads it at offsets
// (io.ReaderAt) and needs its size, as the GGUF and safetensors readers do.
package parsefile

import (
	"fmt"
	"io"
	"os"
)

// Open opens path and returns parse(file, size) together with the open
// file, which the parsed value may keep reading from; the caller closes it.
// On any error the file is closed. Errors opening or sizing the file are
// returned as "<prefix>: <error>" (the error names the path); an error from
// parse is returned as "<path>: <error>".
func Open[T any](prefix, path string, parse func(r io.ReaderAt, size int64) (T, error)) (T, *os.File, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, nil, fmt.Errorf("%s: %w", prefix, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return zero, nil, fmt.Errorf("%s: %w", prefix, err)
	}
	v, err := parse(f, st.Size())
	if err != nil {
		f.Close()
		return zero, nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, f, nil
}
