//go:build amd64 && !purego

package compute

// qAsm says whether QMatMul has assembly kernels here.
var qAsm = hasAVX512

// qmatmulAsm runs the assembly kernel for t, if there is one.
func qmatmulAsm(t QType, rows int, act *qAct, w []byte, rb, ncol int, c []float32, ldc int) bool {
	return false
}
