// Package chattmpl renders a model's chat template: messages in, prompt
// text out, the way Hugging Face transformers' apply_chat_template renders
// the Jinja template a model ships (GGUF tokenizer.chat_template, or
// chat_template in tokenizer_config.json). It also names the end-of-turn
// markers a template implies, which end generation.
//
// Rendering follows transformers: trim_blocks and lstrip_blocks, the
// variables messages, add_generation_prompt, bos_token, eos_token, tools and
// documents (none), and the globals raise_exception and strftime_now. The
// Jinja engine is github.com/ardanlabs/jinja, written for these templates.
package chattmpl

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

// Moe is moe's own chat format as a template: each turn is the role's
// special token (<|system|>, <|user|>, <|assistant|>), the content and
// <|end|>; the generation prompt is <|assistant|>. Another role raises an
// error. Models moe trains carry it (exported GGUF files as
// tokenizer.chat_template, Hugging Face directories in
// tokenizer_config.json).
const Moe = "{% for message in messages %}" +
	"{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('moe chat: role ' + message['role'] + ' is not system, user or assistant') }}{% endif %}" +
	"{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"

// MaxSourceBytes bounds a template's source (real ones are under 20 KB).
const MaxSourceBytes = 1 << 20

// Message is one turn of a conversation.
type Message struct {
	// Role is "system", "user" or "assistant" (templates may accept more).
	Role string `json:"role"`
	// Content is the turn's text.
	Content string `json:"content"`
}

// Options are what a template is rendered with besides the messages.
type Options struct {
	// BOS and EOS are the strings of the beginning- and end-of-sequence
	// tokens, passed as bos_token and eos_token (undefined when empty).
	BOS, EOS string
	// Now is strftime_now's clock; nil means time.Now.
	Now func() time.Time
}

// Template is a parsed chat template. It is safe for concurrent use.
type Template struct {
	name string
	src  string
	t    *jinja.Template
	opt  Options
	ends []string
}

// Parse parses a template's source. name says where it came from (a file
// and key) and appears in every error.
func Parse(name, src string, opt Options) (*Template, error) {
	if len(src) > MaxSourceBytes {
		return nil, fmt.Errorf("chat template %s: %d bytes is more than the %d allowed", name, len(src), MaxSourceBytes)
	}
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("chat template %s is empty", name)
	}
	t, err := jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("chat template %s: %w", name, err)
	}
	tm := &Template{name: name, src: src, t: t, opt: opt}
	tm.ends = tm.endMarkers()
	return tm, nil
}

// Name returns where the template came from.
func (t *Template) Name() string { return t.name }

// Source returns the template's Jinja source.
func (t *Template) Source() string { return t.src }

// Options returns the options the template renders with.
func (t *Template) Options() Options { return t.opt }

// Render renders msgs. With addGenerationPrompt the text ends with what
// opens the assistant's reply. An error (a template that raises, or fails
// to evaluate) names the template.
func (t *Template) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	list := make([]any, len(msgs))
	for i, m := range msgs {
		list[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	data := map[string]any{
		"messages":              list,
		"add_generation_prompt": addGenerationPrompt,
		"tools":                 nil,
		"documents":             nil,
	}
	if t.opt.BOS != "" {
		data["bos_token"] = t.opt.BOS
	}
	if t.opt.EOS != "" {
		data["eos_token"] = t.opt.EOS
	}
	vals := make(map[string]jinja.Value, len(data)+1)
	for k, v := range data {
		vals[k] = jinja.FromGoValue(v)
	}
	now := t.opt.Now
	if now == nil {
		now = time.Now
	}
	vals["strftime_now"] = jinja.NewCallable("strftime_now", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) != 1 || !args[0].IsString() {
			return jinja.Undefined(), errors.New("strftime_now takes one format string")
		}
		return jinja.NewString(strftime(now(), args[0].AsString())), nil
	})
	out, err := t.t.RenderValues(vals)
	if err != nil {
		return "", fmt.Errorf("chat template %s: %w", t.name, err)
	}
	return out, nil
}

// EndMarkers returns the strings that end an assistant turn in this
// template, most specific first: what the template writes right after an
// assistant message's content (e.g. <|im_end|>, <|eot_id|>, </s>), and the
// end-of-generation markers of formats that close a reply differently from
// a message in the history (harmony's <|return|> and <|call|>, Llama's
// <|eom_id|>). The caller maps those that are special tokens to ids.
func (t *Template) EndMarkers() []string { return append([]string(nil), t.ends...) }

// endMarkers derives EndMarkers by rendering a probe conversation.
func (t *Template) endMarkers() []string {
	var ends []string
	add := func(s string) {
		for _, e := range ends {
			if e == s {
				return
			}
		}
		ends = append(ends, s)
	}
	harmony := strings.Contains(t.src, "<|return|>")
	if harmony {
		// In harmony <|end|> closes one message of a reply (the analysis
		// channel) and the reply goes on; <|return|> and <|call|> end it.
		add("<|return|>")
		add("<|call|>")
	}
	const sentinel = "\x00moe-probe\x00"
	text, err := t.Render([]Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: sentinel}}, false)
	if err == nil {
		if i := strings.LastIndex(text, sentinel); i >= 0 {
			if m := leadingMarker(text[i+len(sentinel):]); m != "" && !(harmony && m == "<|end|>") {
				add(m)
			}
		}
	}
	if strings.Contains(t.src, "<|eom_id|>") {
		add("<|eom_id|>")
	}
	return ends
}

// leadingMarker returns the <...> tag s starts with (<|im_end|>, </s>,
// <｜end▁of▁sentence｜>), or "".
func leadingMarker(s string) string {
	if !strings.HasPrefix(s, "<") {
		return ""
	}
	j := strings.IndexByte(s, '>')
	if j < 2 || j > 64 || strings.ContainsAny(s[:j], " \n\t") {
		return ""
	}
	return s[:j+1]
}

// strftime formats tm with the Python strftime directives templates use.
func strftime(tm time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", tm.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", tm.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(tm.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", tm.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", tm.Hour())
		case 'I':
			fmt.Fprintf(&b, "%02d", (tm.Hour()+11)%12+1)
		case 'M':
			fmt.Fprintf(&b, "%02d", tm.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", tm.Second())
		case 'p':
			if tm.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'B':
			b.WriteString(tm.Month().String())
		case 'b':
			b.WriteString(tm.Month().String()[:3])
		case 'A':
			b.WriteString(tm.Weekday().String())
		case 'a':
			b.WriteString(tm.Weekday().String()[:3])
		case 'j':
			fmt.Fprintf(&b, "%03d", tm.YearDay())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
