package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/safetensors"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// runExport implements `moe export`.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "--model RUNDIR|FILE.gguf|HFDIR --out FILE.gguf [--type TYPE|MIX] [--name NAME] [--allow-inexact] | --format hf --out DIR [--force]", stderr)
	modelPath := fs.String("model", "", "model to export: a run directory, a checkpoint file in one, a .gguf file of any architecture moe reads (re-typed tensor by tensor, layout kept), or a Hugging Face directory (written in llama.cpp's converter layout for its family)")
	out := fs.String("out", "", "GGUF file to write")
	typ := fs.String("type", "f32", "weight type or llama.cpp mix, as moe quantize takes: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s/m/l, q4_k_s/m, q5_k_s/m, q6_k, iq4_nl, iq4_xs, mxfp4 (norms and router stay f32)")
	name := fs.String("name", "", "general.name stored in the file (default: the run directory's name)")
	format := fs.String("format", "gguf", "gguf, or hf: a Hugging Face directory (config.json, model.safetensors, tokenizer.json) for --type f32, f16 or bf16")
	force := fs.Bool("force", false, "with --format hf: remove another export's shards and index in --out, or write into a folder whose config.json/tokenizer.json are not a model's")
	inexact := fs.Bool("allow-inexact", false, "write a model llama.cpp cannot run exactly (an ungated shared expert; YaRN untruncated, as gpt-oss's config asks, written as llama.cpp's converter does); moe still reads a run directory's back exactly")
	if err := parseFlagsNoArgs(fs, args, "the weight type goes in --type"); err != nil {
		return err
	}
	if *modelPath == "" || *out == "" {
		return usagef("--model and --out are required")
	}
	mix, err := gguf.ParseMix(*typ)
	if err != nil {
		return usagef("--type: %v", err)
	}
	t := mix.Default
	if *format != "gguf" && *format != "hf" {
		return usagef("--format must be gguf or hf, not %q", *format)
	}
	if *format == "hf" && t != gguf.F32 && t != gguf.F16 && t != gguf.BF16 {
		return usagef("--format hf writes f32, f16 or bf16 weights, not %s", t)
	}
	if *format == "gguf" {
		if *name == "" {
			*name = defaultExportName(*modelPath)
		}
		switch {
		case isGGUFFile(*modelPath):
			return exportGGUFFile(ctx, *modelPath, *out, mix, *name, stdout, stderr)
		case safetensors.IsHFDir(*modelPath):
			return exportHFDir(ctx, *modelPath, *out, gguf.ExportOptions{Mix: mix, Name: *name, AllowInexact: *inexact}, stdout)
		}
	}
	cfg, w, tok, err := loadModelSource(ctx, *modelPath)
	if err != nil {
		return err
	}
	// The model's own chat template goes with it.
	tmpl, _, err := infer.ReadChat(*modelPath, tok)
	if err != nil {
		return err
	}
	if *format == "hf" {
		// Transformers' Mixtral and Llama compute what llama.cpp's llama
		// architecture computes: the same compatibility rule applies.
		if err := gguf.CheckLlamaCompatible(cfg); err != nil && !*inexact {
			return fmt.Errorf("%s: Hugging Face's Mixtral/Llama cannot run this model exactly: %w (pass --allow-inexact to write it anyway)", *out, err)
		}
		if err := safetensors.PrepareHFDir(*out, *force); err != nil {
			return err
		}
		return exportHF(ctx, *out, cfg, w, tok, tmpl, t, stdout)
	}
	eo := gguf.ExportOptions{Mix: mix, Name: *name, AllowInexact: *inexact}
	if tmpl != nil {
		eo.ChatTemplate = tmpl.Source()
	}
	if err := gguf.Export(ctx, *out, cfg, w, tok, eo); err != nil {
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	return reportWritten(stdout, *out, fmt.Sprintf("%s, %d parameters", mix.Name, len(w.Flat)))
}

// isGGUFFile reports whether path names a .gguf file (not a directory).
func isGGUFFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && strings.EqualFold(filepath.Ext(path), ".gguf")
}

