package serve

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/moe-llm/moe/tokenizer/detok"
)

// statusClientClosed is what /metrics counts for a request whose client
// went away before its answer was complete (nginx's 499).
const statusClientClosed = 499

// choice is the handler-side state of one generated sequence.
type choice struct {
	index  int
	j      *job
	cancel context.CancelFunc
	ts     *detok.Stream
	text   strings.Builder
	tokens int
	finish string
	done   bool
}

// genRequest is a validated request, ready to queue.
type genRequest struct {
	endpoint   string
	chat       bool
	prompts    [][]int32
	p          genParams
	defaultMax func(promptLen int) int
}

// setField is a request field moe does not support and whether the request
// set it.
type setField struct {
	name string
	set  bool
}

// unsupported returns the error for the first of fields that the request
// set, or nil.
func unsupported(fields ...setField) *apiError {
	for _, f := range fields {
		if f.set {
			return badRequest(f.name, "%s is not supported", f.name)
		}
	}
	return nil
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	const endpoint = "/v1/completions"
	var req completionRequest
	e := s.decodeBody(w, r, &req)
	if e == nil {
		e = unsupported(
			setField{"echo", req.Echo},
			setField{"best_of", req.BestOf != nil && *req.BestOf > 1},
			setField{"logprobs", req.Logprobs != nil},
			setField{"suffix", req.Suffix != nil && *req.Suffix != ""})
	}
	var p genParams
	if e == nil {
		p, e = req.params(req.MaxTokens, "max_tokens", s.opt.Vocab)
	}
	var prompts [][]int32
	if e == nil {
		prompts, e = parsePrompt(req.Prompt, s.tok, s.opt.Vocab)
	}
	if e != nil {
		s.writeError(w, endpoint, e)
		return
	}
	s.generate(w, r, &genRequest{endpoint: endpoint, prompts: prompts, p: p,
		defaultMax: func(int) int { return 16 }})
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	const endpoint = "/v1/chat/completions"
	var req chatRequest
	e := s.decodeBody(w, r, &req)
	if e == nil {
		e = unsupported(setField{"logprobs", req.Logprobs}, setField{"tools", !isNull(req.Tools)})
	}
	var p genParams
	if e == nil {
		maxTok, maxField := req.MaxCompletionTokens, "max_completion_tokens"
		if maxTok == nil {
			maxTok, maxField = req.MaxTokens, "max_tokens"
		}
		p, e = req.params(maxTok, maxField, s.opt.Vocab)
	}
	if e != nil {
		s.writeError(w, endpoint, e)
		return
	}
	prompt, ok := applyChatTemplate(s, w, endpoint, req.Messages, s.chatPrompt)
	if !ok {
		return
	}
	s.generate(w, r, &genRequest{endpoint: endpoint, chat: true, prompts: [][]int32{prompt}, p: p,
		defaultMax: func(n int) int { return s.eng.Context() - n }})
}

// applyChatTemplate validates a request's messages and renders them with
// apply (the chat template, to tokens or to text). On a bad message or a
// template that fails it writes the error for endpoint and returns false.
func applyChatTemplate[T any](s *Server, w http.ResponseWriter, endpoint string, in []chatMessageIn, apply func([]Message) (T, error)) (T, bool) {
	var zero T
	msgs, e := chatMessages(in)
	if e != nil {
		s.writeError(w, endpoint, e)
		return zero, false
	}
	out, err := apply(msgs)
	if err != nil {
		s.writeError(w, endpoint, badRequest("messages", "cannot apply the chat template: %v", err))
		return zero, false
	}
	return out, true
}

// chatMessages validates a request's messages: roles system, developer
// (as system), user and assistant, text contents.
func chatMessages(in []chatMessageIn) ([]Message, *apiError) {
	if len(in) == 0 {
		return nil, badRequest("messages", "messages must be a non-empty array")
	}
	msgs := make([]Message, len(in))
	for i, m := range in {
		switch m.Role {
		case "system", "developer", "user", "assistant":
		default:
			return nil, badRequest(fmt.Sprintf("messages[%d].role", i),
				"messages[%d].role must be system, developer, user or assistant, got %q", i, m.Role)
		}
		text, e := messageText(m.Content, i)
		if e != nil {
			return nil, e
		}
		role := m.Role
		if role == "developer" {
			role = "system"
		}
		msgs[i] = Message{Role: role, Content: text}
	}
	return msgs, nil
}

// handleApplyTemplate answers POST /apply-template as llama.cpp's server
// does: {"messages": [...]} in, {"prompt": TEXT} out, the text the chat
// endpoint would tokenize (the generation prompt included).
func (s *Server) handleApplyTemplate(w http.ResponseWriter, r *http.Request) {
	const endpoint = "/apply-template"
	if s.opt.ChatPromptText == nil {
		s.notFound(w, r)
		return
	}
	var req struct {
		Messages []chatMessageIn `json:"messages"`
	}
	if e := s.decodeBody(w, r, &req); e != nil {
		s.writeError(w, endpoint, e)
		return
	}
	text, ok := applyChatTemplate(s, w, endpoint, req.Messages, s.opt.ChatPromptText)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"prompt": text})
}

