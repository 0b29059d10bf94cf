package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/tokenizer/detok"
)

func client(ts *testServer, key string) openai.Client {
	opts := []option.RequestOption{option.WithBaseURL(ts.url + "/v1/"), option.WithMaxRetries(0)}
	if key != "" {
		opts = append(opts, option.WithAPIKey(key))
	} else {
		opts = append(opts, option.WithAPIKey("unused"))
	}
	return openai.NewClient(opts...)
}

func greedyText(prompt string, maxTokens, eotAt int) string {
	var b strings.Builder
	for _, t := range fakeGreedy(fakeTok{}.Encode(prompt), maxTokens, eotAt) {
		b.WriteByte(byte(t))
	}
	return b.String()
}

func TestCompletionsWithOpenAIClient(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 64, perPass: time.Millisecond}, Options{ModelName: "tiny"})
	c := client(ts, "")
	ctx := context.Background()
	want := greedyText("hello", 8, 0)

	res, err := c.Completions.New(ctx, openai.CompletionNewParams{
		Model:       "tiny",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("hello")},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 1 || res.Choices[0].Text != want || res.Choices[0].FinishReason != "length" {
		t.Fatalf("got %+v, want text %q finish length", res.Choices, want)
	}
	if res.Usage.PromptTokens != 5 || res.Usage.CompletionTokens != 8 || res.Usage.TotalTokens != 13 {
		t.Errorf("usage %+v", res.Usage)
	}
	if res.Model != "tiny" || res.Object != "text_completion" || !strings.HasPrefix(res.ID, "cmpl-") {
		t.Errorf("envelope: model %q object %q id %q", res.Model, res.Object, res.ID)
	}

	stream := c.Completions.NewStreaming(ctx, openai.CompletionNewParams{
		Model:         "tiny",
		Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String("hello")},
		MaxTokens:     openai.Int(8),
		Temperature:   openai.Float(0),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var got strings.Builder
	var finish string
	var u openai.CompletionUsage
	chunks := 0
	for stream.Next() {
		ch := stream.Current()
		chunks++
		for _, cc := range ch.Choices {
			got.WriteString(cc.Text)
			if cc.FinishReason != "" {
				finish = string(cc.FinishReason)
			}
		}
		if ch.Usage.TotalTokens > 0 {
			u = ch.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got.String() != want || finish != "length" {
		t.Errorf("stream text %q finish %q, want %q length", got.String(), finish, want)
	}
	if chunks < 3 {
		t.Errorf("stream came in %d chunks; want token-by-token chunks", chunks)
	}
	if u.CompletionTokens != 8 || u.PromptTokens != 5 {
		t.Errorf("stream usage %+v", u)
	}
}

func TestChatWithOpenAIClient(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 64}, Options{})
	c := client(ts, "")
	ctx := context.Background()
	prompt := "system: be brief\nuser: hi\nassistant:"
	want := greedyText(prompt, 6, 0)
	params := openai.ChatCompletionNewParams{
		Model:       "moe",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hi")},
		MaxTokens:   openai.Int(6),
		Temperature: openai.Float(0),
	}
	res, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 1 || res.Choices[0].Message.Content != want || res.Choices[0].FinishReason != "length" ||
		res.Choices[0].Message.Role != "assistant" {
		t.Fatalf("got %+v, want %q", res.Choices, want)
	}
	if res.Usage.PromptTokens != int64(len(prompt)) || res.Usage.CompletionTokens != 6 {
		t.Errorf("usage %+v", res.Usage)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != want || acc.Choices[0].FinishReason != "length" {
		t.Errorf("stream accumulated %+v, want %q", acc.Choices, want)
	}
	if acc.Usage.CompletionTokens != 6 {
		t.Errorf("stream usage %+v", acc.Usage)
	}
}

func TestChatTemplateAndStopTokens(t *testing.T) {
	var seen []Message
	eng := &fakeEngine{ctxLen: 64}
	ts := startServer(t, eng, Options{ChatTemplate: func(m []Message) ([]int32, error) {
		seen = m
		return []int32{'x', 'y'}, nil
	}})
	c := client(ts, "")
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:       "moe",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.DeveloperMessage("d"), openai.UserMessage("u")},
		Temperature: openai.Float(0),
		MaxTokens:   openai.Int(4),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] != (Message{"system", "d"}) || seen[1] != (Message{"user", "u"}) {
		t.Errorf("template saw %+v", seen)
	}
	if want := greedyText("xy", 4, 0); res.Choices[0].Message.Content != want {
		t.Errorf("content %q, want %q", res.Choices[0].Message.Content, want)
	}
}

