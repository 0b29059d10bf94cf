package compute

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// qTestTypes are the types QMatMul must support.
var qTestTypes = []QType{QF32, QF16, QBF16, QQ8_0, QQ4_0, QQ4_1, QQ5_0, QQ5_1, QQ2_K, QQ3_K,
	QQ4_K, QQ5_K, QQ6_K, QIQ4_NL, QIQ4_XS, QMXFP4}

// refHalf decodes an IEEE half in float64, written from the format.
func refHalf(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e, m := int(h>>10&31), float64(h&1023)
	if e == 0 {
		return s * m * math.Ldexp(1, -24)
	}
	return s * (1 + m/1024) * math.Ldexp(1, e-15)
}

func rh(b []byte, i int) float64 { return refHalf(uint16(b[i]) | uint16(b[i+1])<<8) }

var refIQ4 = [16]float64{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
var refFP4 = [16]float64{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

// refDecode decodes one block of t to float64, following ggml's
// dequantize_row_* element by element (written independently of the
// kernels' unpackers).
func refDecode(t QType, b []byte) []float64 {
	bs := t.BlockSize()
	y := make([]float64, bs)
	switch t {
	case QF32:
		y[0] = float64(math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24))
	case QF16:
		y[0] = rh(b, 0)
	case QBF16:
		y[0] = float64(math.Float32frombits((uint32(b[0]) | uint32(b[1])<<8) << 16))
	case QQ8_0:
		for i := 0; i < 32; i++ {
			y[i] = rh(b, 0) * float64(int8(b[2+i]))
		}
	case QQ4_0, QQ4_1, QIQ4_NL, QMXFP4:
		off, d, m := 2, rh(b, 0), 0.0
		if t == QQ4_1 {
			off, m = 4, rh(b, 2)
		}
		if t == QMXFP4 {
			off, d = 1, math.Ldexp(1, int(b[0])-128)
		}
		for j := 0; j < 16; j++ {
			for h, nib := range []byte{b[off+j] & 15, b[off+j] >> 4} {
				var v float64
				switch t {
				case QQ4_0:
					v = d * (float64(nib) - 8)
				case QQ4_1:
					v = d*float64(nib) + m
				case QIQ4_NL:
					v = d * refIQ4[nib]
				case QMXFP4:
					v = d * refFP4[nib]
				}
				y[j+16*h] = v
			}
		}
	case QQ5_0, QQ5_1:
		qh, qs, d, m := 2, 6, rh(b, 0), 0.0
		if t == QQ5_1 {
			qh, qs, m = 4, 8, rh(b, 2)
		}
		hb := uint32(b[qh]) | uint32(b[qh+1])<<8 | uint32(b[qh+2])<<16 | uint32(b[qh+3])<<24
		for j := 0; j < 32; j++ {
			nib := b[qs+j%16] >> (4 * (j / 16)) & 15
			v := float64(int(nib) | int(hb>>j&1)<<4)
			if t == QQ5_0 {
				y[j] = d * (v - 16)
			} else {
				y[j] = d*v + m
			}
		}
	case QQ4_K, QQ5_K:
		d, dmin := rh(b, 0), rh(b, 2)
		s := b[4:16]
		qs := b[16:]
		if t == QQ5_K {
			qs = b[48:]
		}
		for sub := 0; sub < 8; sub++ {
			var sc, m int
			if sub < 4 {
				sc, m = int(s[sub]&63), int(s[sub+4]&63)
			} else {
				sc = int(s[sub+4]&15) | int(s[sub-4]>>6)<<4
				m = int(s[sub+4]>>4) | int(s[sub]>>6)<<4
			}
			for i := 0; i < 32; i++ {
				q := int(qs[32*(sub/2)+i] >> (4 * (sub % 2)) & 15)
				if t == QQ5_K {
					q += int(b[16+i]>>sub&1) * 16
				}
				y[32*sub+i] = d*float64(sc)*float64(q) - dmin*float64(m)
			}
		}
	case QQ6_K:
		d := rh(b, 208)
		for h := 0; h < 2; h++ {
			ql, qh, sc := b[64*h:], b[128+32*h:], b[192+8*h:]
			for l := 0; l < 32; l++ {
				q1 := int(ql[l]&15|(qh[l]&3)<<4) - 32
				q2 := int(ql[l+32]&15|(qh[l]>>2&3)<<4) - 32
				q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
				q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
				is := l / 16
				y[128*h+l] = d * float64(int8(sc[is])) * float64(q1)
				y[128*h+l+32] = d * float64(int8(sc[is+2])) * float64(q2)
				y[128*h+l+64] = d * float64(int8(sc[is+4])) * float64(q3)
				y[128*h+l+96] = d * float64(int8(sc[is+6])) * float64(q4)
			}
		}
	case QQ3_K:
		d := rh(b, 108)
		hm, qs, s := b[0:32], b[32:96], b[96:108]
		var aux [4]uint32
		for i := range aux[:3] {
			aux[i] = uint32(s[4*i]) | uint32(s[4*i+1])<<8 | uint32(s[4*i+2])<<16 | uint32(s[4*i+3])<<24
		}
		tmp := aux[2]
		aux[2] = (aux[0]>>4)&0x0f0f0f0f | ((tmp>>4)&0x03030303)<<4
		aux[3] = (aux[1]>>4)&0x0f0f0f0f | ((tmp>>6)&0x03030303)<<4
		aux[0] = aux[0]&0x0f0f0f0f | (tmp&0x03030303)<<4
		aux[1] = aux[1]&0x0f0f0f0f | ((tmp>>2)&0x03030303)<<4
		sc := func(i int) float64 { return float64(int8(aux[i/4]>>(8*(i%4)))) - 32 }
		e, is, m := 0, 0, byte(1)
		for h := 0; h < 2; h++ {
			q := qs[32*h:]
			for j := 0; j < 4; j++ {
				for half := 0; half < 2; half++ {
					dl := d * sc(is)
					is++
					for l := 16 * half; l < 16*half+16; l++ {
						v := float64(q[l] >> (2 * j) & 3)
						if hm[l]&m == 0 {
							v -= 4
						}
						y[e] = dl * v
						e++
					}
				}
				m <<= 1
			}
		}
	case QQ2_K:
		d, dmin := rh(b, 80), rh(b, 82)
		e, is := 0, 0
		for h := 0; h < 2; h++ {
			q := b[16+32*h:]
			for j := 0; j < 4; j++ {
				for half := 0; half < 2; half++ {
					sc := b[is]
					is++
					for l := 16 * half; l < 16*half+16; l++ {
						y[e] = d*float64(sc&15)*float64(q[l]>>(2*j)&3) - dmin*float64(sc>>4)
						e++
					}
				}
			}
		}
	case QIQ4_XS:
		d := rh(b, 0)
		sh := int(b[2]) | int(b[3])<<8
		for ib := 0; ib < 8; ib++ {
			ls := int(b[4+ib/2]>>(4*(ib%2))&15) | (sh>>(2*ib)&3)<<4
			dl := d * float64(ls-32)
			for j := 0; j < 16; j++ {
				y[32*ib+j] = dl * refIQ4[b[8+16*ib+j]&15]
				y[32*ib+j+16] = dl * refIQ4[b[8+16*ib+j]>>4]
			}
		}
	default:
		panic("refDecode: " + t.String())
	}
	return y
}

// randHalf returns a finite half of magnitude 2^-14..2 with a random sign.
func randHalf(r *rand.Rand, pos bool) uint16 {
	h := uint16(r.IntN(15)+1)<<10 | uint16(r.IntN(1024))
	if !pos && r.IntN(2) == 0 {
		h |= 0x8000
	}
	return h
}

func putHalf(b []byte, i int, h uint16) { b[i], b[i+1] = byte(h), byte(h>>8) }

// randRows returns n rows of k random valid elements of t.
func randRows(r *rand.Rand, t QType, n, k int) []byte {
	rb, err := t.RowBytes(k)
	if err != nil {
		panic(err)
	}
	w := make([]byte, n*rb)
	for i := range w {
		w[i] = byte(r.Uint32())
	}
	ts := t.TypeSize()
	halves := map[QType][]int{QQ8_0: {0}, QQ4_0: {0}, QQ4_1: {0, 2}, QQ5_0: {0}, QQ5_1: {0, 2},
		QIQ4_NL: {0}, QQ2_K: {80, 82}, QQ3_K: {108}, QQ4_K: {0, 2}, QQ5_K: {0, 2}, QQ6_K: {208}, QIQ4_XS: {0}}
	for b := 0; b < len(w)/ts; b++ {
		blk := w[b*ts : (b+1)*ts]
		switch t {
		case QF32:
			v := math.Float32bits(float32(r.NormFloat64()))
			blk[0], blk[1], blk[2], blk[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		case QF16:
			putHalf(blk, 0, randHalf(r, false))
		case QBF16:
			v := math.Float32bits(float32(r.NormFloat64())) >> 16
			blk[0], blk[1] = byte(v), byte(v>>8)
		case QMXFP4:
			blk[0] = byte(118 + r.IntN(16))
			if r.IntN(8) == 0 {
				blk[0] = byte(r.IntN(3)) // the subnormal scales
			}
		default:
			for _, off := range halves[t] {
				putHalf(blk, off, randHalf(r, off > 0))
			}
		}
	}
	return w
}

// qRefCase is one product with its float64 reference and error bound.
type qRefCase struct {
	ref, bound []float64
}

// refQMatMul computes the float64 product and, per output, a bound on the
// error from quantizing A (half a quantization step per element, times
// |w|) plus float32 rounding.
func refQMatMul(t QType, rows, n, k int, a []float32, lda int, w []byte) qRefCase {
	rb, _ := t.RowBytes(k)
	ts, bs := t.TypeSize(), t.BlockSize()
	qb := 0
	switch {
	case bs == 32:
		qb = 32
	case bs == 256:
		qb = 256
	}
	wf := make([]float64, k)
	out := qRefCase{make([]float64, rows*n), make([]float64, rows*n)}
	for j := 0; j < n; j++ {
		for b := 0; b < k/bs; b++ {
			copy(wf[b*bs:], refDecode(t, w[j*rb+b*ts:j*rb+(b+1)*ts]))
		}
		for r := 0; r < rows; r++ {
			x := a[r*lda : r*lda+k]
			var s, abs, qerr float64
			for i := range x {
				s += float64(x[i]) * wf[i]
				abs += math.Abs(float64(x[i]) * wf[i])
			}
			if qb > 0 {
				for b0 := 0; b0 < k; b0 += qb {
					var amax, wabs float64
					for i := b0; i < b0+qb; i++ {
						amax = max(amax, math.Abs(float64(x[i])))
						wabs += math.Abs(wf[i])
					}
					qerr += amax / 127 / 2 * wabs
				}
			}
			out.ref[r*n+j] = s
			out.bound[r*n+j] = qerr*1.001 + 1e-5*abs + 1e-30
		}
	}
	return out
}

func randActs(r *rand.Rand, rows, k, lda int) []float32 {
	a := make([]float32, (rows-1)*lda+k)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	return a
}

// TestQMatMulReference checks every type against the float64 reference
// over odd shapes, that every assembly kernel set this machine runs
// (AVX-512, AVX2) agrees with the portable kernels bit for bit, and that C
// outside the product is untouched.
func TestQMatMulReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, ty := range qTestTypes {
		bs := ty.BlockSize()
		ks := []int{1, 17, 64, 100}
		switch bs {
		case 32:
			ks = []int{32, 96, 160, 256}
		case 256:
			ks = []int{256, 768}
		}
		for _, k := range ks {
			for _, rows := range []int{1, 3, 17, 33, 70} {
				n := []int{1, 5, 37}[(rows+k)%3]
				lda, ldc := k+3, n+2
				a := randActs(r, rows, k, lda)
				w := randRows(r, ty, n, k)
				ref := refQMatMul(ty, rows, n, k, a, lda, w)
				const sentinel = 12345
				c := make([]float32, (rows-1)*ldc+n+1)
				for i := range c {
					c[i] = sentinel
				}
				qmatmul(nil, ty, rows, n, k, a, lda, w, c, ldc, nil)
				for _, ks := range qAllKernels() {
					ca := make([]float32, len(c))
					copy(ca, c)
					for i := 0; i < rows; i++ {
						clear(ca[i*ldc : i*ldc+n])
					}
					qmatmul(nil, ty, rows, n, k, a, lda, w, ca, ldc, ks)
					for i := range c {
						if math.Float32bits(ca[i]) != math.Float32bits(c[i]) {
							t.Fatalf("%s rows%d n%d k%d: C[%d][%d] = %v (%s) vs %v (Go)", ty, rows, n, k, i/ldc, i%ldc, ca[i], ks.name, c[i])
						}
					}
				}
				for i := 0; i < rows; i++ {
					for j := 0; j < ldc && i*ldc+j < len(c); j++ {
						got := c[i*ldc+j]
						if j >= n {
							if got != sentinel {
								t.Fatalf("%s rows%d n%d k%d: C[%d][%d] outside the product written", ty, rows, n, k, i, j)
							}
							continue
						}
						want, bound := ref.ref[i*n+j], ref.bound[i*n+j]
						if math.Abs(float64(got)-want) > bound {
							t.Fatalf("%s rows%d n%d k%d: C[%d][%d] = %v, want %v ± %.3g", ty, rows, n, k, i, j, got, want, bound)
						}
					}
				}
			}
		}
	}
}

// TestQMatMulIndependence checks that results are bit-identical whatever
// the pool's size and, for rows <= 32, whatever the other rows of the call.
func TestQMatMulIndependence(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pools := []*Pool{NewPool(1), NewPool(2), NewPool(3)}
	defer func() {
		for _, p := range pools {
			p.Close()
		}
	}()
	for _, ty := range qTestTypes {
		k := 512
		if ty.BlockSize() == 32 {
			k = 224
		}
		rows, n := 17, 70
		a := randActs(r, rows, k, k)
		w := randRows(r, ty, n, k)
		base := make([]float32, rows*n)
		QMatMul(nil, ty, rows, n, k, a, k, w, base, n)
		for pi, p := range pools {
			c := make([]float32, rows*n)
			QMatMul(p, ty, rows, n, k, a, k, w, c, n)
			for i := range c {
				if math.Float32bits(c[i]) != math.Float32bits(base[i]) {
					t.Fatalf("%s: pool %d threads: C[%d] = %v, serial %v", ty, pools[pi].Threads(), i, c[i], base[i])
				}
			}
		}
		for i := 0; i < rows; i++ {
			c := make([]float32, n)
			QMatMul(pools[1], ty, 1, n, k, a[i*k:], k, w, c, n)
			for j := range c {
				if math.Float32bits(c[j]) != math.Float32bits(base[i*n+j]) {
					t.Fatalf("%s: row %d alone: C[%d] = %v, in a batch of %d %v", ty, i, j, c[j], rows, base[i*n+j])
				}
			}
		}
	}
}

// TestQMatMulBadInput checks that inconsistent arguments get an error that
// names the problem.
func TestQMatMulBadInput(t *testing.T) {
	a := make([]float32, 64)
	c := make([]float32, 4)
	w := make([]byte, 2*34*2)
	cases := []struct {
		ty      QType
		rows, n int
		k       int
		w       []byte
		want    string
	}{
		{QQ8_1, 1, 2, 64, w, "not supported"},
		{QType(99), 1, 2, 64, w, "not supported"},
		{QQ8_0, 1, 2, 48, w, "whole number"},
		{QQ8_0, 1, 3, 64, w, "W holds"},
		{QQ8_0, 2, 2, 64, w, "A holds"},
		{QQ8_0, -1, 2, 64, w, "negative"},
	}
	for _, tc := range cases {
		err := checkQMatMul(tc.ty, tc.rows, tc.n, tc.k, a, tc.k, tc.w, c, tc.n)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s rows%d n%d k%d: error %v, want one containing %q", tc.ty, tc.rows, tc.n, tc.k, err, tc.want)
		}
	}
	if err := checkQMatMul(QQ8_0, 1, 2, 64, a, 64, w, c, 2); err != nil {
		t.Errorf("consistent arguments: %v", err)
	}
	for _, ty := range qTestTypes {
		if !QMatMulSupported(ty) {
			t.Errorf("%s not supported", ty)
		}
	}
}

