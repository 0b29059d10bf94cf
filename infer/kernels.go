package infer

import (
	"sync"

	"moe/compute"
)

// This file holds the few element-wise helpers the inference path needs
// that are not (yet) in package compute. They are deliberately plain.

// parallelFor runs fn(lo, hi) over [0, n) split into contiguous chunks, one
// per pool worker, and waits for all of them. Small n runs inline.
func parallelFor(p *compute.Pool, n, minChunk int, fn func(lo, hi int)) {
	t := p.Threads()
	if minChunk < 1 {
		minChunk = 1
	}
	if t > n/minChunk {
		t = n / minChunk
	}
	if t <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + t - 1) / t
	for lo := chunk; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, hi)
	}
	fn(0, min(chunk, n))
	wg.Wait()
}
