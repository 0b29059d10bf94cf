// Command moe plans, trains, fine-tunes and serves sparse Mixture-of-Experts
// language models. Each subcommand lives in its own file; this one only
// dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// command is one subcommand: its name, a one-line summary and its entry point.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order help shows them.
func commands() []command {
	return []command{
		{"demo", "the end-to-end demo: train the tiny MoE on the built-in corpus and print a sample", runDemo},
		{"plan", "the model math: parameters, FLOPs, memory, time and cost", runPlan},
		{"train", "train a model from a data mixture", runTrain},
		{"eval", "loss, perplexity and bits per byte of a model on text", runEval},
		{"experts", "which experts each data source's tokens chose in training: table and heat map", runExperts},
		{"generate", "generate text (KV cache, sampling, speculative decoding)", runGenerate},
		{"chat", "an interactive chat that keeps the conversation's cache", runChat},
		{"serve", "an OpenAI-compatible HTTP server with continuous batching", runServe},
		{"finetune", "instruction fine-tuning on chat JSONL", runFinetune},
		{"distill", "train a speculative-decoding draft on a target's own distributions", runDistill},
		{"export", "write a model as GGUF", runExport},
		{"quantize", "write a GGUF file or run directory as GGUF of another type or llama.cpp mix", runQuantize},
		{"import", "read GGUF or safetensors + config.json into a run directory", runImport},
		{"tokenize", "print the token ids and pieces of a text with a model's tokenizer", runTokenize},
		{"bench", "rerunnable measurements: gemm, train, generate", runBench},
	}
}

// usageError marks a bad command line: exit status 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// usagef returns a usage error (exit status 2).
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints its usage to stderr with the given synopsis.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: moe %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs, mapping -h/--help to flag.ErrHelp and any
// other problem to a usage error. Flags may come before or after positionals.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseFlagsNoArgs is parseFlags for commands that take no positional
// arguments: any it finds is a usage error naming them (a stray word must
// not be silently ignored). hint, if not empty, is appended to the message.
func parseFlagsNoArgs(fs *flag.FlagSet, args []string, hint string) error {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return nil
	}
	quoted := make([]string, len(pos))
	for i, p := range pos {
		quoted[i] = strconv.Quote(p)
	}
	word := "argument"
	if len(pos) > 1 {
		word = "arguments"
	}
	msg := fmt.Sprintf("unexpected %s %s: moe %s takes flags only", word, strings.Join(quoted, " "), fs.Name())
	if hint != "" {
		msg += " (" + hint + ")"
	}
	return usageError{errors.New(msg)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return run([]string{args[1], "--help"}, stdout, stderr)
		}
		if len(args) == 0 {
			// No command is bad usage: the help goes to stderr, exit 2.
			printHelp(stderr)
			return 2
		}
		printHelp(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ue usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "moe %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "moe %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "moe: unknown command %q (run 'moe help')\n", args[0])
	return 2
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "moe — plan, train, fine-tune and serve sparse Mixture-of-Experts language models")
	fmt.Fprintln(w, "\nusage: moe <command> [flags]   (moe <command> --help for its flags)\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}
