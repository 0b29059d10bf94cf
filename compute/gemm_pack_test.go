package compute

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMicroTAMatchesPacked checks that the in-place transposed-A
// micro-kernel gives the packed micro-kernel's result bit for bit (the
// claim that lets gemmBlocked skip packing A for transA products).
func TestMicroTAMatchesPacked(t *testing.T) {
	ran := 0
	for _, ks := range paths() {
		microTA := microTAFor(ks)
		if microTA == nil {
			continue
		}
		ran++
		mr, nr := ks.mr, ks.nr
		r := rand.New(rand.NewPCG(1, 2))
		for _, kc := range []int{1, 7, 64, 513} {
			for _, add := range []bool{false, true} {
				lda := mr + 5
				a := make([]float32, kc*lda)
				for i := range a {
					a[i] = float32(r.NormFloat64())
				}
				bp := make([]float32, kc*nr)
				for i := range bp {
					bp[i] = float32(r.NormFloat64())
				}
				ap := make([]float32, kc*mr)
				packA(ks, true, a, lda, 0, mr, 0, kc, ap)
				c0 := make([]float32, mr*nr)
				for i := range c0 {
					c0[i] = float32(r.NormFloat64())
				}
				c1 := append([]float32(nil), c0...)
				c2 := append([]float32(nil), c0...)
				ks.micro(kc, ap, bp, nr, c1, nr, 0.75, add)
				microTA(kc, a[:(kc-1)*lda+mr], lda, bp, nr, c2, nr, 0.75, add)
				for i := range c1 {
					if math.Float32bits(c1[i]) != math.Float32bits(c2[i]) {
						t.Fatalf("%s kc=%d add=%v: c[%d] packed %v, in place %v", ks.name, kc, add, i, c1[i], c2[i])
					}
				}
				// And against a float64 reference.
				for i := 0; i < mr; i++ {
					for j := 0; j < nr; j++ {
						var s float64
						for l := 0; l < kc; l++ {
							s += float64(a[l*lda+i]) * float64(bp[l*nr+j])
						}
						want := 0.75 * s
						if add {
							want += float64(c0[i*nr+j])
						}
						if got := float64(c2[i*nr+j]); math.Abs(got-want) > 1e-4*math.Sqrt(float64(kc))+1e-5 {
							t.Fatalf("%s kc=%d: c[%d][%d] = %v, want %v", ks.name, kc, i, j, got, want)
						}
					}
				}
			}
		}
	}
	t.Logf("%d kernel paths with an in-place transposed-A kernel checked", ran)
}

// TestCopyPanels checks copyPanels against the portable copy for the
// widths the packing loops use.
func TestCopyPanels(t *testing.T) {
	for _, w := range []int{4, 6, 12, 16, 32} {
		for _, np := range []int{0, 1, 3, 9} {
			src := make([]float32, np*w+1)
			for i := range src {
				src[i] = float32(i) + 0.5
			}
			stride := w*3 + 1
			got := make([]float32, np*stride+w)
			want := make([]float32, np*stride+w)
			copyPanels(w, np, src, got, stride)
			copyPanelsGeneric(w, np, src, want, stride)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("w=%d np=%d: dst[%d] = %v, want %v", w, np, i, got[i], want[i])
				}
			}
		}
	}
}

// TestPoolBufReuse checks that the pool's free list hands back a returned
// buffer (also through the serial view) and never one that is too small.
func TestPoolBufReuse(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	b := p.getBuf(1000)
	if len(*b) != 1000 {
		t.Fatalf("len %d, want 1000", len(*b))
	}
	first := &(*b)[0]
	p.putBuf(b)
	s := p.serial()
	if s.Threads() != 1 {
		t.Fatalf("serial view has %d threads", s.Threads())
	}
	b2 := s.getBuf(900)
	if &(*b2)[0] != first || len(*b2) != 900 {
		t.Fatalf("serial view did not reuse the returned buffer")
	}
	b3 := p.getBuf(5000)
	if cap(*b3) < 5000 || &(*b3)[0] == first {
		t.Fatalf("got a buffer of cap %d for 5000", cap(*b3))
	}
	s.putBuf(b2)
	p.putBuf(b3)
	var nilPool *Pool
	if nilPool.serial() != nil {
		t.Fatalf("serial of nil pool is not nil")
	}
}
