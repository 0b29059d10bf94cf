package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoTrainsAndContinues runs the README's main command with a short
// budget from the repository root: it must train, checkpoint and report the
// held-out loss, and a second call must continue the same run.
func TestDemoTrainsAndContinues(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "demo")
	args := []string{"demo", "--out", out, "--max-time", "2s", "--threads", "1",
		"--data", filepath.Join(root, demoCorpus)}
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("moe demo: exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "held-out loss") {
		t.Errorf("moe demo printed no held-out loss:\n%s", stdout.String())
	}
	for _, f := range []string{"config.json", "tokenizer.json", "run.json", "metrics.jsonl"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("run directory lacks %s: %v", f, err)
		}
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("second moe demo: exit %d\nstderr: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "held-out loss") {
		t.Errorf("continued demo printed no held-out loss:\n%s", stdout.String())
	}
}

// TestDemoRejectsMissingCorpus checks the error when the corpus is absent.
func TestDemoRejectsMissingCorpus(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"demo", "--out", t.TempDir(), "--data", "/nonexistent/corpus.txt"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "demo corpus") {
		t.Fatalf("exit %d, stderr %q; want 1 and an error naming the demo corpus", code, stderr.String())
	}
}
