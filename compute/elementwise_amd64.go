//go:build amd64 && !purego

package compute

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// ewAVX512 selects the AVX-512 element-wise kernels (set once at start-up).
var ewAVX512 = cpu.X86.HasAVX512F

// expScale returns Σ e^(x_i − shift) and, when y is not nil, writes
// y_i = scale·e^(x_i − shift) (y may alias x).
func expScale(x, y []float32, shift, scale float32) float32 {
	if !ewAVX512 || len(x) == 0 {
		return expScaleGeneric(x, y, shift, scale)
	}
	var acc [16]float32
	store := 0
	yp := (*float32)(unsafe.Pointer(&acc[0])) // never written through when store == 0
	if y != nil {
		_ = y[len(x)-1]
		store, yp = 1, &y[0]
	}
	expScaleAVX512(len(x), &x[0], yp, shift, scale, store, &acc[0])
	var s float32
	for _, v := range acc {
		s += v
	}
	return s
}

// swiglu computes out = silu(gate)·up over equal-length slices.
func swiglu(out, gate, up []float32) {
	if !ewAVX512 || len(gate) == 0 {
		swigluGeneric(out, gate, up)
		return
	}
	_, _ = out[len(gate)-1], up[len(gate)-1]
	swigluAVX512(len(gate), &out[0], &gate[0], &up[0])
}

// swigluBackward computes dgate and dup from dout.
func swigluBackward(dgate, dup, dout, gate, up []float32) {
	if !ewAVX512 || len(gate) == 0 {
		swigluBackwardGeneric(dgate, dup, dout, gate, up)
		return
	}
	n := len(gate) - 1
	_, _, _, _ = dgate[n], dup[n], dout[n], up[n]
	swigluBwdAVX512(len(gate), &dgate[0], &dup[0], &dout[0], &gate[0], &up[0])
}

// rowMax returns the largest element of a non-empty x (NaN handling: see
// rowMaxGeneric; the AVX-512 path may instead return a finite value when x
// holds a NaN, which the callers' exp pass still turns into a NaN sum).
func rowMax(x []float32) float32 {
	if !ewAVX512 || len(x) < 16 {
		return rowMaxGeneric(x)
	}
	var acc [16]float32
	maxAVX512(len(x), &x[0], &acc[0])
	m := acc[0]
	for _, v := range acc[1:] {
		if v > m || v != v {
			m = v
		}
	}
	return m
}

// softmaxBwdRow writes dx[i] = scale·y[i]·(dy[i] − dot).
func softmaxBwdRow(dx, dy, y []float32, dot, scale float32) {
	if !ewAVX512 || len(y) == 0 {
		softmaxBwdRowGeneric(dx, dy, y, dot, scale)
		return
	}
	n := len(y) - 1
	_, _ = dx[n], dy[n]
	softmaxBwdAVX512(len(y), &dx[0], &dy[0], &y[0], dot, scale)
}
