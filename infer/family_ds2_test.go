package infer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/internal/ref64"
	"github.com/moe-llm/moe/safetensors"
)

// deepseek2Fixtures are make_family.py's deepseek2 files: V2-Lite style
// (direct queries, softmax routing, YaRN), V3 style (q LoRA, sigmoid
// scores with selection bias, expert groups, renormalised and scaled
// weights) and the older single attn_kv_b layout.
var deepseek2Fixtures = []string{"deepseek2-f32", "deepseek2-q8_0", "deepseek2v3-f32", "deepseek2v3-q8_0", "deepseek2kvb-f32", "deepseek2kvb-q8_0"}

// ds2Ref is an independent float64 forward pass of a deepseek2 file,
// written from llama.cpp's graph (src/models/deepseek2.cpp, build_moe_ffn,
// ggml's NORM RoPE with YaRN) over the file's tensors: every key and value
// decompressed per head (multi-head attention), full recomputation.
type ds2Ref struct {
	*familyRef
	nope, rope, rank, vd, lead int
	ff, eff                    int
	sigmoid, norm              bool
	wscale                     float64
	groups, groupsUsed         int
	kqScale                    float64
	// RoPE: frequency scale, YaRN correction range, magnitude.
	freqScale, extFactor, ropeMag float64
	corrLo, corrHi                float64
}

func newDS2Ref(t *testing.T, path string) *ds2Ref {
	r := &ds2Ref{familyRef: newFamilyRef(t, path, "deepseek2")}
	r.rope = r.geti("rope.dimension_count")
	r.rank = r.geti("attention.kv_lora_rank")
	if _, ok := r.f.Get("deepseek2.attention.key_length_mla"); ok {
		r.nope = r.geti("attention.key_length_mla") - r.rope
		r.vd = r.geti("attention.value_length_mla")
	} else {
		r.nope = r.geti("attention.key_length") - r.rope
		r.vd = r.geti("attention.value_length")
	}
	r.lead = r.geti("leading_dense_block_count")
	r.ff, r.eff = r.geti("feed_forward_length"), r.geti("expert_feed_forward_length")
	r.sigmoid = r.geti("expert_gating_func") == 2
	if v, ok := r.f.Get("deepseek2.expert_weights_norm"); ok {
		r.norm = v.(bool)
	}
	r.wscale = r.getf("expert_weights_scale", 0)
	if _, ok := r.f.Get("deepseek2.expert_group_count"); ok {
		r.groups, r.groupsUsed = r.geti("expert_group_count"), r.geti("expert_group_used_count")
	}
	// llama.cpp's YaRN parameters (llama-context.cpp) and the deepseek2
	// graph's attention scale.
	factor := r.getf("rope.scaling.factor", 1)
	r.freqScale, r.ropeMag = 1/factor, 1
	attnFactor := 1.0
	logMul := 0.0
	if v, ok := r.f.Get("deepseek2.rope.scaling.type"); ok && v == "yarn" {
		r.extFactor = 1
		logMul = r.getf("rope.scaling.yarn_log_multiplier", 0) / 0.1
		attnFactor = 1 / (1 + 0.1*math.Log(factor)) // mscale = mscale_all_dim: ratio 1
		r.ropeMag = attnFactor * (1 + 0.1*math.Log(1/r.freqScale))
		orig := float64(r.geti("rope.scaling.original_context_length"))
		corr := func(rot float64) float64 {
			return float64(r.rope) * math.Log(orig/(rot*2*math.Pi)) / (2 * math.Log(r.base))
		}
		r.corrLo = math.Max(0, math.Floor(corr(32)))
		r.corrHi = math.Min(float64(r.rope-1), math.Ceil(corr(1)))
	}
	attnOrg := attnFactor * (1 + 0.1*math.Log(1/r.freqScale))
	ms := attnOrg * (1 + 0.1*logMul*math.Log(1/r.freqScale))
	r.kqScale = ms * ms / math.Sqrt(float64(r.nope+r.rope))
	return r
}

