package compute

import (
	"encoding/binary"
	"fmt"
	"math"
)

// This file encodes float32 values as ggml's storage types, following
// ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c, which
// llama-quantize uses when it has no importance matrix): the same input
// gives the same bytes. Arithmetic is float32 throughout, in ggml's order;
// explicit float32 conversions keep products from being fused into adds.

// Float32ToF16 converts f to IEEE 754 half precision, rounding to nearest
// with ties to even; overflow gives ±Inf and NaN stays NaN (quiet).
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

// roundF16 returns f rounded to half precision, as a float32.
func roundF16(f float32) float32 { return F16ToFloat32(Float32ToF16(f)) }

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, Float32ToF16(f)) }

// Encodable reports whether Quantize can encode to t.
func Encodable(t QType) bool { return codecs[t].enc != nil }

// Quantize encodes src as type t into dst. len(src) must be a whole number
// of t's blocks and len(dst) exactly their byte size. Block types need
// finite values: the error names the first element that is not.
func Quantize(t QType, src []float32, dst []byte) error {
	enc := codecs[t].enc
	if err := checkCodec(t, enc != nil, "encoding to %s", len(src), len(dst)); err != nil {
		return err
	}
	if t.BlockSize() > 1 {
		for i, v := range src {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("cannot quantize non-finite value %v at element %d to %s", v, i, t)
			}
		}
	}
	enc(src, dst)
	return nil
}

func encodeF32(src []float32, dst []byte) {
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

func encodeF16(src []float32, dst []byte) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], Float32ToF16(v))
	}
}

func encodeBF16(src []float32, dst []byte) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], uint16(ToBF16(v)))
	}
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// absMax returns the element of x with the largest magnitude (the first
// such) and that magnitude.
func absMax(x []float32) (m, amax float32) {
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, m = a, v
		}
	}
	return m, amax
}

// minMax returns the smallest and largest elements of x.
func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// inv returns 1/d, or 0 for d == 0.
func inv(d float32) float32 {
	if d == 0 {
		return 0
	}
	return 1 / d
}

func encodeQ4_0(src []float32, dst []byte) {
	for len(src) >= 32 {
		x, b := src[:32], dst[:18]
		m, _ := absMax(x)
		d := m / -8
		id := inv(d)
		putF16(b, d)
		for j := 0; j < 16; j++ {
			x0 := min(15, int8(float32(x[j]*id)+8.5))
			x1 := min(15, int8(float32(x[16+j]*id)+8.5))
			b[2+j] = byte(x0) | byte(x1)<<4
		}
		src, dst = src[32:], dst[18:]
	}
}

func encodeQ4_1(src []float32, dst []byte) {
	for len(src) >= 32 {
		x, b := src[:32], dst[:20]
		lo, hi := minMax(x)
		d := (hi - lo) / 15
		id := inv(d)
		putF16(b, d)
		putF16(b[2:], lo)
		for j := 0; j < 16; j++ {
			x0 := min(15, int8(float32((x[j]-lo)*id)+0.5))
			x1 := min(15, int8(float32((x[16+j]-lo)*id)+0.5))
			b[4+j] = byte(x0) | byte(x1)<<4
		}
		src, dst = src[32:], dst[20:]
	}
}

func encodeQ5_0(src []float32, dst []byte) {
	for len(src) >= 32 {
		x, b := src[:32], dst[:22]
		m, _ := absMax(x)
		d := m / -16
		id := inv(d)
		putF16(b, d)
		var qh uint32
		for j := 0; j < 16; j++ {
			x0 := uint8(min(31, int8(float32(x[j]*id)+16.5)))
			x1 := uint8(min(31, int8(float32(x[16+j]*id)+16.5)))
			b[6+j] = x0&0xf | (x1&0xf)<<4
			qh |= uint32(x0>>4&1)<<j | uint32(x1>>4&1)<<(j+16)
		}
		binary.LittleEndian.PutUint32(b[2:], qh)
		src, dst = src[32:], dst[22:]
	}
}

