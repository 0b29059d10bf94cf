package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/tokenizer"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a poller.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveTestRunDir writes a run directory holding a small random MoE model
// and a tokenizer with the chat specials.
func serveTestRunDir(t *testing.T) string {
	t.Helper()
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) {
		yield([]byte("And God said, Let there be light: and there was light. And God saw the light, that it was good."))
	}, 280)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{ModelType: "mixtral", VocabSize: tok.VocabSize(), HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64, RopeTheta: 10000, RMSNormEps: 1e-5, InitStd: 0.3,
		TieWordEmbeddings: true, NumExperts: 4, ExpertsPerToken: 2}
	m, err := infer.RandomModel(cfg, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tinyrun")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.Save(dir, checkpoint.Header{Step: 1, Config: cfg}, []checkpoint.Tensor{{Name: checkpoint.SectionWeights, Data: m.W.Flat}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := tok.Save(filepath.Join(dir, tokenizer.FileName)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestServeCommand(t *testing.T) {
	if code, _, errOut := moeCLI("serve"); code != 2 || !strings.Contains(errOut, "--model is required") {
		t.Errorf("no --model: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := moeCLI("serve", "--model", "x", "--parallel", "0"); code != 2 {
		t.Errorf("--parallel 0: exit %d, want 2", code)
	}
	if code, _, errOut := moeCLI("serve", "--model", filepath.Join(t.TempDir(), "missing"), "--addr", "127.0.0.1:0"); code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("missing model: exit %d, stderr %q (want 1 and one line)", code, errOut)
	}

	dir := serveTestRunDir(t)
	var stderr lockedBuffer
	exit := make(chan int, 1)
	go func() {
		// run installs the SIGTERM handler that `moe serve` drains on. The
		// server speculates with prompt lookup (--draft ngram, no model).
		exit <- run([]string{"serve", "--model", dir, "--draft", "ngram", "--addr", "127.0.0.1:0", "--api-key", "k3y", "--parallel", "4"}, io.Discard, &stderr)
	}()
	urlRE := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)`)
	var base string
	for deadline := time.Now().Add(20 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := urlRE.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
		}
		select {
		case code := <-exit:
			t.Fatalf("serve exited early with %d:\n%s", code, stderr.String())
		default:
		}
	}
	if base == "" {
		t.Fatalf("server never logged its address:\n%s", stderr.String())
	}
	do := func(method, path, key, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := do("GET", "/health", "", ""); code != 200 {
		t.Errorf("health: %d", code)
	}
	if code, body := do("GET", "/v1/models", "", ""); code != 401 || !strings.Contains(body, `"error"`) {
		t.Errorf("no key: %d %s", code, body)
	}
	if code, body := do("GET", "/v1/models", "k3y", ""); code != 200 || !strings.Contains(body, `"tinyrun"`) {
		t.Errorf("models: %d %s", code, body)
	}
	code, body := do("POST", "/v1/chat/completions", "k3y", `{"messages":[{"role":"user","content":"Let there be"}],"max_tokens":5,"temperature":0}`)
	var cr struct {
		Choices []struct {
			Message      struct{ Role, Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if code != 200 || json.Unmarshal([]byte(body), &cr) != nil || len(cr.Choices) != 1 || cr.Usage.CompletionTokens < 1 {
		t.Errorf("chat: %d %s", code, body)
	}
	if code, body := do("POST", "/v1/completions", "k3y", `{"prompt":"`+strings.Repeat("light ", 80)+`"}`); code != 400 || !strings.Contains(body, "context") {
		t.Errorf("long prompt: %d %s", code, body)
	}
	// SIGTERM with a stream in flight: the stream completes, then moe exits 0.
	req, _ := http.NewRequest("POST", base+"/v1/completions", strings.NewReader(`{"prompt":"And God","max_tokens":40,"stream":true}`))
	req.Header.Set("Authorization", "Bearer k3y")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first event %q %v", line, err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("stream during SIGTERM ended %q, %v", rest, err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("serve exited %d after SIGTERM:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("still accepting connections after SIGTERM")
	}
}
