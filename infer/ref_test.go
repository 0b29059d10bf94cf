package infer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

// testConfig returns a small config; moe selects a sparse FFN.
func testConfig(moe bool) *config.Config {
	c := &config.Config{
		ModelType: "mixtral", VocabSize: 11, HiddenSize: 16, IntermediateSize: 24,
		NumLayers: 2, NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64,
		RopeTheta: 10000, RMSNormEps: 1e-5,
	}
	if moe {
		c.NumExperts, c.ExpertsPerToken, c.IntermediateSize = 4, 2, 12
	}
	return c
}

// randomWeights fills a model with normal(0, std) weights and gains near 1.
func randomWeights(t testing.TB, cfg *config.Config, seed uint64, std float64) *model.Weights {
	t.Helper()
	w, err := model.NewWeights(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range w.Flat {
		w.Flat[i] = float32(r.NormFloat64() * std)
	}
	for _, nd := range w.NoDecay {
		for i := nd[0]; i < nd[1]; i++ {
			w.Flat[i] = float32(1 + 0.2*r.NormFloat64())
		}
	}
	return w
}

func newTestModel(t testing.TB, cfg *config.Config, seed uint64, std float64) *Model {
	t.Helper()
	m, err := New(cfg, randomWeights(t, cfg, seed, std), nil, compute.NewPool(2))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refForward is a naive float64 full-sequence forward pass (no cache) that
// follows the shared model conventions; it returns logits per position.
func refForward(cfg *config.Config, w *model.Weights, toks []int32) [][]float64 {
	d, hd := cfg.HiddenSize, cfg.HeadDimension()
	nh, nkv := cfg.NumHeads, cfg.KVHeads()
	T := len(toks)
	f := func(x []float32) []float64 {
		o := make([]float64, len(x))
		for i, v := range x {
			o[i] = float64(v)
		}
		return o
	}
	lin := func(x []float64, W []float32, out int) []float64 { // y = x·Wᵀ
		in := len(x)
		y := make([]float64, out)
		for o := 0; o < out; o++ {
			var s float64
			for i := 0; i < in; i++ {
				s += x[i] * float64(W[o*in+i])
			}
			y[o] = s
		}
		return y
	}
	norm := func(x []float64, g []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(x))+cfg.RMSNormEps)
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = v * s * float64(g[i])
		}
		return y
	}
	rope := func(v []float64, heads, pos int) {
		h := hd / 2
		for hh := 0; hh < heads; hh++ {
			x := v[hh*hd : (hh+1)*hd]
			for i := 0; i < h; i++ {
				a := float64(pos) * math.Pow(cfg.RopeTheta, -2*float64(i)/float64(hd))
				c, s := math.Cos(a), math.Sin(a)
				x0, x1 := x[i], x[i+h]
				x[i] = x0*c - x1*s
				x[i+h] = x1*c + x0*s
			}
		}
	}
	softmax := func(x []float64) []float64 {
		m := math.Inf(-1)
		for _, v := range x {
			m = math.Max(m, v)
		}
		var s float64
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = math.Exp(v - m)
			s += y[i]
		}
		for i := range y {
			y[i] /= s
		}
		return y
	}
	swiglu := func(x []float64, g, u, dn []float32, ff int) []float64 {
		a, b := lin(x, g, ff), lin(x, u, ff)
		for i := range a {
			a[i] = a[i] / (1 + math.Exp(-a[i])) * b[i]
		}
		return lin(a, dn, d)
	}
	xs := make([][]float64, T)
	for t, tok := range toks {
		xs[t] = f(w.Embed[int(tok)*d : (int(tok)+1)*d])
	}
	for l := range w.Layers {
		L := &w.Layers[l]
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range xs {
			xn := norm(xs[t], L.AttnNorm)
			qs[t], ks[t], vs[t] = lin(xn, L.Wq, nh*hd), lin(xn, L.Wk, nkv*hd), lin(xn, L.Wv, nkv*hd)
			rope(qs[t], nh, t)
			rope(ks[t], nkv, t)
		}
		for t := range xs {
			att := make([]float64, nh*hd)
			for h := 0; h < nh; h++ {
				kv := h / (nh / nkv)
				sc := make([]float64, t+1)
				for s := 0; s <= t; s++ {
					var dot float64
					for i := 0; i < hd; i++ {
						dot += qs[t][h*hd+i] * ks[s][kv*hd+i]
					}
					sc[s] = dot / math.Sqrt(float64(hd))
				}
				a := softmax(sc)
				for s := 0; s <= t; s++ {
					for i := 0; i < hd; i++ {
						att[h*hd+i] += a[s] * vs[s][kv*hd+i]
					}
				}
			}
			o := lin(att, L.Wo, d)
			for i := range o {
				xs[t][i] += o[i]
			}
		}
		for t := range xs {
			xn := norm(xs[t], L.FFNNorm)
			var y []float64
			if !cfg.IsMoE() {
				y = swiglu(xn, L.Gate, L.Up, L.Down, cfg.IntermediateSize)
			} else {
				E := cfg.NumExperts
				lg := lin(xn, L.Router, E)
				sm := softmax(lg)
				sig := cfg.SigmoidScoring()
				if sig {
					for i, v := range lg {
						sm[i] = 1 / (1 + math.Exp(-v))
					}
				}
				ec := cfg.Routing == config.RoutingExpertChoice
				src := lg
				if ec || sig || cfg.RouterOrder == config.RouterSoftmaxTopK {
					src = sm
				}
				key := append([]float64(nil), src...)
				for i, b := range L.RouterScoreBias {
					key[i] += float64(b)
				}
				ids := make([]int, E)
				for i := range ids {
					ids[i] = i
				}
				sort.SliceStable(ids, func(a, b int) bool { return key[ids[a]] > key[ids[b]] })
				k := model.RoutedK(cfg)
				ids = ids[:k]
				wts := make([]float64, k)
				for j, e := range ids {
					wts[j] = src[e]
				}
				switch {
				case ec:
				case sig || cfg.RouterOrder == config.RouterSoftmaxTopK:
					if cfg.NormTopKProb {
						var s float64
						for _, v := range wts {
							s += v
						}
						for j := range wts {
							wts[j] /= s
						}
					}
				default:
					wts = softmax(wts)
				}
				for j := range wts {
					wts[j] *= cfg.RoutedScale()
				}
				y = make([]float64, d)
				for j, e := range ids {
					o := swiglu(xn, L.ExpertGate[e], L.ExpertUp[e], L.ExpertDown[e], cfg.ExpertSize())
					for i := range y {
						y[i] += wts[j] * o[i]
					}
				}
				if s := cfg.SharedExpertIntermediateSize; s > 0 {
					o := swiglu(xn, L.SharedGate, L.SharedUp, L.SharedDown, s)
					for i := range y {
						y[i] += o[i]
					}
				}
			}
			for i := range y {
				xs[t][i] += y[i]
			}
		}
	}
	out := make([][]float64, T)
	for t := range xs {
		out[t] = lin(norm(xs[t], w.FinalNorm), w.LMHead, cfg.VocabSize)
	}
	return out
}