// ropeNorm rotates x (one head's rope part) at position p in ggml's NORM
// order (pairs 2i, 2i+1) with YaRN as ggml's rope_yarn computes it.
func (r *ds2Ref) ropeNorm(x []float64, p int) {
	n := len(x)
	for i := 0; i < n/2; i++ {
		extrap := float64(p) * math.Pow(r.base, -2*float64(i)/float64(n))
		interp := r.freqScale * extrap
		th := interp
		if r.extFactor != 0 {
			y := (float64(i) - r.corrLo) / math.Max(0.001, r.corrHi-r.corrLo)
			mix := (1 - math.Min(1, math.Max(0, y))) * r.extFactor
			th = interp*(1-mix) + extrap*mix
		}
		c, s := math.Cos(th)*r.ropeMag, math.Sin(th)*r.ropeMag
		a, b := x[2*i], x[2*i+1]
		x[2*i], x[2*i+1] = a*c-b*s, a*s+b*c
	}
}

// kvB returns layer l's key/value decompression as Hugging Face's
// kv_b_proj: per head nope key rows then vd value rows, of rank each.
func (r *ds2Ref) kvB(b func(string) string) []float64 {
	if kvb := r.tensor(b("attn_kv_b.weight")); kvb != nil {
		return kvb
	}
	kb, vb := r.must(b("attn_k_b.weight")), r.must(b("attn_v_b.weight"))
	out := make([]float64, 0, r.H*(r.nope+r.vd)*r.rank)
	for h := 0; h < r.H; h++ {
		for i := 0; i < r.nope; i++ { // attn_k_b[h] is the transpose
			for c := 0; c < r.rank; c++ {
				out = append(out, kb[(h*r.rank+c)*r.nope+i])
			}
		}
		out = append(out, vb[h*r.vd*r.rank:(h+1)*r.vd*r.rank]...)
	}
	return out
}

// route returns the experts llama.cpp's build_moe_ffn picks for router
// logits lg and their weights.
func (r *ds2Ref) route(lg, bias []float64) ([]int, []float64) {
	E := len(lg)
	prob := make([]float64, E)
	if r.sigmoid {
		for e, v := range lg {
			prob[e] = 1 / (1 + math.Exp(-v))
		}
	} else {
		mx := slices.Max(lg)
		var z float64
		for e, v := range lg {
			prob[e] = math.Exp(v - mx)
			z += prob[e]
		}
		for e := range prob {
			prob[e] /= z
		}
	}
	sel := slices.Clone(prob)
	for e := range bias {
		sel[e] += bias[e]
	}
	if r.groups > 1 {
		per := E / r.groups
		score := make([]float64, r.groups)
		for g := range score {
			v := sel[g*per : (g+1)*per]
			best := descending(v)
			score[g] = v[best[0]] + v[best[1]]
		}
		for _, g := range descending(score)[r.groupsUsed:] {
			for e := g * per; e < (g+1)*per; e++ {
				sel[e] = math.Inf(-1)
			}
		}
	}
	top := descending(sel)[:r.k]
	w := make([]float64, r.k)
	var sum float64
	for j, e := range top {
		w[j] = prob[e]
		sum += w[j]
	}
	for j := range w {
		if r.norm {
			w[j] /= math.Max(sum, 6.103515625e-5)
		}
		if r.wscale != 0 {
			w[j] *= r.wscale
		}
	}
	return top, w
}

