package gguf

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTypeAndMix(t *testing.T) {
	for _, name := range []string{"f32", "F16", "bf16", "q8_0", "Q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_K", "q4_k", "Q5_K", "q6_k", "iq4_nl", "IQ4_XS", "mxfp4"} {
		typ, err := ParseType(name)
		if err != nil || !strings.EqualFold(typ.String(), name) {
			t.Errorf("ParseType(%q) = %s, %v", name, typ, err)
		}
		m, err := ParseMix(name)
		if err != nil || m.Default != typ {
			t.Errorf("ParseMix(%q) = %+v, %v; want default %s", name, m, err, typ)
		}
	}
	if _, err := ParseType("q7_k"); err == nil || !strings.Contains(err.Error(), "q4_k, q5_k, q6_k, iq4_nl, iq4_xs, mxfp4") {
		t.Errorf("unknown type: %v (want the known names listed)", err)
	}
	for name, want := range map[string]uint32{"q4_k_m": 15, "Q4_K": 15, "q5_k_s": 16, "q3_k_l": 13, "q6_k": 18, "q8_0": 7, "q4_0": 2, "f16": 1, "bf16": 32, "f32": 0, "mxfp4": 38} {
		if m, err := ParseMix(name); err != nil || m.FileType != want {
			t.Errorf("ParseMix(%q) file type %d, %v; want %d", name, m.FileType, err, want)
		}
	}
	if _, err := ParseMix("q4_k_x"); err == nil || !strings.Contains(err.Error(), "q4_k_m") {
		t.Errorf("unknown mix: %v", err)
	}
}

// mixModelTensors lists the tensors moe's export writes for a Mixtral-style
// model (untied unless tied), with d the hidden size and f the expert width.
func mixModelTensors(layers, experts, d, f, kv int, tied bool) []MixTensor {
	u := func(v ...int) []uint64 {
		out := make([]uint64, len(v))
		for i, x := range v {
			out[i] = uint64(x)
		}
		return out
	}
	ts := []MixTensor{{"token_embd.weight", u(d, 320), F32}}
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts, MixTensor{p + "attn_norm.weight", u(d), F32}, MixTensor{p + "attn_q.weight", u(d, d), F32},
			MixTensor{p + "attn_k.weight", u(d, kv), F32}, MixTensor{p + "attn_v.weight", u(d, kv), F32},
			MixTensor{p + "attn_output.weight", u(d, d), F32}, MixTensor{p + "ffn_norm.weight", u(d), F32},
			MixTensor{p + "ffn_gate_inp.weight", u(d, experts), F32}, MixTensor{p + "ffn_gate_exps.weight", u(d, f, experts), F32},
			MixTensor{p + "ffn_up_exps.weight", u(d, f, experts), F32}, MixTensor{p + "ffn_down_exps.weight", u(f, d, experts), F32})
	}
	ts = append(ts, MixTensor{"output_norm.weight", u(d), F32})
	if !tied {
		ts = append(ts, MixTensor{"output.weight", u(d, 320), F32})
	}
	return ts
}

// typesOf runs a mix over tensors and returns name → type.
func typesOf(t *testing.T, mix string, model MixModel, ts []MixTensor) map[string]GGMLType {
	t.Helper()
	m, err := ParseMix(mix)
	if err != nil {
		t.Fatal(err)
	}
	types, err := m.TensorTypes(model, ts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]GGMLType{}
	for i, tt := range ts {
		out[tt.Name] = types[i]
	}
	return out
}

