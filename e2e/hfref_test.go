package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/moe-llm/moe/internal/ref64"
)

// This file checks `moe import` of Hugging Face safetensors, and running
// the directory in place (`generate --model DIR`), against an
// independent float64 forward pass written from the HF modelling code
// (LlamaForCausalLM / MixtralForCausalLM: RMSNorm, rotate_half RoPE, grouped
// KV heads, SwiGLU, softmax → top-k → renormalised routing), sharing nothing
// with moe's own model code.

// hfModel is a small random HF checkpoint: its config and named tensors.
type hfModel struct {
	d, ff, layers, heads, kv, vocab, experts, topK int
	theta, eps                                     float64
	tensors                                        map[string][]float64
	shapes                                         map[string][]int
}

func newHFModel(seed uint64, experts int) *hfModel {
	m := &hfModel{d: 64, ff: 128, layers: 2, heads: 4, kv: 2, vocab: 384, experts: experts, theta: 10000, eps: 1e-5,
		tensors: map[string][]float64{}, shapes: map[string][]int{}}
	if experts > 0 {
		m.topK = 2
	}
	r := rand.New(rand.NewPCG(seed, 99))
	hd := m.d / m.heads
	mat := func(name string, rows, cols int, scale float64) {
		v := make([]float64, rows*cols)
		for i := range v {
			v[i] = r.NormFloat64() * scale
		}
		m.tensors[name], m.shapes[name] = v, []int{rows, cols}
	}
	vec := func(name string, n int) {
		v := make([]float64, n)
		for i := range v {
			v[i] = 1 + 0.05*r.NormFloat64()
		}
		m.tensors[name], m.shapes[name] = v, []int{n}
	}
	mat("model.embed_tokens.weight", m.vocab, m.d, 0.5)
	for l := 0; l < m.layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		vec(p+"input_layernorm.weight", m.d)
		vec(p+"post_attention_layernorm.weight", m.d)
		mat(p+"self_attn.q_proj.weight", m.heads*hd, m.d, 0.08)
		mat(p+"self_attn.k_proj.weight", m.kv*hd, m.d, 0.08)
		mat(p+"self_attn.v_proj.weight", m.kv*hd, m.d, 0.08)
		mat(p+"self_attn.o_proj.weight", m.d, m.heads*hd, 0.08)
		if experts == 0 {
			mat(p+"mlp.gate_proj.weight", m.ff, m.d, 0.08)
			mat(p+"mlp.up_proj.weight", m.ff, m.d, 0.08)
			mat(p+"mlp.down_proj.weight", m.d, m.ff, 0.08)
			continue
		}
		mat(p+"block_sparse_moe.gate.weight", experts, m.d, 0.5)
		for e := 0; e < experts; e++ {
			q := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", p, e)
			mat(q+"w1.weight", m.ff, m.d, 0.08)
			mat(q+"w3.weight", m.ff, m.d, 0.08)
			mat(q+"w2.weight", m.d, m.ff, 0.08)
		}
	}
	vec("model.norm.weight", m.d)
	mat("lm_head.weight", m.vocab, m.d, 0.5)
	return m
}

// roundBF16 truncates every weight to bfloat16, as a bf16 checkpoint holds.
func (m *hfModel) roundBF16() {
	for _, v := range m.tensors {
		for i, x := range v {
			v[i] = float64(math.Float32frombits(math.Float32bits(float32(x)) &^ 0xffff))
		}
	}
}

