// Package detok turns generated tokens into text as they arrive: the one
// path from tokens to text that generation, chat and the server share.
//
// A Stream holds back the bytes of an incomplete UTF-8 character until the
// tokens that complete it arrive, holds back text that may be the start of a
// stop string until it cannot be, drops control tokens (their text is nil),
// and ends at a stop token or a stop string (neither is part of the text).
package detok

import (
	"bytes"
	"unicode/utf8"
)

// Reason says why a Stream stopped.
type Reason int

// Stop reasons.
const (
	// Running: no stop yet.
	Running Reason = iota
	// Token: a stop token (end of text, of a turn, ...) arrived.
	Token
	// String: a stop string appeared in the text.
	String
)

// TokenText returns the bytes token id adds to the text: nil for a control
// token (end of text, role markers, ...). It is how a Stream reads a
// vocabulary, whatever its kind.
type TokenText func(id int32) []byte

// Vocab is what Text needs from a tokenizer.
type Vocab interface {
	// TokenBytes returns the bytes (or special token string) of id.
	TokenBytes(id int32) []byte
	// IsSpecial reports whether id is a special (control) token.
	IsSpecial(id int32) bool
}

// Text returns the TokenText of v: its token bytes, nil for special tokens.
func Text(v Vocab) TokenText {
	return func(id int32) []byte {
		if v.IsSpecial(id) {
			return nil
		}
		return v.TokenBytes(id)
	}
}

// Options configure a Stream.
type Options struct {
	// Stops end the text where one of them appears (the earliest); the stop
	// string and everything after it are dropped. Empty strings are ignored.
	Stops []string
	// StopTokens end the text when generated.
	StopTokens []int32
}

// Stream is an incremental detokenizer. It is not safe for concurrent use.
type Stream struct {
	text    TokenText
	stops   [][]byte
	stopIDs map[int32]bool

	raw     []byte // a trailing incomplete (so far valid) UTF-8 sequence
	pending []byte // whole characters not yet released
	total   int    // bytes of token text pushed (control tokens add none)
	out     int    // bytes released
	reason  Reason
}

// New returns a Stream reading tokens through text.
func New(text TokenText, opt Options) *Stream {
	s := &Stream{text: text}
	for _, st := range opt.Stops {
		if st != "" {
			s.stops = append(s.stops, []byte(st))
		}
	}
	if len(opt.StopTokens) > 0 {
		s.stopIDs = make(map[int32]bool, len(opt.StopTokens))
		for _, id := range opt.StopTokens {
			s.stopIDs[id] = true
		}
	}
	return s
}

// Push adds token id and returns the text that is now final. After a stop
// token, what was held back is final and returned with it; after a stop
// (Stopped() != Running) Push returns "".
func (s *Stream) Push(id int32) string {
	if s.reason != Running {
		return ""
	}
	if s.stopIDs[id] {
		s.reason = Token
		return s.release(len(s.pending), true)
	}
	b := s.text(id)
	s.total += len(b)
	s.raw = append(s.raw, b...)
	n := completeUTF8(s.raw)
	s.pending = append(s.pending, s.raw[:n]...)
	s.raw = append(s.raw[:0], s.raw[n:]...)
	if len(s.stops) == 0 {
		return s.release(len(s.pending), false)
	}
	if cut := s.firstStop(); cut >= 0 {
		s.reason = String
		out := s.release(cut, false)
		s.pending, s.raw = s.pending[:0], s.raw[:0]
		return out
	}
	hold := 0
	for _, st := range s.stops {
		for k := min(len(st)-1, len(s.pending)); k > hold; k-- {
			if bytes.HasSuffix(s.pending, st[:k]) {
				hold = k
				break
			}
		}
	}
	return s.release(len(s.pending)-hold, false)
}

// release returns the first n pending bytes (and, with withRaw, the raw
// tail too) and drops them.
func (s *Stream) release(n int, withRaw bool) string {
	out := string(s.pending[:n])
	s.pending = append(s.pending[:0], s.pending[n:]...)
	if withRaw {
		out += string(s.raw)
		s.raw = s.raw[:0]
	}
	s.out += len(out)
	return out
}

// Flush ends the stream and returns what is held back: text that might
// have begun a stop string, and bytes that never formed a whole UTF-8
// character (passed through as they are), cut before a stop string they
// complete. After a stop it returns "".
func (s *Stream) Flush() string {
	if s.reason != Running {
		return ""
	}
	s.pending = append(s.pending, s.raw...)
	s.raw = s.raw[:0]
	if cut := s.firstStop(); cut >= 0 {
		s.reason = String
		out := s.release(cut, false)
		s.pending = s.pending[:0]
		return out
	}
	return s.release(len(s.pending), false)
}

// firstStop returns where the earliest stop string in pending begins, or -1.
func (s *Stream) firstStop() int {
	cut := -1
	for _, st := range s.stops {
		if j := bytes.Index(s.pending, st); j >= 0 && (cut < 0 || j < cut) {
			cut = j
		}
	}
	return cut
}

// Stopped reports whether, and why, the stream has stopped.
func (s *Stream) Stopped() Reason { return s.reason }

// Released returns how many bytes of the pushed tokens' text have been
// released so far. The released text is a prefix of the concatenated text
// of the pushed tokens, so a token is wholly released once the text up to
// its end is.
func (s *Stream) Released() int { return s.out }

// Pushed returns how many bytes of token text have been pushed.
func (s *Stream) Pushed() int { return s.total }

// completeUTF8 returns the length of b without a trailing incomplete but
// so far valid UTF-8 sequence. Invalid bytes count as complete: they are
// passed through, never held forever.
func completeUTF8(b []byte) int {
	n := len(b)
	for i := 1; i <= utf8.UTFMax-1 && i <= n; i++ {
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
