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
	"github.com/moe-llm/moe/internal/ref64"
)

// familyFixtures are the small random-weight files of llama.cpp's MoE
// architectures that benchmarks/gguf/make_family.py writes with gguf-py.
var familyFixtures = []string{"qwen3moe", "olmoe", "qwen2moe", "granitemoe", "llama", "gpt-oss"}

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
	// gpt-oss: sinks, biases, top-k then softmax routing, the clamped
	// SwiGLU, sliding window swa on even layers, YaRN (factor, original
	// context).
	oss           bool
	swa, yarnOrig int
	yarn          float64
	// q8acts rounds the input of every product with a quantized matrix
	// to q8_0 blocks, as ggml's CPU kernels (and moe's) quantize
	// activations: the reference of the products' exact arithmetic.
	q8acts bool
}

// act returns x as the product with tensor name sees it: unchanged, or
// with q8acts and a quantized tensor, rounded to q8_0 blocks of 32 as
// ggml's quantize_row_q8_0 rounds them (scale max|x|/127 stored as f16,
// values rounded to integers).
func (r *familyRef) act(name string, x []float64) []float64 {
	if !r.quantized(name) {
		return x
	}
	return q8Round(x)
}

// quantized reports whether q8acts is set and tensor name is stored in a
// quantized type.
func (r *familyRef) quantized(name string) bool {
	ti, ok := r.f.Tensor(name)
	return r.q8acts && ok && ti.Type != gguf.F32 && ti.Type != gguf.F16 && ti.Type != gguf.BF16
}