// write saves config.json and model.safetensors (dtype F32 or BF16) in dir.
func (m *hfModel) write(t *testing.T, dir, dtype string) {
	t.Helper()
	cfg := map[string]any{"model_type": "llama", "architectures": []string{"LlamaForCausalLM"}, "hidden_size": m.d,
		"intermediate_size": m.ff, "num_hidden_layers": m.layers, "num_attention_heads": m.heads, "num_key_value_heads": m.kv,
		"vocab_size": m.vocab, "max_position_embeddings": 64, "rms_norm_eps": m.eps, "rope_theta": m.theta,
		"tie_word_embeddings": false, "torch_dtype": map[string]string{"F32": "float32", "BF16": "bfloat16"}[dtype]}
	if m.experts > 0 {
		cfg["model_type"], cfg["architectures"] = "mixtral", []string{"MixtralForCausalLM"}
		cfg["num_local_experts"], cfg["num_experts_per_tok"] = m.experts, m.topK
	}
	b, _ := json.Marshal(cfg)
	writeFile(t, dir, "config.json", string(b))
	names := make([]string, 0, len(m.tensors))
	for n := range m.tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	for _, n := range names {
		start := len(data)
		for _, x := range m.tensors[n] {
			bits := math.Float32bits(float32(x))
			if dtype == "BF16" {
				data = binary.LittleEndian.AppendUint16(data, uint16(bits>>16))
			} else {
				data = binary.LittleEndian.AppendUint32(data, bits)
			}
		}
		header[n] = map[string]any{"dtype": dtype, "shape": m.shapes[n], "data_offsets": []int{start, len(data)}}
	}
	hb, _ := json.Marshal(header)
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
	out = append(append(out, hb...), data...)
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// swiglu is down(silu(gate·x) ⊙ up·x).
func swiglu(gate, up, down, x []float64) []float64 {
	g, u := ref64.MatVec(gate, x), ref64.MatVec(up, x)
	for i := range g {
		g[i] = ref64.SiLU(g[i]) * u[i]
	}
	return ref64.MatVec(down, g)
}

// rope applies HF's rotate_half rotary embedding to one head vector at pos.
func rope(v []float64, pos int, theta float64) {
	half := len(v) / 2
	for i := 0; i < half; i++ {
		f := float64(pos) / math.Pow(theta, float64(2*i)/float64(len(v)))
		c, s := math.Cos(f), math.Sin(f)
		a, b := v[i], v[i+half]
		v[i], v[i+half] = a*c-b*s, b*c+a*s
	}
}

// logits runs the whole sequence and returns the last position's logits.
func (m *hfModel) logits(ids []int) []float64 {
	T, hd := len(ids), m.d/m.heads
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = append([]float64(nil), m.tensors["model.embed_tokens.weight"][id*m.d:(id+1)*m.d]...)
	}
	for l := 0; l < m.layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range x {
			h := ref64.RMSNorm(x[t], m.tensors[p+"input_layernorm.weight"], m.eps)
			q[t], k[t], v[t] = ref64.MatVec(m.tensors[p+"self_attn.q_proj.weight"], h), ref64.MatVec(m.tensors[p+"self_attn.k_proj.weight"], h), ref64.MatVec(m.tensors[p+"self_attn.v_proj.weight"], h)
			for hh := 0; hh < m.heads; hh++ {
				rope(q[t][hh*hd:(hh+1)*hd], t, m.theta)
			}
			for hh := 0; hh < m.kv; hh++ {
				rope(k[t][hh*hd:(hh+1)*hd], t, m.theta)
			}
		}
		for t := range x {
			o := make([]float64, m.heads*hd)
			for hh := 0; hh < m.heads; hh++ {
				g := hh / (m.heads / m.kv)
				s := make([]float64, t+1)
				mx := math.Inf(-1)
				for u := 0; u <= t; u++ {
					for i := 0; i < hd; i++ {
						s[u] += q[t][hh*hd+i] * k[u][g*hd+i]
					}
					s[u] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, s[u])
				}
				var z float64
				for u := range s {
					s[u] = math.Exp(s[u] - mx)
					z += s[u]
				}
				for u := range s {
					for i := 0; i < hd; i++ {
						o[hh*hd+i] += s[u] / z * v[u][g*hd+i]
					}
				}
			}
			a := ref64.MatVec(m.tensors[p+"self_attn.o_proj.weight"], o)
			for i := range a {
				x[t][i] += a[i]
			}
		}
		for t := range x {
			h := ref64.RMSNorm(x[t], m.tensors[p+"post_attention_layernorm.weight"], m.eps)
			var out []float64
			if m.experts == 0 {
				out = swiglu(m.tensors[p+"mlp.gate_proj.weight"], m.tensors[p+"mlp.up_proj.weight"], m.tensors[p+"mlp.down_proj.weight"], h)
			} else {
				r := ref64.MatVec(m.tensors[p+"block_sparse_moe.gate.weight"], h)
				mx := math.Inf(-1)
				for _, v := range r {
					mx = math.Max(mx, v)
				}
				var z float64
				for i := range r {
					r[i] = math.Exp(r[i] - mx)
					z += r[i]
				}
				order := make([]int, len(r))
				for i := range order {
					order[i] = i
				}
				sort.Slice(order, func(a, b int) bool { return r[order[a]] > r[order[b]] })
				var sel float64
				for _, e := range order[:m.topK] {
					sel += r[e]
				}
				out = make([]float64, m.d)
				for _, e := range order[:m.topK] {
					q := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", p, e)
					y := swiglu(m.tensors[q+"w1.weight"], m.tensors[q+"w3.weight"], m.tensors[q+"w2.weight"], h)
					for i := range out {
						out[i] += r[e] / sel * y[i]
					}
				}
			}
			for i := range out {
				x[t][i] += out[i]
			}
		}
	}
	h := ref64.RMSNorm(x[T-1], m.tensors["model.norm.weight"], m.eps)
	return ref64.MatVec(m.tensors["lm_head.weight"], h)
}

