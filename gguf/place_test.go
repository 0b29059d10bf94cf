package gguf

import (
	"bytes"
	"runtime"
	"testing"
)

// TestOpenModelOnHugePages checks that PlaceHuge moves every matrix into
// the copy (no view is left into the file's mapping), that the copy holds
// the file's bytes exactly, and that it is read-only.
func TestOpenModelOnHugePages(t *testing.T) {
	path := familyFixture("qwen3moe", "q8_0")
	ref, err := OpenModel(path, PlaceMapped)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	m, err := OpenModel(path, PlaceHuge)
	if runtime.GOOS != "linux" {
		if err == nil {
			t.Fatal("PlaceHuge worked off Linux")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !bytes.Equal(m.f.data, ref.f.data) {
		t.Fatal("the copy differs from the file")
	}
	if len(m.Layers) != len(ref.Layers) || m.Tok == nil {
		t.Fatalf("%d layers (want %d), tokenizer %v", len(m.Layers), len(ref.Layers), m.Tok != nil)
	}
	for l := range m.Layers {
		for e, x := range m.Layers[l].Experts {
			rx := ref.Layers[l].Experts[e]
			for i, mx := range []Matrix{x.Gate, x.Up, x.Down} {
				rm := []Matrix{rx.Gate, rx.Up, rx.Down}[i]
				if !inside(mx.Data, m.f.data) || inside(mx.Data, ref.f.data) || !bytes.Equal(mx.Data, rm.Data) {
					t.Fatalf("%s: not an equal view into the copy", mx.Name)
				}
			}
		}
	}
	if !inside(m.Embed.Data, m.f.data) || !bytes.Equal(m.Embed.Data, ref.Embed.Data) {
		t.Fatal("embedding not an equal view into the copy")
	}
}

func TestParsePlacement(t *testing.T) {
	for _, p := range []Placement{PlaceAuto, PlaceMapped, PlaceHuge} {
		if q, err := ParsePlacement(p.String()); err != nil || q != p {
			t.Fatalf("%v: got %v, %v", p, q, err)
		}
	}
	if _, err := ParsePlacement("hugepages"); err == nil {
		t.Fatal("bad placement accepted")
	}
}