func TestEOTAndStopStrings(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 64, eotAt: 9}, Options{})
	c := client(ts, "")
	ctx := context.Background()
	// EOT at sequence length 9: a 5-token prompt yields 4 tokens, then stop.
	res, err := c.Completions.New(ctx, openai.CompletionNewParams{
		Model: "moe", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hello")},
		MaxTokens: openai.Int(20), Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := greedyText("hello", 20, 9); res.Choices[0].Text != want || len(want) != 4 || res.Choices[0].FinishReason != "stop" {
		t.Errorf("EOT: got %q %q, want %q stop", res.Choices[0].Text, res.Choices[0].FinishReason, want)
	}

	ts = startServer(t, &fakeEngine{ctxLen: 64}, Options{})
	c = client(ts, "")
	full := greedyText("abc", 12, 0)
	stop := full[5:7]
	cut := strings.Index(full, stop)
	for _, stream := range []bool{false, true} {
		p := openai.CompletionNewParams{
			Model: "moe", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("abc")},
			MaxTokens: openai.Int(12), Temperature: openai.Float(0),
			Stop: openai.CompletionNewParamsStopUnion{OfStringArray: []string{"NOPE", stop}},
		}
		var text, finish string
		if stream {
			s := c.Completions.NewStreaming(ctx, p)
			for s.Next() {
				for _, ch := range s.Current().Choices {
					text += ch.Text
					if ch.FinishReason != "" {
						finish = string(ch.FinishReason)
					}
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
		} else {
			r, err := c.Completions.New(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			text, finish = r.Choices[0].Text, string(r.Choices[0].FinishReason)
		}
		if text != full[:cut] || finish != "stop" {
			t.Errorf("stream=%v stop %q in %q: got %q %q, want %q stop", stream, stop, full, text, finish, full[:cut])
		}
	}
}

func TestSamplingSeedAndN(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 64}, Options{})
	c := client(ts, "")
	p := openai.CompletionNewParams{
		Model: "moe", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("seed")},
		MaxTokens: openai.Int(16), Temperature: openai.Float(1.5), N: openai.Int(3), Seed: openai.Int(42),
	}
	a, err := c.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Choices) != 3 || len(b.Choices) != 3 {
		t.Fatalf("want 3 choices, got %d and %d", len(a.Choices), len(b.Choices))
	}
	distinct := map[string]bool{}
	for i := range a.Choices {
		if a.Choices[i].Index != int64(i) || a.Choices[i].Text != b.Choices[i].Text {
			t.Errorf("choice %d: same seed gave %q and %q", i, a.Choices[i].Text, b.Choices[i].Text)
		}
		distinct[a.Choices[i].Text] = true
	}
	if len(distinct) < 2 {
		t.Errorf("n=3 at temperature 1.5 gave identical choices %q", a.Choices[0].Text)
	}
	if a.Usage.PromptTokens != 4 || a.Usage.CompletionTokens != 48 {
		t.Errorf("usage %+v", a.Usage)
	}
	// Token-id and multi-prompt forms.
	r, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
		Model:     "moe",
		Prompt:    openai.CompletionNewParamsPromptUnion{OfArrayOfTokenArrays: [][]int64{{'h', 'i'}, {'y', 'o'}}},
		MaxTokens: openai.Int(3), Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Choices) != 2 || r.Choices[0].Text != greedyText("hi", 3, 0) || r.Choices[1].Text != greedyText("yo", 3, 0) {
		t.Errorf("token prompts: %+v", r.Choices)
	}
}

