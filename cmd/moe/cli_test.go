package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/tokenizer"
)

// cliCase is a command line and how moe must answer it: the exit code and
// a text its stderr contains.
type cliCase struct {
	args []string
	code int
	want string
}

// checkCLI runs moe with prefix followed by each case's arguments and fails
// t unless it exits with the case's code, its stderr contains want, and a
// failure (exit 1) is told in one line.
func checkCLI(t *testing.T, cases []cliCase, prefix ...string) {
	t.Helper()
	for _, c := range cases {
		args := append(slices.Clone(prefix), c.args...)
		code, _, errs := moeCLI(args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("moe %q: exit %d, stderr %q; want exit %d mentioning %q", args, code, errs, c.code, c.want)
		}
		if code == 1 && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("moe %q: error is not one line: %q", args, errs)
		}
	}
}

// TestStrayPositionalsAreUsageErrors: a stray word on the command line of a
// flags-only command is a usage error (exit 2) that names it, not silently
// ignored (`moe export --model R --out f.gguf q4_0` used to write f32).
func TestStrayPositionalsAreUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--model", "R", "--out", "f.gguf", "q4_0"}, `"q4_0"`},
		{[]string{"generate", "--model", "R", "hello"}, `"hello"`},
		{[]string{"generate", "hello", "world", "--model", "R", "--prompt", "x"}, `"hello" "world"`},
		{[]string{"chat", "--model", "R", "hi"}, `"hi"`},
		{[]string{"serve", "--model", "R", "8080"}, `"8080"`},
		{[]string{"bench", "generate", "--config", "tiny", "extra"}, `"extra"`},
		{[]string{"import", "a.gguf", "b.gguf", "--out", "R"}, `"b.gguf"`},
		{[]string{"plan", "tiny", "gpt4"}, "CONFIG"},
	} {
		code, out, errs := moeCLI(c.args...)
		if code != 2 || !strings.Contains(errs, c.want) || out != "" {
			t.Errorf("moe %v: exit %d, stderr %q, stdout %q; want exit 2 naming %s", c.args, code, errs, out, c.want)
		}
		if strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("moe %v: error is not one line: %q", c.args, errs)
		}
	}
}

// TestPlanUnknownGPU: one "moe plan:" prefix and the valid choices named.
func TestPlanUnknownGPU(t *testing.T) {
	code, _, errs := moeCLI("plan", "tiny", "--gpu", "v100")
	want := `moe plan: --gpu: unknown GPU "v100" (want one of a100, h100)` + "\n"
	if code != 2 || errs != want {
		t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, errs, want)
	}
}

