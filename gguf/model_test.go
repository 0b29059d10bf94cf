package gguf

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
)

const sampleText = `The quick brown fox jumps over the lazy dog. It's 2026 and the dogs don't mind:
they've seen 1234 foxes, 56 cats and a "quick" mouse!  Tabs	and newlines
are whitespace too; émigrés café naïve — unicode works.`

// testTokenizer trains a small byte-level BPE vocabulary.
func testTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	docs := func(yield func([]byte) bool) {
		for i := 0; i < 3; i++ {
			if !yield([]byte(sampleText)) {
				return
			}
		}
	}
	tok, err := tokenizer.Train(context.Background(), docs, 300)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// testConfig is a tiny Mixtral-style MoE (or dense model) for round trips.
func testConfig(moe, tied bool) *config.Config {
	c := &config.Config{
		ModelType: config.TypeLlama, VocabSize: 320, HiddenSize: 64, IntermediateSize: 96,
		NumLayers: 2, NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 128, RopeTheta: 10000,
		RMSNormEps: 1e-5, TieWordEmbeddings: tied, HiddenAct: "silu", InitStd: 0.02,
	}
	if moe {
		c.ModelType = config.TypeMixtral
		c.NumExperts, c.ExpertsPerToken = 4, 2
		c.Routing, c.RouterOrder = config.RoutingTokenChoice, config.RouterTopKSoftmax
		c.RouterAuxLossCoef, c.RouterZLossCoef = 0.01, 0.001
	}
	return c
}

// randomWeights fills a model's weights with normal values (norm gains near 1).
func randomWeights(t testing.TB, cfg *config.Config, seed uint64) *model.Weights {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range w.Flat {
		w.Flat[i] = float32(r.NormFloat64() * 0.05)
	}
	for _, nd := range w.NoDecay {
		for i := nd[0]; i < nd[1]; i++ {
			w.Flat[i] = 1 + float32(r.NormFloat64()*0.1)
		}
	}
	return w
}

func exportTo(t *testing.T, cfg *config.Config, w *model.Weights, tok *tokenizer.Tokenizer, opt ExportOptions) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Export(context.Background(), path, cfg, w, tok, opt); err != nil {
		t.Fatal(err)
	}
	return path
}

// rewriteLoad writes kvs and tensors as a GGUF file and loads it.
func rewriteLoad(t *testing.T, kvs []KV, tensors []Tensor) (*config.Config, *model.Weights, *tokenizer.Tokenizer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := WriteFile(context.Background(), path, kvs, tensors); err != nil {
		t.Fatal(err)
	}
	cfg, w, tok, err := LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, w, tok
}

// loadSame loads the file at path (the case name) and fails unless it
// holds cfg and w's weights bit for bit; it returns the tokenizer read.
func loadSame(t *testing.T, name, path string, cfg *config.Config, w *model.Weights) *tokenizer.Tokenizer {
	t.Helper()
	cfg2, w2, tok2, err := LoadModel(path)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	sameConfig(t, cfg2, cfg)
	if len(w2.Flat) != len(w.Flat) {
		t.Fatalf("%s: %d weights, want %d", name, len(w2.Flat), len(w.Flat))
	}
	for i := range w.Flat {
		if w.Flat[i] != w2.Flat[i] {
			t.Fatalf("%s: weight %d: %v, want %v", name, i, w2.Flat[i], w.Flat[i])
		}
	}
	return tok2
}

func sameConfig(t *testing.T, got, want *config.Config) {
	t.Helper()
	a, _ := got.Marshal()
	b, _ := want.Marshal()
	if !bytes.Equal(a, b) {
		t.Errorf("config differs:\n got %s\nwant %s", a, b)
	}
}

func sameTokenizer(t *testing.T, got, want *tokenizer.Tokenizer) {
	t.Helper()
	if got.VocabSize() != want.VocabSize() || got.EOT() != want.EOT() {
		t.Fatalf("tokenizer: vocab %d eot %d, want %d, %d", got.VocabSize(), got.EOT(), want.VocabSize(), want.EOT())
	}
	for id := int32(0); id < int32(want.VocabSize()); id++ {
		if !bytes.Equal(got.TokenBytes(id), want.TokenBytes(id)) || got.IsSpecial(id) != want.IsSpecial(id) {
			t.Fatalf("token %d: %q (special %v), want %q (special %v)", id, got.TokenBytes(id), got.IsSpecial(id), want.TokenBytes(id), want.IsSpecial(id))
		}
	}
	text := []byte(sampleText + " <|user|> unseen words zebra")
	a, b := got.EncodeWithSpecials(text), want.EncodeWithSpecials(text)
	if len(a) != len(b) {
		t.Fatalf("encodings differ: %v vs %v", a, b)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("encodings differ at %d: %v vs %v", i, a, b)
		}
	}
}

