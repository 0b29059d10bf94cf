//go:build !amd64 || purego

package compute

// qAsm says whether QMatMul has assembly kernels here.
const qAsm = false

// qmatmulAsm has no assembly kernels to run here.
func qmatmulAsm(t QType, sp *qSpec, rows int, act *qAct, w []byte, rb, ncol int, c []float32, ldc int) bool {
	return false
}

// qReadBytes reads b (a plain pass over memory, to compare the kernels'
// bandwidth with) and returns a value that depends on every byte.
func qReadBytes(b []byte) uint64 { return qReadGo(b) }

// qmatmulFloatAsm has no assembly kernels to run here.
func qmatmulFloatAsm(t QType, rows, k int, a []float32, lda int, w []byte, rb, ncol int, c []float32, ldc int) bool {
	return false
}
