package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
)

// benchConfig picks the model the benchmarks serve: a preset name, or
// "mid" for a 176M-parameter (56M active) MoE with d 512, 8 layers and 8
// experts of width 1408, top-2 (the llama.cpp peer's mid-size model).
var benchConfig = flag.String("serve.config", "tiny", "model config for the serve benchmarks: a preset name or \"mid\"")

// benchThreads sets the compute threads of the benchmarks' model.
var benchThreads = flag.Int("serve.threads", 0, "compute threads for the serve benchmarks (0 = all cores)")

// benchBF16 makes the benchmarks' model compute with bfloat16 weights.
var benchBF16 = flag.Bool("serve.bf16", false, "serve benchmarks: bfloat16 weights (Model.UseBF16)")

func benchCfg(b *testing.B) *config.Config {
	if *benchConfig == "mid" {
		return &config.Config{ModelType: "mixtral", VocabSize: 4096, HiddenSize: 512, IntermediateSize: 1408, NumLayers: 8,
			NumHeads: 8, NumKVHeads: 4, MaxPositionEmbeddings: 256, RopeTheta: 10000, RMSNormEps: 1e-5, TieWordEmbeddings: true,
			NumExperts: 8, ExpertsPerToken: 2, InitStd: 0.02}
	}
	cfg, ok := config.Preset(*benchConfig)
	if !ok {
		b.Fatalf("unknown -serve.config %q", *benchConfig)
	}
	return cfg
}

// randomBenchModel returns a random-weight model of benchCfg on a pool of
// -serve.threads workers (bf16 with -serve.bf16), closed when b ends.
func randomBenchModel(b *testing.B) *infer.Model {
	pool := compute.NewPool(*benchThreads)
	b.Cleanup(pool.Close)
	m, err := infer.RandomModel(benchCfg(b), 1, pool)
	if err != nil {
		b.Fatal(err)
	}
	m.UseBF16(*benchBF16)
	return m
}

// loadClient is an HTTP client with its own connection pool, closed at the end.
func loadClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	tr.MaxConnsPerHost = conns
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// completion sends one completion request and returns the generated token
// count; with stream it reads server-sent events up to [DONE].
func completion(cl *http.Client, url, body string, stream bool) (int, error) {
	res, err := cl.Post(url+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		return 0, fmt.Errorf("status %d: %s", res.StatusCode, b)
	}
	if !stream {
		var cr completionResponse
		if err := json.NewDecoder(res.Body).Decode(&cr); err != nil {
			return 0, err
		}
		if len(cr.Choices) != 1 || cr.Choices[0].FinishReason == nil || cr.Usage == nil {
			return 0, fmt.Errorf("malformed response %+v", cr)
		}
		return cr.Usage.CompletionTokens, nil
	}
	sc := bufio.NewScanner(res.Body)
	finished, tokens := false, 0
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data: ")) {
			continue
		}
		data := line[6:]
		if string(data) == "[DONE]" {
			if !finished {
				return 0, fmt.Errorf("[DONE] before a finish reason")
			}
			return tokens, nil
		}
		var cr completionResponse
		if err := json.Unmarshal(data, &cr); err != nil {
			return 0, fmt.Errorf("bad event %q: %w", data, err)
		}
		for _, c := range cr.Choices {
			if c.FinishReason != nil {
				finished = true
			}
		}
		if cr.Usage != nil {
			tokens = cr.Usage.CompletionTokens
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("stream ended without [DONE]")
}

