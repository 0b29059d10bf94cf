package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/moe-llm/moe/tokenizer"
)

// quiet discards Prepare's logs in tests.
var quiet = slog.New(slog.DiscardHandler)

func TestParseSource(t *testing.T) {
	good := map[string]Source{
		"code=./src@4":       {"code", "./src", 4},
		"kjv.txt":            {"kjv", "kjv.txt", 1},
		"/a/b/chat.jsonl@2":  {"chat", "/a/b/chat.jsonl", 2},
		"x=y=z":              {"x", "y=z", 1},
		"dir/with=eq/file.t": {"file", "dir/with=eq/file.t", 1},
		"foo@bar.txt":        {"foo_bar", "foo@bar.txt", 1},
		"web=data/my dir@10": {"web", "data/my dir", 10},
		"my file.txt":        {"my_file", "my file.txt", 1},
	}
	for spec, want := range good {
		got, err := ParseSource(spec)
		if err != nil || got != want {
			t.Errorf("ParseSource(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	for _, spec := range []string{"", "@3", "f@0", "f@-1", "f@2.5", "name=", "name=@2"} {
		if s, err := ParseSource(spec); err == nil {
			t.Errorf("ParseSource(%q) = %+v, want error", spec, s)
		}
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func collect(t *testing.T, src Source) ([][]byte, Stats, error) {
	t.Helper()
	var docs [][]byte
	st, err := Documents(context.Background(), src, func(d []byte) error {
		docs = append(docs, bytes.Clone(d))
		return nil
	})
	return docs, st, err
}

func TestDocumentsDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.txt"), []byte("alpha\n"))
	writeFile(t, filepath.Join(dir, "sub", "b.go"), []byte("package b\n"))
	writeFile(t, filepath.Join(dir, "sub", "img.png"), []byte("\x89PNG\r\n\x1a\n\x00\x00\x00"))
	writeFile(t, filepath.Join(dir, "sub", "empty.txt"), nil)
	writeFile(t, filepath.Join(dir, ".git", "HEAD"), []byte("ref: x\n"))
	writeFile(t, filepath.Join(dir, "c.jsonl"), []byte("{\"text\":\"one\"}\n\n{\"text\":\"two\",\"id\":3}\n{\"text\":\"\"}\n"))
	docs, st, err := collect(t, Source{Name: "d", Path: dir, Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alpha\n", "one", "two", "package b\n"}
	if len(docs) != len(want) {
		t.Fatalf("docs = %q", docs)
	}
	for i := range want {
		if string(docs[i]) != want[i] {
			t.Fatalf("doc %d = %q, want %q", i, docs[i], want[i])
		}
	}
	if st.Files != 3 || st.Documents != 4 || st.BinarySkipped != 1 || st.EmptySkipped != 2 || st.Bytes != int64(len("alpha\nonetwopackage b\n")) {
		t.Fatalf("stats = %+v", st)
	}
}

func TestDocumentsSplitsLargeFiles(t *testing.T) {
	dir := t.TempDir()
	var book bytes.Buffer
	for ch := 1; book.Len() < 200<<10; ch++ {
		fmt.Fprintf(&book, "Chapter %d\n\n", ch)
		for v := 1; v <= 30; v++ {
			fmt.Fprintf(&book, "  %d And it came to pass that verse %d of chapter %d was written — ünïcode.\n", v, v, ch)
		}
		book.WriteString("\n")
	}
	long := bytes.Repeat([]byte("日本語"), 50000) // one 450 KB line of 3-byte runes
	writeFile(t, filepath.Join(dir, "book.txt"), book.Bytes())
	writeFile(t, filepath.Join(dir, "long.txt"), long)
	for _, c := range []struct {
		name string
		data []byte
	}{{"book.txt", book.Bytes()}, {"long.txt", long}} {
		docs, st, err := collect(t, Source{Name: "x", Path: filepath.Join(dir, c.name), Epochs: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bytes.Join(docs, nil), c.data) {
			t.Fatalf("%s: documents do not concatenate to the file", c.name)
		}
		if len(docs) < len(c.data)/MaxDocBytes || st.Documents != int64(len(docs)) {
			t.Fatalf("%s: %d documents", c.name, len(docs))
		}
		for i, d := range docs {
			if len(d) > MaxDocBytes+64<<10 || !utf8.Valid(d) {
				t.Fatalf("%s: document %d has %d bytes, valid UTF-8 %v", c.name, i, len(d), utf8.Valid(d))
			}
			if c.name == "book.txt" && i < len(docs)-1 && (len(d) < TargetDocBytes || !bytes.HasSuffix(d, []byte("\n\n"))) {
				t.Fatalf("book document %d: %d bytes, ends %q", i, len(d), d[len(d)-10:])
			}
		}
	}
}

func TestDocumentsErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bin", "a.bin"), []byte{0, 1, 2, 3})
	writeFile(t, filepath.Join(dir, "bin", "b.bin"), bytes.Repeat([]byte{0xff, 0x01}, 100))
	writeFile(t, filepath.Join(dir, "empty.txt"), nil)
	writeFile(t, filepath.Join(dir, "trunc.jsonl"), []byte("{\"text\":\"ok\"}\n{\"text\":\"cut off"))
	writeFile(t, filepath.Join(dir, "notext.jsonl"), []byte("{\"text\":\"ok\"}\n{\"body\":\"x\"}\n"))
	writeFile(t, filepath.Join(dir, "nonstring.jsonl"), []byte("{\"text\":5}\n"))
	cases := map[string]string{
		"bin":             "2 binary files skipped",
		"empty.txt":       "no text documents",
		"trunc.jsonl":     "trunc.jsonl:2: truncated",
		"notext.jsonl":    "notext.jsonl:2: no \"text\"",
		"nonstring.jsonl": "nonstring.jsonl:1",
		"missing":         "no such file",
	}
	for name, want := range cases {
		_, _, err := collect(t, Source{Name: "s", Path: filepath.Join(dir, name), Epochs: 1})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, want)
		}
	}
	_, _, err := collect(t, Source{Name: "s", Path: filepath.Join(dir, "bin"), Epochs: 1})
	if !errors.Is(err, ErrNoDocuments) {
		t.Errorf("binary-only: %v does not wrap ErrNoDocuments", err)
	}
	// A callback error stops the walk.
	stop := errors.New("stop")
	if _, err := Documents(context.Background(), Source{Name: "s", Path: filepath.Join(dir, "trunc.jsonl")}, func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("callback error: %v", err)
	}
	// Cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	writeFile(t, filepath.Join(dir, "ok.txt"), []byte("fine\n"))
	if _, err := Documents(ctx, Source{Name: "s", Path: filepath.Join(dir, "ok.txt")}, func([]byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// corpus writes a text source (nText documents) and a code source (nCode
// files) and trains a small tokenizer on them.
// mustPrepare prepares sources with tok into a fresh directory (logging
// to quiet unless opts names a logger) and returns the directory and its
// manifest, failing t on an error.
func mustPrepare(t *testing.T, tok *tokenizer.Tokenizer, opts PrepareOptions, sources ...Source) (string, *Manifest) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	dir := t.TempDir()
	m, err := Prepare(context.Background(), sources, tok, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func corpus(t *testing.T, nText, nCode int) (text, code Source, tok *tokenizer.Tokenizer) {
	t.Helper()
	dir := t.TempDir()
	var jl bytes.Buffer
	var all []string
	for i := 0; i < nText; i++ {
		s := fmt.Sprintf("Text document number %d says hello to the world %d times.", i, i*7)
		b, _ := json.Marshal(map[string]string{"text": s})
		jl.Write(append(b, '\n'))
		all = append(all, s)
	}
	writeFile(t, filepath.Join(dir, "text.jsonl"), jl.Bytes())
	for i := 0; i < nCode; i++ {
		s := fmt.Sprintf("func f%d(x int) int {\n\treturn x * %d\n}\n", i, i+1)
		writeFile(t, filepath.Join(dir, "code", fmt.Sprintf("f%03d.go", i)), []byte(s))
		all = append(all, s)
	}
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) {
		for _, s := range all {
			if !yield([]byte(s)) {
				return
			}
		}
	}, 400)
	if err != nil {
		t.Fatal(err)
	}
	return Source{"text", filepath.Join(dir, "text.jsonl"), 2}, Source{"code", filepath.Join(dir, "code"), 4}, tok
}

// streamPass reads exactly one pass of the train mixture from a fresh loader
// as a token stream.
func streamPass(t *testing.T, l *Loader) []int32 {
	t.Helper()
	return streamTokens(t, l, l.PassTokens())
}

// streamTokens reads the first n tokens of a fresh loader's stream, undoing
// the one-token overlap between consecutive rows.
func streamTokens(t *testing.T, l *Loader, n int64) []int32 {
	t.Helper()
	row := l.seqLen + 1
	var stream []int32
	for int64(len(stream)) < n {
		b, err := l.Next(3)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 3*row {
			t.Fatalf("batch has %d tokens, want %d", len(b), 3*row)
		}
		for r := 0; r < 3; r++ {
			x := b[r*row : (r+1)*row]
			if len(stream) > 0 {
				if x[0] != stream[len(stream)-1] {
					t.Fatalf("row does not start with the previous row's last token")
				}
				x = x[1:]
			}
			stream = append(stream, x...)
		}
	}
	return stream[:n]
}

// docCounts splits a stream at EOT and counts each decoded document.
func docCounts(tok *tokenizer.Tokenizer, stream []int32) map[string]int {
	counts := map[string]int{}
	start := 0
	for i, id := range stream {
		if id == tok.EOT() {
			counts[string(tok.Decode(stream[start:i]))]++
			start = i + 1
		}
	}
	if start != len(stream) {
		counts["<partial>"]++
	}
	return counts
}

func TestMixtureEpochs(t *testing.T) {
	text, code, tok := corpus(t, 12, 5)
	dir, m := mustPrepare(t, tok, PrepareOptions{ShardTokens: 40, Workers: 2}, text, code)
	if len(m.Sources[0].Train.Shards) < 2 {
		t.Fatalf("expected several shards with ShardTokens 40, got %d", len(m.Sources[0].Train.Shards))
	}
	l, err := OpenLoader(dir, SplitTrain, 16, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	stream := streamPass(t, l)
	counts := docCounts(tok, stream)
	if counts["<partial>"] != 0 {
		t.Fatal("pass ended inside a document")
	}
	for d, c := range counts {
		want := 2
		if strings.HasPrefix(d, "func") {
			want = 4
		}
		if c != want {
			t.Errorf("document %q appears %d times per pass, want %d", d, c, want)
		}
	}
	if len(counts) != 17 {
		t.Errorf("%d distinct documents in a pass, want 17", len(counts))
	}
	if l.Epoch() != 0 && l.Tokens() < l.PassTokens() {
		t.Errorf("epoch %d after %d of %d tokens", l.Epoch(), l.Tokens(), l.PassTokens())
	}
	// The next pass has the same counts but a different order.
	l.Reset()
	two := streamTokens(t, l, 2*l.PassTokens())
	if l.Epoch() < 1 {
		t.Errorf("Epoch = %d after two passes", l.Epoch())
	}
	next := two[len(stream):]
	if !slices.Equal(two[:len(stream)], stream) {
		t.Error("Reset did not restart the stream")
	}
	if slices.Equal(next, stream) {
		t.Error("second pass repeats the first pass's order")
	}
	if c := docCounts(tok, next); c["<partial>"] != 0 || len(c) != 17 {
		t.Errorf("second pass: %d distinct documents, partial %d", len(c), c["<partial>"])
	}

	// Same seed, same order; another seed, another order.
	l2, err := OpenLoader(dir, SplitTrain, 16, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if again := streamPass(t, l2); !slices.Equal(again, stream) {
		t.Error("same seed gave a different stream")
	}
	l3, err := OpenLoader(dir, SplitTrain, 16, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if other := streamPass(t, l3); slices.Equal(other, stream) {
		t.Error("different seed gave the same stream")
	}
	// Code epochs are spread over the pass, not bunched at the end.
	first := docCounts(tok, stream[:len(stream)/2])
	codeFirstHalf := 0
	for d, c := range first {
		if strings.HasPrefix(d, "func") {
			codeFirstHalf += c
		}
	}
	if codeFirstHalf < 4 || codeFirstHalf > 16 {
		t.Errorf("%d of 20 code documents in the first half of the pass", codeFirstHalf)
	}
}

func TestValidationSplit(t *testing.T) {
	text, code, tok := corpus(t, 40, 10)
	dir, m := mustPrepare(t, tok, PrepareOptions{ValFraction: 0.25, Seed: 3}, text, code)
	if m.Sources[0].Val.Docs != 10 || m.Sources[1].Val.Docs < 2 || m.Sources[1].Val.Docs > 3 {
		t.Fatalf("val docs = %d, %d", m.Sources[0].Val.Docs, m.Sources[1].Val.Docs)
	}
	val, err := OpenLoader(dir, SplitVal, 8, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer val.Close()
	var vstream []int32
	rows := 0
	for {
		b, err := val.Next(4)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b)%9 != 0 || len(b) == 0 {
			t.Fatalf("val batch of %d tokens", len(b))
		}
		for r := 0; r < len(b)/9; r++ {
			x := b[r*9 : (r+1)*9]
			if rows > 0 {
				x = x[1:]
			}
			vstream = append(vstream, x...)
			rows++
		}
	}
	if _, err := val.Next(1); err != io.EOF {
		t.Fatalf("after the end: %v", err)
	}
	valTokens := m.Tokens(SplitVal)
	if int64(len(vstream)) > valTokens || int64(len(vstream)) < valTokens-8 {
		t.Fatalf("val stream %d tokens of %d", len(vstream), valTokens)
	}
	val.Reset()
	b, err := val.Next(1)
	if err != nil || !slices.Equal(b, vstream[:9]) {
		t.Fatalf("Reset did not restart the val stream: %v", err)
	}
	// No document is in both splits; together they hold every document once.
	train, err := OpenLoader(dir, SplitTrain, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer train.Close()
	tc := docCounts(tok, streamPass(t, train))
	vc := docCounts(tok, vstream)
	delete(vc, "<partial>")
	for d := range vc {
		if tc[d] > 0 {
			t.Errorf("document %q in both splits", d)
		}
	}
	if len(tc)+len(vc) > 50 || len(tc) != 50-int(m.Sources[0].Val.Docs+m.Sources[1].Val.Docs) {
		t.Errorf("train has %d documents, val %d", len(tc), len(vc))
	}
}

func TestLoaderResume(t *testing.T) {
	text, code, tok := corpus(t, 12, 5)
	dir, _ := mustPrepare(t, tok, PrepareOptions{}, text, code)
	a, err := OpenLoader(dir, SplitTrain, 10, 42)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for i := 0; i < 13; i++ {
		if _, err := a.Next(2); err != nil {
			t.Fatal(err)
		}
	}
	js, err := json.Marshal(a.State())
	if err != nil {
		t.Fatal(err)
	}
	var want []int32
	for i := 0; i < 40; i++ { // crosses a pass boundary
		b, err := a.Next(2)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	b, err := OpenLoader(dir, SplitTrain, 10, 42)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var st LoaderState
	if err := json.Unmarshal(js, &st); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(st); err != nil {
		t.Fatal(err)
	}
	var got []int32
	for i := 0; i < 40; i++ {
		x, err := b.Next(2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, x...)
	}
	if !slices.Equal(got, want) {
		t.Fatal("restored loader diverged")
	}
	if b.Epoch() < 1 {
		t.Fatalf("Epoch = %d, expected the test to cross a pass", b.Epoch())
	}
	// States for another seed, sequence length or split are refused.
	c, err := OpenLoader(dir, SplitTrain, 11, 42)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Restore(st); err == nil {
		t.Error("restored a state with another sequence length")
	}
	bad := st
	bad.Cursors = bad.Cursors[:1]
	if err := b.Restore(bad); err == nil {
		t.Error("restored a state with missing cursors")
	}
}

func TestPrepareIdempotent(t *testing.T) {
	text, code, tok := corpus(t, 12, 5)
	dir := t.TempDir()
	var progress bytes.Buffer
	m1, err := Prepare(context.Background(), []Source{text, code}, tok, dir, PrepareOptions{ValFraction: 0.2, Progress: &progress, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "tokenizing") || !strings.Contains(progress.String(), "100%") {
		t.Errorf("progress output %q", progress.String())
	}
	shard := filepath.Join(dir, m1.Sources[0].Train.Shards[0].File)
	info1, _ := os.Stat(shard)
	code.Epochs = 3
	m2, err := Prepare(context.Background(), []Source{text, code}, tok, dir, PrepareOptions{ValFraction: 0.2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	info2, _ := os.Stat(shard)
	if !info1.ModTime().Equal(info2.ModTime()) {
		t.Error("second Prepare rewrote the shards")
	}
	if m2.Sources[1].Epochs != 3 {
		t.Errorf("epochs not updated: %d", m2.Sources[1].Epochs)
	}
	if m3, _ := ReadManifest(dir); m3.Sources[1].Epochs != 3 {
		t.Error("manifest on disk not updated")
	}
	// A different seed re-splits.
	m4, err := Prepare(context.Background(), []Source{text, code}, tok, dir, PrepareOptions{ValFraction: 0.2, Seed: 99, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if m4.Seed != 99 {
		t.Error("seed change ignored")
	}
	// Bad inputs.
	if _, err := Prepare(context.Background(), []Source{text, text}, tok, t.TempDir(), PrepareOptions{Logger: quiet}); err == nil {
		t.Error("duplicate source names accepted")
	}
	if _, err := Prepare(context.Background(), []Source{text}, tok, t.TempDir(), PrepareOptions{ValFraction: 1, Logger: quiet}); err == nil {
		t.Error("val fraction 1 accepted")
	}
	empty := Source{"e", filepath.Join(t.TempDir()), 1}
	odir := t.TempDir()
	if _, err := Prepare(context.Background(), []Source{text, empty}, tok, odir, PrepareOptions{Logger: quiet}); !errors.Is(err, ErrNoDocuments) {
		t.Errorf("empty source: %v", err)
	}
	checkNothingLeft(t, odir, "failed Prepare")
}

// checkNothingLeft fails t if dir holds any file, temporary (dot) files
// included, after what.
func checkNothingLeft(t *testing.T, dir, what string) {
	t.Helper()
	for _, pattern := range []string{"*", ".*"} {
		if left, _ := filepath.Glob(filepath.Join(dir, pattern)); len(left) != 0 {
			t.Errorf("%s left %v", what, left)
		}
	}
}

func TestCorruptShards(t *testing.T) {
	text, code, tok := corpus(t, 12, 5)
	dir, m := mustPrepare(t, tok, PrepareOptions{}, text, code)
	path := filepath.Join(dir, m.Sources[0].Train.Shards[0].File)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mutate := map[string]func([]byte) []byte{
		"checksum":  func(b []byte) []byte { b[len(b)-20] ^= 1; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)-3] },
		"magic":     func(b []byte) []byte { b[0] = 'X'; return b },
		"header":    func(b []byte) []byte { b[17] ^= 1; return b },
		"shorter":   func(b []byte) []byte { return b[:10] },
	}
	for want, f := range mutate {
		writeFile(t, path, f(bytes.Clone(orig)))
		_, err := OpenShard(path)
		if !errors.Is(err, ErrCorruptShard) || !strings.Contains(err.Error(), want) && want != "shorter" {
			t.Errorf("%s: %v", want, err)
		}
		if _, err := OpenLoader(dir, SplitTrain, 8, 0); !errors.Is(err, ErrCorruptShard) {
			t.Errorf("loader over %s shard: %v", want, err)
		}
	}
	writeFile(t, path, orig)
	if _, err := OpenLoader(dir, SplitTrain, 8, 0); err != nil {
		t.Fatalf("restored shard: %v", err)
	}
	os.Remove(path)
	if _, err := OpenLoader(dir, SplitTrain, 8, 0); err == nil {
		t.Error("missing shard accepted")
	}
	if _, err := OpenLoader(t.TempDir(), SplitTrain, 8, 0); err == nil {
		t.Error("directory without manifest accepted")
	}
	if _, err := OpenLoader(dir, "test", 8, 0); err == nil {
		t.Error("unknown split accepted")
	}
}

func TestShardWidthsAndStreaming(t *testing.T) {
	for _, vocab := range []int{300, 1 << 16, 100281} {
		path := filepath.Join(t.TempDir(), "s.tok")
		sw, err := createShard(path, vocab)
		if err != nil {
			t.Fatal(err)
		}
		docs := [][]int32{{0, 1, int32(vocab - 1)}, {5}, {int32(vocab / 2), 7, 7, 7}}
		for _, d := range docs {
			if err := sw.addDoc(d); err != nil {
				t.Fatal(err)
			}
		}
		if err := sw.addDoc([]int32{int32(vocab)}); err == nil {
			t.Fatal("token outside the vocabulary accepted")
		}
		if _, err := sw.close(); err != nil {
			t.Fatal(err)
		}
		info, _ := os.Stat(path)
		if want := int64(shardHeaderSize + 8*TokenWidth(vocab) + 3*8); info.Size() != want {
			t.Fatalf("vocab %d: shard is %d bytes, want %d", vocab, info.Size(), want)
		}
		var s *Shard
		read := func() {
			for i, d := range docs {
				a, b, err := s.DocRange(int64(i))
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.ReadTokens(nil, a, b)
				if err != nil || !slices.Equal(got, d) {
					t.Fatalf("vocab %d doc %d = %v, %v; want %v (mapped %v)", vocab, i, got, err, d, (s.data != nil))
				}
			}
			if _, err := s.ReadTokens(nil, 0, 99); err == nil {
				t.Fatal("out-of-range read accepted")
			}
			if _, _, err := s.DocRange(3); err == nil {
				t.Fatal("out-of-range document accepted")
			}
		}
		for k, open := range []func(string) (*Shard, error){OpenShard, OpenShardMapped} {
			if s, err = open(path); err != nil {
				t.Fatal(err)
			}
			if want := k == 1 && runtime.GOOS == "linux"; (s.data != nil) != want {
				t.Errorf("open %d: mapped = %v, want %v", k, (s.data != nil), want)
			}
			read()
			s.Close()
		}
	}
}

// FuzzOpenShard feeds arbitrary files to OpenShard: each is rejected with an
// ErrCorruptShard error or opens and reads back fully, never panicking.
func FuzzOpenShard(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.tok")
	sw, err := createShard(path, 1000)
	if err != nil {
		f.Fatal(err)
	}
	sw.addDoc([]int32{1, 2, 3})
	sw.addDoc([]int32{999})
	if _, err := sw.close(); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte(shardMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "f.tok")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := OpenShard(p)
		if err != nil {
			if !errors.Is(err, ErrCorruptShard) {
				t.Fatalf("error does not wrap ErrCorruptShard: %v", err)
			}
			return
		}
		defer s.Close()
		for i := int64(0); i < s.Docs(); i++ {
			a, b, err := s.DocRange(i)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.ReadTokens(nil, a, b); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestSmallSourcesSplit(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "one.txt"), []byte("A single short document, the whole corpus.\n"))
	var two bytes.Buffer
	for i := 0; two.Len() < MaxWholeFile+TargetDocBytes+100; i++ {
		fmt.Fprintf(&two, "Paragraph %d of a file that is cut in a few documents.\n\n", i)
	}
	writeFile(t, filepath.Join(dir, "two.txt"), two.Bytes())
	tok, err := TrainTokenizer(context.Background(), []Source{{Name: "two", Path: filepath.Join(dir, "two.txt"), Epochs: 1}}, 300, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []float64{0.001, 0.5, 0.9} {
		for seed := uint64(0); seed < 8; seed++ {
			out := t.TempDir()
			m, err := Prepare(context.Background(), []Source{
				{Name: "one", Path: filepath.Join(dir, "one.txt"), Epochs: 1},
				{Name: "two", Path: filepath.Join(dir, "two.txt"), Epochs: 1},
			}, tok, out, PrepareOptions{ValFraction: f, Seed: seed, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			one, two := m.Sources[0], m.Sources[1]
			if one.Train.Docs != 1 || one.Val.Docs != 0 {
				t.Fatalf("f=%v seed %d: one-document source split %d/%d", f, seed, one.Train.Docs, one.Val.Docs)
			}
			if two.Stats.Documents < 2 || two.Train.Docs < 1 || two.Val.Docs < 1 {
				t.Fatalf("f=%v seed %d: %d-document source split %d/%d", f, seed, two.Stats.Documents, two.Train.Docs, two.Val.Docs)
			}
		}
	}
	out := t.TempDir()
	if _, err := Prepare(context.Background(), []Source{{Name: "one", Path: filepath.Join(dir, "one.txt"), Epochs: 1}},
		tok, out, PrepareOptions{ValFraction: 0.1, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLoader(out, SplitVal, 8, 0); !errors.Is(err, ErrEmptySplit) {
		t.Fatalf("empty val split: %v", err)
	}
	if _, err := OpenLoader(out, SplitVal, 8, 0); err == nil || !strings.Contains(err.Error(), "val") {
		t.Fatalf("error does not name the split: %v", err)
	}
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDocumentsGzip(t *testing.T) {
	dir := t.TempDir()
	var book bytes.Buffer
	for i := 0; book.Len() < 3*MaxWholeFile; i++ {
		fmt.Fprintf(&book, "Verse %d: and the words went on.\n\n", i)
	}
	writeFile(t, filepath.Join(dir, "plain", "book.txt"), book.Bytes())
	writeFile(t, filepath.Join(dir, "gz", "book.txt.gz"), gzipBytes(t, book.Bytes()))
	writeFile(t, filepath.Join(dir, "gz", "small.txt.gz"), gzipBytes(t, []byte("tiny\n\n\nfile\n")))
	writeFile(t, filepath.Join(dir, "gz", "lines.jsonl.gz"), gzipBytes(t, []byte("{\"text\":\"a\"}\n{\"text\":\"b\"}\n")))
	plain, _, err := collect(t, Source{Name: "p", Path: filepath.Join(dir, "plain")})
	if err != nil {
		t.Fatal(err)
	}
	gz, st, err := collect(t, Source{Name: "g", Path: filepath.Join(dir, "gz")})
	if err != nil {
		t.Fatal(err)
	}
	// book.txt.gz, lines.jsonl.gz, small.txt.gz in lexical order.
	if len(gz) != len(plain)+3 || st.Files != 3 {
		t.Fatalf("%d gzip documents (%d files), %d plain", len(gz), st.Files, len(plain))
	}
	for i := range plain {
		if !bytes.Equal(gz[i], plain[i]) {
			t.Fatalf("gzip document %d differs", i)
		}
	}
	if string(gz[len(plain)]) != "a" || string(gz[len(plain)+1]) != "b" || string(gz[len(plain)+2]) != "tiny\n\n\nfile\n" {
		t.Fatalf("tail documents %q", gz[len(plain):])
	}
	full := gzipBytes(t, book.Bytes())
	writeFile(t, filepath.Join(dir, "trunc.txt.gz"), full[:len(full)/2])
	writeFile(t, filepath.Join(dir, "bad.txt.gz"), []byte("not gzip at all"))
	for name, want := range map[string]string{"trunc.txt.gz": "unexpected EOF", "bad.txt.gz": "not a readable gzip file"} {
		if _, _, err := collect(t, Source{Name: "b", Path: filepath.Join(dir, name)}); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Progress counts file bytes, so it ends at the files' total size.
	var seen int64
	if _, err := documents(context.Background(), Source{Name: "g", Path: filepath.Join(dir, "gz")}, func([]byte) error { return nil },
		func(n int64) { seen += n }); err != nil {
		t.Fatal(err)
	}
	if _, size, _ := fingerprint(filepath.Join(dir, "gz")); seen != size {
		t.Errorf("progress reported %d bytes of %d", seen, size)
	}
}

func TestPrepareDeterministicAcrossWorkers(t *testing.T) {
	text, code, tok := corpus(t, 300, 40)
	var files [][]byte
	for _, workers := range []int{1, 3} {
		dir, m := mustPrepare(t, tok, PrepareOptions{ValFraction: 0.1, Workers: workers, batchBytes: 500}, text, code)
		var all []byte
		for _, s := range m.Sources {
			for _, sh := range append(s.Train.Shards, s.Val.Shards...) {
				b, err := os.ReadFile(filepath.Join(dir, sh.File))
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
		}
		files = append(files, all)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("shards differ between 1 and 3 workers")
	}
}

func TestPrepareCancelled(t *testing.T) {
	text, code, tok := corpus(t, 50, 5)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Prepare(ctx, []Source{text, code}, tok, dir, PrepareOptions{Logger: quiet, batchBytes: 100})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Prepare: %v", err)
	}
	checkNothingLeft(t, dir, "cancelled Prepare")
}

func TestLoaderSequenceLengths(t *testing.T) {
	text, code, tok := corpus(t, 7, 3)
	dir, m := mustPrepare(t, tok, PrepareOptions{ValFraction: 0.3}, text, code)
	for _, seqLen := range []int{1, 2, 13, 1000} {
		l, err := OpenLoader(dir, SplitTrain, seqLen, 5)
		if err != nil {
			t.Fatal(err)
		}
		two := streamTokens(t, l, 2*l.PassTokens())
		for pass := 0; pass < 2; pass++ {
			counts := docCounts(tok, two[int64(pass)*l.PassTokens():int64(pass+1)*l.PassTokens()])
			if counts["<partial>"] != 0 {
				t.Fatalf("seq-len %d: pass %d ends inside a document", seqLen, pass)
			}
			for d, c := range counts {
				if want := map[bool]int{true: 4, false: 2}[strings.HasPrefix(d, "func")]; c != want {
					t.Fatalf("seq-len %d pass %d: %q seen %d times, want %d", seqLen, pass, d, c, want)
				}
			}
		}
		l.Close()
	}
	if _, err := OpenLoader(dir, SplitVal, int(m.Tokens(SplitVal)), 0); !errors.Is(err, ErrEmptySplit) {
		t.Errorf("val split shorter than a row: %v", err)
	}
	if l, err := OpenLoader(dir, SplitVal, int(m.Tokens(SplitVal))-1, 0); err != nil {
		t.Errorf("val split of exactly one row: %v", err)
	} else {
		if b, err := l.Next(5); err != nil || int64(len(b)) != m.Tokens(SplitVal) {
			t.Errorf("one-row val split gave %d tokens, %v", len(b), err)
		}
		l.Close()
	}
	if _, err := OpenLoader(dir, SplitTrain, 0, 0); err == nil {
		t.Error("seq-len 0 accepted")
	}
	l, _ := OpenLoader(dir, SplitTrain, 4, 0)
	defer l.Close()
	if _, err := l.Next(0); err == nil {
		t.Error("batch 0 accepted")
	}
}

// FuzzTextDocuments cuts arbitrary text with small document sizes: the
// documents concatenate to the input, none is empty, none exceeds the
// maximum by more than a line, and valid UTF-8 is never cut inside a rune.
func FuzzTextDocuments(f *testing.F) {
	f.Add([]byte("a\n\nb\n\nc\n"), uint8(4), uint8(16))
	f.Add([]byte("日本語日本語日本語日本語"), uint8(1), uint8(5))
	f.Add([]byte("\n\n\n\n"), uint8(1), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, target, maxDoc uint8) {
		tg, mx := int(target%64)+1, int(maxDoc%64)+1
		if len(in) == 0 {
			return
		}
		var docs [][]byte
		var st Stats
		r := &docReader{ctx: context.Background(), st: &st, progress: func(int64) {},
			fn: func(d []byte) error { docs = append(docs, bytes.Clone(d)); return nil }}
		// bufio.NewReaderSize has a minimum size of 16.
		if err := r.textSized(bufio.NewReaderSize(bytes.NewReader(in), 16), false, tg, mx); err != nil {
			t.Fatal(err)
		}
		if got := bytes.Join(docs, nil); !bytes.Equal(got, in) && !(len(docs) == 0 && len(bytes.TrimSpace(in)) == 0) {
			t.Fatalf("documents %q do not concatenate to %q", docs, in)
		}
		for i, d := range docs {
			if len(d) == 0 {
				t.Fatalf("document %d is empty", i)
			}
			if utf8.Valid(in) && !utf8.Valid(d) {
				t.Fatalf("document %d %q cuts a rune", i, d)
			}
		}
	})
}

func TestCorruptManifest(t *testing.T) {
	text, code, tok := corpus(t, 12, 5)
	dir, _ := mustPrepare(t, tok, PrepareOptions{}, text, code)
	path := filepath.Join(dir, ManifestFile)
	orig, _ := os.ReadFile(path)
	edits := map[string][2]string{
		"tokenizer":  {`"tokenizer": "`, `"tokenizer": "zz`},
		"vocabulary": {`"token_bytes": 2`, `"token_bytes": 4`},
		"shard":      {`"file": "text.train.000.tok"`, `"file": "../text.train.000.tok"`},
		"add up":     {`"docs": 12`, `"docs": 13`},
		"version":    {`"version": 1`, `"version": 7`},
	}
	for want, e := range edits {
		if !bytes.Contains(orig, []byte(e[0])) {
			t.Fatalf("manifest lacks %q", e[0])
		}
		writeFile(t, path, bytes.Replace(orig, []byte(e[0]), []byte(e[1]), 1))
		if _, err := OpenLoader(dir, SplitTrain, 8, 0); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
	writeFile(t, path, orig[:len(orig)/2])
	if _, err := OpenLoader(dir, SplitTrain, 8, 0); err == nil {
		t.Error("truncated manifest accepted")
	}
	// Prepare recovers from a broken manifest by preparing again.
	if _, err := Prepare(context.Background(), []Source{text, code}, tok, dir, PrepareOptions{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLoader(dir, SplitTrain, 8, 0); err != nil {
		t.Fatal(err)
	}
}

func TestShardTokenOutsideVocabulary(t *testing.T) {
	// A shard with a valid checksum but a token ≥ its vocabulary size (only
	// a forged file can be like that) is refused on read.
	path := filepath.Join(t.TempDir(), "s.tok")
	sw, err := createShard(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	sw.vocab = 1 << 16 // forge: write a token the header's vocabulary excludes
	if err := sw.addDoc([]int32{5, 4000, 7}); err != nil {
		t.Fatal(err)
	}
	sw.vocab = 1000
	if _, err := sw.close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenShard(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ReadTokens(nil, 0, 1); err != nil {
		t.Fatalf("in-vocabulary token refused: %v", err)
	}
	if _, err := s.ReadTokens(nil, 0, 3); !errors.Is(err, ErrCorruptShard) || !strings.Contains(err.Error(), "4000") {
		t.Fatalf("token 4000 in a 1000-token shard: %v", err)
	}
}

func TestRestoreGarbageNeverPanics(t *testing.T) {
	text, code, tok := corpus(t, 12, 5)
	dir, _ := mustPrepare(t, tok, PrepareOptions{ValFraction: 0.2}, text, code)
	for _, split := range []string{SplitTrain, SplitVal} {
		l, err := OpenLoader(dir, split, 4, 1)
		if err != nil {
			t.Fatal(err)
		}
		l.Next(2)
		good := l.State()
		rng := rand.New(rand.NewPCG(11, 12))
		vals := []int64{-1, 0, 1, 2, 3, 11, 12, 1 << 40, -1 << 40}
		pick := func() int64 { return vals[rng.IntN(len(vals))] }
		for i := 0; i < 500; i++ {
			st := good
			st.Cursors = slices.Clone(good.Cursors)
			switch rng.IntN(6) {
			case 0:
				st.Source = int(pick())
			case 1:
				st.Doc = pick()
			case 2:
				st.Offset = pick()
			case 3:
				c := rng.IntN(len(st.Cursors))
				st.Cursors[c] = Cursor{Epoch: int(pick()), Pos: pick()}
			case 4:
				st.Pass, st.RNG = pick(), uint64(pick())
			case 5:
				st.Carry, st.HasCarry = int32(pick()), true
			}
			if err := l.Restore(st); err != nil {
				continue
			}
			for k := 0; k < 3; k++ {
				b, err := l.Next(2)
				if err != nil {
					break
				}
				for _, id := range b {
					if id < 0 || int(id) >= tok.VocabSize() {
						t.Fatalf("restored state produced token %d outside the vocabulary", id)
					}
				}
			}
		}
		l.Close()
	}
}

// TestLoaderSources checks Loader.Sources: every token of a code document
// (and its end-of-text) is attributed to the code source, every text token
// to the text source, also for the carried token that starts each row and
// across a Restore.
func TestLoaderSources(t *testing.T) {
	text, code, tok := corpus(t, 12, 5)
	dir, _ := mustPrepare(t, tok, PrepareOptions{ShardTokens: 40, Workers: 2}, text, code)
	l, err := OpenLoader(dir, SplitTrain, 16, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var stream []int32
	var srcs []int16
	for b := 0; b < 12; b++ {
		if b == 6 { // a restored loader carries the source of its carry token
			st := l.State()
			l2, err := OpenLoader(dir, SplitTrain, 16, 7)
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			if err := l2.Restore(st); err != nil {
				t.Fatal(err)
			}
			l = l2
		}
		rows, err := l.Next(2)
		if err != nil {
			t.Fatal(err)
		}
		s := l.Sources()
		if len(s) != len(rows) {
			t.Fatalf("%d sources for %d tokens", len(s), len(rows))
		}
		for r := 0; r < 2; r++ {
			row, rs := rows[r*17:(r+1)*17], s[r*17:(r+1)*17]
			if len(stream) > 0 {
				if rs[0] != srcs[len(srcs)-1] || row[0] != stream[len(stream)-1] {
					t.Fatalf("batch %d row %d: carried token %d from source %d, previous row ended %d from %d", b, r, row[0], rs[0], stream[len(stream)-1], srcs[len(srcs)-1])
				}
				row, rs = row[1:], rs[1:]
			}
			stream = append(stream, row...)
			srcs = append(srcs, rs...)
		}
	}
	start, docs, codeDocs := 0, 0, 0
	for i, id := range stream {
		if id != tok.EOT() {
			continue
		}
		want := int16(0)
		if strings.HasPrefix(string(tok.Decode(stream[start:i])), "func") {
			want = 1
			codeDocs++
		}
		for j := start; j <= i; j++ {
			if srcs[j] != want && start > 0 { // the first segment may be a partial document
				t.Fatalf("token %d of document %q attributed to source %d, want %d", j-start, tok.Decode(stream[start:i]), srcs[j], want)
			}
		}
		docs++
		start = i + 1
	}
	if docs < 5 || codeDocs == 0 || codeDocs == docs {
		t.Fatalf("%d documents, %d of them code: the test saw too little", docs, codeDocs)
	}
}
