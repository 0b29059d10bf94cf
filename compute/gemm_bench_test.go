package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// benchGemm times C = op(A)·op(B) for m×n×k on path ks with a pool of
// GOMAXPROCS threads and reports GFLOP/s of the best iteration ("best-
// GFLOP/s", robust to other load on a shared machine) and of the mean. For
// m <= 16 it cycles through enough copies of B (≥ 512 MB) to keep B out of
// the caches, as decode does, and also reports GB/s of operand traffic.
func benchGemm(b *testing.B, ks *kernels, transA, transB, bf16 bool, m, n, k int) {
	p := NewPool(runtime.GOMAXPROCS(0))
	defer p.Close()
	r := rand.New(rand.NewPCG(1, 1))
	a := randSlice(r, m*k)
	c := make([]float32, m*n)
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB || bf16 {
		ldb = k
	}
	bBytes := 4 * k * n
	if bf16 {
		bBytes /= 2
	}
	copies := 1
	if m <= 16 {
		copies = max(1, min(32, (512<<20)/bBytes))
	}
	bms := make([]bmat, copies)
	for i := range bms {
		v := make([]float32, k*n)
		AdviseHugePages(v)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		bms[i] = bmat{f32: v, ld: ldb, trans: transB || bf16}
		if bf16 {
			w := make([]BF16, len(v))
			BF16FromFloat32(w, v)
			bms[i] = bmat{bf: w, ld: ldb, trans: true}
		}
		gemm(ks, p, transA, transB, m, n, k, 1, a, lda, bms[i], 0, c, n)
	}
	best := math.Inf(1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		gemm(ks, p, transA, transB, m, n, k, 1, a, lda, bms[i%copies], 0, c, n)
		best = math.Min(best, time.Since(t0).Seconds())
	}
	flop := 2 * float64(m) * float64(n) * float64(k)
	b.ReportMetric(flop/best/1e9, "best-GFLOP/s")
	b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if m <= 16 {
		b.ReportMetric(float64(bBytes+4*m*(n+k))/best/1e9, "best-GB/s")
	}
}

func BenchmarkGemm(b *testing.B) {
	ks := defaultKernels
	for _, s := range [][3]int{{256, 256, 256}, {1024, 1024, 1024}, {4096, 4096, 4096}, {1, 4096, 4096}, {8, 4096, 4096}, {512, 1024, 4096}, {2048, 512, 512}, {2048, 4096, 512}, {256, 1024, 256}} {
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}} {
			name := fmt.Sprintf("%dx%dx%d/tA=%v,tB=%v", s[0], s[1], s[2], tr[0], tr[1])
			b.Run(name, func(b *testing.B) { benchGemm(b, ks, tr[0], tr[1], false, s[0], s[1], s[2]) })
		}
		name := fmt.Sprintf("%dx%dx%d/bf16", s[0], s[1], s[2])
		b.Run(name, func(b *testing.B) { benchGemm(b, ks, false, true, true, s[0], s[1], s[2]) })
	}
}

func BenchmarkGemmGeneric(b *testing.B) {
	benchGemm(b, &genericKernels, false, false, false, 256, 256, 256)
}

func BenchmarkBandwidth(b *testing.B) {
	p := NewPool(runtime.GOMAXPROCS(0))
	defer p.Close()
	var bw float64
	for i := 0; i < b.N; i++ {
		bw = MeasureBandwidth(b.Context(), p, 1<<30, 5)
	}
	b.ReportMetric(bw/1e9, "GB/s")
}
