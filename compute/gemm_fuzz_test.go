package compute

import (
	"math/rand/v2"
	"testing"
)

// FuzzGemm checks every kernel path against the float64 reference on
// fuzzer-chosen shapes, transposes, paddings and scalars (sizes kept small
// so each input is cheap; CI runs the seed corpus).
func FuzzGemm(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), uint8(0), uint8(0), int8(2), int8(0), uint64(1))
	f.Add(uint8(13), uint8(33), uint8(17), uint8(1), uint8(2), int8(-3), int8(1), uint64(2))
	f.Add(uint8(40), uint8(5), uint8(200), uint8(3), uint8(1), int8(1), int8(2), uint64(3))
	f.Add(uint8(2), uint8(100), uint8(255), uint8(2), uint8(0), int8(4), int8(-2), uint64(4))
	f.Fuzz(func(t *testing.T, m8, n8, k8, flags, pad8 uint8, alpha8, beta8 int8, seed uint64) {
		m, n, k := int(m8)%70, int(n8)%70, int(k8)
		tc := gemmCase{m: m, n: n, k: k, transA: flags&1 != 0, transB: flags&2 != 0,
			alpha: float32(alpha8) / 2, beta: float32(beta8) / 2, pad: int(pad8) % 4}
		if tc.alpha == 0 {
			tc.alpha = 1
		}
		pool := NewPool(2)
		defer pool.Close()
		for i, ks := range paths() {
			var p *Pool
			if (seed+uint64(i))%2 == 0 {
				p = pool
			}
			runGemmCase(t, ks, p, tc, rand.Uint64N(1<<20)+seed)
		}
	})
}
