package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/moe-llm/moe/infer"
)

// Finish reasons, as OpenAI spells them.
const (
	finishStop   = "stop"
	finishLength = "length"
)

var (
	errQueueFull = errors.New("server queue is full")
	errShutdown  = errors.New("server is shutting down")
)

// jobOut is what the scheduler hands back to a request handler: generated
// tokens as they come and, at the end, a finish reason or an error. The
// scheduler never blocks on it.
type jobOut struct {
	mu     sync.Mutex
	tokens []int32
	done   bool
	finish string
	err    error
	notify chan struct{} // shared by all jobs of one request; capacity 1
	// quiet: push does not wake the handler, which reads all tokens once
	// the job ends (non-streaming requests without stop strings: nothing
	// to do per token, so no per-token goroutine wake-up).
	quiet bool
}

func (o *jobOut) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *jobOut) push(tok int32) {
	o.mu.Lock()
	o.tokens = append(o.tokens, tok)
	o.mu.Unlock()
	if !o.quiet {
		o.signal()
	}
}

func (o *jobOut) end(finish string, err error) {
	o.mu.Lock()
	if !o.done {
		o.done, o.finish, o.err = true, finish, err
	}
	o.mu.Unlock()
	o.signal()
}

// take returns the tokens produced since the last call and, once the job
// is over, done with its finish reason or error.
func (o *jobOut) take(buf []int32) (toks []int32, done bool, finish string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	toks = append(buf[:0], o.tokens...)
	o.tokens = o.tokens[:0]
	return toks, o.done, o.finish, o.err
}

// job is one sequence to generate (one choice of one request).
type job struct {
	ctx        context.Context
	prompt     []int32
	maxTokens  int     // tokens to generate at most
	stopTokens []int32 // ids that end generation (not emitted)
	sampler    Sampler
	greedy     bool // temperature 0: speculation keeps the exact greedy output
	sampleOpts SampleOptions
	arrived    time.Time
	out        *jobOut

	// Owned by the scheduler goroutine.
	seq       Seq
	draft     Seq
	kv        int // KV positions reserved: len(prompt)+maxTokens
	fed       int // prompt tokens already in seq
	generated int
	next      int32       // sampled token not yet fed
	hist      []int32     // tokens in seq, kept with a draft model or the prefix cache
	tprob     ProbSampler // target sampler, for speculative sampling (nil when greedy)
	dprob     ProbSampler // draft sampler, for speculative sampling (nil when greedy)
	q         [][]float32 // draft distributions of the current proposals
	spec      bool        // eligible for speculation (attachDraft)
	ngram     *infer.NgramDrafter
	pen       *penalties    // presence/frequency penalties and logit bias, or nil
	counts    map[int32]int // generated-token counts, kept when pen != nil
	last      time.Time
}

// schedulerConfig sizes the scheduler.
type schedulerConfig struct {
	parallel     int // most running sequences
	kvBudget     int // most KV positions reserved at once
	stepTokens   int // most tokens per forward pass
	prefillChunk int // most prompt tokens of one sequence per pass
	queueSize    int
	draftTokens  int
	fixedDraft   bool
	specMaxBatch int  // speculate only while the batch holds at most this many sequences
	ngram        bool // speculate with prompt lookup (no draft model)
	prefixCache  bool
}

// scheduler owns the engine: one goroutine admits queued jobs into the
// running batch and advances all of them with one Forward call per step.
type scheduler struct {
	eng   Engine
	draft Engine // optional speculative draft model
	cfg   schedulerConfig
	queue chan *job
	m     *metrics
	log   *slog.Logger

	submitMu sync.Mutex
	closed   bool

	expertsMu sync.Mutex
	experts   [][]uint64

	// Prefix cache: finished sequences, oldest first (scheduler goroutine only).
	idle       []idleSeq
	idleTokens int

	// Scratch owned by the scheduler goroutine.
	ready   []int
	sampled []int32

	// Speculation's step, drafters and draft-length policies by batch
	// size (scheduler goroutine only).
	spec     infer.SpecBatch
	drafts   engineDrafter
	ngrams   infer.Drafters
	policies map[int]*infer.SpecPolicy
}