func TestModelsHealthMetrics(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 64}, Options{ModelName: "tiny"})
	c := client(ts, "")
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != "tiny" {
		t.Errorf("models %+v", page.Data)
	}
	m, err := c.Models.Get(context.Background(), "tiny")
	if err != nil || m.ID != "tiny" {
		t.Errorf("get model: %v %+v", err, m)
	}
	if _, err := c.Models.Get(context.Background(), "other"); err == nil {
		t.Errorf("unknown model: no error")
	}
	if code, body := rawDo(t, ts, "GET", "/health", "", nil); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("health %d %s", code, body)
	}
	if _, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
		Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hey")}, MaxTokens: openai.Int(5),
	}); err != nil {
		t.Fatal(err)
	}
	_, body := rawDo(t, ts, "GET", "/metrics", "", nil)
	for _, want := range []string{
		`moe_requests_total{endpoint="/v1/completions",code="200"} 1`,
		"moe_prompt_tokens_total 3",
		"moe_generated_tokens_total 5",
		"moe_queue_depth 0",
		"moe_running_sequences 0",
		"# TYPE moe_time_to_first_token_seconds histogram",
		"moe_time_to_first_token_seconds_count 1",
		"moe_inter_token_latency_seconds_count 4",
		`moe_inter_token_latency_seconds_bucket{le="+Inf"} 4`,
		`moe_expert_routed_tokens_total{layer="1",expert="3"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Every sample line parses as name{labels} value.
	line := regexp.MustCompile(`^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$|^\+Inf$`)
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		if !strings.HasPrefix(l, "#") && !line.MatchString(l) {
			t.Errorf("bad metrics line %q", l)
		}
	}
}

// rawDo sends one raw HTTP request and returns the status and body.
// checkGreedy posts a greedy completion of prompt (maxTokens tokens) and
// fails t, naming the request what, unless it answers 200 with the fake
// engine's greedy text.
func checkGreedy(t testing.TB, ts *testServer, prompt string, maxTokens int, what string) {
	t.Helper()
	code, body := rawDo(t, ts, "POST", "/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":%d,"temperature":0}`, prompt, maxTokens), nil)
	var cr completionResponse
	if code != 200 || json.Unmarshal([]byte(body), &cr) != nil || len(cr.Choices) == 0 || cr.Choices[0].Text != greedyText(prompt, maxTokens, 0) {
		t.Errorf("%s: %d %s", what, code, body)
	}
}

func rawDo(t testing.TB, ts *testServer, method, path, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// checkError asserts an OpenAI error object with the given status whose
// message contains substr.
func checkError(t *testing.T, name string, code int, body string, wantCode int, substr string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: status %d, want %d (body %s)", name, code, wantCode, body)
		return
	}
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Errorf("%s: not an OpenAI error object: %s", name, body)
		return
	}
	if !strings.Contains(e.Error.Message, substr) {
		t.Errorf("%s: message %q lacks %q", name, e.Error.Message, substr)
	}
}

