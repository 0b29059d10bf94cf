package main

import (
	"math"
	"strings"
	"testing"

	"github.com/moe-llm/moe/train"
)

// TestTrainResumeNothingSaved: `moe train --out NEWDIR --resume` without
// --data says there is nothing to resume in NEWDIR (exit 2), not that
// --data is required.
func TestTrainResumeNothingSaved(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := moeCLI("train", "--out", dir, "--resume")
	if code != 2 || out != "" || !strings.Contains(errs, "nothing to resume in "+dir) || strings.Contains(errs, "--data SOURCE is required") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and 'nothing to resume in %s'", code, out, errs, dir)
	}
	// Without --resume the missing source is still what is reported.
	code, _, errs = moeCLI("train", "--out", dir)
	if code != 2 || !strings.Contains(errs, "--data SOURCE is required") {
		t.Fatalf("no --resume: exit %d, stderr %q", code, errs)
	}
}

// TestSummaryTextWithoutEvaluation: a run stopped before its first
// evaluation (Ctrl-C) says so instead of printing "val loss NaN".
func TestSummaryTextWithoutEvaluation(t *testing.T) {
	nan := math.NaN()
	sum := &train.Summary{TrainLoss: 3.25, ValLoss: nan, ValBitsPerByte: nan}
	if got := valText(sum, true); got != "no evaluation yet" {
		t.Fatalf("valText without evaluation: %q", got)
	}
	sum.ValLoss, sum.ValBitsPerByte = 2.5, 1.25
	if got := valText(sum, true); got != "val loss 2.5000, val bits/byte 1.2500" {
		t.Fatalf("valText with bpb: %q", got)
	}
	if got := valText(sum, false); got != "val loss 2.5000" {
		t.Fatalf("valText: %q", got)
	}
	if got := lossText("train loss", nan, "no step yet"); got != "no step yet" {
		t.Fatalf("lossText(NaN): %q", got)
	}
	if got := lossText("train loss", 3.25, "x"); got != "train loss 3.2500" {
		t.Fatalf("lossText: %q", got)
	}
}

// TestStrayPositionalsRejected: eval, finetune, bench train and bench gemm
// take flags only; a stray word is a one-line usage error (exit 2) naming
// it, checked before any work. train takes positionals as data sources.
func TestStrayPositionalsRejected(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "--model", "R", "--data", "d.txt", "extra"}, `"extra"`},
		{[]string{"eval", "a.txt", "--model", "R", "b.txt"}, `"a.txt" "b.txt"`},
		{[]string{"finetune", "--model", "R", "--data", "c.jsonl", "--out", "R2", "more.jsonl"}, `"more.jsonl"`},
		{[]string{"bench", "train", "--config", "tiny", "5"}, `"5"`},
		{[]string{"bench", "gemm", "--m", "4", "--n", "4", "--k", "4", "64"}, `"64"`},
	} {
		code, out, errs := moeCLI(c.args...)
		if code != 2 || out != "" || !strings.Contains(errs, c.want) || !strings.Contains(errs, "takes flags only") {
			t.Errorf("moe %v: exit %d, stdout %q, stderr %q; want exit 2 naming %s", c.args, code, out, errs, c.want)
		}
		if strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("moe %v: error is not one line: %q", c.args, errs)
		}
	}
	// train still reads positionals as sources: a missing one is named as a
	// data source (exit 1), not rejected as a stray argument.
	code, _, errs := moeCLI("train", "--config", "tiny", "--out", t.TempDir(), "/nonexistent/corpus.txt")
	if code != 1 || !strings.Contains(errs, `data source "/nonexistent/corpus.txt"`) {
		t.Fatalf("train positional source: exit %d, stderr %q", code, errs)
	}
}
