package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/moe-llm/moe/safetensors"
)

// runTokenize implements `moe tokenize`.
func runTokenize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tokenize", "--model MODEL [--json] [--ids] [--no-bos] [--no-parse-special] [--file F | TEXT]", stderr)
	modelPath := fs.String("model", "", "a .gguf file (vocab-only files too), a run directory or a Hugging Face directory")
	asJSON := fs.Bool("json", false, `print {"ids": [...], "pieces": [...]}`)
	idsOnly := fs.Bool("ids", false, "print only the ids, as [1, 2, 3] (llama-tokenize --ids)")
	file := fs.String("file", "", "tokenize this file's bytes instead of TEXT")
	noBOS := fs.Bool("no-bos", false, "do not add BOS/EOS even if the vocabulary asks for them")
	noParse := fs.Bool("no-parse-special", false, "encode control-token strings as text")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if *modelPath == "" {
		return usagef("--model is required")
	}
	var text []byte
	switch {
	case *file != "" && len(pos) > 0:
		return usagef("give --file or TEXT, not both")
	case *file != "":
		if text, err = os.ReadFile(*file); err != nil {
			return fmt.Errorf("--file: %w", err)
		}
	case len(pos) == 1:
		text = []byte(pos[0])
	case len(pos) > 1:
		return usagef("one TEXT argument expected (quote it), got %d", len(pos))
	default:
		return usagef("give TEXT or --file")
	}
	tok, err := safetensors.OpenTokenizer(*modelPath)
	if err != nil {
		return err
	}
	ids := tok.Tokenize(text, !*noBOS, !*noParse)
	switch {
	case *asJSON:
		pieces := make([]string, len(ids))
		for i, id := range ids {
			pieces[i] = string(tok.Piece(id, true))
		}
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(struct {
			IDs    []int32  `json:"ids"`
			Pieces []string `json:"pieces"`
		}{ids, pieces})
	case *idsOnly:
		s := make([]string, len(ids))
		for i, id := range ids {
			s[i] = strconv.Itoa(int(id))
		}
		_, err = fmt.Fprintf(stdout, "[%s]\n", strings.Join(s, ", "))
		return err
	}
	for _, id := range ids {
		if _, err := fmt.Fprintf(stdout, "%6d -> %q\n", id, tok.Piece(id, true)); err != nil {
			return err
		}
	}
	return nil
}
