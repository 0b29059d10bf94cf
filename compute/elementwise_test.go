package compute

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

var ewSizes = []int{1, 3, 17, 63, 65, 257, 1000}

func randVec(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

func closeTo(got float32, want, rtol, atol float64) bool {
	return math.Abs(float64(got)-want) <= atol+rtol*math.Abs(want)
}

func checkVec(t *testing.T, what string, got []float32, want []float64, rtol, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !closeTo(got[i], want[i], rtol, atol) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestRMSNormAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range ewSizes {
		rows := 3
		x := randVec(r, rows*d, 1.5)
		g := randVec(r, d, 1)
		out := make([]float32, rows*d)
		rstd := make([]float32, rows)
		const eps = 1e-5
		RMSNorm(out, x, g, rows, d, eps, rstd)
		want := make([]float64, rows*d)
		for row := 0; row < rows; row++ {
			var ss float64
			for i := 0; i < d; i++ {
				ss += float64(x[row*d+i]) * float64(x[row*d+i])
			}
			s := 1 / math.Sqrt(ss/float64(d)+eps)
			if !closeTo(rstd[row], s, 1e-5, 0) {
				t.Fatalf("d=%d rstd %v want %v", d, rstd[row], s)
			}
			for i := 0; i < d; i++ {
				want[row*d+i] = float64(x[row*d+i]) * s * float64(g[i])
			}
		}
		checkVec(t, "rmsnorm", out, want, 1e-5, 1e-6)

		// Backward against float64 finite differences of L = Σ out·w.
		w := randVec(r, rows*d, 1)
		dx := make([]float32, rows*d)
		dg := make([]float32, d)
		for i := range dx {
			dx[i] = 0.5 // accumulation: result must be 0.5 + grad
		}
		RMSNormBackward(dx, dg, w, x, g, rstd, rows, d)
		loss := func(x64, g64 []float64) float64 {
			var l float64
			for row := 0; row < rows; row++ {
				var ss float64
				for i := 0; i < d; i++ {
					ss += x64[row*d+i] * x64[row*d+i]
				}
				s := 1 / math.Sqrt(ss/float64(d)+eps)
				for i := 0; i < d; i++ {
					l += x64[row*d+i] * s * g64[i] * float64(w[row*d+i])
				}
			}
			return l
		}
		x64, g64 := to64(x), to64(g)
		for _, i := range probe(r, rows*d) {
			fd := centralDiff(x64, i, func() float64 { return loss(x64, g64) })
			if !closeTo(dx[i]-0.5, fd, 1e-3, 1e-4) {
				t.Fatalf("d=%d dx[%d] = %v, finite difference %v", d, i, dx[i]-0.5, fd)
			}
		}
		for _, i := range probe(r, d) {
			fd := centralDiff(g64, i, func() float64 { return loss(x64, g64) })
			if !closeTo(dg[i], fd, 1e-3, 1e-4) {
				t.Fatalf("d=%d dg[%d] = %v, finite difference %v", d, i, dg[i], fd)
			}
		}
	}
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// probe returns up to 8 indices in [0,n) to check by finite differences.
func probe(r *rand.Rand, n int) []int {
	if n <= 8 {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := []int{0, n - 1}
	for len(idx) < 8 {
		idx = append(idx, r.IntN(n))
	}
	return idx
}

func centralDiff(x []float64, i int, f func() float64) float64 {
	const h = 1e-6
	old := x[i]
	x[i] = old + h
	p := f()
	x[i] = old - h
	m := f()
	x[i] = old
	return (p - m) / (2 * h)
}

func TestRoPEAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, hd := range []int{2, 4, 16, 64, 128} {
		const heads, maxPos = 3, 50
		rope, err := ropeTheta(hd, maxPos, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, pos := range []int{0, 1, 17, 49, 63, 1000} { // 63, 1000 beyond the table
			x := randVec(r, heads*hd, 1)
			y := slices.Clone(x)
			rope.Apply(y, heads, pos)
			want := make([]float64, heads*hd)
			h := hd / 2
			for hh := 0; hh < heads; hh++ {
				for i := 0; i < hd; i++ {
					j := i % h
					ang := float64(pos) * math.Pow(10000, -2*float64(j)/float64(hd))
					var rot float64 // rotate_half(x)[i]
					if i < h {
						rot = -float64(x[hh*hd+i+h])
					} else {
						rot = float64(x[hh*hd+i-h])
					}
					want[hh*hd+i] = float64(x[hh*hd+i])*math.Cos(ang) + rot*math.Sin(ang)
				}
			}
			checkVec(t, "rope", y, want, 1e-4, 1e-5)
			// Backward is the transpose (inverse) rotation: Backward(Apply(x)) = x,
			// and <Apply(x), w> = <x, Backward(w)>.
			w := randVec(r, heads*hd, 1)
			bw := slices.Clone(w)
			rope.Backward(bw, heads, pos)
			var lhs, rhs float64
			for i := range x {
				lhs += float64(y[i]) * float64(w[i])
				rhs += float64(x[i]) * float64(bw[i])
			}
			if math.Abs(lhs-rhs) > 1e-4*(1+math.Abs(lhs)) {
				t.Fatalf("hd=%d pos=%d: <Rx,w>=%v but <x,Rᵀw>=%v", hd, pos, lhs, rhs)
			}
		}
	}
	for _, bad := range [][]float64{nil, {1, 0}, {math.Inf(1)}} {
		if _, err := NewRoPEFreqs(bad, 4, 1); err == nil {
			t.Fatalf("inverse frequencies %v accepted", bad)
		}
	}
	if _, err := NewRoPEFreqs([]float64{1}, 4, 0); err == nil {
		t.Fatal("zero attention factor accepted")
	}
}

// ropeTheta returns the plain RoPE tables of head dimension hd and base
// theta: inverse frequencies theta^(−2i/hd).
func ropeTheta(hd, maxPos int, theta float64) (*RoPE, error) {
	inv := make([]float64, hd/2)
	for i := range inv {
		inv[i] = math.Pow(theta, -2*float64(i)/float64(hd))
	}
	return NewRoPEFreqs(inv, maxPos, 1)
}

func TestSwiGLUAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, n := range ewSizes {
		g := randVec(r, n, 3)
		u := randVec(r, n, 1)
		if n > 2 {
			g[0], g[1] = 80, -80 // saturation must stay finite
		}
		out := make([]float32, n)
		want := make([]float64, n)
		SwiGLU(out, g, u)
		for i, v := range g {
			want[i] = float64(v) * sig(float64(v)) * float64(u[i])
		}
		checkVec(t, "swiglu", out, want, 1e-5, 1e-7)

		dout := randVec(r, n, 1)
		dg := make([]float32, n)
		du := make([]float32, n)
		SwiGLUBackward(dg, du, dout, g, u)
		g64, u64 := to64(g), to64(u)
		lossGU := func() float64 {
			var l float64
			for i := range g64 {
				l += g64[i] * sig(g64[i]) * u64[i] * float64(dout[i])
			}
			return l
		}
		for _, i := range probe(r, n) {
			if fd := centralDiff(g64, i, lossGU); !closeTo(dg[i], fd, 1e-3, 1e-5) {
				t.Fatalf("n=%d dgate[%d]=%v fd %v", n, i, dg[i], fd)
			}
			if fd := centralDiff(u64, i, lossGU); !closeTo(du[i], fd, 1e-3, 1e-5) {
				t.Fatalf("n=%d dup[%d]=%v fd %v", n, i, du[i], fd)
			}
		}
		// Aliased outputs give the same result.
		ga, ua := slices.Clone(g), slices.Clone(u)
		SwiGLUBackward(ga, ua, dout, ga, ua)
		if !slices.Equal(ga, dg) || !slices.Equal(ua, du) {
			t.Fatalf("n=%d: aliased SwiGLUBackward differs", n)
		}
	}
}

func TestSoftmaxAndCrossEntropy(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range ewSizes {
		rows := 4
		x := randVec(r, rows*n, 5)
		x[0] += 200 // stability: a huge logit must not overflow
		y := slices.Clone(x)
		for row := 0; row < rows; row++ {
			SoftmaxRow(y[row*n : (row+1)*n])
		}
		want := make([]float64, rows*n)
		wantLS := make([]float64, rows*n)
		for row := 0; row < rows; row++ {
			m := math.Inf(-1)
			for i := 0; i < n; i++ {
				m = math.Max(m, float64(x[row*n+i]))
			}
			var s float64
			for i := 0; i < n; i++ {
				s += math.Exp(float64(x[row*n+i]) - m)
			}
			for i := 0; i < n; i++ {
				want[row*n+i] = math.Exp(float64(x[row*n+i])-m) / s
				wantLS[row*n+i] = float64(x[row*n+i]) - m - math.Log(s)
			}
		}
		checkVec(t, "softmax", y, want, 1e-4, 1e-7)

		// SoftmaxRowLSE gives the same softmax and the logsumexp, from which
		// ExpScale recomputes it.
		for row := 0; row < rows; row++ {
			xr := slices.Clone(x[row*n : (row+1)*n])
			lse := SoftmaxRowLSE(xr)
			if !slices.Equal(xr, y[row*n:(row+1)*n]) {
				t.Fatalf("n=%d: SoftmaxRowLSE differs from SoftmaxRow", n)
			}
			if want := LogSumExp(x[row*n : (row+1)*n]); !closeTo(lse, want, 1e-6, 1e-6) {
				t.Fatalf("n=%d: lse %v, want %v", n, lse, want)
			}
			re := make([]float32, n)
			ExpScale(re, x[row*n:(row+1)*n], lse, 1)
			checkVec(t, "exp(x-lse)", re, want[row*n:(row+1)*n], 1e-4, 1e-7)
		}

		// Softmax backward vs finite differences of Σ softmax(x)·w.
		w := randVec(r, n, 1)
		dx := make([]float32, n)
		x0 := randVec(r, n, 1)
		y0 := slices.Clone(x0)
		SoftmaxRow(y0)
		SoftmaxBackwardScaled(dx, w, y0, 1)
		x64 := to64(x0)
		f := func() float64 {
			m := math.Inf(-1)
			for _, v := range x64 {
				m = math.Max(m, v)
			}
			var s, l float64
			for _, v := range x64 {
				s += math.Exp(v - m)
			}
			for i, v := range x64 {
				l += math.Exp(v-m) / s * float64(w[i])
			}
			return l
		}
		for _, i := range probe(r, n) {
			if fd := centralDiff(x64, i, f); !closeTo(dx[i], fd, 1e-3, 1e-5) {
				t.Fatalf("n=%d softmax dx[%d]=%v fd %v", n, i, dx[i], fd)
			}
		}

		// Cross-entropy: row 1 ignored.
		targets := make([]int32, rows)
		for i := range targets {
			targets[i] = int32(r.IntN(n))
		}
		targets[1] = -1
		dl := make([]float32, rows*n)
		const scale = 0.25
		lse := make([]float32, rows)
		sum, cnt, err := CrossEntropyLSE(x, targets, rows, n, lse)
		if err != nil {
			t.Fatal(err)
		}
		CrossEntropyBackward(dl, x, lse, targets, rows, n, scale)
		if cnt != rows-1 {
			t.Fatalf("counted %d rows, want %d", cnt, rows-1)
		}
		var wantSum float64
		for row := 0; row < rows; row++ {
			if targets[row] < 0 {
				for i := 0; i < n; i++ {
					if dl[row*n+i] != 0 {
						t.Fatalf("ignored row has gradient %v", dl[row*n+i])
					}
				}
				continue
			}
			wantSum -= wantLS[row*n+int(targets[row])]
			for i := 0; i < n; i++ {
				g := want[row*n+i]
				if i == int(targets[row]) {
					g -= 1
				}
				if !closeTo(dl[row*n+i], scale*g, 1e-4, 1e-7) {
					t.Fatalf("n=%d dlogits[%d,%d]=%v want %v", n, row, i, dl[row*n+i], scale*g)
				}
			}
		}
		if math.Abs(sum-wantSum) > 1e-4*(1+math.Abs(wantSum)) {
			t.Fatalf("n=%d loss sum %v want %v", n, sum, wantSum)
		}
		// In place (dlogits aliasing logits) gives the same gradient.
		xb := slices.Clone(x)
		CrossEntropyBackward(xb, xb, lse, targets, rows, n, scale)
		if !slices.Equal(xb, dl) {
			t.Fatalf("n=%d: in-place CrossEntropyBackward differs", n)
		}
		targets[0] = int32(n)
		if _, _, err := CrossEntropyLSE(x, targets, rows, n, lse); err == nil {
			t.Fatal("target out of vocabulary accepted by CrossEntropyLSE")
		}
	}
}

func TestNaNInfPropagation(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, n := range ewSizes {
		for _, bad := range []float32{nan, inf} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(i%7) - 3
			}
			x[n/2] = bad
			out := make([]float32, n)
			g := make([]float32, n)
			for i := range g {
				g[i] = 1
			}
			RMSNorm(out, x, g, 1, n, 1e-5, nil)
			if !hasNaN(out) {
				t.Fatalf("n=%d rmsnorm(%v) lost the non-finite input: %v", n, bad, out[:min(n, 4)])
			}
			y := slices.Clone(x)
			SoftmaxRow(y)
			if !hasNaN(y) {
				t.Fatalf("n=%d softmax(%v) gave finite output", n, bad)
			}
			sum, _, err := CrossEntropyLSE(x, []int32{0}, 1, n, make([]float32, 1))
			if err != nil {
				t.Fatal(err)
			}
			if !math.IsNaN(sum) && !math.IsInf(sum, 0) {
				t.Fatalf("n=%d cross-entropy with %v logit = %v", n, bad, sum)
			}
			SwiGLU(out, x, g)
			if !math.IsNaN(float64(out[n/2])) && !math.IsInf(float64(out[n/2]), 0) {
				t.Fatalf("n=%d swiglu(%v) = %v", n, bad, out[n/2])
			}
			idx := make([]int32, n)
			if k := TopK(x, n, idx); k != n {
				t.Fatalf("topk returned %d", k)
			}
			if bad == inf && idx[0] != int32(n/2) {
				t.Fatalf("n=%d: +Inf not ranked first", n)
			}
			if bad == nan && n > 1 && idx[n-1] != int32(n/2) {
				t.Fatalf("n=%d: NaN not ranked last", n)
			}
		}
	}
	rope, _ := ropeTheta(4, 8, 10000)
	v := []float32{1, nan, 2, 3}
	rope.Apply(v, 1, 3)
	if !hasNaN(v) {
		t.Fatal("rope dropped NaN")
	}
}

