package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// testEncodeCases quantizes each fixture's inputs row by row and demands
// the reference bytes exactly, reporting the blocks that differ.
func testEncodeCases(t *testing.T, kind string) map[QType]bool {
	seen := map[QType]bool{}
	for _, c := range loadQuantCases(t, kind) {
		qt := qtypeByName(t, c.Type)
		seen[qt] = true
		want, x := c.load(t)
		rowBytes, err := qt.RowBytes(c.Cols)
		if err != nil || len(want) != c.Rows*rowBytes {
			t.Fatalf("%s: %d bytes for %dx%d (%v)", c.Type, len(want), c.Rows, c.Cols, err)
		}
		got := make([]byte, len(want))
		for r := 0; r < c.Rows; r++ {
			if err := Quantize(qt, x[r*c.Cols:(r+1)*c.Cols], got[r*rowBytes:(r+1)*rowBytes]); err != nil {
				t.Fatalf("%s row %d: %v", c.Type, r, err)
			}
		}
		ts := qt.TypeSize()
		bad := 0
		for b := 0; b < len(got)/ts; b++ {
			if string(got[b*ts:(b+1)*ts]) != string(want[b*ts:(b+1)*ts]) {
				if bad < 3 {
					t.Errorf("%s (%s) block %d: got % x\nwant % x", c.Type, kind, b, got[b*ts:(b+1)*ts], want[b*ts:(b+1)*ts])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s (%s): %d of %d blocks differ", c.Type, kind, bad, len(got)/ts)
		}
	}
	return seen
}

// TestQuantizeMatchesGGUFPy: gguf-py's quantizers (written to match
// ggml's reference ones) give the same bytes.
func TestQuantizeMatchesGGUFPy(t *testing.T) {
	seen := testEncodeCases(t, "encode")
	for _, qt := range []QType{QF16, QBF16, QQ4_0, QQ4_1, QQ5_0, QQ5_1, QQ8_0, QMXFP4} {
		if !seen[qt] {
			t.Errorf("no gguf-py encode fixture for %s", qt)
		}
	}
}

// TestQuantizeMatchesGGML: ggml's own C quantizers (ggml_quantize_chunk, as
// llama-quantize calls it without an importance matrix) give the same bytes.
func TestQuantizeMatchesGGML(t *testing.T) {
	seen := testEncodeCases(t, "encode-c")
	for _, qt := range []QType{QQ4_0, QQ4_1, QQ5_0, QQ5_1, QQ8_0, QQ2_K, QQ3_K, QQ4_K, QQ5_K, QQ6_K, QIQ4_NL, QIQ4_XS, QMXFP4} {
		if !seen[qt] {
			t.Errorf("no ggml encode fixture for %s", qt)
		}
	}
}

// quantTypes are the block types Quantize writes, with the largest
// relative RMS error of a round trip of Gaussian data we accept: about 1.2x
// what ggml's quantizers (which ours match bit for bit, see
// TestQuantizeMatchesGGML) reach on this data (q4_0 0.086, q4_1 0.078,
// q5_0 0.044, q5_1 0.038, q8_0 0.0054, q2_K 0.295, q3_K 0.153, q4_K 0.071,
// q5_K 0.036, q6_K 0.018, iq4_nl 0.077, iq4_xs 0.077, mxfp4 0.117).
var quantTypes = []struct {
	t     QType
	bound float64
}{
	{QQ4_0, 0.1}, {QQ4_1, 0.095}, {QQ5_0, 0.053}, {QQ5_1, 0.046}, {QQ8_0, 0.0065},
	{QQ2_K, 0.35}, {QQ3_K, 0.18}, {QQ4_K, 0.085}, {QQ5_K, 0.043}, {QQ6_K, 0.022},
	{QIQ4_NL, 0.092}, {QIQ4_XS, 0.092}, {QMXFP4, 0.14},
}

func gaussian(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 0.02)
	}
	return x
}

func relRMS(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(a[i]) * float64(a[i])
	}
	return math.Sqrt(num / den)
}

