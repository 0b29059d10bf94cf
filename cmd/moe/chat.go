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
// message per line from stdin, streams the reply, and keeps the
// conversation's KV cache across turns so each turn only computes its new
// tokens.
func runChat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return chatLoop(ctx, args, os.Stdin, stdout, stderr)
}

func chatLoop(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("chat", "--model MODEL [--system TEXT] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--draft MODEL|ngram]", stderr)
	modelPath := fs.String("model", "", "model: a run directory or a .gguf file")
	system := fs.String("system", "", "system message that opens the conversation")
	maxTokens := fs.Int("max-tokens", 256, "most tokens per reply")
	temp := fs.Float64("temperature", 0.7, "sampling temperature; 0 = greedy")
	topK := fs.Int("top-k", 40, "keep only the K most likely tokens (0 = all)")
	topP := fs.Float64("top-p", 0.95, "nucleus sampling mass")
	seed := fs.Uint64("seed", 0, "random seed")
	draftPath := fs.String("draft", "", "speculative decoding: a draft model sharing the tokenizer, or ngram for prompt lookup (no model)")
	draftTokens := fs.Int("draft-tokens", 4, "initial draft tokens per step")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
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
	m, d, err := loadModels(*modelPath, *draftPath, pool)
	if err != nil {
		return err
	}
	useBF16(*bf16, m, d)
	// The conversation is kept as tokens, turn by turn, so that the reply's
	// own tokens (not a re-encoding of its text) stay in the cache.
	var sys []int32
	if *system != "" {
		if sys, err = infer.EncodeChat(m.Tok, []infer.Message{{Role: "system", Content: *system}}, false); err != nil {
			return err
		}
	}
	end := infer.ChatStopTokens(m.Tok)
	endTok := end[len(end)-1]
	var turns [][]int32 // user turn + <|assistant|> + reply + <|end|>, alternating
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
		user, err := infer.EncodeChat(m.Tok, []infer.Message{{Role: "user", Content: line}}, true)
		if err != nil {
			return err
		}
		turns = append(turns, user)
		// Drop the oldest turns until the prompt leaves room for a reply.
		build := func() []int32 {
			p := append([]int32(nil), sys...)
			for _, t := range turns {
				p = append(p, t...)
			}
			return p
		}
		prompt := build()
		for len(prompt)+*maxTokens > m.Context() && len(turns) > 1 {
			turns = turns[1:]
			prompt = build()
		}
		if len(prompt) >= m.Context() {
			turns = turns[:len(turns)-1]
			return fmt.Errorf("message of %d tokens does not fit the context of %d tokens", len(prompt), m.Context())
		}
		ts := infer.NewTextStream(m.Tok)
		opts := infer.GenerateOptions{MaxTokens: min(*maxTokens, m.Context()-len(prompt)), StopTokens: end,
			Sampling: so, Seq: seq, Draft: d, DraftSeq: dseq, Drafter: drafterFor(*draftPath), DraftTokens: *draftTokens}
		opts.Sampling.Seed = *seed + uint64(turn)
		res, err := m.Generate(ctx, prompt, opts, func(tok int32) error {
			if _, err := w.WriteString(ts.Push(tok)); err != nil {
				return err
			}
			return w.Flush()
		})
		w.WriteString(ts.Flush())
		fmt.Fprintln(w)
		if ferr := w.Flush(); ferr != nil {
			return fmt.Errorf("write: %w", ferr)
		}
		if err != nil {
			return err
		}
		reply := res.Tokens
		if n := len(reply); n > 0 && res.StopReason == infer.StopToken {
			reply = reply[:n-1]
		}
		turns[len(turns)-1] = append(append(user, reply...), endTok)
		if !*quiet {
			fmt.Fprintf(stderr, "[%d tokens, %.1f tok/s, %d of %d prompt tokens reused from the cache]\n", len(res.Tokens), res.TokensPerSecond(), res.CachedTokens, res.PromptTokens)
		}
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	return nil
}
