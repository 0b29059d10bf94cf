package safetensors

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
)

// rawFile builds a safetensors file by hand from a header and data bytes.
func rawFile(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestReadHandBuilt(t *testing.T) {
	// F32 [2] = {1, -2}; F16 [2] = {0.5, 3}; BF16 [1] = {-1.5}.
	var data bytes.Buffer
	binary.Write(&data, binary.LittleEndian, []float32{1, -2})
	binary.Write(&data, binary.LittleEndian, []uint16{0x3800, 0x4200})
	binary.Write(&data, binary.LittleEndian, []uint16{0xbfc0})
	hdr := `{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
		`"b":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]},"c":{"dtype":"BF16","shape":[1],"data_offsets":[12,14]}}`
	file := rawFile(hdr, data.Bytes())
	f, err := Read(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	for name, want := range map[string][]float32{"a": {1, -2}, "b": {0.5, 3}, "c": {-1.5}} {
		got, err := f.Float32(name)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: %v %v", name, got, err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
			}
		}
	}
}

func TestReadErrors(t *testing.T) {
	data := make([]byte, 16)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"short", []byte{1, 2}, "truncated"},
		{"huge header", rawFile("", nil)[:0:0], "truncated"},
		{"header past end", append(binary.LittleEndian.AppendUint64(nil, 1000), '{', '}'), "header length"},
		{"not json", rawFile("[1,2]", data), "JSON"},
		{"bad dtype", rawFile(`{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`, data), "dtype"},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data), "needs 12 bytes"},
		{"out of range", rawFile(`{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}`, data), "outside"},
		{"negative shape", rawFile(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, data), "shape"},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, data), "overlap"},
		{"bad metadata", rawFile(`{"__metadata__":{"x":1}}`, data), "__metadata__"},
	}
	for _, c := range cases {
		_, err := Read(bytes.NewReader(c.file), int64(len(c.file)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	f, err := Read(bytes.NewReader(rawFile(`{"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}`, data)), 8+56+16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Float32("a"); err == nil || !strings.Contains(err.Error(), "I64") {
		t.Errorf("I64 tensor: err = %v", err)
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	Write(context.Background(), &buf, []Tensor{{Name: "x", DType: F16, Shape: []int64{2, 2}, Data: []float32{1, 2, 3, 4}}}, map[string]string{"k": "v"})
	f.Add(buf.Bytes())
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for name, ti := range sf.Tensors {
			if ti.DType == F32 || ti.DType == F16 || ti.DType == BF16 {
				if _, err := sf.Float32(name); err != nil {
					t.Fatalf("validated tensor %q unreadable: %v", name, err)
				}
			}
		}
	})
}

func testConfig(modelType string) *config.Config {
	c := &config.Config{
		ModelType: modelType, VocabSize: 300, HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64, RopeTheta: 10000, RMSNormEps: 1e-5,
		HiddenAct: "silu",
	}
	if modelType == config.TypeMixtral {
		c.NumExperts, c.ExpertsPerToken = 4, 2
		c.RouterOrder = config.RouterTopKSoftmax
	}
	return c
}

func randomWeights(t *testing.T, cfg *config.Config) *model.Weights {
	t.Helper()
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range w.Flat {
		w.Flat[i] = float32(r.NormFloat64())
	}
	return w
}

func TestHFRoundTrip(t *testing.T) {
	for _, mt := range []string{config.TypeMixtral, config.TypeLlama} {
		for _, dt := range []string{F32, BF16} {
			cfg := testConfig(mt)
			w := randomWeights(t, cfg)
			dir := t.TempDir()
			if err := SaveHF(context.Background(), dir, cfg, w, dt); err != nil {
				t.Fatal(err)
			}
			cfg2, w2, err := LoadHF(context.Background(), dir)
			if err != nil {
				t.Fatalf("%s %s: %v", mt, dt, err)
			}
			if cfg2.NumExperts != cfg.NumExperts || cfg2.HiddenSize != cfg.HiddenSize {
				t.Errorf("%s: config %+v", mt, cfg2)
			}
			for i := range w.Flat {
				tol := 0.0
				if dt == BF16 {
					tol = math.Abs(float64(w.Flat[i])) / 256
				}
				if d := math.Abs(float64(w.Flat[i] - w2.Flat[i])); d > tol {
					t.Fatalf("%s %s weight %d: %v vs %v", mt, dt, i, w2.Flat[i], w.Flat[i])
				}
			}
		}
	}
}

