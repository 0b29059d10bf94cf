package compute

import (
	"encoding/binary"
	"fmt"
	"math"
)

// This file decodes every storage type moe computes with to float32, bit
// for bit as ggml's reference dequantize_row_* functions do (checked against
// llama.cpp's gguf-py decoders by the fixtures in testdata). Each product is
// rounded to float32 before it is added to or subtracted from anything
// (explicit float32 conversions keep the compiler from fusing a multiply
// and an add), as ggml's C computes it.

// kvaluesIQ4NL are the 16 non-linear levels of IQ4_NL and IQ4_XS
// (ggml's kvalues_iq4nl).
var kvaluesIQ4NL = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// kvaluesMXFP4 are the e2m1 values of MXFP4, doubled (ggml's kvalues_mxfp4);
// the block scale is halved to match (e8m0ToFloat32Half).
var kvaluesMXFP4 = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

// F16ToFloat32 converts an IEEE 754 half to float32 (exactly; NaN payloads
// are kept).
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	if h&0x7c00 == 0x7c00 { // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | uint32(h&0x3ff)<<13)
	}
	// Shifting the exponent and mantissa into a float32 gives the value
	// times 2^-112, also for subnormal halves; the multiplication is exact.
	v := math.Float32frombits(uint32(h&0x7fff)<<13) * 0x1p112
	return math.Float32frombits(math.Float32bits(v) | sign)
}

// e8m0ToFloat32Half returns half the value of an MXFP4 block exponent
// (2^(e-128)), as ggml's ggml_e8m0_to_fp32_half: e 0 and 1 give the
// subnormals 2^-128 and 2^-127; e 255 gives 2^127, not NaN.
func e8m0ToFloat32Half(e uint8) float32 {
	if e < 2 {
		return math.Float32frombits(0x00200000 << e)
	}
	return math.Float32frombits(uint32(e-1) << 23)
}

// Decodable reports whether Dequantize (and Quantize's callers) can decode t.
func Decodable(t QType) bool { return codecs[t].dec != nil }

// codec is a type's block decoder and encoder (nil where moe does not
// decode or encode it). Both take whole blocks: len(src) and len(dst) are
// the same whole number of blocks of the type, and the encoder's src is
// finite for block types.
type codec struct {
	dec func(src []byte, dst []float32)
	enc func(src []float32, dst []byte)
}

// codecs maps each type Dequantize or Quantize handles to its codec.
var codecs = map[QType]codec{
	QF32:    {decodeF32, encodeF32},
	QF16:    {decodeF16, encodeF16},
	QBF16:   {decodeBF16, encodeBF16},
	QQ4_0:   {decodeQ4_0, encodeQ4_0},
	QQ4_1:   {decodeQ4_1, encodeQ4_1},
	QQ5_0:   {decodeQ5_0, encodeQ5_0},
	QQ5_1:   {decodeQ5_1, encodeQ5_1},
	QQ8_0:   {decodeQ8_0, encodeQ8_0},
	QQ2_K:   {decodeQ2K, encodeQ2K},
	QQ3_K:   {decodeQ3K, encodeQ3K},
	QQ4_K:   {decodeQ4K, encodeQ4K},
	QQ5_K:   {decodeQ5K, encodeQ5K},
	QQ6_K:   {decodeQ6K, encodeQ6K},
	QQ8_K:   {decodeQ8K, nil},
	QIQ4_NL: {decodeIQ4NL, encodeIQ4NL},
	QIQ4_XS: {decodeIQ4XS, encodeIQ4XS},
	QMXFP4:  {decodeMXFP4, encodeMXFP4},
}

// checkCodec returns the error for coding n elements of type t stored in
// nbytes bytes: t unknown, t without the coder (has false; unsupported,
// a format taking t, names the operation), or sizes that checkSizes
// refuses.
func checkCodec(t QType, has bool, unsupported string, n, nbytes int) error {
	if !has {
		if t.Known() {
			return fmt.Errorf(unsupported+" is not supported", t)
		}
		return fmt.Errorf("unknown tensor type %s", t)
	}
	return checkSizes(t, n, nbytes)
}

