package compute

import "testing"

func TestQTypeSizes(t *testing.T) {
	for _, c := range []struct {
		t          QType
		name       string
		block, row int
	}{
		{QF32, "f32", 1, 4 * 256}, {QQ8_0, "q8_0", 32, 34 * 8}, {QQ4_K, "q4_K", 256, 144},
		{QQ6_K, "q6_K", 256, 210}, {QMXFP4, "mxfp4", 32, 17 * 8}, {QIQ4_XS, "iq4_xs", 256, 136},
	} {
		if c.t.String() != c.name || c.t.BlockSize() != c.block {
			t.Errorf("%d: got %s block %d, want %s block %d", c.t, c.t, c.t.BlockSize(), c.name, c.block)
		}
		if n, err := c.t.RowBytes(256); err != nil || n != c.row {
			t.Errorf("%s: RowBytes(256) = %d, %v; want %d", c.t, n, err, c.row)
		}
	}
	if _, err := QQ4_K.RowBytes(100); err == nil {
		t.Error("q4_K row of 100 elements: no error")
	}
	if QType(99).Known() || QType(99).String() != "ggml_type(99)" {
		t.Error("type 99 should be unknown")
	}
	if _, err := QType(99).RowBytes(32); err == nil {
		t.Error("unknown type: no error")
	}
}
