package compute

import (
	"context"
	"math"
	"runtime"
	"time"
)

// Peak is an estimate of the machine's float32 FLOP rate, how it was
// obtained, and what it rests on.
type Peak struct {
	// GFLOPS is Cores × ClockGHz × FlopsPerCycle.
	GFLOPS float64 `json:"peak_gflops"`
	// Cores is the number of threads the estimate is for.
	Cores int `json:"cores"`
	// ClockGHz is the measured clock (a dependent integer-add chain: one
	// add per cycle on every x86 core), or 0 where it could not be measured.
	ClockGHz float64 `json:"clock_ghz"`
	// FlopsPerCycle is float32 FLOPs per cycle per core: the measured
	// throughput of independent 512-bit FMAs divided by the clock, rounded
	// to a power of two (32 on Zen 4, 64 on Zen 5 / AVX-512 server cores).
	FlopsPerCycle float64 `json:"flops_per_cycle"`
	// Method says how the numbers were obtained.
	Method string `json:"peak_method"`
}

// MeasurePeak estimates the peak float32 rate of cores cores by timing two
// tiny assembly loops on the calling goroutine (best of several ~2 ms runs,
// so other load on the machine only makes it slower to finish, not wrong).
// Where the loops are unavailable it falls back to a nominal 3 GHz × 32.
func MeasurePeak(ctx context.Context, cores int) Peak {
	return measurePeak(ctx, cores, probeFMA, "independent zmm FMAs")
}

// MeasurePeakBF16 is MeasurePeak for the bf16 matmuls of GemmBF16Mixed: the
// throughput of independent 512-bit VDPBF16PS (each lane two bf16 products
// added into float32: 4 FLOP), twice the float32 rate where the CPU runs
// them at the FMA rate. Without AVX-512 BF16 it is the float32 peak (the
// portable kernel runs on the float32 units).
func MeasurePeakBF16(ctx context.Context, cores int) Peak {
	if !hasBF16Mixed {
		pk := MeasurePeak(ctx, cores)
		pk.Method = "no AVX-512 BF16 here: the float32 peak (" + pk.Method + ")"
		return pk
	}
	return measurePeak(ctx, cores, probeBF16, "independent zmm VDPBF16PS")
}

// measurePeak is MeasurePeak with the FLOP probe given (what names it).
func measurePeak(ctx context.Context, cores int, probe func(n int) (float64, bool), what string) Peak {
	if cores <= 0 {
		cores = runtime.GOMAXPROCS(0)
	}
	best := func(run func() (float64, bool)) float64 {
		top := 0.0
		for i := 0; i < 15 && ctx.Err() == nil; i++ {
			t0 := time.Now()
			work, ok := run()
			dt := time.Since(t0).Seconds()
			if !ok {
				return 0
			}
			top = math.Max(top, work/dt)
		}
		return top
	}
	hz := best(func() (float64, bool) { return probeCycles(1 << 18) })
	flops := best(func() (float64, bool) { return probe(1 << 13) })
	if hz == 0 || flops == 0 {
		pk := Peak{Cores: cores, ClockGHz: hz / 1e9, FlopsPerCycle: 32, Method: "nominal: cores × 3 GHz × 32 FLOP/cycle (no probe on this path)"}
		if pk.ClockGHz == 0 {
			pk.ClockGHz = 3
		} else {
			pk.Method = "cores × measured clock × nominal 32 FLOP/cycle"
		}
		pk.GFLOPS = float64(cores) * pk.ClockGHz * pk.FlopsPerCycle
		return pk
	}
	fpc := math.Exp2(math.Round(math.Log2(flops / hz)))
	return Peak{
		GFLOPS:        float64(cores) * hz / 1e9 * fpc,
		Cores:         cores,
		ClockGHz:      hz / 1e9,
		FlopsPerCycle: fpc,
		Method:        "cores × measured clock (dependent add chain) × measured FLOP/cycle (" + what + ", rounded to a power of 2)",
	}
}

// MeasureBandwidth returns the memory read bandwidth in bytes per second
// seen by the pool's threads streaming over a fresh buffer of bytes bytes:
// the best of reps passes of each of two simple read patterns (one stream
// per task, four streams per task), after a warm-up pass that also faults
// the pages in. Use a buffer several times the last-level cache.
func MeasureBandwidth(ctx context.Context, p *Pool, bytes int, reps int) float64 {
	n := max(bytes/4, 1<<16)
	buf := make([]float32, n)
	AdviseHugePages(buf)
	for i := range buf {
		buf[i] = 1
	}
	threads := p.Threads()
	chunk := (n + 16*threads - 1) / (16 * threads)
	chunk = (chunk + 63) &^ 63
	tasks := (n + chunk - 1) / chunk
	sums := make([]float32, tasks)
	// Two read patterns; the faster one counts: one sequential stream per
	// task, and four streams per task (quarters of the chunk, advanced in
	// 4 KB steps), which some prefetchers serve better.
	one := func(t int) {
		lo, hi := t*chunk, min(n, (t+1)*chunk)
		s := buf[lo:hi]
		sums[t] = vecDot(defaultKernels, s, s)
	}
	four := func(t int) {
		lo, hi := t*chunk, min(n, (t+1)*chunk)
		q := (hi - lo) / 4
		var acc float32
		for off := 0; off < q; off += 1024 {
			w := min(1024, q-off)
			for s := 0; s < 4; s++ {
				x := buf[lo+s*q+off : lo+s*q+off+w]
				acc += vecDot(defaultKernels, x, x)
			}
		}
		sums[t] = acc
	}
	best := 0.0
	for _, f := range []func(int){one, four} {
		p.Run(tasks, f) // warm-up
		for r := 0; r < max(reps, 1) && ctx.Err() == nil; r++ {
			t0 := time.Now()
			p.Run(tasks, f)
			best = math.Max(best, float64(4*n)/time.Since(t0).Seconds())
		}
	}
	return best
}
