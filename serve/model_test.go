package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
)

const corpus = "In the beginning God created the heaven and the earth. And the earth was without form, and void; " +
	"and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. " +
	"And God said, Let there be light: and there was light. And God saw the light, that it was good."

// testTokenizer trains a small byte-level BPE tokenizer.
func testTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte(corpus)) }, 300)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// testModel returns a random-weight model sized by d, layers and experts
// (0: dense) with tok's vocabulary.
func testModel(t testing.TB, tok *tokenizer.Tokenizer, d, layers, experts, ctx int, seed uint64) *infer.Model {
	t.Helper()
	cfg := &config.Config{ModelType: "mixtral", VocabSize: tok.VocabSize(), HiddenSize: d, IntermediateSize: 2 * d,
		NumLayers: layers, NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: ctx, RopeTheta: 10000, RMSNormEps: 1e-5,
		TieWordEmbeddings: true}
	if experts > 0 {
		cfg.NumExperts, cfg.ExpertsPerToken = experts, 2
	}
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range w.Flat {
		w.Flat[i] = float32(r.NormFloat64() * 0.3)
	}
	for _, nd := range w.NoDecay {
		for i := nd[0]; i < nd[1]; i++ {
			w.Flat[i] = 1
		}
	}
	m, err := infer.New(cfg, w, tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// referenceText is single-stream greedy generation with infer.Generate.
func referenceText(t *testing.T, m *infer.Model, prompt []int32, maxTokens int, stops []int32) string {
	t.Helper()
	res, err := m.Generate(context.Background(), prompt, infer.GenerateOptions{MaxTokens: maxTokens, StopTokens: stops}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The server sends no text for special tokens, and JSON carries each
	// byte of invalid UTF-8 as U+FFFD.
	var b []byte
	tt := textTokenizer{m.Tok}
	for _, id := range res.Tokens {
		b = append(b, tt.TokenBytes(id)...)
	}
	j, _ := json.Marshal(string(b))
	var s string
	json.Unmarshal(j, &s)
	return s
}

// TestRealModelBatchedMatchesSingleStream serves a random MoE model and
// checks that concurrent, batched greedy requests (completions and chat,
// streaming and not) produce exactly what single-stream generation does.
func TestRealModelBatchedMatchesSingleStream(t *testing.T) {
	tok := testTokenizer(t)
	m := testModel(t, tok, 32, 2, 4, 96, 1)
	srv, err := NewFromModel(m, nil, Options{Parallel: 8, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOnLoopback(t, srv)
	c := client(ts, "")
	eot := []int32{tok.EOT()}

	type want struct{ prompt, text string }
	var wants []want
	for i := range 6 {
		p := fmt.Sprintf("And God said %d, let", i)
		wants = append(wants, want{p, referenceText(t, m, tok.Encode([]byte(p)), 10+3*i, eot)})
	}
	msgs := []infer.Message{{Role: "system", Content: "Answer."}, {Role: "user", Content: "What was good?"}}
	chatPrompt, err := infer.EncodeChat(tok, nil, msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	chatWant := referenceText(t, m, chatPrompt, 20, srv.opt.ChatStopTokens)

	var wg sync.WaitGroup
	for i, w := range wants {
		wg.Go(func() {
			p := openai.CompletionNewParams{Model: "moe", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(w.prompt)},
				MaxTokens: openai.Int(int64(10 + 3*i)), Temperature: openai.Float(0)}
			var got string
			if i%2 == 0 {
				res, err := c.Completions.New(context.Background(), p)
				if err != nil {
					t.Error(err)
					return
				}
				got = res.Choices[0].Text
			} else {
				s := c.Completions.NewStreaming(context.Background(), p)
				var b strings.Builder
				for s.Next() {
					for _, ch := range s.Current().Choices {
						b.WriteString(ch.Text)
					}
				}
				if err := s.Err(); err != nil {
					t.Error(err)
					return
				}
				got = b.String()
			}
			if got != w.text {
				t.Errorf("prompt %q: served %q, single-stream %q", w.prompt, got, w.text)
			}
		})
	}
	wg.Go(func() {
		s := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:       "moe",
			Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Answer."), openai.UserMessage("What was good?")},
			MaxTokens:   openai.Int(20),
			Temperature: openai.Float(0),
		})
		var acc openai.ChatCompletionAccumulator
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Error(err)
			return
		}
		if got := acc.Choices[0].Message.Content; got != chatWant {
			t.Errorf("chat: served %q, single-stream %q", got, chatWant)
		}
	})
	wg.Wait()

	_, metrics := rawDo(t, ts, "GET", "/metrics", "", nil)
	if !strings.Contains(metrics, `moe_expert_routed_tokens_total{layer="1",expert="3"}`) {
		t.Errorf("metrics lack per-expert routing counts")
	}
	if v := metricValue(metrics, "moe_expert_routed_tokens_total{layer=\"0\",expert=\"0\"}"); v <= 0 {
		t.Errorf("expert 0 of layer 0 routed %v tokens; want > 0 with top-2 of 4", v)
	}
}

// TestRealModelSpeculative checks that a draft model leaves greedy output
// unchanged and that some drafts are accepted (the draft is the target
// itself with its last layer's weights perturbed, so it mostly agrees).
func TestRealModelSpeculative(t *testing.T) {
	tok := testTokenizer(t)
	m := testModel(t, tok, 32, 2, 4, 96, 1)
	draft := testModel(t, tok, 32, 2, 4, 96, 1)
	r := rand.New(rand.NewPCG(9, 9))
	for i := range draft.W.Layers[1].Wo {
		draft.W.Layers[1].Wo[i] += float32(r.NormFloat64() * 0.1)
	}
	srv, err := NewFromModel(m, draft, Options{DraftTokens: 4, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOnLoopback(t, srv)
	c := client(ts, "")
	for _, p := range []string{"And the earth was", "Let there be"} {
		want := referenceText(t, m, tok.Encode([]byte(p)), 30, []int32{tok.EOT()})
		res, err := c.Completions.New(context.Background(), openai.CompletionNewParams{Model: "moe",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(p)}, MaxTokens: openai.Int(30), Temperature: openai.Float(0)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Choices[0].Text != want {
			t.Errorf("with draft %q, without %q", res.Choices[0].Text, want)
		}
	}
	_, metrics := rawDo(t, ts, "GET", "/metrics", "", nil)
	if acc := metricValue(metrics, "moe_speculative_accepted_tokens_total"); acc <= 0 {
		t.Errorf("no draft token accepted (%v)", acc)
	}
}

// serveOnLoopback runs srv on a loopback port until the test ends.
func serveOnLoopback(t testing.TB, srv *Server) *testServer {
	t.Helper()
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{srv: srv, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// TestRealModelChatTurnsReuseCache runs a two-turn chat: the second turn
// resends the first, reuses its cache, and still equals single-stream
// generation.
func TestRealModelChatTurnsReuseCache(t *testing.T) {
	tok := testTokenizer(t)
	m := testModel(t, tok, 32, 2, 4, 128, 4)
	srv, err := NewFromModel(m, nil, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOnLoopback(t, srv)
	c := client(ts, "")
	msgs := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Answer."), openai.UserMessage("Who saw the light?")}
	im := []infer.Message{{Role: "system", Content: "Answer."}, {Role: "user", Content: "Who saw the light?"}}
	for turn := range 2 {
		res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model: "moe", Messages: msgs, MaxTokens: openai.Int(12), Temperature: openai.Float(0)})
		if err != nil {
			t.Fatal(err)
		}
		prompt, err := infer.EncodeChat(tok, nil, im, true)
		if err != nil {
			t.Fatal(err)
		}
		got := res.Choices[0].Message.Content
		if want := referenceText(t, m, prompt, 12, srv.opt.ChatStopTokens); got != want {
			t.Errorf("turn %d: served %q, single-stream %q", turn, got, want)
		}
		msgs = append(msgs, openai.AssistantMessage(got), openai.UserMessage("And then?"))
		im = append(im, infer.Message{Role: "assistant", Content: got}, infer.Message{Role: "user", Content: "And then?"})
	}
	_, metrics := rawDo(t, ts, "GET", "/metrics", "", nil)
	if v := metricValue(metrics, "moe_prefix_cache_hit_tokens_total"); v < 8 {
		t.Errorf("second turn reused %v cached tokens; want the first turn's prompt", v)
	}
}
