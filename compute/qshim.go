package compute

// Temporary stand-ins for Dequantize and QMatMul, written portably for the
// types gguf decoded before the quantized kernels (f32, f16, bf16, q8_0,
// q4_0), so that infer's Linear can be built and tested against the agreed
// API. The real implementations replace this whole file at merge.

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// QMatMulSupported reports whether QMatMul and Dequantize handle type t.
func QMatMulSupported(t QType) bool {
	switch t {
	case QF32, QF16, QBF16, QQ8_0, QQ4_0:
		return true
	}
	return false
}

// Dequantize decodes src, whole blocks of type t, into dst (its element
// count).
func Dequantize(t QType, src []byte, dst []float32) error {
	if !QMatMulSupported(t) {
		return fmt.Errorf("dequantize: type %s is not supported", t)
	}
	n, err := t.RowBytes(len(dst))
	if err != nil {
		return fmt.Errorf("dequantize: %w", err)
	}
	if len(src) != n {
		return fmt.Errorf("dequantize: %d %s elements need %d bytes, have %d", len(dst), t, n, len(src))
	}
	le := binary.LittleEndian
	switch t {
	case QF32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case QF16:
		for i := range dst {
			dst[i] = shimF16(le.Uint16(src[2*i:]))
		}
	case QBF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(src[2*i:])) << 16)
		}
	case QQ8_0:
		for b := 0; b < len(dst)/32; b++ {
			blk := src[34*b : 34*b+34]
			d := shimF16(le.Uint16(blk))
			y := dst[32*b : 32*b+32]
			for j := range y {
				y[j] = float32(int8(blk[2+j])) * d
			}
		}
	case QQ4_0:
		for b := 0; b < len(dst)/32; b++ {
			blk := src[18*b : 18*b+18]
			d := shimF16(le.Uint16(blk))
			y := dst[32*b : 32*b+32]
			for j := 0; j < 16; j++ {
				y[j] = float32(int(blk[2+j]&0x0f)-8) * d
				y[16+j] = float32(int(blk[2+j]>>4)-8) * d
			}
		}
	}
	return nil
}

// shimF16 converts an IEEE half to float32 exactly.
func shimF16(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0:
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			return -v
		}
		return v
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// QMatMul computes c[r*ldc+j] = Σ_i a[r*lda+i]·W[j][i] for r < rows, j < n,
// where w holds W as n rows of k elements of type t. This stand-in
// dequantizes W a few rows at a time and multiplies in float32.
func QMatMul(pool *Pool, t QType, rows, n, k int, a []float32, lda int, w []byte, c []float32, ldc int) {
	rb, err := t.RowBytes(k)
	if err != nil || !QMatMulSupported(t) || len(w) < n*rb {
		panic(fmt.Sprintf("compute.QMatMul: %d×%d %s matrix with %d bytes", n, k, t, len(w)))
	}
	if rows <= 0 || n <= 0 {
		return
	}
	if t == QF32 && rows > 32 && uintptr(unsafe.Pointer(&w[0]))%4 == 0 {
		f := unsafe.Slice((*float32)(unsafe.Pointer(&w[0])), n*k)
		Gemm(pool, false, true, rows, n, k, 1, a, lda, f, k, 0, c, ldc)
		return
	}
	chunk := max(32, (1<<16)/max(k, 1)) &^ 31
	tasks := min(pool.Threads(), (n+chunk-1)/chunk)
	per := (n + tasks - 1) / tasks
	pool.Run(tasks, func(i int) {
		buf := make([]float32, chunk*k)
		for j0 := i * per; j0 < min(n, (i+1)*per); j0 += chunk {
			j1 := min(n, (i+1)*per, j0+chunk)
			_ = Dequantize(t, w[j0*rb:j1*rb], buf[:(j1-j0)*k]) // sizes checked above
			if rows > 32 {
				Gemm(nil, false, true, rows, j1-j0, k, 1, a, lda, buf, k, 0, c[j0:], ldc)
				continue
			}
			// Up to 32 rows, one row at a time: each row's result does
			// not depend on the others.
			for r := 0; r < rows; r++ {
				Gemm(nil, false, true, 1, j1-j0, k, 1, a[r*lda:], lda, buf, k, 0, c[r*ldc+j0:], ldc)
			}
		}
	})
}