// TestLoad200Clients runs 200 concurrent clients against a tiny random MoE
// model: every request must succeed (no drops, no 5xx), the heap must stay
// bounded and no goroutine may leak.
func TestLoad200Clients(t *testing.T) {
	tok := testTokenizer(t)
	m := testModel(t, tok, 32, 2, 4, 64, 3)
	srv, err := NewFromModel(m, nil, Options{Parallel: 32, QueueSize: 256, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	ts := serveOnLoopback(t, srv)

	const clients = 200
	cl := loadClient(clients)
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var tokens atomic.Int64
	for i := range clients {
		wg.Go(func() {
			stream := i%2 == 1
			body := fmt.Sprintf(`{"prompt":"And God said %d, let there be","max_tokens":8,"temperature":0.8,"seed":%d,"stream":%v,"stream_options":%s}`,
				i, i, stream, map[bool]string{true: `{"include_usage":true}`, false: "null"}[stream])
			n, err := completion(cl, ts.url, body, stream)
			if err != nil {
				failed.Add(1)
				t.Errorf("client %d: %v", i, err)
				return
			}
			if n < 1 || n > 8 {
				failed.Add(1)
				t.Errorf("client %d: %d completion tokens", i, n)
			}
			tokens.Add(int64(n))
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopSampling)
	<-sampled
	if elapsed > 60*time.Second {
		t.Errorf("200 clients took %v", elapsed)
	}
	t.Logf("200 clients: %v, %d tokens, peak heap in use %.1f MiB (baseline %.1f MiB)",
		elapsed.Round(time.Millisecond), tokens.Load(), float64(peak.Load())/(1<<20), float64(before.HeapInuse)/(1<<20))
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), clients)
	}
	// The model is ~0.3 MB and 32 sequences of 64 positions of KV are tiny:
	// anything near this bound means per-request state is leaking.
	if p := peak.Load(); p > before.HeapInuse+256<<20 {
		t.Errorf("peak heap in use %d MiB over a %d MiB baseline", p>>20, before.HeapInuse>>20)
	}
	_, metrics := rawDo(t, ts, "GET", "/metrics", "", nil)
	if v := metricValue(metrics, `moe_requests_total{endpoint="/v1/completions",code="200"}`); v != clients {
		t.Errorf("metrics count %v successful completions, want %d", v, clients)
	}
	if v := metricValue(metrics, "moe_batch_size_sum") / metricValue(metrics, "moe_batch_size_count"); v < 4 {
		t.Errorf("mean batch %.1f under 200 concurrent clients; want >= 4", v)
	}
	cl.CloseIdleConnections()
	ts.stop(t)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines+2 {
		t.Errorf("%d goroutines after the load test, %d before", g, goroutines)
	}
}

// BenchmarkServeThroughput measures aggregate generated tokens per second
// and request latency percentiles at 1, 4 and 16 concurrent clients
// against a random-weight model of the tiny preset, over loopback HTTP.
// Each iteration is one request of 32 generated tokens per client.
//
//	go test ./serve -run '^$' -bench ServeThroughput -benchtime 8x
func BenchmarkServeThroughput(b *testing.B) {
	m := randomBenchModel(b)
	m.Tok = testTokenizer(b)
	srv, err := NewFromModel(m, nil, Options{Parallel: 16, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ts := serveOnLoopback(b, srv)
	// 24-token prompts that differ in their first token, so that the
	// prefix cache saves nothing and every request pays its prefill.
	promptFor := func(n int) string {
		return fmt.Sprintf(`[%d,`, 100+n%3000) + strings.TrimSuffix(strings.Repeat("17,", 23), ",") + `]`
	}
	prompt := promptFor(-1)
	const gen = 32
	for _, clients := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			cl := loadClient(clients)
			defer cl.CloseIdleConnections()
			// Warm up (first touches of the weights and KV buffers).
			if _, err := completion(cl, ts.url, fmt.Sprintf(`{"prompt":%s,"max_tokens":4}`, prompt), false); err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			var lat []time.Duration
			var tokens atomic.Int64
			before := scrape(b, cl, ts.url)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					for i := range b.N {
						body := fmt.Sprintf(`{"prompt":%s,"max_tokens":%d,"temperature":1,"seed":%d}`, promptFor(c*100+i), gen, c*1000+i)
						t0 := time.Now()
						n, err := completion(cl, ts.url, body, false)
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						lat = append(lat, time.Since(t0))
						mu.Unlock()
						tokens.Add(int64(n))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) == 0 {
				return
			}
			pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))].Seconds() * 1000 }
			b.ReportMetric(float64(tokens.Load())/elapsed.Seconds(), "tok/s")
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
			after := scrape(b, cl, ts.url)
			if steps := after["moe_batch_size_count"] - before["moe_batch_size_count"]; steps > 0 {
				b.ReportMetric((after["moe_batch_size_sum"]-before["moe_batch_size_sum"])/steps, "seqs/step")
			}
		})
	}
}

// scrape reads the server's unlabelled metrics.
func scrape(b *testing.B, cl *http.Client, url string) map[string]float64 {
	res, err := cl.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(val, &v); err == nil {
			out[name] = v
		}
	}
	return out
}

// BenchmarkDecodeStep times one batched decode step (one new token for each
// of B sequences with 32 cached positions) of the random tiny-preset model,
// the cost the scheduler pays per step: the ceiling on what batching gives.
//
//	go test ./serve -run '^$' -bench DecodeStep
func BenchmarkDecodeStep(b *testing.B) {
	eng := NewModelEngine(randomBenchModel(b))
	for _, bs := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("batch=%d", bs), func(b *testing.B) {
			seqs := make([]Seq, bs)
			toks := make([][]int32, bs)
			prompt := make([]int32, 32)
			for i := range seqs {
				seqs[i] = eng.NewSeq(0)
				for j := range prompt {
					prompt[j] = int32(i*31+j*7) % 4096
				}
				toks[i] = prompt
			}
			if _, err := eng.Forward(seqs, toks, false); err != nil {
				b.Fatal(err)
			}
			for i := range toks {
				toks[i] = []int32{int32(i)}
			}
			b.ResetTimer()
			for range b.N {
				if _, err := eng.Forward(seqs, toks, false); err != nil {
					b.Fatal(err)
				}
				for _, s := range seqs {
					s.Truncate(32)
				}
			}
			b.ReportMetric(float64(bs*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
