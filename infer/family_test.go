package infer

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/gguf"
)

// familyFixtures are the small random-weight files of llama.cpp's MoE
// architectures that benchmarks/gguf/make_family.py writes with gguf-py.
var familyFixtures = []string{"qwen3moe", "olmoe", "qwen2moe", "granitemoe", "llama"}

// familyRef is an independent float64 forward pass of one family file,
// written from the family's definition (llama.cpp's graph for the arch) over
// the tensors exactly as the file stores them: no fusion, no permutation,
// full recomputation per position.
type familyRef struct {
	t                    *testing.T
	f                    *gguf.File
	arch                 string
	d, H, KV, hd, E, k   int
	layers               int
	eps, base            float64
	embScale, resScale   float64
	attnScale, logitDiv  float64
	neox, renorm, shared bool
}

func newFamilyRef(t *testing.T, path, arch string) *familyRef {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r := &familyRef{t: t, f: f, arch: arch}
	r.d = r.geti("embedding_length")
	r.H = r.geti("attention.head_count")
	r.KV = r.geti("attention.head_count_kv")
	r.layers = r.geti("block_count")
	r.E = r.geti("expert_count")
	r.k = r.geti("expert_used_count")
	r.hd = r.d / r.H
	if _, ok := f.Get(arch + ".attention.key_length"); ok {
		r.hd = r.geti("attention.key_length")
	}
	r.eps = r.getf("attention.layer_norm_rms_epsilon", math.NaN())
	r.base = r.getf("rope.freq_base", 10000)
	r.attnScale = 1 / math.Sqrt(float64(r.hd))
	r.embScale, r.resScale, r.logitDiv = 1, 1, 1
	// The families' definitions: RoPE pairing, whether the top-k weights
	// are renormalised, the gated shared expert, Granite's scales.
	switch arch {
	case "qwen3moe":
		r.neox, r.renorm = true, true
	case "olmoe":
		r.neox = true
	case "qwen2moe":
		r.neox, r.shared = true, true
	case "llama": // Mixtral: softmax over the chosen experts' logits
		r.renorm = true
	case "granitemoe":
		r.renorm = true
		r.embScale = r.getf("embedding_scale", 1)
		r.resScale = r.getf("residual_scale", 1)
		r.attnScale = r.getf("attention.scale", r.attnScale)
		r.logitDiv = r.getf("logit_scale", math.NaN())
	}
	return r
}

func (r *familyRef) geti(key string) int {
	v, ok := r.f.Get(r.arch + "." + key)
	if !ok {
		r.t.Fatalf("missing %s.%s", r.arch, key)
	}
	switch x := v.(type) {
	case uint32:
		return int(x)
	case int32:
		return int(x)
	case uint64:
		return int(x)
	}
	r.t.Fatalf("%s.%s is %T", r.arch, key, v)
	return 0
}

func (r *familyRef) getf(key string, def float64) float64 {
	v, ok := r.f.Get(r.arch + "." + key)
	if !ok {
		return def
	}
	return float64(v.(float32))
}

// tensor returns the named tensor decoded to float64, or nil when absent.
func (r *familyRef) tensor(name string) []float64 {
	ti, ok := r.f.Tensor(name)
	if !ok {
		return nil
	}
	buf := make([]float32, ti.Elements())
	if err := r.f.ReadFloat32(name, buf); err != nil {
		r.t.Fatal(err)
	}
	out := make([]float64, len(buf))
	for i, v := range buf {
		out[i] = float64(v)
	}
	return out
}

func (r *familyRef) must(name string) []float64 {
	x := r.tensor(name)
	if x == nil {
		r.t.Fatalf("missing tensor %s", name)
	}
	return x
}

// matvec returns W·x for W stored as rows of len(x).
func matvec(w, x []float64) []float64 {
	n := len(w) / len(x)
	out := make([]float64, n)
	for i := range out {
		var s float64
		for j, v := range x {
			s += w[i*len(x)+j] * v
		}
		out[i] = s
	}
	return out
}

func rmsnorm64(x, g []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * s * g[i]
	}
	return out
}

func silu64(v float64) float64 { return v / (1 + math.Exp(-v)) }

// rope rotates each head of x at position p: NEOX pairs (i, i+hd/2),
// NORM pairs (2i, 2i+1), angle p·base^(−2i/hd).
func (r *familyRef) rope(x []float64, p int) {
	hd := r.hd
	for h := 0; h < len(x)/hd; h++ {
		v := x[h*hd : (h+1)*hd]
		for i := 0; i < hd/2; i++ {
			th := float64(p) * math.Pow(r.base, -2*float64(i)/float64(hd))
			c, s := math.Cos(th), math.Sin(th)
			a, b := i, i+hd/2
			if !r.neox {
				a, b = 2*i, 2*i+1
			}
			v[a], v[b] = v[a]*c-v[b]*s, v[a]*s+v[b]*c
		}
	}
}

