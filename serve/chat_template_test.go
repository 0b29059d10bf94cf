package serve

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/internal/testtok"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// TestChatUsesModelTemplate serves a model that carries its own chat
// template: /v1/chat/completions renders the messages with it and stops
// where the template ends a turn, as a special token (<|im_end|>) or, for
// a marker the vocabulary lacks (<end>), as a stop string. The reply is
// what single-stream generation with the same prompt and stops writes.
func TestChatUsesModelTemplate(t *testing.T) {
	tok := testtok.Bytes(t, "<|im_start|>", "<|im_end|>")
	for _, c := range []struct {
		name, src string
		stopID    int32
		stopStr   string
	}{
		{"chatml", "{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", 258, ""},
		{"plain", "{% for m in messages %}{{ m.role + ': ' + m.content + '<end>\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}", -1, "<end>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmpl, err := chattmpl.Parse(c.name, c.src, chattmpl.Options{})
			if err != nil {
				t.Fatal(err)
			}
			m := testModel(t, tok, 32, 2, 4, 128, 1)
			m.Template = tmpl
			srv, err := NewFromModel(m, nil, Options{Parallel: 2, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if c.stopID >= 0 && !slices.Contains(srv.opt.ChatStopTokens, c.stopID) {
				t.Fatalf("chat stop tokens %v lack %d", srv.opt.ChatStopTokens, c.stopID)
			}
			if c.stopStr != "" && !slices.Contains(srv.opt.ChatStops, c.stopStr) {
				t.Fatalf("chat stop strings %q lack %q", srv.opt.ChatStops, c.stopStr)
			}
			im := []infer.Message{{Role: "system", Content: "Answer."}, {Role: "user", Content: "Who saw the light?"}}
			prompt, err := infer.EncodeChat(tok, tmpl, im, true)
			if err != nil {
				t.Fatal(err)
			}
			if want := tok.EncodeWithSpecials([]byte(mustRender(t, tmpl, im))); !slices.Equal(prompt, want) {
				t.Fatalf("prompt %v is not the rendered template %v", prompt, want)
			}
			ref, err := m.Generate(context.Background(), prompt, infer.GenerateOptions{MaxTokens: 24,
				StopTokens: srv.opt.ChatStopTokens, Stop: srv.opt.ChatStops}, nil)
			if err != nil {
				t.Fatal(err)
			}
			j, _ := json.Marshal(ref.Text) // JSON carries invalid UTF-8 as U+FFFD
			var want string
			json.Unmarshal(j, &want)

			ts := serveOnLoopback(t, srv)
			cl := client(ts, "")
			res, err := cl.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model:     "moe",
				Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Answer."), openai.UserMessage("Who saw the light?")},
				MaxTokens: openai.Int(24), Temperature: openai.Float(0)})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Choices[0].Message.Content; got != want {
				t.Errorf("served %q, single-stream %q (%s)", got, want, ref.StopReason)
			}
			if int(res.Usage.PromptTokens) != len(prompt) {
				t.Errorf("prompt tokens %d, want %d", res.Usage.PromptTokens, len(prompt))
			}
		})
	}
}

func mustRender(t *testing.T, tmpl *chattmpl.Template, msgs []infer.Message) string {
	t.Helper()
	s, err := tmpl.Render(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
