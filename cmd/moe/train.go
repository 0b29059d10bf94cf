package main

import (
	"context"
	"errors"
	"io"
)

// runTrain implements `moe train`.
func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