func encodeQ5_1(src []float32, dst []byte) {
	for len(src) >= 32 {
		x, b := src[:32], dst[:24]
		lo, hi := minMax(x)
		d := (hi - lo) / 31
		id := inv(d)
		putF16(b, d)
		putF16(b[2:], lo)
		var qh uint32
		for j := 0; j < 16; j++ {
			x0 := uint8(float32((x[j]-lo)*id) + 0.5)
			x1 := uint8(float32((x[16+j]-lo)*id) + 0.5)
			b[8+j] = x0&0xf | (x1&0xf)<<4
			qh |= uint32(x0>>4&1)<<j | uint32(x1>>4&1)<<(j+16)
		}
		binary.LittleEndian.PutUint32(b[4:], qh)
		src, dst = src[32:], dst[24:]
	}
}

// roundAway rounds half away from zero (C's roundf).
func roundAway(v float32) float32 { return float32(math.Round(float64(v))) }

func encodeQ8_0(src []float32, dst []byte) {
	for len(src) >= 32 {
		x, b := src[:32], dst[:34]
		_, amax := absMax(x)
		d := amax / 127
		id := inv(d)
		putF16(b, d)
		for j, v := range x {
			b[2+j] = byte(int8(roundAway(v * id)))
		}
		src, dst = src[32:], dst[34:]
	}
}

// bestIndexMXFP4 returns the e2m1 code nearest x at half-scale e (the
// first on ties).
func bestIndexMXFP4(x, e float32) byte {
	best, bestErr := 0, abs32(float32(float32(kvaluesMXFP4[0])*e)-x)
	for i := 1; i < 16; i++ {
		if err := abs32(float32(float32(kvaluesMXFP4[i])*e) - x); err < bestErr {
			best, bestErr = i, err
		}
	}
	return byte(best)
}

func encodeMXFP4(src []float32, dst []byte) {
	for len(src) >= 32 {
		x, b := src[:32], dst[:17]
		_, amax := absMax(x)
		var e uint8
		if amax > 0 {
			// floor(log2f(amax)) - 2 + 127: log2 rounded to float32 first,
			// as ggml's log2f (just below a power of two it rounds up).
			l := math.Floor(float64(float32(math.Log2(float64(amax)))))
			e = uint8(max(0, min(255, int(l)-2+127)))
		}
		d := e8m0ToFloat32Half(e)
		b[0] = e
		for j := 0; j < 16; j++ {
			b[1+j] = bestIndexMXFP4(x[j], d) | bestIndexMXFP4(x[16+j], d)<<4
		}
		src, dst = src[32:], dst[17:]
	}
}

// nearestInt rounds f to the nearest integer, ties to even, as ggml's
// nearest_int does (valid for |f| ≤ 2^22).
func nearestInt(f float32) int {
	v := f + 12582912
	return int(math.Float32bits(v)&0x7fffff) - 0x400000
}

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is
// below it is all zero.
const groupMaxEps = 1e-15

