package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/infer"
)

// runChat implements `moe chat`: an interactive loop that reads one user
// message per line from stdin, streams the reply, renders the conversation
// with the model's own chat template, and keeps the KV cache across turns
// so each turn computes little more than its new tokens.
func runChat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return chatLoop(ctx, args, os.Stdin, stdout, stderr)
}

func chatLoop(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("chat", "--model MODEL [--system TEXT] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--draft MODEL|ngram]", stderr)
	modelPath := fs.String("model", "", "model: a run directory, a .gguf file or a Hugging Face directory")
	system := fs.String("system", "", "system message that opens the conversation")
	maxTokens := fs.Int("max-tokens", 256, "most tokens per reply")
	temp := fs.Float64("temperature", 0.7, "sampling temperature; 0 = greedy")
	topK := fs.Int("top-k", 40, "keep only the K most likely tokens (0 = all)")
	topP := fs.Float64("top-p", 0.95, "nucleus sampling mass")
	seed := fs.Uint64("seed", 0, "random seed")
	draftPath := fs.String("draft", "", "speculative decoding: a draft model sharing the tokenizer, or ngram for prompt lookup (no model)")
	draftTokens := fs.Int("draft-tokens", 4, "initial draft tokens per step")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	place := addWeightsFlag(fs)
	bf16 := fs.Bool("bf16", false, "compute with bfloat16 copies of the weights (half the memory traffic, rounded weights)")
	quiet := fs.Bool("quiet", false, "no prompt marker or statistics on stderr")
	if err := parseFlagsNoArgs(fs, args, "messages are read from stdin"); err != nil {
		return err
	}
	if *modelPath == "" {
		return usagef("--model is required")
	}
	if *maxTokens < 1 || *draftTokens < 1 {
		return usagef("--max-tokens and --draft-tokens must be at least 1")
	}
	so := infer.SampleOptions{Temperature: *temp, TopK: *topK, TopP: *topP, Seed: *seed}
	if err := so.Validate(); err != nil {
		return usagef("%v", err)
	}
	pool := compute.NewPool(*threads)
	defer pool.Close()
	m, d, err := loadModels(*modelPath, *draftPath, *place, pool)
	if err != nil {
		return err
	}
	defer closeModels(m, d)
	useBF16(*bf16, m, d)
	tmpl, err := m.ChatTemplate()
	if err != nil {
		return err
	}
	stopIDs, stopStrs := m.ChatStops(tmpl)
	// The conversation is rendered whole each turn with the model's
	// template; the sequence keeps the cache of the tokens that still
	// match, so a turn computes little more than its new tokens.
	var sys []infer.Message
	if *system != "" {
		sys = []infer.Message{{Role: "system", Content: *system}}
	}
	var turns []infer.Message // user, assistant, user, ...
	seq := m.NewSeq(0)
	var dseq *infer.Seq
	if d != nil {
		dseq = d.NewSeq(0)
	}
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	w := bufio.NewWriter(stdout)
	for turn := 0; ; turn++ {
		if !*quiet {
			fmt.Fprint(stderr, "> ")
		}
		if !in.Scan() {
			break
		}
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		if line == "/reset" {
			turns = turns[:0]
			continue
		}
		turns = append(turns, infer.Message{Role: "user", Content: line})
		build := func() ([]int32, error) {
			return m.EncodeChat(append(append([]infer.Message(nil), sys...), turns...), true)
		}
		prompt, err := build()
		if err != nil {
			return err
		}
		// Drop the oldest exchanges until the prompt leaves room for a reply.
		for len(prompt)+*maxTokens > m.Context() && len(turns) > 2 {
			turns = turns[2:]
			if prompt, err = build(); err != nil {
				return err
			}
		}
		if len(prompt) >= m.Context() {
			turns = turns[:len(turns)-1]
			return fmt.Errorf("message of %d tokens does not fit the context of %d tokens", len(prompt), m.Context())
		}
		opts := infer.GenerateOptions{MaxTokens: min(*maxTokens, m.Context()-len(prompt)), StopTokens: stopIDs, Stop: stopStrs,
			Sampling: so, Seq: seq, Draft: d, DraftSeq: dseq, Drafter: drafterFor(*draftPath), DraftTokens: *draftTokens, TokenText: m.ReplyText(tmpl),
			Text: func(s string) error {
				if _, err := w.WriteString(s); err != nil {
					return err
				}
				return w.Flush()
			}}
		opts.Sampling.Seed = *seed + uint64(turn)
		res, err := m.Generate(ctx, prompt, opts, nil)
		fmt.Fprintln(w)
		if ferr := w.Flush(); ferr != nil {
			return fmt.Errorf("write: %w", ferr)
		}
		if err != nil {
			return err
		}
		turns = append(turns, infer.Message{Role: "assistant", Content: res.Text})
		if !*quiet {
			fmt.Fprintf(stderr, "[%d tokens, %.1f tok/s, %d of %d prompt tokens reused from the cache]\n", len(res.Tokens), res.TokensPerSecond(), res.CachedTokens, res.PromptTokens)
		}
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	return nil
}
