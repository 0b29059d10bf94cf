package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestBackwardLogitsMatchesBackward checks that BackwardLogits, given the
// cross-entropy gradient (softmax − one-hot)/N computed in float64, adds
// the same gradients as Backward, for every routing kind (the router
// losses' gradients included), and that it refuses to run without a
// Forward.
func TestBackwardLogitsMatchesBackward(t *testing.T) {
	for _, k := range routingKinds() {
		t.Run(k.name, func(t *testing.T) {
			m, err := New(k.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(3)
			B, T, V := 2, 5, k.cfg.VocabSize
			r := rand.New(rand.NewPCG(4, 4))
			tok, tgt := make([]int32, B*T), make([]int32, B*T)
			for i := range tok {
				tok[i], tgt[i] = int32(r.IntN(V)), int32(r.IntN(V))
			}
			m.ZeroGrad()
			if _, err := m.ForwardWith(tok, tgt, B, T, k.opt); err != nil {
				t.Fatal(err)
			}
			if err := m.Backward(); err != nil {
				t.Fatal(err)
			}
			want := append([]float32(nil), m.G.Flat...)

			m.ZeroGrad()
			if _, err := m.ForwardWith(tok, nil, B, T, k.opt); err != nil {
				t.Fatal(err)
			}
			err = m.BackwardLogits(func(lg []float32) error {
				for row := 0; row < B*T; row++ {
					z := lg[row*V : (row+1)*V]
					mx := math.Inf(-1)
					for _, x := range z {
						mx = math.Max(mx, float64(x))
					}
					var s float64
					for _, x := range z {
						s += math.Exp(float64(x) - mx)
					}
					for i, x := range z {
						g := math.Exp(float64(x)-mx) / s
						if int32(i) == tgt[row] {
							g--
						}
						z[i] = float32(g / float64(B*T))
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var maxDiff, maxAbs float64
			for i, w := range want {
				maxDiff = math.Max(maxDiff, math.Abs(float64(m.G.Flat[i]-w)))
				maxAbs = math.Max(maxAbs, math.Abs(float64(w)))
			}
			if maxAbs == 0 || maxDiff > 1e-5*maxAbs {
				t.Fatalf("gradients differ by %g (largest gradient %g)", maxDiff, maxAbs)
			}
			if err := m.BackwardLogits(func([]float32) error { return nil }); err == nil {
				t.Fatal("a second BackwardLogits without Forward was accepted")
			}
		})
	}
}
