package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moe-llm/moe/internal/peer"
)

// familyChat is one family fixture of infer/testdata/family (written by
// benchmarks/gguf/make_family.py with the family's real chat template) and
// the control tokens its vocabulary has, which `moe generate` prints as
// text and chat drops, and what llama-simple prints before a prompt's
// text (the BOS piece where the vocabulary adds BOS, SentencePiece's
// space prefix).
type familyChat struct {
	arch         string
	specials     []string
	promptPrefix string
}

var familyChats = []familyChat{
	{"qwen3moe", []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, ""},
	{"olmoe", []string{"<|endoftext|>"}, ""},
	{"qwen2moe", []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, ""},
	{"granitemoe", []string{"<|endoftext|>", "<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"}, "<|end_of_text|>"},
	{"llama", []string{"<s>", "</s>"}, "<s> "},
	// gpt-oss: chat's harmony reading drops the message structure's
	// tokens; <|constrain|> (rendered, as llama.cpp makes it user-defined)
	// stays as text outside a header.
	{"gpt-oss", []string{"<|endoftext|>", "<|startoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>"}, ""},
	// deepseek2: DeepSeek-V2-Lite-Chat's template over <|endoftext|> as bos
	// and eos (the V3-routing and attn_kv_b variants join the generate and
	// export suites only).
	{"deepseek2", []string{"<|endoftext|>"}, ""},
}

// familyFile returns the absolute path of a family fixture.
func familyFile(t *testing.T, arch, typ string) string {
	t.Helper()
	g, err := filepath.Abs(filepath.Join("..", "infer", "testdata", "family", arch+"-"+typ+".gguf"))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// The conversation every family renders: a system message and two user
// turns around an assistant reply.
var (
	famSystem   = map[string]string{"role": "system", "content": "You are terse."}
	famUser1    = map[string]string{"role": "user", "content": "Hello there"}
	famAnswer1  = map[string]string{"role": "assistant", "content": "Hi. What is it?"}
	famUser2    = map[string]string{"role": "user", "content": "And the other"}
	famOneTurn  = []map[string]string{famSystem, famUser1}
	famTwoTurns = []map[string]string{famSystem, famUser1, famAnswer1, famUser2}
)

// asJSONText is s as it reads back from a JSON string: invalid UTF-8
// (random-weight models write any bytes) becomes U+FFFD, as the server's
// JSON has it.
func asJSONText(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// postJSON posts body to url and decodes the JSON answer into out.
func postJSON(t *testing.T, url string, body, out any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(resp.Body); err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s: %s", url, resp.Status, raw.String())
	}
	if err := json.Unmarshal(raw.Bytes(), out); err != nil {
		t.Fatalf("POST %s: %v: %s", url, err, raw.String())
	}
}

// applyTemplate asks a server (moe's or llama.cpp's) for the prompt text
// of msgs.
func applyTemplate(t *testing.T, base string, msgs []map[string]string) string {
	t.Helper()
	var out struct {
		Prompt *string `json:"prompt"`
	}
	postJSON(t, base+"/apply-template", map[string]any{"messages": msgs}, &out)
	if out.Prompt == nil {
		t.Fatalf("%s/apply-template: no prompt", base)
	}
	return *out.Prompt
}

// chatReply is a greedy chat completion's text.
func chatReply(t *testing.T, base string, msgs []map[string]string, n int) string {
	t.Helper()
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	postJSON(t, base+"/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": n, "temperature": 0}, &out)
	if len(out.Choices) != 1 {
		t.Fatalf("chat completion: %d choices", len(out.Choices))
	}
	return out.Choices[0].Message.Content
}

// completion is a greedy text completion of prompt.
func completion(t *testing.T, base, prompt string, n int) string {
	t.Helper()
	var out struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	postJSON(t, base+"/v1/completions", map[string]any{"prompt": prompt, "max_tokens": n, "temperature": 0}, &out)
	if len(out.Choices) != 1 {
		t.Fatalf("completion: %d choices", len(out.Choices))
	}
	return out.Choices[0].Text
}

