package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/internal/memest"
	"github.com/moe-llm/moe/serve"
)

// runServe implements `moe serve`.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "--model MODEL [--draft MODEL|ngram] [--addr 127.0.0.1:8080] [--api-key KEY] [--parallel N]", stderr)
	modelPath := fs.String("model", "", "model: a run directory, a .gguf file or a Hugging Face directory")
	draftPath := fs.String("draft", "", "speculative decoding: a draft model sharing the tokenizer, or ngram for prompt lookup (no model)")
	draftTokens := fs.Int("draft-tokens", 4, "tokens the draft first proposes per step (adapted per batch size, down to plain steps when speculation does not pay)")
	fixedDraft := fs.Bool("fixed-draft-tokens", false, "do not adapt --draft-tokens (and never fall back to plain steps)")
	specMax := fs.Int("spec-max-batch", 4, "speculate only while at most this many sequences are running")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (loopback unless told otherwise)")
	apiKey := fs.String("api-key", "", "require Authorization: Bearer KEY on every /v1 call")
	apiKeyFile := fs.String("api-key-file", "", "read the API key from this file (keeps it out of the process list)")
	parallel := fs.Int("parallel", 16, "most sequences in the running batch")
	kvTokens := fs.Int("kv-tokens", 0, "KV-cache budget in positions over all running sequences (0 = parallel × context)")
	queue := fs.Int("queue", 256, "sequences that may wait for a slot before requests get 429")
	stepTokens := fs.Int("step-tokens", 512, "most tokens in one batched forward pass")
	prefillChunk := fs.Int("prefill-chunk", 256, "most prompt tokens of one sequence per forward pass")
	maxBody := fs.Int64("max-body", 1<<20, "largest request body in bytes")
	prefixCache := fs.Bool("prefix-cache", true, "reuse finished sequences' KV caches for prompts that start the same way")
	maxConns := fs.Int("max-conns", 512, "most open client connections; more are answered 503 and closed")
	bodyTimeout := fs.Duration("body-timeout", 30*time.Second, "time a client has to send a request body")
	drain := fs.Duration("drain-timeout", 60*time.Second, "on SIGTERM, how long to let in-flight requests finish")
	name := fs.String("name", "", "model id reported by /v1/models (default: the model's file or directory name)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	place := addWeightsFlag(fs)
	if err := parseFlagsNoArgs(fs, args, ""); err != nil {
		return err
	}
	switch {
	case *modelPath == "":
		return usagef("--model is required")
	case *parallel < 1:
		return usagef("--parallel must be at least 1, got %d", *parallel)
	case *kvTokens < 0:
		return usagef("--kv-tokens must be >= 0, got %d", *kvTokens)
	case *queue < 1 || *queue > serve.MaxQueueSize:
		return usagef("--queue must be in [1, %d], got %d", serve.MaxQueueSize, *queue)
	case *stepTokens < 1 || *prefillChunk < 1:
		return usagef("--step-tokens and --prefill-chunk must be at least 1")
	case *maxBody < 1024:
		return usagef("--max-body must be at least 1024 bytes, got %d", *maxBody)
	case *draftTokens < 1:
		return usagef("--draft-tokens must be at least 1, got %d", *draftTokens)
	case *specMax < 1:
		return usagef("--spec-max-batch must be at least 1, got %d", *specMax)
	case *drain <= 0 || *bodyTimeout <= 0:
		return usagef("--drain-timeout and --body-timeout must be positive")
	case *maxConns < 1:
		return usagef("--max-conns must be at least 1, got %d", *maxConns)
	case *apiKey != "" && *apiKeyFile != "":
		return usagef("give --api-key or --api-key-file, not both")
	}
	key := *apiKey
	if *apiKeyFile != "" {
		b, err := os.ReadFile(*apiKeyFile)
		if err != nil {
			return fmt.Errorf("reading API key: %w", err)
		}
		key = strings.TrimSpace(string(b))
		if key == "" {
			return fmt.Errorf("API key file %s is empty", *apiKeyFile)
		}
	}
	if *name == "" {
		*name = filepath.Base(filepath.Clean(*modelPath))
		if strings.EqualFold(filepath.Ext(*name), ".gguf") {
			*name = strings.TrimSuffix(*name, filepath.Ext(*name))
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	pool := compute.NewPool(*threads)
	defer pool.Close()
	m, d, err := loadModels(*modelPath, *draftPath, *place, pool)
	if err != nil {
		return err
	}
	defer closeModels(m, d)
	// The weights are loaded; the KV-cache budget (over all running and
	// prefix-cached sequences) and the queue must still fit. The default
	// budget shrinks to what fits; an explicit one that does not is refused.
	budget := *kvTokens
	if budget == 0 {
		budget = *parallel * m.Context()
	}
	var draftCfg *config.Config
	if d != nil {
		draftCfg = d.Cfg
	}
	need := memest.Inference(m.Cfg, draftCfg, 0, budget, *parallel, *queue)
	if *kvTokens == 0 {
		perTok := memest.Inference(m.Cfg, draftCfg, 0, 1, 0, 0).KVCache
		if fit, ok := memest.FitKVTokens(need, perTok); ok && fit < budget && fit >= m.Context() {
			log.Warn("the default KV-cache budget (parallel × context) does not fit in memory; lowering it", "kv_tokens", fit, "default", budget)
			*kvTokens, budget = fit, fit
			need = memest.Inference(m.Cfg, draftCfg, 0, budget, *parallel, *queue)
		}
	}
	if err := memest.Check(need, "serve", fmt.Sprintf("lower --kv-tokens (%d), --parallel (%d) or --queue (%d)", budget, *parallel, *queue)); err != nil {
		return err
	}
	srv, err := serve.NewFromModel(m, d, serve.Options{
		ModelName: *name, APIKey: key, Parallel: *parallel, KVTokens: *kvTokens, QueueSize: *queue,
		StepTokens: *stepTokens, PrefillChunk: *prefillChunk, MaxBodyBytes: *maxBody, DrainTimeout: *drain,
		MaxConns: *maxConns, BodyTimeout: *bodyTimeout,
		NgramDraft: *draftPath == ngramDraft, DraftTokens: *draftTokens, FixedDraftTokens: *fixedDraft, SpecMaxBatch: *specMax, NoPrefixCache: !*prefixCache, Logger: log,
		// Both endpoints stop at the end-of-generation tokens, as moe generate does.
		StopTokens: m.StopTokens(),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && key == "" {
		log.Warn("listening beyond loopback without --api-key: anyone who can reach this address can use the model", "addr", ln.Addr().String())
	}
	log.Info("serving", "url", "http://"+ln.Addr().String(), "model", *name, "context", m.Context(),
		"parallel", *parallel, "draft", *draftPath != "", "auth", key != "")
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
