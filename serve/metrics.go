package serve

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// histogram is a Prometheus histogram with fixed upper bounds.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []uint64 // per bucket, not cumulative; last is +Inf
	sum    float64
	n      uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.n++
	h.mu.Unlock()
}

func (h *histogram) write(w io.Writer, name, help string) {
	h.mu.Lock()
	counts := append([]uint64(nil), h.counts...)
	sum, n := h.sum, h.n
	h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i, b := range h.bounds {
		cum += counts[i]
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += counts[len(h.bounds)]
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %s\n%s_count %d\n", name, cum, name, formatFloat(sum), name, n)
}

func formatFloat(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// latencyBounds are histogram bounds in seconds, 1 ms to ~65 s.
func latencyBounds() []float64 {
	var b []float64
	for v := 0.001; v < 70; v *= 2 {
		b = append(b, v)
	}
	return b
}

// metrics holds the server's counters; all fields are safe for concurrent use.
type metrics struct {
	mu       sync.Mutex
	requests map[[2]string]uint64 // (endpoint, status code) -> count

	promptTokens    atomic.Uint64
	generatedTokens atomic.Uint64
	queueDepth      atomic.Int64
	running         atomic.Int64
	kvTokens        atomic.Int64
	steps           atomic.Uint64
	stepTokens      atomic.Uint64
	specProposed    atomic.Uint64
	specAccepted    atomic.Uint64
	prefixHitTokens atomic.Uint64
	idleTokens      atomic.Int64
	connsOpen       atomic.Int64
	connsRejected   atomic.Uint64

	ttft      *histogram
	perToken  *histogram
	batchSize *histogram
}

func newMetrics() *metrics {
	bs := []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}
	return &metrics{
		requests:  map[[2]string]uint64{},
		ttft:      newHistogram(latencyBounds()),
		perToken:  newHistogram(latencyBounds()),
		batchSize: newHistogram(bs),
	}
}

func (m *metrics) request(endpoint string, status int) {
	m.mu.Lock()
	m.requests[[2]string{endpoint, strconv.Itoa(status)}]++
	m.mu.Unlock()
}

// write renders all metrics in the Prometheus text exposition format.
func (m *metrics) write(w io.Writer, experts [][]uint64, kvBudget, parallel, maxConns int) {
	m.mu.Lock()
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	vals := make([]uint64, len(keys))
	for i, k := range keys {
		vals[i] = m.requests[k]
	}
	m.mu.Unlock()

	fmt.Fprintf(w, "# HELP moe_requests_total HTTP requests by endpoint and status code.\n# TYPE moe_requests_total counter\n")
	for i, k := range keys {
		fmt.Fprintf(w, "moe_requests_total{endpoint=%q,code=%q} %d\n", k[0], k[1], vals[i])
	}
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter("moe_prompt_tokens_total", "Prompt tokens prefilled.", m.promptTokens.Load())
	counter("moe_generated_tokens_total", "Tokens generated.", m.generatedTokens.Load())
	counter("moe_batch_steps_total", "Batched forward passes run by the scheduler.", m.steps.Load())
	counter("moe_batch_step_tokens_total", "Tokens (prefill and decode) passed through batched forward passes.", m.stepTokens.Load())
	counter("moe_speculative_proposed_tokens_total", "Draft tokens proposed by speculative decoding.", m.specProposed.Load())
	counter("moe_speculative_accepted_tokens_total", "Draft tokens accepted by the target model.", m.specAccepted.Load())
	counter("moe_prefix_cache_hit_tokens_total", "Prompt tokens served from a cached prefix instead of being recomputed.", m.prefixHitTokens.Load())
	gauge("moe_prefix_cache_tokens", "KV-cache positions held by finished sequences kept for prefix reuse.", m.idleTokens.Load())
	gauge("moe_queue_depth", "Requests waiting for a slot in the running batch.", m.queueDepth.Load())
	gauge("moe_running_sequences", "Sequences in the running batch.", m.running.Load())
	gauge("moe_parallel_limit", "Most sequences the running batch may hold (--parallel).", int64(parallel))
	gauge("moe_connections_open", "Open client connections.", m.connsOpen.Load())
	gauge("moe_connections_limit", "Most open client connections (--max-conns).", int64(maxConns))
	counter("moe_connections_rejected_total", "Connections answered 503 and closed because --max-conns were open.", m.connsRejected.Load())
	gauge("moe_kv_tokens_reserved", "KV-cache positions reserved by running sequences.", m.kvTokens.Load())
	gauge("moe_kv_tokens_budget", "KV-cache positions the server may reserve (--kv-tokens).", int64(kvBudget))
	m.ttft.write(w, "moe_time_to_first_token_seconds", "Time from request arrival to its first generated token.")
	m.perToken.write(w, "moe_inter_token_latency_seconds", "Time between consecutive generated tokens of a sequence.")
	m.batchSize.write(w, "moe_batch_size", "Sequences per batched forward pass.")
	if len(experts) > 0 {
		fmt.Fprintf(w, "# HELP moe_expert_routed_tokens_total Tokens the router sent to each expert, by layer.\n# TYPE moe_expert_routed_tokens_total counter\n")
		for l, row := range experts {
			for e, c := range row {
				fmt.Fprintf(w, "moe_expert_routed_tokens_total{layer=\"%d\",expert=\"%d\"} %d\n", l, e, c)
			}
		}
	}
}