func maxAbsDiff(got []float32, want []float64) float64 {
	m := 0.0
	for i, v := range want {
		m = math.Max(m, math.Abs(float64(got[i])-v))
	}
	return m
}

func refConfigs() map[string]*config.Config {
	dense := testConfig(false)
	tied := testConfig(false)
	tied.TieWordEmbeddings = true
	tied.NumKVHeads = 4
	tk := testConfig(true)
	st := testConfig(true)
	st.RouterOrder, st.NormTopKProb, st.SharedExpertIntermediateSize = config.RouterSoftmaxTopK, true, 8
	st2 := testConfig(true)
	st2.RouterOrder, st2.ExpertsPerToken = config.RouterSoftmaxTopK, 3
	ec := testConfig(true)
	ec.Routing, ec.CapacityFactor = config.RoutingExpertChoice, 1.4
	sg := testConfig(true)
	sg.ScoringFunc, sg.TopKMethod, sg.NormTopKProb, sg.RoutedScalingFactor = config.ScoringSigmoid, config.TopKNoAuxTC, true, 2.5
	sg.SharedExpertIntermediateSize = 8
	sec := testConfig(true)
	sec.ScoringFunc, sec.Routing, sec.CapacityFactor = config.ScoringSigmoid, config.RoutingExpertChoice, 1.4
	return map[string]*config.Config{"dense": dense, "dense_tied_mha": tied, "moe_topk_softmax": tk,
		"moe_softmax_topk_norm_shared": st, "moe_softmax_topk_k3": st2, "moe_expert_choice": ec,
		"moe_sigmoid_noaux_tc_scaled_shared": sg, "moe_sigmoid_expert_choice": sec}
}

