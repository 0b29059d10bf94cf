package infer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

func trainTestTok(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	text := strings.Repeat("the cat sat on the mat. the dog sat on the log. ", 30)
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte(text)) }, 290)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokModel returns a model of testConfig(moe) over tok's vocabulary with
// randomWeights(seed, std).
func tokModel(t *testing.T, tok *tokenizer.Tokenizer, moe bool, seed uint64, std float64) *Model {
	t.Helper()
	cfg := testConfig(moe)
	cfg.VocabSize = tok.VocabSize()
	m, err := New(cfg, randomWeights(t, cfg, seed, std), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestOutputStops drives the output tracker directly with known tokens.
func TestOutputStops(t *testing.T) {
	tok := trainTestTok(t)
	m := tokModel(t, tok, false, 1, 0.1)
	enc := func(s string) []int32 { return tok.Encode([]byte(s)) }
	byteToks := func(s string) []int32 { // one token per byte
		var out []int32
		for i := 0; i < len(s); i++ {
			out = append(out, tok.Encode([]byte{s[i]})[0])
		}
		return out
	}
	for _, c := range []struct {
		toks     []int32
		stops    []string
		stopToks []int32
		max      int
		text     string
		emitted  string
		reason   string
	}{
		// " sat" straddles the stop string: its leading space is in the
		// text but the token is not emitted.
		{enc("the cat sat on the mat"), []string{"sat"}, nil, 0, "the cat ", "the cat", StopString},
		{byteToks("the dog sat"), []string{"dog"}, nil, 0, "the ", "the ", StopString},
		{byteToks("abcabd"), []string{"abd", "xyz"}, nil, 0, "abc", "abc", StopString},
		{append(enc("the cat"), tok.EOT(), 5), nil, []int32{tok.EOT()}, 0, "the cat", "the cat", StopToken},
		{enc("the cat sat on the mat"), []string{"log"}, nil, 3, "", "", StopLength},
	} {
		var got []int32
		o := newOutput(m, func(id int32) error { got = append(got, id); return nil },
			GenerateOptions{MaxTokens: c.max, Stop: c.stops, StopTokens: c.stopToks, IgnoreEOT: c.stopToks == nil})
		for _, id := range c.toks {
			done, err := o.push(id)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				break
			}
		}
		if c.reason == StopLength {
			c.text = string(tok.Decode(c.toks[:3]))
			c.emitted = c.text
		}
		if o.reason != c.reason || string(o.text) != c.text || string(tok.Decode(got)) != c.emitted {
			t.Errorf("%q stops %q: reason %q text %q emitted %q; want %q %q %q", tok.Decode(c.toks), c.stops,
				o.reason, o.text, tok.Decode(got), c.reason, c.text, c.emitted)
		}
	}
	// A prefix of a stop string is held back, then released.
	var got []int32
	o := newOutput(m, func(id int32) error { got = append(got, id); return nil }, GenerateOptions{Stop: []string{"dox"}})
	for _, id := range byteToks("do") {
		o.push(id)
	}
	if len(got) != 0 {
		t.Fatalf("emitted %q before knowing whether it starts a stop string", tok.Decode(got))
	}
	o.push(byteToks("g")[0])
	if string(tok.Decode(got)) != "dog" {
		t.Fatalf("released %q", tok.Decode(got))
	}
}

// TestGenerateText checks Generate's text, stop strings and streaming with a
// tokenizer, plain and speculative.
func TestGenerateText(t *testing.T) {
	tok := trainTestTok(t)
	m := tokModel(t, tok, true, 3, 0.4)
	d := tokModel(t, tok, false, 4, 0.4)
	prompt := tok.Encode([]byte("the cat"))
	full, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 30, IgnoreEOT: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	textOf := func(ids []int32) string { // the text tokens, not control tokens
		var b []byte
		for _, id := range ids {
			if !tok.IsSpecial(id) {
				b = append(b, tok.TokenBytes(id)...)
			}
		}
		return string(b)
	}
	if full.Text != textOf(full.Tokens) {
		t.Fatalf("text %q is not the decoded text tokens", full.Text)
	}
	keep, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 30, IgnoreEOT: true, KeepSpecial: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if keep.Text != string(tok.Decode(keep.Tokens)) || !slices.Equal(keep.Tokens, full.Tokens) {
		t.Fatalf("KeepSpecial: text %q is not the decoded tokens %q", keep.Text, tok.Decode(keep.Tokens))
	}
	if textOf(full.Tokens) == string(tok.Decode(full.Tokens)) {
		t.Log("the random model wrote no special token; KeepSpecial is not told apart")
	}
	// Stop at a piece of the text that appears in the middle.
	if len(full.Text) < 10 {
		t.Fatalf("text too short: %q", full.Text)
	}
	stop := full.Text[len(full.Text)/2 : len(full.Text)/2+3]
	want := full.Text[:strings.Index(full.Text, stop)]
	for _, draft := range []*Model{nil, d} {
		var streamed []int32
		var text strings.Builder
		res, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 30, IgnoreEOT: true, Stop: []string{stop}, Draft: draft,
			Text: func(s string) error { text.WriteString(s); return nil }},
			func(id int32) error { streamed = append(streamed, id); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if res.Text != want || res.StopReason != StopString {
			t.Fatalf("draft %v: stop %q: text %q (%s), want %q", draft != nil, stop, res.Text, res.StopReason, want)
		}
		if s := textOf(streamed); !strings.HasPrefix(want, s) || len(want)-len(s) > 16 {
			t.Fatalf("streamed %q, text %q", s, want)
		}
		if text.String() != res.Text {
			t.Fatalf("text callback got %q, result text %q", text.String(), res.Text)
		}
		if !slices.Equal(res.Tokens, full.Tokens[:len(res.Tokens)]) {
			t.Fatal("tokens differ from the unstopped run")
		}
	}
	// Emit errors abort generation.
	_, err = m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 5}, func(int32) error { return fmt.Errorf("client gone") })
	if err == nil || !strings.Contains(err.Error(), "client gone") {
		t.Fatalf("emit error: %v", err)
	}
}