// TestExportCheckpointFile: export accepts a checkpoint file inside a run
// directory (as generate, eval and finetune do) and writes the same GGUF as
// for the directory; another kind of file is refused with a clear error.
func TestExportCheckpointFile(t *testing.T) {
	src, _, _ := interchangeRun(t)
	ck, err := checkpoint.Latest(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	fromDir, fromFile := filepath.Join(tmp, "dir.gguf"), filepath.Join(tmp, "file.gguf")
	if code, _, errs := moeCLI("export", "--model", src, "--out", fromDir); code != 0 {
		t.Fatalf("export dir: exit %d: %s", code, errs)
	}
	if code, _, errs := moeCLI("export", "--model", ck, "--out", fromFile); code != 0 {
		t.Fatalf("export %s: exit %d: %s", ck, code, errs)
	}
	a, err := os.ReadFile(fromDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fromFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatalf("export of the checkpoint file (%d bytes) differs from export of its run directory (%d bytes)", len(b), len(a))
	}
	if got := defaultExportName(ck); got != filepath.Base(src) {
		t.Errorf("default name for %s = %q, want the run directory's %q", ck, got, filepath.Base(src))
	}
	if got := defaultExportName("/x/model.v2.gguf"); got != "model.v2" {
		t.Errorf("default name for a .gguf = %q", got)
	}
	other := filepath.Join(src, tokenizer.FileName)
	code, _, errs := moeCLI("export", "--model", other, "--out", filepath.Join(tmp, "x.gguf"))
	if code != 1 || !strings.Contains(errs, "checkpoint file") {
		t.Fatalf("export of %s: exit %d, stderr %q; want exit 1 naming the accepted kinds", other, code, errs)
	}
}

// TestGGUFDeclaresStopTokens: an exported GGUF declares as eos and eot the
// tokens moe generate stops at by default, so llama.cpp stops where moe does.
func TestGGUFDeclaresStopTokens(t *testing.T) {
	src, _, _ := interchangeRun(t)
	out := filepath.Join(t.TempDir(), "m.gguf")
	if code, _, errs := moeCLI("export", "--model", src, "--out", out); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	tok, err := tokenizer.Load(filepath.Join(src, tokenizer.FileName))
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var declared []int32
	for _, key := range []string{"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"} {
		v, ok := f.Get(key)
		if !ok {
			t.Fatalf("%s missing", key)
		}
		id, ok := v.(uint32)
		if !ok {
			t.Fatalf("%s = %v (%T), want a uint32", key, v, v)
		}
		declared = append(declared, int32(id))
	}
	if want := infer.DefaultStopTokens(tok); !slices.Equal(declared, want) {
		t.Fatalf("GGUF eos, eot = %v; moe's default stop tokens are %v", declared, want)
	}
}

// TestGenerateIgnoreEOSFlag: --ignore-eos and its older spelling --ignore-eot
// both keep generation going to --max-tokens.
func TestGenerateIgnoreEOSFlag(t *testing.T) {
	src, _, _ := interchangeRun(t)
	for _, flag := range []string{"--ignore-eos", "--ignore-eot"} {
		code, out, errs := moeCLI("generate", "--model", src, "--prompt", "The cat", "--max-tokens", "6", "--json", flag)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", flag, code, errs)
		}
		var r struct {
			Tokens     int    `json:"tokens"`
			StopReason string `json:"stop_reason"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: %v: %s", flag, err, out)
		}
		if r.Tokens != 6 || r.StopReason != "length" {
			t.Errorf("%s: %d tokens, stop %q; want 6 and length", flag, r.Tokens, r.StopReason)
		}
	}
}

// TestFailuresHaveOnePrefix: a failing command prints one line that starts
// with "moe CMD:" once, not "moe CMD: CMD: ...".
func TestFailuresHaveOnePrefix(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		cmd  string
		args []string
	}{
		{"import", []string{"--in", missing + ".gguf", "--out", filepath.Join(dir, "r")}},
		{"import", []string{"--in", filepath.Join(dir), "--out", filepath.Join(dir, "r")}},
		{"export", []string{"--model", missing, "--out", filepath.Join(dir, "x.gguf")}},
		{"generate", []string{"--model", missing, "--prompt", "x"}},
		{"chat", []string{"--model", missing}},
		{"plan", []string{missing}},
	} {
		code, _, errs := moeCLI(append([]string{c.cmd}, c.args...)...)
		if code != 1 || !strings.HasPrefix(errs, "moe "+c.cmd+": ") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("moe %s %v: exit %d, stderr %q; want exit 1 and one line", c.cmd, c.args, code, errs)
			continue
		}
		if rest := strings.TrimPrefix(errs, "moe "+c.cmd+": "); strings.HasPrefix(rest, c.cmd+":") || strings.HasPrefix(rest, c.cmd+" ") {
			t.Errorf("moe %s: doubled prefix: %q", c.cmd, errs)
		}
	}
}

// TestUsageMessages: range errors say the range and the value; no command at
// all is bad usage with the help on stderr.
func TestUsageMessages(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "tiny", "--gpus", "0"}, "moe plan: --gpus: out of range (want at least 1, got 0)\n"},
		{[]string{"plan", "tiny", "--mfu", "2"}, "moe plan: --mfu: out of range (want in (0, 1], got 2)\n"},
		{[]string{"plan", "tiny", "--batch-tokens", "0"}, "moe plan: --batch-tokens: out of range (want positive, below 1e30, got 0)\n"},
	} {
		code, _, errs := moeCLI(c.args...)
		if code != 2 || errs != c.want {
			t.Errorf("moe %v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
	code, out, errs := moeCLI()
	if code != 2 || out != "" || !strings.Contains(errs, "usage: moe <command>") {
		t.Errorf("moe with no command: exit %d, stdout %q, stderr %q; want exit 2 and the help on stderr", code, out, errs)
	}
	code, out, _ = moeCLI("help")
	if code != 0 || !strings.Contains(out, "usage: moe <command>") {
		t.Errorf("moe help: exit %d, stdout %q", code, out)
	}
}
