package main

import (
	"context"
	"errors"
	"io"
)

// runFinetune implements `moe finetune`.
func runFinetune(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
