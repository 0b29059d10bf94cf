package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

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
	df := addDecodeFlags(fs, infer.SampleOptions{Temperature: 0.7, TopK: 40, TopP: 0.95}, "most tokens per reply")
	system := fs.String("system", "", "system message that opens the conversation")
	quiet := fs.Bool("quiet", false, "no prompt marker or statistics on stderr")
	if err := df.parse(fs, args, "messages are read from stdin"); err != nil {
		return err
	}
	m, d, release, err := df.open()
	if err != nil {
		return err
	}
	defer release()
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
		for len(prompt)+df.maxTokens > m.Context() && len(turns) > 2 {
			turns = turns[2:]
			if prompt, err = build(); err != nil {
				return err
			}
		}
		if len(prompt) >= m.Context() {
			turns = turns[:len(turns)-1]
			return fmt.Errorf("message of %d tokens does not fit the context of %d tokens", len(prompt), m.Context())
		}
		opts := infer.GenerateOptions{MaxTokens: min(df.maxTokens, m.Context()-len(prompt)), StopTokens: stopIDs, Stop: stopStrs,
			Sampling: df.sampling, Seq: seq, Draft: d, DraftSeq: dseq, Drafter: drafterFor(df.draft), DraftTokens: df.draftTokens, TokenText: m.ReplyText(tmpl),
			Text: func(s string) error {
				if _, err := w.WriteString(s); err != nil {
					return err
				}
				return w.Flush()
			}}
		opts.Sampling.Seed = df.sampling.Seed + uint64(turn)
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