// makeQXQuants chooses a symmetric scale for x with levels -nmax..nmax-1
// (stored in L as 0..2nmax-1), ggml's make_qx_quants with rmse_type 1 and
// no importance weights: the weight of an element is its square.
func makeQXQuants(nmax int, x []float32, L []int8) float32 {
	mx, amax := absMax(x)
	if amax < groupMaxEps {
		for i := range x {
			L[i] = 0
		}
		return 0
	}
	fn := float32(nmax)
	clamp := func(l int) int { return max(-nmax, min(nmax-1, l)) }
	iscale := -fn / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := clamp(nearestInt(iscale * v))
		L[i] = int8(l + nmax)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fn + float32(float32(0.1)*float32(is))) / mx
		sumlx, suml2 = 0, 0
		for _, v := range x {
			fl := float32(clamp(nearestInt(iscale * v)))
			w := float32(v * v)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				L[i] = int8(nmax + clamp(nearestInt(iscale*v)))
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// makeQ3Quants is ggml's make_q3_quants with do_rmse: a symmetric scale
// for levels -nmax..nmax-1 refined element by element (L holds 0..2nmax-1).
func makeQ3Quants(nmax int, x []float32, L []int8) float32 {
	mx, amax := absMax(x)
	if amax < groupMaxEps {
		for i := range x {
			L[i] = 0
		}
		return 0
	}
	clamp := func(l int) int { return max(-nmax, min(nmax-1, l)) }
	iscale := -float32(nmax) / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := clamp(nearestInt(iscale * v))
		L[i] = int8(l)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i, v := range x {
			w := float32(v * v)
			li := float32(L[i])
			slx := sumlx - float32(float32(w*v)*li)
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*li)*li)
				nl := clamp(nearestInt(float32(v*sl2) / slx))
				if nl != int(L[i]) {
					fl := float32(nl)
					slx += float32(float32(w*v) * fl)
					sl2 += float32(float32(w*fl) * fl)
					if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = int8(nl)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range x {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// makeQKX2Quants chooses a scale and a min (returned as -min, a
// non-negative offset) for levels 0..nmax of x under weights, searching
// nstep+1 candidate scales: ggml's make_qkx2_quants.
func makeQKX2Quants(nmax int, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int, useMAD bool) (scale, theMin float32) {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		lo, hi = min(lo, x[i]), max(hi, x[i])
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0, -lo
	}
	fn := float32(nmax)
	errOf := func(d float32) float32 {
		if useMAD {
			return abs32(d)
		}
		return float32(d * d)
	}
	iscale := fn / (hi - lo)
	scale = 1 / iscale
	var bestErr float32
	for i, v := range x {
		l := max(0, min(nmax, nearestInt(float32(iscale*(v-lo)))))
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+lo) - v
		bestErr += float32(weights[i] * errOf(diff))
	}
	if nstep < 1 {
		return scale, -lo
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(float32(rmin+float32(rdelta*float32(is)))+fn) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := max(0, min(nmax, nearestInt(float32(iscale*(v-lo)))))
			Laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(float32(w*fl) * fl)
			sumXL += float32(float32(w*fl) * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var cur float32
			for i, v := range x {
				diff := float32(float32(thisScale*float32(Laux[i]))+thisMin) - v
				cur += float32(weights[i] * errOf(diff))
			}
			if cur < bestErr {
				copy(L[:n], Laux[:n])
				bestErr = cur
				scale, lo = thisScale, thisMin
			}
		}
	}
	return scale, -lo
}

// packQ2Q3 packs 256 2-bit levels as Q2_K and Q3_K store them: byte l of
// each 32-byte half holds elements l, l+32, l+64, l+96 of its 128.
func packQ2Q3(L []uint8, qs []byte) {
	for j := 0; j < 256; j += 128 {
		for l := 0; l < 32; l++ {
			qs[j/4+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
	}
}

func encodeQ2K(src []float32, dst []byte) {
	var L [256]uint8
	var Laux [16]uint8
	var weights [16]float32
	var mins, scales [16]float32
	const q4scale = 15
	for len(src) >= 256 {
		x, b := src[:256], dst[:84]
		clear(b)
		var maxScale, maxMin float32
		for j := 0; j < 16; j++ {
			for l := 0; l < 16; l++ {
				weights[l] = abs32(x[16*j+l])
			}
			scales[j], mins[j] = makeQKX2Quants(3, x[16*j:16*j+16], weights[:], L[16*j:16*j+16], Laux[:], -0.5, 0.1, 15, true)
			maxScale = max(maxScale, scales[j])
			maxMin = max(maxMin, mins[j])
		}
		sc := b[:16]
		if maxScale > 0 {
			iscale := q4scale / maxScale
			for j := range sc {
				sc[j] = uint8(nearestInt(iscale * scales[j]))
			}
			putF16(b[80:], maxScale/q4scale)
		}
		if maxMin > 0 {
			iscale := q4scale / maxMin
			for j := range sc {
				sc[j] |= uint8(nearestInt(iscale*mins[j])) << 4
			}
			putF16(b[82:], maxMin/q4scale)
		}
		dAll, mAll := f16at(b, 80), f16at(b, 82)
		for j := 0; j < 16; j++ {
			d := dAll * float32(sc[j]&0xf)
			if d == 0 {
				continue
			}
			dm := mAll * float32(sc[j]>>4)
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = uint8(max(0, min(3, nearestInt((x[16*j+ii]+dm)/d))))
			}
		}
		packQ2Q3(L[:], b[16:80])
		src, dst = src[256:], dst[84:]
	}
}

func encodeQ3K(src []float32, dst []byte) {
	var L [256]int8
	var scales [16]float32
	for len(src) >= 256 {
		x, b := src[:256], dst[:110]
		clear(b)
		for j := 0; j < 16; j++ {
			scales[j] = makeQ3Quants(4, x[16*j:16*j+16], L[16*j:16*j+16])
		}
		maxScale, _ := absMax(scales[:])
		sc := b[96:108]
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := 0; j < 16; j++ {
				l := uint8(max(-32, min(31, int(int8(nearestInt(iscale*scales[j]))))) + 32)
				if j < 8 {
					sc[j] = l & 0xf
				} else {
					sc[j-8] |= (l & 0xf) << 4
				}
				sc[j%4+8] |= (l >> 4) << (2 * (j / 4))
			}
			putF16(b[108:], 1/iscale)
		}
		var unpacked [16]int8
		q3kScales(sc, &unpacked)
		dAll := f16at(b, 108)
		for j := 0; j < 16; j++ {
			d := dAll * float32(int(unpacked[j])-32)
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = int8(max(-4, min(3, nearestInt(x[16*j+ii]/d))) + 4)
			}
		}
		hmask := b[:32]
		var U [256]uint8
		for j := 0; j < 256; j++ {
			l := uint8(L[j])
			if l > 3 {
				hmask[j%32] |= 1 << (j / 32)
				l -= 4
			}
			U[j] = l
		}
		packQ2Q3(U[:], b[32:96])
		src, dst = src[256:], dst[110:]
	}
}

