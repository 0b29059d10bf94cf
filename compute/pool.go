package compute

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool is a persistent set of worker goroutines that kernels split their
// work over. A nil *Pool runs everything on the calling goroutine.
//
// A Pool may be used by several goroutines at once, and Run may be called
// from inside a function that Run is executing: the caller always works on
// its own job, so a busy pool never deadlocks, it only helps less.
type Pool struct {
	threads int
	jobs    chan *job
	closed  atomic.Bool
	once    sync.Once
	// bufs recycles GEMM packing buffers (*[]float32) between calls.
	bufs sync.Pool
}

// job is one parallel-for: indices 0..n-1 handed out by an atomic counter.
type job struct {
	f       func(i int)
	n       int64
	next    atomic.Int64
	pending atomic.Int64
	done    chan struct{}
}

// work claims indices until none are left; whoever finishes the last one
// closes done.
func (j *job) work() {
	for {
		i := j.next.Add(1) - 1
		if i >= j.n {
			return
		}
		j.f(int(i))
		if j.pending.Add(-1) == 0 {
			close(j.done)
		}
	}
}

// NewPool returns a pool of n workers (the caller of Run counts as one of
// them); n <= 0 means runtime.GOMAXPROCS(0).
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{threads: n, jobs: make(chan *job, 4*n)}
	for w := 1; w < n; w++ {
		go p.worker()
	}
	return p
}

func (p *Pool) worker() {
	for j := range p.jobs {
		j.work()
	}
}

// Threads returns the number of workers (1 for a nil pool).
func (p *Pool) Threads() int {
	if p == nil {
		return 1
	}
	return p.threads
}

// Close stops the pool's workers. Run on a closed pool still works but runs
// serially on the caller. Close is idempotent; it must not race with Run.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.closed.Store(true)
		close(p.jobs)
	})
}

// Run calls f(i) for every i in [0, n), spread over the pool's workers and
// the calling goroutine, and returns when all calls have returned. The order
// of calls is unspecified; f must be safe to call concurrently. A nil pool,
// a one-thread pool or n == 1 runs the calls in order on the caller.
func (p *Pool) Run(n int, f func(i int)) {
	if n <= 0 {
		return
	}
	if p == nil || p.threads == 1 || n == 1 || p.closed.Load() {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	j := &job{f: f, n: int64(n), done: make(chan struct{})}
	j.pending.Store(int64(n))
	helpers := min(p.threads-1, n-1)
	for h := 0; h < helpers; h++ {
		select {
		case p.jobs <- j:
		default: // every worker busy and the queue full: do more ourselves
		}
	}
	j.work()
	<-j.done
}

// getBuf returns a scratch slice of at least n floats (contents undefined).
func (p *Pool) getBuf(n int) *[]float32 {
	if p != nil {
		if b, ok := p.bufs.Get().(*[]float32); ok && cap(*b) >= n {
			*b = (*b)[:n]
			return b
		}
	}
	b := make([]float32, n)
	return &b
}

// putBuf returns a buffer from getBuf for reuse.
func (p *Pool) putBuf(b *[]float32) {
	if p != nil {
		p.bufs.Put(b)
	}
}
