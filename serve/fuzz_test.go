package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

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
		`{"prompt":"x","max_tokens":5,"presence_penalty":1,"frequency_penalty":-0.5,"logit_bias":{"7":50,"8":-100}}`,
		`{"prompt":"\ud800","stop":"\u0000"}`,
		`null`, `[]`, `{`, ``, `{"messages":"hi"}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	eng := &fakeEngine{ctxLen: 48, eotAt: 30}
	srv, err := New(eng, fakeTok{}, Options{Logger: quietLogger(), Vocab: 258, StopTokens: []int32{fakeEOT}, ChatStopTokens: []int32{fakeEnd}, MaxBodyBytes: 4096})
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
				Usage   *usage            `json:"usage"`
			}
			if err := json.Unmarshal(out, &v); err != nil || len(v.Choices) == 0 || v.Usage == nil {
				t.Fatalf("bad 200 body %q", out)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var e errorBody
			if err := json.Unmarshal(out, &e); err != nil || e.Error.Message == "" {
				t.Fatalf("status %d with a non-error body %q", rec.Code, out)
			}
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, out)
		}
	})
}

// TestHandlerWithoutListener mounts the handler on httptest's server
// (the Handler + Run way of embedding the server).
func TestHandlerWithoutListener(t *testing.T) {
	srv, err := New(&fakeEngine{ctxLen: 32}, fakeTok{}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	hs := httptest.NewServer(srv.Handler())
	defer func() { hs.Close(); cancel(); <-done }()
	res, err := http.Post(hs.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"ab","max_tokens":3,"temperature":0}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var cr completionResponse
	if err := json.NewDecoder(res.Body).Decode(&cr); err != nil || cr.Choices[0].Text != greedyText("ab", 3, 0) {
		t.Errorf("%d %+v %v", res.StatusCode, cr, err)
	}
}