// TestForwardMatchesReference checks the cached, batched forward pass
// against the float64 reference on a whole prompt, token by token, in
// uneven chunks, and with several sequences in one batch.
func TestForwardMatchesReference(t *testing.T) {
	for name, cfg := range refConfigs() {
		for _, threads := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/threads%d", name, threads), func(t *testing.T) {
				m, err := New(cfg, randomWeights(t, cfg, 7, 0.3), nil, compute.NewPool(threads))
				if err != nil {
					t.Fatal(err)
				}
				r := rand.New(rand.NewPCG(3, 4))
				toks := randTokens(r, 23, cfg.VocabSize)
				want := refForward(cfg, m.W, toks)
				V := cfg.VocabSize
				const tol = 2e-4

				// One prefill with all logits.
				s := m.NewSeq(0)
				lg, err := m.Forward([]*Seq{s}, [][]int32{toks}, true)
				if err != nil {
					t.Fatal(err)
				}
				for p := range toks {
					if e := maxAbsDiff(lg[0][p*V:(p+1)*V], want[p]); e > tol {
						t.Fatalf("prefill position %d: max |diff| %g", p, e)
					}
				}
				// One token at a time, last logits only.
				s1 := m.NewSeq(0)
				for p, tok := range toks {
					lg, err := m.Forward([]*Seq{s1}, [][]int32{{tok}}, false)
					if err != nil {
						t.Fatal(err)
					}
					if e := maxAbsDiff(lg[0], want[p]); e > tol {
						t.Fatalf("incremental position %d: max |diff| %g", p, e)
					}
				}
				// Three sequences in one batch, in uneven chunks, with a rollback.
				a, b, c := m.NewSeq(0), m.NewSeq(0), m.NewSeq(0)
				if _, err := m.Forward([]*Seq{a, b}, [][]int32{toks[:5], toks[:9]}, false); err != nil {
					t.Fatal(err)
				}
				b.Truncate(6) // roll back three positions
				if b.Len() != 6 || len(b.Tokens()) != 6 {
					t.Fatalf("truncate: len %d", b.Len())
				}
				lg, err = m.Forward([]*Seq{a, b, c}, [][]int32{toks[5:12], toks[6:20], toks[:1]}, true)
				if err != nil {
					t.Fatal(err)
				}
				check := func(name string, got []float32, from int) {
					for j := 0; j*V < len(got); j++ {
						if e := maxAbsDiff(got[j*V:(j+1)*V], want[from+j]); e > tol {
							t.Fatalf("batch %s position %d: max |diff| %g", name, from+j, e)
						}
					}
				}
				check("a", lg[0], 5)
				check("b", lg[1], 6)
				check("c", lg[2], 0)
				if got := b.Tokens(); len(got) != 20 || got[19] != toks[19] {
					t.Fatalf("b tokens %v", got)
				}
			})
		}
	}
}

func TestForwardErrors(t *testing.T) {
	cfg := testConfig(true)
	m := newTestModel(t, cfg, 1, 0.1)
	s := m.NewSeq(4)
	if _, err := m.Forward([]*Seq{s}, [][]int32{{1, 2, 3, 4, 5}}, false); err == nil {
		t.Fatal("no error past maxLen")
	}
	if _, err := m.Forward([]*Seq{s}, [][]int32{{99}}, false); err == nil {
		t.Fatal("no error for out-of-range token")
	}
	if _, err := m.Forward([]*Seq{s, s}, [][]int32{{1}, {2}}, false); err == nil {
		t.Fatal("no error for a repeated sequence")
	}
	other := newTestModel(t, cfg, 2, 0.1)
	if _, err := m.Forward([]*Seq{other.NewSeq(0)}, [][]int32{{1}}, false); err == nil {
		t.Fatal("no error for a foreign sequence")
	}
	if s.Len() != 0 {
		t.Fatalf("failed calls changed the sequence: len %d", s.Len())
	}
	big := m.NewSeq(1 << 20)
	if big.maxLen != cfg.MaxPositionEmbeddings {
		t.Fatalf("maxLen %d not clamped to the context", big.maxLen)
	}
	bad := *cfg
	bad.QKNorm = true
	if _, err := New(&bad, m.W, nil, nil); err == nil {
		t.Fatal("QKNorm accepted")
	}
	small := *cfg
	small.NumLayers = 1
	if _, err := New(&small, m.W, nil, nil); err == nil {
		t.Fatal("weights of the wrong size accepted")
	}
}

