package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moe-llm/moe/infer"
)

// fakeEOT is the fake tokenizer's end-of-text id; ids below 256 are bytes.
const fakeEOT = 256

// fakeEnd is the fake tokenizer's <|end|> id.
const fakeEnd = 257

// fakeTok is a byte-level tokenizer: token i < 256 is byte i.
type fakeTok struct{}

func (fakeTok) Encode(s string) []int32 {
	out := make([]int32, len(s))
	for i := range len(s) {
		out[i] = int32(s[i])
	}
	return out
}

func (fakeTok) TokenBytes(id int32) []byte {
	if id >= 0 && id < 256 {
		return []byte{byte(id)}
	}
	return nil
}

// fakeNext is the fake model's greedy next token after a sequence whose
// last token is last and whose length is n: a lowercase letter, or EOT at
// length eotAt.
func fakeNext(last int32, n, eotAt int) int32 {
	if eotAt > 0 && n == eotAt {
		return fakeEOT
	}
	return 'a' + int32((int(last)*7+n*3)%26)
}

// fakeGreedy returns what the fake model generates greedily from prompt.
func fakeGreedy(prompt []int32, maxTokens, eotAt int) []int32 {
	seq := append([]int32(nil), prompt...)
	var out []int32
	for len(out) < maxTokens {
		t := fakeNext(seq[len(seq)-1], len(seq), eotAt)
		if t == fakeEOT {
			break
		}
		out = append(out, t)
		seq = append(seq, t)
	}
	return out
}

type fakeSeq struct {
	toks   []int32
	maxLen int
}

func (s *fakeSeq) Len() int { return len(s.toks) }
func (s *fakeSeq) Truncate(n int) {
	if n >= 0 && n < len(s.toks) {
		s.toks = s.toks[:n]
	}
}

// fakeEngine is a deterministic stand-in for infer.Model. Its forward pass
// costs a fixed time plus a time per token, like a batched GEMM whose
// weight reads are shared by the whole batch.
type fakeEngine struct {
	ctxLen  int
	eotAt   int           // sequence length at which EOT becomes the top token (0: never)
	wrongAt int           // if > 0, every wrongAt-th position predicts a different token (for drafts)
	perPass time.Duration // fixed cost of one forward pass
	perTok  time.Duration // cost per token in a pass
	failAt  int           // if > 0, the failAt-th Forward call fails
	panicAt int           // if > 0, the panicAt-th Forward call panics

	busy      atomic.Bool
	mu        sync.Mutex
	calls     int
	batches   []int // sequences per call
	maxTokens int   // largest tokens in one call
	fedTokens int   // tokens over all calls
	overlap   bool  // set if Forward ran concurrently with itself
	experts   [][]uint64
}

func (e *fakeEngine) Context() int { return e.ctxLen }

func (e *fakeEngine) NewSeq(maxLen int) Seq { return &fakeSeq{maxLen: maxLen} }

func (e *fakeEngine) Forward(seqs []Seq, tokens [][]int32, all bool) ([][]float32, error) {
	if !e.busy.CompareAndSwap(false, true) {
		e.mu.Lock()
		e.overlap = true
		e.mu.Unlock()
	}
	defer e.busy.Store(false)
	if len(seqs) != len(tokens) {
		return nil, fmt.Errorf("fake: %d seqs, %d token lists", len(seqs), len(tokens))
	}
	n := 0
	for _, t := range tokens {
		n += len(t)
	}
	e.mu.Lock()
	e.calls++
	call := e.calls
	e.batches = append(e.batches, len(seqs))
	e.maxTokens = max(e.maxTokens, n)
	e.fedTokens += n
	if e.experts == nil {
		e.experts = [][]uint64{make([]uint64, 4), make([]uint64, 4)}
	}
	for _, t := range tokens {
		for _, id := range t {
			e.experts[0][int(id)%4]++
			e.experts[1][int(id+1)%4]++
		}
	}
	e.mu.Unlock()
	if e.failAt > 0 && call == e.failAt {
		return nil, errors.New("fake: injected failure")
	}
	if e.panicAt > 0 && call == e.panicAt {
		panic("fake: injected panic")
	}
	if d := e.perPass + time.Duration(n)*e.perTok; d > 0 {
		time.Sleep(d)
	}
	out := make([][]float32, len(seqs))
	for i, s := range seqs {
		fs := s.(*fakeSeq)
		if len(tokens[i]) == 0 {
			return nil, errors.New("fake: empty token list")
		}
		if len(fs.toks)+len(tokens[i]) > fs.maxLen {
			return nil, fmt.Errorf("fake: sequence of max %d would hold %d", fs.maxLen, len(fs.toks)+len(tokens[i]))
		}
		for p, t := range tokens[i] {
			fs.toks = append(fs.toks, t)
			if !all && p < len(tokens[i])-1 {
				continue
			}
			out[i] = append(out[i], e.logits(fs.toks)...)
		}
	}
	return out, nil
}

