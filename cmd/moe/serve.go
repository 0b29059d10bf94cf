package main

import (
	"context"
	"errors"
	"io"
)

// runServe implements `moe serve`.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