// TestStatsTouched checks the per-layer expert union counts.
func TestStatsTouched(t *testing.T) {
	cfg := testConfig(true)
	m := newTestModel(t, cfg, 5, 0.3)
	_, st, err := m.ForwardStats([]*Seq{m.NewSeq(0)}, [][]int32{{1}}, false)
	if err != nil {
		t.Fatal(err)
	}
	for l, n := range st.Touched {
		if n != cfg.ExpertsPerToken {
			t.Fatalf("layer %d: one token touched %d experts, want %d", l, n, cfg.ExpertsPerToken)
		}
		sum := 0
		for _, c := range st.ExpertRows[l] {
			sum += c
		}
		if sum != cfg.ExpertsPerToken {
			t.Fatalf("layer %d: %d expert rows", l, sum)
		}
	}
	_, st, err = m.ForwardStats([]*Seq{m.NewSeq(0)}, [][]int32{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.TouchedTotal() <= cfg.NumLayers*cfg.ExpertsPerToken || st.TouchedTotal() > cfg.NumLayers*cfg.NumExperts {
		t.Fatalf("10 tokens touched %d experts in total", st.TouchedTotal())
	}
	counts, rows := m.RoutingCounts()
	if rows != 11 || len(counts) != cfg.NumLayers {
		t.Fatalf("routing counts: %d rows, %d layers", rows, len(counts))
	}
	var sum uint64
	for _, c := range counts[0] {
		sum += c
	}
	if sum != 11*uint64(cfg.ExpertsPerToken) {
		t.Fatalf("layer 0 routed %d rows, want %d", sum, 11*cfg.ExpertsPerToken)
	}
}

// TestFusedViews checks that the fused [wq;wk;wv] and [gate;up] matrices
// are found in the standard layout, and that the same matrices held as
// separate blocks compute the same logits.
func TestFusedViews(t *testing.T) {
	for name, cfg := range refConfigs() {
		m := newTestModel(t, cfg, 1, 0.3)
		for l := range m.layers {
			L := &m.layers[l]
			ok := len(L.qkv) == 1 && L.qkv.rows() == (cfg.NumHeads+2*cfg.KVHeads())*cfg.HeadDimension()
			if cfg.IsMoE() {
				ok = ok && len(L.experts[0].gu) == 1 && L.experts[0].gu.rows() == 2*cfg.ExpertSize()
			} else {
				ok = ok && len(L.ffn.gu) == 1
			}
			if cfg.SharedExpertIntermediateSize > 0 {
				ok = ok && len(L.shared.gu) == 1
			}
			if !ok {
				t.Fatalf("%s layer %d: fused matrices missing", name, l)
			}
		}
		toks := []int32{1, 5, 2, 7, 3}
		a, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
		if err != nil {
			t.Fatal(err)
		}
		d := cfg.HiddenSize
		split := func(parts ...[]float32) stacked {
			s := make(stacked, len(parts))
			for i, p := range parts {
				s[i] = newLinear(p, len(p)/d, d)
				s[i].pack()
			}
			return s
		}
		for l := range m.layers {
			L, W := &m.layers[l], &m.W.Layers[l]
			L.qkv = split(W.Wq, W.Wk, W.Wv)
			if !cfg.IsMoE() {
				L.ffn.gu = split(W.Gate, W.Up)
				continue
			}
			for e := range L.experts {
				L.experts[e].gu = split(W.ExpertGate[e], W.ExpertUp[e])
			}
			if cfg.SharedExpertIntermediateSize > 0 {
				L.shared.gu = split(W.SharedGate, W.SharedUp)
			}
		}
		b, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
		if err != nil {
			t.Fatal(err)
		}
		for i := range a[0] {
			if a[0][i] != b[0][i] {
				t.Fatalf("%s: logit %d of separate blocks differs: %g vs %g", name, i, b[0][i], a[0][i])
			}
		}
	}
}

// TestBF16MatchesRoundedReference checks the bf16 path against the float64
// reference run on weights rounded to bf16 (all matrices but the router,
// which stays float32), and that UseBF16(false) restores float32.
func TestBF16MatchesRoundedReference(t *testing.T) {
	for name, cfg := range refConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(t, cfg, 9, 0.3)
			// The embedding rows are looked up in float32 but a tied LM head
			// reads them as bf16: round them once so both agree.
			for i, v := range m.W.Embed {
				m.W.Embed[i] = compute.ToBF16(v).Float32()
			}
			toks := []int32{3, 1, 4, 1, 5, 9, 2, 6}
			f32, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
			if err != nil {
				t.Fatal(err)
			}
			m.UseBF16(true)
			if !m.bf16 {
				t.Fatal("BF16() false after UseBF16(true)")
			}
			got, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
			if err != nil {
				t.Fatal(err)
			}
			rw, err := model.NewWeights(cfg, append([]float32(nil), m.W.Flat...))
			if err != nil {
				t.Fatal(err)
			}
			rw.Visit(cfg, func(name string, t []float32) {
				if strings.HasSuffix(name, "router") || strings.HasSuffix(name, "norm") {
					return // float32 in the bf16 path
				}
				for i, v := range t {
					t[i] = compute.ToBF16(v).Float32()
				}
			})
			want := refForward(cfg, rw, toks)
			V := cfg.VocabSize
			diff := 0.0
			for p := range toks {
				if e := maxAbsDiff(got[0][p*V:(p+1)*V], want[p]); e > 2e-4 {
					t.Fatalf("position %d: bf16 logits differ from the rounded reference by %g", p, e)
				}
				diff = math.Max(diff, maxAbsDiff(got[0][p*V:(p+1)*V], refForward(cfg, m.W, toks)[p]))
			}
			if diff == 0 {
				t.Fatal("bf16 logits equal float32 ones exactly: bf16 weights not used")
			}
			m.UseBF16(false)
			back, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
			if err != nil {
				t.Fatal(err)
			}
			for i := range back[0] {
				if back[0][i] != f32[0][i] {
					t.Fatal("UseBF16(false) did not restore float32")
				}
			}
		})
	}
}

