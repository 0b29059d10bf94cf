package compute

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// quantCase is one entry of testdata/quant/index.json (written by
// testdata/gen_quant_vectors.py from llama.cpp's gguf-py).
type quantCase struct {
	Kind   string `json:"kind"` // decode: floats = gguf-py's decoding of bytes; encode: bytes = gguf-py's encoding of floats
	Type   string `json:"type"`
	Rows   int    `json:"rows"`
	Cols   int    `json:"cols"`
	Bytes  string `json:"bytes"`
	Floats string `json:"floats"`
}

func loadQuantCases(t *testing.T, kind string) []quantCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "quant", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct{ Cases []quantCase }
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	var out []quantCase
	for _, c := range idx.Cases {
		if c.Kind == kind {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s cases in index.json", kind)
	}
	return out
}

// qtypeByName finds a type by ggml's name, case-insensitively.
func qtypeByName(t *testing.T, name string) QType {
	t.Helper()
	for q := range qtypes {
		if strings.EqualFold(q.String(), name) {
			return q
		}
	}
	t.Fatalf("fixture type %q unknown", name)
	return 0
}

func (c quantCase) load(t *testing.T) ([]byte, []float32) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "quant", c.Bytes))
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.ReadFile(filepath.Join("testdata", "quant", c.Floats))
	if err != nil {
		t.Fatal(err)
	}
	if len(fb) != 4*c.Rows*c.Cols {
		t.Fatalf("%s: %d float bytes for %dx%d", c.Floats, len(fb), c.Rows, c.Cols)
	}
	f := make([]float32, c.Rows*c.Cols)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(fb[4*i:]))
	}
	return b, f
}

// sameBits reports whether a and b are the same float32 (NaNs equal).
func sameBits(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// TestDequantizeMatchesGGUFPy decodes each fixture's blocks row by row and
// demands the float32 values gguf-py decoded, bit for bit.
func TestDequantizeMatchesGGUFPy(t *testing.T) {
	seen := map[QType]bool{}
	for _, c := range loadQuantCases(t, "decode") {
		qt := qtypeByName(t, c.Type)
		seen[qt] = true
		raw, want := c.load(t)
		rowBytes, err := qt.RowBytes(c.Cols)
		if err != nil || len(raw) != c.Rows*rowBytes {
			t.Fatalf("%s: %d bytes for %dx%d (%v)", c.Type, len(raw), c.Rows, c.Cols, err)
		}
		got := make([]float32, c.Rows*c.Cols)
		for r := 0; r < c.Rows; r++ {
			if err := Dequantize(qt, raw[r*rowBytes:(r+1)*rowBytes], got[r*c.Cols:(r+1)*c.Cols]); err != nil {
				t.Fatalf("%s row %d: %v", c.Type, r, err)
			}
		}
		bad := 0
		for i := range got {
			if !sameBits(got[i], want[i]) {
				if bad < 5 {
					t.Errorf("%s element %d (row %d): got %g (%#08x), gguf-py %g (%#08x)", c.Type, i, i/c.Cols, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d values differ", c.Type, bad, len(got))
		}
		// The whole tensor at once gives the same values.
		all := make([]float32, len(got))
		if err := Dequantize(qt, raw, all); err != nil {
			t.Fatal(err)
		}
		for i := range all {
			if !sameBits(all[i], got[i]) {
				t.Fatalf("%s: whole-tensor decode differs from row decode at %d", c.Type, i)
			}
		}
	}
	for _, qt := range []QType{QF32, QF16, QBF16, QQ4_0, QQ4_1, QQ5_0, QQ5_1, QQ8_0, QQ2_K, QQ3_K, QQ4_K, QQ5_K, QQ6_K, QIQ4_NL, QIQ4_XS, QMXFP4} {
		if !seen[qt] {
			t.Errorf("no gguf-py fixture for %s", qt)
		}
	}
}

// TestDequantizeQ8K checks Q8_K (which gguf-py does not decode) against its
// definition: a float32 scale times int8 values.
func TestDequantizeQ8K(t *testing.T) {
	blk := make([]byte, 2*292)
	scales := []float32{0.125, -3.5e-7}
	for b, d := range scales {
		binary.LittleEndian.PutUint32(blk[292*b:], math.Float32bits(d))
		for j := 0; j < 256; j++ {
			blk[292*b+4+j] = byte(j*37 + b)
		}
	}
	got := make([]float32, 512)
	if err := Dequantize(QQ8_K, blk, got); err != nil {
		t.Fatal(err)
	}
	for b, d := range scales {
		for j := 0; j < 256; j++ {
			want := float32(float64(d) * float64(int8(byte(j*37+b))))
			if got[256*b+j] != want {
				t.Fatalf("block %d element %d: got %g, want %g", b, j, got[256*b+j], want)
			}
		}
	}
}

func TestF16ToFloat32AllValues(t *testing.T) {
	// Against a float64 construction from the definition, for all 65536 halves.
	for h := 0; h < 1<<16; h++ {
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		e, m := (h>>10)&0x1f, h&0x3ff
		var want float64
		switch {
		case e == 0:
			want = sign * float64(m) * math.Pow(2, -24)
		case e == 31 && m == 0:
			want = math.Inf(int(sign))
		case e == 31:
			if got := F16ToFloat32(uint16(h)); got == got {
				t.Fatalf("%#04x: NaN decoded as %g", h, got)
			}
			continue
		default:
			want = sign * (1 + float64(m)/1024) * math.Pow(2, float64(e-15))
		}
		if got := F16ToFloat32(uint16(h)); float64(got) != want || math.Signbit(float64(got)) != (sign < 0) {
			t.Fatalf("%#04x: got %g, want %g", h, got, want)
		}
	}
}

func TestE8M0Half(t *testing.T) {
	for e := 0; e < 256; e++ {
		want := math.Pow(2, float64(e-128))
		if got := e8m0ToFloat32Half(uint8(e)); float64(got) != want {
			t.Fatalf("e=%d: got %g, want %g", e, got, want)
		}
	}
}

func TestDequantizeBadInput(t *testing.T) {
	for _, c := range []struct {
		t      QType
		src, n int
		want   string
	}{
		{QQ4_K, 144, 255, "not a whole number"},
		{QQ4_K, 143, 256, "take 144 bytes, have 143"},
		{QQ8_0, 0, 32, "take 34 bytes, have 0"},
		{QType(77), 10, 10, "unknown tensor type ggml_type(77)"},
		{QI32, 4, 1, "decoding i32 tensors is not supported"},
	} {
		err := Dequantize(c.t, make([]byte, c.src), make([]float32, c.n))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %d bytes -> %d: got %v, want an error containing %q", c.t, c.src, c.n, err, c.want)
		}
	}
}

// BenchmarkDequantize reports decoding speed in MB/s of float32 output.
func BenchmarkDequantize(b *testing.B) {
	const n = 1 << 16
	dst := make([]float32, n)
	for _, qt := range []QType{QF16, QBF16, QQ8_0, QQ4_0, QQ4_K, QQ5_K, QQ6_K, QQ3_K, QQ2_K, QIQ4_NL, QIQ4_XS, QMXFP4} {
		nb, _ := qt.RowBytes(n)
		src := make([]byte, nb)
		for i := range src {
			src[i] = byte(i * 131)
		}
		b.Run(qt.String(), func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				if err := Dequantize(qt, src, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
