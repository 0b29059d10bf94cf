package gguf

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/moe-llm/moe/compute"
)

// inside reports whether b lies within the bytes of outer.
func inside(b, outer []byte) bool {
	if len(b) == 0 || len(outer) == 0 {
		return false
	}
	p, o := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&outer[0]))
	return p >= o && p+uintptr(len(b)) <= o+uintptr(len(outer))
}

// TestOpenModelInPlace checks that OpenModel uses the mapped file's bytes in
// place (no copy but the RoPE-reordered q and k), that every matrix decodes
// to the exported weights (exactly for f32, q and k reordered back), and
// that Fuse joins exactly the adjacent matrices.
func TestOpenModelInPlace(t *testing.T) {
	tok := testTokenizer(t)
	for _, typ := range []GGMLType{F32, F16, Q8_0, Q4_0} {
		cfg := testConfig(true, false)
		w := randomWeights(t, cfg, 3)
		path := exportTo(t, cfg, w, tok, ExportOptions{Type: typ})
		m, err := OpenModel(path, PlaceMapped)
		if err != nil {
			t.Fatal(err)
		}
		f := m.f
		if !f.Mapped() {
			t.Fatalf("%s: file not mapped", typ)
		}
		_, w2, _, err := ReadModel(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		d, fe := cfg.HiddenSize, cfg.ExpertSize()
		for l := range m.Layers {
			L, W, W2 := &m.Layers[l], &w.Layers[l], &w2.Layers[l]
			for e, x := range L.Experts {
				for _, mx := range []Matrix{x.Gate, x.Up, x.Down} {
					if !inside(mx.Data, f.data) || mx.Type != compute.QType(typ) {
						t.Fatalf("%s: %s is not a %s view into the mapping", typ, mx.Name, typ)
					}
				}
				got := make([]float32, fe*d)
				if err := Decode(typ, x.Down.Data, got); err != nil {
					t.Fatal(err)
				}
				for i := range got {
					if got[i] != W2.ExpertDown[e][i] {
						t.Fatalf("%s: expert %d down %d: %v vs ReadModel %v", typ, e, i, got[i], W2.ExpertDown[e][i])
					}
				}
			}
			if inside(L.Q.Data, f.data) || !inside(L.V.Data, f.data) {
				t.Fatalf("%s: q should be a reordered copy, v a view", typ)
			}
			q := make([]float32, len(W.Wq))
			if err := Decode(GGMLType(L.Q.Type), L.Q.Data, q); err != nil {
				t.Fatal(err)
			}
			for i := range q {
				if typ == F32 && q[i] != W.Wq[i] {
					t.Fatalf("f32: q %d: %v, want %v (RoPE order not restored)", i, q[i], W.Wq[i])
				}
				if q[i] != W2.Wq[i] {
					t.Fatalf("%s: q %d: %v vs ReadModel %v", typ, i, q[i], W2.Wq[i])
				}
			}
			if got := Fuse(L.Q, L.K, L.V); len(got) != 2 || got[0].Rows != L.Q.Rows+L.K.Rows || got[1].Rows != L.V.Rows {
				t.Fatalf("%s: Fuse(q, k, v) = %d blocks, want [q;k] and v", typ, len(got))
			}
			if got := Fuse(L.Experts[0].Gate, L.Experts[1].Gate); len(got) != 1 || got[0].Rows != 2*fe ||
				unsafe.SliceData(got[0].Data) != unsafe.SliceData(L.Experts[0].Gate.Data) {
				t.Fatalf("%s: adjacent expert slices not fused", typ)
			}
			if got := Fuse(L.Experts[1].Gate, L.Experts[0].Gate); len(got) != 2 {
				t.Fatalf("%s: out-of-order slices fused", typ)
			}
		}
		if !inside(m.Output.Data, f.data) || !inside(m.Embed.Data, f.data) {
			t.Fatalf("%s: embedding or output copied", typ)
		}
		if err := m.Close(); err != nil || f.Mapped() {
			t.Fatalf("close: %v, mapped %v", err, f.Mapped())
		}
	}
}

// TestMapModelUnmapped checks the path for a file that is not mapped (read
// through a ReaderAt): the same matrices, as copies that Fuse never joins.
func TestMapModelUnmapped(t *testing.T) {
	tok := testTokenizer(t)
	cfg := testConfig(true, true)
	path := exportTo(t, cfg, randomWeights(t, cfg, 5), tok, ExportOptions{Type: Q8_0})
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Read(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	um, err := mapModel(f)
	if err != nil {
		t.Fatal(err)
	}
	mm, err := OpenModel(path, PlaceMapped)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	for l := range um.Layers {
		a, b := &um.Layers[l], &mm.Layers[l]
		for e := range a.Experts {
			if !bytes.Equal(a.Experts[e].Up.Data, b.Experts[e].Up.Data) {
				t.Fatalf("layer %d expert %d: unmapped bytes differ", l, e)
			}
		}
		if !bytes.Equal(a.K.Data, b.K.Data) {
			t.Fatalf("layer %d: k differs", l)
		}
		if got := Fuse(a.Experts[0].Gate, a.Experts[1].Gate); len(got) != 2 {
			t.Fatal("copies read through the file were fused")
		}
	}
	if unsafe.SliceData(um.Output.Data) != unsafe.SliceData(um.Embed.Data) {
		t.Fatal("tied output is not the embedding")
	}
}

// TestOpenModelErrors checks that bad files fail with an error naming the
// tensor: a type moe cannot compute with, a truncated file, a tensor whose
// shape disagrees with the config.
func TestOpenModelErrors(t *testing.T) {
	tok := testTokenizer(t)
	cfg := testConfig(true, false)
	cfg.HiddenSize = 256 // whole k-quant blocks
	w := randomWeights(t, cfg, 6)
	kvs, tensors, err := exportParts(cfg, w, tok, ExportOptions{Type: Q8_0})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, ts []Tensor) string {
		p := filepath.Join(dir, name)
		if err := WriteFile(context.Background(), p, kvs, ts); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(path string, want ...string) {
		t.Helper()
		m, err := OpenModel(path, PlaceMapped)
		if err == nil {
			m.Close()
			t.Fatalf("%s: no error", path)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("error is not one line: %q", msg)
		}
		for _, s := range want {
			if !strings.Contains(msg, s) {
				t.Errorf("error %q does not mention %q", msg, s)
			}
		}
	}
	// A type whose layout is known but that moe does not compute with here.
	var odd compute.QType
	for _, c := range []compute.QType{compute.QQ4_K, compute.QQ6_K, compute.QIQ4_XS, compute.QI32} {
		if !compute.QMatMulSupported(c) {
			odd = c
			break
		}
	}
	if odd != 0 {
		ts := append([]Tensor(nil), tensors...)
		for i := range ts {
			if ts[i].Name == "blk.1.ffn_up_exps.weight" {
				n, err := TensorBytes(GGMLType(odd), ts[i].Dims)
				if err != nil {
					t.Fatal(err)
				}
				ts[i].Type = GGMLType(odd)
				ts[i].Data = func() ([]byte, error) { return make([]byte, n), nil }
			}
		}
		check(write("odd.gguf", ts), "blk.1.ffn_up_exps.weight", odd.String())
	}
	// Truncated: the last tensor's bytes run past the end.
	good := write("good.gguf", tensors)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc.gguf")
	if err := os.WriteFile(trunc, raw[:len(raw)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	check(trunc, "truncated", "output.weight")
	// A tensor of the wrong shape.
	ts := append([]Tensor(nil), tensors...)
	for i := range ts {
		if ts[i].Name == "blk.0.ffn_down_exps.weight" {
			ts[i].Dims = []uint64{ts[i].Dims[1], ts[i].Dims[0], ts[i].Dims[2]}
		}
	}
	check(write("shape.gguf", ts), "blk.0.ffn_down_exps.weight", "dims")
}