func TestExportImportF32Exact(t *testing.T) {
	tok := testTokenizer(t)
	for _, c := range []struct {
		name      string
		moe, tied bool
	}{{"moe-untied", true, false}, {"dense-tied", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(c.moe, c.tied)
			w := randomWeights(t, cfg, 1)
			path := exportTo(t, cfg, w, tok, ExportOptions{})
			sameTokenizer(t, loadSame(t, c.name, path, cfg, w), tok)
		})
	}
}

func TestExportQuantizedBoundedError(t *testing.T) {
	tok := testTokenizer(t)
	cfg := testConfig(true, false)
	w := randomWeights(t, cfg, 2)
	limits := map[GGMLType]float64{F16: 1e-3, BF16: 8e-3, Q8_0: 1e-2, Q4_0: 0.2}
	for typ, limit := range limits {
		path := exportTo(t, cfg, w, tok, ExportOptions{Type: typ})
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if ti, _ := f.Tensor("blk.0.ffn_up_exps.weight"); ti.Type != typ {
			t.Errorf("%s: expert tensor stored as %s", typ, ti.Type)
		}
		for _, name := range []string{"blk.0.attn_norm.weight", "blk.0.ffn_gate_inp.weight"} {
			if ti, _ := f.Tensor(name); ti.Type != F32 {
				t.Errorf("%s: %s stored as %s, want f32", typ, name, ti.Type)
			}
		}
		f.Close()
		_, w2, _, err := LoadModel(path)
		if err != nil {
			t.Fatal(err)
		}
		w.Visit(cfg, func(name string, a []float32) {
			var se, sx float64
			var b []float32
			w2.Visit(cfg, func(n2 string, t2 []float32) {
				if n2 == name {
					b = t2
				}
			})
			for i := range a {
				e := float64(a[i] - b[i])
				se += e * e
				sx += float64(a[i]) * float64(a[i])
			}
			if rel := math.Sqrt(se / sx); rel > limit {
				t.Errorf("%s %s: relative RMS error %.4g > %g", typ, name, rel, limit)
			}
		})
	}
}

// ropeHF applies Hugging Face rotate_half RoPE to one head vector.
func ropeHF(x []float64, pos int, theta float64) []float64 {
	hd, half := len(x), len(x)/2
	out := make([]float64, hd)
	for i := 0; i < half; i++ {
		a := float64(pos) * math.Pow(theta, -2*float64(i)/float64(hd))
		c, s := math.Cos(a), math.Sin(a)
		out[i] = x[i]*c - x[i+half]*s
		out[i+half] = x[i+half]*c + x[i]*s
	}
	return out
}

// ropeNorm applies ggml's normal-mode RoPE (adjacent pairs) to one head.
func ropeNorm(x []float64, pos int, theta float64) []float64 {
	hd := len(x)
	out := make([]float64, hd)
	for i := 0; i < hd/2; i++ {
		a := float64(pos) * math.Pow(theta, -2*float64(i)/float64(hd))
		c, s := math.Cos(a), math.Sin(a)
		out[2*i] = x[2*i]*c - x[2*i+1]*s
		out[2*i+1] = x[2*i]*s + x[2*i+1]*c
	}
	return out
}

// TestRopePermuteMatchesLlamaCpp checks that attention scores from the
// permuted weights under llama.cpp's normal RoPE equal the scores from the
// original weights under Hugging Face's rotate_half RoPE.
func TestRopePermuteMatchesLlamaCpp(t *testing.T) {
	const d, hd, nh, nkv, theta = 24, 8, 4, 2, 10000.0
	r := rand.New(rand.NewPCG(9, 9))
	randv := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	wq, wk := randv(nh*hd*d), randv(nkv*hd*d)
	gq, gk := ropePermute(wq, nh, hd, d, true), ropePermute(wk, nkv, hd, d, true)
	if back := ropePermute(gq, nh, hd, d, false); !slices.Equal(back, wq) {
		t.Fatal("ropePermute back and forth is not the identity")
	}
	if slices.Equal(gq, wq) {
		t.Fatal("ropePermute changed nothing")
	}
	proj := func(w, x []float32, head int) []float64 {
		out := make([]float64, hd)
		for i := range out {
			for j := 0; j < d; j++ {
				out[i] += float64(w[(head*hd+i)*d+j]) * float64(x[j])
			}
		}
		return out
	}
	dot := func(a, b []float64) (s float64) {
		for i := range a {
			s += a[i] * b[i]
		}
		return s
	}
	x1, x2 := randv(d), randv(d)
	for h := 0; h < nh; h++ {
		g := h / (nh / nkv)
		for _, pos := range [][2]int{{0, 0}, {5, 2}, {37, 11}} {
			hf := dot(ropeHF(proj(wq, x1, h), pos[0], theta), ropeHF(proj(wk, x2, g), pos[1], theta))
			gg := dot(ropeNorm(proj(gq, x1, h), pos[0], theta), ropeNorm(proj(gk, x2, g), pos[1], theta))
			if math.Abs(hf-gg) > 1e-9*(1+math.Abs(hf)) {
				t.Errorf("head %d positions %v: score %v (HF) vs %v (llama.cpp)", h, pos, hf, gg)
			}
		}
	}
}

