package infer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/internal/testtok"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
	"github.com/moe-llm/moe/tokenizer/detok"
)

// chatMLTok is a byte-level tokenizer with ChatML's special tokens (and
// moe's end-of-text): <|endoftext|> 256, <|im_start|> 257, <|im_end|> 258,
// <|eom|> 259.
func chatMLTok(t *testing.T) *tokenizer.Tokenizer {
	return testtok.Bytes(t, "<|im_start|>", "<|im_end|>", "<|eom|>")
}

const chatML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

func TestReadChatFromTokenizerConfig(t *testing.T) {
	tok := chatMLTok(t)
	dir := t.TempDir()
	tmpl, ends, err := ReadChat(dir, tok)
	if tmpl != nil || ends != nil || err != nil {
		t.Fatalf("no tokenizer_config.json: %v %v %v", tmpl, ends, err)
	}
	tmpl, _, err = ReadChat(writeConfig(t, chatML), tok)
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{Tok: tok, Template: tmpl}
	ids, err := m.EncodeChat([]Message{{Role: "user", Content: "hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := tok.EncodeWithSpecials([]byte("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")); !slices.Equal(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	// The template's end marker is a stop token.
	if got := m.StopTokens(); !slices.Equal(got, []int32{256, 258}) {
		t.Fatalf("stop tokens %v, want [256 258]", got)
	}
	// tokenizer_config.json's eos_token stops too.
	eos, err := chattmpl.FromTokenizerConfig("c", []byte(`{"eos_token": "<|eom|>", "chat_template": "x"}`), chattmpl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := (&Model{Tok: tok, Template: eos}).StopTokens(); !slices.Equal(got, []int32{256, 259}) {
		t.Fatalf("stop tokens with eos_token <|eom|>: %v, want [256 259]", got)
	}
	// A template that does not parse is an error naming the file.
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"chat_template": "{% for m in messages %}"}`), 0o644)
	if _, _, err := ReadChat(dir, tok); err == nil || !strings.Contains(err.Error(), "tokenizer_config.json") {
		t.Fatalf("broken template: %v", err)
	}
}

func TestReadChatFromGGUF(t *testing.T) {
	tok := chatMLTok(t)
	path := filepath.Join(t.TempDir(), "m.gguf")
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(257)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(256)},
		{Key: "tokenizer.ggml.eot_token_id", Value: uint32(258)},
		{Key: "tokenizer.ggml.eom_token_id", Value: uint32(259)},
		{Key: "tokenizer.chat_template", Value: "{{ bos_token }}" + chatML},
	}
	if err := gguf.WriteFile(context.Background(), path, kvs, nil); err != nil {
		t.Fatal(err)
	}
	tmpl, ends, err := ReadChat(path, tok)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ends, []int32{256, 258, 259}) {
		t.Fatalf("end tokens %v, want eos, eot, eom [256 258 259]", ends)
	}
	text, err := tmpl.Render([]Message{{Role: "user", Content: "x"}}, false)
	if err != nil || text != "<|im_start|><|im_start|>user\nx<|im_end|>\n" {
		t.Fatalf("render %q, %v (bos_token from bos_token_id)", text, err)
	}
	m := &Model{Tok: tok, Template: tmpl, EndTokens: ends}
	if got := m.StopTokens(); !slices.Equal(got, []int32{256, 258, 259}) {
		t.Fatalf("stop tokens %v", got)
	}
	// An id outside the vocabulary is refused, naming the key.
	kvs[3].Value = uint32(9999)
	if err := gguf.WriteFile(context.Background(), path, kvs, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadChat(path, tok); err == nil || !strings.Contains(err.Error(), "eot_token_id") {
		t.Fatalf("bad eot id: %v", err)
	}
}

// TestGenerateStopsAtTemplateEnd: a model whose template ends turns with
// <|im_end|> stops there by default, and chat's stop set names it.
func TestGenerateStopsAtTemplateEnd(t *testing.T) {
	tok := chatMLTok(t)
	prompt := tok.Encode([]byte("abc"))
	m := modelForcing(t, tok, prompt, 258)
	res, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason == StopToken {
		t.Fatal("stopped at <|im_end|> without a template naming it")
	}
	if m.Template, _, err = ReadChat(writeConfig(t, chatML), tok); err != nil {
		t.Fatal(err)
	}
	res, err = m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, []int32{258}) || res.StopReason != StopToken || res.Text != "" {
		t.Fatalf("tokens %v reason %q text %q; want [258] (<|im_end|>), %q, no text", res.Tokens, res.StopReason, res.Text, StopToken)
	}
	ids, strs := m.ChatStops(m.Template)
	if !slices.Contains(ids, 258) || len(strs) != 0 {
		t.Fatalf("chat stops %v %q", ids, strs)
	}
}

func writeConfig(t *testing.T, tmpl string) string {
	t.Helper()
	dir := t.TempDir()
	q := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(tmpl)
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"chat_template": "`+q+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// modelForcing returns a random-weight model over tok whose greedy first
// token after prompt is target: target's output row becomes twice the row
// of the token it would pick, so its logit is twice the (positive) maximum.
func modelForcing(t *testing.T, tok *tokenizer.Tokenizer, prompt []int32, target int32) *Model {
	t.Helper()
	cfg := testConfig(false)
	cfg.VocabSize = tok.VocabSize()
	w := randomWeights(t, cfg, 3, 0.2)
	m, err := New(cfg, w, tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 1, IgnoreEOT: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := first.Tokens[0]
	if a == target || tok.IsSpecial(a) {
		t.Fatalf("random model already picks special token %d first; choose another seed", a)
	}
	d := cfg.HiddenSize
	for i := 0; i < d; i++ {
		w.LMHead[int(target)*d+i] = 2 * w.LMHead[int(a)*d+i]
	}
	if m, err = New(cfg, w, tok, nil); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStopTokensHarmony: with gpt-oss's harmony template generation ends at
// <|return|> and <|call|>, not at the <|end|> that closes the analysis
// message, even where the file names <|end|> its eot token.
func TestStopTokensHarmony(t *testing.T) {
	tok := testtok.Bytes(t, "<|start|>", "<|end|>", "<|return|>", "<|call|>", "<|message|>", "<|channel|>")
	src, err := os.ReadFile(filepath.Join("..", "tokenizer", "chattmpl", "testdata", "gpt-oss.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chattmpl.Parse("gpt-oss.jinja", string(src), chattmpl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{Tok: tok, Template: tmpl, EndTokens: []int32{259, 258}}
	if got := m.StopTokens(); !slices.Equal(got, []int32{256, 259, 260}) {
		t.Fatalf("harmony stop tokens %v, want [256 259 260] (no <|end|>)", got)
	}
	// A reply's text is its final channel: the analysis is dropped.
	sp := func(name string) int32 { id, _ := tok.Special(name); return id }
	var reply []int32
	reply = append(append(reply, sp("<|channel|>")), tok.Encode([]byte("analysis"))...)
	reply = append(append(reply, sp("<|message|>")), tok.Encode([]byte("Think."))...)
	reply = append(reply, sp("<|end|>"), sp("<|start|>"))
	reply = append(append(reply, tok.Encode([]byte("assistant"))...), sp("<|channel|>"))
	reply = append(append(reply, tok.Encode([]byte("final"))...), sp("<|message|>"))
	reply = append(append(reply, tok.Encode([]byte("It is 4."))...), sp("<|return|>"))
	s := detok.New(m.ReplyText(tmpl), detok.Options{StopTokens: m.StopTokens()})
	var text strings.Builder
	for _, id := range reply {
		text.WriteString(s.Push(id))
	}
	if text.String() != "It is 4." || s.Stopped() != detok.Token {
		t.Fatalf("harmony reply text %q (stopped %v), want %q", text.String(), s.Stopped(), "It is 4.")
	}
	// moe's own format (no template, or its template) stops at <|end|>.
	m = &Model{Tok: tok}
	if got := m.StopTokens(); !slices.Equal(got, []int32{256, 258}) {
		t.Fatalf("moe stop tokens %v, want [256 258]", got)
	}
}
