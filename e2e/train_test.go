package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readMetrics parses RUNDIR/metrics.jsonl, one JSON object per line.
func readMetrics(t *testing.T, run string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		recs = append(recs, jsonObject(t, sc.Text()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkpoints lists RUNDIR's checkpoint files.
func checkpoints(t *testing.T, run string) []string {
	t.Helper()
	ents, err := os.ReadDir(run)
	if err != nil {
		t.Fatal(err)
	}
	var cks []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "checkpoint") {
			cks = append(cks, e.Name())
		}
	}
	return cks
}

// checkRun checks what the contract says a RUNDIR holds after `moe train`
// of steps steps with evaluations every 10.
func checkRun(t *testing.T, run string, steps int) []map[string]any {
	t.Helper()
	for _, f := range []string{"config.json", "metrics.jsonl"} {
		if _, err := os.Stat(filepath.Join(run, f)); err != nil {
			t.Errorf("RUNDIR lacks %s: %v", f, err)
		}
	}
	if len(checkpoints(t, run)) == 0 {
		t.Errorf("RUNDIR %s has no checkpoint files", run)
	}
	tok, _ := filepath.Glob(filepath.Join(run, "tokenizer*"))
	if len(tok) == 0 {
		t.Errorf("RUNDIR %s has no tokenizer", run)
	}
	b, err := os.ReadFile(filepath.Join(run, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := jsonObject(t, string(b))
	if str(t, cfg, "model_type") == "" || number(t, cfg, "vocab_size") <= 0 || number(t, cfg, "hidden_size") <= 0 {
		t.Errorf("RUNDIR config.json: %v", cfg)
	}
	recs := readMetrics(t, run)
	if len(recs) == 0 {
		t.Fatalf("metrics.jsonl is empty")
	}
	evals := 0
	for i, r := range recs {
		numbers(t, r, "step", "tokens", "train_loss", "lr")
		if i > 0 && number(t, r, "step") <= number(t, recs[i-1], "step") {
			t.Errorf("metrics steps not increasing: %v then %v", recs[i-1]["step"], r["step"])
		}
		if _, has := r["val_loss"]; has {
			evals++
			if v := number(t, r, "val_loss"); !(v > 0) || math.IsInf(v, 0) {
				t.Errorf("val_loss %v", v)
			}
		}
	}
	if last := number(t, recs[len(recs)-1], "step"); int(last) != steps {
		t.Errorf("last logged step %v, want %d", last, steps)
	}
	if steps >= 10 && evals == 0 {
		t.Errorf("no record of %d has val_loss (evaluations every 10 steps)", len(recs))
	}
	return recs
}

// sameCheckpoint compares two checkpoint files ignoring their creation time
// stamp and the trailing checksum that covers it.
func sameCheckpoint(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	stamp := regexp.MustCompile(`"created":"[^"]*"`)
	x, y = stamp.ReplaceAll(x, nil), stamp.ReplaceAll(y, nil)
	// The file ends in a checksum that covers the time stamp too.
	if len(x) > 4 && len(y) > 4 {
		x, y = x[:len(x)-4], y[:len(y)-4]
	}
	if bytes.Equal(x, y) {
		return true
	}
	for i := range min(len(x), len(y)) {
		if x[i] != y[i] {
			t.Logf("%s and %s: %d and %d bytes, first difference at byte %d: %q vs %q", a, b, len(x), len(y), i,
				x[max(0, i-40):min(len(x), i+40)], y[max(0, i-40):min(len(y), i+40)])
			break
		}
	}
	return false
}

func TestTrainBaseRun(t *testing.T) {
	base, draft := trained(t)
	recs := checkRun(t, base, 40)
	if first, last := number(t, recs[0], "train_loss"), number(t, recs[len(recs)-1], "train_loss"); !(last < first) {
		t.Errorf("train loss did not fall: %v → %v", first, last)
	}
	checkRun(t, draft, 20)
	// The draft took the target's tokenizer.
	x, _ := os.ReadFile(filepath.Join(base, "tokenizer.json"))
	y, _ := os.ReadFile(filepath.Join(draft, "tokenizer.json"))
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Errorf("--tokenizer RUNDIR: draft's tokenizer.json differs from the target's")
	}
}

func TestTrainSourceForms(t *testing.T) {
	dir := t.TempDir()
	corpus, err := os.ReadFile(testdata(t, "corpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(corpus)
	// A directory read recursively, with a nested folder and a hidden file.
	writeFile(t, dir, "tree/a.txt", text[:12000])
	writeFile(t, dir, "tree/sub/b.txt", text[12000:25000])
	writeFile(t, dir, "tree/sub/deeper/c.md", text[25000:])
	// A .jsonl with a text field per line (and other fields).
	var jl strings.Builder
	for i := 0; i+2000 <= len(text); i += 2000 {
		b, _ := json.Marshal(map[string]any{"id": i, "text": text[i : i+2000], "meta": map[string]any{"src": "kjv"}})
		jl.Write(b)
		jl.WriteByte('\n')
	}
	jsonl := writeFile(t, dir, "docs.jsonl", jl.String())
	micro := testdata(t, "micro.json")
	plain := testdata(t, "corpus.txt")
	for i, src := range [][]string{
		{"--data", plain},
		{"--data", "bible=" + plain},
		{"--data", "bible=" + plain + "@2"},
		{"--data", filepath.Join(dir, "tree")},
		{"--data", jsonl},
		{"--data", "kjv=" + plain + "@3", "--data", "tree=" + filepath.Join(dir, "tree"), "--data", "j=" + jsonl + "@2"},
		{plain, filepath.Join(dir, "tree")}, // positional sources
	} {
		run := filepath.Join(dir, "run"+string(rune('a'+i)))
		args := append([]string{"train", "--config", micro, "--out", run, "--steps", "10"}, src...)
		ok(t, append(args, trainArgs()...)...)
		checkRun(t, run, 10)
	}
	// --vocab-size trains a smaller tokenizer; the model still runs.
	run := filepath.Join(dir, "vocab")
	ok(t, append([]string{"train", "--config", micro, "--data", plain, "--out", run, "--steps", "10", "--vocab-size", "300"}, trainArgs()...)...)
	checkRun(t, run, 10)
	ok(t, "generate", "--model", run, "--prompt", "And God", "--max-tokens", "4")
	// Training into a RUNDIR that already holds a run, without --resume, is refused.
	fails(t, []string{"resume"}, append([]string{"train", "--config", micro, "--data", plain, "--out", run, "--steps", "5"}, trainArgs()...)...)
	// A Hugging Face llama config (no head_dim, no tie_word_embeddings) trains too.
	hf := writeFile(t, dir, "llama.json", `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":32,
"intermediate_size":64,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":384,"max_position_embeddings":64,
"rms_norm_eps":1e-6,"rope_theta":10000.0,"torch_dtype":"bfloat16","bos_token_id":1,"eos_token_id":2}`)
	run = filepath.Join(dir, "llama")
	ok(t, append([]string{"train", "--config", hf, "--data", plain, "--out", run, "--steps", "10"}, trainArgs()...)...)
	checkRun(t, run, 10)
}

func TestTrainResumeIsExact(t *testing.T) {
	dir := t.TempDir()
	micro, plain := testdata(t, "micro.json"), testdata(t, "corpus.txt")
	args := func(out string, extra ...string) []string {
		a := []string{"train", "--config", micro, "--data", plain, "--out", out, "--steps", "60", "--seed", "11",
			"--checkpoint-every", "10", "--batch-tokens", "256"}
		return append(append(a, trainArgs()...), extra...)
	}
	full := filepath.Join(dir, "full")
	ok(t, args(full)...)
	recs := checkRun(t, full, 60)
	if got := number(t, recs[0], "tokens"); got != 256 {
		t.Errorf("--batch-tokens 256: first step counts %v tokens", got)
	}
	want := filepath.Join(full, "checkpoint-00000060.moeckpt")
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("no final checkpoint: %v (have %v)", err, checkpoints(t, full))
	}

	// Stopped by --max-time at once, then resumed.
	part := filepath.Join(dir, "part")
	r := ok(t, args(part, "--max-time", "1ns")...)
	if cks := checkpoints(t, part); len(cks) == 0 {
		t.Fatalf("--max-time left no checkpoint:\n%v", r)
	}
	ok(t, "train", "--out", part, "--resume", "--quiet")
	if !sameCheckpoint(t, want, filepath.Join(part, "checkpoint-00000060.moeckpt")) {
		t.Errorf("--max-time then --resume: final checkpoint differs from the uninterrupted run's")
	}

	// Killed (SIGKILL) after its first checkpoint, then resumed.
	killed := filepath.Join(dir, "killed")
	cmd := exec.Command(moeBin, args(killed)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	finished := false
wait:
	for {
		select {
		case <-exited:
			finished = true
			break wait
		default:
		}
		if m, _ := filepath.Glob(filepath.Join(killed, "checkpoint-*")); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			t.Fatal("no checkpoint within 60 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !finished {
		cmd.Process.Kill()
		<-exited
	}
	if !finished {
		t.Logf("killed at %v", checkpoints(t, killed))
	}
	ok(t, "train", "--out", killed, "--resume", "--quiet")
	if !sameCheckpoint(t, want, filepath.Join(killed, "checkpoint-00000060.moeckpt")) {
		t.Errorf("SIGKILL then --resume: final checkpoint differs from the uninterrupted run's")
	}
	recs = checkRun(t, killed, 60)
	if len(recs) != 60 {
		t.Errorf("resumed metrics.jsonl has %d records, want 60 (one per step)", len(recs))
	}
	// The same weights evaluate the same.
	e1 := jsonObject(t, ok(t, "eval", "--model", full, "--data", plain, "--json").stdout)
	e2 := jsonObject(t, ok(t, "eval", "--model", killed, "--data", plain, "--json").stdout)
	if number(t, e1, "loss") != number(t, e2, "loss") {
		t.Errorf("eval loss %v vs %v after resume", e1["loss"], e2["loss"])
	}
}

func TestTrainInterrupt(t *testing.T) {
	// Ctrl-C stops a run cleanly: exit 0, a checkpoint at the step reached.
	run := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(moeBin, append([]string{"train", "--config", testdata(t, "micro.json"), "--data", testdata(t, "corpus.txt"),
		"--out", run, "--steps", "1000000", "--checkpoint-every", "0"}, trainArgs()...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl")); bytes.Count(b, []byte("\n")) >= 3 {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("train exited early: %v\n%s", err, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			t.Fatalf("no metrics within 60 s")
		}
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGINT: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatal("train did not stop within 30 s of SIGINT")
	}
	recs := readMetrics(t, run)
	last := int(number(t, recs[len(recs)-1], "step"))
	name := fmt.Sprintf("checkpoint-%08d.moeckpt", last)
	if _, err := os.Stat(filepath.Join(run, name)); err != nil {
		t.Errorf("after SIGINT at step %d: no %s (have %v)", last, name, checkpoints(t, run))
	}
	// And it resumes from there.
	ok(t, "train", "--out", run, "--resume", "--steps", strconv.Itoa(last+3), "--quiet")
	if recs := readMetrics(t, run); int(number(t, recs[len(recs)-1], "step")) != last+3 {
		t.Errorf("resume --steps %d ended at step %v", last+3, recs[len(recs)-1]["step"])
	}
}

func TestEval(t *testing.T) {
	base, _ := trained(t)
	plain := testdata(t, "corpus.txt")
	m := jsonObject(t, ok(t, "eval", "--model", base, "--data", plain, "--json").stdout)
	numbers(t, m, "loss", "perplexity", "bits_per_byte", "tokens", "bytes")
	loss, ppl := number(t, m, "loss"), number(t, m, "perplexity")
	if math.Abs(math.Exp(loss)-ppl) > 1e-6*ppl {
		t.Errorf("perplexity %v is not exp(loss %v)", ppl, loss)
	}
	st, _ := os.Stat(plain)
	if got := number(t, m, "bytes"); got != float64(st.Size()) {
		t.Errorf("bytes %v, want the file's %d", got, st.Size())
	}
	// bits per byte = loss (nats) × tokens / bytes / ln 2, give or take the
	// tokens without a prediction.
	bpb := loss * number(t, m, "tokens") / number(t, m, "bytes") / math.Ln2
	if got := number(t, m, "bits_per_byte"); math.Abs(got-bpb) > 0.05*bpb {
		t.Errorf("bits_per_byte %v, want about %v", got, bpb)
	}
	if loss <= 0 || loss > math.Log(384)+0.5 {
		t.Errorf("loss %v out of range for a 384-token vocabulary", loss)
	}
}

// generate runs moe generate --json and returns its object.
func generate(t *testing.T, args ...string) map[string]any {
	t.Helper()
	m := jsonObject(t, ok(t, append([]string{"generate", "--json"}, args...)...).stdout)
	str(t, m, "text")
	numbers(t, m, "tokens", "seconds", "tokens_per_second")
	return m
}

func TestGenerate(t *testing.T) {
	base, draft := trained(t)
	prompts := []string{"And God said", "In the beginning", "x", "The LORD", "Abram"}
	for _, p := range prompts {
		plain := generate(t, "--model", base, "--prompt", p, "--max-tokens", "24", "--temperature", "0")
		if number(t, plain, "tokens") != 24 {
			t.Errorf("--max-tokens 24 gave %v tokens", plain["tokens"])
		}
		for _, k := range []string{"1", "3", "6"} {
			spec := generate(t, "--model", base, "--prompt", p, "--max-tokens", "24", "--temperature", "0", "--draft", draft, "--draft-tokens", k)
			if str(t, spec, "text") != str(t, plain, "text") {
				t.Errorf("prompt %q, draft K=%s: text %q differs from %q without a draft", p, k, spec["text"], plain["text"])
			}
			numbers(t, spec, "proposed", "accepted", "acceptance_rate")
			prop, acc := number(t, spec, "proposed"), number(t, spec, "accepted")
			if acc > prop || prop <= 0 || math.Abs(number(t, spec, "acceptance_rate")-acc/prop) > 1e-9 {
				t.Errorf("draft counts: proposed %v accepted %v rate %v", prop, acc, spec["acceptance_rate"])
			}
		}
		// The human form prints the same text.
		r := ok(t, "generate", "--model", base, "--prompt", p, "--max-tokens", "24", "--temperature", "0")
		if !strings.Contains(r.stdout, str(t, plain, "text")) {
			t.Errorf("plain output %q lacks the --json text %q", r.stdout, plain["text"])
		}
	}
	// Sampling with a seed repeats; the flags are accepted.
	s := []string{"--model", base, "--prompt", "And", "--max-tokens", "16", "--temperature", "0.9", "--top-k", "20", "--top-p", "0.95", "--seed", "9"}
	a, b := generate(t, s...), generate(t, s...)
	if a["text"] != b["text"] {
		t.Errorf("same seed, different samples: %q vs %q", a["text"], b["text"])
	}
	// A prompt longer than the context (64) fails cleanly; so do bad values.
	long := strings.Repeat("And God said, Let there be light. ", 40)
	fails(t, []string{"context"}, "generate", "--model", base, "--prompt", long, "--max-tokens", "4")
	fails(t, []string{"context"}, "generate", "--model", base, "--prompt", long, "--max-tokens", "4", "--draft", draft)
	if r := moe(t, "generate", "--model", base, "--prompt", "x", "--temperature", "-1"); r.code == 0 {
		t.Errorf("negative temperature accepted:\n%v", r)
	}
	// An empty prompt is either refused with a message or generates.
	if r := moe(t, "generate", "--model", base, "--prompt", "", "--max-tokens", "4"); r.code != 0 && strings.TrimSpace(r.stderr) == "" {
		t.Errorf("empty prompt: exit %d with no message", r.code)
	}
	// A draft with another tokenizer is refused.
	other := filepath.Join(t.TempDir(), "other")
	ok(t, append([]string{"train", "--config", testdata(t, "draft.json"), "--data", testdata(t, "corpus.txt"), "--out", other,
		"--steps", "2", "--vocab-size", "300"}, trainArgs()...)...)
	fails(t, []string{"tokenizer"}, "generate", "--model", base, "--prompt", "x", "--draft", other)
}

func TestFinetune(t *testing.T) {
	base, _ := trained(t)
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 40; i++ {
		msgs := []map[string]string{
			{"role": "system", "content": "You answer in one short sentence."},
			{"role": "user", "content": "Who made the heaven and the earth?"},
			{"role": "assistant", "content": "God made the heaven and the earth."},
		}
		if i%2 == 1 {
			msgs = msgs[1:]
		}
		line, _ := json.Marshal(map[string]any{"messages": msgs})
		b.Write(line)
		b.WriteByte('\n')
	}
	chat := writeFile(t, dir, "chat.jsonl", b.String())
	out := filepath.Join(dir, "ft")
	ok(t, "finetune", "--model", base, "--data", chat, "--out", out, "--steps", "8", "--seq-len", "64", "--quiet")
	if len(checkpoints(t, out)) == 0 {
		t.Fatalf("finetune RUNDIR2 has no checkpoint")
	}
	// RUNDIR2 is a model like any other.
	generate(t, "--model", out, "--prompt", "Who made", "--max-tokens", "8", "--temperature", "0")
	numbers(t, jsonObject(t, ok(t, "eval", "--model", out, "--data", testdata(t, "corpus.txt"), "--json").stdout), "loss")
	ok(t, "export", "--model", out, "--out", filepath.Join(dir, "ft.gguf"))
	// A fresh fine-tune into a directory holding checkpoints (the base run's,
	// an older fine-tune's) is refused; --resume continues one.
	fails(t, []string{"resume"}, "finetune", "--model", base, "--data", chat, "--out", base, "--steps", "2", "--quiet")
	fails(t, []string{"resume"}, "finetune", "--model", base, "--data", chat, "--out", out, "--steps", "2", "--quiet")
	ok(t, "finetune", "--model", base, "--data", chat, "--out", out, "--steps", "10", "--seq-len", "64", "--resume", "--quiet")
	if cks := checkpoints(t, out); len(cks) == 0 || cks[len(cks)-1] != "checkpoint-00000010.moeckpt" {
		t.Errorf("finetune --resume --steps 10: checkpoints %v", cks)
	}
	// Malformed chat data fails with the file named.
	bad := writeFile(t, dir, "bad.jsonl", `{"messages":[{"role":"wizard","content":"x"}]}`+"\n")
	fails(t, []string{"bad.jsonl"}, "finetune", "--model", base, "--data", bad, "--out", filepath.Join(dir, "ft2"), "--steps", "2", "--quiet")
}

func TestExportImport(t *testing.T) {
	base, _ := trained(t)
	dir := t.TempDir()
	prompt := []string{"--prompt", "And God said", "--max-tokens", "16", "--temperature", "0"}
	ref := generate(t, append([]string{"--model", base}, prompt...)...)
	plain := testdata(t, "corpus.txt")
	refEval := number(t, jsonObject(t, ok(t, "eval", "--model", base, "--data", plain, "--json").stdout), "loss")
	for _, typ := range []string{"f32", "f16", "q8_0", "q4_0"} {
		g := filepath.Join(dir, typ+".gguf")
		ok(t, "export", "--model", base, "--out", g, "--type", typ)
		b, err := os.ReadFile(g)
		if err != nil || len(b) < 4 || string(b[:4]) != "GGUF" {
			t.Fatalf("%s: not a GGUF file (%v)", g, err)
		}
		// generate and eval straight from the .gguf file.
		got := generate(t, append([]string{"--model", g}, prompt...)...)
		loss := number(t, jsonObject(t, ok(t, "eval", "--model", g, "--data", plain, "--json").stdout), "loss")
		tol := map[string]float64{"f32": 1e-6, "f16": 1e-3, "q8_0": 0.01, "q4_0": 0.1}[typ]
		if math.Abs(loss-refEval) > tol*refEval {
			t.Errorf("%s: eval loss %v vs %v from the run directory", typ, loss, refEval)
		}
		if typ == "f32" && got["text"] != ref["text"] {
			t.Errorf("f32 gguf generates %q, the run directory %q", got["text"], ref["text"])
		}
		// import back (the input as a flag and as a positional) and run it.
		imp := filepath.Join(dir, "imp-"+typ)
		ok(t, "import", "--in", g, "--out", imp)
		ok(t, "import", g, "--out", imp+"-pos")
		back := generate(t, append([]string{"--model", imp}, prompt...)...)
		if back["text"] != got["text"] {
			t.Errorf("%s: imported run generates %q, the gguf %q", typ, back["text"], got["text"])
		}
		if typ == "f32" {
			l2 := number(t, jsonObject(t, ok(t, "eval", "--model", imp, "--data", plain, "--json").stdout), "loss")
			if l2 != loss {
				t.Errorf("f32 round trip: eval loss %v, was %v", l2, loss)
			}
		}
	}
	// Hugging Face safetensors + config.json: out and back in.
	hf := filepath.Join(dir, "hf")
	ok(t, "export", "--model", base, "--out", hf, "--format", "hf")
	for _, f := range []string{"config.json", "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(hf, f)); err != nil {
			t.Errorf("--format hf: %v", err)
		}
	}
	checkPlan(t, filepath.Join(hf, "config.json"))
	ok(t, "import", "--in", hf, "--out", filepath.Join(dir, "imp-hf"))
	if back := generate(t, append([]string{"--model", filepath.Join(dir, "imp-hf")}, prompt...)...); back["text"] != ref["text"] {
		t.Errorf("safetensors round trip generates %q, the run directory %q", back["text"], ref["text"])
	}
	usage(t, "export", "--model", base, "--out", filepath.Join(dir, "x.gguf"), "--type", "q7_k")
	notGGUF := writeFile(t, dir, "junk.gguf", "this is not a gguf file at all")
	if r := moe(t, "generate", "--model", notGGUF, "--prompt", "x"); r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("junk .gguf:\n%v", r)
	}
	fails(t, nil, "import", notGGUF, "--out", filepath.Join(dir, "junk"))
}

func TestBench(t *testing.T) {
	base, draft := trained(t)
	m := jsonObject(t, ok(t, "bench", "gemm", "--m", "64", "--n", "48", "--k", "32", "--threads", "1", "--json").stdout)
	numbers(t, m, "gflops", "seconds", "peak_gflops")
	if number(t, m, "gflops") <= 0 || number(t, m, "peak_gflops") <= 0 {
		t.Errorf("bench gemm: %v", m)
	}
	m = jsonObject(t, ok(t, "bench", "train", "--config", testdata(t, "micro.json"), "--threads", "2", "--json").stdout)
	numbers(t, m, "tokens_per_second", "batch", "seq_len")
	if number(t, m, "tokens_per_second") <= 0 {
		t.Errorf("bench train: %v", m)
	}
	for _, extra := range [][]string{nil, {"--draft", draft}} {
		args := append([]string{"bench", "generate", "--model", base, "--prompt-tokens", "8", "--gen-tokens", "8", "--threads", "2", "--json"}, extra...)
		m = jsonObject(t, ok(t, args...).stdout)
		numbers(t, m, "prefill_tokens_per_second", "decode_tokens_per_second")
	}
}