func TestInexactModels(t *testing.T) {
	tok := testTokenizer(t)
	ec := testConfig(true, true)
	ec.Routing, ec.CapacityFactor = config.RoutingExpertChoice, 2
	sh := testConfig(true, true)
	sh.SharedExpertIntermediateSize = 48
	st := testConfig(true, true)
	st.RouterOrder, st.NormTopKProb = config.RouterSoftmaxTopK, false
	ok := testConfig(true, true)
	ok.RouterOrder, ok.NormTopKProb = config.RouterSoftmaxTopK, true
	if err := CheckLlamaCompatible(ok); err != nil {
		t.Errorf("softmax_topk with norm_topk_prob: %v", err)
	}
	for _, mut := range []func(c *config.Config){
		func(c *config.Config) { c.ScoringFunc = config.ScoringSigmoid },
		func(c *config.Config) { c.TopKMethod = config.TopKNoAuxTC },
		func(c *config.Config) { c.RoutedScalingFactor = 2.5 },
	} {
		c := testConfig(true, true)
		mut(c)
		for _, check := range []func(*config.Config) error{CheckLlamaCompatible, CheckQwen2MoECompatible} {
			if err := check(c); err == nil || !strings.Contains(err.Error(), "DeepSeek-V3 routing") {
				t.Errorf("scoring %q topk %q scale %v: err = %v", c.ScoringFunc, c.TopKMethod, c.RoutedScalingFactor, err)
			}
		}
	}
	// Softmax weights without renormalisation are exact in llama.cpp's
	// qwen2moe architecture: written as such, read back exactly.
	for name, cfg := range map[string]*config.Config{"expert-choice": ec, "softmax-topk": st} {
		w := randomWeights(t, cfg, 3)
		path := exportTo(t, cfg, w, tok, ExportOptions{Type: F32})
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		arch, _ := f.Get("general.architecture")
		k, _ := f.Get("qwen2moe.expert_used_count")
		_, hasOut := f.Tensor("output.weight")
		_, hasGate := f.Tensor("blk.1.ffn_gate_inp_shexp.weight")
		f.Close()
		if arch != ArchQwen2MoE || k != uint32(2) || !hasOut || !hasGate {
			t.Errorf("%s: arch %v, k %v, output.weight %v, shared gate %v", name, arch, k, hasOut, hasGate)
		}
		loadSame(t, name, path, cfg, w)
	}
	ecsh := testConfig(true, true)
	ecsh.Routing, ecsh.SharedExpertIntermediateSize = config.RoutingExpertChoice, 48
	for name, cfg := range map[string]*config.Config{"shared": sh, "expert-choice+shared": ecsh} {
		w := randomWeights(t, cfg, 3)
		path := filepath.Join(t.TempDir(), "m.gguf")
		err := Export(context.Background(), path, cfg, w, tok, ExportOptions{})
		if err == nil || !strings.Contains(err.Error(), "llama.cpp") {
			t.Errorf("%s: export without AllowInexact: err = %v", name, err)
		}
		path = exportTo(t, cfg, w, tok, ExportOptions{AllowInexact: true})
		loadSame(t, name, path, cfg, w)
	}
	wide := testConfig(true, true)
	wide.SlidingWindow = 4096 // longer than the 128-token context: no effect
	if err := CheckLlamaCompatible(wide); err != nil {
		t.Errorf("sliding window covering the context: %v", err)
	}
	wide.SlidingWindow = 64
	if err := CheckLlamaCompatible(wide); err == nil || !strings.Contains(err.Error(), "sliding") {
		t.Errorf("sliding window of 64 in a 128 context: err = %v", err)
	}
	bias := testConfig(true, true)
	bias.AttentionBias = true
	if err := Export(context.Background(), filepath.Join(t.TempDir(), "b.gguf"), bias, randomWeights(t, testConfig(true, true), 1), tok, ExportOptions{AllowInexact: true}); err == nil {
		t.Error("attention biases: no error")
	}
}

