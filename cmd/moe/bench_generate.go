package main

import (
	"context"
	"errors"
	"io"
)

// runBenchGenerate implements `moe bench generate`.
func runBenchGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
