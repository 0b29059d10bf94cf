package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/moe-llm/moe/compute"
)

// benchGemmResult is what `moe bench gemm --json` prints.
type benchGemmResult struct {
	M, N, K int `json:"-"`
	// GFLOPS is 2·m·n·k over the best repetition's time.
	GFLOPS float64 `json:"gflops"`
	// Seconds is the best repetition's time.
	Seconds float64 `json:"seconds"`
	// MeanSeconds is the mean over all timed repetitions.
	MeanSeconds float64 `json:"mean_seconds"`
	// CPUSeconds is the process CPU time (all threads) per repetition; on
	// a shared machine GFLOPS per CPU-second (CPUGFLOPS) is less disturbed
	// by other load than wall time.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	CPUGFLOPS  float64 `json:"gflops_per_cpu_second,omitempty"`
	Reps       int     `json:"reps"`
	compute.Peak
	Threads int    `json:"threads"`
	Path    string `json:"path"`
	TransA  bool   `json:"trans_a"`
	TransB  bool   `json:"trans_b"`
	BF16    bool   `json:"bf16"`
	// Copies is how many copies of B the timing cycles through (more than
	// one keeps B out of the caches, as in decode).
	Copies int `json:"b_copies"`
	// BytesPerSecond is the bytes of A, B and C the product must move,
	// over the best time: the figure to set beside the memory bandwidth
	// for the bandwidth-bound decode shapes.
	BytesPerSecond float64 `json:"bytes_per_second"`
	// MemoryBandwidth is the read bandwidth measured on this machine in the
	// same run (bytes/s), when --bandwidth (default for m <= 16).
	MemoryBandwidth float64 `json:"memory_bandwidth,omitempty"`
	// BandwidthFraction is BytesPerSecond / MemoryBandwidth.
	BandwidthFraction float64 `json:"bandwidth_fraction,omitempty"`
}