// checkSizes returns an error unless n elements are a whole number of t's
// blocks that take exactly nbytes bytes.
func checkSizes(t QType, n, nbytes int) error {
	want, err := t.RowBytes(n)
	if err != nil {
		return err
	}
	if nbytes != want {
		return fmt.Errorf("%d %s elements take %d bytes, have %d", n, t, want, nbytes)
	}
	return nil
}

// Dequantize decodes src, stored as type t, into dst. len(dst) must be a
// whole number of t's blocks and len(src) exactly their byte size. The
// values are ggml's reference dequantization, bit for bit.
func Dequantize(t QType, src []byte, dst []float32) error {
	dec := codecs[t].dec
	if err := checkCodec(t, dec != nil, "decoding %s tensors", len(dst), len(src)); err != nil {
		return err
	}
	dec(src, dst)
	return nil
}

func decodeF32(src []byte, dst []float32) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

func decodeF16(src []byte, dst []float32) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = F16ToFloat32(uint16(src[2*i]) | uint16(src[2*i+1])<<8)
	}
}

func decodeBF16(src []byte, dst []float32) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits((uint32(src[2*i]) | uint32(src[2*i+1])<<8) << 16)
	}
}

func f16at(b []byte, i int) float32 { return F16ToFloat32(uint16(b[i]) | uint16(b[i+1])<<8) }

// kvaluesQ4_0 are Q4_0's levels: the nibble minus 8.
var kvaluesQ4_0 = [16]int8{-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7}

// Q4_0 block: d f16, qs[16].
func decodeQ4_0(src []byte, dst []float32) { decodeNibbles(src, dst, 18, &kvaluesQ4_0, f16Scale) }

func f16Scale(b []byte) float32 { return f16at(b, 0) }

// decodeNibbles decodes 32-element blocks of size bytes whose last 16 bytes
// are nibbles indexing levels (low nibbles the first 16 elements), times
// the block scale: ggml's Q4_0, IQ4_NL and MXFP4 (the level times the
// scale is exact in float32 before rounding, so the order of the factors
// does not matter).
func decodeNibbles(src []byte, dst []float32, size int, levels *[16]int8, scale func(b []byte) float32) {
	var lv [16]float32
	for i, v := range levels {
		lv[i] = float32(v)
	}
	for len(dst) >= 32 {
		b := src[:size]
		y := dst[:32]
		d := scale(b)
		q := b[size-16:]
		for j := 0; j < 16; j++ {
			y[j] = lv[q[j]&0xf] * d
			y[j+16] = lv[q[j]>>4] * d
		}
		src, dst = src[size:], dst[32:]
	}
}

func decodeQ4_1(src []byte, dst []float32) {
	for len(dst) >= 32 {
		b := src[:20]
		y := dst[:32]
		d, m := f16at(b, 0), f16at(b, 2)
		for j := 0; j < 16; j++ {
			q := b[4+j]
			y[j] = float32(float32(q&0xf)*d) + m
			y[j+16] = float32(float32(q>>4)*d) + m
		}
		src, dst = src[20:], dst[32:]
	}
}

func decodeQ5_0(src []byte, dst []float32) {
	for len(dst) >= 32 {
		b := src[:22]
		y := dst[:32]
		d := f16at(b, 0)
		qh := binary.LittleEndian.Uint32(b[2:])
		for j := 0; j < 16; j++ {
			q := b[6+j]
			h0 := (qh >> j << 4) & 0x10
			h1 := (qh >> (j + 12)) & 0x10
			y[j] = float32(int(uint32(q&0xf)|h0)-16) * d
			y[j+16] = float32(int(uint32(q>>4)|h1)-16) * d
		}
		src, dst = src[22:], dst[32:]
	}
}

func decodeQ5_1(src []byte, dst []float32) {
	for len(dst) >= 32 {
		b := src[:24]
		y := dst[:32]
		d, m := f16at(b, 0), f16at(b, 2)
		qh := binary.LittleEndian.Uint32(b[4:])
		for j := 0; j < 16; j++ {
			q := b[8+j]
			h0 := (qh >> j << 4) & 0x10
			h1 := (qh >> (j + 12)) & 0x10
			y[j] = float32(float32(uint32(q&0xf)|h0)*d) + m
			y[j+16] = float32(float32(uint32(q>>4)|h1)*d) + m
		}
		src, dst = src[24:], dst[32:]
	}
}