// ffn returns down(silu(gate·x) ⊙ up·x) for one (expert) block given as
// slices of the stacked tensors.
func ffn64(gate, up, down, x []float64) []float64 {
	g, u := matvec(gate, x), matvec(up, x)
	for i := range g {
		g[i] = silu64(g[i]) * u[i]
	}
	return matvec(down, g)
}

// forward returns the logits of every position of toks.
func (r *familyRef) forward(toks []int32) [][]float64 {
	d, hd := r.d, r.hd
	emb := r.must("token_embd.weight")
	n := len(toks)
	x := make([][]float64, n)
	for p, tk := range toks {
		x[p] = make([]float64, d)
		for i := range x[p] {
			x[p][i] = emb[int(tk)*d+i] * r.embScale
		}
	}
	for l := 0; l < r.layers; l++ {
		b := func(s string) string { return "blk." + itoa(l) + "." + s }
		wq, wk, wv, wo := r.must(b("attn_q.weight")), r.must(b("attn_k.weight")), r.must(b("attn_v.weight")), r.must(b("attn_output.weight"))
		bq, bk, bv := r.tensor(b("attn_q.bias")), r.tensor(b("attn_k.bias")), r.tensor(b("attn_v.bias"))
		qn, kn := r.tensor(b("attn_q_norm.weight")), r.tensor(b("attn_k_norm.weight"))
		an := r.must(b("attn_norm.weight"))
		qs, ks, vs := make([][]float64, n), make([][]float64, n), make([][]float64, n)
		for p := range n {
			h := rmsnorm64(x[p], an, r.eps)
			q, k, v := matvec(wq, h), matvec(wk, h), matvec(wv, h)
			for i := range bq {
				q[i] += bq[i]
			}
			for i := range bk {
				k[i] += bk[i]
			}
			for i := range bv {
				v[i] += bv[i]
			}
			norm := func(x, g []float64) {
				for o := 0; o < len(x); o += len(g) {
					copy(x[o:o+len(g)], rmsnorm64(x[o:o+len(g)], g, r.eps))
				}
			}
			if qn != nil {
				norm(q, qn)
				norm(k, kn)
			}
			r.rope(q, p)
			r.rope(k, p)
			qs[p], ks[p], vs[p] = q, k, v
		}
		for p := range n {
			att := make([]float64, r.H*hd)
			for h := 0; h < r.H; h++ {
				g := h / (r.H / r.KV)
				sc := make([]float64, p+1)
				mx := math.Inf(-1)
				for j := 0; j <= p; j++ {
					var s float64
					for i := 0; i < hd; i++ {
						s += qs[p][h*hd+i] * ks[j][g*hd+i]
					}
					sc[j] = s * r.attnScale
					mx = math.Max(mx, sc[j])
				}
				var z float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					z += sc[j]
				}
				for j := range sc {
					for i := 0; i < hd; i++ {
						att[h*hd+i] += sc[j] / z * vs[j][g*hd+i]
					}
				}
			}
			o := matvec(wo, att)
			for i := range o {
				x[p][i] += r.resScale * o[i]
			}
		}
		fn := r.must(b("ffn_norm.weight"))
		router := r.must(b("ffn_gate_inp.weight"))
		ge, ue, de := r.must(b("ffn_gate_exps.weight")), r.must(b("ffn_up_exps.weight")), r.must(b("ffn_down_exps.weight"))
		per := len(ge) / r.E
		for p := range n {
			h := rmsnorm64(x[p], fn, r.eps)
			lg := matvec(router, h)
			mx := slices.Max(lg)
			var z float64
			prob := make([]float64, r.E)
			for e, v := range lg {
				prob[e] = math.Exp(v - mx)
				z += prob[e]
			}
			order := make([]int, r.E)
			for e := range order {
				prob[e] /= z
				order[e] = e
			}
			sort.SliceStable(order, func(a, b int) bool { return prob[order[a]] > prob[order[b]] })
			top := order[:r.k]
			var sum float64
			for _, e := range top {
				sum += prob[e]
			}
			out := make([]float64, d)
			for _, e := range top {
				w := prob[e]
				if r.renorm {
					w /= sum
				}
				y := ffn64(ge[e*per:(e+1)*per], ue[e*per:(e+1)*per], de[e*per:(e+1)*per], h)
				for i := range out {
					out[i] += w * y[i]
				}
			}
			if sg := r.tensor(b("ffn_gate_shexp.weight")); sg != nil {
				// The shared expert: sigmoid-gated (qwen2moe), else plain.
				gate := 1.0
				if r.shared {
					gi := r.must(b("ffn_gate_inp_shexp.weight"))
					var s float64
					for i := range h {
						s += gi[i] * h[i]
					}
					gate = 1 / (1 + math.Exp(-s))
				}
				y := ffn64(sg, r.must(b("ffn_up_shexp.weight")), r.must(b("ffn_down_shexp.weight")), h)
				for i := range out {
					out[i] += gate * y[i]
				}
			}
			for i := range out {
				x[p][i] += r.resScale * out[i]
			}
		}
	}
	logits := r.logits(x, emb)
	for p := range logits {
		for i := range logits[p] {
			logits[p][i] /= r.logitDiv
		}
	}
	return logits
}

