package main

import (
	"context"
	"errors"
	"io"
)

// runEval implements `moe eval`.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