// kQuantScales quantizes the eight sub-block scales and mins of a Q4_K or
// Q5_K block to 6 bits into sc (12 bytes) and stores the super-block
// scales at b[0:2] (d) and b[2:4] (dmin).
func kQuantScales(scales, mins *[8]float32, b []byte) {
	var maxScale, maxMin float32
	for j := range scales {
		maxScale = max(maxScale, scales[j])
		maxMin = max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := b[4:16]
	clear(sc)
	for j := 0; j < 8; j++ {
		ls := min(63, uint8(nearestInt(invScale*scales[j])))
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0xf | (lm&0xf)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	putF16(b, maxScale/63)
	putF16(b[2:], maxMin/63)
}

// kQuantLevels re-derives the levels 0..nmax of the 256 values x from the
// block's stored (rounded) scales, as ggml does after packing them.
func kQuantLevels(x []float32, b []byte, nmax int, L []uint8) {
	d0, m0 := f16at(b, 0), f16at(b, 2)
	for j := 0; j < 8; j++ {
		s, m := scaleMinK4(j, b[4:16])
		d := d0 * float32(s)
		if d == 0 {
			continue
		}
		dm := m0 * float32(m)
		for ii := 0; ii < 32; ii++ {
			L[32*j+ii] = uint8(max(0, min(nmax, nearestInt((x[32*j+ii]+dm)/d))))
		}
	}
}

// kQuantSubBlocks runs make_qkx2_quants on the eight 32-element sub-blocks
// of x with ggml's Q4_K/Q5_K weights (the RMS of the sub-block plus |x|).
func kQuantSubBlocks(x []float32, nmax int, rmin, rdelta float32, nstep int, L []uint8, scales, mins *[8]float32) {
	var weights [32]float32
	var Laux [32]uint8
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		av := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = av + abs32(v)
		}
		scales[j], mins[j] = makeQKX2Quants(nmax, xs, weights[:], L[32*j:32*j+32], Laux[:], rmin, rdelta, nstep, false)
	}
}

