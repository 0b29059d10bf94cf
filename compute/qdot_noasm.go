//go:build !amd64 || purego

package compute

// qKernels is an instruction set's QMatMul kernels: none here.
type qKernels struct{ name string }

// qBest is the kernel set QMatMul uses: the portable kernels.
var qBest *qKernels

// qAllKernels lists the kernel sets this machine runs: none.
func qAllKernels() []*qKernels { return nil }

// qmatmulAsm has no assembly kernels to run here.
func qmatmulAsm(ks *qKernels, t QType, sp *qSpec, rows int, act *qAct, w []byte, rb, ncol int, c []float32, ldc int) bool {
	return false
}

// qmatmulFloatAsm has no assembly kernels to run here.
func qmatmulFloatAsm(ks *qKernels, t QType, rows, k int, a []float32, lda int, w []byte, rb, ncol int, c []float32, ldc int) bool {
	return false
}

// qReadBytes reads b (a plain pass over memory, to compare the kernels'
// bandwidth with) and returns a value that depends on every byte.
func qReadBytes(b []byte) uint64 { return qReadGo(b) }

// quantRowB32Asm has no assembly quantizer to run here: no blocks done.
func quantRowB32Asm(sp *qSpec, x []float32, q []int8, lan []int32, d []float32) int { return 0 }

// quantRowKAsm has no assembly quantizer to run here.
func quantRowKAsm(sp *qSpec, x []float32, q []int8, lan []int32, d []float32) bool { return false }
