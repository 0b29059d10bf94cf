package main

import (
	"context"
	"errors"
	"io"
)

// runPlan implements `moe plan`.
func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", "CONFIG [--json]", stderr)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	return errors.New("not implemented yet")
}