// exportGGUFFile writes the GGUF file in (of any architecture moe reads) to
// out with its tensors re-typed by mix, as moe quantize does: the layout,
// metadata, tokenizer and chat template are kept, general.name set to name.
// Quantized tensors are re-encoded (from their decoded values) when mix
// asks for another type.
func exportGGUFFile(ctx context.Context, in, out string, mix gguf.Mix, name string, stdout, stderr io.Writer) error {
	if filepath.Clean(in) == filepath.Clean(out) {
		return usagef("--model and --out are the same file")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := gguf.QuantizeFile(ctx, in, out, gguf.QuantizeOptions{Mix: mix, AllowRequantize: true, Logger: log, Name: name})
	if err != nil {
		return err
	}
	return reportWritten(stdout, out, fmt.Sprintf("%s, %d tensors re-typed of %d", mix.Name, res.Changed, res.Tensors))
}

// reportWritten prints what export wrote: the file, what, and its size.
func reportWritten(stdout io.Writer, out, what string) error {
	st, err := os.Stat(out)
	if err != nil {
		return fmt.Errorf("written file: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %d bytes)\n", out, what, st.Size())
	return nil
}

// exportHFDir writes the Hugging Face model directory dir as a GGUF file in
// llama.cpp's converter layout for its family, with its tokenizer and chat
// template.
func exportHFDir(ctx context.Context, dir, out string, eo gguf.ExportOptions, stdout io.Writer) error {
	mm, err := infer.OpenHF(dir)
	if err != nil {
		return err
	}
	defer mm.Close()
	tmpl, _, err := infer.ReadChat(dir, mm.Tok)
	if err != nil {
		return err
	}
	if tmpl != nil {
		eo.ChatTemplate = tmpl.Source()
	}
	if err := gguf.ExportMapped(ctx, out, mm, eo); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return reportWritten(stdout, out, mm.Cfg.ModelType+" "+eo.Mix.Name)
}

// defaultExportName is general.name for a model path: the run directory's
// name (also for a checkpoint file inside it), or the .gguf file's name.
func defaultExportName(path string) string {
	p := filepath.Clean(path)
	if strings.EqualFold(filepath.Ext(p), checkpoint.Ext) {
		p = filepath.Dir(p)
	}
	base := filepath.Base(p)
	if strings.EqualFold(filepath.Ext(base), ".gguf") {
		base = base[:len(base)-len(".gguf")]
	}
	return base
}

// loadModelSource loads a model with its tokenizer from a run directory
// (config, newest checkpoint, tokenizer.json), a checkpoint file inside one,
// or a .gguf file.
func loadModelSource(ctx context.Context, path string) (*config.Config, *model.Weights, *tokenizer.Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("model: %w", err)
	}
	if !st.IsDir() && strings.EqualFold(filepath.Ext(path), ".gguf") {
		cfg, w, tok, err := gguf.ReadModel(ctx, path)
		if err != nil {
			return nil, nil, nil, err
		}
		if tok == nil {
			return nil, nil, nil, fmt.Errorf("%s has no tokenizer", path)
		}
		return cfg, w, tok, nil
	}
	dir := path
	if !st.IsDir() {
		// A checkpoint file inside a run directory (as generate, eval and
		// finetune accept): the tokenizer is its directory's.
		if !strings.EqualFold(filepath.Ext(path), checkpoint.Ext) {
			return nil, nil, nil, fmt.Errorf("model %s: want a run directory, a %s checkpoint file or a .gguf file", path, checkpoint.Ext)
		}
		dir = filepath.Dir(path)
	}
	cfg, w, err := checkpoint.LoadModel(path)
	if err != nil {
		return nil, nil, nil, err
	}
	tok, err := tokenizer.Load(filepath.Join(dir, tokenizer.FileName))
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, w, tok, nil
}

// exportHF writes a Hugging Face checkpoint directory: config.json (model
// type llama for dense models, the config's own type otherwise),
// model.safetensors, tokenizer.json and tokenizer_config.json, with the
// model's own chat template tmpl when it has one (else moe's).
func exportHF(ctx context.Context, dir string, cfg *config.Config, w *model.Weights, tok *tokenizer.Tokenizer, tmpl *chattmpl.Template, t gguf.GGMLType, stdout io.Writer) error {
	c := *cfg
	if !c.IsMoE() && c.ModelType == config.TypeMixtral {
		c.ModelType = config.TypeLlama
	}
	dtype := map[gguf.GGMLType]string{gguf.F32: safetensors.F32, gguf.F16: safetensors.F16, gguf.BF16: safetensors.BF16}[t]
	if err := safetensors.SaveHF(ctx, dir, &c, w, dtype); err != nil {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	if err := safetensors.SaveHFTokenizer(dir, tok); err != nil {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	if tmpl != nil {
		if err := chattmpl.SetConfigTemplate(dir, tmpl); err != nil {
			return fmt.Errorf("writing %s: %w", dir, err)
		}
	}
	fmt.Fprintf(stdout, "wrote %s (Hugging Face %s, %s, %d parameters)\n", dir, c.ModelType, dtype, len(w.Flat))
	return nil
}
