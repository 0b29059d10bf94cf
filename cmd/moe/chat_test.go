package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/internal/testtok"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// TestChatWithModelTemplate chats with a model that carries a ChatML
// template in its run directory: each turn renders the whole conversation
// with it and reuses the cache of the earlier turns; a template that does
// not parse stops chat with an error naming the file.
func TestChatWithModelTemplate(t *testing.T) {
	tok := testtok.Bytes(t, "<|im_start|>", "<|im_end|>")
	cfg := smallCfg(true)
	cfg.MaxPositionEmbeddings = 256
	dir := writeRunDir(t, cfg, tok, 3)
	tmpl, err := chattmpl.Parse("chatml", "{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", chattmpl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := chattmpl.SaveConfig(dir, tmpl); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	in := strings.NewReader("hello\nand again\n")
	if err := chatLoop(context.Background(), []string{"--model", dir, "--system", "Be brief.", "--max-tokens", "4", "--temperature", "0"}, in, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Fatalf("want 2 replies, got %q", out.String())
	}
	// Turn 1's prompt is the rendered system and user messages; turn 2
	// reuses at least all of it from the cache.
	first := len("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n") - 3*len("<|im_start|>") - 2*len("<|im_end|>") + 5
	re := regexp.MustCompile(`(\d+) of (\d+) prompt tokens reused`)
	m := re.FindAllStringSubmatch(errb.String(), -1)
	if len(m) != 2 {
		t.Fatalf("stats %q", errb.String())
	}
	if p, _ := strconv.Atoi(m[0][2]); p != first {
		t.Errorf("turn 1 prompt has %d tokens, want %d (the rendered template)", p, first)
	}
	if r, _ := strconv.Atoi(m[1][1]); r < first {
		t.Errorf("turn 2 reused %d tokens, want at least turn 1's %d", r, first)
	}
	os.WriteFile(filepath.Join(dir, chattmpl.ConfigFileName), []byte(`{"chat_template": "{% if %}"}`), 0o644)
	err = chatLoop(context.Background(), []string{"--model", dir, "--quiet"}, strings.NewReader("hi\n"), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), chattmpl.ConfigFileName) {
		t.Fatalf("broken template: %v", err)
	}
}

// TestExportKeepsChatTemplate: a run directory carrying its own chat
// template exports it as the GGUF's tokenizer.chat_template, which chat
// then uses from the GGUF.
func TestExportKeepsChatTemplate(t *testing.T) {
	tok := testtok.Bytes(t, "<|im_start|>", "<|im_end|>")
	cfg := smallCfg(false)
	cfg.MaxPositionEmbeddings = 128
	dir := writeRunDir(t, cfg, tok, 2)
	const src = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
	tmpl, err := chattmpl.Parse("chatml", src, chattmpl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := chattmpl.SaveConfig(dir, tmpl); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "m.gguf")
	if code, _, errs := moeCLI("export", "--model", dir, "--out", out, "--allow-inexact"); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := f.Get("tokenizer.chat_template")
	f.Close()
	if v != src {
		t.Fatalf("exported tokenizer.chat_template %q, want the run's %q", v, src)
	}
	m, err := infer.Load(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ids, strs := m.ChatStops(m.Template); !slices.Contains(ids, 258) || len(strs) != 0 {
		t.Fatalf("chat stops of the exported model: %v %q, want <|im_end|> (258)", ids, strs)
	}
	// A Hugging Face export carries it in tokenizer_config.json.
	hf := filepath.Join(t.TempDir(), "hf")
	if code, _, errs := moeCLI("export", "--model", dir, "--out", hf, "--format", "hf", "--allow-inexact"); code != 0 {
		t.Fatalf("export --format hf: exit %d: %s", code, errs)
	}
	back, _, err := infer.ReadChat(hf, tok)
	if err != nil || back == nil || back.Source() != src {
		t.Fatalf("HF export's chat template: %v, %v", back, err)
	}
}