// logits returns the LM head's logits of the final hidden states x: the
// output norm, then output.weight (emb when the file ties them).
func (r *familyRef) logits(x [][]float64, emb []float64) [][]float64 {
	head := r.tensor("output.weight")
	if head == nil {
		head = emb
	}
	on := r.must("output_norm.weight")
	logits := make([][]float64, len(x))
	for p := range x {
		logits[p] = matvec(head, rmsnorm64(x[p], on, r.eps))
	}
	return logits
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// familyTokens are the token ids the family tests run.
func familyTokens() []int32 { return []int32{84, 258, 39, 101, 3, 200, 257, 17, 66, 120} }

// forwardError runs toks through m, a prefill of the first 6 with every
// position's logits then single-token decode steps against the KV cache,
// and returns the largest relative error of any position's logits
// against want.
func forwardError(t *testing.T, m *Model, toks []int32, want [][]float64) float64 {
	t.Helper()
	V := m.Cfg.VocabSize
	s := m.NewSeq(0)
	const prefill = 6
	got, err := m.Forward([]*Seq{s}, [][]int32{toks[:prefill]}, true)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for p := 0; p < prefill; p++ {
		worst = math.Max(worst, relErr(got[0][p*V:(p+1)*V], want[p]))
	}
	for p := prefill; p < len(toks); p++ {
		got, err := m.Forward([]*Seq{s}, [][]int32{toks[p : p+1]}, false)
		if err != nil {
			t.Fatal(err)
		}
		worst = math.Max(worst, relErr(got[0], want[p]))
	}
	return worst
}

// relErr returns max|got−want| / max|want|.
func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		num = math.Max(num, math.Abs(float64(got[i])-w))
		den = math.Max(den, math.Abs(w))
	}
	return num / den
}

// TestGGUFFamilies loads each family's fixtures and checks the forward
// pass, a prefill of several tokens with every position's logits and then
// single-token decode steps against the KV cache, against the float64
// reference computed from the family's definition over the file's own
// (decoded) weights: within 1e-4 relative for f32; for q8_0 within 5e-2,
// as the quantized products also round the activations to 8 bits (as
// ggml's do).
func TestGGUFFamilies(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	for _, c := range []struct {
		typ   string
		limit float64
	}{{"f32", 1e-4}, {"q8_0", 5e-2}} {
		for _, arch := range familyFixtures {
			t.Run(arch+"-"+c.typ, func(t *testing.T) { testFamily(t, pool, arch, c.typ, c.limit) })
		}
	}
}

func testFamily(t *testing.T, pool *compute.Pool, arch, typ string, limit float64) {
	path := filepath.Join("testdata", "family", arch+"-"+typ+".gguf")
	m, err := Load(path, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Tok == nil {
		t.Fatal("no tokenizer")
	}
	ref := newFamilyRef(t, path, arch)
	toks := familyTokens()
	worst := forwardError(t, m, toks, ref.forward(toks))
	t.Logf("%s %s: max relative logit error %.2e over %d positions", arch, typ, worst, len(toks))
	if worst > limit {
		t.Fatalf("%s %s: logits differ from the float64 reference by %.3e relative (limit %g)", arch, typ, worst, limit)
	}
}

// TestGGUFFamilyErrors checks that a family file with a missing key, a
// misshapen tensor or an unknown architecture fails with an error naming it.
func TestGGUFFamilyErrors(t *testing.T) {
	// Same-length renames in the header: the key or tensor becomes
	// something moe does not know, so the file lacks the real one.
	for _, c := range []struct{ from, to, want string }{
		{"qwen2moe.expert_used_count", "qwen2moe.expert_usXd_count", `"qwen2moe.expert_used_count"`},
		{"qwen2moe.attention.layer_norm_rms_epsilon", "qwen2moe.attention.layer_norm_rms_epsiloX", `"qwen2moe.attention.layer_norm_rms_epsilon"`},
		{"blk.1.ffn_gate_inp_shexp.weight", "blk.1.ffn_gate_inp_shexX.weight", `"blk.1.ffn_gate_inp_shexp.weight"`},
		{"blk.0.attn_k.bias", "blk.0.attn_k.biaX", `"blk.0.attn_k.bias"`},
		{"\x08\x00\x00\x00\x00\x00\x00\x00qwen2moe", "\x08\x00\x00\x00\x00\x00\x00\x00qwen9moe", `"qwen9moe" is not supported`},
	} {
		badFamilyFile(t, "qwen2moe-f32", c.from, c.to, c.want)
	}
}

// badFamilyFile copies fixture name with the bytes from (in its header)
// replaced by to, of the same length, and checks that Load fails with a
// one-line error containing want.
func badFamilyFile(t *testing.T, name, from, to, want string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "family", name+".gguf"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), from)
	if i < 0 {
		t.Fatalf("%q not in %s", from, name)
	}
	bad := slices.Clone(data)
	copy(bad[i:], to)
	path := filepath.Join(t.TempDir(), "bad.gguf")
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("%s: %s → %s: got error %v, want one line naming %s", name, from, to, err, want)
	}
}