func TestMalformedRequests(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 32}, Options{MaxBodyBytes: 4096})
	long := strings.Repeat("x", 40)
	cases := []struct {
		name, method, path, body string
		code                     int
		substr                   string
	}{
		{"not json", "POST", "/v1/completions", `{"prompt": "hi",`, 400, "not valid JSON"},
		{"array body", "POST", "/v1/completions", `[1,2]`, 400, "JSON object"},
		{"empty body", "POST", "/v1/completions", ``, 400, "empty"},
		{"temperature string", "POST", "/v1/completions", `{"prompt":"hi","temperature":"hot"}`, 400, "temperature"},
		{"max_tokens float", "POST", "/v1/completions", `{"prompt":"hi","max_tokens":2.5}`, 400, "max_tokens"},
		{"stream string", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream":"yes"}`, 400, "stream"},
		{"prompt object", "POST", "/v1/completions", `{"prompt":{"a":1}}`, 400, "prompt must be"},
		{"prompt missing", "POST", "/v1/completions", `{"model":"moe"}`, 400, "prompt is required"},
		{"token out of vocab", "POST", "/v1/completions", `{"prompt":[1,999999]}`, 400, "outside the vocabulary"},
		{"negative max_tokens", "POST", "/v1/completions", `{"prompt":"hi","max_tokens":0}`, 400, "max_tokens"},
		{"temperature high", "POST", "/v1/completions", `{"prompt":"hi","temperature":5}`, 400, "temperature"},
		{"top_p zero", "POST", "/v1/completions", `{"prompt":"hi","top_p":0}`, 400, "top_p"},
		{"n too big", "POST", "/v1/completions", `{"prompt":"hi","n":1000}`, 400, "n must be"},
		{"stop number", "POST", "/v1/completions", `{"prompt":"hi","stop":7}`, 400, "stop"},
		{"too many stops", "POST", "/v1/completions", `{"prompt":"hi","stop":["a","b","c","d","e"]}`, 400, "at most 4"},
		{"prompt beyond context", "POST", "/v1/completions", `{"prompt":"` + long + `"}`, 400, "context"},
		{"prompt+max beyond context", "POST", "/v1/completions", `{"prompt":"abcd","max_tokens":30}`, 400, "exceeds"},
		{"chat beyond context", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + long + `"}]}`, 400, "context"},
		{"no messages", "POST", "/v1/chat/completions", `{"messages":[]}`, 400, "messages"},
		{"bad role", "POST", "/v1/chat/completions", `{"messages":[{"role":"wizard","content":"x"}]}`, 400, "role"},
		{"image part", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "only text"},
		{"content number", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":5}]}`, 400, "content"},
		{"huge body", "POST", "/v1/completions", `{"prompt":"` + strings.Repeat("y", 10000) + `"}`, 413, "exceeds"},
		{"wrong method", "GET", "/v1/completions", ``, 405, "not allowed"},
		{"wrong method models", "DELETE", "/v1/models", ``, 405, "not allowed"},
		{"wrong method model", "DELETE", "/v1/models/moe", ``, 405, "not allowed"},
		{"unknown path", "GET", "/v1/nothing", ``, 404, "no such endpoint"},
		{"echo", "POST", "/v1/completions", `{"prompt":"hi","echo":true}`, 400, "echo"},
		{"more sequences than the queue", "POST", "/v1/completions", `{"prompt":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q","r"],"n":16}`, 400, "queues at most"},
	}
	for _, c := range cases {
		code, body := rawDo(t, ts, c.method, c.path, c.body, nil)
		checkError(t, c.name, code, body, c.code, c.substr)
	}
	code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"hi"}`, map[string]string{"Content-Type": "multipart/form-data; boundary=x"})
	checkError(t, "content type", code, body, 415, "Content-Type")
	// curl -d sends a form content type; the JSON body is still accepted.
	if code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"hi","max_tokens":2}`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); code != 200 {
		t.Errorf("curl-style content type: %d %s", code, body)
	}
	// The server still works after all that.
	if code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"hi","max_tokens":3}`, nil); code != 200 {
		t.Errorf("valid request after errors: %d %s", code, body)
	}
}

func TestAPIKey(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 32}, Options{APIKey: "sekret"})
	for _, c := range []struct {
		name, auth string
		code       int
	}{
		{"missing", "", 401},
		{"wrong", "Bearer nope", 401},
		{"no bearer", "sekret", 401},
		{"right", "Bearer sekret", 200},
	} {
		h := map[string]string{}
		if c.auth != "" {
			h["Authorization"] = c.auth
		}
		for _, path := range []string{"/v1/models"} {
			code, body := rawDo(t, ts, "GET", path, "", h)
			if c.code == 401 {
				checkError(t, c.name, code, body, 401, "API key")
			} else if code != 200 {
				t.Errorf("%s: %d %s", c.name, code, body)
			}
		}
		code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"hi","max_tokens":2}`, h)
		if code != c.code {
			t.Errorf("%s completions: %d %s", c.name, code, body)
		}
	}
	if code, _ := rawDo(t, ts, "GET", "/health", "", nil); code != 200 {
		t.Errorf("health should not need the key: %d", code)
	}
	good, bad := client(ts, "sekret"), client(ts, "wrong")
	if _, err := good.Models.List(context.Background()); err != nil {
		t.Errorf("client with key: %v", err)
	}
	_, err := bad.Models.List(context.Background())
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Errorf("client with wrong key: %v", err)
	}
}

