package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
)

// paths returns the kernel paths to test: the generic one and, where the
// CPU has one, the fast one.
func paths() []*kernels {
	return append([]*kernels{&genericKernels}, allFastKernels()...)
}

// refGemm is the float64 reference: C = alpha·op(A)·op(B) + beta·C, and the
// magnitude Σ|alpha·a·b| + |beta·c| of every entry for error bounds.
func refGemm(transA bool, m, n, k int, alpha float32, a []float32, lda int, b *bmat, beta float32, c []float32, ldc int) (ref, mag []float64) {
	ref = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, s2 float64
			for l := 0; l < k; l++ {
				var av float32
				if transA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				p := float64(av) * float64(b.at(l, j))
				s += p
				s2 += math.Abs(p)
			}
			r := float64(alpha) * s
			g := math.Abs(float64(alpha)) * s2
			if beta != 0 {
				cv := float64(c[i*ldc+j])
				r += float64(beta) * cv
				g += math.Abs(float64(beta) * cv)
			}
			ref[i*n+j], mag[i*n+j] = r, g
		}
	}
	return ref, mag
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// checkAgainst compares C with the reference: NaN where the reference is
// NaN, the same infinity, and otherwise an error within float32 rounding
// of a k-term sum. It also checks that C's padding (columns beyond n) kept
// its sentinel.
func checkAgainst(t *testing.T, what string, k int, m, n int, c []float32, ldc int, ref, mag []float64, sentinel float32) {
	t.Helper()
	bad := 0
	for i := 0; i < m; i++ {
		for j := 0; j < ldc; j++ {
			got := c[i*ldc+j]
			if j >= n {
				if got != sentinel && !(math.IsNaN(float64(got)) && math.IsNaN(float64(sentinel))) {
					t.Errorf("%s: padding C[%d][%d] changed to %v", what, i, j, got)
					bad++
				}
				continue
			}
			want := ref[i*n+j]
			var ok bool
			switch {
			case math.IsNaN(want):
				ok = math.IsNaN(float64(got))
			case math.IsInf(want, 0):
				ok = float64(got) == want
			default:
				tol := 2*float64(k+4)*(1.0/(1<<23))*mag[i*n+j] + 1e-30
				ok = math.Abs(float64(got)-want) <= tol
			}
			if !ok {
				t.Errorf("%s: C[%d][%d] = %v, want %v (magnitude %g)", what, i, j, got, want, mag[i*n+j])
				bad++
			}
			if bad > 5 {
				t.FailNow()
			}
		}
	}
}

type gemmCase struct {
	m, n, k        int
	transA, transB bool
	alpha, beta    float32
	pad            int // extra stride on every matrix
}

func (g gemmCase) String() string {
	return fmt.Sprintf("m%d_n%d_k%d_tA%v_tB%v_a%g_b%g_pad%d", g.m, g.n, g.k, g.transA, g.transB, g.alpha, g.beta, g.pad)
}

// shapes returns the stored rows and columns of A (op(A) is m×k) and of B
// (op(B) is k×n).
func (g gemmCase) shapes() (ar, ac, br, bc int) {
	ar, ac, br, bc = g.m, g.k, g.k, g.n
	if g.transA {
		ar, ac = ac, ar
	}
	if g.transB {
		br, bc = bc, br
	}
	return ar, ac, br, bc
}

// runGemmCase runs one case on path ks with pool p and checks it.
func runGemmCase(t *testing.T, ks *kernels, p *Pool, tc gemmCase, seed uint64) []float32 {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	ar, ac, br, bc := tc.shapes()
	lda, ldb, ldc := max(ac+tc.pad, 1), max(bc+tc.pad, 1), max(tc.n+tc.pad, 1)
	a := randSlice(r, max(ar*lda, 1))
	b := randSlice(r, max(br*ldb, 1))
	c := randSlice(r, max(tc.m*ldc, 1))
	const sentinel = 12345
	for i := 0; i < tc.m; i++ {
		for j := tc.n; j < ldc; j++ {
			c[i*ldc+j] = sentinel
		}
	}
	bm := bmat{f32: b, ld: ldb, trans: tc.transB}
	ref, mag := refGemm(tc.transA, tc.m, tc.n, tc.k, tc.alpha, a, lda, &bm, tc.beta, c, ldc)
	if err := CheckGemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, a, lda, b, ldb, c, ldc); err != nil {
		t.Fatalf("%v: CheckGemm: %v", tc, err)
	}
	gemm(ks, p, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, bm, tc.beta, c, ldc)
	checkAgainst(t, ks.name+"/"+tc.String(), tc.k, tc.m, tc.n, c, ldc, ref, mag, sentinel)
	return c
}