// TestHFMixtralNames checks the names a Hugging Face Mixtral checkpoint
// uses, built by hand here, and a sharded index.
func TestHFMixtralNames(t *testing.T) {
	cfg := testConfig(config.TypeMixtral)
	cfg.TieWordEmbeddings = false
	dir := t.TempDir()
	if err := cfg.Save(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	d, V, ff := int64(32), int64(300), int64(48)
	r := rand.New(rand.NewPCG(3, 4))
	vals := func(n int64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	shard := [2][]Tensor{}
	want := map[string][]float32{}
	add := func(s int, name string, shape ...int64) {
		n := int64(1)
		for _, x := range shape {
			n *= x
		}
		v := vals(n)
		want[name] = v
		shard[s] = append(shard[s], Tensor{Name: name, DType: F32, Shape: shape, Data: v})
	}
	add(0, "model.embed_tokens.weight", V, d)
	for l := 0; l < 2; l++ {
		p := "model.layers." + string(rune('0'+l)) + "."
		add(l, p+"input_layernorm.weight", d)
		add(l, p+"self_attn.q_proj.weight", 32, d)
		add(l, p+"self_attn.k_proj.weight", 16, d)
		add(l, p+"self_attn.v_proj.weight", 16, d)
		add(l, p+"self_attn.o_proj.weight", d, 32)
		add(l, p+"post_attention_layernorm.weight", d)
		add(l, p+"block_sparse_moe.gate.weight", 4, d)
		add(l, p+"self_attn.rotary_emb.inv_freq", 4)
		for e := 0; e < 4; e++ {
			q := p + "block_sparse_moe.experts." + string(rune('0'+e)) + "."
			add(l, q+"w1.weight", ff, d)
			add(l, q+"w2.weight", d, ff)
			add(l, q+"w3.weight", ff, d)
		}
	}
	add(1, "model.norm.weight", d)
	add(1, "lm_head.weight", V, d)
	weightMap := map[string]string{}
	for s, ts := range shard {
		name := "model-0000" + string(rune('1'+s)) + "-of-00002.safetensors"
		if err := WriteFile(context.Background(), filepath.Join(dir, name), ts, nil); err != nil {
			t.Fatal(err)
		}
		for _, x := range ts {
			weightMap[x.Name] = name
		}
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
	os.WriteFile(filepath.Join(dir, IndexName), idx, 0o644)

	_, w, err := LoadHF(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []float32) {
		t.Helper()
		for i := range got {
			if got[i] != want[name][i] {
				t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], want[name][i])
			}
		}
	}
	check("model.embed_tokens.weight", w.Embed)
	check("lm_head.weight", w.LMHead)
	check("model.layers.1.self_attn.k_proj.weight", w.Layers[1].Wk)
	check("model.layers.1.block_sparse_moe.experts.2.w1.weight", w.Layers[1].ExpertGate[2])
	check("model.layers.1.block_sparse_moe.experts.2.w3.weight", w.Layers[1].ExpertUp[2])
	check("model.layers.0.block_sparse_moe.experts.3.w2.weight", w.Layers[0].ExpertDown[3])
	check("model.layers.0.block_sparse_moe.gate.weight", w.Layers[0].Router)

	// An unknown tensor is an error that names it.
	extra := append(shard[1], Tensor{Name: "model.layers.0.self_attn.q_proj.bias", DType: F32, Shape: []int64{32}, Data: vals(32)})
	if err := WriteFile(context.Background(), filepath.Join(dir, "model-00002-of-00002.safetensors"), extra, nil); err != nil {
		t.Fatal(err)
	}
	weightMap["model.layers.0.self_attn.q_proj.bias"] = "model-00002-of-00002.safetensors"
	idx, _ = json.Marshal(map[string]any{"weight_map": weightMap})
	os.WriteFile(filepath.Join(dir, IndexName), idx, 0o644)
	if _, _, err := LoadHF(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "q_proj.bias") {
		t.Errorf("unknown tensor: err = %v", err)
	}
	// A wrong shape is named.
	os.Remove(filepath.Join(dir, IndexName))
	os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
	if _, _, err := LoadHF(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "missing tensor") {
		t.Errorf("missing shard: err = %v", err)
	}
}

func TestHFTokenizerRoundTrip(t *testing.T) {
	text := strings.Repeat("Hello, world! Don't panic: 12345 apples. ", 20)
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte(text)) }, 300)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := SaveHFTokenizer(dir, tok); err != nil {
		t.Fatal(err)
	}
	tok2, mismatches, err := LoadHFTokenizer(filepath.Join(dir, "tokenizer.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	if mismatches != 0 {
		t.Errorf("%d merges out of rank order in moe's own export", mismatches)
	}
	if tok2.VocabSize() != tok.VocabSize() {
		t.Fatalf("vocab %d, want %d", tok2.VocabSize(), tok.VocabSize())
	}
	for id := int32(0); id < int32(tok.VocabSize()); id++ {
		if !bytes.Equal(tok.TokenBytes(id), tok2.TokenBytes(id)) || tok.IsSpecial(id) != tok2.IsSpecial(id) {
			t.Fatalf("token %d differs", id)
		}
	}
	a, b := tok.Encode([]byte(text+"unseen")), tok2.Encode([]byte(text+"unseen"))
	if len(a) != len(b) {
		t.Fatalf("encodings differ")
	}
}