// runBenchGemm implements `moe bench gemm`: it times the float32 product
// C = op(A)·op(B) with compute.Gemm (or A·Wᵀ with bf16 W via
// compute.GemmBF16) and prints the best time, the GFLOP/s and the
// machine's estimated peak.
func runBenchGemm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench gemm", "--m M --n N --k K [--threads T] [--json]", stderr)
	m := fs.Int("m", 1024, "rows of op(A) and C")
	n := fs.Int("n", 1024, "columns of op(B) and C")
	k := fs.Int("k", 1024, "inner dimension")
	threads := fs.Int("threads", 0, "worker threads (0 = GOMAXPROCS)")
	transA := fs.Bool("transa", false, "A is stored k×m (C = Aᵀ·B)")
	transB := fs.Bool("transb", false, "B is stored n×k (C = A·Bᵀ, a linear layer's x·Wᵀ)")
	bf16 := fs.Bool("bf16", false, "B holds bf16 weights stored n×k (implies --transb; A must not be transposed)")
	minTime := fs.Duration("min-time", time.Second, "keep repeating until this much time is spent timing (at least 3 repetitions)")
	bandwidth := fs.Bool("bandwidth", false, "also measure memory read bandwidth (always done when m <= 16)")
	coldMB := fs.Int("cold-mb", -1, "cycle through copies of B totalling at least this many MB, so B comes from memory as a model's weights do (-1: 512 when m <= 16, else 0)")
	jsonOut := fs.Bool("json", false, "print one JSON object")
	if err := parseFlagsNoArgs(fs, args, "sizes go in --m, --n, --k"); err != nil {
		return err
	}
	if *m <= 0 || *n <= 0 || *k <= 0 {
		return usagef("--m, --n and --k must be positive (got %d, %d, %d)", *m, *n, *k)
	}
	if *threads < 0 {
		return usagef("--threads must be >= 0 (got %d)", *threads)
	}
	if *bf16 {
		if *transA {
			return usagef("--bf16 takes A untransposed")
		}
		*transB = true
	}
	if need := float64(*m)*float64(*k) + float64(*k)*float64(*n) + float64(*m)*float64(*n); need*4 > 16e9 {
		return usagef("matrices of %d×%d×%d need %.1f GB; at most 16 GB", *m, *n, *k, need*4/1e9)
	}
	nt := *threads
	if nt == 0 {
		nt = runtime.GOMAXPROCS(0)
	}
	pool := compute.NewPool(nt)
	defer pool.Close()

	r := rand.New(rand.NewPCG(1, 2))
	fill := func(s []float32) {
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
	}
	a := make([]float32, *m**k)
	fill(a)
	c := make([]float32, *m**n)
	lda := *k
	if *transA {
		lda = *m
	}
	ldb := *n
	if *transB {
		ldb = *k
	}
	bBytes := 4 * float64(*k) * float64(*n)
	if *bf16 {
		bBytes /= 2
	}
	if *coldMB < 0 {
		*coldMB = 0
		if *m <= 16 {
			*coldMB = 512
		}
	}
	copies := max(1, min(64, int(math.Ceil(float64(*coldMB)*1e6/bBytes))))
	bs := make([][]float32, copies)
	bws := make([][]compute.BF16, copies)
	for i := range copies {
		tmp := make([]float32, *k**n)
		compute.AdviseHugePages(tmp) // as NumPy does for its arrays
		fill(tmp)
		if *bf16 {
			bws[i] = make([]compute.BF16, len(tmp))
			compute.BF16FromFloat32(bws[i], tmp)
			continue
		}
		bs[i] = tmp
		if err := compute.CheckGemm(*transA, *transB, *m, *n, *k, a, lda, tmp, ldb, c, *n); err != nil {
			return fmt.Errorf("bench gemm: %w", err)
		}
	}
	next := 0
	once := func() {
		i := next % copies
		next++
		if *bf16 {
			compute.GemmBF16(pool, *m, *n, *k, 1, a, lda, bws[i], ldb, 0, c, *n)
		} else {
			compute.Gemm(pool, *transA, *transB, *m, *n, *k, 1, a, lda, bs[i], ldb, 0, c, *n)
		}
	}
	for range copies - 1 { // fault every copy in
		once()
	}
	once() // warm-up: faults pages in, fills the pool's buffers
	best, total, reps := math.Inf(1), 0.0, 0
	cpu0, cpuOK := compute.ProcessCPUSeconds()
	for (total < minTime.Seconds() || reps < 3) && ctx.Err() == nil {
		t0 := time.Now()
		once()
		dt := time.Since(t0).Seconds()
		best = math.Min(best, dt)
		total += dt
		reps++
	}
	cpu1, _ := compute.ProcessCPUSeconds()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bench gemm: %w", err)
	}
	path, _ := compute.CPUFeatures()
	res := benchGemmResult{
		GFLOPS:         2 * float64(*m) * float64(*n) * float64(*k) / best / 1e9,
		Seconds:        best,
		MeanSeconds:    total / float64(reps),
		Reps:           reps,
		Peak:           compute.MeasurePeak(ctx, nt),
		Threads:        nt,
		Path:           path,
		TransA:         *transA,
		TransB:         *transB,
		BF16:           *bf16,
		Copies:         copies,
		BytesPerSecond: (4*float64(*m)*float64(*k) + bBytes + 4*float64(*m)*float64(*n)) / best,
	}
	if cpuOK && cpu1 > cpu0 {
		res.CPUSeconds = (cpu1 - cpu0) / float64(reps)
		res.CPUGFLOPS = 2 * float64(*m) * float64(*n) * float64(*k) / res.CPUSeconds / 1e9
	}
	if *bandwidth || *m <= 16 {
		res.MemoryBandwidth = compute.MeasureBandwidth(ctx, pool, 1<<30, 5)
		if res.MemoryBandwidth > 0 {
			res.BandwidthFraction = res.BytesPerSecond / res.MemoryBandwidth
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "gemm %d×%d×%d (transA=%v transB=%v bf16=%v) on %d threads, %s path\n", *m, *n, *k, *transA, *transB, *bf16, nt, path)
	fmt.Fprintf(stdout, "  best %.3f ms  mean %.3f ms  (%d reps)\n", best*1e3, res.MeanSeconds*1e3, reps)
	fmt.Fprintf(stdout, "  %.1f GFLOP/s = %.0f%% of peak %.0f GFLOP/s (%d cores × %.2f GHz × %.0f FLOP/cycle)\n",
		res.GFLOPS, 100*res.GFLOPS/res.Peak.GFLOPS, res.Peak.GFLOPS, res.Peak.Cores, res.Peak.ClockGHz, res.Peak.FlopsPerCycle)
	fmt.Fprintf(stdout, "  %.1f GB/s of operands", res.BytesPerSecond/1e9)
	if res.MemoryBandwidth > 0 {
		fmt.Fprintf(stdout, " = %.0f%% of measured read bandwidth %.1f GB/s", 100*res.BandwidthFraction, res.MemoryBandwidth/1e9)
	}
	fmt.Fprintln(stdout)
	return nil
}