func TestGemmOddShapes(t *testing.T) {
	pool := NewPool(3)
	defer pool.Close()
	sizes := []int{1, 3, 17, 63, 65}
	var cases []gemmCase
	i := 0
	for _, m := range sizes {
		for _, n := range sizes {
			for _, k := range sizes {
				for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
					i++
					tc := gemmCase{m: m, n: n, k: k, transA: tr[0], transB: tr[1], alpha: 1, beta: 0}
					switch i % 4 {
					case 1:
						tc.beta, tc.pad = 1, 3
					case 2:
						tc.alpha, tc.beta, tc.pad = -0.5, 0.25, 1
					case 3:
						tc.alpha, tc.beta = 2, -1
					}
					cases = append(cases, tc)
				}
			}
		}
	}
	// Larger shapes that cross the blocking boundaries (kc, task rows and
	// columns, the dot and direct paths' limits).
	for _, tc := range []gemmCase{
		{m: 1000, n: 17, k: 65, alpha: 1},
		{m: 3, n: 1000, k: 257, transB: true, alpha: 1, beta: 0.5, pad: 5},
		{m: 1, n: 1000, k: 1000, transB: true, alpha: 1},
		{m: 8, n: 257, k: 1000, transB: true, alpha: 1, pad: 2},
		{m: 17, n: 257, k: 1000, transB: true, alpha: 1},
		{m: 20, n: 1000, k: 257, alpha: 1, beta: 1, pad: 7},
		{m: 13, n: 1000, k: 300, alpha: 0.5, beta: 2, pad: 3},
		{m: 16, n: 100, k: 129, alpha: 1},
		{m: 257, n: 63, k: 1000, transA: true, alpha: 1},
		{m: 65, n: 1000, k: 257, transA: true, transB: true, alpha: 1.5, beta: 2},
		{m: 257, n: 257, k: 257, alpha: 1, pad: 1},
		{m: 130, n: 4100, k: 40, alpha: 1, beta: 1}, // more than gemmNC columns
		// Narrow C (n <= swapMaxN): computed transposed.
		{m: 1000, n: 1, k: 1000, alpha: 1},
		{m: 257, n: 3, k: 300, transB: true, alpha: 2, beta: 0.5, pad: 2},
		{m: 100, n: 8, k: 65, transA: true, alpha: 1, beta: 1, pad: 1},
		{m: 63, n: 5, k: 1000, transA: true, transB: true, alpha: -1, beta: 0},
		{m: 300, n: 30, k: 100, transA: true, alpha: 1, beta: 2, pad: 3},
		{m: 40, n: 17, k: 300, transA: true, transB: true, alpha: 1},
	} {
		cases = append(cases, tc)
	}
	for _, ks := range paths() {
		for ci, tc := range cases {
			var p *Pool
			if ci%2 == 0 {
				p = pool
			}
			runGemmCase(t, ks, p, tc, uint64(ci))
		}
	}
}

// TestGemmDeterministic checks that the thread count does not change the
// result bit for bit (so training is reproducible across --threads).
func TestGemmDeterministic(t *testing.T) {
	pool := NewPool(4)
	defer pool.Close()
	for _, ks := range paths() {
		for _, tc := range []gemmCase{
			{m: 300, n: 200, k: 700, alpha: 1},
			{m: 5, n: 300, k: 700, transB: true, alpha: 1},
			{m: 5, n: 300, k: 700, alpha: 1},
		} {
			c1 := runGemmCase(t, ks, nil, tc, 1)
			c2 := runGemmCase(t, ks, pool, tc, 1)
			for i := range c1 {
				if math.Float32bits(c1[i]) != math.Float32bits(c2[i]) {
					t.Fatalf("%s %v: serial and 4-thread results differ at %d: %v vs %v", ks.name, tc, i, c1[i], c2[i])
				}
			}
		}
	}
}

