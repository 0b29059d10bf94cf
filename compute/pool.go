package compute

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
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
	// bufs recycles GEMM packing buffers between calls; shared with ser.
	bufs *bufList
	// ser is a one-thread view of this pool sharing its buffers, for
	// products too small to be worth waking the workers.
	ser *Pool
}

// bufList is a free list of scratch buffers. Unlike a sync.Pool it
// survives garbage collections, so a training step's GEMMs reuse the
// previous step's buffers instead of allocating (and clearing) new ones.
type bufList struct {
	mu   sync.Mutex
	free []*[]float32
}

// bufListMax bounds the buffers a free list keeps.
const bufListMax = 32

// get returns the smallest free buffer of capacity >= n, or nil. When none
// is large enough it drops the largest one (the caller allocates a larger
// buffer that takes its place), so the list does not pile up small ones.
func (l *bufList) get(n int) *[]float32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	best, largest := -1, -1
	for i, b := range l.free {
		if cap(*b) >= n && (best < 0 || cap(*b) < cap(*l.free[best])) {
			best = i
		}
		if largest < 0 || cap(*b) > cap(*l.free[largest]) {
			largest = i
		}
	}
	if best < 0 {
		if largest >= 0 {
			last := len(l.free) - 1
			l.free[largest] = l.free[last]
			l.free[last] = nil
			l.free = l.free[:last]
		}
		return nil
	}
	b := l.free[best]
	last := len(l.free) - 1
	l.free[best] = l.free[last]
	l.free[last] = nil
	l.free = l.free[:last]
	return b
}

// put returns b to the list, dropping the smallest buffer when full.
func (l *bufList) put(b *[]float32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.free) < bufListMax {
		l.free = append(l.free, b)
		return
	}
	small := 0
	for i, f := range l.free {
		if cap(*f) < cap(*l.free[small]) {
			small = i
		}
	}
	if cap(*l.free[small]) < cap(*b) {
		l.free[small] = b
	}
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
	bl := &bufList{}
	p := &Pool{threads: n, jobs: make(chan *job, 4*n), bufs: bl}
	p.ser = &Pool{threads: 1, bufs: bl}
	if n == 1 {
		p.ser = p
	}
	for w := 1; w < n; w++ {
		go p.worker()
	}
	return p
}

func (p *Pool) worker() {
	for {
		// Spin a little for the next job, then sleep until one comes.
		p.await(func() bool { return len(p.jobs) > 0 })
		j, ok := <-p.jobs
		if !ok {
			return
		}
		j.work()
	}
}

// spinTime is how long a worker waiting for a job, and a caller waiting for
// its job's last index, poll before they block. Decoding runs a few hundred
// products per token, each of tens to hundreds of microseconds; waking a
// parked goroutine takes about as long, so without the spin the caller
// does most of each product alone (as ggml's threads, which poll between
// graph nodes). A spinning worker takes a CPU only while products keep
// coming, and yields to other goroutines as it spins.
const spinTime = 200 * time.Microsecond

// await polls ready for up to spinTime, yielding the processor now and
// then, and reports whether it became true.
func (p *Pool) await(ready func() bool) bool {
	var start time.Time
	for i := 0; ; i++ {
		if ready() {
			return true
		}
		if i&255 == 255 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > spinTime {
				return false
			}
			runtime.Gosched()
		}
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
	if !p.await(func() bool { return j.pending.Load() == 0 }) {
		<-j.done
	}
}

// RunRows calls f(c, r0, r1) for each chunk c of [0, rows) split into
// min(chunks, rows) contiguous ranges, chunk c covering
// [c·rows/chunks, (c+1)·rows/chunks), spread over the pool as Run spreads
// its calls; chunks ≤ 1 (or rows ≤ 1) makes the one call f(0, 0, rows) on
// the caller. How many chunks pay is the caller's to say: it knows the work
// per row.
func (p *Pool) RunRows(rows, chunks int, f func(c, r0, r1 int)) {
	chunks = min(chunks, rows)
	if chunks <= 1 {
		f(0, 0, rows)
		return
	}
	p.Run(chunks, func(c int) { f(c, c*rows/chunks, (c+1)*rows/chunks) })
}

// getBuf returns a scratch slice of at least n floats (contents undefined).
func (p *Pool) getBuf(n int) *[]float32 {
	if p != nil && p.bufs != nil {
		if b := p.bufs.get(n); b != nil {
			*b = (*b)[:n]
			return b
		}
		// Round up so that slightly larger requests later still fit.
		c := n + n/4
		b := make([]float32, n, c)
		return &b
	}
	b := make([]float32, n)
	return &b
}

// serial returns a one-thread view of p that shares its scratch buffers
// (nil for a nil pool).
func (p *Pool) serial() *Pool {
	if p == nil || p.ser == nil {
		return nil
	}
	return p.ser
}

// Serial returns a one-thread view of p that shares its scratch buffers
// (nil for a nil pool): for the products of jobs that already run in
// parallel on p's workers, where spreading each product over the workers
// again would only queue tasks behind busy ones. Results do not change:
// every compute routine gives the same bits at any thread count.
func (p *Pool) Serial() *Pool { return p.serial() }

// putBuf returns a buffer from getBuf for reuse.
func (p *Pool) putBuf(b *[]float32) {
	if p != nil && p.bufs != nil {
		p.bufs.put(b)
	}
}
