package compute

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestPoolRunConcurrentNested runs many parallel-fors at once, from several
// goroutines and from inside other parallel-fors, and checks that every
// index of every call ran exactly once before its Run returned. The
// workers spin between jobs and callers spin for their last index, so this
// exercises both the spinning and the sleeping hand-offs.
func TestPoolRunConcurrentNested(t *testing.T) {
	p := NewPool(4)
	defer p.Close()
	const callers, rounds, n = 6, 200, 37
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				hits := make([]atomic.Int32, n)
				var inner atomic.Int64
				p.Run(n, func(i int) {
					hits[i].Add(1)
					if i%9 == 0 {
						p.Run(5, func(int) { inner.Add(1) })
					}
				})
				for i := range hits {
					if h := hits[i].Load(); h != 1 {
						errs <- "index ran a wrong number of times"
						return
					}
				}
				if got, want := inner.Load(), int64(5*((n+8)/9)); got != want {
					errs <- "nested Run returned before its calls finished"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestPoolRunAfterClose checks that a closed pool still runs every index,
// serially on the caller, and that workers blocked or spinning exit.
func TestPoolRunAfterClose(t *testing.T) {
	p := NewPool(3)
	sum := 0
	p.Run(10, func(i int) {})
	p.Close()
	p.Run(10, func(i int) { sum += i })
	if sum != 45 {
		t.Fatalf("closed pool summed %d, want 45", sum)
	}
}

// TestPoolRunRows checks that RunRows covers [0, rows) exactly once, in
// contiguous chunks named by their index, for chunk counts below, at and
// above the rows and for one-thread and nil pools.
func TestPoolRunRows(t *testing.T) {
	pool := NewPool(3)
	defer pool.Close()
	for _, p := range []*Pool{nil, NewPool(1), pool} {
		for _, rows := range []int{0, 1, 2, 7, 64} {
			for _, chunks := range []int{0, 1, 3, 8, 100} {
				var mu sync.Mutex
				seen := make([]int, rows)
				calls := 0
				p.RunRows(rows, chunks, func(c, r0, r1 int) {
					mu.Lock()
					defer mu.Unlock()
					calls++
					n := max(1, min(chunks, rows))
					if r0 != c*rows/n || r1 != (c+1)*rows/n {
						t.Errorf("rows %d chunks %d: chunk %d is [%d, %d)", rows, chunks, c, r0, r1)
					}
					for r := r0; r < r1; r++ {
						seen[r]++
					}
				})
				if want := max(1, min(chunks, rows)); calls != want {
					t.Errorf("rows %d chunks %d: %d calls, want %d", rows, chunks, calls, want)
				}
				for r, n := range seen {
					if n != 1 {
						t.Errorf("rows %d chunks %d: row %d covered %d times", rows, chunks, r, n)
					}
				}
			}
		}
	}
}
