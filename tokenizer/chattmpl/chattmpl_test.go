package chattmpl

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moe-llm/moe/internal/peer"
)

type fixtureCase struct {
	Name string `json:"name"`
	File string `json:"file"`
	BOS  string `json:"bos_token"`
	EOS  string `json:"eos_token"`
}

type fixtures struct {
	Now           string        `json:"now"`
	Templates     []fixtureCase `json:"templates"`
	Conversations []struct {
		Name     string    `json:"name"`
		Messages []Message `json:"messages"`
	} `json:"conversations"`
}

type render struct {
	Text  *string `json:"text"`
	Error string  `json:"error"`
}

func loadFixtures(t *testing.T) (fixtures, map[string]map[string]render) {
	t.Helper()
	return readFixtures(t, "testdata")
}

// readFixtures reads dir's cases.json and expected.json (render.py's).
func readFixtures(t *testing.T, dir string) (fixtures, map[string]map[string]render) {
	t.Helper()
	var f fixtures
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var want map[string]map[string]render
	if b, err = os.ReadFile(filepath.Join(dir, "expected.json")); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	return f, want
}

func parseCase(t *testing.T, dir string, c fixtureCase, now time.Time) (*Template, error) {
	t.Helper()
	path := c.File
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(c.File, string(src), Options{BOS: c.BOS, EOS: c.EOS, Now: func() time.Time { return now }})
}

// compareRenders renders every template of dir's fixtures for every
// conversation, with and without the generation prompt, and demands byte
// identity with jinja2's renders. Where jinja2 failed, Go must fail too,
// with an error naming the template and carrying jinja2's message; with
// lenient, a Go render where jinja2 failed is only logged (the Go engine
// iterates none as empty, say). It returns the names of the templates
// that matched.
func compareRenders(t *testing.T, dir string, lenient bool) []string {
	f, want := readFixtures(t, dir)
	now, err := time.Parse("2006-01-02T15:04:05", f.Now)
	if err != nil {
		t.Fatal(err)
	}
	var matched []string
	for _, c := range f.Templates {
		tm, err := parseCase(t, dir, c, now)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		same := true
		for _, conv := range f.Conversations {
			for _, gen := range []bool{true, false} {
				key := conv.Name + "/nogen"
				if gen {
					key = conv.Name + "/gen"
				}
				exp, ok := want[c.Name][key]
				if !ok {
					t.Fatalf("%s %s: no expected render", c.Name, key)
				}
				got, err := tm.Render(conv.Messages, gen)
				if exp.Text == nil {
					switch {
					case err == nil && lenient:
						t.Logf("%s %s: jinja2 fails (%s), Go renders", c.Name, key, exp.Error)
						same = false
					case err == nil || !strings.Contains(err.Error(), exp.Error) || !strings.Contains(err.Error(), c.File):
						t.Errorf("%s %s: error %v, want one naming %s and saying %q", c.Name, key, err, c.File, exp.Error)
						same = false
					}
					continue
				}
				if err != nil {
					t.Errorf("%s %s: %v", c.Name, key, err)
					same = false
				} else if got != *exp.Text {
					t.Errorf("%s %s: render differs from jinja2\n got: %q\nwant: %q", c.Name, key, got, *exp.Text)
					same = false
				}
			}
		}
		if same {
			matched = append(matched, c.Name)
		}
	}
	return matched
}

// TestRenderMatchesJinja2 demands byte identity with Python jinja2's render
// (testdata/render.py, transformers' environment) for every template and
// conversation, with and without the generation prompt.
func TestRenderMatchesJinja2(t *testing.T) {
	if n := len(compareRenders(t, "testdata", false)); n != 13 {
		t.Errorf("%d of 13 templates match", n)
	}
}

