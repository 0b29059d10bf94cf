package serve

import (
	"bufio"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// stalledClient opens a raw TCP connection and sends a POST whose
// Content-Length promises 100 bytes but only part of the body; it returns
// the connection without sending the rest.
func stalledClient(t testing.TB, addr, path string, hdr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: x\r\n"+hdr+"Content-Length: 100\r\n\r\n{\"p"); err != nil {
		t.Fatal(err)
	}
	return c
}

// readCutOff waits for the server to answer and close c, and returns the
// status line (empty when the server closed without answering) and how
// long it took.
func readCutOff(t testing.TB, c net.Conn, limit time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	_, err := io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v (status line %q)", limit, status)
	}
	return strings.TrimSpace(status), time.Since(start)
}

// TestStalledSmallBodyIsCutOff sends headers with Content-Length 100 and
// a partial body: the connection must be answered and closed within the
// body timeout, on the decoding path and on the 401 path, and on paths
// that never read the body.
func TestStalledSmallBodyIsCutOff(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, c := range []struct {
		name, key, path, hdr, want string
	}{
		{"completions", "", "/v1/completions", "", "408"},
		{"chat", "", "/v1/chat/completions", "", "408"},
		{"no key", "sekret", "/v1/completions", "", "401"},
		{"wrong key", "sekret", "/v1/completions", "Authorization: Bearer nope\r\n", "401"},
		{"right key", "sekret", "/v1/completions", "Authorization: Bearer sekret\r\n", "408"},
		{"health", "", "/health", "", "405"},
		{"not found", "", "/nothing", "", "404"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := startServer(t, &fakeEngine{ctxLen: 32}, Options{APIKey: c.key, BodyTimeout: timeout})
			conn := stalledClient(t, strings.TrimPrefix(ts.url, "http://"), c.path, c.hdr)
			defer conn.Close()
			status, d := readCutOff(t, conn, 5*time.Second)
			if !strings.Contains(status, " "+c.want+" ") {
				t.Errorf("status line %q, want %s", status, c.want)
			}
			if d > timeout+time.Second {
				t.Errorf("cut off after %v, body timeout %v", d, timeout)
			}
		})
	}
}

