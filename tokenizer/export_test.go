package tokenizer

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
)

// mergeListEncode is a reference merge-list BPE, as llama.cpp and Hugging
// Face run it: per pre-tokenized piece (a piece that is itself a token is
// taken whole), start from single bytes and repeatedly merge the adjacent
// pair of lowest merge rank.
func mergeListEncode(t *Tokenizer, merges [][2]int32, text []byte) []int32 {
	rank := map[[2]string]int{}
	for i, m := range merges {
		rank[[2]string{string(t.TokenBytes(m[0])), string(t.TokenBytes(m[1]))}] = i
	}
	var out []int32
	Pieces(text, func(p []byte) {
		if id, ok := t.ranks[string(p)]; ok {
			out = append(out, id)
			return
		}
		parts := make([]string, len(p))
		for i := range p {
			parts[i] = string(p[i : i+1])
		}
		for {
			best, bi := math.MaxInt, -1
			for i := 0; i+1 < len(parts); i++ {
				if r, ok := rank[[2]string{parts[i], parts[i+1]}]; ok && r < best {
					best, bi = r, i
				}
			}
			if bi < 0 {
				break
			}
			parts[bi] += parts[bi+1]
			parts = append(parts[:bi+1], parts[bi+2:]...)
		}
		for _, s := range parts {
			out = append(out, t.ranks[s])
		}
	})
	return out
}

func TestMergesMatchRankBPE(t *testing.T) {
	corpus := strings.Repeat("The quick brown fox jumps over the lazy dog; the dog doesn't mind. 12345 foxes!\n", 20) +
		"naïve café 東京 \t\t tabs and   spaces\r\n"
	tok, err := Train(context.Background(), func(yield func([]byte) bool) { yield([]byte(corpus)) }, 400)
	if err != nil {
		t.Fatal(err)
	}
	merges := tok.Merges()
	multi := 0
	last := int32(-1)
	for id := 0; id < tok.NumMergeable(); id++ {
		if b := tok.TokenBytes(int32(id)); len(b) >= 2 && !tok.IsSpecial(int32(id)) {
			multi++
		}
	}
	if len(merges) != multi {
		t.Fatalf("%d merges for %d multi-byte tokens", len(merges), multi)
	}
	for _, m := range merges {
		joined := append(append([]byte(nil), tok.TokenBytes(m[0])...), tok.TokenBytes(m[1])...)
		id, ok := tok.ranks[string(joined)]
		if !ok || id <= last || m[0] >= id || m[1] >= id {
			t.Fatalf("merge %v (%q + %q) does not make a later token", m, tok.TokenBytes(m[0]), tok.TokenBytes(m[1]))
		}
		last = id
	}
	for _, text := range []string{corpus, "The lazy foxes' quickest jump: 9876543210 dogs?! unseenwordsxyz", "   \n\n\tthe"} {
		want := tok.Encode([]byte(text))
		got := mergeListEncode(tok, merges, []byte(text))
		if len(got) != len(want) {
			t.Fatalf("merge-list BPE gives %d tokens, rank BPE %d for %q", len(got), len(want), text)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("token %d: merge-list %d, rank %d", i, got[i], want[i])
			}
		}
		if !bytes.Equal(tok.Decode(got), []byte(text)) {
			t.Fatal("decode mismatch")
		}
	}
	tok2, err := New(tok.vocab, tok.specials)
	if err != nil || tok2.VocabSize() != tok.VocabSize() {
		t.Fatalf("New: %v", err)
	}
	if _, err := New([][]byte{[]byte("a")}, map[string]int32{EndOfText: 1}); err == nil {
		t.Error("New without all 256 bytes: no error")
	}
}
