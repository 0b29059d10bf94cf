package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/model"
)

// craft writes a checkpoint file with the given header JSON, data bytes
// after the padding, and a valid CRC-32C.
func craft(t *testing.T, path string, hdr []byte, data []byte) {
	t.Helper()
	var b []byte
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, Version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	b = append(b, hdr...)
	b = append(b, make([]byte, padding(len(hdr)))...)
	b = append(b, data...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCraftedHeadersRefused checks headers with a valid CRC but values
// that would panic or allocate without bound: each is one error line
// naming the file and the problem, from ReadFile, ReadHeader and LoadModel.
func TestCraftedHeadersRefused(t *testing.T) {
	dir := t.TempDir()
	good := microConfig()
	n := model.NumParams(good)
	weights := make([]byte, 4*n)
	for _, c := range []struct {
		name   string
		edit   func(h map[string]any, cfg map[string]any)
		data   []byte
		substr string
	}{
		{"negative layers", func(h, cfg map[string]any) { cfg["num_hidden_layers"] = -3 }, weights, "num_hidden_layers"},
		{"16000 layers", func(h, cfg map[string]any) { cfg["num_hidden_layers"] = 16000 }, weights, "num_hidden_layers"},
		{"huge context", func(h, cfg map[string]any) { cfg["max_position_embeddings"] = 1 << 30 }, weights, "max_position_embeddings"},
		{"bert", func(h, cfg map[string]any) { cfg["model_type"] = "bert" }, weights, "bert"},
		{"overflowing count", func(h, cfg map[string]any) {
			h["sections"] = []any{map[string]any{"name": "weights", "count": 1 << 62}}
		}, nil, "section"},
		{"count past the file", func(h, cfg map[string]any) {
			h["sections"] = []any{map[string]any{"name": "weights", "count": n}, map[string]any{"name": "adam_m", "count": 1 << 61}}
		}, weights, "section"},
		{"wrong weight count", func(h, cfg map[string]any) {
			h["sections"] = []any{map[string]any{"name": "weights", "count": n - 1}}
		}, weights[:4*(n-1)], "weights"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfgJSON, _ := json.Marshal(good)
			var cfg map[string]any
			json.Unmarshal(cfgJSON, &cfg)
			h := map[string]any{"step": 1, "config": cfg, "sections": []any{map[string]any{"name": "weights", "count": n}}}
			c.edit(h, cfg)
			hdr, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+Ext)
			craft(t, p, hdr, c.data)
			_, _, err = LoadModel(p)
			if err == nil || !strings.Contains(err.Error(), c.substr) || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "\n") {
				t.Errorf("LoadModel: %v, want one line naming %s and %q", err, p, c.substr)
			}
			if c.name != "wrong weight count" {
				if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), c.substr) {
					t.Errorf("ReadFile: %v, want an error naming %q", err, c.substr)
				}
			}
		})
	}
	// The untouched crafted file loads: the helper itself is right.
	cfgJSON, _ := json.Marshal(good)
	hdr := []byte(`{"step":1,"config":` + string(cfgJSON) + `,"sections":[{"name":"weights","count":` + itoa(n) + `}]}`)
	p := filepath.Join(dir, "ok"+Ext)
	craft(t, p, hdr, weights)
	if _, _, err := LoadModel(p); err != nil {
		t.Errorf("valid crafted file: %v", err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestNonFiniteWeightsRefused checks that LoadModel names the tensor that
// holds a NaN or an infinity.
func TestNonFiniteWeightsRefused(t *testing.T) {
	cfg := microConfig()
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range w.Flat {
		w.Flat[i] = 0.01
	}
	for _, c := range []struct {
		bad  float32
		at   func() *float32
		name string
	}{
		{float32(math.NaN()), func() *float32 { return &w.Layers[1].Wk[3] }, "layers.1.wk"},
		{float32(math.Inf(-1)), func() *float32 { return &w.FinalNorm[0] }, "final_norm"},
	} {
		p := c.at()
		old := *p
		*p = c.bad
		dir := t.TempDir()
		if _, err := Save(dir, Header{Config: cfg}, []Tensor{{SectionWeights, w.Flat}}, 0); err != nil {
			t.Fatal(err)
		}
		*p = old
		_, _, err := LoadModel(dir)
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("weights with %v in %s: %v", c.bad, c.name, err)
		}
	}
}

// TestReadResumableFallsBack corrupts the newest checkpoint: the previous
// one is read, the corrupt one is set aside (renamed, no longer listed) and
// reported.
func TestReadResumableFallsBack(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []int{1, 2, 3} {
		writeSample(t, dir, s) // keeps the newest two: 3 and 2
	}
	newest := filepath.Join(dir, FileName(3))
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newest, flip(b, len(b)-40), 0o644); err != nil {
		t.Fatal(err)
	}
	ck, skipped, err := ReadResumable(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Header.Step != 2 {
		t.Errorf("resumed from step %d, want 2", ck.Header.Step)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0].Error(), newest) || !strings.Contains(skipped[0].Error(), "checksum") {
		t.Errorf("skipped %v, want the corrupt %s", skipped, newest)
	}
	if _, err := os.Stat(newest + ".corrupt"); err != nil {
		t.Errorf("corrupt checkpoint not kept aside: %v", err)
	}
	if paths, _ := List(dir); len(paths) != 1 || filepath.Base(paths[0]) != FileName(2) {
		t.Errorf("List after the fallback: %v", paths)
	}
	// All corrupt: an error naming the newest; none at all: nil.
	b2, _ := os.ReadFile(filepath.Join(dir, FileName(2)))
	os.WriteFile(filepath.Join(dir, FileName(2)), b2[:100], 0o644)
	if _, _, err := ReadResumable(dir); err == nil || !strings.Contains(err.Error(), FileName(2)) {
		t.Errorf("all corrupt: %v", err)
	}
	if ck, _, err := ReadResumable(t.TempDir()); ck != nil || err != nil {
		t.Errorf("empty dir: %v %v", ck, err)
	}
}

// FuzzReadFile feeds arbitrary bytes to the checkpoint reader as a file,
// with the checksum fixed up half of the time so that the header checks
// are reached: it must never panic, and a file it accepts must load or
// fail with an error naming the file.
func FuzzReadFile(f *testing.F) {
	dir := f.TempDir()
	cfg := microConfig()
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, step := range []int{1, 2} {
		if _, err := Save(dir, Header{Step: step, Config: cfg}, []Tensor{{SectionWeights, w.Flat}}, 0); err != nil {
			f.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, FileName(step)))
		f.Add(b, false)
	}
	cfgJSON, _ := json.Marshal(cfg)
	for _, h := range []string{
		`{"config":` + string(cfgJSON) + `,"sections":[{"name":"weights","count":4611686018427387904}]}`,
		`{"config":{"model_type":"bert"},"sections":[]}`,
		`{"sections":[{"name":"x","count":-1}]}`,
	} {
		var b []byte
		b = append(b, Magic...)
		b = binary.LittleEndian.AppendUint32(b, Version)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(h)))
		b = append(b, h...)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC {
			b = binary.LittleEndian.AppendUint32(append([]byte(nil), b...), crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
		}
		p := filepath.Join(t.TempDir(), "c"+Ext)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadFile(p); err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("error does not name the file: %v", err)
		}
		if _, _, err := LoadModel(p); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error: %v", err)
		}
	})
}
