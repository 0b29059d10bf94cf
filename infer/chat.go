package infer

import (
	"fmt"

	"github.com/moe-llm/moe/tokenizer"
)

// Message is one turn of a conversation.
type Message struct {
	// Role is "system", "user" or "assistant".
	Role string `json:"role"`
	// Content is the turn's text.
	Content string `json:"content"`
}

// EncodeChat renders messages in moe's chat template and tokenizes them:
// each turn is the role's special token (<|system|>, <|user|>,
// <|assistant|>), the content encoded as plain text (special-token strings
// inside it stay text), then <|end|>. With addAssistant the result ends with
// <|assistant|>, ready for the model to write the reply, which ends with
// <|end|>.
func EncodeChat(tok *tokenizer.Tokenizer, messages []Message, addAssistant bool) ([]int32, error) {
	if tok == nil {
		return nil, fmt.Errorf("infer: chat needs a tokenizer")
	}
	end, ok := tok.Special(tokenizer.End)
	if !ok {
		return nil, fmt.Errorf("infer: tokenizer has no %s token", tokenizer.End)
	}
	var out []int32
	for i, m := range messages {
		name := ""
		switch m.Role {
		case "system":
			name = tokenizer.System
		case "user":
			name = tokenizer.User
		case "assistant":
			name = tokenizer.Assistant
		default:
			return nil, fmt.Errorf("infer: message %d has unknown role %q (system, user or assistant)", i, m.Role)
		}
		id, ok := tok.Special(name)
		if !ok {
			return nil, fmt.Errorf("infer: tokenizer has no %s token", name)
		}
		out = append(out, id)
		out = tok.AppendEncode(out, []byte(m.Content))
		out = append(out, end)
	}
	if addAssistant {
		id, ok := tok.Special(tokenizer.Assistant)
		if !ok {
			return nil, fmt.Errorf("infer: tokenizer has no %s token", tokenizer.Assistant)
		}
		out = append(out, id)
	}
	return out, nil
}

// DefaultStopTokens returns the end-of-generation tokens Generate stops at
// by default, as llama.cpp does with a GGUF's eos and eot ids: the
// end-of-text token and, if the tokenizer has it, the chat end-of-turn
// <|end|> (last).
func DefaultStopTokens(tok *tokenizer.Tokenizer) []int32 {
	stops := []int32{tok.EOT()}
	if id, ok := tok.Special(tokenizer.End); ok {
		stops = append(stops, id)
	}
	return stops
}

// ChatStopTokens returns the tokens that end an assistant reply: the
// end-of-text token and <|end|> (last), the same set as DefaultStopTokens.
func ChatStopTokens(tok *tokenizer.Tokenizer) []int32 { return DefaultStopTokens(tok) }

// TextStream turns a stream of tokens into text that is safe to print: it
// holds back the bytes of an incomplete UTF-8 character until the tokens
// that complete it arrive.
type TextStream struct {
	tok *tokenizer.Tokenizer
	buf []byte
}

// NewTextStream returns a TextStream for tok.
func NewTextStream(tok *tokenizer.Tokenizer) *TextStream { return &TextStream{tok: tok} }

// Push adds a token and returns the text that is now complete.
func (s *TextStream) Push(id int32) string {
	s.buf = append(s.buf, s.tok.TokenBytes(id)...)
	n := completeUTF8(s.buf)
	out := string(s.buf[:n])
	s.buf = append(s.buf[:0], s.buf[n:]...)
	return out
}

// Flush returns whatever is held back (possibly invalid UTF-8).
func (s *TextStream) Flush() string {
	out := string(s.buf)
	s.buf = s.buf[:0]
	return out
}

// completeUTF8 returns the length of b without a trailing incomplete (but so
// far valid) UTF-8 sequence.
func completeUTF8(b []byte) int {
	n := len(b)
	for i := 1; i <= 3 && i <= n; i++ {
		c := b[n-i]
		if c&0xC0 == 0x80 {
			continue // continuation byte
		}
		need := 0
		switch {
		case c&0xE0 == 0xC0:
			need = 2
		case c&0xF0 == 0xE0:
			need = 3
		case c&0xF8 == 0xF0:
			need = 4
		default:
			return n
		}
		if i < need {
			return n - i
		}
		return n
	}
	return n
}
