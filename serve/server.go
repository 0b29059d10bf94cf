package serve

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Message is one chat message handed to Options.ChatTemplate.
type Message struct {
	Role    string
	Content string
}

// Options configures a Server. Zero values take the defaults noted.
type Options struct {
	// ModelName is the id /v1/models lists and responses carry (default "moe").
	ModelName string
	// APIKey, when set, makes every /v1 call need "Authorization: Bearer APIKey".
	APIKey string
	// Parallel is the most sequences in the running batch (default 16).
	Parallel int
	// KVTokens is the KV-cache budget: the sum over running sequences of
	// prompt+max_tokens positions (default Parallel × the model's context).
	KVTokens int
	// QueueSize is how many sequences may wait for a slot before requests
	// are answered 429 (default 256).
	QueueSize int
	// StepTokens caps the tokens of one forward pass (default 512; at
	// least Parallel, since every decoding sequence gets its token).
	StepTokens int
	// PrefillChunk caps one sequence's prompt tokens per forward pass
	// (default 256).
	PrefillChunk int
	// MaxBodyBytes caps request bodies (default 1 MiB).
	MaxBodyBytes int64
	// BodyTimeout bounds the time to receive a request body (default 30s).
	BodyTimeout time.Duration
	// HeaderTimeout bounds the time to receive a request's headers
	// (default 10s).
	HeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (default 120s).
	IdleTimeout time.Duration
	// MaxConns caps open client connections; connections beyond it are
	// answered 503 and closed at once, and counted in /metrics (default 512).
	MaxConns int
	// DrainTimeout bounds how long shutdown waits for in-flight requests
	// (default 60s).
	DrainTimeout time.Duration
	// Vocab is the vocabulary size, for checking token-id prompts (0: unchecked).
	Vocab int
	// StopTokens end generation in both endpoints (typically EOT).
	StopTokens []int32
	// ChatStopTokens also end generation in the chat endpoint (typically <|end|>).
	ChatStopTokens []int32
	// ChatStops are stop strings of the chat endpoint: the chat template's
	// end markers that are not special tokens.
	ChatStops []string
	// ChatText, if set, returns for each chat reply how its tokens become
	// text (default: Tokenizer.TokenBytes); a harmony model's keeps only
	// the final channel.
	ChatText func() func(id int32) []byte
	// EmptyPrompt is the token a completion with an empty prompt starts
	// from (typically EOT); -1 answers such requests 400.
	EmptyPrompt int32
	// ChatTemplate renders chat messages into prompt tokens; nil uses a plain
	// "role: content" text template.
	ChatTemplate func(msgs []Message) ([]int32, error)
	// ChatPromptText renders chat messages into the prompt text that
	// ChatTemplate tokenizes, for POST /apply-template (llama.cpp's
	// server has the same endpoint); nil answers it 404.
	ChatPromptText func(msgs []Message) (string, error)
	// Draft is an optional smaller model sharing the tokenizer, used for
	// speculative decoding: exact for greedy requests, and by speculative
	// sampling (same output distribution) for sampled ones when both
	// engines' samplers are ProbSamplers.
	Draft Engine
	// NgramDraft speculates with prompt lookup (infer.NgramDrafter) instead
	// of a draft model: proposals copied from earlier in the prompt and the
	// text so far, verified like a draft model's.
	NgramDraft bool
	// NoPrefixCache turns off reuse of finished sequences' KV caches for
	// later prompts that start the same way (chat turns, shared system
	// prompts). Cached sequences count toward KVTokens and are evicted
	// least recently used first.
	NoPrefixCache bool
	// DraftTokens is how many tokens the draft first proposes per step
	// (default 4); a policy per batch size adapts it (up to twice that) to
	// the measured acceptance and price of verification, down to plain
	// decoding when speculating does not pay.
	DraftTokens int
	// FixedDraftTokens keeps every speculative step at DraftTokens: no
	// adaptation and no plain steps (for measurements and tests).
	FixedDraftTokens bool
	// SpecMaxBatch turns speculation off while more sequences than this are
	// running (default 4): batching already amortises the weight reads, and
	// verifying many drafts touches nearly every expert of an MoE model.
	SpecMaxBatch int
	// Logger receives request and scheduler logs (default slog.Default()).
	Logger *slog.Logger
}