// q8Round rounds x to q8_0 blocks (see familyRef.act).
func q8Round(x []float64) []float64 {
	out := make([]float64, len(x))
	for b := 0; b < len(x); b += 32 {
		blk := x[b:min(b+32, len(x))]
		var amax float32
		for _, v := range blk {
			amax = max(amax, float32(math.Abs(v)))
		}
		d := amax / 127
		id := float32(0)
		if d != 0 {
			id = 1 / d
		}
		dh := float64(compute.F16ToFloat32(compute.Float32ToF16(d)))
		for i, v := range blk {
			out[b+i] = float64(float32(math.Round(float64(float32(v)*id)))) * dh
		}
	}
	return out
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
	case "gpt-oss":
		r.neox, r.oss = true, true
		r.swa = r.geti("attention.sliding_window")
		r.yarn = r.getf("rope.scaling.factor", math.NaN())
		r.yarnOrig = r.geti("rope.scaling.original_context_length")
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

// rope rotates each head of x at position p: NEOX pairs (i, i+hd/2),
// NORM pairs (2i, 2i+1), angle p·base^(−2i/hd).
//
// With YaRN (gpt-oss), as ggml's rope computes it: the pairs below the
// correction range [lo, hi] (rounded out) turn at base^(−2i/hd)/factor,
// those above at base^(−2i/hd), a linear ramp between, and the rotation
// is scaled by 1 + 0.1·ln(factor).
func (r *familyRef) rope(x []float64, p int) {
	hd := r.hd
	mscale, lo, hi := 1.0, 0.0, 0.0
	if r.yarn > 0 {
		mscale = 1 + 0.1*math.Log(r.yarn)
		corr := func(rot float64) float64 {
			return float64(hd) * math.Log(float64(r.yarnOrig)/(rot*2*math.Pi)) / (2 * math.Log(r.base))
		}
		lo, hi = math.Max(0, math.Floor(corr(32))), math.Min(float64(hd-1), math.Ceil(corr(1)))
	}
	for h := 0; h < len(x)/hd; h++ {
		v := x[h*hd : (h+1)*hd]
		for i := 0; i < hd/2; i++ {
			freq := math.Pow(r.base, -2*float64(i)/float64(hd))
			if r.yarn > 0 {
				ramp := 1 - math.Min(1, math.Max(0, (float64(i)-lo)/math.Max(0.001, hi-lo)))
				freq = freq/r.yarn*(1-ramp) + freq*ramp
			}
			th := float64(p) * freq
			c, s := mscale*math.Cos(th), mscale*math.Sin(th)
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
func ffn64(gate, up, down, x []float64, q q8Acts) []float64 {
	return ffnBias64(gate, up, down, nil, nil, nil, x, false, q)
}

// q8Acts says which inputs of a feed-forward block are rounded to q8_0
// (see familyRef.act): gate and up's, down's.
type q8Acts struct{ gu, down bool }

// ffnActs returns the q8Acts of the block whose gate and down tensors
// are named so.
func (r *familyRef) ffnActs(gate, down string) q8Acts {
	return q8Acts{gu: r.quantized(gate), down: r.quantized(down)}
}

// ffnBias64 is ffn64 with the projections' biases (nil: none) and, with
// clamped, gpt-oss's SwiGLU: min(g, 7)·σ(1.702·min(g, 7))·(clamp(u, ±7)+1).
func ffnBias64(gate, up, down, bg, bu, bd, x []float64, clamped bool, q q8Acts) []float64 {
	if q.gu {
		x = q8Round(x)
	}
	g, u := ref64.MatVec(gate, x), ref64.MatVec(up, x)
	for i := range g {
		if bg != nil {
			g[i] += bg[i]
			u[i] += bu[i]
		}
		if clamped {
			gi := math.Min(g[i], 7)
			g[i] = gi / (1 + math.Exp(-1.702*gi)) * (math.Max(-7, math.Min(7, u[i])) + 1)
		} else {
			g[i] = ref64.SiLU(g[i]) * u[i]
		}
	}
	if q.down {
		g = q8Round(g)
	}
	y := ref64.MatVec(down, g)
	for i := range bd {
		y[i] += bd[i]
	}
	return y
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
		// gpt-oss: the output bias, per-head sinks, and a sliding window
		// on even layers (llama.cpp's default period of 2).
		bo, sinks := r.tensor(b("attn_output.bias")), r.tensor(b("attn_sinks.weight"))
		window := 0
		if r.oss && l%2 == 0 {
			window = r.swa
		}
		qs, ks, vs := make([][]float64, n), make([][]float64, n), make([][]float64, n)
		for p := range n {
			h := ref64.RMSNorm(x[p], an, r.eps)
			q, k, v := ref64.MatVec(wq, r.act(b("attn_q.weight"), h)), ref64.MatVec(wk, r.act(b("attn_k.weight"), h)), ref64.MatVec(wv, r.act(b("attn_v.weight"), h))
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
					copy(x[o:o+len(g)], ref64.RMSNorm(x[o:o+len(g)], g, r.eps))
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
				if sinks != nil {
					mx = sinks[h]
				}
				for j := 0; j <= p; j++ {
					if window > 0 && p-j >= window {
						sc[j] = math.Inf(-1)
						continue
					}
					var s float64
					for i := 0; i < hd; i++ {
						s += qs[p][h*hd+i] * ks[j][g*hd+i]
					}
					sc[j] = s * r.attnScale
					mx = math.Max(mx, sc[j])
				}
				var z float64
				if sinks != nil {
					z = math.Exp(sinks[h] - mx)
				}
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
			o := ref64.MatVec(wo, r.act(b("attn_output.weight"), att))
			for i := range bo {
				o[i] += bo[i]
			}
			for i := range o {
				x[p][i] += r.resScale * o[i]
			}
		}
		fnName := "ffn_norm.weight"
		if r.oss {
			fnName = "post_attention_norm.weight"
		}
		fn := r.must(b(fnName))
		router, rb := r.must(b("ffn_gate_inp.weight")), r.tensor(b("ffn_gate_inp.bias"))
		ge, ue, de := r.must(b("ffn_gate_exps.weight")), r.must(b("ffn_up_exps.weight")), r.must(b("ffn_down_exps.weight"))
		bge, bue, bde := r.tensor(b("ffn_gate_exps.bias")), r.tensor(b("ffn_up_exps.bias")), r.tensor(b("ffn_down_exps.bias"))
		per := len(ge) / r.E
		slice := func(v []float64, e int) []float64 {
			if v == nil {
				return nil
			}
			n := len(v) / r.E
			return v[e*n : (e+1)*n]
		}
		for p := range n {
			h := ref64.RMSNorm(x[p], fn, r.eps)
			lg := ref64.MatVec(router, h) // moe multiplies by the router in float32
			for e := range rb {
				lg[e] += rb[e]
			}
			order := make([]int, r.E)
			for e := range order {
				order[e] = e
			}
			// gpt-oss: top-k of the logits, softmax over those k;
			// the others: softmax over all, top-k (renormalised or not).
			softmax := func(idx []int) []float64 {
				mx := math.Inf(-1)
				for _, e := range idx {
					mx = math.Max(mx, lg[e])
				}
				var z float64
				prob := make([]float64, r.E)
				for _, e := range idx {
					prob[e] = math.Exp(lg[e] - mx)
					z += prob[e]
				}
				for _, e := range idx {
					prob[e] /= z
				}
				return prob
			}
			var prob []float64
			if !r.oss {
				prob = softmax(order)
			}
			sort.SliceStable(order, func(a, b int) bool { return lg[order[a]] > lg[order[b]] })
			top := order[:r.k]
			if r.oss {
				prob = softmax(top)
			}
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
				y := ffnBias64(ge[e*per:(e+1)*per], ue[e*per:(e+1)*per], de[e*per:(e+1)*per],
					slice(bge, e), slice(bue, e), slice(bde, e), h, r.oss, r.ffnActs(b("ffn_gate_exps.weight"), b("ffn_down_exps.weight")))
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
				y := ffn64(sg, r.must(b("ffn_up_shexp.weight")), r.must(b("ffn_down_shexp.weight")), h, r.ffnActs(b("ffn_gate_shexp.weight"), b("ffn_down_shexp.weight")))
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
// output norm, then output.weight (emb when the file ties them), its input
// rounded to q8_0 with q8acts as for any quantized matrix.
func (r *familyRef) logits(x [][]float64, emb []float64) [][]float64 {
	head, headName := r.tensor("output.weight"), "output.weight"
	if head == nil {
		head, headName = emb, "token_embd.weight"
	}
	on := r.must("output_norm.weight")
	logits := make([][]float64, len(x))
	for p := range x {
		logits[p] = ref64.MatVec(head, r.act(headName, ref64.RMSNorm(x[p], on, r.eps)))
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
	return forwardErrors(t, m, toks, want)[0]
}

// forwardErrors is forwardError against several references at once: the
// largest relative error against each.
func forwardErrors(t *testing.T, m *Model, toks []int32, wants ...[][]float64) []float64 {
	t.Helper()
	V := m.Cfg.VocabSize
	s := m.NewSeq(0)
	const prefill = 6
	got, err := m.Forward([]*Seq{s}, [][]int32{toks[:prefill]}, true)
	if err != nil {
		t.Fatal(err)
	}
	worst := make([]float64, len(wants))
	for p := 0; p < prefill; p++ {
		for j, want := range wants {
			worst[j] = math.Max(worst[j], relErr(got[0][p*V:(p+1)*V], want[p]))
		}
	}
	for p := prefill; p < len(toks); p++ {
		got, err := m.Forward([]*Seq{s}, [][]int32{toks[p : p+1]}, false)
		if err != nil {
			t.Fatal(err)
		}
		for j, want := range wants {
			worst[j] = math.Max(worst[j], relErr(got[0], want[p]))
		}
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
// (decoded) weights: within 1e-4 relative for f32; for q8_0 within 1e-1
// (gpt-oss's MXFP4 file: 6.5e-2), as the quantized products also round the
// activations to 8 bits (as ggml's do), and within 1e-4 of the reference
// that rounds them so, the check that binds.
func TestGGUFFamilies(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	for _, c := range []struct {
		typ   string
		limit float64
	}{{"f32", 1e-4}, {"q8_0", 1e-1}} {
		for _, arch := range familyFixtures {
			t.Run(arch+"-"+c.typ, func(t *testing.T) { testFamily(t, pool, arch, c.typ, c.limit) })
		}
	}
}

func testFamily(t *testing.T, pool *compute.Pool, arch, typ string, limit float64) {
	path := filepath.Join("testdata", "family", arch+"-"+typ+".gguf")
	m := loadT(t, path, pool)
	if m.Tok == nil {
		t.Fatal("no tokenizer")
	}
	ref := newFamilyRef(t, path, arch)
	toks := familyTokens()
	if ref.oss {
		// Past 16 + the window, so that window layers skip whole
		// blocks of 16 keys.
		for i := int32(0); len(toks) < 40; i++ {
			toks = append(toks, (i*37+11)%259)
		}
	}
	want := ref.forward(toks)
	ref.q8acts = true
	errs := forwardErrors(t, m, toks, want, ref.forward(toks))
	worst, worstQ8 := errs[0], errs[1]
	t.Logf("%s %s: max relative logit error %.2e over %d positions; %.2e with the activations rounded to q8_0 as ggml rounds them", arch, typ, worst, len(toks), worstQ8)
	if worst > limit {
		t.Fatalf("%s %s: logits differ from the float64 reference by %.3e relative (limit %g)", arch, typ, worst, limit)
	}
	if worstQ8 > 1e-4 {
		t.Fatalf("%s %s: logits differ from the float64 reference with q8_0-rounded activations by %.3e relative (limit 1e-4)", arch, typ, worstQ8)
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
	// gpt-oss's own keys and tensors.
	for _, c := range []struct{ from, to, want string }{
		{"gpt-oss.attention.sliding_window", "gpt-oss.attention.sliding_windoX", `"gpt-oss.attention.sliding_window"`},
		{"gpt-oss.expert_feed_forward_length", "gpt-oss.expert_feed_forward_lengtX", `"gpt-oss.expert_feed_forward_length"`},
		{"blk.1.attn_sinks.weight", "blk.1.attn_sinkX.weight", `"blk.1.attn_sinks.weight"`},
		{"blk.0.attn_output.bias", "blk.0.attn_output.biaX", `"blk.0.attn_output.bias"`},
		{"blk.0.ffn_gate_inp.bias", "blk.0.ffn_gate_inp.biaX", `"blk.0.ffn_gate_inp.bias"`},
		{"blk.1.ffn_down_exps.bias", "blk.1.ffn_down_exps.biaX", `"blk.1.ffn_down_exps.bias"`},
		{"blk.0.post_attention_norm.weight", "blk.0.post_attention_norX.weight", `"blk.0.post_attention_norm.weight"`},
	} {
		badFamilyFile(t, "gpt-oss-f32", c.from, c.to, c.want)
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