// chatPrompt renders msgs with the configured template, or a plain
// role-prefixed one.
func (s *Server) chatPrompt(msgs []Message) ([]int32, error) {
	if s.opt.ChatTemplate != nil {
		return s.opt.ChatTemplate(msgs)
	}
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
	}
	b.WriteString("assistant:")
	return s.tok.Encode(b.String()), nil
}

func randomSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// jobs checks prompt lengths against the context and the KV budget and
// builds one job per choice.
func (s *Server) jobs(ctx context.Context, g *genRequest, arrived time.Time) ([]*choice, *apiError) {
	ctxLen := s.eng.Context()
	stops, stopStrs := s.opt.StopTokens, g.p.stop
	if g.chat {
		stops = append(append([]int32(nil), stops...), s.opt.ChatStopTokens...)
		stopStrs = append(append([]string(nil), stopStrs...), s.opt.ChatStops...)
	}
	if g.p.ignoreEOS {
		stops = nil
	}
	if total := len(g.prompts) * g.p.n; total > s.opt.QueueSize {
		return nil, badRequest("n", "the request asks for %d sequences (prompts × n); this server queues at most %d", total, s.opt.QueueSize)
	}
	notify := make(chan struct{}, 1)
	var out []*choice
	for _, prompt := range g.prompts {
		param := "prompt"
		if g.chat {
			param = "messages"
		}
		if len(prompt) == 0 {
			if s.opt.EmptyPrompt < 0 || g.chat {
				return nil, badRequest(param, "the prompt is empty")
			}
			prompt = []int32{s.opt.EmptyPrompt}
		}
		if len(prompt) >= ctxLen {
			return nil, &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: param, code: "context_length_exceeded",
				message: fmt.Sprintf("the prompt has %d tokens; this model's context is %d tokens, which must also hold at least one generated token", len(prompt), ctxLen)}
		}
		mt := g.p.maxTokens
		if mt == 0 {
			mt = min(g.defaultMax(len(prompt)), ctxLen-len(prompt))
		} else if mt > ctxLen-len(prompt) { // not len+mt > ctxLen: that can overflow
			return nil, &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: g.p.maxField, code: "context_length_exceeded",
				message: fmt.Sprintf("the prompt (%d tokens) plus %s (%d) exceeds this model's context of %d tokens", len(prompt), g.p.maxField, mt, ctxLen)}
		}
		// Both terms are now at most ctxLen: the sum cannot overflow.
		if kv := len(prompt) + mt; kv > s.opt.KVTokens {
			return nil, &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: g.p.maxField, code: "context_length_exceeded",
				message: fmt.Sprintf("the request needs %d KV-cache positions; this server's budget is %d", kv, s.opt.KVTokens)}
		}
		for k := 0; k < g.p.n; k++ {
			so := g.p.sample
			if g.p.seeded {
				so.Seed += uint64(len(out))
			} else {
				so.Seed = randomSeed()
			}
			jctx, cancel := context.WithCancel(ctx)
			j := &job{
				ctx: jctx, prompt: prompt, maxTokens: mt, stopTokens: stops,
				sampler: s.eng.NewSampler(so), greedy: so.Temperature == 0, sampleOpts: so, arrived: arrived,
				out: &jobOut{notify: notify, quiet: !g.p.stream && len(stopStrs) == 0}, kv: len(prompt) + mt, pen: g.p.pen,
			}
			if j.pen != nil {
				j.counts = map[int32]int{}
			}
			text := s.tok.TokenBytes
			if g.chat && s.opt.ChatText != nil {
				text = s.opt.ChatText()
			}
			out = append(out, &choice{index: len(out), j: j, cancel: cancel, ts: detok.New(text, detok.Options{Stops: stopStrs})})
		}
	}
	return out, nil
}