// MaxQueueSize is the largest Options.QueueSize: the queue is allocated
// up front (8 bytes a slot), and a million waiting sequences is far more
// than any model serves before clients time out.
const MaxQueueSize = 1 << 20

// Server is an OpenAI-compatible HTTP server over one Engine.
type Server struct {
	eng      Engine
	tok      Tokenizer
	opt      Options
	sched    *scheduler
	m        *metrics
	log      *slog.Logger
	handler  http.Handler
	bodies   bodyReaders
	draining atomic.Bool
	started  int64
}

// New returns a server for eng and tok. Call Serve (or Run plus Handler) to
// start it.
func New(eng Engine, tok Tokenizer, opt Options) (*Server, error) {
	if eng == nil || tok == nil {
		return nil, errors.New("serve: engine and tokenizer are required")
	}
	if eng.Context() < 2 {
		return nil, fmt.Errorf("serve: model context %d is too short", eng.Context())
	}
	if opt.ModelName == "" {
		opt.ModelName = "moe"
	}
	if opt.Parallel == 0 {
		opt.Parallel = 16
	}
	if opt.Parallel < 1 {
		return nil, fmt.Errorf("serve: parallel must be >= 1, got %d", opt.Parallel)
	}
	if opt.KVTokens == 0 {
		opt.KVTokens = opt.Parallel * eng.Context()
	}
	if opt.KVTokens < 2 {
		return nil, fmt.Errorf("serve: KV-token budget must be >= 2, got %d", opt.KVTokens)
	}
	if opt.QueueSize == 0 {
		opt.QueueSize = 256
	}
	if opt.QueueSize < 1 || opt.QueueSize > MaxQueueSize {
		return nil, fmt.Errorf("serve: queue size must be in [1, %d], got %d (--queue)", MaxQueueSize, opt.QueueSize)
	}
	if opt.StepTokens == 0 {
		opt.StepTokens = 512
	}
	if opt.PrefillChunk == 0 {
		opt.PrefillChunk = 256
	}
	// Every running sequence's decode token goes into each step.
	opt.StepTokens = max(opt.StepTokens, opt.Parallel)
	if opt.StepTokens < 1 || opt.PrefillChunk < 1 {
		return nil, fmt.Errorf("serve: step tokens and prefill chunk must be >= 1, got %d and %d", opt.StepTokens, opt.PrefillChunk)
	}
	if opt.MaxBodyBytes == 0 {
		opt.MaxBodyBytes = 1 << 20
	}
	if opt.BodyTimeout == 0 {
		opt.BodyTimeout = 30 * time.Second
	}
	if opt.DrainTimeout == 0 {
		opt.DrainTimeout = 60 * time.Second
	}
	if opt.HeaderTimeout == 0 {
		opt.HeaderTimeout = 10 * time.Second
	}
	if opt.IdleTimeout == 0 {
		opt.IdleTimeout = 120 * time.Second
	}
	if opt.MaxConns == 0 {
		opt.MaxConns = 512
	}
	if opt.DraftTokens == 0 {
		opt.DraftTokens = 4
	}
	if opt.SpecMaxBatch == 0 {
		opt.SpecMaxBatch = 4
	}
	switch {
	case opt.MaxBodyBytes < 1:
		return nil, fmt.Errorf("serve: max body bytes must be >= 1, got %d", opt.MaxBodyBytes)
	case opt.BodyTimeout < 0 || opt.DrainTimeout < 0 || opt.HeaderTimeout < 0 || opt.IdleTimeout < 0:
		return nil, fmt.Errorf("serve: timeouts must be positive, got body %v, drain %v, header %v and idle %v",
			opt.BodyTimeout, opt.DrainTimeout, opt.HeaderTimeout, opt.IdleTimeout)
	case opt.MaxConns < 1:
		return nil, fmt.Errorf("serve: max connections must be >= 1, got %d", opt.MaxConns)
	case opt.DraftTokens < 1 || opt.SpecMaxBatch < 1:
		return nil, fmt.Errorf("serve: draft tokens and speculation batch must be >= 1, got %d and %d", opt.DraftTokens, opt.SpecMaxBatch)
	}
	if opt.Draft != nil && opt.Draft.Context() < eng.Context() {
		return nil, fmt.Errorf("serve: draft context %d is shorter than the model's %d", opt.Draft.Context(), eng.Context())
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	m := newMetrics()
	s := &Server{
		eng: eng, tok: tok, opt: opt, m: m, log: opt.Logger, started: time.Now().Unix(),
		sched: newScheduler(eng, opt.Draft, schedulerConfig{
			parallel: opt.Parallel, kvBudget: opt.KVTokens, stepTokens: opt.StepTokens,
			prefillChunk: opt.PrefillChunk, queueSize: opt.QueueSize, draftTokens: opt.DraftTokens, fixedDraft: opt.FixedDraftTokens,
			specMaxBatch: opt.SpecMaxBatch, prefixCache: !opt.NoPrefixCache, ngram: opt.NgramDraft && opt.Draft == nil,
		}, m, opt.Logger),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/completions", s.auth(s.handleCompletions))
	mux.HandleFunc("POST /v1/chat/completions", s.auth(s.handleChat))
	mux.HandleFunc("GET /v1/models", s.auth(s.handleModels))
	mux.HandleFunc("GET /v1/models/{id}", s.auth(s.handleModel))
	mux.HandleFunc("POST /apply-template", s.auth(s.handleApplyTemplate))
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	for _, p := range []string{"/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/models/{id}", "/apply-template", "/health", "/metrics"} {
		mux.HandleFunc(p, s.methodNotAllowed)
	}
	mux.HandleFunc("/", s.auth(s.notFound))
	s.handler = s.guard(mux)
	return s, nil
}

// Handler returns the server's HTTP handler. Requests that need the model
// only complete while Run is running.
func (s *Server) Handler() http.Handler { return s.handler }

// guard bounds every request body, on every path: it must arrive within
// BodyTimeout (the deadline stays set for the bytes net/http discards
// after a handler that did not read them), and a request whose handler
// does not read its body closes the connection after the answer instead
// of waiting for that body.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opt.BodyTimeout))
			if !readsBody(r) {
				w.Header().Set("Connection", "close")
			}
		}
		h.ServeHTTP(w, r)
	})
}

