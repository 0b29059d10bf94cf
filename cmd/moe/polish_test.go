package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moe/checkpoint"
	"moe/tokenizer"
)

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