func TestHFTokenizerHandBuilt(t *testing.T) {
	// A GPT-2 style file: all 256 byte tokens, two merges in pair form, an
	// end-of-sequence token that is not called <|endoftext|>.
	vocab := map[string]int32{}
	for b := 0; b < 256; b++ {
		vocab[gguf.BytesToToken([]byte{byte(b)})] = int32(b)
	}
	vocab["Ġt"], vocab["Ġth"] = 256, 257
	doc := map[string]any{
		"model":        map[string]any{"type": "BPE", "vocab": vocab, "merges": [][2]string{{"Ġ", "t"}, {"Ġt", "h"}}},
		"added_tokens": []map[string]any{{"id": 258, "content": "<|end_of_text|>", "special": true}},
	}
	data, _ := json.Marshal(doc)
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	os.WriteFile(path, data, 0o644)
	if _, _, err := LoadHFTokenizer(path, ""); err == nil {
		t.Error("no end-of-text token and no eos: no error")
	}
	tok, mismatches, err := LoadHFTokenizer(path, "<|end_of_text|>")
	if err != nil {
		t.Fatal(err)
	}
	if mismatches != 0 || tok.EOT() != 258 {
		t.Errorf("mismatches %d, eot %d", mismatches, tok.EOT())
	}
	if ids := tok.Encode([]byte(" the")); len(ids) != 2 || ids[0] != 257 || ids[1] != 'e' {
		t.Errorf("encode \" the\" = %v, want [257 101]", ids)
	}
	doc["model"].(map[string]any)["type"] = "Unigram"
	data, _ = json.Marshal(doc)
	os.WriteFile(path, data, 0o644)
	if _, _, err := LoadHFTokenizer(path, "<|end_of_text|>"); err == nil || !strings.Contains(err.Error(), "Unigram") {
		t.Errorf("unigram: err = %v", err)
	}
}

