package main

import (
	"context"
	"errors"
	"io"
)

// runChat implements `moe chat`.
func runChat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
