package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// randPairs returns n bf16 pairs with magnitudes over a wide range
// (including a few denormals and zeros), as the micro-kernel sees them.
func randPairs(r *rand.Rand, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		var h [2]uint32
		for t := range h {
			switch r.IntN(40) {
			case 0:
				h[t] = 0
			case 1:
				h[t] = uint32(r.IntN(0x7f)) | uint32(r.IntN(2))<<15 // denormal
			default:
				v := float32(r.NormFloat64() * math.Exp2(float64(r.IntN(40)-20)))
				h[t] = uint32(ToBF16(v))
			}
		}
		out[i] = h[0] | h[1]<<16
	}
	return out
}

// The AVX-512 BF16 micro-kernel gives the bits of its portable twin,
// including cancellation, wide exponent ranges and denormals.
func TestMixedMicroMatchesGeneric(t *testing.T) {
	fast := fastMixed()
	if fast == nil {
		t.Skip("CPU lacks AVX512_BF16 (or purego build): only the portable kernel runs here")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, kp := range []int{1, 2, 7, 64, 256} {
		for _, add := range []bool{false, true} {
			a, b := randPairs(r, kp*mixedMR), randPairs(r, kp*mixedNR)
			const ldc = mixedNR + 5
			c0 := make([]float32, mixedMR*ldc)
			for i := range c0 {
				c0[i] = float32(r.NormFloat64())
			}
			c1 := append([]float32(nil), c0...)
			microBF16Generic(kp, a, b, c0, ldc, 0.75, add)
			fast.micro(kp, a, b, c1, ldc, 0.75, add)
			for i := range c0 {
				if math.Float32bits(c0[i]) != math.Float32bits(c1[i]) {
					t.Fatalf("kp=%d add=%v: element %d: generic %g (%08x), avx512 %g (%08x)", kp, add, i, c0[i], math.Float32bits(c0[i]), c1[i], math.Float32bits(c1[i]))
				}
			}
		}
	}
}

// mixedCase is one GemmBF16Mixed test shape.
type mixedCase struct {
	ta, tb      bool
	m, n, k     int
	alpha, beta float32
}

func mixedCases() []mixedCase {
	var cs []mixedCase
	for _, s := range [][3]int{{1, 1, 1}, {3, 5, 7}, {12, 32, 8}, {13, 33, 9}, {37, 70, 130}, {25, 40, 1100}, {100, 3, 64}} {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				cs = append(cs, mixedCase{ta, tb, s[0], s[1], s[2], 1, 0})
			}
		}
	}
	return append(cs, mixedCase{false, true, 30, 50, 77, 0.5, 1}, mixedCase{true, false, 30, 50, 77, -2, 0.25})
}