// TestFamiliesChatServe drives each family fixture through `moe chat`,
// `moe serve` (/apply-template, /v1/chat/completions, /v1/completions) and
// `moe generate`, greedily: chat's reply is serve's chat completion, and
// both are what generate and the completions endpoint continue the
// rendered prompt with, for one turn and for a conversation with a system
// message and an earlier assistant reply. Where llama.cpp's llama-server is
// built, its /apply-template (--jinja) renders byte-identical prompts, and
// where llama-simple is, it continues the rendered prompts with moe's text.
// (llama-server's own chat and completion endpoints refuse the random
// bytes these models write: "does not match the expected ... format".)
func TestFamiliesChatServe(t *testing.T) {
	server := peer.Bin("llama-server")
	if server == "" {
		t.Log("llama.cpp's llama-server is not built here: templates are not compared with llama.cpp's (set MOE_LLAMA_CPP to a built llama.cpp tree)")
	}
	simple := llamaSimple()
	const n = 12
	for _, fam := range familyChats {
		for _, typ := range []string{"f32", "q8_0"} {
			t.Run(fam.arch+"-"+typ, func(t *testing.T) {
				g := familyFile(t, fam.arch, typ)
				// llama.cpp's peers run the f32 files: with q8_0 weights its
				// f16 intermediate rounding parts from moe's at near-ties.
				server, simple := server, simple
				if typ != "f32" {
					server, simple = "", ""
				}
				srv := startServer(t, "", "--model", g)
				p1 := applyTemplate(t, srv.url, famOneTurn)
				p2 := applyTemplate(t, srv.url, famTwoTurns)
				for _, want := range []string{"You are terse.", "Hello there", "Hi. What is it?", "And the other"} {
					if !strings.Contains(p2, want) {
						t.Fatalf("rendered prompt lacks %q: %q", want, p2)
					}
				}
				if server != "" {
					base := llamaServer(t, server, g)
					for i, msgs := range [][]map[string]string{famOneTurn, famTwoTurns} {
						got := []string{p1, p2}[i]
						if want := applyTemplate(t, base, msgs); got != want {
							t.Errorf("%d-message prompt: moe %q, llama.cpp %q", len(msgs), got, want)
						}
					}
				}

				// One turn: moe chat, the chat endpoint, the completions
				// endpoint and moe generate on the rendered prompt agree.
				cmd := exec.Command(moeBin, "chat", "--model", g, "--system", famSystem["content"], "--temperature", "0", "--max-tokens", fmt.Sprint(n), "--quiet")
				cmd.Stdin = strings.NewReader(famUser1["content"] + "\n")
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("moe chat: %v", err)
				}
				chat := strings.TrimSuffix(string(out), "\n")
				served := chatReply(t, srv.url, famOneTurn, n)
				if served != asJSONText(t, chat) {
					t.Errorf("one turn: moe chat %q, serve's chat completion %q", chat, served)
				}
				for turn, c := range []struct {
					prompt string
					msgs   []map[string]string
				}{{p1, famOneTurn}, {p2, famTwoTurns}} {
					reply := chatReply(t, srv.url, c.msgs, n)
					if comp := completion(t, srv.url, c.prompt, n); comp != reply {
						t.Errorf("turn %d: chat completion %q, completion of the rendered prompt %q", turn+1, reply, comp)
					}
					r := ok(t, "generate", "--model", g, "--prompt", c.prompt, "--max-tokens", fmt.Sprint(n), "--temperature", "0")
					gen := strings.TrimSuffix(r.stdout, "\n")
					if simple != "" {
						// llama-simple prints the prompt's tokens (BOS, and
						// SentencePiece's space prefix at the start and after
						// each special token) and then the same greedy text.
						got := peer.Simple(t, simple, g, n, c.prompt)
						unspaced := func(s string) string { return strings.ReplaceAll(s, " ", "") }
						if !strings.HasSuffix(got, gen) || unspaced(got[:len(got)-len(gen)]) != unspaced(fam.promptPrefix+c.prompt) {
							t.Errorf("turn %d: llama-simple on the rendered prompt %q, moe %q", turn+1, got, fam.promptPrefix+c.prompt+gen)
						}
					}
					for _, s := range fam.specials { // generate prints control tokens, chat drops them
						gen = strings.ReplaceAll(gen, s, "")
					}
					if asJSONText(t, gen) != reply {
						t.Errorf("turn %d: chat completion %q, moe generate on the rendered prompt %q", turn+1, reply, gen)
					}
					t.Logf("%s %s turn %d: %d-byte prompt, reply %q", fam.arch, typ, turn+1, len(c.prompt), reply)
				}
			})
		}
	}
}

