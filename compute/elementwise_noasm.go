//go:build !amd64 || purego

package compute

// ewAVX512 is false without the assembly kernels.
const ewAVX512 = false

func expScale(x, y []float32, shift, scale float32) float32 {
	return expScaleGeneric(x, y, shift, scale)
}

func swiglu(out, gate, up []float32) { swigluGeneric(out, gate, up) }

func swigluBackward(dgate, dup, dout, gate, up []float32) {
	swigluBackwardGeneric(dgate, dup, dout, gate, up)
}

func rowMax(x []float32) float32 { return rowMaxGeneric(x) }

func softmaxBwdRow(dx, dy, y []float32, dot, scale float32) {
	softmaxBwdRowGeneric(dx, dy, y, dot, scale)
}
