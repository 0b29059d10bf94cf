package infer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
	"github.com/moe-llm/moe/tokenizer/detok"
)

// Message is one turn of a conversation.
type Message = chattmpl.Message

// ChatPrompt renders messages with tmpl (nil: moe's own template) into
// the prompt text as llama.cpp's chat does: where the vocabulary adds BOS
// (EOS) to a tokenized prompt, a bos_token (eos_token) the template wrote at
// the start (end) of the text is dropped, since tokenizing adds the token.
// With addAssistant the text ends with what opens the assistant's reply.
func ChatPrompt(tok *tokenizer.Tokenizer, tmpl *chattmpl.Template, messages []Message, addAssistant bool) (string, error) {
	if tok == nil {
		return "", errors.New("infer: chat needs a tokenizer")
	}
	if tmpl == nil {
		var err error
		if tmpl, err = MoeTemplate(tok); err != nil {
			return "", err
		}
	}
	text, err := tmpl.Render(messages, addAssistant)
	if err != nil {
		return "", fmt.Errorf("infer: %w", err)
	}
	return trimAddedSpecials(tok, tmpl, text), nil
}

// trimAddedSpecials drops the bos_token text that starts, and the
// eos_token text that ends, a rendered text whose tokenization adds those
// tokens (llama.cpp's rule).
func trimAddedSpecials(tok *tokenizer.Tokenizer, tmpl *chattmpl.Template, text string) string {
	sp, opt := tok.Specials(), tmpl.Options()
	if sp.AddBOS && opt.BOS != "" {
		text = strings.TrimPrefix(text, opt.BOS)
	}
	if sp.AddEOS && opt.EOS != "" {
		text = strings.TrimSuffix(text, opt.EOS)
	}
	return text
}

// EncodeChat renders messages with tmpl (see ChatPrompt) and tokenizes
// the text. A nil tmpl means moe's own template (chattmpl.Moe), which
// needs the tokenizer's <|system|>, <|user|>, <|assistant|> and <|end|>
// tokens.
//
// The text is tokenized as llama.cpp and transformers tokenize a rendered
// template: special token strings become their special ids, and BOS (EOS)
// is added where the vocabulary asks for it. Special token strings inside
// a message's content stay text, though, when the template passes
// contents through unchanged (moe's and most others do): a user cannot
// forge a turn. A template that rewrites contents holding such strings is
// refused rather than let them become control tokens.
func EncodeChat(tok *tokenizer.Tokenizer, tmpl *chattmpl.Template, messages []Message, addAssistant bool) ([]int32, error) {
	if tok == nil {
		return nil, errors.New("infer: chat needs a tokenizer")
	}
	if tmpl == nil {
		var err error
		if tmpl, err = MoeTemplate(tok); err != nil {
			return nil, err
		}
	}
	text, err := ChatPrompt(tok, tmpl, messages, addAssistant)
	if err != nil {
		return nil, err
	}
	forged := false
	for _, m := range messages {
		if hasSpecial(tok, m.Content) {
			forged = true
			break
		}
	}
	if !forged {
		return tok.Tokenize([]byte(text), true, true), nil
	}
	// Render again with each content replaced by a marker; where that
	// render, with the contents put back, is the same text, the contents'
	// places are known and they are encoded as plain text.
	marked := make([]Message, len(messages))
	for i, m := range messages {
		marked[i] = Message{Role: m.Role, Content: contentMarker(i)}
	}
	mtext, err := ChatPrompt(tok, tmpl, marked, addAssistant)
	if err != nil {
		return nil, err
	}
	sp := tok.Specials()
	var out []int32
	if sp.AddBOS {
		out = append(out, sp.BOS)
	}
	var rebuilt []byte
	for len(mtext) > 0 {
		i, at := nextMarker(mtext, len(messages))
		if at < 0 {
			out = append(out, tok.EncodeWithSpecials([]byte(mtext))...)
			rebuilt = append(rebuilt, mtext...)
			break
		}
		out = append(out, tok.EncodeWithSpecials([]byte(mtext[:at]))...)
		out = tok.AppendEncode(out, []byte(messages[i].Content))
		rebuilt = append(append(rebuilt, mtext[:at]...), messages[i].Content...)
		mtext = mtext[at+len(contentMarker(i)):]
	}
	if string(rebuilt) != text {
		for i, m := range messages {
			if hasSpecial(tok, m.Content) {
				return nil, fmt.Errorf("infer: message %d holds special token text, and chat template %s changes message contents, so it would become a control token", i, tmpl.Name())
			}
		}
	}
	if sp.AddEOS {
		out = append(out, sp.EOS)
	}
	return out, nil
}

