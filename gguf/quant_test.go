package gguf

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// f16Ref is the value of half h computed in float64 from the IEEE formula.
func f16Ref(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return s * m * math.Pow(2, -24)
	case 31:
		if m != 0 {
			return math.NaN()
		}
		return s * math.Inf(1)
	}
	return s * (1 + m/1024) * math.Pow(2, float64(e-15))
}

func TestF16DecodeAllValues(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got, want := float64(F16ToFloat32(h)), f16Ref(h)
		if math.IsNaN(want) {
			if !math.IsNaN(got) {
				t.Fatalf("%#04x: got %v, want NaN", h, got)
			}
			continue
		}
		if got != want || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("%#04x: got %v, want %v", h, got, want)
		}
		if back := Float32ToF16(float32(got)); back != h {
			t.Fatalf("%#04x: round trip gives %#04x", h, back)
		}
	}
}

// checkNearestF16 asserts that Float32ToF16(x) is a nearest half to x (ties
// to even), comparing in float64 against the neighbouring halves.
func checkNearestF16(t *testing.T, x float32) {
	t.Helper()
	h := Float32ToF16(x)
	xv := float64(x)
	if math.Abs(xv) >= 65520 { // halfway between 65504 and the next step
		if want := f16Ref(h); !math.IsInf(want, 0) || math.Signbit(want) != math.Signbit(xv) {
			t.Fatalf("%v: got %#04x (%v), want ±Inf", x, h, want)
		}
		return
	}
	err := math.Abs(f16Ref(h) - xv)
	for _, n := range []uint16{h - 1, h + 1, h ^ 0x8000} {
		if n&0x7c00 == 0x7c00 {
			continue
		}
		ne := math.Abs(f16Ref(n) - xv)
		if ne < err || (ne == err && n&1 == 0 && h&1 == 1 && n != h^0x8000) {
			t.Fatalf("%v (%#08x): got %#04x (%v, err %g), neighbour %#04x (%v, err %g) is nearer or even",
				x, math.Float32bits(x), h, f16Ref(h), err, n, f16Ref(n), ne)
		}
	}
}