// randMat returns rows×cols normal values.
func randMat(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

// runMixed runs one case on micro with a pool of threads threads.
func runMixed(ks *mixedKernels, threads int, tc mixedCase, a, b, c []float32) []float32 {
	lda, ldb := tc.k, tc.n
	if tc.ta {
		lda = tc.m
	}
	if tc.tb {
		ldb = tc.k
	}
	out := append([]float32(nil), c...)
	p := NewPool(threads)
	defer p.Close()
	gemmMixed(ks, p, tc.ta, tc.tb, tc.m, tc.n, tc.k, tc.alpha, a, lda, nil, b, ldb, tc.beta, out, tc.n)
	return out
}

// GemmBF16Mixed equals a float64 reference over the bf16-rounded inputs to
// float32 accumulation accuracy (far tighter than bf16 rounding of the
// inputs would allow, so unrounded inputs fail), on every path and thread
// count, with the asm bit-equal to the portable kernel and the result
// independent of the thread count.
func TestGemmBF16MixedReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	micros := map[string]*mixedKernels{"generic": &genericMixed}
	if fast := fastMixed(); fast != nil {
		micros["avx512"] = fast
	}
	for _, tc := range mixedCases() {
		a, b, c := randMat(r, tc.m*tc.k), randMat(r, tc.k*tc.n), randMat(r, tc.m*tc.n)
		want := runMixed(&genericMixed, 1, tc, a, b, c)
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				var s, mag float64
				for l := 0; l < tc.k; l++ {
					ai, bi := i*tc.k+l, l*tc.n+j
					if tc.ta {
						ai = l*tc.m + i
					}
					if tc.tb {
						bi = j*tc.k + l
					}
					p := float64(ToBF16(a[ai]).Float32()) * float64(ToBF16(b[bi]).Float32())
					s += p
					mag += math.Abs(p)
				}
				ref := float64(tc.alpha)*s + float64(tc.beta)*float64(c[i*tc.n+j])
				tol := 1.2e-7*float64(tc.k+2)*(math.Abs(float64(tc.alpha))*mag+math.Abs(float64(tc.beta*c[i*tc.n+j]))) + 1e-30
				if got := float64(want[i*tc.n+j]); math.Abs(got-ref) > tol {
					t.Fatalf("%+v: C[%d][%d] = %g, float64 reference of bf16 inputs %g (tol %g)", tc, i, j, got, ref, tol)
				}
			}
		}
		for name, ks := range micros {
			for _, th := range []int{1, 3, 8} {
				got := runMixed(ks, th, tc, a, b, c)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%+v %s threads=%d: element %d = %g, portable 1-thread %g", tc, name, th, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// Bad shapes panic with CheckGemm's error, naming the matrix.
func TestGemmBF16MixedBadShape(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("no panic for a short A")
		}
	}()
	GemmBF16Mixed(nil, false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
}

// BenchmarkGemmBF16MixedVsF32 times Gemm and GemmBF16Mixed on the same
// operands, alternating, and reports each one's best GFLOP/s (robust to
// other load on a shared machine) and the ratio.
func BenchmarkGemmBF16MixedVsF32(b *testing.B) {
	for _, s := range []struct {
		ta, tb  bool
		m, n, k int
	}{{false, true, 512, 512, 512}, {false, false, 512, 512, 512}, {true, false, 512, 512, 512}, {false, true, 1024, 256, 256}} {
		b.Run(fmt.Sprintf("ta=%v,tb=%v,%dx%dx%d", s.ta, s.tb, s.m, s.n, s.k), func(b *testing.B) {
			p := NewPool(runtime.GOMAXPROCS(0))
			defer p.Close()
			r := rand.New(rand.NewPCG(1, 1))
			a, bm, c := randMat(r, s.m*s.k), randMat(r, s.k*s.n), make([]float32, s.m*s.n)
			lda, ldb := s.k, s.n
			if s.ta {
				lda = s.m
			}
			if s.tb {
				ldb = s.k
			}
			flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
			var best32, best16 float64
			for b.Loop() {
				t0 := time.Now()
				Gemm(p, s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
				best32 = max(best32, flops/time.Since(t0).Seconds())
				t0 = time.Now()
				GemmBF16Mixed(p, s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
				best16 = max(best16, flops/time.Since(t0).Seconds())
			}
			b.ReportMetric(best32/1e9, "f32-best-GFLOP/s")
			b.ReportMetric(best16/1e9, "bf16-best-GFLOP/s")
			b.ReportMetric(best16/best32, "bf16/f32")
		})
	}
}

// TestMeasurePeakBF16: where the CPU has AVX-512 BF16 the bf16 peak counts
// twice the FLOPs per instruction of the float32 probe, so its FLOP/cycle is
// at least the float32 one; elsewhere it is the float32 peak.
func TestMeasurePeakBF16(t *testing.T) {
	f32, bf := MeasurePeak(t.Context(), 2), MeasurePeakBF16(t.Context(), 2)
	if bf.GFLOPS <= 0 || bf.Cores != 2 || math.Abs(bf.GFLOPS-2*bf.ClockGHz*bf.FlopsPerCycle) > 1e-9*bf.GFLOPS {
		t.Fatalf("implausible bf16 peak %+v", bf)
	}
	if hasBF16Mixed && bf.FlopsPerCycle < f32.FlopsPerCycle {
		t.Fatalf("bf16 %v FLOP/cycle below float32 %v", bf.FlopsPerCycle, f32.FlopsPerCycle)
	}
	if !hasBF16Mixed && bf.FlopsPerCycle != f32.FlopsPerCycle {
		t.Fatalf("no BF16: bf16 peak %+v should be the float32 one %+v", bf, f32)
	}
}

// specialFloats returns n floats mixing normal values, exact rounding
// ties, denormals, signed zeros, infinities, NaNs and values that round up
// to infinity.
func specialFloats(r *rand.Rand, n int) []float32 {
	special := []uint32{0, 0x80000000, 0x00000001, 0x807fffff, 0x007fffff, 0x00800000, 0x7f800000, 0xff800000,
		0x7fc00000, 0x7f800001, 0xffbfffff, 0x7f7fffff, 0x7f7f8000, 0x3f808000, 0x3f818000, 0x3f80c000, 0xbf807fff}
	out := make([]float32, n)
	for i := range out {
		if r.IntN(4) == 0 {
			out[i] = math.Float32frombits(special[r.IntN(len(special))])
		} else {
			out[i] = math.Float32frombits(r.Uint32())
		}
	}
	return out
}

// The AVX-512 conversions and B-panel transposes give the bits of the
// portable ones on special values and every length (vector blocks and
// tails).
func TestMixedConvertMatchesGeneric(t *testing.T) {
	fast := fastMixed()
	if fast == nil {
		t.Skip("CPU lacks AVX512_BF16 (or purego build): only the portable conversions run here")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 2, 16, 30, 32, 64, 66, 200} {
		x, y := specialFloats(r, n), specialFloats(r, n)
		w, g := make([]uint32, n), make([]uint32, n)
		genericMixed.cvtPairs(x, y, w)
		fast.cvtPairs(x, y, g)
		for j := range w {
			if w[j] != g[j] {
				t.Fatalf("cvtPairs n=%d: [%d] (%08x, %08x) -> %08x, portable %08x", n, j, math.Float32bits(x[j]), math.Float32bits(y[j]), g[j], w[j])
			}
		}
		clear(w)
		clear(g)
		genericMixed.cvtRow(x, w)
		fast.cvtRow(x, g)
		for q := 0; q < n/2; q++ {
			if w[q] != g[q] {
				t.Fatalf("cvtRow n=%d: [%d] (%08x, %08x) -> %08x, portable %08x", n, q, math.Float32bits(x[2*q]), math.Float32bits(x[2*q+1]), g[q], w[q])
			}
		}
	}
	// The B-panel transposes: whole 16-pair blocks and the rest.
	for _, kp := range []int{1, 15, 16, 17, 40, 256} {
		src := randPairs(r, kp*mixedNR)
		w, g := make([]uint32, kp*mixedNR), make([]uint32, kp*mixedNR)
		genericMixed.transpose(kp, src, w)
		fast.transpose(kp, src, g)
		for i := range w {
			if w[i] != g[i] || w[i] != src[(i%mixedNR)*kp+i/mixedNR] {
				t.Fatalf("transpose kp=%d: [%d] = %08x, portable %08x, source %08x", kp, i, g[i], w[i], src[(i%mixedNR)*kp+i/mixedNR])
			}
		}
	}
	// The rounding rule itself: ties to even, denormals to signed zero.
	for in, want := range map[uint32]uint32{0x3f808000: 0x3f80, 0x3f818000: 0x3f82, 0x3f80c000: 0x3f81, 0x807fffff: 0x8000, 0x7f7fffff: 0x7f80, 0x7f800001: 0x7fc0} {
		if got := bf16DAZBits(math.Float32frombits(in)); got != want {
			t.Errorf("bf16DAZBits(%08x) = %04x, want %04x", in, got, want)
		}
	}
}

// The AVX-512 packing of transposed-A and untransposed-B panels (whole
// panels in asm, a few depth pairs at a time, an odd depth's last value
// and ragged panels in Go) gives the portable packing's bits.
func TestMixedPackMatchesGeneric(t *testing.T) {
	fast := fastMixed()
	if fast == nil {
		t.Skip("CPU lacks AVX512_BF16 (or purego build): only the portable packing runs here")
	}
	r := rand.New(rand.NewPCG(7, 8))
	const ld = 131
	a := specialFloats(r, 90*ld)
	a16 := make([]BF16, len(a))
	ConvertBF16Mixed(a16, a)
	for _, kc := range []int{1, 2, 7, 8, 9, 33, 64} {
		kp := (kc + 1) / 2
		for _, rows := range []int{1, 11, 12, 13, 36, 100} {
			w, g := make([]uint32, 9*kp*mixedMR), make([]uint32, 9*kp*mixedMR)
			packATransMixed(&genericMixed, a, nil, ld, 5, rows, 3, kc, w)
			packATransMixed(fast, a, nil, ld, 5, rows, 3, kc, g)
			if !slices.Equal(w, g) {
				t.Fatalf("packATransMixed kc=%d rows=%d: differs from the portable packing", kc, rows)
			}
			// From A's bf16 copy: the same panels, on both kernel sets.
			for name, ks := range map[string]*mixedKernels{"generic": &genericMixed, "avx512": fast} {
				clear(g)
				packATransMixed(ks, nil, a16, ld, 5, rows, 3, kc, g)
				if !slices.Equal(w, g) {
					t.Fatalf("packATransMixed from bf16 (%s) kc=%d rows=%d: differs from packing the float32 A", name, kc, rows)
				}
			}
		}
		for _, cols := range []int{5, 32} {
			w, g := make([]uint32, kp*mixedNR), make([]uint32, kp*mixedNR)
			packBMixed(&genericMixed, false, a, ld, 7, cols, 2, kc, w, nil)
			packBMixed(fast, false, a, ld, 7, cols, 2, kc, g, nil)
			if !slices.Equal(w, g) {
				t.Fatalf("packBMixed kc=%d cols=%d: differs from the portable packing", kc, cols)
			}
			sw, sg := make([]uint32, kp*mixedNR), make([]uint32, kp*mixedNR)
			packBMixed(&genericMixed, true, a, ld, 7, cols, 2, kc, w, sw)
			packBMixed(fast, true, a, ld, 7, cols, 2, kc, g, sg)
			if !slices.Equal(w, g) {
				t.Fatalf("packBMixed transposed kc=%d cols=%d: differs from the portable packing", kc, cols)
			}
		}
	}
}

// GemmBF16MixedA (and, transposed, GemmBF16MixedTA) on a ConvertBF16Mixed
// copy of A (with a padded row stride) gives GemmBF16Mixed's bits on the
// float32 A, for both kernel sets, edge tiles, depth blocking, odd depths
// (transposed) and 1 or 3 threads; ConvertBF16Mixed rounds as the product
// does (ties, denormals, NaN, Inf, odd lengths).
func TestGemmBF16MixedAEqualsFloatA(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	sp := specialFloats(r, 999)
	got := make([]BF16, len(sp))
	ConvertBF16Mixed(got, sp)
	for i, v := range sp {
		if uint32(got[i]) != bf16DAZBits(v) {
			t.Fatalf("ConvertBF16Mixed(%#x) = %#x, want %#x", math.Float32bits(v), got[i], bf16DAZBits(v))
		}
	}
	kernels := map[string]*mixedKernels{"generic": &genericMixed}
	if fast := fastMixed(); fast != nil {
		kernels["avx512"] = fast
	}
	for _, s := range [][3]int{{1, 1, 2}, {12, 32, 8}, {13, 33, 10}, {37, 70, 130}, {25, 40, 1100}, {100, 3, 64}, {30, 33, 9}, {49, 20, 1031}} {
		m, n, k := s[0], s[1], s[2]
		for _, tab := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			ta, tb := tab[0], tab[1]
			if !ta && k%2 != 0 {
				continue // an untransposed bf16 A needs an even depth
			}
			lda, ldb, arows := k+6, n, m
			if ta {
				lda, arows = m+5, k
			}
			if tb {
				ldb = k
			}
			a, b, c := randMat(r, arows*lda), randMat(r, k*max(n, ldb)), randMat(r, m*n)
			a16 := make([]BF16, len(a))
			ConvertBF16Mixed(a16, a)
			for name, ks := range kernels {
				for _, threads := range []int{1, 3} {
					p := NewPool(threads)
					want := append([]float32(nil), c...)
					gemmMixed(ks, p, ta, tb, m, n, k, 0.5, a, lda, nil, b, ldb, 1, want, n)
					got := append([]float32(nil), c...)
					gemmMixed(ks, p, ta, tb, m, n, k, 0.5, nil, lda, a16, b, ldb, 1, got, n)
					p.Close()
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s %d threads %dx%dx%d ta=%v tb=%v: C[%d] = %v, want %v", name, threads, m, n, k, ta, tb, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
	// The exported entry point, and its argument checks.
	a, b := randMat(r, 4*6), randMat(r, 6*5)
	a16 := make([]BF16, len(a))
	ConvertBF16Mixed(a16, a)
	want, gotC := make([]float32, 20), make([]float32, 20)
	GemmBF16Mixed(nil, false, false, 4, 5, 6, 1, a, 6, b, 5, 0, want, 5)
	GemmBF16MixedA(nil, false, 4, 5, 6, 1, a16, 6, b, 5, 0, gotC, 5)
	for i := range want {
		if gotC[i] != want[i] {
			t.Fatalf("GemmBF16MixedA C[%d] = %v, want %v", i, gotC[i], want[i])
		}
	}
	// Aᵀ: the 6×4 A read transposed, as GemmBF16Mixed reads the float32 one.
	GemmBF16Mixed(nil, true, false, 4, 5, 6, 1, a, 4, b, 5, 0, want, 5)
	GemmBF16MixedTA(nil, false, 4, 5, 6, 1, a16, 4, b, 5, 0, gotC, 5)
	for i := range want {
		if gotC[i] != want[i] {
			t.Fatalf("GemmBF16MixedTA C[%d] = %v, want %v", i, gotC[i], want[i])
		}
	}
	if err := CheckGemmBF16MixedTA(false, 4, 5, 6, a16[:23], 4, b, 5, gotC, 5); err == nil {
		t.Fatal("short transposed A accepted")
	}
	if err := CheckGemmBF16MixedA(false, 4, 5, 5, a16, 5, b, 5, gotC, 5); err == nil {
		t.Fatal("odd depth accepted")
	}
	if err := CheckGemmBF16MixedA(false, 4, 5, 6, a16[:20], 6, b, 5, gotC, 5); err == nil {
		t.Fatal("short A accepted")
	}
}
