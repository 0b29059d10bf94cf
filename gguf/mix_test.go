package gguf

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMixMatchesLlamaQuantize compares Mix.TensorTypes with the types
// llama-quantize chose for every mix on three small models laid out as
// moe's export lays them out (testdata/mix_types.json, written by
// testdata/gen_mix_types.py).
func TestMixMatchesLlamaQuantize(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "mix_types.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Models []struct {
			Name                            string
			Layers, Experts, Heads, KVHeads int
			Tensors                         []struct {
				Name string
				Dims []uint64
			}
			Mixes map[string]struct {
				FileType uint32 `json:"file_type"`
				Types    []string
				Error    string
			}
		}
	}
	if err := json.Unmarshal(bytes.ReplaceAll(raw, []byte(`"kv_heads"`), []byte(`"KVHeads"`)), &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Models) == 0 {
		t.Fatal("no models in mix_types.json")
	}
	checked := 0
	for _, m := range fx.Models {
		ts := make([]MixTensor, len(m.Tensors))
		for i, tt := range m.Tensors {
			ts[i] = MixTensor{Name: tt.Name, Dims: tt.Dims, Type: F32}
		}
		model := MixModel{Layers: m.Layers, Experts: m.Experts, Heads: m.Heads, KVHeads: m.KVHeads}
		for name, want := range m.Mixes {
			mix, err := ParseMix(name)
			if err != nil {
				t.Fatal(err)
			}
			if want.Error != "" {
				t.Logf("%s %s: llama-quantize refused (%s)", m.Name, name, want.Error)
				continue
			}
			if mix.FileType != want.FileType {
				t.Errorf("%s %s: file type %d, llama-quantize %d", m.Name, name, mix.FileType, want.FileType)
			}
			got, err := mix.TensorTypes(model, ts)
			if err != nil {
				t.Errorf("%s %s: %v", m.Name, name, err)
				continue
			}
			bad := 0
			for i := range ts {
				if !strings.EqualFold(got[i].String(), want.Types[i]) {
					if bad < 4 {
						t.Errorf("%s %s: %s is %s, llama-quantize chose %s", m.Name, name, ts[i].Name, got[i], want.Types[i])
					}
					bad++
				}
			}
			checked++
		}
	}
	if checked < 3*15 {
		t.Errorf("only %d model/mix pairs checked", checked)
	}
}
