package main

import (
	"context"
	"errors"
	"io"
)

// runGenerate implements `moe generate`.
func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