// TestHFRoundTripSigmoidRouting checks that DeepSeek-V3 routing survives
// export and import: scoring_func, topk_method and routed_scaling_factor in
// config.json and the selection biases as e_score_correction_bias.
func TestHFRoundTripSigmoidRouting(t *testing.T) {
	cfg := testConfig(config.TypeMixtral)
	cfg.ScoringFunc, cfg.TopKMethod, cfg.NormTopKProb, cfg.RoutedScalingFactor = config.ScoringSigmoid, config.TopKNoAuxTC, true, 2.5
	cfg.RouterBiasUpdateRate = 0.003
	w, dir, f := saveRandomF32(t, cfg)
	_, ok := f.Tensors["model.layers.1.block_sparse_moe.gate.e_score_correction_bias"]
	f.Close()
	if !ok {
		t.Fatal("e_score_correction_bias not exported")
	}
	cfg2, w2, err := LoadHF(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.ScoringFunc != cfg.ScoringFunc || cfg2.TopKMethod != cfg.TopKMethod ||
		cfg2.RoutedScalingFactor != cfg.RoutedScalingFactor || cfg2.RouterBiasUpdateRate != cfg.RouterBiasUpdateRate {
		t.Fatalf("routing config after the round trip: %+v", cfg2)
	}
	if !slices.Equal(w2.Flat, w.Flat) || !slices.Equal(w2.Layers[1].RouterScoreBias, w.Layers[1].RouterScoreBias) {
		t.Fatal("weights or selection biases differ after the round trip")
	}
}

// TestHFRopeScaling checks config.json's rope_scaling on export and import:
// YaRN is written under transformers' names and read back; static
// NTK-aware scaling, which transformers has no rope_type for, is written as
// the raised rope_theta with the same frequencies.
func TestHFRopeScaling(t *testing.T) {
	for _, rs := range []*config.RopeScaling{
		{Type: config.RopeYaRN, Factor: 4, OriginalMaxPositionEmbeddings: 32},
		{Type: config.RopeNTK, Factor: 4},
	} {
		cfg := testConfig(config.TypeMixtral)
		cfg.RopeScaling = rs
		dir := t.TempDir()
		if err := SaveHF(context.Background(), dir, cfg, randomWeights(t, cfg), F32); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		cfg2, _, err := LoadHF(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := model.RopeFreqs(cfg)
		got, _ := model.RopeFreqs(cfg2)
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-12*want[i] {
				t.Fatalf("%s: frequency %d after the round trip %v, want %v", rs.Type, i, got[i], want[i])
			}
		}
		if rs.Type == config.RopeYaRN && (!strings.Contains(string(raw), `"rope_type": "yarn"`) || cfg2.RopeScaling == nil || *cfg2.RopeScaling != *rs) {
			t.Fatalf("yarn: config.json %s read back %+v", raw, cfg2.RopeScaling)
		}
		if rs.Type == config.RopeNTK && (cfg2.RopeScaling != nil || strings.Contains(string(raw), "rope_scaling")) {
			t.Fatalf("ntk: exported as %s", raw)
		}
	}
}

// TestHFRoundTripQKNormBias checks that q/k norm gains (per head and full
// width) and q/k/v biases are exported under transformers' names
// (self_attn.q_norm, self_attn.q_proj.bias, ...) and read back.
func TestHFRoundTripQKNormBias(t *testing.T) {
	for _, c := range []struct {
		name string
		mut  func(c *config.Config)
		want []string
	}{
		{"per_head", func(c *config.Config) { c.QKNorm, c.QKNormPerHead = true, true }, []string{"self_attn.q_norm.weight", "self_attn.k_norm.weight"}},
		{"full", func(c *config.Config) { c.QKNorm = true }, []string{"self_attn.q_norm.weight", "self_attn.k_norm.weight"}},
		{"bias", func(c *config.Config) { c.QKVBias = true }, []string{"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(config.TypeMixtral)
			c.mut(cfg)
			w, dir, f := saveRandomF32(t, cfg)
			for _, n := range c.want {
				if _, ok := f.Tensors["model.layers.1."+n]; !ok {
					t.Errorf("model.layers.1.%s not exported", n)
				}
			}
			f.Close()
			cfg2, w2, err := LoadHF(context.Background(), dir)
			if err != nil {
				t.Fatal(err)
			}
			if cfg2.QKNorm != cfg.QKNorm || cfg2.QKNormPerHead != cfg.QKNormPerHead || cfg2.QKVBias != cfg.QKVBias {
				t.Fatalf("config after the round trip: qk_norm %v per head %v, qkv bias %v", cfg2.QKNorm, cfg2.QKNormPerHead, cfg2.QKVBias)
			}
			if !slices.Equal(w2.Flat, w.Flat) {
				t.Fatal("weights differ after the round trip")
			}
		})
	}
}

// saveRandomF32 saves random weights of cfg as float32 safetensors in a
// temporary directory and opens the file: the weights, the directory and
// the open file (closed by the caller).
func saveRandomF32(t *testing.T, cfg *config.Config) (*model.Weights, string, *File) {
	t.Helper()
	w := randomWeights(t, cfg)
	dir := t.TempDir()
	if err := SaveHF(context.Background(), dir, cfg, w, F32); err != nil {
		t.Fatal(err)
	}
	f, err := Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return w, dir, f
}