// llamaServer starts llama.cpp's llama-server (--jinja) on model and
// returns its base URL; it is stopped when the test ends.
func llamaServer(t *testing.T, bin, model string) string {
	t.Helper()
	port := freePort(t)
	var log bytes.Buffer
	cmd := exec.Command(bin, "-m", model, "--jinja", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "-c", "256", "-t", "1", "--no-webui", "-ctk", "f32", "-ctv", "f32")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("llama-server exited:\n%s", log.String())
		default:
		}
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("llama-server did not become healthy:\n%s", log.String())
		}
	}
}

// TestFamiliesEval runs `moe eval` on each family fixture (f32 and q8_0),
// with moe's windows and with --llama-perplexity, which scores the second
// half of each whole chunk (BOS first where the vocabulary adds it): the
// counts follow from the token count `moe tokenize` gives. Where llama.cpp's
// llama-perplexity is built, its perplexity on the same file and text
// (f32 KV cache) is within 0.5% of moe's.
func TestFamiliesEval(t *testing.T) {
	corpus, err := os.ReadFile(testdata(t, "corpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(corpus[:3000])
	text = text[:strings.LastIndexByte(text, '\n')+1]
	file := writeFile(t, t.TempDir(), "text.txt", text)
	peer := peer.Bin("llama-perplexity")
	if peer == "" {
		t.Log("llama.cpp's llama-perplexity is not built here: moe side only (set MOE_LLAMA_CPP to a built llama.cpp tree)")
	}
	const T = 128
	for _, fam := range familyChats {
		for _, typ := range []string{"f32", "q8_0"} {
			g := familyFile(t, fam.arch, typ)
			win := jsonObject(t, ok(t, "eval", "--model", g, "--data", file, "--seq-len", fmt.Sprint(T), "--json").stdout)
			ppl := jsonObject(t, ok(t, "eval", "--model", g, "--data", file, "--seq-len", fmt.Sprint(T), "--llama-perplexity", "--json").stdout)
			var ids struct {
				IDs []int32 `json:"ids"`
			}
			if err := json.Unmarshal([]byte(ok(t, "tokenize", "--model", g, "--file", file, "--json").stdout), &ids); err != nil {
				t.Fatal(err)
			}
			if got, want := number(t, ppl, "tokens"), float64(len(ids.IDs)/T*(T-T/2-1)); got != want {
				t.Errorf("%s %s: --llama-perplexity scored %v tokens, want %v (%d tokens in chunks of %d)", fam.arch, typ, got, want, len(ids.IDs), T)
			}
			if got := number(t, win, "tokens"); got < float64(len(ids.IDs)-2) || got > float64(len(ids.IDs)+1) {
				t.Errorf("%s %s: eval scored %v tokens of %d", fam.arch, typ, got, len(ids.IDs))
			}
			if peer == "" {
				continue
			}
			want := llamaPerplexity(t, peer, len(ids.IDs)/T, "-m", g, "-f", file, "-c", fmt.Sprint(T), "-b", fmt.Sprint(T), "-t", "2", "-ctk", "f32", "-ctv", "f32")
			got := number(t, ppl, "perplexity")
			t.Logf("%s %s: perplexity moe %.6g, llama.cpp %.6g (%+.3f%%)", fam.arch, typ, got, want, 100*(got/want-1))
			if math.Abs(got/want-1) > 0.005 {
				t.Errorf("%s %s: perplexity moe %.6g, llama.cpp %.6g: more than 0.5%% apart", fam.arch, typ, got, want)
			}
		}
	}
}

// llamaPerplexity runs llama-perplexity with args and returns its
// perplexity over all chunks: the running estimate printed after the last
// chunk ("[20]123.4,", which is also the "Final estimate", a line it omits
// when its standard deviation cancels to a negative number, as at these
// random models' huge losses). Its log is written asynchronously and
// sometimes loses its tail at exit; a run whose estimates stop short of
// chunks is repeated.
func llamaPerplexity(t *testing.T, bin string, chunks int, args ...string) float64 {
	t.Helper()
	var out []byte
	for try := 0; try < 5; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var err error
		out, err = exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
		}
		runs := regexp.MustCompile(`\[(\d+)\]([0-9.]+),`).FindAllStringSubmatch(string(out), -1)
		if len(runs) == 0 || runs[len(runs)-1][1] != strconv.Itoa(chunks) {
			continue
		}
		ppl, err := strconv.ParseFloat(runs[len(runs)-1][2], 64)
		if err != nil {
			t.Fatal(err)
		}
		return ppl
	}
	t.Fatalf("llama-perplexity printed no estimate after chunk %d:\n%s", chunks, out)
	return 0
}

