package train

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

// childEnv, when set, makes the test binary run one training job (the JSON
// Options in the variable) instead of the tests: the SIGKILL test's victim.
const childEnv = "MOE_TRAIN_TEST_CHILD"

func TestMain(m *testing.M) {
	if js := os.Getenv(childEnv); js != "" {
		var o Options
		if err := json.Unmarshal([]byte(js), &o); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		o.Out = os.Getenv(childEnv + "_OUT")
		o.Resume = os.Getenv(childEnv+"_RESUME") != "" // Options.Resume is not in its JSON
		if _, err := Run(context.Background(), o, nil, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// microOptions is a run of a ~70k-parameter MoE on the demo corpus that
// takes about a second.
func microOptions(t *testing.T, out string) Options {
	return microOptionsWith(t, out, `"router_aux_loss_coef":0.01`)
}

// microOptionsWith is microOptions with extra config.json fields (the
// routing's) in place of the aux-loss coefficient.
func microOptionsWith(t *testing.T, out, routing string) Options {
	t.Helper()
	cfg := `{"model_type":"mixtral","vocab_size":384,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":32,"rope_theta":10000,"rms_norm_eps":1e-5,
"tie_word_embeddings":true,"num_local_experts":4,"num_experts_per_tok":2,` + routing + `,
"moe_router_z_loss_coef":0.001,"moe_capacity_factor":1.25}`
	dir := t.TempDir()
	cp := filepath.Join(dir, "micro.json")
	if err := os.WriteFile(cp, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "text.txt")
	corpus, err := os.ReadFile("../examples/data/kjv-genesis-exodus.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(text, corpus[:120000], 0o644); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Config, o.Data, o.Out = cp, []string{text}, out
	o.Steps, o.Batch, o.SeqLen, o.BatchTokens = 40, 2, 32, 128 // 2 micro-batches per step
	o.Warmup, o.LR, o.EvalEvery, o.EvalTokens, o.CheckpointEvery = 5, 3e-3, 10, 512, 4
	o.Threads = 2
	return o
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// finalState returns the newest checkpoint's three sections of dir.
func finalState(t *testing.T, dir string) *checkpoint.Checkpoint {
	t.Helper()
	p, err := checkpoint.Latest(dir)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func sameBits(t *testing.T, what string, a, b *checkpoint.Checkpoint) {
	t.Helper()
	if a.Header.Step != b.Header.Step || a.Header.Tokens != b.Header.Tokens {
		t.Fatalf("%s: step/tokens %d/%d vs %d/%d", what, a.Header.Step, a.Header.Tokens, b.Header.Step, b.Header.Tokens)
	}
	for _, name := range []string{checkpoint.SectionWeights, checkpoint.SectionAdamM, checkpoint.SectionAdamV} {
		x, y := a.Section(name), b.Section(name)
		if len(x) != len(y) || len(x) == 0 {
			t.Fatalf("%s: section %s has %d vs %d values", what, name, len(x), len(y))
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s: %s[%d] = %v vs %v: not bit-identical", what, name, i, x[i], y[i])
			}
		}
	}
	if string(a.Header.Loader) != string(b.Header.Loader) {
		t.Fatalf("%s: data positions differ:\n%s\n%s", what, a.Header.Loader, b.Header.Loader)
	}
	// The trainer state, routing telemetry included.
	if string(a.Header.Train) != string(b.Header.Train) {
		t.Fatalf("%s: train states differ:\n%s\n%s", what, a.Header.Train, b.Header.Train)
	}
}

func TestSIGKILLAndResumeIsBitIdentical(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL is POSIX")
	}
	ref := t.TempDir()
	o := microOptions(t, ref)
	sum, err := Run(context.Background(), o, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Step != o.Steps || sum.Stopped != "done" || !(sum.ValLoss < 5.5) {
		t.Fatalf("reference run: %+v", sum)
	}
	want := finalState(t, ref)

	// The same run in a child process, SIGKILLed at random moments after a
	// checkpoint exists, then resumed until it finishes.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(o)
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for attempt := 0; attempt < 3; attempt++ {
		resume := attempt > 0
		oo := o
		oo.Resume = resume
		js, _ = json.Marshal(oo)
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(js), childEnv+"_OUT="+dir)
		if resume {
			cmd.Env = append(cmd.Env, childEnv+"_RESUME=1")
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Wait for a checkpoint newer than those present when the child started.
		before, _ := checkpoint.List(dir)
		deadline := time.Now().Add(60 * time.Second)
		var done bool
		for {
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("child exited: %v\n%s", err, stderr.String())
				}
				done = true
			default:
			}
			if done {
				break
			}
			now, _ := checkpoint.List(dir)
			if len(now) > 0 && (len(before) == 0 || now[0] != before[0]) {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("child made no checkpoint in 60s\n%s", stderr.String())
			}
			time.Sleep(time.Millisecond)
		}
		if done {
			break
		}
		time.Sleep(time.Duration(r.IntN(40)) * time.Millisecond)
		cmd.Process.Kill() // SIGKILL
		if err := <-exited; err == nil {
			continue // it finished before the signal
		}
		kills++
	}
	if kills == 0 {
		t.Fatalf("the child was never killed mid-run; the test did not test anything")
	}
	oo := o
	oo.Resume, oo.Out = true, dir
	sum2, err := Run(context.Background(), oo, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if sum2.Step != o.Steps {
		t.Fatalf("resumed run ended at step %d", sum2.Step)
	}
	t.Logf("killed %d times; resumed run bit-identical check", kills)
	sameBits(t, fmt.Sprintf("after %d SIGKILLs", kills), want, finalState(t, dir))

	// metrics.jsonl reads as one run: every step exactly once.
	recs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != o.Steps {
		t.Fatalf("metrics.jsonl has %d records, want %d", len(recs), o.Steps)
	}
	for i, rc := range recs {
		if rc.Step != i+1 {
			t.Fatalf("metrics record %d has step %d", i, rc.Step)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, LossSVGFile)); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptSavesAndResumesExactly(t *testing.T) {
	o := microOptions(t, "")
	o.Steps = 12
	interruptAndResume(t, o)
}

// TestBatchRampResumesExactly interrupts a run in the middle of its batch
// ramp: the resumed run takes the same step sizes and ends in the same bits,
// and every step's size is the ramp's rule.
func TestBatchRampResumesExactly(t *testing.T) {
	o := microOptions(t, "")
	o.Steps, o.BatchTokensStart, o.BatchTokens, o.BatchRampTokens = 16, 64, 256, 2048
	dir := t.TempDir()
	o.Out = dir
	ck, stoppedAt := interruptAndResumeIn(t, o)
	ramp := BatchRamp{Start: 64, End: 256, Tokens: 2048, Micro: 64}
	recs, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var c int64
	rampEnd := 0
	for i, r := range recs {
		want := ramp.Accum(c) * 64
		if r.BatchTokens != want {
			t.Fatalf("step %d took %d tokens, the ramp says %d", i+1, r.BatchTokens, want)
		}
		if c < ramp.Tokens {
			rampEnd = i + 1
		}
		c += int64(want)
	}
	if ck.Header.Tokens != c || recs[0].BatchTokens != 64 || recs[len(recs)-1].BatchTokens != 256 {
		t.Fatalf("run consumed %d tokens (metrics: %d), first step %d, last %d", ck.Header.Tokens, c, recs[0].BatchTokens, recs[len(recs)-1].BatchTokens)
	}
	if stoppedAt >= rampEnd {
		t.Fatalf("interrupted at step %d, after the ramp ended (step %d): not a mid-ramp resume", stoppedAt, rampEnd)
	}
	t.Logf("interrupted at step %d of a ramp ending at step %d", stoppedAt, rampEnd)
}

func TestBatchRampLongerThanRun(t *testing.T) {
	o := microOptions(t, t.TempDir())
	o.Steps, o.BatchTokensStart, o.BatchTokens, o.BatchRampTokens = 4, 64, 256, 1<<20
	_, err := Run(context.Background(), o, nil, quietLog())
	if err == nil || !strings.Contains(err.Error(), "longer than the run") {
		t.Fatalf("err = %v", err)
	}
	o.BatchTokensStart, o.BatchRampTokens = 512, 100
	if _, err := Run(context.Background(), o, nil, quietLog()); err == nil || !strings.Contains(err.Error(), "batch ramp") {
		t.Fatalf("start above --batch-tokens: err = %v", err)
	}
}

// TestLossFreeBalancingResumesExactly runs sigmoid routing with
// loss-free balancing: the selection biases move during training, are
// saved in the checkpoint's weights, and an interrupted run resumes to the
// same bits.
func TestLossFreeBalancingResumesExactly(t *testing.T) {
	o := microOptionsWith(t, "", `"scoring_func":"sigmoid","topk_method":"noaux_tc","norm_topk_prob":true,
"routed_scaling_factor":1.5,"moe_router_bias_update_rate":0.01`)
	o.Steps = 12
	ck := interruptAndResume(t, o)
	cfg := ck.Header.Config
	if !cfg.HasRouterScoreBias() || !cfg.SigmoidScoring() {
		t.Fatalf("checkpoint config lost the routing: %+v", cfg)
	}
	w, err := model.NewWeights(cfg, ck.Section(checkpoint.SectionWeights))
	if err != nil {
		t.Fatal(err)
	}
	for l, layer := range w.Layers {
		moved := 0
		for _, b := range layer.RouterScoreBias {
			// Sign steps of 0.01 from 0: every bias is a multiple of it.
			if b != 0 {
				moved++
			}
		}
		if len(layer.RouterScoreBias) != 4 || moved == 0 {
			t.Fatalf("layer %d selection biases %v: not saved or never moved", l, layer.RouterScoreBias)
		}
	}
}

// interruptAndResume runs o (in a temporary directory) uninterrupted, then
// again interrupted after five steps, stopped by --max-time and resumed,
// and checks both end in the same bits; it returns the final checkpoint.
func interruptAndResume(t *testing.T, o Options) *checkpoint.Checkpoint {
	t.Helper()
	o.Out = t.TempDir()
	ck, _ := interruptAndResumeIn(t, o)
	return ck
}

// interruptAndResumeIn is interruptAndResume with the interrupted run in
// o.Out; it also returns the step the interruption stopped at.
func interruptAndResumeIn(t *testing.T, o Options) (*checkpoint.Checkpoint, int) {
	t.Helper()
	return interruptAndResumeJob(t, o, Run)
}

// runJob is Run or Finetune.
type runJob func(context.Context, Options, io.Writer, *slog.Logger) (*Summary, error)

// interruptAndResumeJob is interruptAndResumeIn for the job run.
func interruptAndResumeJob(t *testing.T, o Options, run runJob) (*checkpoint.Checkpoint, int) {
	t.Helper()
	dir := o.Out
	ref := t.TempDir()
	o.Out = ref
	if _, err := run(context.Background(), o, nil, quietLog()); err != nil {
		t.Fatal(err)
	}
	want := finalState(t, ref)

	// Ctrl-C after a few steps: a checkpoint of the last whole step is saved.
	o.Out = dir
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if recs, _ := ReadMetrics(filepath.Join(dir, MetricsFile)); len(recs) >= 5 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	sum, err := run(ctx, o, nil, quietLog())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stopped != "interrupted" || sum.Step >= o.Steps || sum.Step < 5 {
		t.Fatalf("interrupted run: %+v", sum)
	}
	ck := finalState(t, dir)
	stoppedAt := sum.Step
	if ck.Header.Step != sum.Step {
		t.Fatalf("checkpoint at step %d, summary says %d", ck.Header.Step, sum.Step)
	}
	// --max-time 1ns stops at once with a checkpoint and no new step.
	o.Resume, o.MaxTime = true, time.Nanosecond
	sum, err = run(context.Background(), o, nil, quietLog())
	if err != nil || sum.Stopped != "max-time" || sum.Step != ck.Header.Step {
		t.Fatalf("max-time run: %+v, %v", sum, err)
	}
	o.MaxTime = 0
	if sum, err = run(context.Background(), o, nil, quietLog()); err != nil || sum.Stopped != "done" {
		t.Fatalf("resumed: %+v, %v", sum, err)
	}
	got := finalState(t, dir)
	sameBits(t, "after Ctrl-C", want, got)
	return got, stoppedAt
}

// TestResumeFromExtendsContext trains a 32-token-context run, then starts
// a new run from it at seq-len 64 with YaRN: the new run's config has the
// longer context and rope_scaling (factor 2 over the original 32), starts
// from the old weights (a 0-step run saves them unchanged and evaluates
// them on 64-token windows), and trains on.
func TestResumeFromExtendsContext(t *testing.T) {
	base := microOptions(t, t.TempDir())
	base.Steps = 4
	if _, err := Run(context.Background(), base, nil, quietLog()); err != nil {
		t.Fatal(err)
	}
	old := finalState(t, base.Out)

	ext := base
	ext.Out, ext.ResumeFrom, ext.SeqLen, ext.RopeScaling, ext.Steps = t.TempDir(), base.Out, 64, config.RopeYaRN, 0
	ext.BatchTokens = 0
	sum, err := Run(context.Background(), ext, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if math.IsNaN(sum.ValLoss) {
		t.Fatal("a 0-step extension reported no validation loss")
	}
	ck := finalState(t, ext.Out)
	cfg := ck.Header.Config
	if cfg.MaxPositionEmbeddings != 64 || cfg.RopeScaling == nil || *cfg.RopeScaling != (config.RopeScaling{Type: config.RopeYaRN, Factor: 2, OriginalMaxPositionEmbeddings: 32}) {
		t.Fatalf("extended config: max %d, rope_scaling %+v", cfg.MaxPositionEmbeddings, cfg.RopeScaling)
	}
	w0, w1 := old.Section(checkpoint.SectionWeights), ck.Section(checkpoint.SectionWeights)
	if !slices.Equal(w0, w1) {
		t.Fatal("the extended run does not start from the old weights")
	}
	ext.Out, ext.Steps = t.TempDir(), 3
	sum, err = Run(context.Background(), ext, nil, quietLog())
	if err != nil || sum.Step != 3 {
		t.Fatalf("extension training: %+v, %v", sum, err)
	}
	bad := ext
	bad.Out, bad.SeqLen = t.TempDir(), 32
	if _, err := Run(context.Background(), bad, nil, quietLog()); err == nil || !strings.Contains(err.Error(), "--rope-scaling") {
		t.Fatalf("rope scaling without a longer context: err = %v", err)
	}
}

// TestBF16ResumesExactly: a --precision bf16 run interrupted and resumed
// ends in the bits of an uninterrupted one, its checkpoint records the
// precision, its weights differ from a float32 run's (the matmuls really
// round their inputs), and resuming it as float32 is refused.
func TestBF16ResumesExactly(t *testing.T) {
	o := microOptions(t, "")
	o.Steps, o.Precision = 12, "bf16"
	ck := interruptAndResume(t, o)
	var ts trainState
	if err := json.Unmarshal(ck.Header.Train, &ts); err != nil || ts.Precision != "bf16" {
		t.Fatalf("checkpoint train state %s (%v): want precision bf16", ck.Header.Train, err)
	}
	f32 := microOptions(t, t.TempDir())
	f32.Steps = 12
	if _, err := Run(context.Background(), f32, nil, quietLog()); err != nil {
		t.Fatal(err)
	}
	weightsDiffer(t, finalState(t, f32.Out), ck, 2)
	f32.Resume, f32.Steps, f32.Precision = true, 14, "bf16"
	if _, err := Run(context.Background(), f32, nil, quietLog()); err == nil || !strings.Contains(err.Error(), "--precision float32") {
		t.Fatalf("resuming a float32 run as bf16: err = %v", err)
	}
	f32.Precision = "fp8"
	if _, err := Run(context.Background(), f32, nil, quietLog()); err == nil || !strings.Contains(err.Error(), "--precision") {
		t.Fatalf("--precision fp8: err = %v", err)
	}
}

// weightsDiffer fails t unless at least 1/frac of the weights of the
// float32 run's checkpoint f32 and the bf16 run's bf differ (the bf16
// matmuls really round their inputs).
func weightsDiffer(t *testing.T, f32, bf *checkpoint.Checkpoint, frac int) {
	t.Helper()
	w32, w16 := f32.Section(checkpoint.SectionWeights), bf.Section(checkpoint.SectionWeights)
	differ := 0
	for i := range w32 {
		if w32[i] != w16[i] {
			differ++
		}
	}
	if differ < len(w32)/frac {
		t.Fatalf("only %d of %d weights differ between float32 and bf16 runs", differ, len(w32))
	}
}

// TestBF16WarnsWithoutKernels: --precision bf16 logs a warning exactly
// where the CPU (or a purego build) lacks the AVX-512 BF16 kernels, and
// trains either way.
func TestBF16WarnsWithoutKernels(t *testing.T) {
	o := microOptions(t, t.TempDir())
	o.Steps, o.Precision, o.EvalEvery = 2, "bf16", 0
	var logs strings.Builder
	sum, err := Run(context.Background(), o, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || sum.Step != 2 {
		t.Fatalf("run: %+v, %v", sum, err)
	}
	warned := strings.Contains(logs.String(), "lacks AVX512_BF16")
	if warned != !compute.HasBF16Kernels() {
		t.Fatalf("warning logged %v, kernels present %v:\n%s", warned, compute.HasBF16Kernels(), logs.String())
	}
}
