package main

import (
	"context"
	"errors"
	"io"
)

// runBenchGemm implements `moe bench gemm`.
func runBenchGemm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
