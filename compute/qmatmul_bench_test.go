package compute

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestQReadBytes checks the plain-read probe against the portable loop.
func TestQReadBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 7, 256, 1000, 4096 + 13} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := qReadBytes(b), qReadGo(b); got != want {
			t.Fatalf("n=%d: %#x, want %#x", n, got, want)
		}
	}
}

// BenchmarkQMatMul times QMatMul per type, for 1, 8 and 64 rows over the
// shapes n×k of an expert's up (2816×1024) and down (1024×2816) projections
// and an LM head (32000×1024), on a pool of GOMAXPROCS threads. Weights
// are cycled through copies totalling about 96 MiB so that they come
// from memory, not cache. It reports GB/s of weight bytes and, for 1 row,
// xread: that over the GB/s of a plain parallel read of the same copies,
// timed in the same run.
func BenchmarkQMatMul(b *testing.B) {
	pool := NewPool(0)
	defer pool.Close()
	r := rand.New(rand.NewPCG(1, 2))
	shapes := [][2]int{{2816, 1024}, {1024, 2816}, {32000, 1024}}
	for _, ty := range qTestTypes {
		for _, sh := range shapes {
			n, k := sh[0], sh[1]
			rb, _ := ty.RowBytes(k)
			var ws [][]byte // made on first use: most runs select a few
			for _, rows := range []int{1, 8, 64} {
				b.Run(fmt.Sprintf("%s/%dx%d/rows%d", ty, n, k, rows), func(b *testing.B) {
					if ws == nil {
						one := randRows(r, ty, n, k)
						ws = make([][]byte, max(1, (96<<20)/len(one)))
						for i := range ws {
							ws[i] = append([]byte(nil), one...)
						}
					}
					a := randActs(r, rows, k, k)
					c := make([]float32, rows*n)
					var readGBs float64
					if rows == 1 {
						readGBs = parallelReadGBs(pool, ws, rb)
					}
					size := len(ws[0])
					b.SetBytes(int64(size))
					b.ResetTimer()
					start := time.Now()
					for i := 0; i < b.N; i++ {
						QMatMul(pool, ty, rows, n, k, a, k, ws[i%len(ws)], c, n)
					}
					el := time.Since(start).Seconds()
					gbs := float64(b.N) * float64(size) / el / 1e9
					b.ReportMetric(gbs, "GB/s")
					if rows == 1 {
						b.ReportMetric(gbs/readGBs, "xread")
					}
				})
			}
		}
	}
}

// parallelReadGBs times plain reads of the copies, split over the pool in
// column chunks as QMatMul splits them, and returns GB/s.
func parallelReadGBs(pool *Pool, ws [][]byte, rb int) float64 {
	var sink uint64
	chunk := max(1, (64<<10)/rb) * rb
	sum := make([]uint64, 64)
	read := func(w []byte) {
		nch := (len(w) + chunk - 1) / chunk
		pool.Run(nch, func(i int) {
			x := qReadBytes(w[i*chunk : min(len(w), (i+1)*chunk)])
			sum[i%64] ^= x
		})
	}
	for _, w := range ws {
		read(w)
	}
	best := 0.0
	for rep := 0; rep < 3; rep++ {
		start := time.Now()
		var bytes int
		for _, w := range ws {
			read(w)
			bytes += len(w)
		}
		best = max(best, float64(bytes)/time.Since(start).Seconds()/1e9)
	}
	for _, s := range sum {
		sink ^= s
	}
	_ = sink
	return best
}