// TestForeignFile reads a file without moe.config, as llama.cpp's converter
// writes them: the config comes from the llama.* keys.
func TestForeignFile(t *testing.T) {
	tok := testTokenizer(t)
	cfg := testConfig(true, false)
	w := randomWeights(t, cfg, 4)
	kvs, tensors, err := exportParts(cfg, w, tok, ExportOptions{Type: F16})
	if err != nil {
		t.Fatal(err)
	}
	var kept []KV
	for _, kv := range kvs {
		if kv.Key != KeyMoEConfig {
			kept = append(kept, kv)
		}
	}
	cfg2, w2, tok2 := rewriteLoad(t, kept, tensors)
	if cfg2.HiddenSize != 64 || cfg2.NumLayers != 2 || cfg2.NumHeads != 4 || cfg2.KVHeads() != 2 ||
		cfg2.NumExperts != 4 || cfg2.ExpertsPerToken != 2 || cfg2.ExpertSize() != 96 || cfg2.VocabSize != 320 ||
		cfg2.TieWordEmbeddings || cfg2.HeadDimension() != 16 || cfg2.MaxPositionEmbeddings != 128 {
		t.Errorf("config from llama keys: %+v", cfg2)
	}
	if math.Abs(cfg2.RMSNormEps-1e-5) > 1e-10 || cfg2.RopeTheta != 10000 {
		t.Errorf("eps %v theta %v", cfg2.RMSNormEps, cfg2.RopeTheta)
	}
	if len(w2.Flat) != len(w.Flat) {
		t.Fatalf("%d weights, want %d", len(w2.Flat), len(w.Flat))
	}
	for i := range w.Flat {
		if d := math.Abs(float64(w.Flat[i] - w2.Flat[i])); d > 1e-3*(math.Abs(float64(w.Flat[i]))+1e-3) {
			t.Fatalf("weight %d: %v vs %v", i, w2.Flat[i], w.Flat[i])
		}
	}
	sameTokenizer(t, tok2, tok)

	// A tensor moe has no place for is an error, not silently dropped.
	path := filepath.Join(t.TempDir(), "f.gguf")
	extra := append(tensors, Tensor{Name: "rope_freqs.weight", Dims: []uint64{8}, Type: F32,
		Data: func() ([]byte, error) { return Encode(F32, make([]float32, 8)) }})
	if err := WriteFile(context.Background(), path, kept, extra); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := LoadModel(path); err == nil || !strings.Contains(err.Error(), "rope_freqs") {
		t.Errorf("extra tensor: err = %v", err)
	}
	// A tensor of the wrong shape is named.
	bad := append([]Tensor(nil), tensors...)
	for i := range bad {
		if bad[i].Name == "blk.1.attn_v.weight" {
			bad[i].Dims = []uint64{bad[i].Dims[1], bad[i].Dims[0]}
		}
	}
	if err := WriteFile(context.Background(), path, kept, bad); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := LoadModel(path); err == nil || !strings.Contains(err.Error(), "blk.1.attn_v.weight") {
		t.Errorf("transposed tensor: err = %v", err)
	}
}