// TestFamiliesFinetune: `moe finetune` takes a GGUF file the training
// model can hold (the Mixtral-layout llama, qwen3moe, olmoe, qwen2moe,
// granitemoe and gpt-oss fixtures) with its own tokenizer
// and chat template: after zero steps the new run directory generates and
// chats exactly as the file does, and a few steps run. A family the
// training model cannot hold is refused with a one-line error naming why.
func TestFamiliesFinetune(t *testing.T) {
	dir := t.TempDir()
	chat := writeFile(t, dir, "chat.jsonl", `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"},{"role":"assistant","content":"Hello the world"}]}`+"\n")
	fails(t, []string{"deepseek2-f32.gguf", "latent attention"}, "finetune", "--model", familyFile(t, "deepseek2", "f32"), "--data", chat, "--out", filepath.Join(dir, "ds2"), "--steps", "1")
	// The Mixtral-layout llama fixture, qwen3moe and olmoe (per-head and
	// full-width q/k norms), qwen2moe (q/k/v biases, gated shared expert)
	// granitemoe (embedding, residual, attention and logit scales) and
	// gpt-oss (biases, sinks, clamped SwiGLU, sliding windows, MXFP4
	// experts decoded).
	for _, arch := range []string{"llama", "qwen3moe", "olmoe", "qwen2moe", "granitemoe", "gpt-oss"} {
		g := familyFile(t, arch, "f32")
		run := filepath.Join(dir, arch+"0")
		seqLen := "256"
		if arch == "gpt-oss" {
			seqLen = "1024" // the harmony template's system preamble is long
		}
		ok(t, "finetune", "--model", g, "--data", chat, "--out", run, "--steps", "0", "--seq-len", seqLen, "--quiet")
		for _, args := range [][]string{{"generate", "--prompt", "Hello the world"}, {"chat", "--system", "Be brief.", "--quiet"}} {
			var outs []string
			for _, m := range []string{g, run} {
				cmd := exec.Command(moeBin, append(append(args[:1:1], "--model", m, "--temperature", "0", "--max-tokens", "12"), args[1:]...)...)
				cmd.Stdin = strings.NewReader("Hello\n")
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s: moe %s --model %s: %v", arch, args[0], m, err)
				}
				outs = append(outs, string(out))
			}
			if outs[0] != outs[1] {
				t.Errorf("%s: moe %s: the GGUF file gives %q, its zero-step fine-tune %q", arch, args[0], outs[0], outs[1])
			}
		}
		ok(t, "finetune", "--model", g, "--data", chat, "--out", filepath.Join(dir, arch+"3"), "--steps", "3", "--seq-len", seqLen, "--quiet")
	}
}
