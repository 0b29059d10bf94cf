package main

import (
	"context"
	"errors"
	"io"
)

// runExport implements `moe export`.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
