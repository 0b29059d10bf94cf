package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// Float32ToF16 converts f to IEEE 754 half precision, rounding to nearest
// with ties to even; overflow gives ±Inf and NaN stays NaN.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): value = M·2^(e-14-10) with M the 24-bit
		// significand, so the half mantissa is M >> (14-e).
		shift := uint(14 - e)
		if shift > 24 {
			return sign
		}
		m := mant | 0x800000
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is correct, up to Inf
	}
	return sign | uint16(h)
}

// F16ToFloat32 converts an IEEE 754 half to float32 (exactly).
func F16ToFloat32(h uint16) float32 {
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

// Float32ToBF16 converts f to bfloat16, rounding to nearest with ties to even.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet NaN
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToFloat32 converts a bfloat16 to float32 (exactly).
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Encode encodes src as type t (f32, f16, bf16, q8_0 or q4_0) in ggml's
// layout. Quantized types need a whole number of 32-element blocks and finite
// values; they follow ggml's reference quantizers (quantize_row_q8_0_ref,
// quantize_row_q4_0_ref), so that the same input gives the same bytes.
func Encode(t GGMLType, src []float32) ([]byte, error) {
	n, err := RowBytes(t, int64(len(src)))
	if err != nil {
		return nil, err
	}
	out := make([]byte, n)
	err = parallelBlocks(t, len(src), func(lo, hi int) error {
		blo, _ := RowBytes(t, int64(lo))
		bhi, _ := RowBytes(t, int64(hi))
		if err := encodeChunk(t, src[lo:hi], out[blo:bhi]); err != nil {
			return fmt.Errorf("%w (chunk at element %d)", err, lo)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parallelBlocks calls f on consecutive element ranges covering [0, n),
// each a whole number of t's blocks, concurrently for large n, and returns
// the first error.
func parallelBlocks(t GGMLType, n int, f func(lo, hi int) error) error {
	const chunk = 1 << 16 // elements; a multiple of every block size
	workers := min(runtime.GOMAXPROCS(0), (n+chunk-1)/chunk)
	if workers <= 1 {
		return f(0, n)
	}
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n || errs[w] != nil {
					return
				}
				errs[w] = f(lo, min(lo+chunk, n))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// encodeChunk encodes src (whole blocks) into out, which has exactly the
// right size.
func encodeChunk(t GGMLType, src []float32, out []byte) error {
	le := binary.LittleEndian
	switch t {
	case F32:
		for i, v := range src {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			le.PutUint16(out[2*i:], Float32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			le.PutUint16(out[2*i:], Float32ToBF16(v))
		}
	case Q8_0:
		for b := 0; b < len(src)/32; b++ {
			x := src[32*b : 32*b+32]
			if err := finite(x, b); err != nil {
				return err
			}
			blk := out[34*b : 34*b+34]
			var amax float32
			for _, v := range x {
				amax = max(amax, abs32(v))
			}
			d := amax / 127
			var id float32
			if d != 0 {
				id = 1 / d
			}
			le.PutUint16(blk, Float32ToF16(d))
			for j, v := range x {
				blk[2+j] = byte(int8(math.Round(float64(v * id))))
			}
		}
	case Q4_0:
		for b := 0; b < len(src)/32; b++ {
			x := src[32*b : 32*b+32]
			if err := finite(x, b); err != nil {
				return err
			}
			blk := out[18*b : 18*b+18]
			var amax, mx float32
			for _, v := range x {
				if a := abs32(v); amax < a {
					amax, mx = a, v
				}
			}
			d := mx / -8
			var id float32
			if d != 0 {
				id = 1 / d
			}
			le.PutUint16(blk, Float32ToF16(d))
			for j := 0; j < 16; j++ {
				x0 := min(15, int8(float32(x[j]*id)+8.5))
				x1 := min(15, int8(float32(x[16+j]*id)+8.5))
				blk[2+j] = byte(x0) | byte(x1)<<4
			}
		}
	default:
		return fmt.Errorf("gguf: encoding to %s is not supported", t)
	}
	return nil
}

// Decode decodes raw, encoded as type t, into dst (its element count).
func Decode(t GGMLType, raw []byte, dst []float32) error {
	n, err := RowBytes(t, int64(len(dst)))
	if err != nil {
		return err
	}
	if int64(len(raw)) != n {
		return fmt.Errorf("gguf: %d %s elements need %d bytes, have %d", len(dst), t, n, len(raw))
	}
	return parallelBlocks(t, len(dst), func(lo, hi int) error {
		blo, _ := RowBytes(t, int64(lo))
		bhi, _ := RowBytes(t, int64(hi))
		return decodeChunk(t, raw[blo:bhi], dst[lo:hi])
	})
}

// decodeChunk decodes raw (whole blocks) into dst.
func decodeChunk(t GGMLType, raw []byte, dst []float32) error {
	le := binary.LittleEndian
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToFloat32(le.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToFloat32(le.Uint16(raw[2*i:]))
		}
	case Q8_0:
		for b := 0; b < len(dst)/32; b++ {
			blk := raw[34*b : 34*b+34]
			d := F16ToFloat32(le.Uint16(blk))
			y := dst[32*b : 32*b+32]
			for j := range y {
				y[j] = float32(int8(blk[2+j])) * d
			}
		}
	case Q4_0:
		for b := 0; b < len(dst)/32; b++ {
			blk := raw[18*b : 18*b+18]
			d := F16ToFloat32(le.Uint16(blk))
			y := dst[32*b : 32*b+32]
			for j := 0; j < 16; j++ {
				y[j] = float32(int(blk[2+j]&0x0f)-8) * d
				y[16+j] = float32(int(blk[2+j]>>4)-8) * d
			}
		}
	default:
		return fmt.Errorf("gguf: decoding %s tensors is not supported (moe reads f32, f16, bf16, q8_0, q4_0)", t)
	}
	return nil
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

func finite(x []float32, block int) error {
	for j, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("gguf: cannot quantize non-finite value %v at element %d", v, 32*block+j)
		}
	}
	return nil
}