func hasNaN(x []float32) bool {
	for _, v := range x {
		if v != v || math.IsInf(float64(v), 0) {
			return true
		}
	}
	return false
}

func TestTopKAgainstSort(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, n := range ewSizes {
		for _, k := range []int{1, 2, 3, 16, 17, 63, n} {
			s := make([]float32, n)
			for i := range s {
				s[i] = float32(r.IntN(5)) // many ties
			}
			ref := make([]int32, n)
			for i := range ref {
				ref[i] = int32(i)
			}
			sort.SliceStable(ref, func(a, b int) bool { return s[ref[a]] > s[ref[b]] })
			idx := make([]int32, k)
			got := TopK(s, k, idx)
			if got != min(k, n) {
				t.Fatalf("n=%d k=%d: wrote %d", n, k, got)
			}
			if !slices.Equal(idx[:got], ref[:got]) {
				t.Fatalf("n=%d k=%d: got %v want %v", n, k, idx[:got], ref[:got])
			}
		}
	}
}

func TestGatherScatterRows(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, d := range ewSizes {
		rows := 5
		src := randVec(r, rows*d, 1)
		idx := []int32{4, 0, 4, 2}
		g := make([]float32, len(idx)*d)
		GatherRows(g, src, idx, d)
		for i, j := range idx {
			if !slices.Equal(g[i*d:i*d+d], src[int(j)*d:int(j)*d+d]) {
				t.Fatalf("d=%d gather row %d wrong", d, i)
			}
		}
		w := []float32{0.5, 2, -1, 3}
		dst := make([]float32, rows*d)
		ScatterAddRows(dst, g, idx, w, d)
		for c := 0; c < d; c++ {
			want := []float64{
				2 * float64(src[c]), 0, 3 * float64(src[2*d+c]), 0,
				(0.5 - 1) * float64(src[4*d+c]),
			}
			for row := range want {
				if !closeTo(dst[row*d+c], want[row], 1e-6, 1e-7) {
					t.Fatalf("d=%d scatter [%d,%d]=%v want %v", d, row, c, dst[row*d+c], want[row])
				}
			}
		}
		dst2 := make([]float32, rows*d)
		ScatterAddRows(dst2, g, idx, nil, d)
		if !closeTo(dst2[4*d], 2*float64(src[4*d]), 1e-6, 0) {
			t.Fatalf("unweighted scatter wrong")
		}
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	g, u := randVec(r, 4096, 1), randVec(r, 4096, 1)
	out := make([]float32, 4096)
	b.SetBytes(4096 * 12)
	for b.Loop() {
		SwiGLU(out, g, u)
	}
}

func TestExp32(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var worst float64
	check := func(x float32) {
		got := float64(Exp32(x))
		want := math.Exp(float64(x))
		if want > math.MaxFloat32 {
			if !math.IsInf(got, 1) {
				t.Fatalf("Exp32(%v) = %v, want +Inf", x, got)
			}
			return
		}
		if want < 1.2e-38 { // subnormal range: absolute error
			if math.Abs(got-want) > 1.5e-45 {
				t.Fatalf("Exp32(%v) = %v, want %v", x, got, want)
			}
			return
		}
		rel := math.Abs(got-want) / want
		worst = math.Max(worst, rel)
		if rel > 3e-7 {
			t.Fatalf("Exp32(%v) = %v, want %v (rel %.3g)", x, got, want, rel)
		}
	}
	for i := 0; i < 200000; i++ {
		check(float32((r.Float64()*2 - 1) * 110))
		check(float32(r.NormFloat64()))
	}
	for _, x := range []float32{0, -0, 1, -1, 88.72, 88.73, -87.33, -87.34, -103.9, -104, 1e-8, -1e-8} {
		check(x)
	}
	if v := Exp32(float32(math.NaN())); v == v {
		t.Fatal("Exp32(NaN) is not NaN")
	}
	if Exp32(float32(math.Inf(-1))) != 0 || !math.IsInf(float64(Exp32(float32(math.Inf(1)))), 1) {
		t.Fatal("Exp32(±Inf) wrong")
	}
	t.Logf("worst relative error %.3g", worst)
}

func BenchmarkExp32(b *testing.B) {
	x := randVec(rand.New(rand.NewPCG(1, 1)), 4096, 3)
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += Exp32(v)
		}
	}
	_ = s
}