// forward returns the logits of every position of toks.
func (r *ds2Ref) forward(toks []int32) [][]float64 {
	d, H, n := r.d, r.H, len(toks)
	qk := r.nope + r.rope
	emb := r.must("token_embd.weight")
	x := make([][]float64, n)
	for p, tk := range toks {
		x[p] = slices.Clone(emb[int(tk)*d : (int(tk)+1)*d])
	}
	for l := 0; l < r.layers; l++ {
		b := func(s string) string { return fmt.Sprintf("blk.%d.%s", l, s) }
		an := r.must(b("attn_norm.weight"))
		kva, kvn := r.must(b("attn_kv_a_mqa.weight")), r.must(b("attn_kv_a_norm.weight"))
		kvb := r.kvB(b)
		qs, ks, vs := make([][]float64, n), make([][]float64, n), make([][]float64, n)
		for p := range n {
			h := ref64.RMSNorm(x[p], an, r.eps)
			var q []float64
			if wq := r.tensor(b("attn_q.weight")); wq != nil {
				q = ref64.MatVec(wq, h)
			} else {
				qa := ref64.RMSNorm(ref64.MatVec(r.must(b("attn_q_a.weight")), h), r.must(b("attn_q_a_norm.weight")), r.eps)
				q = ref64.MatVec(r.must(b("attn_q_b.weight")), qa)
			}
			kv := ref64.MatVec(kva, h)
			c := ref64.RMSNorm(kv[:r.rank], kvn, r.eps)
			kpe := kv[r.rank:]
			r.ropeNorm(kpe, p)
			dec := ref64.MatVec(kvb, c) // per head [k_nope; v]
			k, v := make([]float64, H*qk), make([]float64, H*r.vd)
			for hh := 0; hh < H; hh++ {
				r.ropeNorm(q[hh*qk+r.nope:(hh+1)*qk], p)
				copy(k[hh*qk:], dec[hh*(r.nope+r.vd):hh*(r.nope+r.vd)+r.nope])
				copy(k[hh*qk+r.nope:], kpe)
				copy(v[hh*r.vd:], dec[hh*(r.nope+r.vd)+r.nope:(hh+1)*(r.nope+r.vd)])
			}
			qs[p], ks[p], vs[p] = q, k, v
		}
		wo := r.must(b("attn_output.weight"))
		for p := range n {
			att := make([]float64, H*r.vd)
			for hh := 0; hh < H; hh++ {
				sc := make([]float64, p+1)
				for j := 0; j <= p; j++ {
					var s float64
					for i := 0; i < qk; i++ {
						s += qs[p][hh*qk+i] * ks[j][hh*qk+i]
					}
					sc[j] = s * r.kqScale
				}
				mx := slices.Max(sc)
				var z float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					z += sc[j]
				}
				for j := range sc {
					for i := 0; i < r.vd; i++ {
						att[hh*r.vd+i] += sc[j] / z * vs[j][hh*r.vd+i]
					}
				}
			}
			o := ref64.MatVec(wo, att)
			for i := range o {
				x[p][i] += o[i]
			}
		}
		fn := r.must(b("ffn_norm.weight"))
		for p := range n {
			h := ref64.RMSNorm(x[p], fn, r.eps)
			var out []float64
			if l < r.lead {
				out = ffn64(r.must(b("ffn_gate.weight")), r.must(b("ffn_up.weight")), r.must(b("ffn_down.weight")), h, q8Acts{})
			} else {
				ge, ue, de := r.must(b("ffn_gate_exps.weight")), r.must(b("ffn_up_exps.weight")), r.must(b("ffn_down_exps.weight"))
				per := len(ge) / r.E
				top, w := r.route(ref64.MatVec(r.must(b("ffn_gate_inp.weight")), h), r.tensor(b("exp_probs_b.bias")))
				out = ffn64(r.must(b("ffn_gate_shexp.weight")), r.must(b("ffn_up_shexp.weight")), r.must(b("ffn_down_shexp.weight")), h, q8Acts{})
				for j, e := range top {
					y := ffn64(ge[e*per:(e+1)*per], ue[e*per:(e+1)*per], de[e*per:(e+1)*per], h, q8Acts{})
					for i := range out {
						out[i] += w[j] * y[i]
					}
				}
			}
			for i := range out {
				x[p][i] += out[i]
			}
		}
	}
	return r.logits(x, emb)
}

