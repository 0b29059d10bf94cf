package main

import (
	"context"
	"errors"
	"io"
)

// runImport implements `moe import`.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
