package serve

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestApplyTemplate: POST /apply-template answers {"prompt": TEXT} with
// the text ChatPromptText renders from the request's messages (developer
// as system), 400 on bad messages and 404 without a text template.
func TestApplyTemplate(t *testing.T) {
	render := func(msgs []Message) (string, error) {
		var b strings.Builder
		for _, m := range msgs {
			b.WriteString("[" + m.Role + "]" + m.Content)
		}
		return b.String(), nil
	}
	post := func(url, body string) (int, string) {
		res, err := http.Post(url+"/apply-template", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, string(b)
	}
	ts := startServer(t, &fakeEngine{ctxLen: 64}, Options{ChatPromptText: render})
	code, body := post(ts.url, `{"messages":[{"role":"developer","content":"d"},{"role":"user","content":[{"type":"text","text":"u"}]}]}`)
	var out struct{ Prompt string }
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil || out.Prompt != "[system]d[user]u" {
		t.Errorf("apply-template: %d %s, want the prompt [system]d[user]u", code, body)
	}
	for _, bad := range []string{`{"messages":[]}`, `{"messages":[{"role":"tool","content":"x"}]}`, `{"messages":`} {
		if code, body := post(ts.url, bad); code != 400 {
			t.Errorf("apply-template %s: %d %s, want 400", bad, code, body)
		}
	}
	plain := startServer(t, &fakeEngine{ctxLen: 64}, Options{})
	if code, body := post(plain.url, `{"messages":[{"role":"user","content":"u"}]}`); code != 404 {
		t.Errorf("apply-template without a text template: %d %s, want 404", code, body)
	}
}