func decodeQ8_0(src []byte, dst []float32) {
	for len(dst) >= 32 {
		b := src[:34]
		y := dst[:32]
		d := f16at(b, 0)
		for j := range y {
			y[j] = float32(int8(b[2+j])) * d
		}
		src, dst = src[34:], dst[32:]
	}
}

// Q2_K block: scales[16] (low nibble scale, high nibble min), qs[64],
// d f16, dmin f16.
func decodeQ2K(src []byte, dst []float32) {
	for len(dst) >= 256 {
		b := src[:84]
		y := dst[:256]
		d, dmin := f16at(b, 80), f16at(b, 82)
		sc := b[:16]
		for n := 0; n < 2; n++ {
			q := b[16+32*n : 16+32*n+32]
			for j := 0; j < 4; j++ {
				shift := uint(2 * j)
				for h := 0; h < 2; h++ {
					s := sc[8*n+2*j+h]
					dl := d * float32(s&0xf)
					ml := dmin * float32(s>>4)
					out := y[128*n+32*j+16*h : 128*n+32*j+16*h+16]
					qq := q[16*h : 16*h+16]
					for l := range out {
						out[l] = float32(dl*float32((qq[l]>>shift)&3)) - ml
					}
				}
			}
		}
		src, dst = src[84:], dst[256:]
	}
}

// q3kScales unpacks the 16 6-bit scales of a Q3_K block (biased by 32).
func q3kScales(s []byte, out *[16]int8) {
	for j := 0; j < 8; j++ {
		out[j] = int8(s[j]&0xf | (s[8+j%4]>>(2*(j/4))&3)<<4)
		out[j+8] = int8(s[j]>>4 | (s[8+j%4]>>(2*(j/4)+4)&3)<<4)
	}
}

// Q3_K block: hmask[32], qs[64], scales[12], d f16.
func decodeQ3K(src []byte, dst []float32) {
	var scales [16]int8
	for len(dst) >= 256 {
		b := src[:110]
		y := dst[:256]
		d := f16at(b, 108)
		hm := b[:32]
		q3kScales(b[96:108], &scales)
		is := 0
		for n := 0; n < 2; n++ {
			q := b[32+32*n : 32+32*n+32]
			for j := 0; j < 4; j++ {
				shift := uint(2 * j)
				m := byte(1) << (4*n + j)
				for h := 0; h < 2; h++ {
					dl := d * float32(int(scales[is])-32)
					is++
					out := y[128*n+32*j+16*h : 128*n+32*j+16*h+16]
					qq, hh := q[16*h:16*h+16], hm[16*h:16*h+16]
					for l := range out {
						v := int((qq[l] >> shift) & 3)
						if hh[l]&m == 0 {
							v -= 4
						}
						out[l] = dl * float32(v)
					}
				}
			}
		}
		src, dst = src[110:], dst[256:]
	}
}

// scaleMinK4 returns the j-th 6-bit scale and min of a Q4_K/Q5_K block's
// 12 scale bytes (ggml's get_scale_min_k4).
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// Q4_K block: d f16, dmin f16, scales[12], qs[128].
func decodeQ4K(src []byte, dst []float32) { decodeQ45K(src, dst, 144, nil) }

// Q5_K block: d f16, dmin f16, scales[12], qh[32], qs[128].
func decodeQ5K(src []byte, dst []float32) {
	var qh [32]byte
	decodeQ45K(src, dst, 176, qh[:])
}

