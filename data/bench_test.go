package data

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTrainTokenizer(t *testing.T) {
	text, code, _ := corpus(t, 30, 10)
	tok, err := TrainTokenizer(context.Background(), []Source{text, code}, 350, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 350 {
		t.Fatalf("VocabSize = %d", tok.VocabSize())
	}
	in := []byte("func f3(x int) int {\n\treturn x * 4\n}\n")
	if got := tok.Decode(tok.Encode(in)); string(got) != string(in) {
		t.Fatalf("round trip %q", got)
	}
	// A byte budget limits what is read but still trains.
	small, err := TrainTokenizer(context.Background(), []Source{text, code}, 350, 200)
	if err != nil {
		t.Fatal(err)
	}
	if small.VocabSize() >= 350 && slices.Equal(small.Encode(in), tok.Encode(in)) {
		t.Error("a 200-byte budget made the same vocabulary as the whole corpus")
	}
	if _, err := TrainTokenizer(context.Background(), []Source{{Name: "m", Path: filepath.Join(t.TempDir(), "missing"), Epochs: 1}}, 350, 0); err == nil {
		t.Error("missing source accepted")
	}
}

// kjvPath returns the benchmark corpus: $MOE_BENCH_TEXT (the whole King
// James Bible, 4.3 MB, is what the recorded figures used), else the
// repository's own excerpt in examples/data.
func kjvPath(b *testing.B) string {
	if p := os.Getenv("MOE_BENCH_TEXT"); p != "" {
		return p
	}
	b.Log("MOE_BENCH_TEXT is not set: using examples/data/kjv-genesis-exodus.txt")
	return "../examples/data/kjv-genesis-exodus.txt"
}

// BenchmarkPrepareKJV measures Prepare (read, tokenize with a 4096-token
// vocabulary on all cores, write shards) on the 4.3 MB KJV.
func BenchmarkPrepareKJV(b *testing.B) {
	src := Source{Name: "kjv", Path: kjvPath(b), Epochs: 1}
	tok, err := TrainTokenizer(context.Background(), []Source{src}, 4096, 0)
	if err != nil {
		b.Fatal(err)
	}
	info, _ := os.Stat(src.Path)
	b.SetBytes(info.Size())
	for b.Loop() {
		if _, err := Prepare(context.Background(), []Source{src}, tok, b.TempDir(), PrepareOptions{ValFraction: 0.01, Logger: quiet}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoaderNext measures batches of 8×256 tokens from KJV shards.
func BenchmarkLoaderNext(b *testing.B) {
	src := Source{Name: "kjv", Path: kjvPath(b), Epochs: 2}
	tok, err := TrainTokenizer(context.Background(), []Source{src}, 4096, 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if _, err := Prepare(context.Background(), []Source{src}, tok, dir, PrepareOptions{Logger: quiet}); err != nil {
		b.Fatal(err)
	}
	l, err := OpenLoader(dir, SplitTrain, 256, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetBytes(8 * 257 * 4)
	for b.Loop() {
		if _, err := l.Next(8); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrepareLarge prepares the corpus named by $MOE_BENCH_CORPUS (a
// file or directory; skipped when unset) and reports throughput and the peak
// resident memory of the process, to check that memory stays bounded:
//
//	MOE_BENCH_CORPUS=/path/to/corpus go test ./data -run X -bench PrepareLarge -benchtime 1x
func BenchmarkPrepareLarge(b *testing.B) {
	path := os.Getenv("MOE_BENCH_CORPUS")
	if path == "" {
		b.Skip("set MOE_BENCH_CORPUS to a large corpus")
	}
	src := Source{Name: "big", Path: path, Epochs: 1}
	tok, err := TrainTokenizer(context.Background(), []Source{src}, 4096, 8<<20)
	if err != nil {
		b.Fatal(err)
	}
	_, size, err := fingerprint(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		dir := b.TempDir()
		if _, err := Prepare(context.Background(), []Source{src}, tok, dir, PrepareOptions{ValFraction: 0.001, Logger: quiet}); err != nil {
			b.Fatal(err)
		}
		l, err := OpenLoader(dir, SplitTrain, 1024, 1)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 1000; i++ {
			if _, err := l.Next(8); err != nil {
				b.Fatal(err)
			}
		}
		l.Close()
	}
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			for field, metric := range map[string]string{"VmHWM:": "peak-RSS-MiB", "RssAnon:": "anon-RSS-MiB"} {
				if strings.HasPrefix(line, field) {
					var kb float64
					fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, field), "kB")), &kb)
					b.ReportMetric(kb/1024, metric)
				}
			}
		}
	}
}
