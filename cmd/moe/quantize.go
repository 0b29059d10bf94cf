package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/safetensors"
)

// runQuantize implements `moe quantize IN OUT TYPE`.
func runQuantize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("quantize", "[--pure] [--allow-requantize] [--name NAME] IN OUT TYPE", stderr)
	pure := fs.Bool("pure", false, "give every weight matrix TYPE's default type (no llama-quantize mix rules)")
	requant := fs.Bool("allow-requantize", false, "re-encode tensors that are already quantized, and write tensors at more bits than they are stored")
	name := fs.String("name", "", "general.name for a run directory's file (default: the directory's name)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		return usagef("want IN OUT TYPE, got %d arguments", len(pos))
	}
	in, out := pos[0], pos[1]
	mix, err := gguf.ParseMix(pos[2])
	if err != nil {
		return usagef("TYPE: %v", err)
	}
	mix.Pure = *pure
	if filepath.Clean(in) == filepath.Clean(out) {
		return usagef("IN and OUT are the same file")
	}
	st, err := os.Stat(in)
	if err != nil {
		return fmt.Errorf("IN: %w", err)
	}
	if st.IsDir() && safetensors.IsHFDir(in) {
		// A Hugging Face directory: written in its family's GGUF layout.
		if *name == "" {
			*name = defaultExportName(in)
		}
		return exportHFDir(ctx, in, out, gguf.ExportOptions{Mix: mix, Name: *name}, stdout)
	}
	if st.IsDir() || !strings.EqualFold(filepath.Ext(in), ".gguf") {
		// A run directory (or a checkpoint in one) goes through export.
		cfg, w, tok, err := loadModelSource(ctx, in)
		if err != nil {
			return err
		}
		if *name == "" {
			*name = defaultExportName(in)
		}
		if err := gguf.Export(ctx, out, cfg, w, tok, gguf.ExportOptions{Mix: mix, Name: *name}); err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
		fmt.Fprintf(stdout, "wrote %s (%s, %d parameters)\n", out, mix.Name, len(w.Flat))
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := gguf.QuantizeFile(ctx, in, out, gguf.QuantizeOptions{Mix: mix, AllowRequantize: *requant, Logger: log})
	if err != nil {
		return err
	}
	var counts []string
	for t, n := range res.Types {
		counts = append(counts, fmt.Sprintf("%s %d", t, n))
	}
	sort.Strings(counts)
	fmt.Fprintf(stdout, "wrote %s (%s: %d of %d tensors re-typed; %s; %.1f MB -> %.1f MB)\n", out, mix.Name, res.Changed, res.Tensors,
		strings.Join(counts, ", "), float64(res.InBytes)/1e6, float64(res.OutBytes)/1e6)
	return nil
}