// TestForwardLast checks logits of the last n positions only.
func TestForwardLast(t *testing.T) {
	cfg := testConfig(true)
	m := newTestModel(t, cfg, 4, 0.3)
	toks := []int32{1, 2, 3, 4, 5, 6}
	all, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
	if err != nil {
		t.Fatal(err)
	}
	V := cfg.VocabSize
	for _, n := range []int{1, 3, 6, 9} {
		got, _, err := m.ForwardLast([]*Seq{m.NewSeq(0), m.NewSeq(0)}, [][]int32{toks, toks[:2]}, false, []int{n, n})
		if err != nil {
			t.Fatal(err)
		}
		want := min(n, len(toks))
		if len(got[0]) != want*V || len(got[1]) != min(n, 2)*V {
			t.Fatalf("last %d: got %d and %d logits", n, len(got[0])/V, len(got[1])/V)
		}
		for i, v := range got[0] {
			if d := v - all[0][(len(toks)-want)*V+i]; d > 1e-5 || d < -1e-5 {
				t.Fatalf("last %d: logit %d differs", n, i)
			}
		}
	}
	if _, _, err := m.ForwardLast([]*Seq{m.NewSeq(0)}, [][]int32{toks}, false, []int{1, 2}); err == nil {
		t.Fatal("mismatched last accepted")
	}
}

// TestReuseLogits checks that a sequence with ReuseLogits gets the same
// logits as one without, in one buffer it keeps from call to call, and
// that a sequence without it, batched beside one with it, still gets
// slices of its own that the next call does not overwrite.
func TestReuseLogits(t *testing.T) {
	cfg := testConfig(true)
	m := newTestModel(t, cfg, 4, 0.3)
	toks := []int32{1, 2, 3, 4, 5, 6}
	ra, rb, fresh := m.NewSeq(0), m.NewSeq(0), m.NewSeq(0)
	ra.ReuseLogits(true)
	rb.ReuseLogits(true)
	first, err := m.Forward([]*Seq{fresh, ra, rb}, [][]int32{toks, toks, toks[:3]}, true)
	if err != nil {
		t.Fatal(err)
	}
	keep := slices.Clone(first[0])
	if !slices.Equal(first[1], first[0]) || !slices.Equal(first[2], first[0][:3*cfg.VocabSize]) {
		t.Fatal("a reusing sequence's logits differ from a fresh one's")
	}
	second, err := m.Forward([]*Seq{fresh, ra, rb}, [][]int32{{7}, {7}, {8}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if &second[1][0] != &first[1][0] || &second[2][0] != &first[2][0] {
		t.Fatal("a reusing sequence got a new buffer")
	}
	if &second[0][0] == &first[0][0] || !slices.Equal(first[0], keep) {
		t.Fatal("the next call overwrote a fresh sequence's logits")
	}
	if !slices.Equal(second[0], second[1]) {
		t.Fatal("a reusing sequence's second logits differ from a fresh one's")
	}
	// Turned off, each call's slice is its own again.
	ra.ReuseLogits(false)
	third, err := m.Forward([]*Seq{ra}, [][]int32{{9}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if &third[0][0] == &first[1][0] {
		t.Fatal("ReuseLogits(false) still returned the kept buffer")
	}
}