// logits puts the greedy token on top, with a few runners-up for sampling.
func (e *fakeEngine) logits(seq []int32) []float32 {
	l := make([]float32, 258)
	for i := range l {
		l[i] = -10
	}
	n := len(seq)
	top := fakeNext(seq[n-1], n, e.eotAt)
	if e.wrongAt > 0 && n%e.wrongAt == 0 && top != fakeEOT {
		top = 'a' + (top-'a'+1)%26
	}
	for k := int32(1); k <= 3; k++ {
		l['a'+(top-'a'+k*5+26)%26] = 2 - float32(k)*0.3
	}
	l[top] = 3
	return l
}

func (e *fakeEngine) NewSampler(o SampleOptions) Sampler {
	return &fakeSampler{o: o, r: rand.New(rand.NewPCG(o.Seed, 1))}
}

func (e *fakeEngine) ExpertCounts() [][]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.experts
}

func (e *fakeEngine) stats() (calls int, batches []int, overlap bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls, append([]int(nil), e.batches...), e.overlap
}

// fakeSampler is greedy at temperature 0 and otherwise samples from a
// softmax of logits/temperature.
type fakeSampler struct {
	o SampleOptions
	r *rand.Rand
}

func (s *fakeSampler) Sample(l []float32) int32 {
	if s.o.Temperature == 0 {
		return infer.Argmax(l)
	}
	var w []float64
	var z float64
	for _, v := range l {
		p := math.Exp(float64(v) / s.o.Temperature)
		w = append(w, p)
		z += p
	}
	u := s.r.Float64() * z
	for i, p := range w {
		u -= p
		if u <= 0 {
			return int32(i)
		}
	}
	return int32(len(l) - 1)
}

// testServer is a live server on loopback.
type testServer struct {
	srv    *Server
	eng    *fakeEngine
	url    string
	cancel context.CancelFunc
	done   chan error
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startServer(t testing.TB, eng *fakeEngine, opt Options) *testServer {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = quietLogger()
	}
	if opt.StopTokens == nil {
		opt.StopTokens = []int32{fakeEOT}
	}
	if opt.ChatStopTokens == nil {
		opt.ChatStopTokens = []int32{fakeEnd}
	}
	if opt.Vocab == 0 {
		opt.Vocab = 258
	}
	srv, err := New(eng, fakeTok{}, opt)
	if err != nil {
		t.Fatal(err)
	}
	ts := serveOnLoopback(t, srv)
	ts.eng = eng
	return ts
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func (ts *testServer) stop(t testing.TB) {
	ts.cancel()
	if !ts.wait(t, 30*time.Second) {
		t.Errorf("server did not stop within 30s")
	}
}

// wait waits up to limit for Serve to return, failing t on its error, and
// says whether it returned (closing done; a closed done counts).
func (ts *testServer) wait(t testing.TB, limit time.Duration) bool {
	t.Helper()
	select {
	case err, ok := <-ts.done:
		if ok && err != nil {
			t.Errorf("Serve: %v", err)
		}
		if ok {
			close(ts.done)
		}
		return true
	case <-time.After(limit):
		return false
	}
}