// TestQuantizeRoundTrip: every type's round trip error on Gaussian data is
// within its bound, and quantizing the decoded values again decodes to
// values no further from them than the first round trip was from the input.
func TestQuantizeRoundTrip(t *testing.T) {
	x := gaussian(4*1024, 7)
	for _, c := range quantTypes {
		nb, _ := c.t.RowBytes(len(x))
		q := make([]byte, nb)
		if err := Quantize(c.t, x, q); err != nil {
			t.Fatalf("%s: %v", c.t, err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(c.t, q, y); err != nil {
			t.Fatal(err)
		}
		e1 := relRMS(x, y)
		if e1 > c.bound || e1 == 0 {
			t.Errorf("%s: relative RMS error %.4f, want (0, %.3f]", c.t, e1, c.bound)
		}
		q2 := make([]byte, nb)
		if err := Quantize(c.t, y, q2); err != nil {
			t.Fatal(err)
		}
		y2 := make([]float32, len(x))
		if err := Dequantize(c.t, q2, y2); err != nil {
			t.Fatal(err)
		}
		if e2 := relRMS(y, y2); e2 > e1 {
			t.Errorf("%s: re-quantizing the decoded values moved them by %.4f, more than the first round trip's %.4f", c.t, e2, e1)
		}
		t.Logf("%-7s round trip %.4f, again %.4f", c.t, e1, relRMS(y, y2))
	}
}

// TestQuantizeExactTypes: values a type represents exactly come back
// exactly (a fixed point of quantize∘dequantize).
func TestQuantizeExactTypes(t *testing.T) {
	x := []float32{0, 1, -1, 0.5, -2.75, 65504, 3.0517578e-05, -0}
	for len(x) < 32 {
		x = append(x, float32(len(x))/8)
	}
	for _, qt := range []QType{QF32, QF16, QBF16} {
		nb, _ := qt.RowBytes(len(x))
		q := make([]byte, nb)
		if err := Quantize(qt, x, q); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(qt, q, y); err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if qt != QBF16 || float32(ToBF16(x[i]).Float32()) == x[i] {
				if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
					t.Errorf("%s: %g came back as %g", qt, x[i], y[i])
				}
			}
		}
	}
	// Q8_0: integers times a power-of-two scale are exact.
	for i := range x {
		x[i] = float32(i%255-127) / 4
	}
	x[0] = -127.0 / 4
	q := make([]byte, 34)
	y := make([]float32, 32)
	if err := Quantize(QQ8_0, x, q); err != nil {
		t.Fatal(err)
	}
	_ = Dequantize(QQ8_0, q, y)
	for i := range x {
		if x[i] != y[i] {
			t.Errorf("q8_0: %g came back as %g", x[i], y[i])
		}
	}
}

func TestQuantizeBadInput(t *testing.T) {
	x := gaussian(256, 1)
	x[77] = float32(math.NaN())
	for _, c := range []struct {
		t    QType
		n, b int
		want string
	}{
		{QQ4_K, 256, 144, "non-finite value NaN at element 77"},
		{QQ4_K, 200, 144, "not a whole number"},
		{QQ8_0, 256, 10, "take 272 bytes, have 10"},
		{QQ8_K, 256, 292, "encoding to q8_K is not supported"},
		{QType(99), 256, 10, "unknown tensor type"},
	} {
		err := Quantize(c.t, x[:c.n], make([]byte, c.b))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.t, err, c.want)
		}
	}
	// Non-finite values are fine for the float types.
	if err := Quantize(QF16, x, make([]byte, 512)); err != nil {
		t.Errorf("f16 with a NaN: %v", err)
	}
}

func TestFloat32ToF16(t *testing.T) {
	// Every half round-trips; midpoints between neighbours round to even.
	for h := 0; h < 1<<16; h++ {
		f := F16ToFloat32(uint16(h))
		if f != f {
			if g := Float32ToF16(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Fatalf("%#04x: NaN encoded as %#04x", h, g)
			}
			continue
		}
		if g := Float32ToF16(f); g != uint16(h) {
			t.Fatalf("%#04x (%g) encoded as %#04x", h, f, g)
		}
		if h&0x7fff < 0x7bff { // not the largest finite or Inf
			next := F16ToFloat32(uint16(h + 1))
			mid := float32((float64(f) + float64(next)) / 2)
			want := uint16(h)
			if h&1 == 1 {
				want = uint16(h + 1)
			}
			if g := Float32ToF16(mid); g != want {
				t.Fatalf("midpoint %g of %#04x,%#04x encoded as %#04x, want %#04x", mid, h, h+1, g, want)
			}
		}
	}
	if Float32ToF16(65520) != 0x7c00 || Float32ToF16(65519.99) != 0x7bff {
		t.Error("overflow threshold")
	}
}

// BenchmarkQuantize reports encoding speed in MB/s of float32 input.
func BenchmarkQuantize(b *testing.B) {
	x := gaussian(1<<14, 3)
	for _, c := range quantTypes {
		nb, _ := c.t.RowBytes(len(x))
		q := make([]byte, nb)
		b.Run(fmt.Sprint(c.t), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if err := Quantize(c.t, x, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
