package infer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/internal/testgguf"
	"github.com/moe-llm/moe/safetensors"
	"github.com/moe-llm/moe/tokenizer"
)

// TestGPTOSSBatchedAndSpeculative checks that gpt-oss's pieces (sinks, the
// sliding window, biases, the clamped SwiGLU) take the same path in a
// batch of sequences at different positions as alone, and that speculative
// decoding with the model as its own draft (verification passes of
// several positions, past the window) gives the plain greedy tokens.
func TestGPTOSSBatchedAndSpeculative(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	path := filepath.Join("testdata", "family", "gpt-oss-f32.gguf")
	m := loadT(t, path, pool)
	if w := m.Cfg.AttentionWindow(0); w <= 0 || w >= 7 {
		t.Fatalf("layer 0's window %d: the test needs one shorter than its prompts", w)
	}
	V := m.Cfg.VocabSize
	a := []int32{84, 258, 39, 101, 3, 200, 257, 17, 66}
	b := []int32{120, 7, 44}
	// Alone: a's 9 positions, then b's 3, then one more token each.
	alone := func(toks []int32, next int32) ([]float32, []float32) {
		s := m.NewSeq(0)
		pre, err := m.Forward([]*Seq{s}, [][]int32{toks}, true)
		if err != nil {
			t.Fatal(err)
		}
		step, err := m.Forward([]*Seq{s}, [][]int32{{next}}, false)
		if err != nil {
			t.Fatal(err)
		}
		return pre[0], step[0]
	}
	preA, stepA := alone(a, 5)
	preB, stepB := alone(b, 9)
	// Together, in one batch each time.
	sa, sb := m.NewSeq(0), m.NewSeq(0)
	pre, err := m.Forward([]*Seq{sa, sb}, [][]int32{a, b}, true)
	if err != nil {
		t.Fatal(err)
	}
	step, err := m.Forward([]*Seq{sa, sb}, [][]int32{{5}, {9}}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want []float32
	}{{"a prefill", pre[0], preA}, {"b prefill", pre[1], preB}, {"a step", step[0], stepA}, {"b step", step[1], stepB}} {
		if len(c.got) != len(c.want) || len(c.got)%V != 0 {
			t.Fatalf("%s: %d logits, alone %d", c.name, len(c.got), len(c.want))
		}
		var worst float64
		for i := range c.got {
			worst = math.Max(worst, math.Abs(float64(c.got[i]-c.want[i])))
		}
		if worst > 1e-5 {
			t.Errorf("%s: batched logits differ from alone by %.3g", c.name, worst)
		}
	}

	ctx := context.Background()
	opts := GenerateOptions{MaxTokens: 40, IgnoreEOT: true}
	plain, err := m.Generate(ctx, a, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Tokens) != 40 {
		t.Fatalf("plain: %d tokens (%s)", len(plain.Tokens), plain.StopReason)
	}
	draft, err := Load(path, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer draft.Close()
	for _, k := range []int{1, 4} {
		o := opts
		o.Draft, o.DraftTokens, o.FixedDraftTokens = draft, k, true
		res, err := m.Generate(ctx, a, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Tokens, plain.Tokens) || res.Proposed == 0 {
			t.Fatalf("K=%d: speculative greedy (%d proposed) differs from plain:\n%v\n%v", k, res.Proposed, res.Tokens, plain.Tokens)
		}
	}
}

// ossHFDir writes the gpt-oss fixture arch-typ.gguf as a Hugging Face
// gpt_oss directory, in transformers' names and layouts: q/k/v/o with
// biases, self_attn.sinks, mlp.router, and the experts as gate_up_proj
// (in × out, gate and up interleaved) and down_proj, or, when the file's
// experts are MXFP4, as gate_up_proj_blocks/_scales and down_proj_blocks/
// _scales (byte i holding values 2i and 2i+1). Every other tensor is
// written as dtype (F32 or BF16; Q8_0 ones decoded). truncate is
// rope_scaling's.
func ossHFDir(t *testing.T, typ, dtype string, truncate bool) string {
	t.Helper()
	src := filepath.Join("testdata", "family", "gpt-oss-"+typ+".gguf")
	f := testgguf.Open(t, src)
	mm, err := gguf.OpenModel(src, gguf.PlaceMapped)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	c := mm.Cfg
	d, E, ff := c.HiddenSize, c.NumExperts, c.ExpertSize()
	read := func(name string) []float32 {
		ti, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		v := make([]float32, ti.Elements())
		if err := f.ReadFloat32(name, v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	var ts []safetensors.Tensor
	add := func(name, from string, shape ...int64) {
		ts = append(ts, safetensors.Tensor{Name: name, DType: dtype, Shape: shape, Data: read(from)})
	}
	i64 := func(v int) int64 { return int64(v) }
	add("model.embed_tokens.weight", "token_embd.weight", i64(c.VocabSize), i64(d))
	add("lm_head.weight", "output.weight", i64(c.VocabSize), i64(d))
	add("model.norm.weight", "output_norm.weight", i64(d))
	qDim, kvDim := c.NumHeads*c.HeadDimension(), c.KVHeads()*c.HeadDimension()
	for l := 0; l < c.NumLayers; l++ {
		p, b := "model.layers."+itoa(l)+".", "blk."+itoa(l)+"."
		add(p+"input_layernorm.weight", b+"attn_norm.weight", i64(d))
		add(p+"post_attention_layernorm.weight", b+"post_attention_norm.weight", i64(d))
		for _, x := range []struct {
			hf, gg   string
			out, in_ int
		}{{"q", "attn_q", qDim, d}, {"k", "attn_k", kvDim, d}, {"v", "attn_v", kvDim, d}, {"o", "attn_output", d, qDim}} {
			add(p+"self_attn."+x.hf+"_proj.weight", b+x.gg+".weight", i64(x.out), i64(x.in_))
			add(p+"self_attn."+x.hf+"_proj.bias", b+x.gg+".bias", i64(x.out))
		}
		add(p+"self_attn.sinks", b+"attn_sinks.weight", i64(c.NumHeads))
		add(p+"mlp.router.weight", b+"ffn_gate_inp.weight", i64(E), i64(d))
		add(p+"mlp.router.bias", b+"ffn_gate_inp.bias", i64(E))
		gb, ub := read(b+"ffn_gate_exps.bias"), read(b+"ffn_up_exps.bias")
		gub := make([]float32, E*2*ff)
		for i := range gb {
			gub[2*i], gub[2*i+1] = gb[i], ub[i]
		}
		ts = append(ts, safetensors.Tensor{Name: p + "mlp.experts.gate_up_proj_bias", DType: safetensors.F32, Shape: []int64{i64(E), i64(2 * ff)}, Data: gub})
		add(p+"mlp.experts.down_proj_bias", b+"ffn_down_exps.bias", i64(E), i64(d))
		if ti, _ := f.Tensor(b + "ffn_down_exps.weight"); ti.Type == gguf.GGMLType(compute.QMXFP4) {
			raw := func(name string) []byte {
				ti, _ := f.Tensor(name)
				v, err := f.TensorBytes(ti)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			// gate_up's rows interleave gate (even) and up (odd).
			graw, uraw := raw(b+"ffn_gate_exps.weight"), raw(b+"ffn_up_exps.weight")
			rb, nb := d/32*17, d/32
			var both []byte
			for r := 0; r < E*ff; r++ {
				both = append(both, graw[r*rb:(r+1)*rb]...)
				both = append(both, uraw[r*rb:(r+1)*rb]...)
			}
			guBlocks, guScales := hfMXFP4(both)
			dBlocks, dScales := hfMXFP4(raw(b + "ffn_down_exps.weight"))
			ts = append(ts,
				safetensors.Tensor{Name: p + "mlp.experts.gate_up_proj_blocks", DType: safetensors.U8, Shape: []int64{i64(E), i64(2 * ff), i64(nb), 16}, Raw: guBlocks},
				safetensors.Tensor{Name: p + "mlp.experts.gate_up_proj_scales", DType: safetensors.U8, Shape: []int64{i64(E), i64(2 * ff), i64(nb)}, Raw: guScales},
				safetensors.Tensor{Name: p + "mlp.experts.down_proj_blocks", DType: safetensors.U8, Shape: []int64{i64(E), i64(d), i64(ff / 32), 16}, Raw: dBlocks},
				safetensors.Tensor{Name: p + "mlp.experts.down_proj_scales", DType: safetensors.U8, Shape: []int64{i64(E), i64(d), i64(ff / 32)}, Raw: dScales})
			continue
		}
		g, u, dn := read(b+"ffn_gate_exps.weight"), read(b+"ffn_up_exps.weight"), read(b+"ffn_down_exps.weight")
		gu, down := make([]float32, E*d*2*ff), make([]float32, E*ff*d)
		for e := 0; e < E; e++ {
			for j := 0; j < ff; j++ {
				for i := 0; i < d; i++ {
					gu[(e*d+i)*2*ff+2*j] = g[(e*ff+j)*d+i]
					gu[(e*d+i)*2*ff+2*j+1] = u[(e*ff+j)*d+i]
					down[(e*ff+j)*d+i] = dn[(e*d+i)*ff+j]
				}
			}
		}
		ts = append(ts,
			safetensors.Tensor{Name: p + "mlp.experts.gate_up_proj", DType: safetensors.F32, Shape: []int64{i64(E), i64(d), i64(2 * ff)}, Data: gu},
			safetensors.Tensor{Name: p + "mlp.experts.down_proj", DType: safetensors.F32, Shape: []int64{i64(E), i64(ff), i64(d)}, Data: down})
	}
	dir := t.TempDir()
	if err := safetensors.WriteFile(context.Background(), filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	rs := c.RopeScaling
	cfg := fmt.Sprintf(`{"model_type":"gpt_oss","vocab_size":%d,"hidden_size":%d,"intermediate_size":%d,"num_hidden_layers":%d,
"num_attention_heads":%d,"num_key_value_heads":%d,"head_dim":%d,"max_position_embeddings":%d,"rope_theta":%g,"rms_norm_eps":1e-05,
"num_local_experts":%d,"num_experts_per_tok":%d,"experts_per_token":%d,"sliding_window":%d,"layer_types":["sliding_attention","full_attention"],
"rope_scaling":{"rope_type":"yarn","factor":%g,"original_max_position_embeddings":%d,"beta_fast":32.0,"beta_slow":1.0,"truncate":%v},
"tie_word_embeddings":false,"swiglu_limit":7.0,"attention_bias":true,"hidden_act":"silu"}`,
		c.VocabSize, d, ff, c.NumLayers, c.NumHeads, c.KVHeads(), c.HeadDimension(), c.MaxPositionEmbeddings, c.RopeTheta,
		E, c.ExpertsPerToken, c.ExpertsPerToken, c.SlidingWindow, rs.Factor, rs.OriginalMaxPositionEmbeddings, truncate)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	writeO200KTokenizer(t, dir, mm.Tok)
	return dir
}

// writeO200KTokenizer writes tok's byte-level BPE as a tokenizer.json with
// gpt-oss's pre-tokenizer (o200k's Split regex, then ByteLevel).
func writeO200KTokenizer(t *testing.T, dir string, tok *tokenizer.Tokenizer) {
	t.Helper()
	vocab := map[string]int32{}
	var added []map[string]any
	for id := int32(0); id < int32(tok.VocabSize()); id++ {
		if tok.IsSpecial(id) {
			added = append(added, map[string]any{"id": id, "content": string(tok.TokenBytes(id)), "special": true})
			continue
		}
		vocab[gguf.BytesToToken(tok.TokenBytes(id))] = id
	}
	var merges []string
	for _, m := range tok.Merges() {
		merges = append(merges, gguf.BytesToToken(tok.TokenBytes(m[0]))+" "+gguf.BytesToToken(tok.TokenBytes(m[1])))
	}
	const o200k = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	doc := map[string]any{
		"version":      "1.0",
		"added_tokens": added,
		"model":        map[string]any{"type": "BPE", "vocab": vocab, "merges": merges},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]string{"Regex": o200k}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"decoder": map[string]any{"type": "ByteLevel"},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// hfMXFP4 turns consecutive ggml MXFP4 blocks (scale byte, then 16 bytes
// whose low nibbles are values 0–15 and high nibbles 16–31) into a
// checkpoint's blocks (byte i: values 2i low, 2i+1 high) and scales.
func hfMXFP4(ggml []byte) (blocks, scales []byte) {
	n := len(ggml) / 17
	blocks, scales = make([]byte, 16*n), make([]byte, n)
	for o := 0; o < n; o++ {
		g := ggml[o*17 : (o+1)*17]
		scales[o] = g[0]
		var v [32]byte
		for j := 0; j < 16; j++ {
			v[j], v[j+16] = g[1+j]&15, g[1+j]>>4
		}
		for i := 0; i < 16; i++ {
			blocks[o*16+i] = v[2*i] | v[2*i+1]<<4
		}
	}
	return blocks, scales
}

// TestGPTOSSHFDir checks that the gpt-oss fixtures written as Hugging Face
// gpt_oss directories load and compute what the GGUF files do: the f32
// one's logits equal the GGUF model's (YaRN truncated as ggml does) and the
// float64 reference's; the MXFP4 one's (its attention float32, its experts
// the file's MXFP4 blocks) and a bfloat16 one's are within the rounded
// bound of the reference; gpt_oss's own truncate: false changes the
// logits.
func TestGPTOSSHFDir(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	toks := []int32{84, 258, 39, 101, 3, 200, 257, 17, 66, 120}
	logits := func(m *Model) []float32 {
		s := m.NewSeq(0)
		out, err := m.Forward([]*Seq{s}, [][]int32{toks}, true)
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	for _, c := range []struct {
		typ, dtype string
		limit      float64
	}{{"f32", safetensors.F32, 1e-4}, {"q8_0", safetensors.F32, 5e-2}, {"f32", safetensors.BF16, 5e-2}} {
		path := filepath.Join("testdata", "family", "gpt-oss-"+c.typ+".gguf")
		hf, err := Load(ossHFDir(t, c.typ, c.dtype, true), pool)
		if err != nil {
			t.Fatal(err)
		}
		if hf.Tok == nil || hf.Tok.VocabSize() != hf.Cfg.VocabSize {
			t.Fatalf("%s: HF tokenizer missing or wrong", c.typ)
		}
		got := logits(hf)
		want := newFamilyRef(t, path, "gpt-oss").forward(toks)
		V := hf.Cfg.VocabSize
		worst := 0.0
		for p := range toks {
			worst = math.Max(worst, relErr(got[p*V:(p+1)*V], want[p]))
		}
		t.Logf("%s as HF %s: max relative logit error %.2e", c.typ, c.dtype, worst)
		if worst > c.limit {
			t.Errorf("%s as HF %s: logits differ from the float64 reference by %.3g (limit %g)", c.typ, c.dtype, worst, c.limit)
		}
		if c.typ == "f32" && c.dtype == safetensors.F32 {
			g, err := Load(path, pool)
			if err != nil {
				t.Fatal(err)
			}
			ref := logits(g)
			g.Close()
			for i := range ref {
				if d := math.Abs(float64(ref[i] - got[i])); d > 1e-5*math.Max(1, math.Abs(float64(ref[i]))) {
					t.Fatalf("f32 as HF: logit %d is %v, the GGUF model's %v", i, got[i], ref[i])
				}
			}
			untrunc, err := Load(ossHFDir(t, c.typ, c.dtype, false), pool)
			if err != nil {
				t.Fatal(err)
			}
			if u := logits(untrunc); relErr(u, float64s(got)) < 1e-4 {
				t.Error("truncate: false left the logits unchanged")
			}
			untrunc.Close()
		}
		hf.Close()
	}
}

func float64s(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
