package main

import (
	"math"
	"strings"
	"testing"

	"moe/train"
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
	if got := lossText(nan, "no step yet"); got != "no step yet" {
		t.Fatalf("lossText(NaN): %q", got)
	}
	if got := lossText(3.25, "x"); got != "3.2500" {
		t.Fatalf("lossText: %q", got)
	}
}
