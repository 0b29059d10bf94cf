package train

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/checkpoint"
	"github.com/moe-llm/moe/internal/testtok"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

func writeChat(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"Adam", "Eve", "Noah", "Abraham", "Moses"}
	for i := 0; i < n; i++ {
		nm := names[i%len(names)]
		b, _ := json.Marshal(map[string]any{"messages": []map[string]string{
			{"role": "system", "content": "Answer briefly."},
			{"role": "user", "content": "Who is " + nm + "?"},
			{"role": "assistant", "content": nm + " is in Genesis."},
		}})
		fmt.Fprintf(f, "%s\n\n", b)
	}
	f.Close()
	return path
}

func TestLoadChatMasksAssistantTokensOnly(t *testing.T) {
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte("Who is Adam? Adam is in Genesis.")) }, 300)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := LoadChat(writeChat(t, 3), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 3 {
		t.Fatalf("%d conversations, want 3", len(ex))
	}
	asst, _ := tok.Special(tokenizer.Assistant)
	end, _ := tok.Special(tokenizer.End)
	e := ex[0]
	var learned []int32
	for i, id := range e.IDs {
		if e.Targets[i] {
			learned = append(learned, id)
		}
	}
	want := append(tok.Encode([]byte("Adam is in Genesis.")), end)
	if fmt.Sprint(learned) != fmt.Sprint(want) {
		t.Fatalf("trained tokens %v, want the reply and <|end|> %v", learned, want)
	}
	if !e.Targets[len(e.IDs)-1] || e.Targets[indexOf(e.IDs, asst)] {
		t.Fatal("the closing <|end|> must be learned and the <|assistant|> role token must not")
	}
	// A row: targets are the next token where learned, -1 elsewhere.
	T := 8
	tk, tg := make([]int32, T), make([]int32, T)
	n := fillRow(e, tk, tg, tok.EOT())
	cnt := 0
	for i := range tg {
		if tg[i] >= 0 {
			cnt++
			if !e.Targets[i+1] || tg[i] != e.IDs[i+1] {
				t.Fatalf("target %d = %d is wrong", i, tg[i])
			}
		}
	}
	if n != cnt {
		t.Fatalf("fillRow counted %d targets, row has %d", n, cnt)
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(`{"messages":[{"role":"user","content":"hi"}]}`+"\n"), 0o644)
	if _, err := LoadChat(bad, tok, nil); err == nil {
		t.Fatal("a conversation without an assistant turn was accepted")
	}
	os.WriteFile(bad, []byte(`{"messages":[{"role":"wizard","content":"hi"}]}`+"\n"), 0o644)
	if _, err := LoadChat(bad, tok, nil); err == nil {
		t.Fatal("an unknown role was accepted")
	}
}

func indexOf(ids []int32, x int32) int {
	for i, id := range ids {
		if id == x {
			return i
		}
	}
	return -1
}

// chatFinetune trains microOptions' model for steps steps (run: that
// run's options) and returns options that fine-tune it on writeChat's 40
// conversations into a new directory.
func chatFinetune(t *testing.T, steps int) (ft, run Options) {
	t.Helper()
	base := t.TempDir()
	o := microOptions(t, base)
	o.Steps = steps
	if _, err := Run(context.Background(), o, nil, quietLog()); err != nil {
		t.Fatal(err)
	}
	ft = DefaultOptions()
	ft.Config, ft.Data, ft.Out = base, []string{writeChat(t, 40)}, t.TempDir()
	return ft, o
}

