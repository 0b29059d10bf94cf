package gguf

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sampleKVs has one value of every metadata type, arrays of each, and an
// array of arrays.
func sampleKVs() []KV {
	return []KV{
		{"general.architecture", "llama"},
		{"u8", uint8(200)}, {"i8", int8(-100)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"u32", uint32(4e9)}, {"i32", int32(-2e9)}, {"f32", float32(1.5)}, {"bool", true},
		{"u64", uint64(1) << 60}, {"i64", int64(-1) << 60}, {"f64", 2.25}, {"empty", ""},
		{"a.u8", []uint8{1, 2}}, {"a.i8", []int8{-1}}, {"a.u16", []uint16{7}}, {"a.i16", []int16{-7}},
		{"a.u32", []uint32{1, 2, 3}}, {"a.i32", []int32{-4}}, {"a.f32", []float32{0.5, -0.5}},
		{"a.bool", []bool{true, false}}, {"a.str", []string{"a", "", "ĠĊ"}}, {"a.u64", []uint64{9}},
		{"a.i64", []int64{-9}}, {"a.f64", []float64{1e300}}, {"a.nested", []any{[]int32{1, 2}, []string{"x"}}},
	}
}

// sampleTensors has an f32 matrix, an f16 vector and a q8_0 tensor.
func sampleTensors() []Tensor {
	raw := func(t GGMLType, v []float32) func() ([]byte, error) {
		return func() ([]byte, error) { return Encode(t, v) }
	}
	m := make([]float32, 6)
	for i := range m {
		m[i] = float32(i) - 2.5
	}
	q := make([]float32, 64)
	for i := range q {
		q[i] = float32(i%7) - 3
	}
	return []Tensor{
		{Name: "m", Dims: []uint64{3, 2}, Type: F32, Data: raw(F32, m)},
		{Name: "v", Dims: []uint64{5}, Type: F16, Data: raw(F16, []float32{1, 2, 3, 4, 5})},
		{Name: "q", Dims: []uint64{32, 2}, Type: Q8_0, Data: raw(Q8_0, q)},
	}
}

func writeSample(t testing.TB, kvs []KV) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, kvs, sampleTensors()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteReadRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 64} {
		kvs := sampleKVs()
		if align != 0 {
			kvs = append(kvs, KV{"general.alignment", align})
		}
		data := writeSample(t, kvs)
		f, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if f.Version != Version {
			t.Errorf("version %d", f.Version)
		}
		if !reflect.DeepEqual(f.KV, kvs) {
			t.Errorf("metadata differs:\n got %#v\nwant %#v", f.KV, kvs)
		}
		wantAlign := uint64(DefaultAlignment)
		if align != 0 {
			wantAlign = uint64(align)
		}
		if f.Alignment != wantAlign || f.DataOffset%int64(wantAlign) != 0 {
			t.Errorf("alignment %d, data offset %d", f.Alignment, f.DataOffset)
		}
		for _, st := range sampleTensors() {
			ti, ok := f.Tensor(st.Name)
			if !ok {
				t.Fatalf("tensor %q missing", st.Name)
			}
			if ti.Offset%wantAlign != 0 || !reflect.DeepEqual(ti.Dims, st.Dims) || ti.Type != st.Type {
				t.Errorf("tensor %q info %+v", st.Name, ti)
			}
			want, _ := st.Data()
			got, err := f.TensorData(ti)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("tensor %q data differs (err %v)", st.Name, err)
			}
		}
		m := make([]float32, 6)
		if err := f.ReadFloat32("m", m); err != nil || m[0] != -2.5 || m[5] != 2.5 {
			t.Errorf("ReadFloat32(m) = %v, %v", m, err)
		}
		if err := f.ReadFloat32("m", make([]float32, 5)); err == nil {
			t.Error("ReadFloat32 with the wrong length: no error")
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.gguf")
	if err := WriteFile(context.Background(), path, sampleKVs(), sampleTensors()); err != nil {
		t.Fatal(err)
	}
	bad := []Tensor{{Name: "bad", Dims: []uint64{4}, Type: F32, Data: func() ([]byte, error) { return make([]byte, 3), nil }}}
	if err := WriteFile(context.Background(), path, nil, bad); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Fatalf("short tensor data: err = %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after a failed write, want 1 (no temp files)", len(entries))
	}
	f, err := Open(path)
	if err != nil {
		t.Fatalf("the earlier file was damaged: %v", err)
	}
	f.Close()
}

