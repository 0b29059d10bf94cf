package reqfuzz

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moe-llm/moe/serve"
)

// vocab is the toy model's vocabulary: the 256 bytes, then EOT.
const vocab = 257

type byteTok struct{}

func (byteTok) Encode(s string) []int32 {
	out := make([]int32, len(s))
	for i := range len(s) {
		out[i] = int32(s[i])
	}
	return out
}

func (byteTok) TokenBytes(id int32) []byte {
	if id < 0 || id >= 256 {
		return nil
	}
	return []byte{byte(id)}
}

type seq struct{ n, max int }

func (s *seq) Len() int { return s.n }
func (s *seq) Truncate(n int) {
	if n >= 0 && n < s.n {
		s.n = n
	}
}

// engine predicts 'a' + position mod 26, and EOT at position 30.
type engine struct{ ctx int }

func (e *engine) Context() int                { return e.ctx }
func (e *engine) NewSeq(maxLen int) serve.Seq { return &seq{max: maxLen} }
func (e *engine) NewSampler(serve.SampleOptions) serve.Sampler {
	return argmax{}
}

func (e *engine) Forward(seqs []serve.Seq, tokens [][]int32, all bool) ([][]float32, error) {
	out := make([][]float32, len(seqs))
	for i, sq := range seqs {
		s := sq.(*seq)
		n := len(tokens[i])
		if s.n+n > s.max {
			panic("sequence beyond its maximum length")
		}
		rows := 1
		if all {
			rows = n
		}
		l := make([]float32, rows*vocab)
		for r := range rows {
			pos := s.n + n - rows + r + 1
			next := 'a' + pos%26
			if pos >= 30 {
				next = vocab - 1
			}
			l[r*vocab+next] = 1
		}
		s.n += n
		out[i] = l
	}
	return out, nil
}

type argmax struct{}

func (argmax) Sample(l []float32) int32 {
	best := 0
	for i, x := range l {
		if x > l[best] {
			best = i
		}
	}
	return int32(best)
}

// FuzzRequests throws arbitrary bodies at both generation endpoints: the
// server must never panic, and must answer either 200 with a well-formed
// response (or event stream) or a 4xx OpenAI error object.
func FuzzRequests(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"hi","max_tokens":3}`,
		`{"prompt":["a","b"],"n":2,"max_tokens":2,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":[[1,2],[3]],"stop":["x","yy"],"temperature":0}`,
		`{"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`,
		`{"messages":[{"role":"system","content":[{"type":"text","text":"be"}]},{"role":"user","content":null}],"stream":true}`,
		`{"prompt":"","max_tokens":1,"top_p":0.5,"top_k":3,"seed":-4}`,
		`{"prompt":"x","max_tokens":1e400}`,
		`{"prompt":"x","max_tokens":9223372036854775807}`,
		`{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":9223372036854775807}`,
		`{"prompt":"x","n":9223372036854775807,"top_k":9223372036854775807}`,
		`{"prompt":"x","max_tokens":5,"presence_penalty":1,"frequency_penalty":-0.5,"logit_bias":{"7":50,"8":-100}}`,
		`{"prompt":"\ud800","stop":"\u0000"}`,
		`null`, `[]`, `{`, ``, `{"messages":"hi"}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	srv, err := serve.New(&engine{ctx: 48}, byteTok{}, serve.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Vocab: vocab, StopTokens: []int32{vocab - 1}, MaxBodyBytes: 4096})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	f.Cleanup(func() { cancel(); <-done })
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body string, chat bool) {
		path := "/v1/completions"
		if chat {
			path = "/v1/chat/completions"
		}
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		out := rec.Body.Bytes()
		switch {
		case rec.Code == 200 && strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream"):
			if !bytes.HasSuffix(out, []byte("data: [DONE]\n\n")) {
				t.Fatalf("stream does not end with [DONE]: %q", out)
			}
			for _, ev := range bytes.Split(bytes.TrimSpace(out), []byte("\n\n")) {
				data, ok := bytes.CutPrefix(ev, []byte("data: "))
				if !ok || (string(data) != "[DONE]" && !json.Valid(data)) {
					t.Fatalf("bad event %q", ev)
				}
			}
		case rec.Code == 200:
			var v struct {
				Choices []json.RawMessage `json:"choices"`
				Usage   *json.RawMessage  `json:"usage"`
			}
			if err := json.Unmarshal(out, &v); err != nil || len(v.Choices) == 0 || v.Usage == nil {
				t.Fatalf("bad 200 body %q", out)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var e struct {
				Error struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(out, &e); err != nil || e.Error.Message == "" {
				t.Fatalf("status %d with a non-error body %q", rec.Code, out)
			}
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, out)
		}
	})
}
