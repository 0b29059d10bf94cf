package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// server is a running `moe serve`.
type server struct {
	url    string
	key    string
	cmd    *exec.Cmd
	exited chan error
	log    *bytes.Buffer
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer starts moe serve with args on a free loopback port and waits
// until /health answers; the server is stopped when the test ends.
func startServer(t *testing.T, key string, args ...string) *server {
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		full := append([]string{"serve", "--addr", addr}, args...)
		if key != "" {
			full = append(full, "--api-key", key)
		}
		s := &server{url: "http://" + addr, key: key, cmd: exec.Command(moeBin, full...), exited: make(chan error, 1), log: &bytes.Buffer{}}
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { s.exited <- s.cmd.Wait() }()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-s.exited:
				// Lost the port to someone else? Try another.
				t.Logf("moe serve exited early (%v):\n%s", err, s.log)
				goto next
			default:
			}
			if resp, err := http.Get(s.url + "/health"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					t.Cleanup(func() { s.stop(t) })
					return s
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		s.cmd.Process.Kill()
		<-s.exited
		t.Fatalf("moe serve did not answer /health within 30 s:\n%s", s.log)
	next:
	}
	t.Fatal("moe serve could not start")
	return nil
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 10 s).
func (s *server) stop(t *testing.T) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Errorf("moe serve exited with %v after SIGTERM:\n%s", err, s.log)
		}
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("moe serve ignored SIGTERM for 10 s")
	}
}

// do sends a request (with the API key unless auth is false) and returns
// the status and body.
func (s *server) do(t *testing.T, method, path string, body any, auth bool) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth && s.key != "" {
		req.Header.Set("Authorization", "Bearer "+s.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// streamText posts req with "stream": true to path and returns the text its
// events carry (the choices' text, or their delta content for chat), failing
// unless every chunk parses and has the given object.
func (s *server) streamText(t *testing.T, path string, req map[string]any, object string) string {
	t.Helper()
	req["stream"] = true
	code, body := s.do(t, "POST", path, req, true)
	if code != 200 {
		t.Fatalf("streamed %s: %d %s", path, code, body)
	}
	var text strings.Builder
	for _, ev := range events(t, body) {
		if ev == "[DONE]" {
			continue
		}
		var chunk struct {
			Object  string `json:"object"`
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ev), &chunk); err != nil || chunk.Object != object {
			t.Fatalf("%s chunk %q: %v", path, ev, err)
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Text + c.Delta.Content)
		}
	}
	return text.String()
}

// events splits a server-sent event stream into its data payloads.
func events(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if d, found := strings.CutPrefix(sc.Text(), "data:"); found {
			out = append(out, strings.TrimSpace(d))
		}
	}
	if len(out) == 0 || out[len(out)-1] != "[DONE]" {
		t.Errorf("stream does not end with data: [DONE]:\n%s", body)
	}
	return out
}