// TestContinuousBatching sends concurrent requests of different lengths
// and checks that decode steps batch them, that no output is mixed up, and
// that the engine is never used concurrently.
func TestContinuousBatching(t *testing.T) {
	eng := &fakeEngine{ctxLen: 128, perPass: 2 * time.Millisecond}
	ts := startServer(t, eng, Options{Parallel: 8, PrefillChunk: 4, StepTokens: 16})
	c := client(ts, "")
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Go(func() {
			prompt := fmt.Sprintf("prompt number %d says", i)
			n := 5 + 3*i
			res, err := c.Completions.New(context.Background(), openai.CompletionNewParams{
				Model: "moe", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
				MaxTokens: openai.Int(int64(n)), Temperature: openai.Float(0),
			})
			if err != nil {
				errs <- err
				return
			}
			if want := greedyText(prompt, n, 0); res.Choices[0].Text != want {
				errs <- fmt.Errorf("request %d: got %q want %q", i, res.Choices[0].Text, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, batches, overlap := eng.stats()
	if overlap {
		t.Error("Forward ran concurrently with itself")
	}
	big := 0
	for _, b := range batches {
		if b > 8 {
			t.Errorf("batch of %d exceeds --parallel 8", b)
		}
		big = max(big, b)
	}
	if big < 4 {
		t.Errorf("largest batch %d; continuous batching should run >= 4 sequences per pass", big)
	}
	eng.mu.Lock()
	mt := eng.maxTokens
	eng.mu.Unlock()
	if mt > 16 {
		t.Errorf("a pass carried %d tokens, over the step budget of 16", mt)
	}
}

func TestKVBudgetLimitsBatch(t *testing.T) {
	eng := &fakeEngine{ctxLen: 64, perPass: time.Millisecond}
	ts := startServer(t, eng, Options{Parallel: 8, KVTokens: 40})
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			// 4 prompt + 16 generated = 20 KV positions: two fit in 40.
			if code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"abcd","max_tokens":16,"temperature":0}`, nil); code != 200 {
				t.Errorf("%d %s", code, body)
			}
		})
	}
	wg.Wait()
	_, batches, _ := eng.stats()
	for _, b := range batches {
		if b > 2 {
			t.Fatalf("batch of %d sequences exceeds the KV budget of 2 such sequences", b)
		}
	}
	code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"abcd","max_tokens":40}`, nil)
	checkError(t, "over budget", code, body, 400, "budget")
}

func TestQueueFull429(t *testing.T) {
	eng := &fakeEngine{ctxLen: 64, perPass: 5 * time.Millisecond}
	ts := startServer(t, eng, Options{Parallel: 1, QueueSize: 2})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 10 {
		wg.Go(func() {
			code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"abc","max_tokens":10}`, nil)
			if code == 429 {
				checkError(t, "429", code, body, 429, "queue is full")
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[429] == 0 || codes[200] == 0 || codes[200]+codes[429] != 10 {
		t.Errorf("status counts %v; want some 200 and some 429 only", codes)
	}
	_, m := rawDo(t, ts, "GET", "/metrics", "", nil)
	if v := metricValue(m, "moe_queue_depth"); v != 0 {
		t.Errorf("queue depth %v after all requests finished", v)
	}
	if v := metricValue(m, `moe_requests_total{endpoint="/v1/completions",code="429"}`); v != float64(codes[429]) {
		t.Errorf("metrics count %v 429s, clients saw %d", v, codes[429])
	}
}

func TestDisconnectFreesSlot(t *testing.T) {
	eng := &fakeEngine{ctxLen: 4096, perPass: time.Millisecond}
	ts := startServer(t, eng, Options{Parallel: 1})
	ctx, cancel := context.WithCancel(context.Background())
	// Unfreed, this stream would hold the only slot for 4+ seconds.
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.url+"/v1/completions",
		strings.NewReader(`{"prompt":"abc","max_tokens":4000,"stream":true}`))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(res.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()
	// With one slot, this only finishes quickly if the first one was freed.
	start := time.Now()
	code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"abc","max_tokens":3}`, nil)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second request took %v; the disconnected one kept its slot", d)
	}
	_, m := rawDo(t, ts, "GET", "/metrics", "", nil)
	if !strings.Contains(m, "moe_running_sequences 0") || !strings.Contains(m, "moe_kv_tokens_reserved 0") {
		t.Errorf("slot not freed:\n%s", m)
	}
}

func TestDrainOnShutdown(t *testing.T) {
	eng := &fakeEngine{ctxLen: 128, perPass: 3 * time.Millisecond}
	ts := startServer(t, eng, Options{})
	type result struct {
		code int
		body string
	}
	rc := make(chan result, 1)
	go func() {
		code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"drain","max_tokens":40,"temperature":0}`, nil)
		rc <- result{code, body}
	}()
	// Wait until the request is generating, then shut down.
	deadline := time.Now().Add(5 * time.Second)
	for {
		calls, _, _ := eng.stats()
		if calls >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ts.cancel()
	r := <-rc
	if r.code != 200 {
		t.Fatalf("in-flight request during drain: %d %s", r.code, r.body)
	}
	var cr completionResponse
	if err := json.Unmarshal([]byte(r.body), &cr); err != nil || cr.Choices[0].Text != greedyText("drain", 40, 0) {
		t.Errorf("drained request returned %s", r.body)
	}
	if !ts.wait(t, 10*time.Second) {
		t.Fatal("Serve did not return after drain")
	}
	if _, err := http.Get(ts.url + "/health"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}

func TestForwardErrorIs500(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 64, failAt: 2, panicAt: 10}, Options{})
	code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"abc","max_tokens":5}`, nil)
	checkError(t, "forward failure", code, body, 500, "injected failure")
	code, body = rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"abc","max_tokens":5}`, nil)
	if code != 200 {
		t.Errorf("after a failure: %d %s", code, body)
	}
	// The second request makes calls 3-7, the third 8-12: the 10th panics.
	code, body = rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"abc","max_tokens":5}`, nil)
	checkError(t, "engine panic", code, body, 500, "engine panic")
	if code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"abc","max_tokens":5}`, nil); code != 200 {
		t.Errorf("after a panic: %d %s", code, body)
	}
}

func TestSpeculativeMatchesGreedy(t *testing.T) {
	eng := &fakeEngine{ctxLen: 128}
	draft := &fakeEngine{ctxLen: 128, wrongAt: 4}
	ts := startServer(t, eng, Options{Draft: draft, DraftTokens: 3})
	for i, prompt := range []string{"speculate", "x", "another prompt"} {
		n := 20 + 7*i
		code, body := rawDo(t, ts, "POST", "/v1/completions",
			fmt.Sprintf(`{"prompt":%q,"max_tokens":%d,"temperature":0}`, prompt, n), nil)
		var cr completionResponse
		if code != 200 || json.Unmarshal([]byte(body), &cr) != nil {
			t.Fatalf("%d %s", code, body)
		}
		if want := greedyText(prompt, n, 0); cr.Choices[0].Text != want || cr.Usage.CompletionTokens != n {
			t.Errorf("speculative output %q (%d tokens), want %q (%d)", cr.Choices[0].Text, cr.Usage.CompletionTokens, want, n)
		}
	}
	// Concurrent greedy requests speculate as one batch and stay exact.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			prompt := fmt.Sprintf("batch %d", i)
			checkGreedy(t, ts, prompt, 30, fmt.Sprintf("concurrent speculative %d", i))
		})
	}
	wg.Wait()
	_, m := rawDo(t, ts, "GET", "/metrics", "", nil)
	prop, acc := metricValue(m, "moe_speculative_proposed_tokens_total"), metricValue(m, "moe_speculative_accepted_tokens_total")
	if prop == 0 || acc == 0 || acc >= prop {
		t.Errorf("proposed %v accepted %v; want some but not all accepted", prop, acc)
	}
	calls, _, _ := eng.stats()
	if calls >= 20+27+34+4*30 {
		t.Errorf("target ran %d passes; speculation should need fewer than one per token", calls)
	}
}

func metricValue(text, name string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// TestTextStreamUTF8AndStops: fakeTok makes every byte its own token, so
// multi-byte characters arrive in pieces through the server's detokenizer.
func TestTextStreamUTF8AndStops(t *testing.T) {
	text := "héllo wörld — ok"
	ids := fakeTok{}.Encode(text)
	ts := detok.New(fakeTok{}.TokenBytes, detok.Options{})
	var out strings.Builder
	for _, id := range ids {
		s := ts.Push(id)
		if !utf8Valid(s) {
			t.Fatalf("emitted invalid UTF-8 %q", s)
		}
		out.WriteString(s)
	}
	out.WriteString(ts.Flush())
	if out.String() != text {
		t.Errorf("got %q want %q", out.String(), text)
	}
	for _, c := range []struct {
		stops []string
		want  string
	}{
		{[]string{"wör"}, "héllo "},
		{[]string{"zzz", "lo w"}, "hél"},
		{[]string{"ok!"}, text},
		{[]string{"—", "h"}, ""},
	} {
		ts := detok.New(fakeTok{}.TokenBytes, detok.Options{Stops: c.stops})
		var out strings.Builder
		stopped := false
		for _, id := range ids {
			out.WriteString(ts.Push(id))
			if ts.Stopped() != detok.Running {
				stopped = true
				break
			}
		}
		out.WriteString(ts.Flush())
		if out.String() != c.want || stopped != (c.want != text) {
			t.Errorf("stops %q: got %q (stopped %v), want %q", c.stops, out.String(), stopped, c.want)
		}
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestSlowBody checks that a client trickling its body cannot hold a
// handler past BodyTimeout.
func TestSlowBody(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 32}, Options{BodyTimeout: 100 * time.Millisecond})
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`{"prompt":`))
		time.Sleep(2 * time.Second)
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", ts.url+"/v1/completions", pr)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		checkError(t, "slow body", res.StatusCode, string(b), 408, "not received")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("slow body held the request for %v", d)
	}
}

// TestJoinAndLeaveMidFlight checks token-granularity batching: a short
// request sent while a long one is generating joins the running batch,
// finishes and leaves while the long one carries on.
func TestJoinAndLeaveMidFlight(t *testing.T) {
	eng := &fakeEngine{ctxLen: 512, perPass: 2 * time.Millisecond}
	ts := startServer(t, eng, Options{Parallel: 4})
	longDone := make(chan time.Time, 1)
	go func() {
		code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"long","max_tokens":150,"temperature":0}`, nil)
		if code != 200 {
			t.Errorf("long: %d %s", code, body)
		}
		longDone <- time.Now()
	}()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if calls, _, _ := eng.stats(); calls >= 10 {
			break
		}
	}
	code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"short","max_tokens":5,"temperature":0}`, nil)
	shortDone := time.Now()
	if code != 200 || !strings.Contains(body, greedyText("short", 5, 0)) {
		t.Fatalf("short: %d %s", code, body)
	}
	select {
	case <-longDone:
		t.Fatal("the long request finished before the short one that started later")
	default:
	}
	if l := <-longDone; !l.After(shortDone) {
		t.Errorf("long finished at %v, short at %v", l, shortDone)
	}
	_, batches, _ := eng.stats()
	ones, twos := 0, 0
	for _, b := range batches {
		switch b {
		case 1:
			ones++
		case 2:
			twos++
		}
	}
	// The long request runs alone, then with the short one for its 5-6
	// steps, then alone again.
	if twos < 4 || twos > 8 || ones < 100 {
		t.Errorf("batch sizes: %d single, %d paired passes; want the short request paired for ~6 steps", ones, twos)
	}
}

// TestPenaltiesAndLogitBias checks presence/frequency penalties and
// logit_bias against a naive simulation of the fake model.
func TestPenaltiesAndLogitBias(t *testing.T) {
	eng := &fakeEngine{ctxLen: 64}
	ts := startServer(t, eng, Options{})
	simulate := func(prompt string, n int, pres, freq float32, bias map[int32]float32) string {
		seq := fakeTok{}.Encode(prompt)
		counts := map[int32]int{}
		var out []byte
		for range n {
			l := eng.logits(seq)
			for id, b := range bias {
				l[id] += b
			}
			for id, c := range counts {
				l[id] -= pres + freq*float32(c)
			}
			tok := infer.Argmax(l)
			if tok == fakeEOT {
				break
			}
			counts[tok]++
			seq = append(seq, tok)
			out = append(out, byte(tok))
		}
		return string(out)
	}
	for _, c := range []struct {
		body       string
		pres, freq float32
		bias       map[int32]float32
	}{
		{`"presence_penalty":2`, 2, 0, nil},
		{`"frequency_penalty":1.5`, 0, 1.5, nil},
		{`"presence_penalty":-1,"frequency_penalty":0.7`, -1, 0.7, nil},
		{`"logit_bias":{"122":100}`, 0, 0, map[int32]float32{'z': 100}},
		{`"logit_bias":{"97":-100,"98":-100,"99":-100},"frequency_penalty":0.3`, 0, 0.3, map[int32]float32{'a': -100, 'b': -100, 'c': -100}},
	} {
		code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"pen","max_tokens":40,"temperature":0,`+c.body+`}`, nil)
		var cr completionResponse
		if code != 200 || json.Unmarshal([]byte(body), &cr) != nil {
			t.Fatalf("%s: %d %s", c.body, code, body)
		}
		if want := simulate("pen", 40, c.pres, c.freq, c.bias); cr.Choices[0].Text != want {
			t.Errorf("%s: got %q, want %q", c.body, cr.Choices[0].Text, want)
		}
	}
	if plain := greedyText("pen", 40, 0); simulate("pen", 40, 2, 0, nil) == plain {
		t.Errorf("the presence penalty case does not change the output; the test proves nothing")
	}
	for _, c := range []struct{ body, substr string }{
		{`"presence_penalty":3`, "presence_penalty"},
		{`"frequency_penalty":"x"`, "frequency_penalty"},
		{`"logit_bias":{"abc":1}`, "not a token id"},
		{`"logit_bias":{"999999":1}`, "not a token id"},
		{`"logit_bias":{"5":200}`, "between -100 and 100"},
	} {
		code, body := rawDo(t, ts, "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],`+c.body+`}`, nil)
		checkError(t, c.body, code, body, 400, c.substr)
	}
}

