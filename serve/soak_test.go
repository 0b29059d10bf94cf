package serve

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSoak runs the server in-process on 127.0.0.1 with a small real
// model under a mix of well-behaved clients and badly-behaved ones (slow
// bodies that never finish, clients that disconnect mid-stream, oversized
// bodies, overflowing max_tokens, idle connections) for MOE_SOAK_SECONDS
// (default 60), and reports the well-behaved clients' throughput and p99
// latency, and open file descriptors, goroutines and RSS over time. It
// fails when the well-behaved clients stop being served in any interval,
// or when descriptors or goroutines end far above where they started.
//
//	go test ./serve -run '^$' -bench Soak -benchtime 1x
func BenchmarkSoak(b *testing.B) {
	dur := 60 * time.Second
	if s := os.Getenv("MOE_SOAK_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("MOE_SOAK_SECONDS=%q: want a positive number of seconds", s)
		}
		dur = time.Duration(n) * time.Second
	}
	tok := testTokenizer(b)
	m := testModel(b, tok, 32, 2, 4, 128, 4)
	srv, err := NewFromModel(m, nil, Options{Logger: quietLogger(), BodyTimeout: time.Second, MaxConns: 64,
		MaxBodyBytes: 64 << 10, IdleTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ts := serveOnLoopback(b, srv)
	addr := strings.TrimPrefix(ts.url, "http://")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		good      atomic.Int64
		goodFail  atomic.Int64 // failed other than by the connection cap
		good503   atomic.Int64 // refused by the connection cap (retried at once)
		bad       atomic.Int64
		wg        sync.WaitGroup
	)
	loop := func(n int, f func()) {
		for range n {
			wg.Go(func() {
				for ctx.Err() == nil {
					f()
				}
			})
		}
	}
	// hold is a badly-behaved client: it connects, sends sent (maybe
	// nothing) and reads until the server closes the connection or wait
	// passes.
	hold := func(sent string, wait time.Duration) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			return
		}
		if sent != "" {
			io.WriteString(c, sent)
		}
		c.SetReadDeadline(time.Now().Add(wait))
		io.Copy(io.Discard, c)
		c.Close()
		bad.Add(1)
	}
	post := func(body string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.url+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, nil
	}
	// Well-behaved: short completions, back to back.
	loop(4, func() {
		start := time.Now()
		code, err := post(`{"prompt":"The cat sat","max_tokens":8,"temperature":0}`)
		switch {
		case ctx.Err() != nil:
		case err == nil && code == 200:
			good.Add(1)
			mu.Lock()
			latencies = append(latencies, time.Since(start))
			mu.Unlock()
		case err == nil && code == 503:
			good503.Add(1)
		default:
			goodFail.Add(1)
		}
	})
	// Slow bodies that never finish (cut off by the body timeout).
	loop(16, func() {
		hold("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"p", 5*time.Second)
	})
	// Streams dropped after the first event.
	loop(2, func() {
		rctx, rcancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(rctx, "POST", ts.url+"/v1/completions",
			strings.NewReader(`{"prompt":"The dog","max_tokens":100,"stream":true}`))
		if res, err := client.Do(req); err == nil {
			res.Body.Read(make([]byte, 64))
			rcancel()
			res.Body.Close()
		}
		rcancel()
		bad.Add(1)
	})
	// Oversized and overflowing requests.
	big := `{"prompt":"` + string(bytes.Repeat([]byte("x"), 100<<10)) + `"}`
	loop(2, func() {
		post(big)
		post(`{"prompt":"hi","max_tokens":9223372036854775807}`)
		post(`{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":9223372036854775807}`)
		bad.Add(3)
	})
	// Idle connections that send nothing.
	loop(8, func() { hold("", 15*time.Second) })

	b.ResetTimer()
	start := time.Now()
	fds0, gr0 := openFDs(), int64(runtime.NumGoroutine())
	var maxFDs, maxRSS int64
	lastGood := int64(0)
	interval := max(dur/12, time.Second)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	b.Logf("%6s %8s %8s %8s %6s %10s %8s", "t", "good/s", "p99 ms", "bad", "fds", "goroutines", "RSS MiB")
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		g := good.Load()
		mu.Lock()
		p99 := percentile(latencies, 0.99)
		mu.Unlock()
		fds, rss := openFDs(), rssBytes()
		maxFDs, maxRSS = max(maxFDs, fds), max(maxRSS, rss)
		el := time.Since(start).Seconds()
		b.Logf("%5.0fs %8.1f %8.1f %8d %6d %10d %8.1f", el, float64(g-lastGood)/interval.Seconds(), p99.Seconds()*1000, bad.Load(), fds, int64(runtime.NumGoroutine()), float64(rss)/(1<<20))
		if g == lastGood && !done {
			b.Errorf("no well-behaved request succeeded in the interval ending at %.0fs", el)
		}
		lastGood = g
	}
	wg.Wait()
	client.CloseIdleConnections()
	time.Sleep(2 * time.Second) // cut-off connections close
	fds1, gr1 := openFDs(), int64(runtime.NumGoroutine())
	b.StopTimer()
	mu.Lock()
	p99 := percentile(latencies, 0.99)
	mu.Unlock()
	b.ReportMetric(float64(good.Load())/dur.Seconds(), "good-req/s")
	b.ReportMetric(p99.Seconds()*1000, "good-p99-ms")
	b.ReportMetric(float64(goodFail.Load()), "good-failed")
	b.ReportMetric(float64(good503.Load()), "good-503")
	b.ReportMetric(float64(bad.Load()), "bad-requests")
	b.ReportMetric(float64(maxFDs), "max-fds")
	b.ReportMetric(float64(maxRSS)/(1<<20), "max-RSS-MiB")
	b.Logf("after the clients stopped: fds %d → %d, goroutines %d → %d", fds0, fds1, gr0, gr1)
	if n := goodFail.Load(); n > 0 {
		b.Errorf("%d well-behaved requests failed other than by a 503 of the connection cap", n)
	}
	if fds1 > fds0+16 || gr1 > gr0+64 {
		b.Errorf("resources grew: fds %d → %d, goroutines %d → %d", fds0, fds1, gr0, gr1)
	}
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// openFDs counts this process's open file descriptors (-1 where unknown).
func openFDs() int64 {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return int64(len(ents))
}

// rssBytes is this process's resident set size (-1 where unknown).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}
