package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/moe-llm/moe/internal/atomicfile"
	"github.com/moe-llm/moe/train"
)

// runExperts implements `moe experts RUNDIR`: the per-source routing
// telemetry of a training run as a table and a heat-map PNG.
func runExperts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("experts", "RUNDIR [--png FILE]", stderr)
	pngPath := fs.String("png", "", "heat map to write (default RUNDIR/experts.png)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one RUNDIR, got %d arguments", len(pos))
	}
	roles, err := train.ReadExpertRoles(pos[0])
	if err != nil {
		return err
	}
	out := *pngPath
	if out == "" {
		out = filepath.Join(pos[0], "experts.png")
	}
	return writeExpertRoles(roles, out, stdout)
}

// writeExpertRoles prints roles' table and writes its heat map to path.
func writeExpertRoles(roles *train.ExpertRoles, path string, stdout io.Writer) error {
	img, err := roles.PNG()
	if err != nil {
		return err
	}
	if err := roles.WriteTable(stdout); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, img, 0o644); err != nil {
		return fmt.Errorf("experts: %w", err)
	}
	fmt.Fprintf(stdout, "heat map (experts × sources per layer, brightness = share of the source's routings): %s\n", path)
	return nil
}
