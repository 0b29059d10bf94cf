package main

import (
	"context"
	"io"
)

// runBench implements `moe bench KIND`: each kind prints one JSON object.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "--h" || args[0] == "help" {
		io.WriteString(stderr, "usage: moe bench gemm|train|generate|serve [flags] --json\n")
		if len(args) == 0 {
			return usagef("missing bench kind (gemm, train, generate or serve)")
		}
		return nil
	}
	switch args[0] {
	case "gemm":
		return runBenchGemm(ctx, args[1:], stdout, stderr)
	case "train":
		return runBenchTrain(ctx, args[1:], stdout, stderr)
	case "generate":
		return runBenchGenerate(ctx, args[1:], stdout, stderr)
	case "serve":
		return runBenchServe(ctx, args[1:], stdout, stderr)
	}
	return usagef("unknown bench kind %q (gemm, train, generate or serve)", args[0])
}