// decodeQ45K decodes Q4_K blocks (qh nil) or Q5_K blocks (qh a 32-byte
// scratch for the fifth bits, which precede the low nibbles).
func decodeQ45K(src []byte, dst []float32, size int, qh []byte) {
	for len(dst) >= 256 {
		b := src[:size]
		y := dst[:256]
		d, dmin := f16at(b, 0), f16at(b, 2)
		sc := b[4:16]
		qs := b[size-128:]
		if qh != nil {
			copy(qh, b[16:48])
		}
		for j := 0; j < 4; j++ {
			s0, m0 := scaleMinK4(2*j, sc)
			s1, m1 := scaleMinK4(2*j+1, sc)
			d1, n1 := d*float32(s0), dmin*float32(m0)
			d2, n2 := d*float32(s1), dmin*float32(m1)
			q := qs[32*j : 32*j+32]
			lo, hi := y[64*j:64*j+32], y[64*j+32:64*j+64]
			if qh == nil {
				for l := range lo {
					lo[l] = float32(d1*float32(q[l]&0xf)) - n1
					hi[l] = float32(d2*float32(q[l]>>4)) - n2
				}
				continue
			}
			sh := uint(2 * j)
			for l := range lo {
				h := qh[l] >> sh
				lo[l] = float32(d1*float32(q[l]&0xf|(h&1)<<4)) - n1
				hi[l] = float32(d2*float32(q[l]>>4|(h&2)<<3)) - n2
			}
		}
		src, dst = src[size:], dst[256:]
	}
}

// Q6_K block: ql[128], qh[64], scales[16] int8, d f16.
func decodeQ6K(src []byte, dst []float32) {
	for len(dst) >= 256 {
		b := src[:210]
		y := dst[:256]
		d := f16at(b, 208)
		for n := 0; n < 2; n++ {
			ql := b[64*n : 64*n+64]
			qh := b[128+32*n : 128+32*n+32]
			sc := b[192+8*n : 192+8*n+8]
			out := y[128*n : 128*n+128]
			for l := 0; l < 32; l++ {
				is := l / 16
				h := qh[l]
				q1 := int(ql[l]&0xf|(h&3)<<4) - 32
				q2 := int(ql[l+32]&0xf|(h>>2&3)<<4) - 32
				q3 := int(ql[l]>>4|(h>>4&3)<<4) - 32
				q4 := int(ql[l+32]>>4|(h>>6&3)<<4) - 32
				out[l] = float32(d*float32(int8(sc[is]))) * float32(q1)
				out[l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
				out[l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
				out[l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
			}
		}
		src, dst = src[210:], dst[256:]
	}
}

// Q8_K block: d f32, qs[256] int8, bsums[16] int16 (not needed to decode).
func decodeQ8K(src []byte, dst []float32) {
	for len(dst) >= 256 {
		b := src[:292]
		y := dst[:256]
		d := math.Float32frombits(binary.LittleEndian.Uint32(b))
		for j := range y {
			y[j] = d * float32(int8(b[4+j]))
		}
		src, dst = src[292:], dst[256:]
	}
}

// IQ4_NL block: d f16, qs[16] (indices into kvaluesIQ4NL).
func decodeIQ4NL(src []byte, dst []float32) {
	decodeNibbles(src, dst, 18, &kvaluesIQ4NL, f16Scale)
}

// IQ4_XS block: d f16, scales_h u16, scales_l[4], qs[128].
func decodeIQ4XS(src []byte, dst []float32) {
	for len(dst) >= 256 {
		b := src[:136]
		y := dst[:256]
		d := f16at(b, 0)
		sh := binary.LittleEndian.Uint16(b[2:])
		for ib := 0; ib < 8; ib++ {
			ls := int(b[4+ib/2]>>(4*(ib%2))&0xf) | int(sh>>(2*ib)&3)<<4
			dl := d * float32(ls-32)
			q := b[8+16*ib : 8+16*ib+16]
			out := y[32*ib : 32*ib+32]
			for j := 0; j < 16; j++ {
				out[j] = dl * float32(kvaluesIQ4NL[q[j]&0xf])
				out[j+16] = dl * float32(kvaluesIQ4NL[q[j]>>4])
			}
		}
		src, dst = src[136:], dst[256:]
	}
}

// MXFP4 block: e (E8M0 exponent), qs[16] (e2m1 codes).
func decodeMXFP4(src []byte, dst []float32) {
	decodeNibbles(src, dst, 17, &kvaluesMXFP4, func(b []byte) float32 { return e8m0ToFloat32Half(b[0]) })
}