// TestGGUFDeepseek2 checks moe's forward pass of each deepseek2 fixture (a
// prefill with every position's logits, then decode steps against the
// latent KV cache) against the float64 reference: within 1e-4 relative
// for f32 and 5e-2 for q8_0 (whose products round the activations to 8
// bits). It then decodes greedily and checks that every token is the
// reference's argmax over moe's own sequence (for f32, where no near-tie
// can flip it).
func TestGGUFDeepseek2(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	for _, name := range deepseek2Fixtures {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "family", name+".gguf")
			m := loadT(t, path, pool)
			ref := newDS2Ref(t, path)
			var params int
			for _, ti := range ref.f.Tensors {
				params += int(ti.Elements())
			}
			if m.NumParams() != params {
				t.Errorf("NumParams %d, the file holds %d", m.NumParams(), params)
			}
			toks := familyTokens()
			worst := forwardError(t, m, toks, ref.forward(toks))
			limit := 1e-4
			if name[len(name)-4:] == "q8_0" {
				limit = 5e-2
			}
			t.Logf("%s: max relative logit error %.2e over %d positions", name, worst, len(toks))
			if worst > limit {
				t.Fatalf("%s: logits differ from the float64 reference by %.3e relative (limit %g)", name, worst, limit)
			}
			if limit > 1e-4 {
				return
			}
			// Greedy decoding: each token the reference's argmax.
			s := m.NewSeq(0)
			seq := slices.Clone(toks[:3])
			next := seq
			for range 12 {
				lg, err := m.Forward([]*Seq{s}, [][]int32{next}, false)
				if err != nil {
					t.Fatal(err)
				}
				next = []int32{Argmax(lg[0])}
				seq = append(seq, next[0])
			}
			want := ref.forward(seq[:len(seq)-1])
			for p := 2; p < len(seq)-1; p++ {
				if w := descending(want[p])[0]; w != int(seq[p+1]) {
					t.Fatalf("%s: greedy token %d is %d, the reference's argmax is %d", name, p+1, seq[p+1], w)
				}
			}
		})
	}
}

// descending returns the indices of x from its largest value down, the
// lower index first on ties.
func descending(x []float64) []int {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return x[idx[a]] > x[idx[b]] })
	return idx
}

// TestGGUFDeepseek2Errors checks that a deepseek2 file with a missing key
// or tensor fails with one line naming it.
func TestGGUFDeepseek2Errors(t *testing.T) {
	for _, c := range []struct{ file, from, to, want string }{
		{"deepseek2v3-f32", "deepseek2.attention.kv_lora_rank", "deepseek2.attention.kv_lora_ranX", `"deepseek2.attention.kv_lora_rank"`},
		{"deepseek2v3-f32", "deepseek2.expert_shared_count", "deepseek2.expert_shared_counX", `"deepseek2.expert_shared_count"`},
		{"deepseek2v3-f32", "blk.1.attn_q_a_norm.weight", "blk.1.attn_q_a_norm.weighX", `"blk.1.attn_q_a_norm.weight"`},
		{"deepseek2v3-f32", "blk.1.exp_probs_b.bias", "blk.1.exp_probs_b.biaX", `"blk.1.exp_probs_b.biaX" has no place`},
		{"deepseek2-f32", "blk.1.attn_k_b.weight", "blk.1.attn_k_b.weighX", `"blk.1.attn_k_b.weight"`},
		{"deepseek2-f32", "deepseek2.rope.scaling.yarn_log_multiplier", "deepseek2.rope.scaling.yarn_log_multipliex", "yarn_log_multiplier is not supported"},
		{"deepseek2kvb-f32", "blk.0.attn_kv_b.weight", "blk.0.attn_kv_X.weight", `"blk.0.attn_kv_b.weight"`},
	} {
		badFamilyFile(t, c.file, c.from, c.to, c.want)
	}
}

// TestGGUFDeepseek2Batched runs two sequences of different lengths through
// one batched Forward (prefill of both, then decode steps of both
// together, the latent caches growing past several capacities) and checks
// every position's logits against the float64 reference of each sequence
// alone.
func TestGGUFDeepseek2Batched(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	path := filepath.Join("testdata", "family", "deepseek2v3-f32.gguf")
	m := loadT(t, path, pool)
	ref := newDS2Ref(t, path)
	rng := rand.New(rand.NewPCG(3, 4))
	seqToks := make([][]int32, 2)
	for i, n := range []int{37, 29} {
		for range n {
			seqToks[i] = append(seqToks[i], int32(rng.IntN(m.Cfg.VocabSize)))
		}
	}
	want := [][][]float64{ref.forward(seqToks[0]), ref.forward(seqToks[1])}
	V := m.Cfg.VocabSize
	seqs := []*Seq{m.NewSeq(0), m.NewSeq(0)}
	pre := []int{19, 4}
	got, err := m.Forward(seqs, [][]int32{seqToks[0][:pre[0]], seqToks[1][:pre[1]]}, true)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range seqs {
		for p := 0; p < pre[i]; p++ {
			worst = math.Max(worst, relErr(got[i][p*V:(p+1)*V], want[i][p]))
		}
	}
	for step := 0; ; step++ {
		var batch []*Seq
		var toks [][]int32
		var idx []int
		for i, s := range seqs {
			if p := pre[i] + step; p < len(seqToks[i]) {
				batch, toks, idx = append(batch, s), append(toks, seqToks[i][p:p+1]), append(idx, i)
			}
		}
		if len(batch) == 0 {
			break
		}
		got, err := m.Forward(batch, toks, false)
		if err != nil {
			t.Fatal(err)
		}
		for j, i := range idx {
			worst = math.Max(worst, relErr(got[j], want[i][pre[i]+step]))
		}
	}
	t.Logf("batched: max relative logit error %.2e", worst)
	if worst > 1e-4 {
		t.Fatalf("batched deepseek2 logits differ from the reference by %.3e relative", worst)
	}
}