func TestServe(t *testing.T) {
	base, draft := trained(t)
	prompt := "And God said"
	want := str(t, generate(t, "--model", base, "--prompt", prompt, "--max-tokens", "12", "--temperature", "0"), "text")

	s := startServer(t, "sekret", "--model", base, "--draft", draft, "--parallel", "4")
	if code, _ := s.do(t, "GET", "/health", nil, false); code != 200 {
		t.Errorf("/health: %d", code)
	}
	// Auth: every /v1 call needs the key.
	if code, body := s.do(t, "GET", "/v1/models", nil, false); code != 401 {
		t.Errorf("/v1/models without the key: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", s.url+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("/v1/models with a wrong key: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	completion := map[string]any{"prompt": prompt, "max_tokens": 12, "temperature": 0}
	if code, _ := s.do(t, "POST", "/v1/completions", completion, false); code != 401 {
		t.Errorf("/v1/completions without the key: %d", code)
	}
	code, body := s.do(t, "GET", "/v1/models", nil, true)
	var models struct {
		Object string `json:"object"`
		Data   []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if code != 200 || json.Unmarshal(body, &models) != nil || len(models.Data) == 0 || models.Data[0].ID == "" {
		t.Fatalf("/v1/models: %d %s", code, body)
	}
	model := models.Data[0].ID

	// Completions at temperature 0 match moe generate.
	completion["model"] = model
	code, body = s.do(t, "POST", "/v1/completions", completion, true)
	var cr struct {
		Object  string `json:"object"`
		Choices []struct {
			Text         string `json:"text"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if code != 200 || json.Unmarshal(body, &cr) != nil || len(cr.Choices) != 1 {
		t.Fatalf("/v1/completions: %d %s", code, body)
	}
	if cr.Choices[0].Text != want {
		t.Errorf("/v1/completions text %q, moe generate %q", cr.Choices[0].Text, want)
	}
	if cr.Usage.CompletionTokens != 12 || cr.Usage.TotalTokens != cr.Usage.PromptTokens+12 || cr.Choices[0].FinishReason != "length" {
		t.Errorf("/v1/completions usage %+v finish %q", cr.Usage, cr.Choices[0].FinishReason)
	}
	// Streamed: the chunks concatenate to the same text.
	if got := s.streamText(t, "/v1/completions", completion, "text_completion"); got != want {
		t.Errorf("streamed completion %q, want %q", got, want)
	}

	// Chat, plain and streamed.
	chat := map[string]any{"model": model, "max_tokens": 10, "temperature": 0,
		"messages": []map[string]string{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who said it?"}}}
	code, body = s.do(t, "POST", "/v1/chat/completions", chat, true)
	var cc struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if code != 200 || json.Unmarshal(body, &cc) != nil || len(cc.Choices) != 1 || cc.Choices[0].Message.Role != "assistant" || cc.Object != "chat.completion" {
		t.Fatalf("/v1/chat/completions: %d %s", code, body)
	}
	if got := s.streamText(t, "/v1/chat/completions", chat, "chat.completion.chunk"); got != cc.Choices[0].Message.Content {
		t.Errorf("streamed chat %q, plain chat %q", got, cc.Choices[0].Message.Content)
	}

	// Bad requests are 4xx with an error object, not a crash.
	for _, bad := range []any{
		map[string]any{"prompt": prompt, "max_tokens": -1},
		map[string]any{"messages": "not a list"},
		map[string]any{"prompt": strings.Repeat("And God said. ", 100), "max_tokens": 4},
	} {
		path := "/v1/completions"
		if m, isMap := bad.(map[string]any); isMap && m["messages"] != nil {
			path = "/v1/chat/completions"
		}
		code, body := s.do(t, "POST", path, bad, true)
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if code < 400 || code >= 500 || json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
			t.Errorf("bad request %v: %d %s", bad, code, body)
		}
	}
	// Concurrent requests with different prompts are batched together; each
	// gets exactly the text moe generate gives it alone.
	prompts := []string{"And God said", "In the beginning", "Abram went", "The LORD spake unto Moses", "Joseph", "Let there be"}
	wants := map[string]string{}
	for _, p := range prompts {
		wants[p] = str(t, generate(t, "--model", base, "--prompt", p, "--max-tokens", "12", "--temperature", "0"), "text")
	}
	errs := make(chan error, 2*len(prompts))
	for i := 0; i < 2*len(prompts); i++ {
		p := prompts[i%len(prompts)]
		go func() {
			c := map[string]any{"model": model, "prompt": p, "max_tokens": 12, "temperature": 0}
			b, _ := json.Marshal(c)
			req, _ := http.NewRequest("POST", s.url+"/v1/completions", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+s.key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var r struct {
				Choices []struct {
					Text string `json:"text"`
				} `json:"choices"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Choices) != 1 {
				errs <- fmt.Errorf("status %d, %v", resp.StatusCode, err)
				return
			}
			if r.Choices[0].Text != wants[p] {
				errs <- fmt.Errorf("concurrent request %q: text %q, alone %q", p, r.Choices[0].Text, wants[p])
				return
			}
			errs <- nil
		}()
	}
	for i := 0; i < 2*len(prompts); i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// /metrics is Prometheus text.
	code, body = s.do(t, "GET", "/metrics", nil, true)
	if code != 200 || !strings.Contains(string(body), "# TYPE") {
		t.Errorf("/metrics: %d %s", code, clip(string(body)))
	}
}

func TestServeGGUFWithoutKey(t *testing.T) {
	base, _ := trained(t)
	g := t.TempDir() + "/m.gguf"
	ok(t, "export", "--model", base, "--out", g, "--type", "q8_0")
	s := startServer(t, "", "--model", g)
	code, body := s.do(t, "POST", "/v1/completions", map[string]any{"prompt": "And", "max_tokens": 4}, false)
	if code != 200 {
		t.Errorf("no --api-key: /v1/completions %d %s", code, body)
	}
	if code, _ := s.do(t, "GET", "/v1/models", nil, false); code != 200 {
		t.Errorf("no --api-key: /v1/models %d", code)
	}
}

func TestFinetunedModelChats(t *testing.T) {
	// A model fine-tuned on one fixed reply gives it back through the chat
	// API (the fine-tune and the server share a chat template) and stops.
	base, _ := trained(t)
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 64; i++ {
		msgs := []map[string]string{{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello there, friend."}}
		if i%2 == 1 {
			msgs = append([]map[string]string{{"role": "system", "content": "Be kind."}}, msgs...)
		}
		line, _ := json.Marshal(map[string]any{"messages": msgs})
		b.Write(line)
		b.WriteByte('\n')
	}
	chat := writeFile(t, dir, "hello.jsonl", b.String())
	out := dir + "/ft"
	ok(t, "finetune", "--model", base, "--data", chat, "--out", out, "--steps", "60", "--seq-len", "64", "--lr", "0.003", "--quiet")
	s := startServer(t, "", "--model", out)
	for _, msgs := range [][]map[string]string{
		{{"role": "user", "content": "Say hello."}},
		{{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Say hello."}},
	} {
		code, body := s.do(t, "POST", "/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 24, "temperature": 0}, false)
		var cc struct {
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		if code != 200 || json.Unmarshal(body, &cc) != nil || len(cc.Choices) != 1 {
			t.Fatalf("chat: %d %s", code, body)
		}
		if c := cc.Choices[0]; c.Message.Content != "Hello there, friend." || c.FinishReason != "stop" {
			t.Errorf("fine-tuned reply %q (finish %q), want %q (stop)", c.Message.Content, c.FinishReason, "Hello there, friend.")
		}
	}
}