// hasSpecial reports whether s holds a special token's string.
func hasSpecial(tok *tokenizer.Tokenizer, s string) bool {
	return slices.ContainsFunc(tok.EncodeWithSpecials([]byte(s)), tok.IsSpecial)
}

// contentMarker stands for message i's content in a probe render.
func contentMarker(i int) string { return markerPrefix + strconv.Itoa(i) + "\x00" }

const markerPrefix = "\x00moe-content-"

// nextMarker finds the first content marker in s: the message index (of
// n) and the position, or -1.
func nextMarker(s string, n int) (int, int) {
	for from := 0; ; {
		j := strings.Index(s[from:], markerPrefix)
		if j < 0 {
			return -1, -1
		}
		at := from + j
		rest := s[at+len(markerPrefix):]
		if k := strings.IndexByte(rest, 0); k > 0 {
			if i, err := strconv.Atoi(rest[:k]); err == nil && i >= 0 && i < n {
				return i, at
			}
		}
		from = at + 1
	}
}

// MoeTemplate returns moe's own chat template for tok, which must have the
// chat special tokens.
func MoeTemplate(tok *tokenizer.Tokenizer) (*chattmpl.Template, error) {
	for _, name := range []string{tokenizer.System, tokenizer.User, tokenizer.Assistant, tokenizer.End} {
		if _, ok := tok.Special(name); !ok {
			return nil, fmt.Errorf("infer: tokenizer has no %s token for moe's chat template", name)
		}
	}
	return chattmpl.Parse("moe", chattmpl.Moe, chattmpl.Options{EOS: tokenizer.EndOfText})
}

// ChatTemplate returns the template chat uses with m: the model's own
// (m.Template, from the file) or, for a tokenizer with moe's chat tokens,
// moe's. It is an error when the model has neither.
func (m *Model) ChatTemplate() (*chattmpl.Template, error) {
	if m.Template != nil {
		return m.Template, nil
	}
	if m.Tok == nil {
		return nil, errors.New("infer: chat needs a tokenizer")
	}
	t, err := MoeTemplate(m.Tok)
	if err != nil {
		return nil, errors.New("infer: the model has no chat template (no tokenizer.chat_template, no chat_template in tokenizer_config.json, no moe chat tokens)")
	}
	return t, nil
}

// EncodeChat renders messages with m's chat template and tokenizes them.
func (m *Model) EncodeChat(messages []Message, addAssistant bool) ([]int32, error) {
	t, err := m.ChatTemplate()
	if err != nil {
		return nil, err
	}
	return EncodeChat(m.Tok, t, messages, addAssistant)
}

// ChatPrompt renders messages with m's chat template into the prompt text
// llama.cpp's chat would tokenize (see the package's ChatPrompt).
func (m *Model) ChatPrompt(messages []Message, addAssistant bool) (string, error) {
	t, err := m.ChatTemplate()
	if err != nil {
		return "", err
	}
	return ChatPrompt(m.Tok, t, messages, addAssistant)
}

// EncodePrompt tokenizes a text prompt as llama.cpp tokenizes one for
// generation (llama-simple, llama-cli, the server's completions): BOS
// (EOS) where the vocabulary asks for it, and special token strings as
// their ids.
func (m *Model) EncodePrompt(text string) []int32 {
	return m.Tok.Tokenize([]byte(text), true, true)
}