func newScheduler(eng, draft Engine, cfg schedulerConfig, m *metrics, log *slog.Logger) *scheduler {
	return &scheduler{eng: eng, draft: draft, cfg: cfg, queue: make(chan *job, cfg.queueSize), m: m, log: log}
}

// submit queues all jobs or none: errQueueFull when the queue lacks room,
// errShutdown once the scheduler has stopped.
func (s *scheduler) submit(jobs []*job) error {
	s.submitMu.Lock()
	defer s.submitMu.Unlock()
	if s.closed {
		return errShutdown
	}
	if len(s.queue)+len(jobs) > cap(s.queue) {
		return errQueueFull
	}
	for _, j := range jobs {
		s.queue <- j
	}
	s.m.queueDepth.Add(int64(len(jobs)))
	return nil
}

// expertCounts returns the latest snapshot of the engine's routing counts.
func (s *scheduler) expertCounts() [][]uint64 {
	s.expertsMu.Lock()
	defer s.expertsMu.Unlock()
	return s.experts
}

func (s *scheduler) snapshotExperts() {
	ec, ok := s.eng.(ExpertCounter)
	if !ok {
		return
	}
	c := ec.ExpertCounts()
	cp := make([][]uint64, len(c))
	for i := range c {
		cp[i] = slices.Clone(c[i])
	}
	s.expertsMu.Lock()
	s.experts = cp
	s.expertsMu.Unlock()
}

// run schedules until ctx is done, then fails every queued and running job
// with errShutdown.
func (s *scheduler) run(ctx context.Context) {
	var running []*job
	var head *job // taken from the queue, waiting for KV budget
	kvUsed := 0
	free := func(j *job, finish string, err error) {
		kvUsed -= j.kv
		if err == nil || errors.Is(err, context.Canceled) {
			s.keepIdle(j) // a consistent cache: its prefix may serve a later prompt
		}
		j.seq, j.draft = nil, nil
		j.out.end(finish, err)
	}
	defer func() {
		s.submitMu.Lock()
		s.closed = true
		s.submitMu.Unlock()
		for _, j := range running {
			free(j, "", errShutdown)
		}
		if head != nil {
			s.m.queueDepth.Add(-1)
			head.out.end("", errShutdown)
		}
		for {
			select {
			case j := <-s.queue:
				s.m.queueDepth.Add(-1)
				j.out.end("", errShutdown)
			default:
				s.m.running.Store(0)
				s.m.kvTokens.Store(0)
				s.idle, s.idleTokens = nil, 0
				s.m.idleTokens.Store(0)
				return
			}
		}
	}()
	s.snapshotExperts()
	for {
		if ctx.Err() != nil {
			return
		}
		// Admit queued jobs while there is a slot and KV budget.
		for len(running) < s.cfg.parallel {
			if head == nil {
				if len(running) == 0 {
					select {
					case head = <-s.queue:
					case <-ctx.Done():
						return
					}
				} else {
					select {
					case head = <-s.queue:
					default:
					}
				}
				if head == nil {
					break
				}
			}
			// head counts as queued until it is admitted or dropped.
			if err := head.ctx.Err(); err != nil {
				s.m.queueDepth.Add(-1)
				head.out.end("", err)
				head = nil
				continue
			}
			if !s.place(head, s.cfg.kvBudget-kvUsed) {
				break
			}
			if s.specOn() {
				s.attachDraft(head)
			}
			kvUsed += head.kv
			running = append(running, head)
			s.m.queueDepth.Add(-1)
			head = nil
		}
		// Drop sequences whose client went away or hit a stop string.
		running = slices.DeleteFunc(running, func(j *job) bool {
			if err := j.ctx.Err(); err != nil {
				free(j, "", err)
				return true
			}
			return false
		})
		s.m.running.Store(int64(len(running)))
		s.m.kvTokens.Store(int64(kvUsed))
		if len(running) == 0 {
			continue
		}
		if err := s.decode(running, free); err != nil {
			s.log.Error("forward pass failed", "err", err, "batch", len(running))
		}
		running = slices.DeleteFunc(running, func(j *job) bool { return j.seq == nil })
		s.m.running.Store(int64(len(running)))
		s.m.kvTokens.Store(int64(kvUsed))
		s.snapshotExperts()
	}
}

