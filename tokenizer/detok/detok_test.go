package detok

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// vocab is a toy vocabulary: ids index pieces; a nil piece is a control token.
type vocab [][]byte

func (v vocab) text(id int32) []byte { return v[id] }

func pieces(ss ...string) vocab {
	v := make(vocab, len(ss))
	for i, s := range ss {
		if s != "<ctl>" {
			v[i] = []byte(s)
		}
	}
	return v
}

func run(s *Stream, ids ...int32) []string {
	var out []string
	for _, id := range ids {
		out = append(out, s.Push(id))
	}
	return append(out, s.Flush())
}

func TestSplitUTF8IsHeldBack(t *testing.T) {
	// "é" = C3 A9, "日" = E6 97 A5, "🙂" = F0 9F 99 82, split over tokens.
	v := pieces("a\xc3", "\xa9b", "\xe6", "\x97", "\xa5", "\xf0\x9f", "\x99\x82", "!")
	got := run(New(v.text, Options{}), 0, 1, 2, 3, 4, 5, 6, 7)
	want := []string{"a", "éb", "", "", "日", "", "🙂", "!", ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, g := range got {
		if !utf8.ValidString(g) {
			t.Errorf("released invalid UTF-8 %q", g)
		}
	}
}

func TestInvalidBytesPassThrough(t *testing.T) {
	v := pieces("\xff", "x", "\xe6\x97")
	got := run(New(v.text, Options{}), 0, 1, 2)
	if want := []string{"\xff", "x", "", "\xe6\x97"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStopStringAcrossTokens(t *testing.T) {
	v := pieces("Hello", " <", "|im", "_e", "nd", "|>", " more", "<|i", "x")
	s := New(v.text, Options{Stops: []string{"<|im_end|>"}})
	var got []string
	for _, id := range []int32{0, 7, 8, 1, 2, 3, 4, 5, 6} {
		got = append(got, s.Push(id))
	}
	// "<|i" is held until "x" shows it is not the stop; "<|im_e" is held
	// and then cut.
	want := []string{"Hello", "", "<|ix", " ", "", "", "", "", ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if s.Stopped() != String {
		t.Errorf("stopped %v, want String", s.Stopped())
	}
	if s.Flush() != "" || s.Push(0) != "" {
		t.Error("text after the stop")
	}
	if s.Released() != len("Hello<|ix ") {
		t.Errorf("released %d bytes, want %d", s.Released(), len("Hello<|ix "))
	}
}

func TestStopTokenAndControlTokens(t *testing.T) {
	v := pieces("Hi", "<ctl>", " <", "<ctl>", "x")
	s := New(v.text, Options{Stops: []string{"<|end|>"}, StopTokens: []int32{3}})
	got := []string{s.Push(0), s.Push(1), s.Push(2), s.Push(3), s.Push(4), s.Flush()}
	// The control token 1 adds nothing; the held "<" is final at the
	// stop token 3, which adds nothing either.
	if want := []string{"Hi", "", " ", "<", "", ""}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if s.Stopped() != Token {
		t.Errorf("stopped %v, want Token", s.Stopped())
	}
}

// reference is the naive detokenizer: after each token, if the text so far
// holds a stop string, the text is cut before the earliest one and that is
// the end (a stop ends generation as soon as it is complete, as llama.cpp's
// server checks); otherwise the whole text.
func reference(v vocab, ids []int32, stops []string) (string, bool) {
	var all []byte
	for _, id := range ids {
		all = append(all, v[id]...)
		cut := -1
		for _, st := range stops {
			if st == "" {
				continue
			}
			if j := bytes.Index(all, []byte(st)); j >= 0 && (cut < 0 || j < cut) {
				cut = j
			}
		}
		if cut >= 0 {
			return string(all[:cut]), true
		}
	}
	return string(all), false
}

// pushAll streams ids through a Stream until it stops and returns all it
// released, Flush included.
func pushAll(v vocab, ids []int32, stops []string) ([]byte, *Stream) {
	s := New(v.text, Options{Stops: stops})
	var got []byte
	for _, id := range ids {
		got = append(got, s.Push(id)...)
		if s.Stopped() != Running {
			break
		}
	}
	return append(got, s.Flush()...), s
}

// TestMatchesReference pushes random token streams and compares the
// released text with the naive reference.
func TestMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "<", "|", ">", "\xc3", "\xa9", "\xe6\x97", "\xa5", " ", "<ctl>", "ab", "|>"}
	v := pieces(alphabet...)
	stops := []string{"<|>", "ab|", "é", "|>"} // "|>" ends inside "<|>"
	for trial := 0; trial < 3000; trial++ {
		n := r.IntN(12)
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(r.IntN(len(v)))
		}
		use := stops[:r.IntN(len(stops)+1)]
		got, s := pushAll(v, ids, use)
		want, stopped := reference(v, ids, use)
		if string(got) != want {
			t.Fatalf("ids %v stops %q: got %q, want %q", ids, use, got, want)
		}
		if stopped != (s.Stopped() == String) {
			t.Fatalf("ids %v stops %q: stopped %v, reference %v", ids, use, s.Stopped(), stopped)
		}
	}
}

type fakeVocab struct{}

func (fakeVocab) TokenBytes(id int32) []byte { return []byte{byte('a' + id)} }
func (fakeVocab) IsSpecial(id int32) bool    { return id == 2 }

func TestTextDropsSpecials(t *testing.T) {
	tt := Text(fakeVocab{})
	if string(tt(0)) != "a" || tt(2) != nil {
		t.Errorf("Text: %q %q", tt(0), tt(2))
	}
}

// FuzzStream checks the released text against the reference for
// arbitrary token streams: data is cut into tokens of 1-3 bytes (so
// characters split across tokens) and the stop strings are valid UTF-8, as
// JSON and flags give them.
func FuzzStream(f *testing.F) {
	f.Add([]byte("ab|<|>é"), "<|>", "b|")
	f.Add([]byte("\xe6\x97\xa5x\xff"), "x", "")
	f.Add([]byte("\xed367\xe0"), "67é", "7")
	f.Fuzz(func(t *testing.T, data []byte, stop1, stop2 string) {
		if !utf8.ValidString(stop1) || !utf8.ValidString(stop2) {
			return
		}
		var v vocab
		var ids []int32
		for len(data) > 0 {
			n := min(len(data), int(data[0]%3)+1)
			ids = append(ids, int32(len(v)))
			v = append(v, data[:n])
			data = data[n:]
		}
		stops := []string{stop1, stop2}
		got, _ := pushAll(v, ids, stops)
		if want, _ := reference(v, ids, stops); string(got) != want {
			t.Fatalf("tokens %q stops %q: got %q, want %q", v, stops, got, want)
		}
	})
}

func TestHarmonyFinal(t *testing.T) {
	// 0 <|start|>, 1 <|channel|>, 2 <|message|>, 3 <|end|>, 4 <|return|>.
	v := pieces("<ctl>", "<ctl>", "<ctl>", "<ctl>", "<ctl>", "analysis", "final", "assistant", "Let me think.", "The answer", " is 4.")
	h := Harmony{Start: 0, Channel: 1, Message: 2, Ends: []int32{3, 4}}
	reply := []int32{1, 5, 2, 8, 3, 0, 7, 1, 6, 2, 9, 10, 4}
	s := New(h.Final(v.text), Options{StopTokens: []int32{4}})
	var got strings.Builder
	for _, id := range reply {
		got.WriteString(s.Push(id))
	}
	if got.String() != "The answer is 4." || s.Stopped() != Token {
		t.Errorf("final text %q (stopped %v), want %q", got.String(), s.Stopped(), "The answer is 4.")
	}
	// A model that writes no channel markers is passed through.
	s = New(h.Final(v.text), Options{})
	if out := s.Push(9) + s.Push(10); out != "The answer is 4." {
		t.Errorf("plain text %q", out)
	}
}