// DefaultStopTokens returns the end-of-generation tokens of a tokenizer
// alone: the end-of-text token and, if the tokenizer has it, the chat
// end-of-turn <|end|> (last).
func DefaultStopTokens(tok *tokenizer.Tokenizer) []int32 {
	stops := []int32{tok.EOT()}
	if id, ok := tok.Special(tokenizer.End); ok {
		stops = append(stops, id)
	}
	return stops
}

// StopTokens returns the tokens at which generation stops by default, as
// llama.cpp stops at a file's end-of-generation tokens: end-of-text, the
// file's own (m.EndTokens: eos, eot, eom), the tokens llama.cpp treats as
// end of generation by their text (<|im_end|>, <|endoftext|>, <|eot_id|>,
// ...: the tokenizer's EOG set), and the chat template's end
// markers and eos token that are special tokens (<|im_end|>, <|eot_id|>,
// <|return|>, ...); without a template, the tokenizer's DefaultStopTokens (moe's
// <|end|>). A harmony template (gpt-oss) ends replies at <|return|> and
// <|call|> only: its <|end|> closes one message of a reply, and llama.cpp
// drops it from the end-of-generation set too. Nil without a tokenizer.
func (m *Model) StopTokens() []int32 {
	if m.Tok == nil {
		return nil
	}
	stops := []int32{m.Tok.EOT()}
	add := func(id int32) {
		if !slices.Contains(stops, id) {
			stops = append(stops, id)
		}
	}
	if m.Template == nil {
		for _, id := range DefaultStopTokens(m.Tok) {
			add(id)
		}
	}
	for _, id := range m.EndTokens {
		add(id)
	}
	for _, id := range m.Tok.Specials().EOG { // eos, eot, eom and those llama.cpp knows by text
		add(id)
	}
	if m.Template == nil {
		return stops
	}
	markers := m.Template.EndMarkers()
	if eos := m.Template.Options().EOS; eos != "" {
		markers = append(markers, eos) // tokenizer_config.json's eos_token
	}
	for _, s := range markers {
		if id, ok := m.Tok.Special(s); ok {
			add(id)
		}
	}
	if slices.Contains(markers, "<|return|>") {
		if end, ok := m.Tok.Special("<|end|>"); ok {
			stops = slices.DeleteFunc(stops, func(id int32) bool { return id == end })
		}
	}
	return stops
}

// ReadChat reads the chat template and end-of-generation tokens a model
// file declares: a GGUF file's tokenizer.chat_template and
// tokenizer.ggml.{eos,eot,eom}_token_id, or a directory's
// tokenizer_config.json and generation_config.json's eos_token_id (one id
// or a list: Hugging Face's end-of-generation tokens beyond the
// tokenizer's eos). A model without a template gets none (moe's own
// applies when its tokenizer has the chat tokens); a template that does
// not parse, or an end token outside the vocabulary, is an error.
func ReadChat(path string, tok *tokenizer.Tokenizer) (*chattmpl.Template, []int32, error) {
	if tok == nil {
		return nil, nil, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !st.IsDir() && strings.EqualFold(filepath.Ext(path), ".gguf") {
		return loadGGUFChat(path, tok)
	}
	dir := path
	if !st.IsDir() {
		dir = filepath.Dir(path)
	}
	ends, err := generationEnds(dir, tok)
	if err != nil {
		return nil, nil, err
	}
	name := filepath.Join(dir, chattmpl.ConfigFileName)
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ends, nil
	}
	if err != nil {
		return nil, nil, err
	}
	t, err := chattmpl.FromTokenizerConfig(name, data, chattmpl.Options{})
	return t, ends, err
}

