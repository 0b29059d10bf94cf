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

// TestMatchesReference pushes random token streams and compares the
// released text with a naive reference: the whole text, cut before the
// earliest stop string.
func TestMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "<", "|", ">", "\xc3", "\xa9", "\xe6\x97", "\xa5", " ", "<ctl>", "ab", "|>"}
	v := pieces(alphabet...)
	stops := []string{"<|>", "ab|", "é"}
	for trial := 0; trial < 3000; trial++ {
		n := r.IntN(12)
		ids := make([]int32, n)
		var all []byte
		for i := range ids {
			ids[i] = int32(r.IntN(len(v)))
			all = append(all, v[ids[i]]...)
		}
		use := stops[:r.IntN(len(stops)+1)]
		s := New(v.text, Options{Stops: use})
		var got []byte
		for _, id := range ids {
			got = append(got, s.Push(id)...)
			if s.Stopped() != Running {
				break
			}
		}
		got = append(got, s.Flush()...)
		want := all
		cut := -1
		for _, st := range use {
			if j := bytes.Index(all, []byte(st)); j >= 0 && (cut < 0 || j < cut) {
				cut = j
			}
		}
		if cut >= 0 {
			want = all[:cut]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("ids %v stops %q: got %q, want %q", ids, use, got, want)
		}
		if (cut >= 0) != (s.Stopped() == String) {
			t.Fatalf("ids %v stops %q: stopped %v, cut %d", ids, use, s.Stopped(), cut)
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