// idleSeq is a finished sequence's cache kept for prefix reuse.
type idleSeq struct {
	seq  Seq
	toks []int32 // the tokens seq holds
}

// keepIdle files j's sequence in the prefix cache (oldest first, at most
// parallel entries) when the cache is on and the sequence is consistent.
func (s *scheduler) keepIdle(j *job) {
	if !s.cfg.prefixCache || j.seq == nil || j.seq.Len() != len(j.hist) || len(j.hist) == 0 {
		return
	}
	s.idle = append(s.idle, idleSeq{seq: j.seq, toks: j.hist})
	s.idleTokens += len(j.hist)
	for len(s.idle) > s.cfg.parallel {
		s.evictIdle(0)
	}
	s.m.idleTokens.Store(int64(s.idleTokens))
}

func (s *scheduler) evictIdle(i int) {
	s.idleTokens -= len(s.idle[i].toks)
	s.idle = slices.Delete(s.idle, i, i+1)
}

// place gives j a sequence if its reservation fits in room KV positions
// together with the idle caches, evicting least recently used ones as
// needed. It reuses the idle cache sharing the longest prefix with j's
// prompt (truncated to that prefix; at least one prompt token is always
// recomputed, for its logits). It reports false, changing nothing but
// evictions, when j must wait.
func (s *scheduler) place(j *job, room int) bool {
	best, common := -1, 0
	for i, c := range s.idle {
		n := 0
		for n < len(c.toks) && n < len(j.prompt)-1 && c.toks[n] == j.prompt[n] {
			n++
		}
		if n > common {
			best, common = i, n
		}
	}
	reuse := 0
	if best >= 0 {
		reuse = len(s.idle[best].toks)
	}
	for s.idleTokens-reuse+j.kv > room && len(s.idle) > 0 {
		victim := 0
		if victim == best {
			if len(s.idle) == 1 {
				best, common, reuse = -1, 0, 0
			} else {
				victim = 1
			}
		}
		s.evictIdle(victim)
		if best > victim {
			best--
		}
	}
	s.m.idleTokens.Store(int64(s.idleTokens))
	if s.idleTokens-reuse+j.kv > room {
		return false
	}
	if best < 0 {
		j.seq = s.eng.NewSeq(s.seqLen(j))
		return true
	}
	c := s.idle[best]
	s.evictIdle(best)
	s.m.idleTokens.Store(int64(s.idleTokens))
	c.seq.Truncate(common)
	j.seq, j.fed = c.seq, common
	j.hist = append(c.toks[:0:0], j.prompt[:common]...)
	s.m.prefixHitTokens.Add(uint64(common))
	return true
}

// seqLen is the capacity a new sequence is made with: the job's own
// reservation, or the whole context when sequences may be reused by
// longer prompts later (the engine's caches grow as tokens arrive).
func (s *scheduler) seqLen(j *job) int {
	if s.cfg.prefixCache {
		return s.eng.Context()
	}
	return j.kv
}