// TestLlamaCppTemplatesMatchJinja2 renders every template llama.cpp keeps
// in models/templates with jinja2 (testdata/render.py, run by python3 with
// jinja2) and with this package, and demands byte identity wherever
// jinja2 renders.
func TestLlamaCppTemplatesMatchJinja2(t *testing.T) {
	root := peer.Root(t, "models/templates")
	py, err := exec.LookPath("python3")
	if err != nil || exec.Command(py, "-c", "import jinja2").Run() != nil {
		t.Skip("needs python3 with jinja2 (Debian: python3-jinja2) on PATH")
	}
	files, err := filepath.Glob(filepath.Join(root, "models", "templates", "*.jinja"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates in %s/models/templates", root)
	}
	var f fixtures
	b, err := os.ReadFile(filepath.Join("testdata", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	f.Templates = nil
	for _, p := range files {
		f.Templates = append(f.Templates, fixtureCase{Name: filepath.Base(p), File: p, BOS: "<s>", EOS: "</s>"})
	}
	dir := t.TempDir()
	if b, err = json.Marshal(f); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cases.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(py, filepath.Join("testdata", "render.py"), dir).CombinedOutput(); err != nil {
		t.Fatalf("render.py: %v\n%s", err, out)
	}
	matched := compareRenders(t, dir, true)
	t.Logf("%d of %d llama.cpp templates render byte-identically to jinja2", len(matched), len(files))
}

func TestEndMarkers(t *testing.T) {
	f, _ := loadFixtures(t)
	want := map[string][]string{
		"mixtral":               {"</s>"},
		"mixtral-v0.1-original": {"</s>"},
		"mistral-nemo":          {"</s>"},
		"qwen2.5":               {"<|im_end|>"},
		"qwen3":                 {"<|im_end|>"},
		"deepseek-v3.1":         {"<｜end▁of▁sentence｜>"},
		"deepseek-v2":           {"<｜end▁of▁sentence｜>"},
		"granite-3.3":           {"<|end_of_text|>"},
		"granite-4.0":           {"<|end_of_text|>"},
		"gpt-oss":               {"<|return|>", "<|call|>"},
		"llama-3.1":             {"<|eot_id|>", "<|eom_id|>"},
		"chatml":                {"<|im_end|>"},
		"olmoe":                 {"<|endoftext|>"},
	}
	for _, c := range f.Templates {
		tm, err := parseCase(t, "testdata", c, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got := tm.EndMarkers(); strings.Join(got, " ") != strings.Join(want[c.Name], " ") {
			t.Errorf("%s: end markers %q, want %q", c.Name, got, want[c.Name])
		}
	}
	moe, err := Parse("moe", Moe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := moe.EndMarkers(); len(got) != 1 || got[0] != "<|end|>" {
		t.Errorf("moe template: end markers %q, want [<|end|>]", got)
	}
}

func TestMoeTemplate(t *testing.T) {
	tm, err := Parse("moe", Moe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tm.Render([]Message{{Role: "system", Content: "s"}, {Role: "user", Content: "u <|end|>"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|system|>s<|end|><|user|>u <|end|><|end|><|assistant|>"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseErrorsNameTheTemplate(t *testing.T) {
	for _, src := range []string{"{% for m in messages %}{{ m.content }}", "{{ messages[0].content ", "", "  \n"} {
		_, err := Parse("model.gguf tokenizer.chat_template", src, Options{})
		if err == nil || !strings.Contains(err.Error(), "model.gguf tokenizer.chat_template") {
			t.Errorf("%q: error %v, want one naming the template", src, err)
		}
	}
	tm, err := Parse("t.jinja", "{{ raise_exception('no tools here') }}", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tm.Render(nil, true); err == nil || !strings.Contains(err.Error(), "t.jinja") || !strings.Contains(err.Error(), "no tools here") {
		t.Errorf("raise_exception: error %v", err)
	}
}

func TestFromTokenizerConfig(t *testing.T) {
	cfg := `{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
		"chat_template": [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}`
	tm, err := FromTokenizerConfig("dir/tokenizer_config.json", []byte(cfg), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tm.Render([]Message{{Role: "user", Content: "x"}}, false)
	if err != nil || got != "<s>x</s>" {
		t.Errorf("render %q, %v; want <s>x</s>", got, err)
	}
	if !strings.Contains(tm.Name(), "default") {
		t.Errorf("name %q does not say which template", tm.Name())
	}
	tm, err = FromTokenizerConfig("c", []byte(`{"eos_token": "</s>"}`), Options{})
	if tm != nil || err != nil {
		t.Errorf("no chat_template: got %v, %v; want nil, nil", tm, err)
	}
	for _, bad := range []string{`{"chat_template": [{"name": "rag", "template": "x"}]}`, `{"chat_template": 3}`, `{`, `{"chat_template": "x", "eos_token": 5}`} {
		if _, err := FromTokenizerConfig("c.json", []byte(bad), Options{}); err == nil || !strings.Contains(err.Error(), "c.json") {
			t.Errorf("%s: error %v, want one naming the file", bad, err)
		}
	}
}

func TestStrftime(t *testing.T) {
	tm := time.Date(2026, time.March, 5, 15, 4, 9, 0, time.UTC)
	if got, want := strftime(tm, "%Y-%m-%d %H:%M:%S %I%p %B %b %A %a %j %y %% %d %q"), "2026-03-05 15:04:09 03PM March Mar Thursday Thu 064 26 % 05 %q"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMoeTemplateRejectsUnknownRoles(t *testing.T) {
	tm, err := Parse("moe", Moe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tm.Render([]Message{{Role: "robot", Content: "x"}}, false); err == nil || !strings.Contains(err.Error(), "robot") {
		t.Errorf("role robot: error %v", err)
	}
}

func TestSaveConfigRoundTrip(t *testing.T) {
	tm, err := Parse("src", "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}", Options{BOS: "<s>", EOS: "</s>"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := SaveConfig(dir, tm); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromTokenizerConfig("saved", data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := back.Render([]Message{{Role: "user", Content: "x"}}, false)
	if err != nil || got != "<s>x</s>" || back.Source() != tm.Source() {
		t.Errorf("round trip: %q, %v, source %q", got, err, back.Source())
	}
}

func TestSetConfigTemplateKeepsOtherFields(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConfigFileName)
	if err := os.WriteFile(path, []byte(`{"tokenizer_class": "X", "eos_token": "<|endoftext|>", "chat_template": "old"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tm, err := Parse("new", "{{ eos_token }}", Options{EOS: "</s>"})
	if err != nil {
		t.Fatal(err)
	}
	if err := SetConfigTemplate(dir, tm); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var doc map[string]string
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["chat_template"] != "{{ eos_token }}" || doc["tokenizer_class"] != "X" || doc["eos_token"] != "<|endoftext|>" {
		t.Errorf("tokenizer_config.json now %v", doc)
	}
	if err := SetConfigTemplate(t.TempDir(), tm); err == nil {
		t.Error("no tokenizer_config.json to update: no error")
	}
}
