// Package loadgen measures the aggregate generation throughput of any
// OpenAI-compatible completion server (moe serve, llama-server, vLLM):
// C clients each send requests for a fixed number of greedy tokens, one
// after another, and the generated tokens the server reports are summed
// over the wall time. It is what `moe bench serve` runs, so moe and a peer
// are measured by the same client in the same run.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Options describe one measurement.
type Options struct {
	// URL is the server's base address, e.g. http://127.0.0.1:8080; the
	// requests go to URL/v1/completions.
	URL string
	// Model is the "model" field of each request (servers with one model
	// ignore it).
	Model string
	// Prompt is each request's prompt; client i appends " (i)" so that no
	// two clients share a prompt (a server's prefix cache then helps each
	// client only with its own earlier requests, as with real users).
	Prompt string
	// Tokens is max_tokens of each request; ignore_eos is set so that every
	// request generates exactly this many.
	Tokens int
	// Requests is how many requests each client sends, one after another.
	Requests int
	// Timeout bounds each request.
	Timeout time.Duration
	// LogitBias is sent as each request's logit_bias (token id → bias).
	LogitBias map[int32]float64
}

// Result is one concurrency level's measurement.
type Result struct {
	// Clients is the number of concurrent clients.
	Clients int `json:"clients"`
	// Requests is the number of requests completed in all.
	Requests int `json:"requests"`
	// Tokens is the generated tokens the server reported in all.
	Tokens int `json:"tokens"`
	// Seconds is the wall time from the first request to the last reply.
	Seconds float64 `json:"seconds"`
	// TokensPerSecond is Tokens / Seconds: the aggregate throughput.
	TokensPerSecond float64 `json:"tokens_per_second"`
	// LatencyP50 and LatencyMax are per-request times in seconds.
	LatencyP50 float64 `json:"latency_p50_seconds"`
	LatencyMax float64 `json:"latency_max_seconds"`
}

// Run measures throughput with clients concurrent clients. One request is
// sent first, untimed, to warm the server. It fails on the first request
// that fails or that generates a number of tokens other than Tokens (a
// server that stops early would otherwise look faster).
func Run(ctx context.Context, opt Options, clients int) (Result, error) {
	if clients < 1 || opt.Tokens < 1 || opt.Requests < 1 {
		return Result{}, fmt.Errorf("loadgen: clients, tokens and requests must be positive (got %d, %d, %d)", clients, opt.Tokens, opt.Requests)
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Minute
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + 1}}
	defer hc.CloseIdleConnections()
	if _, err := complete(ctx, hc, opt, opt.Prompt+" (warm-up)"); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		lat   []float64
		total int
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < opt.Requests; r++ {
				t0 := time.Now()
				n, err := complete(ctx, hc, opt, fmt.Sprintf("%s (%d)", opt.Prompt, c))
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
					return
				}
				total += n
				lat = append(lat, time.Since(t0).Seconds())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if first != nil {
		return Result{}, first
	}
	slices.Sort(lat)
	return Result{
		Clients: clients, Requests: len(lat), Tokens: total, Seconds: secs,
		TokensPerSecond: float64(total) / secs,
		LatencyP50:      lat[len(lat)/2], LatencyMax: lat[len(lat)-1],
	}, nil
}

// complete sends one greedy completion request and returns the number of
// tokens the server says it generated.
func complete(ctx context.Context, hc *http.Client, opt Options, prompt string) (int, error) {
	req := map[string]any{
		"model": opt.Model, "prompt": prompt, "max_tokens": opt.Tokens,
		"temperature": 0, "ignore_eos": true, "stream": false,
	}
	if len(opt.LogitBias) > 0 {
		bias := make(map[string]float64, len(opt.LogitBias))
		for id, b := range opt.LogitBias {
			bias[strconv.Itoa(int(id))] = b
		}
		req["logit_bias"] = bias
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	url := strings.TrimSuffix(opt.URL, "/") + "/v1/completions"
	hreq, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("loadgen: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(hreq)
	if err != nil {
		return 0, fmt.Errorf("loadgen: POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("loadgen: reading the reply of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("loadgen: POST %s: %s: %.200s", url, resp.Status, data)
	}
	var res struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return 0, fmt.Errorf("loadgen: the reply of %s is not a completion: %w", url, err)
	}
	if n := res.Usage.CompletionTokens; n != opt.Tokens {
		return 0, fmt.Errorf("loadgen: the server generated %d tokens where %d were asked for with ignore_eos (it must honour ignore_eos and report usage)", n, opt.Tokens)
	}
	return res.Usage.CompletionTokens, nil
}

// PartialUTF8 returns the ids below vocab whose bytes are not valid UTF-8
// on their own (byte-fallback and split-character tokens of byte-level
// vocabularies), as a logit_bias of -100 each: banning them keeps the
// generated text valid UTF-8, which some servers need to answer at all
// (llama-server b9749 fails a request whose text is not valid UTF-8).
func PartialUTF8(vocab int, tokenBytes func(int32) []byte) map[int32]float64 {
	bias := map[int32]float64{}
	for id := int32(0); int(id) < vocab; id++ {
		if b := tokenBytes(id); len(b) > 0 && !utf8.Valid(b) {
			bias[id] = -100
		}
	}
	return bias
}
