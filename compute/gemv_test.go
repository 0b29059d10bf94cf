package compute

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGemv checks the batch-1 decode product y = alpha·W·x + beta·y (W in
// the (out, in) layout, Gemm with m = 1) against the float64 reference over
// odd shapes and a padded stride, on every kernel path.
func TestGemv(t *testing.T) {
	pool := NewPool(2)
	defer pool.Close()
	r := rand.New(rand.NewPCG(9, 9))
	for _, sh := range [][2]int{{1, 1}, {3, 17}, {17, 3}, {63, 65}, {65, 63}, {257, 1000}, {1000, 257}} {
		m, n := sh[0], sh[1]
		for _, pad := range []int{0, 3} {
			ldw := n + pad
			w := randSlice(r, m*ldw)
			x := randSlice(r, n)
			y := randSlice(r, m)
			alpha, beta := float32(1.5), float32(-0.5)
			if pad == 0 {
				beta = 0
			}
			bm := bmat{f32: w, ld: ldw, trans: true}
			ref, mag := refGemm(false, 1, m, n, alpha, x, n, &bm, beta, y, m)
			for _, ks := range paths() {
				yk := append([]float32(nil), y...)
				gemm(ks, pool, false, true, 1, m, n, alpha, x, n, bm, beta, yk, m)
				checkAgainst(t, ks.name+"/gemv", n, 1, m, yk, m, ref, mag, 0)
			}
		}
	}
}

// TestBF16Conversions checks rounding to nearest even, specials and the
// exact widening.
func TestBF16Conversions(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{float32(math.Inf(1)), 0x7f80},
		{float32(math.Inf(-1)), 0xff80},
		{math.MaxFloat32, 0x7f80}, // overflows to +Inf
		{0, 0},
	} {
		if got := ToBF16(tc.in); uint16(got) != tc.want {
			t.Errorf("ToBF16(%v) = %#04x, want %#04x", tc.in, uint16(got), tc.want)
		}
	}
	if h := ToBF16(float32(math.NaN())); !math.IsNaN(float64(h.Float32())) {
		t.Errorf("ToBF16(NaN) = %#04x is not NaN", uint16(h))
	}
	if h := ToBF16(math.Float32frombits(0x7f800001)); !math.IsNaN(float64(h.Float32())) {
		t.Errorf("ToBF16(signalling NaN with low payload) = %#04x is not NaN", uint16(h))
	}
	r := rand.New(rand.NewPCG(1, 2))
	src := randSlice(r, 1000)
	h := make([]BF16, len(src))
	BF16FromFloat32(h, src)
	back := make([]float32, len(src))
	for i, v := range h {
		back[i] = v.Float32()
	}
	for i, v := range src {
		if d := math.Abs(float64(back[i] - v)); d > math.Abs(float64(v))/256 {
			t.Fatalf("bf16 round trip of %v gave %v", v, back[i])
		}
		if ToBF16(back[i]) != h[i] {
			t.Fatalf("bf16 widening is not exact at %v", back[i])
		}
	}
}

// TestGemmBF16 checks the bf16-weight GEMM and GEMV (both the dot-kernel
// path for few rows and the packed path for many) against the float64
// reference over the widened weights, on every kernel path.
func TestGemmBF16(t *testing.T) {
	pool := NewPool(3)
	defer pool.Close()
	r := rand.New(rand.NewPCG(4, 4))
	for _, ks := range paths() {
		for _, sh := range [][3]int{{1, 17, 3}, {3, 65, 63}, {8, 257, 1000}, {17, 63, 65}, {100, 1000, 257}, {1, 1000, 257}} {
			m, n, k := sh[0], sh[1], sh[2]
			lda, ldw, ldc := k+1, k+2, n+3
			a := randSlice(r, m*lda)
			w := make([]BF16, n*ldw)
			BF16FromFloat32(w, randSlice(r, n*ldw))
			w[ldw+1] = ToBF16(float32(math.Inf(1)))
			c := randSlice(r, m*ldc)
			for i := 0; i < m; i++ {
				for j := n; j < ldc; j++ {
					c[i*ldc+j] = 7
				}
			}
			bm := bmat{bf: w, ld: ldw, trans: true}
			ref, mag := refGemm(false, m, n, k, 0.5, a, lda, &bm, 1, c, ldc)
			gemm(ks, pool, false, true, m, n, k, 0.5, a, lda, bm, 1, c, ldc)
			checkAgainst(t, ks.name+"/bf16", k, m, n, c, ldc, ref, mag, 7)
		}
	}
	// The exported entry points on the default path.
	w := []BF16{ToBF16(1), ToBF16(2), ToBF16(3), ToBF16(4), ToBF16(5), ToBF16(6)}
	c := make([]float32, 2)
	GemmBF16(nil, 1, 2, 3, 2, []float32{1, 0, 1}, 3, w, 3, 0, c, 2)
	if c[0] != 8 || c[1] != 20 {
		t.Fatalf("GemmBF16 = %v, want [8 20]", c)
	}
}

// TestDotAxpy checks the vector kernels over lengths around the SIMD
// block sizes against float64.
func TestDotAxpy(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, ks := range paths() {
		for _, n := range []int{0, 1, 3, 17, 63, 64, 65, 257, 1000} {
			x, y := randSlice(r, n), randSlice(r, n)
			var want, mag float64
			for i := range x {
				want += float64(x[i]) * float64(y[i])
				mag += math.Abs(float64(x[i]) * float64(y[i]))
			}
			got := vecDot(ks, x, y)
			if math.Abs(float64(got)-want) > 2*float64(n+2)*mag/(1<<23)+1e-30 {
				t.Errorf("%s dot n=%d: %v, want %v", ks.name, n, got, want)
			}
			y0 := append([]float32(nil), y...)
			axpy(ks, -0.75, x, y)
			for i := range y {
				w := float64(y0[i]) - 0.75*float64(x[i])
				if math.Abs(float64(y[i])-w) > 1e-6*(1+math.Abs(w)) {
					t.Fatalf("%s axpy n=%d at %d: %v, want %v", ks.name, n, i, y[i], w)
				}
			}
		}
	}
	if got := Dot([]float32{1, 2, 3}, []float32{4, 5, 6, 99}); got != 32 {
		t.Fatalf("Dot = %v, want 32", got)
	}
	nan := float32(math.NaN())
	if !math.IsNaN(float64(Dot(make([]float32, 100), append(make([]float32, 99), nan)))) {
		t.Fatalf("Dot dropped a NaN")
	}
}

// TestMeasurePeak sanity-checks the peak estimate: positive, and the
// product of its parts.
func TestMeasurePeak(t *testing.T) {
	pk := MeasurePeak(t.Context(), 2)
	if pk.GFLOPS <= 0 || pk.Cores != 2 || pk.ClockGHz <= 0 || pk.FlopsPerCycle < 8 {
		t.Fatalf("implausible peak %+v", pk)
	}
	if d := pk.GFLOPS - 2*pk.ClockGHz*pk.FlopsPerCycle; math.Abs(d) > 1e-9*pk.GFLOPS {
		t.Fatalf("peak %v is not cores × clock × FLOP/cycle", pk)
	}
}
