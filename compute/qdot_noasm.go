//go:build !amd64 || purego

package compute

// qAsm says whether QMatMul has assembly kernels here.
const qAsm = false

// qmatmulAsm has no assembly kernels to run here.
func qmatmulAsm(t QType, rows int, act *qAct, w []byte, rb, ncol int, c []float32, ldc int) bool {
	return false
}