// TestGGUFDeepseek2Speculative checks that greedy speculative decoding of
// a deepseek2 model gives its plain greedy tokens, with drafts of other
// weights (the kvb file, the same draws without YaRN, agrees about half
// the time; the v3 file never), so that proposals are rejected and the
// latent caches rolled back, and with itself.
func TestGGUFDeepseek2Speculative(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	load := func(name string) *Model {
		m, err := Load(filepath.Join("testdata", "family", name+".gguf"), pool)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	m := load("deepseek2-f32")
	ctx := context.Background()
	prompt := []int32{84, 258, 39, 101, 3}
	opts := GenerateOptions{MaxTokens: 40, IgnoreEOT: true}
	plain, err := m.Generate(ctx, prompt, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		draft string
		k     int
	}{{"deepseek2kvb-f32", 3}, {"deepseek2v3-f32", 3}, {"deepseek2-f32", 4}} {
		o := opts
		o.Draft, o.DraftTokens, o.FixedDraftTokens = load(c.draft), c.k, true
		res, err := m.Generate(ctx, prompt, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("draft %s K=%d: %d proposed, %d accepted", c.draft, c.k, res.Proposed, res.Accepted)
		if !slices.Equal(res.Tokens, plain.Tokens) || res.Proposed == 0 {
			t.Fatalf("draft %s K=%d: speculative greedy (%d proposed) differs from plain:\n%v\n%v", c.draft, c.k, res.Proposed, res.Tokens, plain.Tokens)
		}
	}
}

// TestGGUFDeepseek2Threads checks that a deepseek2 forward pass gives the
// same logits, bit for bit, on one thread and on three.
func TestGGUFDeepseek2Threads(t *testing.T) {
	var logits [][]float32
	for _, n := range []int{1, 3} {
		pool := compute.NewPool(n)
		m, err := Load(filepath.Join("testdata", "family", "deepseek2v3-q8_0.gguf"), pool)
		if err != nil {
			t.Fatal(err)
		}
		s := m.NewSeq(0)
		got, err := m.Forward([]*Seq{s}, [][]int32{familyTokens()}, true)
		if err != nil {
			t.Fatal(err)
		}
		step, err := m.Forward([]*Seq{s}, [][]int32{{7}}, false)
		if err != nil {
			t.Fatal(err)
		}
		logits = append(logits, slices.Concat(got[0], step[0]))
		m.Close()
		pool.Close()
	}
	if !slices.Equal(logits[0], logits[1]) {
		t.Fatal("deepseek2 logits differ between one thread and three")
	}
}

// ds2HFDir writes deepseek2 fixture name as a Hugging Face deepseek_v2/v3
// directory, in transformers' names and layouts (kv_b_proj whole, experts
// one by one, the rope rows as stored), and returns it.
func ds2HFDir(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join("testdata", "family", name+".gguf")
	m := loadT(t, path, nil)
	ref := newDS2Ref(t, path)
	c := m.Cfg
	f32 := func(v []float64) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	}
	var ts []safetensors.Tensor
	add := func(hf string, v []float64, shape ...int64) {
		ts = append(ts, safetensors.Tensor{Name: hf, DType: "F32", Shape: shape, Data: f32(v)})
	}
	d, nh, E := int64(c.HiddenSize), int64(c.NumHeads), c.NumExperts
	qk := int64(c.HeadDimension())
	add("model.embed_tokens.weight", ref.must("token_embd.weight"), int64(c.VocabSize), d)
	if !c.TieWordEmbeddings {
		add("lm_head.weight", ref.must("output.weight"), int64(c.VocabSize), d)
	}
	add("model.norm.weight", ref.must("output_norm.weight"), d)
	for l := 0; l < c.NumLayers; l++ {
		g := func(s string) string { return fmt.Sprintf("blk.%d.%s", l, s) }
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", ref.must(g("attn_norm.weight")), d)
		add(p+"post_attention_layernorm.weight", ref.must(g("ffn_norm.weight")), d)
		if q := int64(c.QLoraRank); q > 0 {
			add(p+"self_attn.q_a_proj.weight", ref.must(g("attn_q_a.weight")), q, d)
			add(p+"self_attn.q_a_layernorm.weight", ref.must(g("attn_q_a_norm.weight")), q)
			add(p+"self_attn.q_b_proj.weight", ref.must(g("attn_q_b.weight")), nh*qk, q)
		} else {
			add(p+"self_attn.q_proj.weight", ref.must(g("attn_q.weight")), nh*qk, d)
		}
		rank, rope := int64(c.KVLoraRank), int64(c.QKRopeHeadDim)
		add(p+"self_attn.kv_a_proj_with_mqa.weight", ref.must(g("attn_kv_a_mqa.weight")), rank+rope, d)
		add(p+"self_attn.kv_a_layernorm.weight", ref.must(g("attn_kv_a_norm.weight")), rank)
		add(p+"self_attn.kv_b_proj.weight", ref.kvB(g), nh*int64(c.QKNopeHeadDim+c.VHeadDim), rank)
		add(p+"self_attn.o_proj.weight", ref.must(g("attn_output.weight")), d, nh*int64(c.VHeadDim))
		mlp := func(hf, gate, up, down string, width int64, e, n int) {
			part := func(v []float64) []float64 { return v[e*len(v)/n : (e+1)*len(v)/n] }
			add(hf+"gate_proj.weight", part(ref.must(g(gate))), width, d)
			add(hf+"up_proj.weight", part(ref.must(g(up))), width, d)
			add(hf+"down_proj.weight", part(ref.must(g(down))), d, width)
		}
		if !c.LayerIsMoE(l) {
			mlp(p+"mlp.", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", int64(c.IntermediateSize), 0, 1)
			continue
		}
		add(p+"mlp.gate.weight", ref.must(g("ffn_gate_inp.weight")), int64(E), d)
		if b := ref.tensor(g("exp_probs_b.bias")); b != nil {
			add(p+"mlp.gate.e_score_correction_bias", b, int64(E))
		}
		for e := range E {
			mlp(fmt.Sprintf("%smlp.experts.%d.", p, e), "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight", int64(c.ExpertSize()), e, E)
		}
		mlp(p+"mlp.shared_experts.", "ffn_gate_shexp.weight", "ffn_up_shexp.weight", "ffn_down_shexp.weight", int64(c.SharedExpertIntermediateSize), 0, 1)
	}
	dir := t.TempDir()
	if err := safetensors.WriteFile(context.Background(), filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.SaveHFTokenizer(dir, m.Tok); err != nil {
		t.Fatal(err)
	}
	method, groups, used := "greedy", 1, 1
	if c.HasRouterScoreBias() {
		method, groups, used = "noaux_tc", c.NGroup, c.TopKGroup
	}
	hf := map[string]any{
		"model_type": c.ModelType, "vocab_size": c.VocabSize, "hidden_size": c.HiddenSize,
		"intermediate_size": c.IntermediateSize, "moe_intermediate_size": c.MoEIntermediateSize,
		"num_hidden_layers": c.NumLayers, "num_attention_heads": c.NumHeads, "num_key_value_heads": c.NumHeads,
		"max_position_embeddings": c.MaxPositionEmbeddings, "rms_norm_eps": c.RMSNormEps, "rope_theta": c.RopeTheta,
		"q_lora_rank": nil, "kv_lora_rank": c.KVLoraRank, "qk_nope_head_dim": c.QKNopeHeadDim,
		"qk_rope_head_dim": c.QKRopeHeadDim, "v_head_dim": c.VHeadDim, "n_routed_experts": E,
		"n_shared_experts": c.SharedExpertIntermediateSize / c.MoEIntermediateSize, "num_experts_per_tok": c.ExpertsPerToken,
		"first_k_dense_replace": len(c.MLPOnlyLayers), "moe_layer_freq": 1, "norm_topk_prob": c.NormTopKProb,
		"routed_scaling_factor": c.RoutedScale(), "scoring_func": c.ScoringFunc, "topk_method": method,
		"n_group": groups, "topk_group": used, "tie_word_embeddings": c.TieWordEmbeddings,
	}
	if c.QLoraRank > 0 {
		hf["q_lora_rank"] = c.QLoraRank
	}
	if rs := c.RopeScaling; rs != nil {
		hf["rope_scaling"] = map[string]any{"type": "yarn", "factor": rs.Factor, "mscale": rs.Mscale,
			"mscale_all_dim": rs.MscaleAllDim, "original_max_position_embeddings": rs.OriginalMaxPositionEmbeddings,
			"beta_fast": 32, "beta_slow": 1}
	}
	data, err := json.Marshal(hf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestHFDeepseek checks that each deepseek2 fixture written as a Hugging
// Face directory loads and gives the float64 reference's logits (the
// GGUF file's weights) and the GGUF model's greedy tokens.
func TestHFDeepseek(t *testing.T) {
	pool := compute.NewPool(2)
	defer pool.Close()
	for _, name := range []string{"deepseek2-f32", "deepseek2v3-f32", "deepseek2kvb-f32"} {
		dir := ds2HFDir(t, name)
		m, err := Load(dir, pool)
		if err != nil {
			t.Fatalf("%s as HF: %v", name, err)
		}
		ref := newDS2Ref(t, filepath.Join("testdata", "family", name+".gguf"))
		toks := familyTokens()
		worst := forwardError(t, m, toks, ref.forward(toks))
		t.Logf("%s as HF: max relative logit error %.2e", name, worst)
		if worst > 1e-4 {
			t.Errorf("%s as HF: logits differ from the reference by %.3e relative", name, worst)
		}
		g, err := Load(filepath.Join("testdata", "family", name+".gguf"), pool)
		if err != nil {
			t.Fatal(err)
		}
		opts := GenerateOptions{MaxTokens: 24, IgnoreEOT: true}
		a, err := m.Generate(context.Background(), toks[:4], opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := g.Generate(context.Background(), toks[:4], opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Tokens, b.Tokens) {
			t.Errorf("%s: HF greedy %v, GGUF %v", name, a.Tokens, b.Tokens)
		}
		m.Close()
		g.Close()
	}
}

// TestHFDeepseekErrors checks that a DeepSeek directory with a tensor the
// model has no place for (a multi-token-prediction layer) or of the wrong
// shape fails with one line naming it.
func TestHFDeepseekErrors(t *testing.T) {
	dir := ds2HFDir(t, "deepseek2-f32")
	extra := []safetensors.Tensor{{Name: "model.layers.2.eh_proj.weight", DType: "F32", Shape: []int64{2, 2}, Data: make([]float32, 4)}}
	if err := safetensors.WriteFile(context.Background(), filepath.Join(dir, "mtp.safetensors"), extra, nil); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, nil)
	if err == nil || !strings.Contains(err.Error(), `"model.layers.2.eh_proj.weight" has no place`) || strings.Contains(err.Error(), "\n") {
		t.Errorf("extra tensor: got %v", err)
	}
	dir = ds2HFDir(t, "deepseek2v3-f32")
	cfgPath := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(data), `"kv_lora_rank":32`, `"kv_lora_rank":64`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir, nil)
	if err == nil || !strings.Contains(err.Error(), `"model.layers.0.self_attn.kv_a_proj_with_mqa.weight" has shape`) || strings.Contains(err.Error(), "\n") {
		t.Errorf("wrong kv_lora_rank: got %v", err)
	}
}