func TestTokenizerMetadata(t *testing.T) {
	tok := testTokenizer(t)
	kvs, err := tokenizerKVs(tok, 320)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	tokens := m["tokenizer.ggml.tokens"].([]string)
	types := m["tokenizer.ggml.token_type"].([]int32)
	if len(tokens) != 320 || len(types) != 320 {
		t.Fatalf("%d tokens", len(tokens))
	}
	if tokens[' '] != "Ġ" || tokens['\n'] != "Ċ" || tokens['a'] != "a" {
		t.Errorf("byte tokens: %q %q %q", tokens[' '], tokens['\n'], tokens['a'])
	}
	seen := map[string]bool{}
	for i, s := range tokens {
		if seen[s] {
			t.Fatalf("token text %q repeats (llama.cpp needs unique texts)", s)
		}
		seen[s] = true
		if types[i] == tokenNormal && strings.ContainsAny(s, " \n") {
			t.Errorf("token %d %q holds raw whitespace", i, s)
		}
	}
	if types[tok.EOT()] != tokenControl || tokens[tok.EOT()] != tokenizer.EndOfText || types[319] != tokenUnused {
		t.Errorf("types: eot %d, last %d", types[tok.EOT()], types[319])
	}
	if m["tokenizer.chat_template"] != ChatTemplate || m["tokenizer.ggml.eot_token_id"] == nil {
		t.Errorf("chat template %v, eot %v", m["tokenizer.chat_template"], m["tokenizer.ggml.eot_token_id"])
	}
	merges := m["tokenizer.ggml.merges"].([]string)
	if len(merges) == 0 || len(merges) != countMultiByte(tok) {
		t.Errorf("%d merges for %d multi-byte tokens", len(merges), countMultiByte(tok))
	}
	for _, mg := range merges {
		p := strings.Split(mg, " ")
		if len(p) != 2 || !seen[p[0]] || !seen[p[1]] || !seen[p[0]+p[1]] {
			t.Fatalf("merge %q is not two tokens making a third", mg)
		}
	}
	if _, err := tokenizerKVs(tok, 100); err == nil {
		t.Error("tokenizer larger than the model vocabulary: no error")
	}
	for _, s := range []string{"", "a", "ĠĊ", string([]byte{0, 255, 173, 127, 128})} {
		b, err := TokenToBytes(BytesToToken([]byte(s)))
		if err != nil || string(b) != s {
			t.Errorf("byte mapping round trip of %q: %q, %v", s, b, err)
		}
	}
	if _, err := TokenToBytes(" "); err == nil {
		t.Error("raw space decoded without error")
	}
}

func countMultiByte(tok *tokenizer.Tokenizer) int {
	n := 0
	for id := 0; id < tok.NumMergeable(); id++ {
		if b := tok.TokenBytes(int32(id)); len(b) >= 2 && !tok.IsSpecial(int32(id)) {
			n++
		}
	}
	return n
}

// TestRopeScalingKeys checks the rope.scaling.* keys as llama.cpp names
// them: YaRN and linear scaling are written and read back from the llama.*
// keys alone (no moe.config), NTK-aware scaling becomes the raised base.
func TestRopeScalingKeys(t *testing.T) {
	tok := testTokenizer(t)
	for _, rs := range []*config.RopeScaling{
		{Type: config.RopeYaRN, Factor: 4, OriginalMaxPositionEmbeddings: 32, BetaFast: 16, BetaSlow: 2},
		{Type: config.RopeLinear, Factor: 2},
		{Type: config.RopeNTK, Factor: 4},
	} {
		cfg := testConfig(true, false)
		cfg.RopeScaling = rs
		kvs, tensors, err := exportParts(cfg, randomWeights(t, cfg, 4), tok, ExportOptions{Type: F32})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]any{}
		var kept []KV
		for _, kv := range kvs {
			got[kv.Key] = kv.Value
			if kv.Key != KeyMoEConfig {
				kept = append(kept, kv)
			}
		}
		switch rs.Type {
		case config.RopeYaRN:
			if got["llama.rope.scaling.type"] != "yarn" || got["llama.rope.scaling.factor"] != float32(4) ||
				got["llama.rope.scaling.original_context_length"] != uint32(32) ||
				got["llama.rope.scaling.yarn_beta_fast"] != float32(16) || got["llama.rope.scaling.yarn_beta_slow"] != float32(2) {
				t.Fatalf("yarn keys: %v", got)
			}
		case config.RopeLinear:
			if got["llama.rope.scaling.type"] != "linear" || got["llama.rope.scaling.factor"] != float32(2) {
				t.Fatalf("linear keys: %v", got)
			}
		case config.RopeNTK:
			want := float32(10000 * math.Pow(4, 16.0/14))
			if _, ok := got["llama.rope.scaling.type"]; ok || got["llama.rope.freq_base"] != want {
				t.Fatalf("ntk: type %v, freq_base %v want %v", got["llama.rope.scaling.type"], got["llama.rope.freq_base"], want)
			}
		}
		cfg2, _, _ := rewriteLoad(t, kept, tensors)
		if rs.Type == config.RopeNTK {
			continue // read back as the plain raised base
		}
		if cfg2.RopeScaling == nil || *cfg2.RopeScaling != *rs {
			t.Errorf("%s: read back %+v", rs.Type, cfg2.RopeScaling)
		}
	}
	cfg := testConfig(true, false)
	cfg.RopeScaling = &config.RopeScaling{Type: config.RopeYaRN, Factor: 40, Mscale: 1, MscaleAllDim: 0.7}
	if err := CheckLlamaCompatible(cfg); err == nil || !strings.Contains(err.Error(), "mscale") {
		t.Errorf("yarn with mscale: err = %v", err)
	}
}