func BenchmarkMathExp(b *testing.B) {
	x := randVec(rand.New(rand.NewPCG(1, 1)), 4096, 3)
	var s float64
	for b.Loop() {
		for _, v := range x {
			s += math.Exp(float64(v))
		}
	}
	_ = s
}

// TestVectorKernelsMatchGeneric compares the dispatched (SIMD where the CPU
// has it) exp/softmax/SwiGLU kernels with the portable Go ones, over every
// tail length and special values.
func TestVectorKernelsMatchGeneric(t *testing.T) {
	t.Logf("AVX-512 element-wise kernels: %v", ewAVX512)
	r := rand.New(rand.NewPCG(15, 16))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	same := func(what string, i int, got, want float32) {
		t.Helper()
		if got != got || want != want {
			if (got != got) != (want != want) {
				t.Fatalf("%s[%d]: got %v, want %v", what, i, got, want)
			}
			return
		}
		if math.IsInf(float64(want), 0) || math.IsInf(float64(got), 0) {
			if got != want {
				t.Fatalf("%s[%d]: got %v, want %v", what, i, got, want)
			}
			return
		}
		if !closeTo(got, float64(want), 5e-7, 1e-35) {
			t.Fatalf("%s[%d]: got %v, want %v", what, i, got, want)
		}
	}
	for n := 0; n <= 70; n++ {
		x := randVec(r, n, 20)
		if n > 5 {
			x[0], x[1], x[2], x[3], x[4] = nan, -inf, -200, -103.5, 88.5
		}
		shift := float32(-1.5)
		y1, y2 := make([]float32, n), make([]float32, n)
		s1 := expScale(x, y1, shift, 0.25)
		s2 := expScaleGeneric(x, y2, shift, 0.25)
		for i := range y1 {
			same("expScale", i, y1[i], y2[i])
		}
		if s3 := expScale(x, nil, shift, 1); s3 != s1 && !(s1 != s1 && s3 != s3) {
			t.Fatalf("n=%d: sum without store %v, with store %v", n, s3, s1)
		}
		if n > 5 {
			if s1 == s1 {
				t.Fatalf("n=%d: NaN input gave sum %v", n, s1)
			}
		} else if !closeTo(s1, float64(s2), 1e-6, 1e-30) {
			t.Fatalf("n=%d: sum %v, generic %v", n, s1, s2)
		}
		g := randVec(r, n, 4)
		u := randVec(r, n, 1)
		if n > 3 {
			g[0], g[1], g[2] = -90, 90, nan
		}
		o1, o2 := make([]float32, n), make([]float32, n)
		swiglu(o1, g, u)
		swigluGeneric(o2, g, u)
		for i := range o1 {
			same("swiglu", i, o1[i], o2[i])
		}
		dout := randVec(r, n, 1)
		a1, b1, a2, b2 := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		swigluBackward(a1, b1, dout, g, u)
		swigluBackwardGeneric(a2, b2, dout, g, u)
		for i := range a1 {
			same("dup", i, b1[i], b2[i])
			if g[i] != g[i] || math.Abs(float64(g[i])) > 80 {
				same("dgate", i, a1[i], a2[i])
				continue
			}
			// 1 + g·(1−s) cancels near g ≈ −1.28: bound the error by the
			// size of the terms rather than of the result.
			sg := float64(Sigmoid(g[i]))
			tol := 1e-6 * math.Abs(float64(dout[i]*u[i])) * sg * (1 + math.Abs(float64(g[i])))
			if math.Abs(float64(a1[i]-a2[i])) > tol+1e-37 {
				t.Fatalf("dgate[%d] (g=%v): got %v, want %v", i, g[i], a1[i], a2[i])
			}
		}
	}
}

