package serve

import (
	"strings"
	"unicode/utf8"
)

// textStream turns generated token ids into text for streaming: it holds
// back bytes that do not yet form a whole UTF-8 character and text that may
// be the start of a stop string, and reports when a stop string appears
// (the stop string itself and everything after it are never emitted).
type textStream struct {
	tok     Tokenizer
	stops   []string
	raw     []byte // bytes that may still be the start of an incomplete rune
	pending []byte // whole runes not yet emitted
	stopped bool
}

func newTextStream(tok Tokenizer, stops []string) *textStream {
	return &textStream{tok: tok, stops: stops}
}

// add appends token id and returns the text that is now safe to emit and
// whether a stop string ended the text. After a stop, add returns "".
func (t *textStream) add(id int32) (string, bool) {
	if t.stopped {
		return "", true
	}
	t.raw = append(t.raw, t.tok.TokenBytes(id)...)
	i := 0
	for i < len(t.raw) && utf8.FullRune(t.raw[i:]) {
		_, size := utf8.DecodeRune(t.raw[i:])
		i += size
	}
	t.pending = append(t.pending, t.raw[:i]...)
	t.raw = append(t.raw[:0], t.raw[i:]...)
	if len(t.stops) == 0 {
		out := string(t.pending)
		t.pending = t.pending[:0]
		return out, false
	}
	cut := -1
	for _, s := range t.stops {
		if j := strings.Index(string(t.pending), s); j >= 0 && (cut < 0 || j < cut) {
			cut = j
		}
	}
	if cut >= 0 {
		out := string(t.pending[:cut])
		t.pending, t.raw = nil, nil
		t.stopped = true
		return out, true
	}
	hold := 0
	for _, s := range t.stops {
		for k := min(len(s)-1, len(t.pending)); k > hold; k-- {
			if string(t.pending[len(t.pending)-k:]) == s[:k] {
				hold = k
				break
			}
		}
	}
	n := len(t.pending) - hold
	out := string(t.pending[:n])
	t.pending = append(t.pending[:0], t.pending[n:]...)
	return out, false
}

// flush returns whatever is held back, at the end of generation. Bytes that
// never formed a valid character are passed through (JSON encoding turns
// them into U+FFFD).
func (t *textStream) flush() string {
	if t.stopped {
		return ""
	}
	out := string(t.pending) + string(t.raw)
	t.pending, t.raw = nil, nil
	return out
}