func TestWriteErrors(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	if err := Write(ctx, &buf, []KV{{"a", 1}}, nil); err == nil {
		t.Error("int metadata (no GGUF type): no error")
	}
	if err := Write(ctx, &buf, []KV{{"a", uint8(1)}, {"a", uint8(2)}}, nil); err == nil {
		t.Error("duplicate key: no error")
	}
	if err := Write(ctx, &buf, []KV{{"general.alignment", uint32(3)}}, nil); err == nil {
		t.Error("alignment 3: no error")
	}
	ts := sampleTensors()
	ts[1].Name = "m"
	if err := Write(ctx, &buf, nil, ts); err == nil {
		t.Error("duplicate tensor: no error")
	}
	ts = sampleTensors()
	ts[2].Dims = []uint64{16, 4}
	if err := Write(ctx, &buf, nil, ts); err == nil {
		t.Error("q8_0 row of 16: no error")
	}
}

// header returns the byte offsets of interesting fields of a file with
// sampleTensors and the given metadata, found by re-parsing.
func tensorInfoOffset(t *testing.T, data []byte, name string) int {
	t.Helper()
	key := make([]byte, 8+len(name))
	binary.LittleEndian.PutUint64(key, uint64(len(name)))
	copy(key[8:], name)
	i := bytes.LastIndex(data, key)
	if i < 0 {
		t.Fatalf("tensor info %q not found", name)
	}
	return i + len(key) // at n_dims
}

func TestReadErrors(t *testing.T) {
	good := writeSample(t, []KV{{"general.architecture", "llama"}, {"s", "abc"}, {"b", true}})
	patch := func(off int, b ...byte) []byte {
		d := append([]byte(nil), good...)
		copy(d[off:], b)
		return d
	}
	le := func(v uint64, n int) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, v)
		return b[:n]
	}
	m := tensorInfoOffset(t, good, "m") // n_dims(4) dims(2×8) type(4) offset(8)
	q := tensorInfoOffset(t, good, "q")
	sOff := bytes.Index(good, []byte("\x01\x00\x00\x00\x00\x00\x00\x00s")) + 9 // value type of "s"
	bOff := bytes.Index(good, []byte("\x01\x00\x00\x00\x00\x00\x00\x00b")) + 9
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"bad magic", patch(0, 'G', 'G', 'U', 'X'), "bad magic"},
		{"version 1", patch(4, le(1, 4)...), "version"},
		{"big-endian", patch(4, 0, 0, 0, 3), "big-endian"},
		{"empty", nil, "truncated"},
		{"tensor count", patch(8, le(1<<40, 8)...), "tensor count"},
		{"kv count", patch(16, le(1<<40, 8)...), "metadata count"},
		{"unknown value type", patch(sOff, le(13, 4)...), "unknown value type"},
		{"string too long", patch(sOff+4, le(1<<50, 8)...), "truncated"},
		{"bool 2", patch(bOff+4, 2), "bool"},
		{"5 dims", patch(m, le(5, 4)...), "dimensions"},
		{"unknown tensor type", patch(m+4+16, le(77, 4)...), `tensor "m" has type ggml_type(77), which moe does not support`},
		{"unsupported tensor type", patch(m+4+16, le(16, 4)...), `tensor "m" has type iq2_xxs, which moe does not support (it reads f32, f16`},
		{"misaligned offset", patch(m+4+16+4, le(8, 8)...), "alignment"},
		{"offset out of range", patch(m+4+16+4, le(1<<20, 8)...), "truncated"},
		{"overlap", patch(q+4+16+4, le(0, 8)...), "overlaps"},
		{"partial block", patch(q+4, le(16, 8)...), "blocks"},
		{"truncated data", good[:len(good)-40], "truncated"},
	}
	for _, c := range cases {
		_, err := Read(bytes.NewReader(c.data), int64(len(c.data)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	// Every proper prefix of a valid file is rejected, never a panic.
	for n := 0; n < len(good); n++ {
		if _, err := Read(bytes.NewReader(good[:n]), int64(n)); err == nil {
			// The tail padding after the last tensor is not needed.
			f, _ := Read(bytes.NewReader(good), int64(len(good)))
			last := f.Tensors[len(f.Tensors)-1]
			sz, _ := last.Bytes()
			if int64(n) < f.DataOffset+int64(last.Offset)+sz {
				t.Fatalf("prefix of %d bytes parsed without error", n)
			}
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Error("Open of a missing file: no error")
	}
}

func FuzzRead(f *testing.F) {
	good := writeSample(f, sampleKVs())
	f.Add(good)
	f.Add(good[:100])
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		gf, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for i := range gf.Tensors {
			ti := &gf.Tensors[i]
			raw, err := gf.TensorData(ti)
			if err != nil {
				t.Fatalf("validated tensor %q unreadable: %v", ti.Name, err)
			}
			if ti.Elements() <= 1<<16 {
				_ = Decode(ti.Type, raw, make([]float32, ti.Elements()))
			}
		}
	})
}