func TestChatTemplate(t *testing.T) {
	tok := trainTestTok(t)
	ids, err := EncodeChat(tok, nil, []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi <|end|>"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|system|>be brief<|end|><|user|>hi <|end|><|end|><|assistant|>"
	if got := string(tok.Decode(ids)); got != want {
		t.Fatalf("template %q, want %q", got, want)
	}
	end, _ := tok.Special(tokenizer.End)
	n := 0
	for _, id := range ids {
		if id == end {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("user text <|end|> became a special token (%d ends)", n)
	}
	// Without special text in the contents, the tokens are the rendered
	// text's with special strings parsed, as llama.cpp tokenizes it.
	msgs := []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "the cat sat"}}
	ids, err = EncodeChat(tok, nil, msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := tok.EncodeWithSpecials([]byte("<|system|>be brief<|end|><|user|>the cat sat<|end|><|assistant|>")); !slices.Equal(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	if _, err := EncodeChat(tok, nil, []Message{{Role: "robot", Content: "x"}}, false); err == nil || !strings.Contains(err.Error(), "robot") {
		t.Fatalf("unknown role: %v", err)
	}
	// A template that rewrites contents cannot keep special text as text:
	// it is refused, naming the template.
	trim, err := chattmpl.Parse("trim.jinja", "{% for m in messages %}<|user|>{{ m.content | trim }}<|end|>{% endfor %}", chattmpl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EncodeChat(tok, trim, []Message{{Role: "user", Content: " x<|end|> "}}, false); err == nil || !strings.Contains(err.Error(), "trim.jinja") {
		t.Fatalf("rewritten special text: %v", err)
	}
	ids, err = EncodeChat(tok, trim, []Message{{Role: "user", Content: " the cat "}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(tok.Decode(ids)); got != "<|user|>the cat<|end|>" {
		t.Fatalf("trim template: %q", got)
	}
}