// generate queues g's sequences and answers with one JSON response or, for
// stream: true, a stream of server-sent events.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, g *genRequest) {
	arrived := time.Now()
	if s.draining.Load() {
		s.writeError(w, g.endpoint, &apiError{status: http.StatusServiceUnavailable, typ: "server_error", message: "server is shutting down"})
		return
	}
	choices, e := s.jobs(r.Context(), g, arrived)
	if e != nil {
		s.writeError(w, g.endpoint, e)
		return
	}
	defer func() {
		for _, c := range choices {
			c.cancel()
		}
	}()
	jobs := make([]*job, len(choices))
	for i, c := range choices {
		jobs[i] = c.j
	}
	if err := s.sched.submit(jobs); err != nil {
		if errors.Is(err, errQueueFull) {
			s.writeError(w, g.endpoint, &apiError{status: http.StatusTooManyRequests, typ: "rate_limit_error", code: "rate_limit_exceeded",
				message: "the server's request queue is full; retry later"})
		} else {
			s.writeError(w, g.endpoint, &apiError{status: http.StatusServiceUnavailable, typ: "server_error", message: err.Error()})
		}
		return
	}
	promptTokens := 0
	for _, p := range g.prompts {
		promptTokens += max(len(p), 1)
	}
	id, created := newID("cmpl-"), time.Now().Unix()
	if g.chat {
		id = newID("chatcmpl-")
	}
	var st *sseWriter
	if g.p.stream {
		st = newSSEWriter(w)
		if g.chat {
			for _, c := range choices {
				st.send(s.chatChunk(id, created, c.index, chatDelta{Role: "assistant", Content: new("")}, nil))
			}
		}
	}
	notify := choices[0].j.out.notify
	var buf []int32
	for {
		active := 0
		for _, c := range choices {
			if c.done {
				continue
			}
			toks, done, finish, err := c.j.out.take(buf)
			buf = toks
			var delta strings.Builder
			for _, t := range toks {
				c.tokens++
				delta.WriteString(c.ts.Push(t))
				if c.ts.Stopped() != detok.Running {
					c.cancel()
					done, finish, err = true, finishStop, nil
					break
				}
			}
			if done && err == nil {
				delta.WriteString(c.ts.Flush())
			}
			if done && err != nil {
				if r.Context().Err() != nil {
					s.m.request(g.endpoint, statusClientClosed)
					return // the client went away
				}
				status, typ := http.StatusInternalServerError, "server_error"
				if errors.Is(err, errShutdown) {
					status = http.StatusServiceUnavailable
				}
				ae := &apiError{status: status, typ: typ, message: fmt.Sprintf("generation failed: %v", err)}
				if st != nil {
					s.m.request(g.endpoint, status)
					st.send(ae.body())
					return
				}
				s.writeError(w, g.endpoint, ae)
				return
			}
			if st != nil {
				var fr *string
				if done {
					fr = new(finish)
				}
				if delta.Len() > 0 || done {
					if g.chat {
						d := chatDelta{}
						if delta.Len() > 0 {
							d.Content = new(delta.String())
						}
						st.send(s.chatChunk(id, created, c.index, d, fr))
					} else {
						st.send(completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.opt.ModelName,
							Choices: []completionChoice{{Text: delta.String(), Index: c.index, FinishReason: fr}}})
					}
				}
				if st.err != nil {
					s.m.request(g.endpoint, statusClientClosed)
					return
				}
			} else {
				c.text.WriteString(delta.String())
			}
			if done {
				c.done, c.finish = true, finish
				continue
			}
			active++
		}
		if active == 0 {
			break
		}
		select {
		case <-notify:
		case <-r.Context().Done():
			s.m.request(g.endpoint, statusClientClosed)
			return
		}
	}
	u := usage{PromptTokens: promptTokens}
	for _, c := range choices {
		u.CompletionTokens += c.tokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	s.m.request(g.endpoint, http.StatusOK)
	s.log.Info("request", "endpoint", g.endpoint, "id", id, "choices", len(choices), "stream", g.p.stream,
		"prompt_tokens", u.PromptTokens, "completion_tokens", u.CompletionTokens,
		"seconds", time.Since(arrived).Seconds(), "remote", r.RemoteAddr)
	if st != nil {
		if g.p.includeUsage {
			if g.chat {
				st.send(chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.opt.ModelName, Choices: []chatChunkChoice{}, Usage: &u})
			} else {
				st.send(completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.opt.ModelName, Choices: []completionChoice{}, Usage: &u})
			}
		}
		st.done()
		return
	}
	if g.chat {
		resp := chatResponse{ID: id, Object: "chat.completion", Created: created, Model: s.opt.ModelName, Usage: &u}
		for _, c := range choices {
			resp.Choices = append(resp.Choices, chatChoice{Index: c.index, Message: chatMessageOut{Role: "assistant", Content: c.text.String()}, FinishReason: c.finish})
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	resp := completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.opt.ModelName, Usage: &u}
	for _, c := range choices {
		resp.Choices = append(resp.Choices, completionChoice{Text: c.text.String(), Index: c.index, FinishReason: new(c.finish)})
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) chatChunk(id string, created int64, index int, d chatDelta, finish *string) chatChunk {
	return chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.opt.ModelName,
		Choices: []chatChunkChoice{{Index: index, Delta: d, FinishReason: finish}}}
}

// sseWriter writes server-sent events; after a write error it stays silent.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	st := &sseWriter{w: w, rc: http.NewResponseController(w)}
	st.err = st.rc.Flush()
	return st
}

func (st *sseWriter) send(v any) {
	if st.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		st.err = err
		return
	}
	if _, err := fmt.Fprintf(st.w, "data: %s\n\n", b); err != nil {
		st.err = err
		return
	}
	st.err = st.rc.Flush()
}

func (st *sseWriter) done() {
	if st.err != nil {
		return
	}
	if _, err := fmt.Fprint(st.w, "data: [DONE]\n\n"); err != nil {
		st.err = err
		return
	}
	st.err = st.rc.Flush()
}
