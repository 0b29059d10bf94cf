package train

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/infer"
)

// klRef is KL(softmax(zt) ‖ softmax(zs)) of one row in float64.
func klRef(zt, zs []float64) float64 {
	lse := func(z []float64) float64 {
		mx := math.Inf(-1)
		for _, x := range z {
			mx = math.Max(mx, x)
		}
		var s float64
		for _, x := range z {
			s += math.Exp(x - mx)
		}
		return mx + math.Log(s)
	}
	lt, ls := lse(zt), lse(zs)
	var kl float64
	for i := range zt {
		p := math.Exp(zt[i] - lt)
		kl += p * ((zt[i] - lt) - (zs[i] - ls))
	}
	return kl
}

// TestKLGrad checks the distillation loss against a float64 reference: the
// KL value (softmaxRows' negative entropy plus klGrad's cross-entropy) and
// the gradient (by central differences of the reference), over several
// rows split between workers.
func TestKLGrad(t *testing.T) {
	const rows, V = 7, 13
	r := rand.New(rand.NewPCG(5, 6))
	zt, zs := make([]float32, rows*V), make([]float32, rows*V)
	for i := range zt {
		zt[i], zs[i] = float32(3*r.NormFloat64()), float32(2*r.NormFloat64())
	}
	p := make([]float32, rows*V)
	negH := softmaxRows(p, zt, V, 3)
	grad := append([]float32(nil), zs...)
	const scale = 0.25
	kl := klGrad(grad, p, V, scale, 2) + negH
	var want float64
	for row := 0; row < rows; row++ {
		t64, s64 := make([]float64, V), make([]float64, V)
		var psum float64
		for i := range V {
			t64[i], s64[i] = float64(zt[row*V+i]), float64(zs[row*V+i])
			psum += float64(p[row*V+i])
		}
		if math.Abs(psum-1) > 1e-5 {
			t.Fatalf("row %d: teacher probabilities sum to %v", row, psum)
		}
		want += klRef(t64, s64)
		for i := range V {
			const h = 1e-4
			s64[i] += h
			up := klRef(t64, s64)
			s64[i] -= 2 * h
			down := klRef(t64, s64)
			s64[i] += h
			g := scale * (up - down) / (2 * h)
			if got := float64(grad[row*V+i]); math.Abs(got-g) > 1e-5 {
				t.Fatalf("row %d logit %d: gradient %v, finite differences %v", row, i, got, g)
			}
		}
	}
	if math.Abs(kl-want) > 1e-4*math.Max(1, want) {
		t.Fatalf("KL %v, reference %v", kl, want)
	}
}

func TestDistillOptionsValidate(t *testing.T) {
	ok := DistillOptions{Target: "t", Config: "tiny-draft", Data: "d", Out: "o", Steps: 1, Batch: 1, LR: 1e-3}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid options rejected: %v", err)
	}
	for _, bad := range []func(o *DistillOptions){
		func(o *DistillOptions) { o.Target = "" },
		func(o *DistillOptions) { o.Draft = "x" },
		func(o *DistillOptions) { o.Config = "" },
		func(o *DistillOptions) { o.Data = "" },
		func(o *DistillOptions) { o.Out = "" },
		func(o *DistillOptions) { o.Steps = 0 },
		func(o *DistillOptions) { o.Batch = -1 },
		func(o *DistillOptions) { o.LR = math.NaN() },
		func(o *DistillOptions) { o.Generate = -1 },
		func(o *DistillOptions) { o.GenerateGreedy = true },
	} {
		o := ok
		bad(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestContinueBatchGreedy checks --generate-greedy's data: every batched
// greedy continuation equals the target's own greedy generation from the
// same prompt, one sequence at a time.
func TestContinueBatchGreedy(t *testing.T) {
	cfg := &config.Config{ModelType: "mixtral", VocabSize: 50, HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64, RopeTheta: 10000, RMSNormEps: 1e-5, InitStd: 0.3,
		TieWordEmbeddings: true, NumExperts: 4, ExpertsPerToken: 2}
	target, err := infer.RandomModel(cfg, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	const T, keep = 24, 8
	r := rand.New(rand.NewPCG(7, 8))
	windows := make([][]int32, 3)
	seqs := make([]*infer.Seq, len(windows))
	for b := range windows {
		windows[b] = make([]int32, T)
		for i := range windows[b] {
			windows[b][i] = int32(r.IntN(cfg.VocabSize))
		}
		seqs[b] = target.NewSeq(0)
	}
	prompts := make([][]int32, len(windows))
	for b := range windows {
		prompts[b] = append([]int32(nil), windows[b][:keep]...)
	}
	if err := continueBatch(context.Background(), target, seqs, windows, keep, true, r); err != nil {
		t.Fatal(err)
	}
	for b, p := range prompts {
		res, err := target.Generate(context.Background(), p, infer.GenerateOptions{MaxTokens: T - keep, IgnoreEOT: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(windows[b]) != T || !slices.Equal(windows[b][:keep], p) || !slices.Equal(windows[b][keep:], res.Tokens) {
			t.Fatalf("sequence %d: batched greedy continuation %v, one at a time %v (prompt %v)", b, windows[b], res.Tokens, p)
		}
	}
}
