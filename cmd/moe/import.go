package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/safetensors"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// runImport implements `moe import`.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", "[--in] FILE.gguf|HF_DIR --out RUNDIR [--tokenizer RUNDIR] [--force]", stderr)
	in := fs.String("in", "", "a .gguf file, or a Hugging Face directory with config.json and *.safetensors")
	out := fs.String("out", "", "run directory to write (config.json, tokenizer.json, a checkpoint)")
	tokDir := fs.String("tokenizer", "", "take the tokenizer from this run directory (or tokenizer.json) instead of the input")
	force := fs.Bool("force", false, "write into an --out directory that already holds a checkpoint, or an unrelated config.json/tokenizer.json")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 && *in == "" {
		*in, pos = pos[0], pos[1:] // moe import FILE.gguf --out RUNDIR
	}
	if len(pos) > 0 {
		q := make([]string, len(pos))
		for i, p := range pos {
			q[i] = fmt.Sprintf("%q", p)
		}
		return usagef("unexpected argument(s) %s (the input goes in --in or as the one positional argument)", strings.Join(q, " "))
	}
	if *in == "" || *out == "" {
		return usagef("--in and --out are required")
	}
	st, err := os.Stat(*in)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	var (
		cfg *config.Config
		w   *model.Weights
		tok *tokenizer.Tokenizer
	)
	switch {
	case st.IsDir():
		cfg, w, err = safetensors.LoadHF(ctx, *in)
		if err != nil {
			return err
		}
		if *tokDir == "" {
			if tok, err = loadHFTokenizer(*in); err != nil {
				return err
			}
		}
	case strings.EqualFold(filepath.Ext(*in), ".gguf"):
		cfg, w, tok, err = gguf.ReadModel(ctx, *in)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: want a .gguf file or a directory with config.json and safetensors", *in)
	}
	if *tokDir != "" {
		p := *tokDir
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			p = filepath.Join(p, tokenizer.FileName)
		}
		if tok, err = tokenizer.Load(p); err != nil {
			return err
		}
	}
	if tok == nil {
		return fmt.Errorf("%s: the file has no tokenizer: pass --tokenizer RUNDIR", *in)
	}
	if tok.VocabSize() > cfg.VocabSize {
		return fmt.Errorf("tokenizer has %d ids but the model embeds only %d", tok.VocabSize(), cfg.VocabSize)
	}
	// The model's chat template goes with it (with its own tokenizer).
	var tmpl *chattmpl.Template
	if *tokDir == "" {
		if tmpl, _, err = infer.ReadChat(*in, tok); err != nil {
			return err
		}
	}
	if err := saveImportedRun(*out, cfg, w, tok, *force); err != nil {
		return err
	}
	if tmpl != nil {
		if err := chattmpl.SaveConfig(*out, tmpl); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "imported %s into %s (%d parameters)\n", *in, *out, len(w.Flat))
	return nil
}

// saveImportedRun writes a run directory that every moe command loads:
// config.json, tokenizer.json and a weights-only checkpoint at step 0.
func saveImportedRun(dir string, cfg *config.Config, w *model.Weights, tok *tokenizer.Tokenizer, force bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	existing, err := checkpoint.List(dir)
	switch {
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	case len(existing) > 0 && !force:
		return fmt.Errorf("%s already holds checkpoints (pass --force to add one)", dir)
	case len(existing) == 0 && !force:
		// No checkpoint: a config.json or tokenizer.json there is not a run's.
		for _, n := range []string{"config.json", tokenizer.FileName} {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				return fmt.Errorf("%s holds a %s but no moe checkpoint: not a run directory, refusing to overwrite it (pass --force)", dir, n)
			}
		}
	}
	if err := cfg.Save(filepath.Join(dir, "config.json")); err != nil {
		return err
	}
	if err := tok.Save(filepath.Join(dir, tokenizer.FileName)); err != nil {
		return err
	}
	h := checkpoint.Header{Config: cfg, Created: time.Now().UTC().Format(time.RFC3339)}
	if _, err := checkpoint.Save(dir, h, []checkpoint.Tensor{{Name: checkpoint.SectionWeights, Data: w.Flat}}, 0); err != nil {
		return err
	}
	return nil
}

// loadHFTokenizer reads dir/tokenizer.json, taking the end-of-sequence
// token's name from tokenizer_config.json when there is one.
func loadHFTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	path := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s: no tokenizer.json: pass --tokenizer RUNDIR", dir)
	}
	var tc struct {
		EOS json.RawMessage `json:"eos_token"`
	}
	eos := ""
	if data, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json")); err == nil && json.Unmarshal(data, &tc) == nil {
		var s string
		var obj struct {
			Content string `json:"content"`
		}
		if json.Unmarshal(tc.EOS, &s) == nil {
			eos = s
		} else if json.Unmarshal(tc.EOS, &obj) == nil {
			eos = obj.Content
		}
	}
	tok, mismatches, err := safetensors.LoadHFTokenizer(path, eos)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (or pass --tokenizer RUNDIR)", dir, err)
	}
	if mismatches > 0 {
		slog.Warn("tokenizer merge order differs from token ids; moe's rank-based BPE may split some words differently", "merges_out_of_order", mismatches)
	}
	return tok, nil
}