func encodeQ4K(src []float32, dst []byte) {
	var L [256]uint8
	var scales, mins [8]float32
	for len(src) >= 256 {
		x, b := src[:256], dst[:144]
		kQuantSubBlocks(x, 15, -1, 0.1, 20, L[:], &scales, &mins)
		kQuantScales(&scales, &mins, b)
		kQuantLevels(x, b, 15, L[:])
		q := b[16:144]
		for j := 0; j < 4; j++ {
			for l := 0; l < 32; l++ {
				q[32*j+l] = L[64*j+l] | L[64*j+l+32]<<4
			}
		}
		src, dst = src[256:], dst[144:]
	}
}

func encodeQ5K(src []float32, dst []byte) {
	var L [256]uint8
	var scales, mins [8]float32
	for len(src) >= 256 {
		x, b := src[:256], dst[:176]
		kQuantSubBlocks(x, 31, -0.5, 0.1, 15, L[:], &scales, &mins)
		kQuantScales(&scales, &mins, b)
		kQuantLevels(x, b, 31, L[:])
		qh, ql := b[16:48], b[48:176]
		clear(qh)
		for n := 0; n < 4; n++ {
			m1, m2 := byte(1)<<(2*n), byte(2)<<(2*n)
			for j := 0; j < 32; j++ {
				l1, l2 := L[64*n+j], L[64*n+j+32]
				if l1 > 15 {
					l1 -= 16
					qh[j] |= m1
				}
				if l2 > 15 {
					l2 -= 16
					qh[j] |= m2
				}
				ql[32*n+j] = l1 | l2<<4
			}
		}
		src, dst = src[256:], dst[176:]
	}
}

func encodeQ6K(src []float32, dst []byte) {
	var L [256]int8
	var scales [16]float32
	for len(src) >= 256 {
		x, b := src[:256], dst[:210]
		clear(b)
		for ib := 0; ib < 16; ib++ {
			scales[ib] = makeQXQuants(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		}
		maxScale, maxAbs := absMax(scales[:])
		if maxAbs < groupMaxEps {
			src, dst = src[256:], dst[210:]
			continue
		}
		iscale := -128 / maxScale
		putF16(b[208:], 1/iscale)
		sc := b[192:208]
		for ib := range sc {
			sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		d0 := f16at(b, 208)
		for j := 0; j < 16; j++ {
			d := d0 * float32(int8(sc[j]))
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = int8(max(-32, min(31, nearestInt(x[16*j+ii]/d))) + 32)
			}
		}
		for h := 0; h < 2; h++ {
			ql, qh := b[64*h:64*h+64], b[128+32*h:128+32*h+32]
			Lh := L[128*h : 128*h+128]
			for l := 0; l < 32; l++ {
				q1, q2, q3, q4 := uint8(Lh[l]), uint8(Lh[l+32]), uint8(Lh[l+64]), uint8(Lh[l+96])
				ql[l] = q1&0xf | (q3&0xf)<<4
				ql[l+32] = q2&0xf | (q4&0xf)<<4
				qh[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
			}
		}
		src, dst = src[256:], dst[210:]
	}
}

// bestIndexIQ4 returns the index of the level of kvaluesIQ4NL nearest x
// (ggml's best_index_int8).
func bestIndexIQ4(x float32) uint8 {
	v := &kvaluesIQ4NL
	if x <= float32(v[0]) {
		return 0
	}
	if x >= float32(v[15]) {
		return 15
	}
	lo, hi := 0, 15
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if x < float32(v[mid]) {
			hi = mid
		} else {
			lo = mid
		}
	}
	if x-float32(v[hi-1]) < float32(v[hi])-x {
		return uint8(hi - 1)
	}
	return uint8(hi)
}

// iq4Scale chooses the scale of one 32-element sub-block for the IQ4
// levels, trying 2·ntry+1 candidates around the largest magnitude, with
// weights x² (ggml's quantize_row_iq4_nl_impl without importance weights).
// L receives the levels at the first candidate.
func iq4Scale(xb []float32, L []uint8, ntry int) float32 {
	mx, amax := absMax(xb)
	if amax < groupMaxEps {
		return 0
	}
	v0 := float32(kvaluesIQ4NL[0])
	d := mx / v0
	if ntry > 0 {
		d = -mx / v0
	}
	id := 1 / d
	var sumqx, sumq2 float32
	for j, v := range xb {
		l := bestIndexIQ4(id * v)
		L[j] = l
		q := float32(kvaluesIQ4NL[l])
		w := float32(v * v)
		sumqx += float32(float32(w*q) * v)
		sumq2 += float32(float32(w*q) * q)
	}
	d = 0
	if sumq2 > 0 {
		d = sumqx / sumq2
	}
	best := d * sumqx
	for itry := -ntry; itry <= ntry; itry++ {
		id = (float32(itry) + v0) / mx
		sumqx, sumq2 = 0, 0
		for _, v := range xb {
			q := float32(kvaluesIQ4NL[bestIndexIQ4(id*v)])
			w := float32(v * v)
			sumqx += float32(float32(w*q) * v)
			sumq2 += float32(float32(w*q) * q)
		}
		if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
			d = sumqx / sumq2
			best = d * sumqx
		}
	}
	return d
}

