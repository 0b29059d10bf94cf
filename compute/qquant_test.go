package compute

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestQuantRowB32Kernel checks that the activation quantizer QMatMul runs
// for the 32-element block types (assembly where the machine has it) gives
// exactly the portable quantizer's bytes, lane sums and scales: rows of
// every scale from float16-subnormal to float16-overflowing block scales,
// odd block counts (a partial last group), and blocks that are all zero or
// hold an infinity or NaN.
func TestQuantRowB32Kernel(t *testing.T) {
	// Block scales from 1e-9 (a float16-subnormal or zero scale) to 1e7
	// (an infinite float16 scale).
	checkQuantKernel(t, rand.New(rand.NewPCG(11, 12)), famB32, []int{32, 64, 96, 128, 256, 288, 512}, 32, -9, 16,
		func(sp *qSpec, k int, x []float32, q []int8, l []int32, d []float32) bool {
			return k >= 32*sp.bpg && quantRowB32Asm(sp, x, q, l, d) == 0
		},
		quantRowB32,
		func(sp *qSpec, x []float32, q []int8, l []int32, d []float32) { quantRowB32From(sp, 0, x, q, l, d) })
}

// TestQuantRowKKernel checks the k-quant activation quantizer (assembly
// where the machine has it) against the portable one, bit for bit, for
// every k-quant unit order, as TestQuantRowB32Kernel does.
func TestQuantRowKKernel(t *testing.T) {
	checkQuantKernel(t, rand.New(rand.NewPCG(13, 14)), famK, []int{256, 512, 768}, 256, -30, 60,
		func(sp *qSpec, k int, x []float32, q []int8, l []int32, d []float32) bool {
			return !quantRowKAsm(sp, x, q, l, d)
		},
		quantRowK, quantRowKGo)
}

// checkQuantKernel runs, for every spec of family fam and every row
// length in ks, 40 rows of quantTestRow(r, k, block, lo, span, trial):
// where the machine has the assembly, refused (the assembly quantizer on
// the row) must be false for the finite rows; best (the quantizer QMatMul
// runs) must give portable's bytes, lane sums and scales bit for bit.
func checkQuantKernel(t *testing.T, r *rand.Rand, fam qFamily, ks []int, block int, lo, span float64,
	refused func(sp *qSpec, k int, x []float32, q []int8, l []int32, d []float32) bool,
	best, portable func(sp *qSpec, x []float32, q []int8, l []int32, d []float32)) {
	t.Helper()
	for ty, sp := range qSpecs {
		if sp.fam != fam {
			continue
		}
		for _, k := range ks {
			for trial := 0; trial < 40; trial++ {
				x := quantTestRow(r, k, block, lo, span, trial)
				var act qAct
				qActLayout(sp, k, &act)
				q1, q2 := make([]int8, act.qStride), make([]int8, act.qStride)
				l1, l2 := make([]int32, act.lStride), make([]int32, act.lStride)
				d1, d2 := make([]float32, act.dStride), make([]float32, act.dStride)
				if QMatMulKernels() == "avx512" && trial%8 < 5 && refused(sp, k, x, q1, l1, d1) {
					t.Fatalf("%s k=%d trial %d: the assembly quantizer refused a finite row", ty, k, trial)
				}
				best(sp, x, q1, l1, d1)
				portable(sp, x, q2, l2, d2)
				same := func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b }
				if !slices.Equal(q1, q2) || !slices.Equal(l1, l2) || !slices.EqualFunc(d1, d2, same) {
					t.Fatalf("%s k=%d trial %d: the quantizer differs from the portable one", ty, k, trial)
				}
			}
		}
	}
}

// quantTestRow returns a row of k values in blocks of the given size, each
// block normal with a scale 10^(lo + span·u) for u uniform in [0, 1); by
// trial mod 8, trial 5 zeroes one block, 6 puts an infinity and 7 a NaN
// in it (0–4 leave it finite).
func quantTestRow(r *rand.Rand, k, block int, lo, span float64, trial int) []float32 {
	x := make([]float32, k)
	for b := 0; b < k/block; b++ {
		s := math.Pow(10, lo+span*r.Float64())
		for i := block * b; i < block*b+block; i++ {
			x[i] = float32(s * r.NormFloat64())
		}
	}
	switch trial % 8 {
	case 5:
		clear(x[block*r.IntN(k/block):][:block])
	case 6:
		x[r.IntN(k)] = float32(math.Inf(1 - 2*r.IntN(2)))
	case 7:
		x[r.IntN(k)] = float32(math.NaN())
	}
	return x
}