func TestF16EncodeRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		// Random bit patterns over the exponents a half can hold or nearly.
		b := r.Uint32()&0x807fffff | uint32(100+r.IntN(50))<<23
		checkNearestF16(t, math.Float32frombits(b))
	}
	// Exact midpoints between consecutive halves must round to even.
	for i := 0; i < 0x7bff; i += 7 {
		mid := float32((f16Ref(uint16(i)) + f16Ref(uint16(i+1))) / 2)
		checkNearestF16(t, mid)
		checkNearestF16(t, -mid)
	}
	cases := []struct {
		x    float32
		want uint16
	}{
		{0, 0}, {float32(math.Copysign(0, -1)), 0x8000}, {1, 0x3c00}, {-2, 0xc000},
		{65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7c00}, {1e10, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00}, {float32(math.Pow(2, -24)), 0x0001},
		{float32(math.Pow(2, -25)), 0}, {float32(math.Pow(2, -25) * 1.5), 0x0001},
		{1 + 1.0/2048, 0x3c00}, {1 + 3.0/2048, 0x3c02}, {float32(math.Pow(2, -14)), 0x0400},
	}
	for _, c := range cases {
		if got := Float32ToF16(c.x); got != c.want {
			t.Errorf("Float32ToF16(%v) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
	if h := Float32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN encodes as %#04x, not a NaN", h)
	}
}

func TestBF16(t *testing.T) {
	cases := []struct {
		x    float32
		want uint16
	}{
		{1, 0x3f80}, {-2, 0xc000}, {math.Float32frombits(0x3f808000), 0x3f80}, // tie to even
		{math.Float32frombits(0x3f818000), 0x3f82}, {math.Float32frombits(0x3f808001), 0x3f81},
		{float32(math.Inf(1)), 0x7f80},
	}
	for _, c := range cases {
		if got := Float32ToBF16(c.x); got != c.want {
			t.Errorf("Float32ToBF16(%v) = %#04x, want %#04x", c.x, got, c.want)
		}
		if c.want != 0x7f80 && BF16ToFloat32(c.want) != math.Float32frombits(uint32(c.want)<<16) {
			t.Errorf("BF16ToFloat32(%#04x) wrong", c.want)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 10000; i++ {
		x := float32(r.NormFloat64())
		y := BF16ToFloat32(Float32ToBF16(x))
		if math.Abs(float64(x-y)) > math.Abs(float64(x))*math.Pow(2, -8) {
			t.Fatalf("bf16 round trip of %v gives %v", x, y)
		}
	}
}

// roundTrip encodes and decodes src as t.
func roundTrip(t *testing.T, typ GGMLType, src []float32) []float32 {
	t.Helper()
	raw, err := Encode(typ, src)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := RowBytes(typ, int64(len(src))); int64(len(raw)) != want {
		t.Fatalf("%s: %d bytes, want %d", typ, len(raw), want)
	}
	out := make([]float32, len(src))
	if err := Decode(typ, raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestQuantErrorBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n = 32 * 256
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(r.NormFloat64() * math.Exp(r.NormFloat64())) // varied block scales
	}
	for i := 64; i < 96; i++ {
		src[i] = 0 // an all-zero block
	}
	for _, typ := range []GGMLType{Q8_0, Q4_0} {
		out := roundTrip(t, typ, src)
		var sse, ssx float64
		for b := 0; b < n/32; b++ {
			x, y := src[32*b:32*b+32], out[32*b:32*b+32]
			var amax, mx float64
			for _, v := range x {
				if a := math.Abs(float64(v)); a > amax {
					amax, mx = a, float64(v)
				}
			}
			var d float64
			var qmax float64
			if typ == Q8_0 {
				d, qmax = amax/127, 127
			} else {
				d, qmax = math.Abs(mx/8), 8
			}
			d16 := math.Abs(float64(F16ToFloat32(Float32ToF16(float32(d)))))
			// Rounding costs half a step (a whole step for q4_0's clamped top
			// code); the half-precision scale costs up to qmax·|d - d16|.
			bound := 0.5*d + qmax*math.Abs(d-d16) + 1e-6*amax
			if typ == Q4_0 {
				bound += 0.5 * d
			}
			for j := range x {
				e := math.Abs(float64(x[j]) - float64(y[j]))
				if e > bound {
					t.Fatalf("%s block %d elem %d: |%v - %v| = %g > bound %g", typ, b, j, x[j], y[j], e, bound)
				}
				sse += e * e
				ssx += float64(x[j]) * float64(x[j])
			}
		}
		rel := math.Sqrt(sse / ssx)
		limit := map[GGMLType]float64{Q8_0: 0.015, Q4_0: 0.15}[typ]
		t.Logf("%s relative RMS error %.4f", typ, rel)
		if rel > limit {
			t.Errorf("%s relative RMS error %.4f > %.2f", typ, rel, limit)
		}
		for i := 64; i < 96; i++ {
			if out[i] != 0 {
				t.Fatalf("%s: zero block decodes to %v", typ, out[i])
			}
		}
	}
}

func TestQuantKnownValues(t *testing.T) {
	x := make([]float32, 32)
	for j := range x {
		x[j] = float32(j - 16) // -16..15: max |x| is -16, so q4_0's d = 2
	}
	raw, err := Encode(Q4_0, x)
	if err != nil {
		t.Fatal(err)
	}
	if raw[0] != 0x00 || raw[1] != 0x40 { // f16(2) = 0x4000
		t.Fatalf("q4_0 scale bytes %x, want 0040", raw[:2])
	}
	// x[0] = -16 → code 0; x[16] = 0 → code 8: byte 0 = 0x80.
	if raw[2] != 0x80 {
		t.Fatalf("q4_0 first code byte %#02x, want 0x80", raw[2])
	}
	y := make([]float32, 32)
	if err := Decode(Q4_0, raw, y); err != nil {
		t.Fatal(err)
	}
	want := map[int]float32{0: -16, 1: -14, 2: -14, 16: 0, 17: 2, 31: 14} // 15 → clamped code 15 → 14
	for j, v := range want {
		if y[j] != v {
			t.Errorf("q4_0 decode[%d] = %v, want %v", j, y[j], v)
		}
	}
	for j := range x {
		x[j] = float32(j-16) / 16 * 127 // amax 127 → d = 1: exact
	}
	raw, _ = Encode(Q8_0, x)
	if raw[0] != 0x00 || raw[1] != 0x3c {
		t.Fatalf("q8_0 scale bytes %x, want 003c", raw[:2])
	}
	if err := Decode(Q8_0, raw, y); err != nil {
		t.Fatal(err)
	}
	for j := range x {
		if want := float32(math.Round(float64(x[j]))); y[j] != want {
			t.Errorf("q8_0 decode[%d] = %v, want %v", j, y[j], want)
		}
	}
}

func TestCodecErrors(t *testing.T) {
	if _, err := Encode(Q8_0, make([]float32, 33)); err == nil {
		t.Error("q8_0 of 33 values: no error")
	}
	if _, err := Encode(Q4_0, append(make([]float32, 31), float32(math.NaN()))); err == nil {
		t.Error("q4_0 of NaN: no error")
	}
	if _, err := Encode(GGMLType(9), make([]float32, 256)); err == nil || !strings.Contains(err.Error(), "encoding to q8_1 is not supported") {
		t.Errorf("encode to q8_1: %v", err)
	}
	if err := Decode(GGMLType(9), make([]byte, 36), make([]float32, 32)); err == nil || !strings.Contains(err.Error(), "decoding q8_1 tensors is not supported") {
		t.Errorf("decode of q8_1: %v", err)
	}
	if err := Decode(F16, make([]byte, 3), make([]float32, 2)); err == nil {
		t.Error("decode with wrong byte count: no error")
	}
	if err := Decode(GGMLType(99), nil, nil); err == nil {
		t.Error("decode of unknown type: no error")
	}
	for _, typ := range []GGMLType{F32, F16, BF16} {
		x := []float32{1.5, -0.25, 3}
		if y := roundTrip(t, typ, x); y[0] != 1.5 || y[1] != -0.25 || y[2] != 3 {
			t.Errorf("%s round trip of exact values: %v", typ, y)
		}
	}
}