// TestMixRules checks llama-quantize's rules read off llama-quant.cpp on
// hand-worked cases (the fixtures from llama-quantize itself are checked in
// TestMixMatchesLlamaQuantize).
func TestMixRules(t *testing.T) {
	model := MixModel{Layers: 8, Experts: 4, Heads: 4, KVHeads: 2}
	ts := mixModelTensors(8, 4, 256, 256, 128, false)
	q40 := typesOf(t, "q4_0", model, ts)
	for name, want := range map[string]GGMLType{"output.weight": Q6_K, "token_embd.weight": Q4_0, "blk.3.attn_v.weight": Q4_0,
		"blk.0.ffn_norm.weight": F32, "blk.0.ffn_gate_inp.weight": F32, "blk.7.ffn_down_exps.weight": Q4_0} {
		if q40[name] != want {
			t.Errorf("q4_0 %s: %s, want %s", name, q40[name], want)
		}
	}
	// q4_k_m: attention V and FFN down get q6_K in layers 0 (first
	// eighth), 7 (last eighth), 3 and 6 (every third between).
	qkm := typesOf(t, "q4_k_m", model, ts)
	for i := 0; i < 8; i++ {
		want := Q4_K
		if i == 0 || i == 3 || i == 6 || i == 7 {
			want = Q6_K
		}
		for _, n := range []string{"attn_v.weight", "ffn_down_exps.weight"} {
			name := fmt.Sprintf("blk.%d.%s", i, n)
			if qkm[name] != want {
				t.Errorf("q4_k_m %s: %s, want %s", name, qkm[name], want)
			}
		}
		if name := fmt.Sprintf("blk.%d.ffn_up_exps.weight", i); qkm[name] != Q4_K {
			t.Errorf("q4_k_m %s: %s", name, qkm[name])
		}
	}
	if qkm["output.weight"] != Q6_K || qkm["token_embd.weight"] != Q4_K {
		t.Errorf("q4_k_m output %s, token_embd %s", qkm["output.weight"], qkm["token_embd.weight"])
	}
	// Tied embeddings: token_embd is quantized as the output would be.
	tied := typesOf(t, "q4_k_m", model, mixModelTensors(8, 4, 256, 256, 128, true))
	if tied["token_embd.weight"] != Q6_K {
		t.Errorf("tied q4_k_m token_embd: %s, want q6_K", tied["token_embd.weight"])
	}
	// Eight experts: attention V and K at q8_0, attention output q5_K.
	e8 := typesOf(t, "q4_k_m", MixModel{Layers: 8, Experts: 8, Heads: 4, KVHeads: 2}, mixModelTensors(8, 8, 256, 256, 128, false))
	if e8["blk.1.attn_v.weight"] != Q8_0 || e8["blk.1.attn_k.weight"] != Q8_0 || e8["blk.1.attn_output.weight"] != Q5_K {
		t.Errorf("8 experts: attn_v %s attn_k %s attn_output %s", e8["blk.1.attn_v.weight"], e8["blk.1.attn_k.weight"], e8["blk.1.attn_output.weight"])
	}
	// Rows that are not whole 256-blocks fall back: q4_K → q5_0, q6_K →
	// q8_0 (output), and to f16 when not whole 32-blocks either.
	fb := typesOf(t, "q4_k_m", model, mixModelTensors(8, 4, 96, 100, 96, false))
	for name, want := range map[string]GGMLType{"blk.1.attn_q.weight": Q5_0, "output.weight": Q8_0, "blk.1.ffn_down_exps.weight": F16, "blk.1.ffn_up_exps.weight": Q5_0} {
		if fb[name] != want {
			t.Errorf("fallback %s: %s, want %s", name, fb[name], want)
		}
	}
	// Pure: every quantizable tensor gets the default.
	m, _ := ParseMix("q4_k_m")
	m.Pure = true
	types, _ := m.TensorTypes(model, ts)
	for i, tt := range ts {
		if quantizable(tt) && types[i] != Q4_K {
			t.Errorf("pure q4_k_m %s: %s", tt.Name, types[i])
		}
	}
	// A MoE tensor without a layer in its name is an error, as in llama-quantize.
	if _, err := m2(t).TensorTypes(model, []MixTensor{{"ffn_down_exps.weight", []uint64{256, 256, 4}, F32}}); err == nil {
		t.Error("MoE ffn_down without a layer: no error")
	}
}