// greedy continues ids by n argmax tokens, stopping after eot; it returns the
// new ids and the smallest gap between the best and second-best logit.
func (m *hfModel) greedy(ids []int, n, eot int) ([]int, float64) {
	seq := append([]int(nil), ids...)
	gap := math.Inf(1)
	var out []int
	for len(out) < n {
		lg := m.logits(seq)
		best, second := 0, -1
		for i := range lg {
			if lg[i] > lg[best] {
				best = i
			}
		}
		for i := range lg {
			if i != best && (second < 0 || lg[i] > lg[second]) {
				second = i
			}
		}
		gap = math.Min(gap, lg[best]-lg[second])
		if best == eot {
			break
		}
		out = append(out, best)
		seq = append(seq, best)
	}
	return out, gap
}

// hfVocab reads a Hugging Face byte-level BPE tokenizer.json: the bytes of
// each id (special tokens as their text) and the end-of-text id.
func hfVocab(t *testing.T, path string) (map[int][]byte, map[string]int, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tj struct {
		Model struct {
			Vocab map[string]int `json:"vocab"`
		} `json:"model"`
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(b, &tj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// GPT-2's bytes_to_unicode, inverted.
	byteOf := map[rune]byte{}
	n := 0
	for c := 0; c < 256; c++ {
		if (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF) {
			byteOf[rune(c)] = byte(c)
		} else {
			byteOf[rune(256+n)] = byte(c)
			n++
		}
	}
	bytesOf := map[int][]byte{}
	for s, id := range tj.Model.Vocab {
		var bs []byte
		for _, r := range s {
			bs = append(bs, byteOf[r])
		}
		bytesOf[id] = bs
	}
	eot := -1
	for _, a := range tj.AddedTokens {
		bytesOf[a.ID] = []byte(a.Content)
		if a.Content == "<|endoftext|>" {
			eot = a.ID
		}
	}
	return bytesOf, tj.Model.Vocab, eot
}

func TestImportHuggingFaceMatchesReference(t *testing.T) {
	base, _ := trained(t)
	dir := t.TempDir()
	// The base run's tokenizer in the standard HF format.
	hfTok := filepath.Join(dir, "tok")
	ok(t, "export", "--model", base, "--out", hfTok, "--format", "hf")
	bytesOf, vocab, eot := hfVocab(t, filepath.Join(hfTok, "tokenizer.json"))
	promptID, found := vocab["Q"]
	if !found || eot < 0 {
		t.Fatalf("tokenizer.json: no token for %q or no <|endoftext|>", "Q")
	}
	for _, c := range []struct {
		name    string
		experts int
		dtype   string
		seed    uint64
	}{{"llama-f32", 0, "F32", 1}, {"llama-bf16", 0, "BF16", 2}, {"mixtral-f32", 4, "F32", 3}, {"mixtral-bf16", 4, "BF16", 4}} {
		m := newHFModel(c.seed, c.experts)
		if c.dtype == "BF16" {
			m.roundBF16()
		}
		src := filepath.Join(dir, c.name)
		m.write(t, src, c.dtype)
		run := filepath.Join(dir, c.name+"-run")
		ok(t, "import", "--in", src, "--out", run, "--tokenizer", base)
		ids, gap := m.greedy([]int{promptID}, 12, eot)
		var want strings.Builder
		for _, id := range ids {
			want.Write(bytesOf[id])
		}
		got := generate(t, "--model", run, "--prompt", "Q", "--max-tokens", "12", "--temperature", "0")
		// Invalid UTF-8 shows as one U+FFFD per bad byte, as Go's range over a string decodes it.
		var valid strings.Builder
		for _, r := range want.String() {
			valid.WriteRune(r)
		}
		// The directory itself runs in place (safetensors.OpenMapped) once
		// it has the tokenizer.
		for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
			data, err := os.ReadFile(filepath.Join(hfTok, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(src, f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		direct := generate(t, "--model", src, "--prompt", "Q", "--max-tokens", "12", "--temperature", "0")
		for _, r := range []struct {
			how  string
			text any
		}{{"imported", got["text"]}, {"in place", direct["text"]}} {
			if r.text != valid.String() {
				t.Errorf("%s %s: moe generates %q, the float64 HF reference %q (ids %v, smallest logit gap %.4f)", c.name, r.how, r.text, want.String(), ids, gap)
			} else {
				t.Logf("%s %s: %d tokens identical to the HF reference (smallest logit gap %.4f)", c.name, r.how, len(ids), gap)
			}
		}
	}
}
