package main

import (
	"context"
	"errors"
	"io"
)

// runBenchTrain implements `moe bench train`.
func runBenchTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