// generationEnds reads eos_token_id from dir's generation_config.json (a
// Hugging Face model's: one id or a list), nil when the file or the key is
// absent.
func generationEnds(dir string, tok *tokenizer.Tokenizer) ([]int32, error) {
	name := filepath.Join(dir, "generation_config.json")
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var gc struct {
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(data, &gc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(gc.EOS) == 0 || string(gc.EOS) == "null" {
		return nil, nil
	}
	var ids []int64
	if err := json.Unmarshal(gc.EOS, &ids); err != nil {
		var one int64
		if json.Unmarshal(gc.EOS, &one) != nil {
			return nil, fmt.Errorf("%s: eos_token_id is %s, want a token id or a list of them", name, gc.EOS)
		}
		ids = []int64{one}
	}
	ends := make([]int32, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= int64(tok.VocabSize()) {
			return nil, fmt.Errorf("%s: eos_token_id %d is not a token id of the %d-token vocabulary", name, id, tok.VocabSize())
		}
		ends = append(ends, int32(id))
	}
	return ends, nil
}

// loadGGUFChat reads ReadChat's part of a GGUF file.
func loadGGUFChat(path string, tok *tokenizer.Tokenizer) (*chattmpl.Template, []int32, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var ends []int32
	for _, key := range []string{"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"} {
		v, ok := f.Get(key)
		if !ok {
			continue
		}
		id, ok := gguf.AsInt(v)
		if !ok || id < 0 || id >= tok.VocabSize() {
			return nil, nil, fmt.Errorf("%s: %s = %v is not a token id of the %d-token vocabulary", path, key, v, tok.VocabSize())
		}
		ends = append(ends, int32(id))
	}
	v, ok := f.Get("tokenizer.chat_template")
	if !ok {
		return nil, ends, nil
	}
	src, ok := v.(string)
	if !ok {
		return nil, nil, fmt.Errorf("%s: tokenizer.chat_template is a %T, not a string", path, v)
	}
	opt := chattmpl.Options{}
	if id, ok := f.Get("tokenizer.ggml.bos_token_id"); ok {
		if n, ok := gguf.AsInt(id); ok && n >= 0 && n < tok.VocabSize() {
			opt.BOS = string(tok.TokenBytes(int32(n)))
		}
	}
	if len(ends) > 0 {
		opt.EOS = string(tok.TokenBytes(ends[0]))
	}
	t, err := chattmpl.Parse(path+" tokenizer.chat_template", src, opt)
	return t, ends, err
}

// ChatStops returns what ends an assistant reply written with template t:
// m.StopTokens() plus t's end markers, as token ids where the tokenizer has
// them as special tokens and as stop strings where it does not.
func (m *Model) ChatStops(t *chattmpl.Template) ([]int32, []string) {
	ids := m.StopTokens()
	var strs []string
	if t == nil || m.Tok == nil {
		return ids, nil
	}
	for _, s := range t.EndMarkers() {
		if id, ok := m.Tok.Special(s); ok {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		} else {
			strs = append(strs, s)
		}
	}
	return ids, strs
}

// ReplyText returns how the tokens of one assistant reply written with
// template t become text: the tokenizer's bytes with control tokens
// dropped, and for a harmony template (gpt-oss, whose replies are
// analysis and final channel messages) only the final channel's text. It
// may hold state: call it once per reply.
func (m *Model) ReplyText(t *chattmpl.Template) detok.TokenText {
	if m.Tok == nil {
		return func(int32) []byte { return nil }
	}
	text := detok.Text(m.Tok)
	if t == nil || !slices.Contains(t.EndMarkers(), "<|return|>") {
		return text
	}
	var h detok.Harmony
	ids := map[string]*int32{"<|start|>": &h.Start, "<|channel|>": &h.Channel, "<|message|>": &h.Message}
	for name, p := range ids {
		id, ok := m.Tok.Special(name)
		if !ok {
			return text // not harmony's vocabulary
		}
		*p = id
	}
	for _, name := range []string{"<|end|>", "<|return|>", "<|call|>"} {
		if id, ok := m.Tok.Special(name); ok {
			h.Ends = append(h.Ends, id)
		}
	}
	return h.Final(text)
}