func m2(t *testing.T) Mix {
	m, err := ParseMix("q4_k_m")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// quantizeConfig is a model whose matrices are whole 256-blocks.
func quantizeFixture(t *testing.T) string {
	cfg := testConfig(true, false)
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumLayers = 256, 256, 4
	tok := testTokenizer(t)
	return exportTo(t, cfg, randomWeights(t, cfg, 5), tok, ExportOptions{})
}

func TestQuantizeFile(t *testing.T) {
	ctx := context.Background()
	src := quantizeFixture(t)
	dir := t.TempDir()
	in, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for _, c := range []struct {
		mix  string
		want map[string]GGMLType
		tol  float64
	}{
		{"q8_0", map[string]GGMLType{"output.weight": Q8_0, "blk.2.attn_v.weight": Q8_0, "blk.0.attn_norm.weight": F32}, 0.01},
		{"q4_k_m", map[string]GGMLType{"output.weight": Q6_K, "blk.2.attn_v.weight": Q6_K, "blk.1.attn_v.weight": Q4_K,
			"blk.3.ffn_down_exps.weight": Q6_K, "blk.0.ffn_gate_inp.weight": F32}, 0.1},
		{"f16", map[string]GGMLType{"output.weight": F16, "blk.0.ffn_gate_exps.weight": F16, "output_norm.weight": F32}, 0.001},
	} {
		m, _ := ParseMix(c.mix)
		out := filepath.Join(dir, c.mix+".gguf")
		res, err := QuantizeFile(ctx, src, out, QuantizeOptions{Mix: m})
		if err != nil {
			t.Fatalf("%s: %v", c.mix, err)
		}
		if _, _, _, err := ReadModel(ctx, out); err != nil { // moe loads every type it writes
			t.Errorf("%s: %v", c.mix, err)
		}
		f, err := Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if ft, _ := f.Get("general.file_type"); ft != m.FileType {
			t.Errorf("%s: general.file_type %v, want %d", c.mix, ft, m.FileType)
		}
		if a, _ := f.Get("general.architecture"); a != "llama" || len(f.KV) != len(in.KV) {
			t.Errorf("%s: metadata not kept: arch %v, %d keys (input %d)", c.mix, a, len(f.KV), len(in.KV))
		}
		if res.Tensors != len(in.Tensors) || res.OutBytes >= res.InBytes {
			t.Errorf("%s: result %+v", c.mix, res)
		}
		for name, want := range c.want {
			ti, ok := f.Tensor(name)
			if !ok || ti.Type != want {
				t.Errorf("%s: tensor %s type %v, want %s", c.mix, name, ti, want)
			}
		}
		for _, ti := range in.Tensors {
			a := make([]float32, ti.Elements())
			b := make([]float32, ti.Elements())
			if err := in.ReadFloat32(ti.Name, a); err != nil {
				t.Fatal(err)
			}
			if err := f.ReadFloat32(ti.Name, b); err != nil {
				t.Fatal(err)
			}
			var num, den float64
			for i := range a {
				num += float64(a[i]-b[i]) * float64(a[i]-b[i])
				den += float64(a[i]) * float64(a[i])
			}
			if e := math.Sqrt(num / den); e > c.tol {
				t.Errorf("%s: tensor %s relative error %.4f > %.3g", c.mix, ti.Name, e, c.tol)
			}
			if out, _ := f.Tensor(ti.Name); out.Type == ti.Type { // kept: copied byte for byte
				ra, _ := in.TensorData(&ti)
				rb, _ := f.TensorData(out)
				if !bytes.Equal(ra, rb) {
					t.Errorf("%s: kept tensor %s changed", c.mix, ti.Name)
				}
			}
		}
		f.Close()
	}
	// Re-quantizing a quantized file is refused, naming the tensor; an
	// upcast too; both are allowed on request.
	q8, q4 := filepath.Join(dir, "q8_0.gguf"), filepath.Join(dir, "q4_0.gguf")
	m, _ := ParseMix("q4_k_m")
	if _, err := QuantizeFile(ctx, q8, filepath.Join(dir, "x.gguf"), QuantizeOptions{Mix: m}); err == nil || !strings.Contains(err.Error(), "is already quantized (q8_0)") || !strings.Contains(err.Error(), `tensor "`) {
		t.Errorf("requantize q8_0 → q4_k_m: %v", err)
	}
	m40, _ := ParseMix("q4_0")
	if _, err := QuantizeFile(ctx, q8, q4, QuantizeOptions{Mix: m40, AllowRequantize: true}); err != nil {
		t.Fatal(err)
	}
	m8, _ := ParseMix("q8_0")
	if _, err := QuantizeFile(ctx, q4, filepath.Join(dir, "y.gguf"), QuantizeOptions{Mix: m8}); err == nil || !strings.Contains(err.Error(), "lower precision than q8_0") {
		t.Errorf("upcast q4_0 → q8_0: %v", err)
	}
	mf32, _ := ParseMix("f32")
	if _, err := QuantizeFile(ctx, filepath.Join(dir, "f16.gguf"), filepath.Join(dir, "y.gguf"), QuantizeOptions{Mix: mf32}); err == nil || !strings.Contains(err.Error(), "stored as f16") {
		t.Errorf("upcast f16 → f32: %v", err)
	}
}