// TestStalledClientsDoNotLockOut opens many stalled connections, more than
// the connection cap: a real client keeps being served once the stalled
// ones are cut off, the excess is refused with 503 at once, and /metrics
// counts the refusals.
func TestStalledClientsDoNotLockOut(t *testing.T) {
	const timeout = time.Second // margin for a loaded machine: the cap must still be full when the extra one connects
	ts := startServer(t, &fakeEngine{ctxLen: 32}, Options{BodyTimeout: timeout, MaxConns: 8})
	addr := strings.TrimPrefix(ts.url, "http://")
	var conns []net.Conn
	for range 8 {
		conns = append(conns, stalledClient(t, addr, "/v1/completions", ""))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond) // let the server accept them
	// Over the cap: refused at once with 503.
	extra := stalledClient(t, addr, "/v1/completions", "")
	defer extra.Close()
	if status, d := readCutOff(t, extra, 2*time.Second); !strings.Contains(status, " 503 ") || d > time.Second {
		t.Errorf("connection over the cap: status %q after %v, want 503 at once", status, d)
	}
	// A real client is served within the body timeout plus slack.
	deadline := time.Now().Add(timeout + 3*time.Second)
	for {
		res, err := http.Post(ts.url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","max_tokens":2}`))
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
			if res.StatusCode != 503 {
				t.Fatalf("real client: %d %s", res.StatusCode, b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("real client locked out for %v by stalled connections (last error %v)", timeout+3*time.Second, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, body := rawDo(t, ts, "GET", "/metrics", "", nil)
	if v := metricValue(body, "moe_connections_rejected_total"); v < 1 {
		t.Errorf("moe_connections_rejected_total = %v, want >= 1", v)
	}
	if !strings.Contains(body, "moe_connections_limit 8") {
		t.Errorf("metrics lack moe_connections_limit 8")
	}
}

// TestDrainNotHeldByStalledBody shuts the server down while a client is
// stalled mid-body with a long body timeout: Serve must return promptly.
func TestDrainNotHeldByStalledBody(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 32}, Options{BodyTimeout: 30 * time.Second, DrainTimeout: 20 * time.Second})
	conn := stalledClient(t, strings.TrimPrefix(ts.url, "http://"), "/v1/completions", "")
	defer conn.Close()
	time.Sleep(100 * time.Millisecond) // the handler is now reading the body
	start := time.Now()
	ts.cancel()
	if !ts.wait(t, 5*time.Second) {
		t.Fatal("Serve still draining after 5s: held up by a stalled body")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("drain took %v", d)
	}
}

// TestHugeMaxTokens sends max_tokens and max_completion_tokens that would
// overflow prompt+max_tokens: 400 naming the field, and the KV
// reservation never goes negative.
func TestHugeMaxTokens(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 32}, Options{})
	for _, c := range []struct {
		name, path, body, field string
	}{
		{"max_tokens", "/v1/completions", `{"prompt":"hi","max_tokens":9223372036854775807}`, "max_tokens"},
		{"max_tokens near", "/v1/completions", `{"prompt":"hi","max_tokens":9223372036854775806}`, "max_tokens"},
		{"chat max_tokens", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":9223372036854775807}`, "max_tokens"},
		{"max_completion_tokens", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":9223372036854775807}`, "max_completion_tokens"},
		{"negative max_completion_tokens", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":-9223372036854775808}`, "max_completion_tokens"},
		{"max_tokens beyond int64", "/v1/completions", `{"prompt":"hi","max_tokens":92233720368547758070}`, "max_tokens"},
		{"top_k huge", "/v1/completions", `{"prompt":"hi","top_k":9223372036854775807,"max_tokens":1}`, ""},
		{"n huge", "/v1/completions", `{"prompt":"hi","n":9223372036854775807}`, "n"},
		{"best_of huge", "/v1/completions", `{"prompt":"hi","best_of":9223372036854775807}`, "best_of"},
		{"logprobs huge", "/v1/completions", `{"prompt":"hi","logprobs":9223372036854775807}`, "logprobs"},
		{"seed min", "/v1/completions", `{"prompt":"hi","seed":-9223372036854775808,"n":3,"max_tokens":1}`, ""},
	} {
		code, body := rawDo(t, ts, "POST", c.path, c.body, nil)
		if c.field == "" {
			if code != 200 {
				t.Errorf("%s: %d %s", c.name, code, body)
			}
			continue
		}
		checkError(t, c.name, code, body, 400, c.field)
	}
	_, body := rawDo(t, ts, "GET", "/metrics", "", nil)
	if v := metricValue(body, "moe_kv_tokens_reserved"); v != 0 {
		t.Errorf("moe_kv_tokens_reserved = %v after the requests finished", v)
	}
	if code, body := rawDo(t, ts, "POST", "/v1/completions", `{"prompt":"hi","max_tokens":3}`, nil); code != 200 {
		t.Errorf("valid request after overflow attempts: %d %s", code, body)
	}
}

// TestKeyMatches checks the digest comparison of API keys: equal headers
// match, any other (shorter, longer, prefix, empty) does not.
func TestKeyMatches(t *testing.T) {
	want := sha256.Sum256([]byte("Bearer sekret"))
	for _, c := range []struct {
		got  string
		want bool
	}{{"Bearer sekret", true}, {"Bearer sekre", false}, {"Bearer sekrett", false}, {"", false}, {"bearer sekret", false}, {"Bearer sekret\x00", false}} {
		if keyMatches(c.got, want) != c.want {
			t.Errorf("keyMatches(%q) = %v", c.got, !c.want)
		}
	}
}

// TestOptionLimits checks that options that would allocate without bound
// are refused with a line naming them.
func TestOptionLimits(t *testing.T) {
	for _, c := range []struct {
		opt  Options
		want string
	}{
		{Options{QueueSize: 4000000000}, "--queue"},
		{Options{MaxConns: -1}, "max connections"},
		{Options{IdleTimeout: -time.Second}, "timeouts"},
	} {
		_, err := New(&fakeEngine{ctxLen: 32}, fakeTok{}, c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.opt, err, c.want)
		}
	}
}

// TestConnCapAnswersHTTPClients fills the connection cap: an ordinary HTTP
// client then gets a 503 it can parse (not a reset or an answer before
// its request), and once the holders hang up their slots serve again.
func TestConnCapAnswersHTTPClients(t *testing.T) {
	ts := startServer(t, &fakeEngine{ctxLen: 32}, Options{BodyTimeout: 10 * time.Second, MaxConns: 4})
	addr := strings.TrimPrefix(ts.url, "http://")
	var conns []net.Conn
	for range 4 {
		conns = append(conns, stalledClient(t, addr, "/v1/completions", ""))
	}
	time.Sleep(100 * time.Millisecond)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Post(ts.url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","max_tokens":2}`))
	if err != nil {
		t.Fatalf("client over the cap: %v, want a 503 answer", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	checkError(t, "over the cap", res.StatusCode, string(b), 503, "too many open connections")
	if res.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := client.Post(ts.url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","max_tokens":2}`))
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("slots not freed 5 s after their clients hung up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