// iq4Pack packs 32 IQ4 level indices per sub-block as ggml stores them.
func iq4Pack(L []uint8, q []byte) {
	for i := 0; i < len(L)/32; i++ {
		for j := 0; j < 16; j++ {
			q[16*i+j] = L[32*i+j] | L[32*i+16+j]<<4
		}
	}
}

// encodeIQ4NL follows llama-quantize's IQ4_NL (quantize_iq4_nl: seven
// candidate scales either side, then the levels re-chosen for the rounded
// scale).
func encodeIQ4NL(src []float32, dst []byte) {
	var L [32]uint8
	for len(src) >= 32 {
		x, b := src[:32], dst[:18]
		clear(L[:])
		d := iq4Scale(x, L[:], 7)
		putF16(b, d)
		id := inv(d)
		for j, v := range x {
			L[j] = bestIndexIQ4(id * v)
		}
		iq4Pack(L[:], b[2:18])
		src, dst = src[32:], dst[18:]
	}
}

// encodeIQ4XS follows llama-quantize's IQ4_XS (quantize_iq4_xs): IQ4_NL's
// scale search per 32-element sub-block, then 6-bit sub-block scales.
func encodeIQ4XS(src []float32, dst []byte) {
	var L [256]uint8
	var scales [8]float32
	for len(src) >= 256 {
		x, b := src[:256], dst[:136]
		clear(b)
		clear(L[:])
		for ib := 0; ib < 8; ib++ {
			scales[ib] = iq4Scale(x[32*ib:32*ib+32], L[32*ib:32*ib+32], 7)
		}
		maxScale, _ := absMax(scales[:])
		d := -maxScale / 32
		putF16(b, d)
		id := inv(d)
		var sh uint16
		for ib := 0; ib < 8; ib++ {
			l := max(-32, min(31, nearestInt(id*scales[ib])))
			idl := inv(d * float32(l))
			for j, v := range x[32*ib : 32*ib+32] {
				L[32*ib+j] = bestIndexIQ4(idl * v)
			}
			l += 32
			b[4+ib/2] |= uint8(l&0xf) << (4 * (ib % 2))
			sh |= uint16(l>>4) << (2 * ib)
		}
		binary.LittleEndian.PutUint16(b[2:], sh)
		iq4Pack(L[:], b[8:136])
		src, dst = src[256:], dst[136:]
	}
}