// step runs one batched forward pass: the next decode token of every
// sequence past its prompt, plus prompt chunks of prefilling sequences up to
// the step's token budget. Finished jobs get j.seq == nil.
func (s *scheduler) step(running []*job, free func(*job, string, error)) error {
	var (
		batch   []*job
		seqs    []Seq
		toks    [][]int32
		prefill []bool
	)
	budget := s.cfg.stepTokens
	for _, j := range running {
		if j.fed == len(j.prompt) {
			batch, seqs, toks, prefill = append(batch, j), append(seqs, j.seq), append(toks, []int32{j.next}), append(prefill, false)
			budget--
		}
	}
	for _, j := range running {
		if j.fed == len(j.prompt) {
			continue
		}
		n := min(len(j.prompt)-j.fed, s.cfg.prefillChunk, budget)
		if n <= 0 {
			if len(batch) > 0 {
				continue
			}
			n = 1
		}
		batch, seqs, toks, prefill = append(batch, j), append(seqs, j.seq), append(toks, j.prompt[j.fed:j.fed+n]), append(prefill, true)
		budget -= n
	}
	ntok := 0
	for _, t := range toks {
		ntok += len(t)
	}
	logits, err := s.forward(s.eng, seqs, toks, false)
	if err == nil && len(logits) != len(batch) {
		err = fmt.Errorf("engine returned %d logit rows for %d sequences", len(logits), len(batch))
	}
	if err != nil {
		for _, j := range batch {
			free(j, "", fmt.Errorf("forward pass: %w", err))
		}
		return err
	}
	s.m.steps.Add(1)
	s.m.stepTokens.Add(uint64(ntok))
	s.m.batchSize.observe(float64(len(batch)))
	now := time.Now()
	ready := s.ready[:0] // batch indices that sample a token this step
	for i, j := range batch {
		if j.spec || s.cfg.prefixCache {
			j.hist = append(j.hist, toks[i]...)
		}
		if prefill[i] {
			j.fed += len(toks[i])
			if j.fed < len(j.prompt) {
				continue
			}
			s.m.promptTokens.Add(uint64(len(j.prompt)))
		}
		ready = append(ready, i)
	}
	s.ready = ready
	sampled := s.sampleAll(batch, logits, ready)
	for x, i := range ready {
		s.accept(batch[i], sampled[x], now, free)
	}
	return nil
}

// sampleAll draws the next token of batch[i] for every i in ready. Each
// sequence has its own sampler, so large batches are split over the cores.
func (s *scheduler) sampleAll(batch []*job, logits [][]float32, ready []int) []int32 {
	out := s.sampled[:0]
	out = append(out, make([]int32, len(ready))...)
	s.sampled = out
	sample := func(x int) {
		j, l := batch[ready[x]], logits[ready[x]]
		if j.pen != nil {
			j.pen.apply(l, j.counts)
		}
		out[x] = j.sampler.Sample(l)
	}
	workers := min(runtime.GOMAXPROCS(0), len(ready)/4)
	if workers <= 1 {
		for x := range ready {
			sample(x)
		}
		return out
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for x := w; x < len(ready); x += workers {
				sample(x)
			}
		})
	}
	wg.Wait()
	return out
}

// accept records one sampled token for j: it ends the job on a stop token
// or when max_tokens is reached, and otherwise emits it and queues it as the
// next input.
func (s *scheduler) accept(j *job, tok int32, now time.Time, free func(*job, string, error)) {
	j.generated++
	if j.generated == 1 {
		s.m.ttft.observe(now.Sub(j.arrived).Seconds())
	} else {
		s.m.perToken.observe(now.Sub(j.last).Seconds())
	}
	j.last = now
	s.m.generatedTokens.Add(1)
	if j.counts != nil {
		j.counts[tok]++
	}
	if slices.Contains(j.stopTokens, tok) {
		free(j, finishStop, nil)
		return
	}
	j.out.push(tok)
	if j.generated >= j.maxTokens {
		free(j, finishLength, nil)
		return
	}
	j.next = tok
}

// forward runs eng.Forward, turning a panic inside the engine into an
// error so that one bad batch fails its requests (500) instead of the
// server.
func (s *scheduler) forward(eng Engine, seqs []Seq, toks [][]int32, all bool) (logits [][]float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("engine panicked", "panic", r, "stack", string(debug.Stack()))
			logits, err = nil, fmt.Errorf("engine panic: %v", r)
		}
	}()
	return eng.Forward(seqs, toks, all)
}