// TestGemmFastMatchesGeneric compares the fast paths with the portable one
// directly, on a shape each driver path handles.
func TestGemmFastMatchesGeneric(t *testing.T) {
	if len(allFastKernels()) == 0 {
		t.Logf("no SIMD path on this machine (%s); generic is tested against the reference", fastPathReason)
		return
	}
	for _, fast := range allFastKernels() {
		testFastMatchesGeneric(t, fast)
	}
}

func testFastMatchesGeneric(t *testing.T, fast *kernels) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, tc := range []gemmCase{
		{m: 97, n: 131, k: 333, alpha: 1},
		{m: 97, n: 131, k: 333, transA: true, transB: true, alpha: 1},
		{m: 7, n: 131, k: 333, transB: true, alpha: 1},
		{m: 7, n: 131, k: 333, alpha: 1},
	} {
		ar, ac, br, bc := tc.shapes()
		a, b := randSlice(r, ar*ac), randSlice(r, br*bc)
		c1, c2 := make([]float32, tc.m*tc.n), make([]float32, tc.m*tc.n)
		bm := bmat{f32: b, ld: bc, trans: tc.transB}
		gemm(&genericKernels, nil, tc.transA, tc.transB, tc.m, tc.n, tc.k, 1, a, ac, bm, 0, c1, tc.n)
		gemm(fast, nil, tc.transA, tc.transB, tc.m, tc.n, tc.k, 1, a, ac, bm, 0, c2, tc.n)
		for i := range c1 {
			if d := math.Abs(float64(c1[i] - c2[i])); d > 1e-4*(1+math.Abs(float64(c1[i]))) {
				t.Fatalf("%v: generic %v, %s %v at %d", tc, c1[i], fast.name, c2[i], i)
			}
		}
	}
}

// TestGemmNaNInf checks IEEE propagation: NaN in A poisons its row, ±Inf in
// B gives ±Inf or NaN as float64 arithmetic does, and beta == 0 overwrites
// NaNs already in C.
func TestGemmNaNInf(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, ks := range paths() {
		for _, tc := range []gemmCase{
			{m: 37, n: 45, k: 29, alpha: 1},
			{m: 37, n: 45, k: 29, transA: true, transB: true, alpha: 1, beta: 1},
			{m: 3, n: 45, k: 40, transB: true, alpha: 1},
			{m: 3, n: 45, k: 40, alpha: 1, beta: 0.5},
		} {
			r := rand.New(rand.NewPCG(5, 5))
			ar, ac, br, bc := tc.shapes()
			a, b := randSlice(r, ar*ac), randSlice(r, br*bc)
			c := randSlice(r, tc.m*tc.n)
			bm := bmat{f32: b, ld: bc, trans: tc.transB}
			// NaN at op(A)[1][2], +Inf at op(B)[3][4] and -Inf at op(B)[5][4].
			setA := func(i, l int, v float32) {
				if tc.transA {
					a[l*ac+i] = v
				} else {
					a[i*ac+l] = v
				}
			}
			setB := func(l, j int, v float32) {
				if tc.transB {
					b[j*bc+l] = v
				} else {
					b[l*bc+j] = v
				}
			}
			setA(1, 2, nan)
			setA(0, 5, 1)
			setA(0, 6, 1)
			setB(3, 4, inf)
			setB(5, 7, -inf)
			setB(6, 7, inf)
			if tc.beta == 0 {
				c[0] = nan // must be overwritten
			} else {
				c[tc.n+9] = nan // must propagate
			}
			ref, mag := refGemm(tc.transA, tc.m, tc.n, tc.k, tc.alpha, a, ac, &bm, tc.beta, c, tc.n)
			gemm(ks, nil, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, ac, bm, tc.beta, c, tc.n)
			checkAgainst(t, ks.name+"/nan/"+tc.String(), tc.k, tc.m, tc.n, c, tc.n, ref, mag, 0)
			if !math.IsNaN(float64(c[1*tc.n+20])) {
				t.Errorf("%s %v: NaN in A row 1 did not reach C", ks.name, tc)
			}
			if !math.IsNaN(float64(c[0*tc.n+7])) {
				t.Errorf("%s %v: +Inf and -Inf in one column should give NaN, got %v", ks.name, tc, c[7])
			}
		}
	}
}