// readsBody reports whether r goes to a handler that reads its body.
func readsBody(r *http.Request) bool {
	return r.Method == http.MethodPost && (r.URL.Path == "/v1/completions" || r.URL.Path == "/v1/chat/completions")
}

// Run runs the scheduler until ctx is done; queued and running requests
// then fail with 503. A Server runs once: call Run (or Serve) a single time.
func (s *Server) Run(ctx context.Context) { s.sched.run(ctx) }

// Serve serves HTTP on ln and runs the scheduler until ctx is done, then drains: it stops
// accepting connections, lets in-flight requests finish (up to
// Options.DrainTimeout), stops the scheduler and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	schedCtx, stopSched := context.WithCancel(context.Background())
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		s.Run(schedCtx)
	}()
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.opt.HeaderTimeout,
		IdleTimeout:       s.opt.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(&connLimitListener{Listener: ln, max: int64(s.opt.MaxConns), m: s.m}) }()
	var err error
	select {
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	case <-ctx.Done():
		s.draining.Store(true)
		s.bodies.cut() // a stalled body must not hold the drain up
		s.log.Info("draining in-flight requests", "timeout", s.opt.DrainTimeout)
		dctx, cancel := context.WithTimeout(context.Background(), s.opt.DrainTimeout)
		if e := hs.Shutdown(dctx); e != nil {
			s.log.Warn("drain timed out; cancelling remaining requests", "err", e)
			stopSched()
			<-schedDone
			hs.Close()
		}
		cancel()
	}
	stopSched()
	<-schedDone
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"message":"internal error encoding response","type":"server_error","param":null,"code":null}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (s *Server) writeError(w http.ResponseWriter, endpoint string, e *apiError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="moe"`)
	}
	if e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	s.m.request(endpoint, e.status)
	writeJSON(w, e.status, e.body())
}

// auth wraps a /v1 handler with the API-key check.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if s.opt.APIKey == "" {
		return h
	}
	// Compare SHA-256 digests, not the strings: ConstantTimeCompare
	// returns at once on a length mismatch, which would leak the key's
	// length; the digests always have the same length.
	want := sha256.Sum256([]byte("Bearer " + s.opt.APIKey))
	return func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if !keyMatches(got, want) {
			// The body is not read: answer at once and close.
			w.Header().Set("Connection", "close")
			msg := "missing API key: send Authorization: Bearer <key>"
			if len(got) > 0 {
				msg = "invalid API key"
			}
			s.writeError(w, endpointOf(r), &apiError{status: http.StatusUnauthorized, typ: "invalid_request_error", code: "invalid_api_key", message: msg})
			return
		}
		h(w, r)
	}
}

// keyMatches reports whether the Authorization header got hashes to want,
// in time independent of both got's and the key's content and length
// (beyond hashing got).
func keyMatches(got string, want [sha256.Size]byte) bool {
	g := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(g[:], want[:]) == 1
}

func endpointOf(r *http.Request) string {
	switch p := r.URL.Path; {
	case p == "/v1/completions", p == "/v1/chat/completions", p == "/health", p == "/metrics":
		return p
	case strings.HasPrefix(p, "/v1/models"):
		return "/v1/models"
	}
	return "other"
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, "other", &apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "not_found",
		message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	allow := "POST"
	if p := r.URL.Path; strings.HasPrefix(p, "/v1/models") || p == "/health" || p == "/metrics" {
		allow = "GET, HEAD"
	}
	w.Header().Set("Allow", allow)
	s.writeError(w, endpointOf(r), &apiError{status: http.StatusMethodNotAllowed, typ: "invalid_request_error", code: "method_not_allowed",
		message: fmt.Sprintf("method %s is not allowed on %s (use %s)", r.Method, r.URL.Path, allow)})
}

func (s *Server) model() modelObject {
	return modelObject{ID: s.opt.ModelName, Object: "model", Created: s.started, OwnedBy: "moe"}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	s.m.request("/v1/models", http.StatusOK)
	writeJSON(w, http.StatusOK, modelList{Object: "list", Data: []modelObject{s.model()}})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != s.opt.ModelName {
		s.writeError(w, "/v1/models", &apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "model_not_found", param: "model",
			message: fmt.Sprintf("model %q does not exist; this server serves %q", id, s.opt.ModelName)})
		return
	}
	s.m.request("/v1/models", http.StatusOK)
	writeJSON(w, http.StatusOK, s.model())
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.writeError(w, "/health", &apiError{status: http.StatusServiceUnavailable, typ: "server_error", message: "server is draining"})
		return
	}
	s.m.request("/health", http.StatusOK)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.m.request("/metrics", http.StatusOK)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.m.write(w, s.sched.expertCounts(), s.opt.KVTokens, s.opt.Parallel, s.opt.MaxConns)
}

// decodeBody reads r's JSON body into v, capped at MaxBodyBytes.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) *apiError {
	// Bodies are parsed as JSON whatever they claim to be (curl -d sends a
	// form type), except for multipart forms, which cannot be.
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(strings.ToLower(ct), "multipart/") {
		return &apiError{status: http.StatusUnsupportedMediaType, typ: "invalid_request_error",
			message: fmt.Sprintf("Content-Type must be application/json, got %q", ct)}
	}
	// A body must arrive within BodyTimeout (no slow-loris holding a
	// handler); the deadline is lifted after a complete body so long
	// streams live on, and kept after a failed one so that net/http's
	// discarding of the rest cannot wait forever. A drain cuts the read.
	rc := http.NewResponseController(w)
	s.bodies.start(rc, time.Now().Add(s.opt.BodyTimeout))
	body := http.MaxBytesReader(w, r.Body, s.opt.MaxBodyBytes)
	b, err := io.ReadAll(body)
	s.bodies.finish(rc, err == nil)
	if err != nil {
		w.Header().Set("Connection", "close")
		var ne net.Error
		if s.draining.Load() {
			return &apiError{status: http.StatusServiceUnavailable, typ: "server_error", message: "server is shutting down"}
		}
		if errors.As(err, &ne) && ne.Timeout() {
			return &apiError{status: http.StatusRequestTimeout, typ: "invalid_request_error", message: fmt.Sprintf("request body not received within %v", s.opt.BodyTimeout)}
		}
		return decodeError(err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return decodeError(errEmptyBody)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return decodeError(err)
	}
	return nil
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
