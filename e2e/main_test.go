// Package e2e drives the moe binary from the outside, only through the
// surface the project's outside contract names (docs/e2e.md): subcommands, flags, exit statuses,
// JSON keys, files in a run directory and the HTTP API. TestMain builds the
// binary once; every test runs it as a subprocess on micro models (d 32–64,
// 1–2 layers, vocabulary 384, context 64) so that the package runs in well
// under a minute on two cores.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// moeBin is the binary TestMain builds; it is set once before any test runs.
var moeBin string

func TestMain(m *testing.M) {
	os.Exit(mainWithBinary(m))
}

// mainWithBinary builds cmd/moe into a temporary directory, runs the tests
// and removes the directory.
func mainWithBinary(m *testing.M) int {
	dir, err := os.MkdirTemp("", "moe-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	moeBin = filepath.Join(dir, "moe")
	if runtime.GOOS == "windows" {
		moeBin += ".exe"
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goCmd, "build", "-o", moeBin, "./cmd/moe")
	build.Dir = ".." // the module root
	// The contract: no flags, no environment, no cgo needed.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/moe: %v\n%s", err, out)
		return 1
	}
	code := m.Run()
	fixtures.cleanup()
	return code
}

// result is one finished moe invocation.
type result struct {
	args   []string
	code   int
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("moe %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, clip(r.stdout), clip(r.stderr))
}

// clip shortens long output for failure messages.
func clip(s string) string {
	if len(s) > 2000 {
		return s[:1000] + "\n...\n" + s[len(s)-1000:]
	}
	return s
}

// moe runs the binary with args and a two-minute limit.
func moe(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, moeBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			t.Fatalf("moe %s: %v (context: %v)", strings.Join(args, " "), err, ctx.Err())
		}
		r.code = ee.ExitCode()
	}
	return r
}

// ok runs moe and fails the test unless it exits 0.
func ok(t testing.TB, args ...string) result {
	t.Helper()
	r := moe(t, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0:\n%v", r)
	}
	return r
}

// usage runs moe and fails the test unless it exits 2 (bad usage).
func usage(t testing.TB, args ...string) result {
	t.Helper()
	r := moe(t, args...)
	if r.code != 2 {
		t.Errorf("want exit 2 (bad usage):\n%v", r)
	}
	return r
}

// fails runs moe and checks the failure contract: exit 1, and stderr is one
// line that contains every one of words (case-insensitive).
func fails(t testing.TB, words []string, args ...string) result {
	t.Helper()
	r := moe(t, args...)
	if r.code != 1 {
		t.Errorf("want exit 1 (failure):\n%v", r)
		return r
	}
	msg := strings.TrimRight(r.stderr, "\n")
	if msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("want a one-line error on stderr:\n%v", r)
	}
	for _, w := range words {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Errorf("error %q does not name %q", msg, w)
		}
	}
	return r
}

// jsonObject parses s as exactly one JSON object, numbers kept as
// json.Number so that a count written as a string is told apart.
func jsonObject(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, clip(s))
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", clip(s))
	}
	return m
}

// number returns key of m as a float64, failing unless it is a JSON number.
func number(t testing.TB, m map[string]any, key string) float64 {
	t.Helper()
	v, present := m[key]
	if !present {
		t.Fatalf("key %q missing from %v", key, keys(m))
	}
	n, isNum := v.(json.Number)
	if !isNum {
		t.Fatalf("key %q is %T %v, want a JSON number", key, v, v)
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
	return f
}

// str returns key of m, failing unless it is a JSON string.
func str(t testing.TB, m map[string]any, key string) string {
	t.Helper()
	v, present := m[key]
	if !present {
		t.Fatalf("key %q missing from %v", key, keys(m))
	}
	s, isStr := v.(string)
	if !isStr {
		t.Fatalf("key %q is %T %v, want a string", key, v, v)
	}
	return s
}

// numbers checks that every key is a JSON number in m.
func numbers(t testing.TB, m map[string]any, ks ...string) {
	t.Helper()
	for _, k := range ks {
		number(t, m, k)
	}
}

// keys lists m's keys, sorted.
func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// testdata returns the absolute path of a file under testdata.
func testdata(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// trainArgs are the flags that make a micro training run take a second.
func trainArgs(extra ...string) []string {
	base := []string{"--seq-len", "32", "--batch", "4", "--eval-every", "10", "--eval-tokens", "512", "--threads", "2", "--quiet"}
	return append(base, extra...)
}

// models holds the trained models several tests share: built on first use,
// removed after the run.
type models struct {
	once  sync.Once
	dir   string
	base  string // micro mixtral, trained 40 steps on the corpus
	draft string // micro dense llama sharing base's tokenizer
	err   string
}

var fixtures models

func (f *models) cleanup() {
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}

// trained returns the shared base and draft run directories.
func trained(t *testing.T) (base, draft string) {
	t.Helper()
	fixtures.once.Do(func() {
		dir, err := os.MkdirTemp("", "moe-e2e-models-")
		if err != nil {
			fixtures.err = err.Error()
			return
		}
		fixtures.dir = dir
		fixtures.base = filepath.Join(dir, "base")
		fixtures.draft = filepath.Join(dir, "draft")
		r := moe(t, append([]string{"train", "--config", testdata(t, "micro.json"), "--data", testdata(t, "corpus.txt"),
			"--out", fixtures.base, "--steps", "40", "--seed", "3"}, trainArgs()...)...)
		if r.code != 0 {
			fixtures.err = r.String()
			return
		}
		r = moe(t, append([]string{"train", "--config", testdata(t, "draft.json"), "--data", testdata(t, "corpus.txt"),
			"--tokenizer", fixtures.base, "--out", fixtures.draft, "--steps", "20", "--seed", "4"}, trainArgs()...)...)
		if r.code != 0 {
			fixtures.err = r.String()
		}
	})
	if fixtures.err != "" {
		t.Fatalf("training the shared models failed:\n%s", fixtures.err)
	}
	return fixtures.base, fixtures.draft
}
