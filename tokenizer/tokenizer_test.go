package tokenizer

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// sampleTok trains (once per test binary) a 1000-token vocabulary on the
// KJV sample in testdata.
var sampleTok = sync.OnceValues(func() (*Tokenizer, error) {
	text, err := os.ReadFile("testdata/kjv_sample.txt")
	if err != nil {
		return nil, err
	}
	return Train(context.Background(), paragraphs(text), 1000)
})

func paragraphs(text []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for _, p := range bytes.SplitAfter(text, []byte("\n\n")) {
			if !yield(p) {
				return
			}
		}
	}
}

// mustTok returns a function that passes a constructor's tokenizer on
// and fails t on its error: mustTok(t)(NewFromSpec(spec)).
func mustTok(t testing.TB) func(*Tokenizer, error) *Tokenizer {
	return func(tok *Tokenizer, err error) *Tokenizer {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

func mustSample(t testing.TB) *Tokenizer {
	t.Helper()
	return mustTok(t)(sampleTok())
}

// trickyStrings exercise the pre-tokenizer's corners.
var trickyStrings = []string{
	"", "hello world", "Hello, World!", "tiktoken is great!",
	"I'm you're we've they'll he'd she's it't", "DON'T WE'LL I'M 'S 'sup 'Re",
	"1234567 12 3 4.5 1,000,000", "  leading spaces", "trailing spaces   ", "tabs\tand\t\ttabs",
	"line\nbreaks\r\nand\n\n\nblank\r\n\r\n", "   \n   x", "x \n", " \n\n ", "\n", " ", "  ", "a  b", "a \t b",
	"<|endoftext|> is not special here", "emoji 😀👍🏽 and 中文字符 and العربية", "naïve café résumé",
	"::!!?? ... --- ***", "foo.bar(baz[0]) { return x+y; }", "    def f(x):\n        return x ** 2\n",
	"ſ 'ſ 'ſtrange", "٣٤٥ numbers ①②③ Ⅻ", "\u00a0nbsp\u2003emspace\u3000ideo", "a\u0300\u0301 combining",
	"\"quoted\" 'single' `back`", "@user #tag $100 %50 ^ & * ( )", "x\r\ny", "\r\r\n\n", "...\n\n\n",
}

func TestRoundTripTrickyAndRandom(t *testing.T) {
	tok := mustSample(t)
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := [][]byte{}
	for _, s := range trickyStrings {
		inputs = append(inputs, []byte(s))
	}
	alphabet := []rune("ab xyZ'\n\r\t.,!0123é中😀\u00a0<|>")
	for i := 0; i < 300; i++ {
		n := rng.IntN(200)
		b := make([]byte, 0, n)
		switch i % 3 {
		case 0: // arbitrary bytes, mostly invalid UTF-8
			for j := 0; j < n; j++ {
				b = append(b, byte(rng.UintN(256)))
			}
		case 1: // text-like runes
			for j := 0; j < n; j++ {
				b = utf8.AppendRune(b, alphabet[rng.IntN(len(alphabet))])
			}
		default: // long runs that take the heap merge path
			c := []string{"!", " ", "a", "\xff", "é"}[rng.IntN(5)]
			b = []byte(strings.Repeat(c, 65+n))
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		ids := tok.Encode(in)
		if got := tok.Decode(ids); !bytes.Equal(got, in) {
			t.Fatalf("Decode(Encode(%q)) = %q", in, got)
		}
		for _, id := range ids {
			if tok.IsSpecial(id) {
				t.Fatalf("Encode(%q) produced special token %d", in, id)
			}
		}
		if got := tok.Decode(tok.EncodeWithSpecials(in)); !bytes.Equal(got, in) {
			t.Fatalf("Decode(EncodeWithSpecials(%q)) = %q", in, got)
		}
		var cat []byte
		Pieces(in, func(p []byte) {
			if len(p) == 0 {
				t.Fatalf("empty piece in %q", in)
			}
			cat = append(cat, p...)
		})
		if !bytes.Equal(cat, in) {
			t.Fatalf("pieces of %q concatenate to %q", in, cat)
		}
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add([]byte(s))
	}
	f.Add([]byte{0xff, 0xfe, 0x00, 0xc3})
	f.Add([]byte(strings.Repeat("!?", 100)))
	tok, err := sampleTok()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got := tok.Decode(tok.Encode(in)); !bytes.Equal(got, in) {
			t.Fatalf("Decode(Encode(%q)) = %q", in, got)
		}
		if got := tok.Decode(tok.EncodeWithSpecials(in)); !bytes.Equal(got, in) {
			t.Fatalf("Decode(EncodeWithSpecials(%q)) = %q", in, got)
		}
	})
}

func TestSpecials(t *testing.T) {
	tok := mustSample(t)
	if tok.VocabSize() != 1000 {
		t.Fatalf("VocabSize = %d, want 1000", tok.VocabSize())
	}
	for i, name := range SpecialNames {
		id, ok := tok.Special(name)
		if !ok || int(id) != 1000-len(SpecialNames)+i {
			t.Fatalf("Special(%q) = %d, %v", name, id, ok)
		}
		if string(tok.TokenBytes(id)) != name {
			t.Fatalf("TokenBytes(%d) = %q", id, tok.TokenBytes(id))
		}
	}
	if _, ok := tok.Special("<|nope|>"); ok {
		t.Fatal("unknown special found")
	}
	if tok.EOT() != 995 {
		t.Fatalf("EOT = %d", tok.EOT())
	}
	in := []byte("<|user|>hi<|end|><|assistant|>yo<|endoftext|>")
	ids := tok.EncodeWithSpecials(in)
	u, _ := tok.Special(User)
	e, _ := tok.Special(End)
	a, _ := tok.Special(Assistant)
	if ids[0] != u || ids[len(ids)-1] != tok.EOT() || !slices.Contains(ids, e) || !slices.Contains(ids, a) {
		t.Fatalf("EncodeWithSpecials = %v", ids)
	}
	for _, id := range tok.Encode(in) {
		if tok.IsSpecial(id) {
			t.Fatalf("Encode made special %d from plain text", id)
		}
	}
	if tok.TokenBytes(-1) != nil || tok.TokenBytes(1000) != nil {
		t.Fatal("TokenBytes of out-of-range id not nil")
	}
}

// naiveTrain is a reference BPE trainer that recounts every pair at every
// step (same tie-break: highest count, then smallest (a, b)).
func naiveTrain(docs []string, merges int) [][]byte {
	counts := map[string]int64{}
	for _, d := range docs {
		Pieces([]byte(d), func(p []byte) { counts[string(p)]++ })
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	words := make([][]int32, len(keys))
	for i, k := range keys {
		for _, b := range []byte(k) {
			words[i] = append(words[i], int32(b))
		}
	}
	vocab := make([][]byte, 256)
	known := map[string]int32{}
	for i := range vocab {
		vocab[i] = []byte{byte(i)}
		known[string(vocab[i])] = int32(i)
	}
	for m := 0; m < merges; {
		pc := map[[2]int32]int64{}
		for i, w := range words {
			for k := 0; k+1 < len(w); k++ {
				pc[[2]int32{w[k], w[k+1]}] += counts[keys[i]]
			}
		}
		var best [2]int32
		bc := int64(0)
		for p, c := range pc {
			if c > bc || c == bc && (p[0] < best[0] || p[0] == best[0] && p[1] < best[1]) {
				best, bc = p, c
			}
		}
		if bc == 0 {
			break
		}
		joined := append(append([]byte(nil), vocab[best[0]]...), vocab[best[1]]...)
		z, ok := known[string(joined)]
		if !ok {
			z = int32(len(vocab))
			vocab = append(vocab, joined)
			known[string(joined)] = z
			m++
		}
		for i, w := range words {
			var out []int32
			for k := 0; k < len(w); k++ {
				if k+1 < len(w) && w[k] == best[0] && w[k+1] == best[1] {
					out = append(out, z)
					k++
				} else {
					out = append(out, w[k])
				}
			}
			words[i] = out
		}
	}
	return vocab
}

func TestTrainMatchesNaive(t *testing.T) {
	text := kjvSample(t)
	docs := []string{string(text[:20000]), "aaaa aaaa aaaaaaa abab ababab", "xyxyxy zzzz zzzz"}
	const vocabSize = 256 + 150 + len(SpecialNames)
	tok, err := Train(context.Background(), func(yield func([]byte) bool) {
		for _, d := range docs {
			if !yield([]byte(d)) {
				return
			}
		}
	}, vocabSize)
	if err != nil {
		t.Fatal(err)
	}
	want := naiveTrain(docs, 150)
	if len(want) != 256+150 {
		t.Fatalf("naive made %d tokens", len(want))
	}
	for id, w := range want {
		if got := tok.TokenBytes(int32(id)); !bytes.Equal(got, w) {
			t.Fatalf("token %d = %q, naive reference %q", id, got, w)
		}
	}
}

func TestTrainDeterministicSaveLoad(t *testing.T) {
	tok := mustSample(t)
	text := kjvSample(t)
	again, err := Train(context.Background(), paragraphs(text), 1000)
	if err != nil {
		t.Fatal(err)
	}
	for id := int32(0); id < 1000; id++ {
		if !bytes.Equal(tok.TokenBytes(id), again.TokenBytes(id)) {
			t.Fatalf("retraining changed token %d: %q vs %q", id, tok.TokenBytes(id), again.TokenBytes(id))
		}
	}
	ids := tok.Encode(text)
	ratio := float64(len(text)) / float64(len(ids))
	if ratio < 3 {
		t.Fatalf("1000-token vocabulary compresses KJV only %.2f bytes/token", ratio)
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := tok.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.VocabSize() != tok.VocabSize() || loaded.EOT() != tok.EOT() {
		t.Fatalf("loaded vocab %d eot %d", loaded.VocabSize(), loaded.EOT())
	}
	if got := loaded.Encode(text); !slices.Equal(got, ids) {
		t.Fatal("loaded tokenizer encodes differently")
	}
}

func TestTrainErrors(t *testing.T) {
	one := func(s string) func(func([]byte) bool) {
		return func(yield func([]byte) bool) { yield([]byte(s)) }
	}
	ctx := context.Background()
	if _, err := Train(ctx, one("abc"), 100); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("small vocab: %v", err)
	}
	if _, err := Train(ctx, one(""), 500); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty corpus: %v", err)
	}
	if _, err := Train(ctx, nil, 500); err == nil {
		t.Fatal("nil docs accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	many := func(yield func([]byte) bool) {
		for i := 0; i < 1000; i++ {
			if !yield([]byte("some words here")) {
				return
			}
		}
	}
	if _, err := Train(cctx, many, 500); err == nil || !strings.Contains(err.Error(), "cancel") {
		t.Fatalf("cancelled: %v", err)
	}
	// A corpus that runs out of pairs yields a smaller vocabulary.
	tok, err := Train(ctx, one("ab"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 256+1+len(SpecialNames) {
		t.Fatalf("exhausted corpus vocab = %d", tok.VocabSize())
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]string{
		"garbage":  "not json",
		"format":   `{"format":"other","version":1}`,
		"version":  `{"format":"moe-bpe","version":9}`,
		"nobytes":  `{"format":"moe-bpe","version":1,"pattern":"cl100k","vocab_size":2,"tokens":["YQ=="],"specials":{"<|endoftext|>":1}}`,
		"pattern":  `{"format":"moe-bpe","version":1,"pattern":"gpt9","tokens":[]}`,
		"base64":   `{"format":"moe-bpe","version":1,"pattern":"cl100k","tokens":["!!"]}`,
		"truncate": `{"format":"moe-bpe","version":1,"pattern":"cl1`,
	}
	for name, body := range cases {
		if _, err := Load(write(name+".json", body)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file loaded")
	}
	for name, body := range map[string]string{
		"empty":    "",
		"nospace":  "YQ==\n",
		"badrank":  "YQ== x\n",
		"badb64":   "!!! 0\n",
		"dup":      "YQ== 0\nYg== 0\n",
		"notbytes": "YQ== 0\n",
	} {
		if _, err := LoadTiktoken(write(name+".tiktoken", body)); err == nil {
			t.Errorf("tiktoken %s: loaded", name)
		}
	}
}

func TestHeapMergeMatchesQuadratic(t *testing.T) {
	tok := mustSample(t)
	text := kjvSample(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200; i++ {
		n := 2 + rng.IntN(shortPiece-1)
		start := rng.IntN(len(text) - n)
		p := text[start : start+n]
		quad := tok.bytePairMerge(nil, p)
		hp := tok.bytePairMergeHeap(nil, p)
		if !slices.Equal(quad, hp) {
			t.Fatalf("piece %q: quadratic %v, heap %v", p, quad, hp)
		}
	}
}

// TestHeapMergeSymsMatchesQuadratic checks that the heap merge of a merges
// vocabulary (long pieces) gives the quadratic merge's symbols, on random
// runs of letters the hand-made vocabularies merge, with and without the
// first merge that changes which later ones apply.
func TestHeapMergeSymsMatchesQuadratic(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, withEL := range []bool{false, true} {
		tok := smallBPE(t, "gpt-2", withEL)
		merged := 0
		for range 300 {
			syms := make([]int32, 2+rng.IntN(shortPiece-1)) // mergeSyms takes up to shortPiece
			for i := range syms {
				syms[i] = tok.byteSym[" helowd"[rng.IntN(7)]]
			}
			quad := tok.mergeSyms(slices.Clone(syms))
			hp := tok.mergeSymsHeap(slices.Clone(syms))
			if !slices.Equal(quad, hp) {
				t.Fatalf("e-l merge %v, symbols %v: quadratic %v, heap %v", withEL, syms, quad, hp)
			}
			if len(hp) < len(syms) {
				merged++
			}
		}
		if merged == 0 {
			t.Fatalf("e-l merge %v: no run merged anything", withEL)
		}
	}
}

func BenchmarkEncodeKJV(b *testing.B) { benchEncodeWarm(b, mustSample(b)) }

// kjvSample returns testdata/kjv_sample.txt, failing tb if it is unreadable.
func kjvSample(tb testing.TB) []byte {
	tb.Helper()
	text, err := os.ReadFile("testdata/kjv_sample.txt")
	if err != nil {
		tb.Fatal(err)
	}
	return text
}

// benchEncodeWarm measures tok.Encode of the KJV sample with the piece
// cache already warm, reporting bytes/s and CPU MB/s.
func benchEncodeWarm(b *testing.B, tok *Tokenizer) {
	text := kjvSample(b)
	tok.Encode(text) // warm the cache
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		tok.Encode(text)
	}
	reportCPU(b, c0, int64(len(text)))
}

func BenchmarkTrainKJV4k(b *testing.B) {
	path := os.Getenv("MOE_BENCH_TEXT") // the whole KJV for the recorded figures
	if path == "" {
		path = "../examples/data/kjv-genesis-exodus.txt"
	}
	text, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	c0 := cpuTime()
	for b.Loop() {
		if _, err := Train(context.Background(), paragraphs(text), 4096); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, c0, int64(len(text)))
}

func TestConcurrentEncode(t *testing.T) {
	tok := mustSample(t)
	text := kjvSample(t)
	want := tok.Encode(text[:30000])
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := tok.Encode(text[:30000]); !slices.Equal(got, want) {
				errs <- "concurrent Encode differs"
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// FuzzLoad feeds arbitrary bytes to Load: it must return a tokenizer or an
// error, never panic, and a loaded tokenizer must round-trip.
func FuzzLoad(f *testing.F) {
	tok, err := Train(context.Background(), func(yield func([]byte) bool) { yield([]byte("hello hello world")) }, MinVocabSize+3)
	if err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(f.TempDir(), FileName)
	if err := tok.Save(path); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add([]byte(`{"format":"moe-bpe","version":1,"pattern":"cl100k","tokens":[],"specials":{"<|endoftext|>":5}}`))
	f.Add([]byte(`{"format":"moe-bpe","version":1,"pattern":"cl100k","tokens":["AA=="],"specials":{"<|endoftext|>":2147483647}}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "t.json")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tk, err := Load(p)
		if err != nil {
			return
		}
		in := []byte("round trip ✓ \xff")
		if got := tk.Decode(tk.Encode(in)); !bytes.Equal(got, in) {
			t.Fatalf("loaded tokenizer does not round-trip: %q", got)
		}
	})
}

func TestEncodeWithSpecialsMatchesNaive(t *testing.T) {
	tok := mustSample(t)
	// naive: repeatedly find the earliest special (longest at a position).
	naive := func(s []byte) []int32 {
		var out []int32
		for len(s) > 0 {
			best, name := -1, ""
			for _, n := range SpecialNames {
				if i := bytes.Index(s, []byte(n)); i >= 0 && (best < 0 || i < best || i == best && len(n) > len(name)) {
					best, name = i, n
				}
			}
			if best < 0 {
				return tok.AppendEncode(out, s)
			}
			out = tok.AppendEncode(out, s[:best])
			id, _ := tok.Special(name)
			out = append(out, id)
			s = s[best+len(name):]
		}
		return out
	}
	rng := rand.New(rand.NewPCG(7, 8))
	parts := []string{"<|", "|>", "<", "end", "<|end|>", "<|endoftext|>", "<|user|>", "text ", "<|<|end|>", "|", "oftext|>"}
	for i := 0; i < 500; i++ {
		var b []byte
		for j := rng.IntN(12); j > 0; j-- {
			b = append(b, parts[rng.IntN(len(parts))]...)
		}
		if got, want := tok.EncodeWithSpecials(b), naive(b); !slices.Equal(got, want) {
			t.Fatalf("EncodeWithSpecials(%q) = %v, naive %v", b, got, want)
		}
	}
}

func TestTrainLongRuns(t *testing.T) {
	// A megabyte of one punctuation character and one of spaces must train
	// quickly and still round-trip.
	docs := func(yield func([]byte) bool) {
		yield(bytes.Repeat([]byte("="), 1<<20))
		yield([]byte(strings.Repeat(" ", 1<<20) + "x"))
		yield([]byte("some ordinary words, some ordinary words"))
	}
	tok, err := Train(context.Background(), docs, 600)
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(strings.Repeat("=", 5000) + " words " + strings.Repeat(" ", 3000))
	ids := tok.Encode(in)
	if !bytes.Equal(tok.Decode(ids), in) {
		t.Fatal("round trip failed")
	}
	if len(ids) > 200 {
		t.Errorf("long runs encode to %d tokens; merges of long runs were not learned", len(ids))
	}
}

func TestTrainBoundedCounting(t *testing.T) {
	text := kjvSample(t)
	full := mustSample(t)
	learned := 1000 - 256 - len(SpecialNames)
	set := func(tok *Tokenizer) map[string]bool {
		m := map[string]bool{}
		for id := int32(256); id < int32(256+learned); id++ {
			m[string(tok.TokenBytes(id))] = true
		}
		return m
	}
	fullSet := set(full)
	// The sample has about 6000 distinct pieces; keep at most 2000 (then
	// 400) while counting.
	for _, c := range []struct{ limit, minShared int }{{2000, 85}, {400, 45}} {
		a, err := train(context.Background(), paragraphs(text), 1000, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		b, err := train(context.Background(), paragraphs(text), 1000, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		for id := int32(0); id < 1000; id++ {
			if !bytes.Equal(a.TokenBytes(id), b.TokenBytes(id)) {
				t.Fatalf("limit %d: pruned training is not deterministic at token %d", c.limit, id)
			}
		}
		shared := 0
		for tok := range set(a) {
			if fullSet[tok] {
				shared++
			}
		}
		t.Logf("limit %d: %d of %d learned tokens shared with unpruned training", c.limit, shared, learned)
		if shared*100 < c.minShared*learned {
			t.Errorf("limit %d: only %d of %d tokens shared", c.limit, shared, learned)
		}
		if got := a.Decode(a.Encode(text)); !bytes.Equal(got, text) {
			t.Fatal("round trip")
		}
	}
}
