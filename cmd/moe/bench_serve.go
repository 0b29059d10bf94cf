package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/moe-llm/moe/safetensors"
	"github.com/moe-llm/moe/serve/loadgen"
)

// benchServeResult is what `moe bench serve --json` prints.
type benchServeResult struct {
	URL    string           `json:"url"`
	Tokens int              `json:"tokens_per_request"`
	Levels []loadgen.Result `json:"levels"`
}

// runBenchServe implements `moe bench serve`: the aggregate throughput of
// a running OpenAI-compatible server (moe serve, llama-server, vLLM) at
// several numbers of concurrent clients, measured by the same client for
// every server.
func runBenchServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench serve", "--url http://HOST:PORT [--clients 1,4,16] [--tokens 64] [--json]", stderr)
	url := fs.String("url", "", "the server's base address (required)")
	clients := fs.String("clients", "1,4,16", "comma-separated numbers of concurrent clients")
	tokens := fs.Int("tokens", 64, "greedy tokens per request (sent with ignore_eos)")
	requests := fs.Int("requests", 2, "requests each client sends, one after another")
	prompt := fs.String("prompt", "The quick brown fox jumps over the lazy dog", "prompt (each client appends its number)")
	modelName := fs.String("model", "", "the requests' model field")
	utf8Model := fs.String("valid-utf8", "", "ban (logit_bias -100) the tokens of this model's vocabulary that are not valid UTF-8 alone, so the text stays valid UTF-8 (llama-server b9749 fails requests whose text is not)")
	jsonOut := fs.Bool("json", false, "print one JSON object")
	if err := parseFlagsNoArgs(fs, args, "the server goes in --url"); err != nil {
		return err
	}
	if *url == "" {
		return usagef("--url is required (e.g. http://127.0.0.1:8080)")
	}
	var levels []int
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return usagef("--clients: %q is not a positive number", s)
		}
		levels = append(levels, n)
	}
	if *tokens < 1 || *requests < 1 {
		return usagef("--tokens and --requests must be positive (got %d, %d)", *tokens, *requests)
	}
	opt := loadgen.Options{URL: *url, Model: *modelName, Prompt: *prompt, Tokens: *tokens, Requests: *requests}
	if *utf8Model != "" {
		tok, err := safetensors.OpenTokenizer(*utf8Model)
		if err != nil {
			return fmt.Errorf("bench serve --valid-utf8: %w", err)
		}
		opt.LogitBias = loadgen.PartialUTF8(tok.VocabSize(), tok.TokenBytes)
	}
	out := benchServeResult{URL: *url, Tokens: *tokens}
	for _, c := range levels {
		r, err := loadgen.Run(ctx, opt, c)
		if err != nil {
			return fmt.Errorf("bench serve at %d clients: %w", c, err)
		}
		out.Levels = append(out.Levels, r)
		if !*jsonOut {
			fmt.Fprintf(stdout, "%3d clients: %8.1f tok/s aggregate  (%d requests × %d tokens, p50 %.2f s, max %.2f s)\n",
				c, r.TokensPerSecond, r.Requests, *tokens, r.LatencyP50, r.LatencyMax)
		}
	}
	if *jsonOut {
		return printJSON(stdout, out)
	}
	return nil
}
