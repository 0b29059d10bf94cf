package compute

import (
	"math"
	"math/rand/v2"
	"testing"
)

// adamwRef is a float64 reference of the AdamW update.
func adamwRef(p, g, m, v []float64, lr, b1, b2, eps, wd float64, step int) {
	for i := range p {
		p[i] *= 1 - lr*wd
		m[i] = b1*m[i] + (1-b1)*g[i]
		v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
		mh := m[i] / (1 - math.Pow(b1, float64(step)))
		vh := v[i] / (1 - math.Pow(b2, float64(step)))
		p[i] -= lr * mh / (math.Sqrt(vh) + eps)
	}
}

func TestAdamWMatchesFloat64Reference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 1000
	p := make([]float32, n)
	m := make([]float32, n)
	v := make([]float32, n)
	pr := make([]float64, n)
	mr := make([]float64, n)
	vr := make([]float64, n)
	for i := range p {
		p[i] = float32(r.NormFloat64())
		pr[i] = float64(p[i])
	}
	const lr, b1, b2, eps, wd = 3e-3, 0.9, 0.95, 1e-8, 0.1
	for step := 1; step <= 50; step++ {
		g := make([]float32, n)
		gr := make([]float64, n)
		for i := range g {
			g[i] = float32(r.NormFloat64() * 0.1)
			if i%97 == 0 {
				g[i] = 0 // zero gradients exercise the eps path
			}
			gr[i] = float64(g[i])
		}
		adamW(p, g, m, v, lr, b1, b2, eps, wd, step)
		adamwRef(pr, gr, mr, vr, lr, b1, b2, eps, wd, step)
	}
	for i := range p {
		if d := math.Abs(float64(p[i]) - pr[i]); d > 1e-5*(1+math.Abs(pr[i])) {
			t.Fatalf("p[%d] = %v, reference %v (diff %g)", i, p[i], pr[i], d)
		}
		if d := math.Abs(float64(v[i]) - vr[i]); d > 1e-5*(vr[i]+1e-12) {
			t.Fatalf("v[%d] = %v, reference %v", i, v[i], vr[i])
		}
	}
}

func TestAdamWFirstStepIsSignTimesLR(t *testing.T) {
	// With bias correction the first update is lr·g/(|g|+eps) ≈ lr·sign(g).
	p := []float32{1, 1, 1}
	g := []float32{0.5, -2, 1e-3}
	m := make([]float32, 3)
	v := make([]float32, 3)
	adamW(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0, 1)
	want := []float32{0.99, 1.01, 0.99}
	for i := range p {
		if math.Abs(float64(p[i]-want[i])) > 1e-5 {
			t.Fatalf("p[%d] = %v, want %v", i, p[i], want[i])
		}
	}
}

func TestAdamWMaskedSkipsDecayOnRanges(t *testing.T) {
	n := 10
	p := make([]float32, n)
	for i := range p {
		p[i] = 1
	}
	g := make([]float32, n) // zero gradient: only decay moves p
	m := make([]float32, n)
	v := make([]float32, n)
	AdamWMasked(p, g, m, v, [][2]int{{2, 4}, {7, 8}}, 0.1, 0.9, 0.999, 1e-8, 0.5, 1)
	for i, x := range p {
		want := float32(0.95)
		if (i >= 2 && i < 4) || i == 7 {
			want = 1
		}
		if x != want {
			t.Fatalf("p[%d] = %v, want %v (all %v)", i, x, want, p)
		}
	}
}

func TestAdamWChunkedIsBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 777
	mk := func() []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	p, g := mk(), mk()
	m, v := make([]float32, n), make([]float32, n)
	p2 := append([]float32(nil), p...)
	m2, v2 := make([]float32, n), make([]float32, n)
	adamW(p, g, m, v, 1e-3, 0.9, 0.95, 1e-8, 0.1, 3)
	for s := 0; s < n; s += 100 {
		e := min(s+100, n)
		adamW(p2[s:e], g[s:e], m2[s:e], v2[s:e], 1e-3, 0.9, 0.95, 1e-8, 0.1, 3)
	}
	for i := range p {
		if math.Float32bits(p[i]) != math.Float32bits(p2[i]) {
			t.Fatalf("chunked update differs at %d", i)
		}
	}
}

func BenchmarkAdamW(b *testing.B) {
	n := 1 << 22
	p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i] = float32(i%17) * 0.01
	}
	b.SetBytes(int64(n) * 4 * 7) // read p g m v, write p m v
	for i := 0; i < b.N; i++ {
		adamW(p, g, m, v, 1e-3, 0.9, 0.95, 1e-8, 0.1, i+1)
	}
}

func TestAdamWVectorMatchesGenericBits(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{0, 1, 15, 16, 17, 100, 1023, 4096} {
		mk := func(scale float64) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.NormFloat64() * scale)
			}
			return x
		}
		p, g, m := mk(1), mk(0.1), mk(0.01)
		v := mk(0.01)
		for i := range v {
			v[i] *= v[i]
			if i%7 == 0 {
				g[i], m[i], v[i] = 0, 0, 0
			}
		}
		p2, g2, m2, v2 := append([]float32(nil), p...), append([]float32(nil), g...), append([]float32(nil), m...), append([]float32(nil), v...)
		adamW(p, g, m, v, 1e-3, 0.9, 0.95, 1e-8, 0.1, 7)
		k := newAdamWConsts(1e-3, 0.9, 0.95, 1e-8, 0.1, 7)
		adamwGeneric(p2, g2, m2, v2, &k)
		for i := range p {
			if math.Float32bits(p[i]) != math.Float32bits(p2[i]) || math.Float32bits(m[i]) != math.Float32bits(m2[i]) ||
				math.Float32bits(v[i]) != math.Float32bits(v2[i]) {
				t.Fatalf("n=%d: element %d: vector path p,m,v = %v,%v,%v; generic %v,%v,%v", n, i, p[i], m[i], v[i], p2[i], m2[i], v2[i])
			}
		}
	}
}