// TestQMatMulSpecialActivations checks that zero activations give exact
// zeros and that an infinity or NaN in a row makes that row's outputs NaN
// (±Inf or NaN for float weights: not a silently finite answer) without
// touching the other rows.
func TestQMatMulSpecialActivations(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, ty := range qTestTypes {
		k := 256
		if ty.BlockSize() == 32 {
			k = 96
		}
		n := 19
		w := randRows(r, ty, n, k)
		a := randActs(r, 3, k, k)
		clear(a[:k])
		a[k+5] = float32(math.Inf(1))
		for _, ks := range append([]*qKernels{nil}, qAllKernels()...) {
			useAsm := ks != nil
			c := make([]float32, 3*n)
			qmatmul(nil, ty, 3, n, k, a, k, w, c, n, ks)
			for j := 0; j < n; j++ {
				if c[j] != 0 {
					t.Fatalf("%s asm=%v: zero row gives C[0][%d] = %v", ty, useAsm, j, c[j])
				}
				if v := float64(c[n+j]); !math.IsNaN(v) && !math.IsInf(v, 0) {
					t.Fatalf("%s asm=%v: row with +Inf gives C[1][%d] = %v, want NaN (±Inf for float weights)", ty, useAsm, j, v)
				}
				if v := c[2*n+j]; math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s asm=%v: finite row gives C[2][%d] = %v", ty, useAsm, j, v)
				}
			}
		}
		a[k+5] = float32(math.NaN())
		c := make([]float32, 3*n)
		QMatMul(nil, ty, 3, n, k, a, k, w, c, n)
		for j := 0; j < n; j++ {
			if v := c[n+j]; !math.IsNaN(float64(v)) {
				t.Fatalf("%s: row with NaN gives C[1][%d] = %v, want NaN", ty, j, v)
			}
		}
	}
}