// TestPrefixCache checks that a prompt sharing a prefix with a finished
// sequence reuses its cache: same output, fewer tokens computed.
func TestPrefixCache(t *testing.T) {
	system := "You are a careful assistant who answers briefly. "
	run := func(opt Options) (hits float64, fed int, texts []string) {
		eng := &fakeEngine{ctxLen: 256}
		ts := startServer(t, eng, opt)
		for _, q := range []string{"What is light?", "What is dark?", "What is light? Why?"} {
			code, body := rawDo(t, ts, "POST", "/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":12,"temperature":0}`, system+q), nil)
			var cr completionResponse
			if code != 200 || json.Unmarshal([]byte(body), &cr) != nil {
				t.Fatalf("%d %s", code, body)
			}
			if want := greedyText(system+q, 12, 0); cr.Choices[0].Text != want {
				t.Errorf("prompt %q: got %q want %q", q, cr.Choices[0].Text, want)
			}
			texts = append(texts, cr.Choices[0].Text)
		}
		_, m := rawDo(t, ts, "GET", "/metrics", "", nil)
		eng.mu.Lock()
		defer eng.mu.Unlock()
		return metricValue(m, "moe_prefix_cache_hit_tokens_total"), eng.fedTokens, texts
	}
	hits, fed, _ := run(Options{})
	noHits, noFed, _ := run(Options{NoPrefixCache: true})
	// The second prompt takes over the first one's cache and shares the
	// system prompt plus "What is " with it; the third then finds only the
	// second's cache, sharing the same prefix (a cache has one owner).
	wantHits := float64(2 * len(system+"What is "))
	if hits != wantHits || noHits != 0 {
		t.Errorf("prefix hits %v (want %v), %v without the cache", hits, wantHits, noHits)
	}
	if noFed-fed != int(wantHits) {
		t.Errorf("tokens computed: %d with the cache, %d without; want %v fewer", fed, noFed, wantHits)
	}
}

// TestPrefixCacheEviction fills a small KV budget with cached sequences
// and checks that new requests evict them rather than wait forever.
func TestPrefixCacheEviction(t *testing.T) {
	eng := &fakeEngine{ctxLen: 64, perPass: 100 * time.Microsecond}
	ts := startServer(t, eng, Options{Parallel: 2, KVTokens: 60})
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			prompt := fmt.Sprintf("%c%c prompt", 'a'+i%5, 'a'+i%3)
			checkGreedy(t, ts, prompt, 18, fmt.Sprintf("%q", prompt))
		})
	}
	wg.Wait()
	_, m := rawDo(t, ts, "GET", "/metrics", "", nil)
	if v := metricValue(m, "moe_prefix_cache_tokens"); v <= 0 || v > 60 {
		t.Errorf("prefix cache holds %v positions; want some, within the budget of 60", v)
	}
}

// TestIgnoreEOS checks that "ignore_eos" generates past end-of-text up to
// max_tokens (as llama-server and vLLM do), and that without it the same
// request stops at EOT.
func TestIgnoreEOS(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 64, eotAt: 9}, Options{})
	for _, ignore := range []bool{false, true} {
		body := fmt.Sprintf(`{"prompt":"hello","max_tokens":20,"temperature":0,"ignore_eos":%v}`, ignore)
		resp, err := http.Post(ts.url+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(res.Choices) != 1 {
			t.Fatalf("ignore_eos=%v: status %d, %v, %+v", ignore, resp.StatusCode, err, res)
		}
		want, reason := 4, "stop"
		if ignore {
			want, reason = 20, "length"
		}
		if res.Usage.CompletionTokens != want || res.Choices[0].FinishReason != reason {
			t.Errorf("ignore_eos=%v: %d tokens, finish %q; want %d, %q", ignore, res.Usage.CompletionTokens, res.Choices[0].FinishReason, want, reason)
		}
	}
}