func TestFinetuneLearnsReplies(t *testing.T) {
	ft, o := chatFinetune(t, 8)
	ft.Steps, ft.Batch, ft.SeqLen, ft.LR, ft.Warmup, ft.EvalEvery, ft.Threads = 30, 4, 32, 3e-3, 3, 1, 2
	sum, err := Finetune(context.Background(), ft, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetrics(filepath.Join(ft.Out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	first := *recs[0].ValLoss
	if !(sum.ValLoss < first-1) {
		t.Fatalf("val loss on replies %.3f → %.3f: not learning", first, sum.ValLoss)
	}
	if _, _, err := checkpoint.LoadModel(ft.Out); err != nil {
		t.Fatal(err)
	}
	if _, err := tokenizer.Load(filepath.Join(ft.Out, tokenizer.FileName)); err != nil {
		t.Fatal(err)
	}
	// A fresh fine-tune into a directory holding checkpoints (its own or the
	// base run's) is refused, naming the job; a fresh run likewise.
	for _, out := range []string{ft.Out, o.Out} {
		again := ft
		again.Out = out
		if _, err := Finetune(context.Background(), again, nil, quietLog()); err == nil || !strings.Contains(err.Error(), "already holds checkpoints") || !strings.Contains(err.Error(), "continue that fine-tune") {
			t.Fatalf("fresh fine-tune into %s: %v", out, err)
		}
	}
	if _, err := Run(context.Background(), o, nil, quietLog()); err == nil || !strings.Contains(err.Error(), "continue that run") {
		t.Fatalf("fresh run into a run directory: %v", err)
	}
	// The data order resumes exactly.
	b := &chatBatches{ex: make([]ChatExample, 7), B: 3, T: 4, seed: 5}
	for i := range b.ex {
		b.ex[i] = ChatExample{IDs: []int32{int32(i), 1}, Targets: []bool{false, true}}
	}
	tk, tg := make([]int32, 12), make([]int32, 12)
	b.Next(tk, tg)
	st, _ := b.State()
	b.Next(tk, tg)
	want := fmt.Sprint(tk)
	c := &chatBatches{ex: b.ex, B: 3, T: 4, seed: 5}
	if err := c.Restore(st); err != nil {
		t.Fatal(err)
	}
	c.Next(tk, tg)
	if fmt.Sprint(tk) != want {
		t.Fatalf("restored order %v, want %v", tk, want)
	}
}

// TestLoadChatWithModelTemplate masks a ChatML conversation with two
// replies: exactly each reply, its <|im_end|> and the newline the template
// writes after it are learned; the role headers and the other turns are not.
func TestLoadChatWithModelTemplate(t *testing.T) {
	tok := testtok.Bytes(t, "<|im_start|>", "<|im_end|>")
	const chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
	tmpl, err := chattmpl.Parse("chatml", chatml, chattmpl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	b, _ := json.Marshal(map[string]any{"messages": []map[string]string{
		{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
		{"role": "user", "content": "And <|im_end|> 3+3?"}, {"role": "assistant", "content": "6."},
	}})
	os.WriteFile(path, append(b, '\n'), 0o644)
	ex, err := LoadChat(path, tok, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	e := ex[0]
	var all, learned strings.Builder
	for i, id := range e.IDs {
		all.Write(tok.TokenBytes(id))
		if e.Targets[i] {
			learned.Write(tok.TokenBytes(id))
		} else {
			learned.WriteString("_")
		}
	}
	wantAll := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n" +
		"<|im_start|>user\nAnd <|im_end|> 3+3?<|im_end|>\n<|im_start|>assistant\n6.<|im_end|>\n"
	if all.String() != wantAll {
		t.Fatalf("rendered %q, want %q", all.String(), wantAll)
	}
	// The user's "<|im_end|>" stays text: 10 bytes, not one control token.
	ends := 0
	for _, id := range e.IDs {
		if id == 258 {
			ends++
		}
	}
	if ends != 5 {
		t.Fatalf("%d <|im_end|> tokens, want 5 (user text must stay text)", ends)
	}
	// "_" marks an untrained token (all bytes here are single tokens):
	// <|im_start|>, "user", "\n", the user text, <|im_end|>, "\n",
	// <|im_start|>, "assistant\n".
	got := strings.Trim(learned.String(), "_")
	if want := "4<|im_end|>\n" + strings.Repeat("_", 1+4+1+len("And <|im_end|> 3+3?")+1+1+1+len("assistant\n")) + "6.<|im_end|>\n"; got != want {
		t.Fatalf("learned %q, want %q", got, want)
	}
}

// TestUsableChatDropsCutConversations checks that a conversation whose
// assistant tokens all fall past the first T+1 tokens is dropped (it would
// train with loss 0), one cut after an assistant token is kept and counted.
func TestUsableChatDropsCutConversations(t *testing.T) {
	mk := func(n, firstTarget int) ChatExample {
		ex := ChatExample{IDs: make([]int32, n), Targets: make([]bool, n)}
		for i := firstTarget; i < n; i++ {
			ex.Targets[i] = true
		}
		return ex
	}
	all := []ChatExample{mk(6, 3), mk(20, 4), mk(20, 8), mk(20, 7)} // 8: just past the row; 7: its last target
	const T = 7                                                     // a row trains on tokens 1..7
	kept, cut, dropped := usableChat(all, T)
	if len(kept) != 3 || cut != 2 || dropped != 1 {
		t.Errorf("kept %d, cut %d, dropped %d; want 3, 2, 1", len(kept), cut, dropped)
	}
	for _, ex := range kept {
		tok, tgt := make([]int32, T), make([]int32, T)
		if fillRow(ex, tok, tgt, 0) == 0 {
			t.Errorf("a kept conversation trains no token: %+v", ex.Targets)
		}
	}
}

// FuzzLoadChat feeds arbitrary chat JSONL files to LoadChat: no panic, and
// every conversation it accepts has matching ids and targets, in-vocabulary
// ids, and at least one trained (assistant) token.
func FuzzLoadChat(f *testing.F) {
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte("Who is Adam? Adam is in Genesis.")) }, 300)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"messages":[{"role":"user","content":"Who?"},{"role":"assistant","content":"Adam."}]}`,
		"{\"messages\":[{\"role\":\"system\",\"content\":\"x\"},{\"role\":\"user\",\"content\":\"y\"},{\"role\":\"assistant\",\"content\":\"z\"}]}\n\n{\"messages\":[]}",
		`{"messages":[{"role":"wizard","content":"x"}]}`,
		`{"messages":[{"role":"assistant","content":""}]}`,
		`{"messages":null}`, `[1,2]`, `{`, "\n\n",
		`{"messages":[{"role":"user","content":"<|end|><|assistant|>"},{"role":"assistant","content":"\u0000"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(t.TempDir(), "chat.jsonl")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		exs, err := LoadChat(p, tok, nil)
		if err != nil {
			return
		}
		for _, ex := range exs {
			if len(ex.IDs) != len(ex.Targets) {
				t.Fatalf("%d ids, %d targets", len(ex.IDs), len(ex.Targets))
			}
			trained := false
			for i, id := range ex.IDs {
				if id < 0 || int(id) >= tok.VocabSize() {
					t.Fatalf("id %d outside the vocabulary", id)
				}
				trained = trained || ex.Targets[i]
			}
			if !trained {
				t.Fatalf("an accepted conversation trains nothing: %q", s)
			}
		}
	})
}

// TestFinetuneBF16ResumesExactly: a --precision bf16 fine-tune interrupted
// and resumed ends in the bits of an uninterrupted one and records its
// precision; its weights differ from a float32 fine-tune's; a resume
// without --precision continues in bf16 and one with float32 is refused.
func TestFinetuneBF16ResumesExactly(t *testing.T) {
	ft, _ := chatFinetune(t, 4)
	ft.Steps, ft.Batch, ft.SeqLen, ft.LR, ft.Warmup, ft.EvalEvery, ft.CheckpointEvery, ft.Threads = 12, 4, 32, 3e-3, 3, 0, 4, 2
	ft.Precision = "bf16"
	ck, _ := interruptAndResumeJob(t, ft, Finetune)
	if p, err := checkpointPrecision(ck); err != nil || p != "bf16" {
		t.Fatalf("checkpoint precision %q, %v: want bf16", p, err)
	}
	f32 := ft
	f32.Out, f32.Precision = t.TempDir(), ""
	if _, err := Finetune(context.Background(), f32, nil, quietLog()); err != nil {
		t.Fatal(err)
	}
	weightsDiffer(t, finalState(t, f32.Out), ck, 4)
	// Resuming the finished bf16 fine-tune for more steps: without
	// --precision it continues in bf16; --precision float32 is refused.
	more := ft
	more.Out, more.Resume, more.Steps = filepath.Dir(filepath.Clean(ck.Path)), true, 14
	more.Precision = "float32"
	if _, err := Finetune(context.Background(), more, nil, quietLog()); err == nil || !strings.Contains(err.Error(), "--precision bf16") {
		t.Fatalf("resuming a bf16 fine-tune as float32: err = %v", err)
	}
	more.Precision = ""
	if sum, err := Finetune(context.Background(), more, nil, quietLog()); err != nil || sum.Step != 14 {
		t.Fatalf("resume without --precision: %+v, %v", sum, err)
	}
	if p, err := checkpointPrecision(finalState(t, more.Out)); err != nil || p != "bf16" {
		t.Fatalf("resumed checkpoint precision %q, %v: want bf16", p, err)
	}
}