// FuzzTopK checks TopK against a stable sort on arbitrary scores (bytes
// mapped to a few values, so ties are common, and 0xff to NaN).
func FuzzTopK(f *testing.F) {
	f.Add([]byte{3, 1, 3, 0xff, 2}, uint8(2))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint8(17))
	f.Fuzz(func(t *testing.T, raw []byte, k8 uint8) {
		s := make([]float32, len(raw))
		for i, b := range raw {
			s[i] = float32(b % 7)
			if b == 0xff {
				s[i] = float32(math.NaN())
			}
		}
		k := int(k8)
		ref := make([]int32, len(s))
		for i := range ref {
			ref[i] = int32(i)
		}
		sort.SliceStable(ref, func(a, b int) bool { return better(s[ref[a]], ref[a], s[ref[b]], ref[b]) })
		idx := make([]int32, k)
		n := TopK(s, k, idx)
		if n != min(k, len(s)) || !slices.Equal(idx[:n], ref[:n]) {
			t.Fatalf("TopK(%v, %d) = %v, want %v", s, k, idx[:n], ref[:n])
		}
	})
}

// TestDotMatchesReference checks Dot against a float64 sum
// for lengths that exercise the vector body and the scalar tail, and that a
// short b panics instead of reading out of bounds.
func TestDotMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, n := range []int{0, 1, 3, 15, 16, 17, 63, 64, 65, 200} {
		a := make([]float32, n)
		b := make([]float32, n+2)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		var want, mag float64
		for i := range a {
			want += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		got := Dot(a, b)
		if d := math.Abs(float64(got) - want); d > 1e-5*(mag+1) {
			t.Errorf("n=%d: Dot %g, float64 reference %g", n, got, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Dot with a short b did not panic")
		}
	}()
	Dot(make([]float32, 5), make([]float32, 4))
}