func TestGemmScaleOnly(t *testing.T) {
	c := []float32{1, 2, 3, 4}
	a := []float32{float32(math.NaN()), 1}
	Gemm(nil, false, false, 2, 2, 1, 0, a, 1, []float32{1, 1}, 2, 3, c, 2)
	for i, want := range []float32{3, 6, 9, 12} {
		if c[i] != want {
			t.Fatalf("alpha=0: C = %v, want beta·C", c)
		}
	}
	Gemm(nil, false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0, c, 2)
	for _, v := range c {
		if v != 0 {
			t.Fatalf("k=0, beta=0: C = %v, want zeros", c)
		}
	}
}

func TestCheckGemm(t *testing.T) {
	a := make([]float32, 6)
	for _, tc := range []struct {
		name           string
		transA         bool
		m, n, k        int
		lda, ldb, ldc  int
		la, lb, lc     int
		wantSubstrings string
	}{
		{"negative", false, -1, 2, 2, 2, 2, 2, 4, 4, 4, "negative"},
		{"short lda", false, 2, 2, 3, 2, 2, 2, 6, 6, 4, "A is 2×3 but its row stride is 2"},
		{"short A", false, 2, 2, 3, 3, 2, 2, 5, 6, 4, "A (2×3, stride 3) needs 6"},
		{"short C", true, 2, 3, 2, 2, 3, 3, 4, 6, 5, "C (2×3, stride 3) needs 6"},
	} {
		err := CheckGemm(tc.transA, false, tc.m, tc.n, tc.k, make([]float32, tc.la), tc.lda, make([]float32, tc.lb), tc.ldb, make([]float32, tc.lc), tc.ldc)
		if err == nil || !strings.Contains(err.Error(), tc.wantSubstrings) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantSubstrings)
		}
	}
	if err := CheckGemm(false, true, 2, 3, 3, a, 3, make([]float32, 9), 3, a, 3); err != nil {
		t.Errorf("valid shapes rejected: %v", err)
	}
	defer func() {
		if r := recover(); r == nil {
			t.Errorf("Gemm with a short C did not panic")
		}
	}()
	Gemm(nil, false, false, 2, 2, 2, 1, a, 2, a, 2, 0, a[:3], 2)
}

func TestPoolRun(t *testing.T) {
	for _, threads := range []int{1, 2, 5} {
		p := NewPool(threads)
		if p.Threads() != threads {
			t.Fatalf("Threads() = %d, want %d", p.Threads(), threads)
		}
		for _, n := range []int{0, 1, 7, 1000} {
			hits := make([]atomic.Int32, n)
			p.Run(n, func(i int) { hits[i].Add(1) })
			for i := range hits {
				if h := hits[i].Load(); h != 1 {
					t.Fatalf("threads=%d n=%d: f(%d) ran %d times", threads, n, i, h)
				}
			}
		}
		// Nested Run from inside a worker must not deadlock.
		var total atomic.Int64
		p.Run(8, func(i int) {
			p.Run(8, func(j int) { total.Add(int64(j)) })
		})
		if total.Load() != 8*28 {
			t.Fatalf("nested Run total %d, want %d", total.Load(), 8*28)
		}
		p.Close()
		p.Close()
		ran := 0
		p.Run(3, func(i int) { ran++ })
		if ran != 3 {
			t.Fatalf("Run after Close ran %d of 3", ran)
		}
	}
	var nilPool *Pool
	if nilPool.Threads() != 1 {
		t.Fatalf("nil pool Threads() = %d", nilPool.Threads())
	}
	order := []int{}
	nilPool.Run(3, func(i int) { order = append(order, i) })
	if fmt.Sprint(order) != "[0 1 2]" {
		t.Fatalf("nil pool Run order %v", order)
	}
}
