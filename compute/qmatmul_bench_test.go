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
// xread: that over the GB/s of a plain parallel read of another copy of the
// same bytes, interleaved with the products (same machine load).
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
						one := benchRows(r, ty, n, k)
						ws = make([][]byte, max(1, (96<<20)/len(one)))
						for i := range ws {
							ws[i] = append([]byte(nil), one...)
						}
					}
					a := randActs(r, rows, k, k)
					c := make([]float32, rows*n)
					size := len(ws[0])
					b.SetBytes(int64(size))
					b.ResetTimer()
					var qt, rt time.Duration
					for i := 0; i < b.N; i++ {
						t0 := time.Now()
						QMatMul(pool, ty, rows, n, k, a, k, ws[i%len(ws)], c, n)
						qt += time.Since(t0)
						if rows == 1 {
							// A plain read of another copy, interleaved so
							// that both see the same machine load.
							b.StopTimer()
							t1 := time.Now()
							parallelRead(pool, ws[(i+len(ws)/2)%len(ws)], rb)
							rt += time.Since(t1)
							b.StartTimer()
						}
					}
					b.ReportMetric(float64(b.N)*float64(size)/qt.Seconds()/1e9, "GB/s")
					if rows == 1 {
						b.ReportMetric(rt.Seconds()/qt.Seconds(), "xread")
					}
				})
			}
		}
	}
}

// parallelRead reads w with qReadBytes, split over the pool in column
// chunks as QMatMul splits its weights.
func parallelRead(pool *Pool, w []byte, rb int) uint64 {
	chunk := max(16, (64<<10)/rb) * rb
	nch := (len(w) + chunk - 1) / chunk
	var sum [64]uint64
	pool.Run(nch, func(i int) {
		sum[i%64] ^= qReadBytes(w[i*chunk : min(len(w), (i+1)*chunk)])
	})
	var x uint64
	for _, s := range sum {
		x ^= s
	}
	return x
}

// BenchmarkQMatMulPrefill compares, on one thread, QMatMul's int8 path for
// 64 rows (prefill) with the float32 SGEMM over the same shape (what a
// dequantize-then-Gemm prefill would at best reach), in GFLOP per CPU
// second (time descheduled on a shared machine does not count).
func BenchmarkQMatMulPrefill(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	n, k, rows := 2816, 1024, 64
	a := randActs(r, rows, k, k)
	c := make([]float32, rows*n)
	perCPU := func(b *testing.B, f func()) {
		c0, ok := ProcessCPUSeconds()
		for i := 0; i < b.N; i++ {
			f()
		}
		if c1, _ := ProcessCPUSeconds(); ok && c1 > c0 {
			b.ReportMetric(float64(b.N)*2*float64(n*k*rows)/(c1-c0)/1e9, "GFLOP/cpus")
		}
	}
	for _, ty := range []QType{QQ8_0, QQ4_0, QQ4_K, QQ6_K, QF16} {
		w := benchRows(r, ty, n, k)
		b.Run(ty.String(), func(b *testing.B) {
			perCPU(b, func() { QMatMul(nil, ty, rows, n, k, a, k, w, c, n) })
		})
	}
	wf := randActs(r, n, k, k)
	b.Run("sgemm-f32", func(b *testing.B) {
		perCPU(b, func() { Gemm(nil, false, true, rows, n, k, 1, a, k, wf, k, 0, c, n) })
	})
}

// benchRows is randRows without the tests' subnormal MXFP4 scales, which
// real files do not have and which slow float arithmetic down.
func benchRows(r *rand.Rand, t QType, n, k int) []byte {
	w := randRows(r, t, n, k)
	if t == QMXFP4 {
		for b := 0; b < len(w); b += t.TypeSize() {
			w[b] = byte(118 + r.IntN(16))
		}
	}
	return w
}

// BenchmarkQMatMulHot times QMatMul on one thread over a 512×1024 matrix
// that stays in cache, in weight GB per CPU second (time descheduled on a
// shared machine does not count): the kernels' own speed, which must stay
// well above the memory bandwidth for decode to be bandwidth-bound.
func BenchmarkQMatMulHot(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	n, k := 512, 1024
	a := randActs(r, 8, k, k)
	c := make([]float32, 8*n)
	for _, ty := range qTestTypes {
		w := benchRows(r, ty, n, k)
		for _, rows := range []int{1, 4, 8} {
			b.Run(fmt.Sprintf("%s/rows%d", ty, rows), func(b *testing.B) {
				b.SetBytes(int64(len(w)))
				c0, ok := ProcessCPUSeconds()
				for i := 0; i < b.N; i++ {
					QMatMul(nil, ty, rows, n, k, a, k, w, c, n)
				}
				if c1, _ := ProcessCPUSeconds(); ok && c1 > c0 {
					b.ReportMetric(float64(b.N)*float64(len(w))/(c1-c0)/1e9, "GB/cpus")
				}
			})
		}
	}
}
