package compute

import "math"

// Exp32 returns e^x in float32 with a relative error below 3e-7 (about two
// ulp), several times faster than math.Exp: range reduction x = n·ln2 + r
// with |r| ≤ ln2/2, a degree-7 polynomial for e^r and an exponent-bit
// scale. It overflows to +Inf above ~88.72, returns 0 below ~−103.97
// (subnormal results go through math.Exp) and propagates NaN.
func Exp32(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -87.33654:
		if x < -103.97208 {
			return 0
		}
		return float32(math.Exp(float64(x)))
	}
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	// Round x·log2e to the nearest integer with the 1.5·2²³ trick (float32
	// arithmetic rounds every result to float32).
	const magic = 12582912
	t := x*log2e + magic
	n := t - magic
	r := x - n*ln2hi
	r -= n * ln2lo
	// e^r ≈ Σ r^i/i!, i ≤ 7, in Horner form.
	p := float32(1.0 / 5040)
	p = p*r + 1.0/720
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	ni := int32(n)
	if ni > 127 { // 2^128 is not a float32: scale in two steps
		return p * 2 * math.Float32frombits(uint32(ni-1+127)<<23)
	}
	return p * math.Float32frombits(uint32(ni+127)<<23)
}
