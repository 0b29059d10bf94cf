package train

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// bigram is a toy model for testing the loop: logits of the next token are
// a row of a V×V table, loss is the mean cross-entropy; the last parameter
// is a "norm gain" that is exempt from decay and unused.
type bigram struct {
	V           int
	p, g        []float32
	tok, tgt    []int32
	probs       [][]float64
	forwardCall int
}

func newBigram(V int) *bigram {
	return &bigram{V: V, p: make([]float32, V*V+1), g: make([]float32, V*V+1)}
}

func (m *bigram) Params() []float32 { return m.p }
func (m *bigram) Grads() []float32  { return m.g }
func (m *bigram) NoDecay() [][2]int { return [][2]int{{m.V * m.V, m.V*m.V + 1}} }
func (m *bigram) ZeroGrad()         { clear(m.g) }
func (m *bigram) Forward(tok, tgt []int32, B, T int) (Stats, error) {
	m.forwardCall++
	m.tok, m.tgt = append(m.tok[:0], tok...), append(m.tgt[:0], tgt...)
	m.probs = m.probs[:0]
	var loss float64
	n := 0
	for i, x := range tok {
		row := m.p[int(x)*m.V : int(x+1)*m.V]
		mx := math.Inf(-1)
		for _, l := range row {
			mx = math.Max(mx, float64(l))
		}
		pr := make([]float64, m.V)
		var s float64
		for j, l := range row {
			pr[j] = math.Exp(float64(l) - mx)
			s += pr[j]
		}
		for j := range pr {
			pr[j] /= s
		}
		m.probs = append(m.probs, pr)
		if tgt[i] >= 0 {
			loss -= math.Log(pr[tgt[i]])
			n++
		}
	}
	return Stats{Loss: loss / float64(n), Targets: n, ExpertLoad: [][]float64{{0.25, 0.75}}}, nil
}
func (m *bigram) Backward() error {
	n := 0
	for _, t := range m.tgt {
		if t >= 0 {
			n++
		}
	}
	for i, x := range m.tok {
		if m.tgt[i] < 0 {
			continue
		}
		for j, p := range m.probs[i] {
			d := p
			if int32(j) == m.tgt[i] {
				d--
			}
			m.g[int(x)*m.V+j] += float32(d / float64(n))
		}
	}
	return nil
}

// cycle yields a fixed pseudo-random sequence that is mostly a cycle
// 0,1,...,V-1 (so a bigram model can learn it) with some noise.
type cycle struct {
	V   int
	Pos int64
	T   int
}

func (c *cycle) at(i int64) int32 {
	r := rand.New(rand.NewPCG(uint64(i), 99))
	if r.IntN(10) == 0 {
		return int32(r.IntN(c.V))
	}
	return int32(i % int64(c.V))
}
func (c *cycle) Next(tok, tgt []int32) error {
	for i := range tok {
		tok[i] = c.at(c.Pos + int64(i))
		tgt[i] = c.at(c.Pos + int64(i) + 1)
	}
	c.Pos += int64(len(tok))
	return nil
}
func (c *cycle) State() (json.RawMessage, error) { return json.Marshal(c.Pos) }
func (c *cycle) Restore(s json.RawMessage) error { return json.Unmarshal(s, &c.Pos) }

func TestScheduleShape(t *testing.T) {
	s := Schedule{LR: 1e-3, MinLR: 1e-4, Warmup: 10, Total: 110}
	if got := s.At(5); math.Abs(got-5e-4) > 1e-12 {
		t.Fatalf("warmup step 5: %g", got)
	}
	if got := s.At(10); math.Abs(got-1e-3) > 1e-12 {
		t.Fatalf("peak: %g", got)
	}
	if got := s.At(60); math.Abs(got-5.5e-4) > 1e-12 {
		t.Fatalf("cosine midpoint: %g, want 5.5e-4", got)
	}
	if got := s.At(110); math.Abs(got-1e-4) > 1e-12 || s.At(500) != 1e-4 {
		t.Fatalf("end: %g", got)
	}
	prev := s.At(10)
	for i := 11; i <= 110; i++ {
		if s.At(i) > prev {
			t.Fatalf("lr rises after warmup at %d", i)
		}
		prev = s.At(i)
	}
}

func newTrainer(B, T, accum, threads int) *Trainer {
	m := newBigram(8)
	return &Trainer{Model: m, Opt: NewAdamW(len(m.p), threads), Data: &cycle{V: 8},
		Schedule: Schedule{LR: 0.1, MinLR: 0.01, Warmup: 5, Total: 100}, B: B, T: T, Accum: accum}
}

func TestTrainerLearnsAndIsDeterministic(t *testing.T) {
	ctx := context.Background()
	tr := newTrainer(2, 16, 2, 1)
	var first, last StepResult
	for i := 0; i < 100; i++ {
		r, err := tr.TrainStep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r
		}
		last = r
	}
	// The cycle has ~10% noise: the best loss is about 0.9·(−ln 0.9125) + 0.1·(-ln 0.0125) ≈ 0.52.
	if first.Loss < 2 || last.Loss > 0.8 {
		t.Fatalf("loss %0.3f → %0.3f, want from ~ln 8 to < 0.8", first.Loss, last.Loss)
	}
	if last.Tokens != 100*2*2*16 || tr.Step != 100 {
		t.Fatalf("tokens %d step %d", last.Tokens, tr.Step)
	}
	// Same run on 3 threads: bit-identical weights.
	tr2 := newTrainer(2, 16, 2, 3)
	for i := 0; i < 100; i++ {
		if _, err := tr2.TrainStep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p1, p2 := tr.Model.Params(), tr2.Model.Params()
	for i := range p1 {
		if math.Float32bits(p1[i]) != math.Float32bits(p2[i]) {
			t.Fatalf("param %d differs across thread counts", i)
		}
	}
	// The no-decay parameter (zero gradient) is untouched by weight decay.
	p1[len(p1)-1] = 1
	tr.TrainStep(ctx)
	if p1[len(p1)-1] != 1 {
		t.Fatalf("no-decay parameter decayed to %v", p1[len(p1)-1])
	}
}

func TestAccumulationMatchesBigBatch(t *testing.T) {
	// Two micro-batches of 1 sequence = one of 2 sequences, up to rounding.
	ctx := context.Background()
	a := newTrainer(1, 16, 2, 1)
	b := newTrainer(2, 16, 1, 1)
	for i := 0; i < 20; i++ {
		ra, err := a.TrainStep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.TrainStep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(ra.Loss-rb.Loss) > 1e-4 || math.Abs(ra.GradNorm-rb.GradNorm) > 1e-4 {
			t.Fatalf("step %d: accum loss %g norm %g vs batch loss %g norm %g", i, ra.Loss, ra.GradNorm, rb.Loss, rb.GradNorm)
		}
	}
	pa, pb := a.Model.Params(), b.Model.Params()
	for i := range pa {
		if math.Abs(float64(pa[i]-pb[i])) > 1e-4 {
			t.Fatalf("param %d: %v vs %v", i, pa[i], pb[i])
		}
	}
}

func TestGradClipping(t *testing.T) {
	o := NewAdamW(3, 1)
	o.WeightDecay = 0
	o.GradClip = 1
	g := []float32{3, 4, 0}
	p := make([]float32, 3)
	norm := o.Update(p, g, nil, 0.1, 2) // scaled norm 10, clipped to 1
	if math.Abs(norm-10) > 1e-6 {
		t.Fatalf("norm %g, want 10", norm)
	}
	if math.Abs(float64(g[0])-0.6) > 1e-5 || math.Abs(float64(g[1])-0.8) > 1e-5 {
		t.Fatalf("clipped gradient %v, want [0.6 0.8 0]", g)
	}
	// m after one step is (1-β1)·g_clipped.
	if math.Abs(float64(o.M[1])-0.1*0.8) > 1e-6 {
		t.Fatalf("m %v", o.M)
	}
}

func TestEvaluateMatchesDirectLoss(t *testing.T) {
	m := newBigram(5)
	r := rand.New(rand.NewPCG(5, 5))
	for i := range m.p {
		m.p[i] = float32(r.NormFloat64())
	}
	ids := make([]int32, 23)
	for i := range ids {
		ids[i] = int32(r.IntN(5))
	}
	var want float64
	for i := 0; i+1 < len(ids); i++ {
		row := m.p[int(ids[i])*5 : int(ids[i])*5+5]
		var s float64
		for _, l := range row {
			s += math.Exp(float64(l))
		}
		want += math.Log(s) - float64(row[ids[i+1]])
	}
	res, err := Evaluate(context.Background(), m, ids, 2, 4, 0, func(int32) int { return 2 })
	if err != nil {
		t.Fatal(err)
	}
	if res.Tokens != 22 || res.Bytes != 44 {
		t.Fatalf("tokens %d bytes %d, want 22 and 44", res.Tokens, res.Bytes)
	}
	if math.Abs(res.SumLoss-want) > 1e-9 || math.Abs(res.Loss-want/22) > 1e-9 {
		t.Fatalf("loss sum %g, want %g", res.SumLoss, want)
	}
	if bpb := res.BitsPerByte(); math.Abs(bpb-want/math.Ln2/44) > 1e-9 {
		t.Fatalf("bpb %g", bpb)
	}
	if res2, _ := Evaluate(context.Background(), m, ids, 2, 4, 10, nil); res2.Tokens != 10 {
		t.Fatalf("maxTokens: %d", res2.Tokens)
	}
}

func TestMetricsResumeTruncatesLaterSteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	ml, err := OpenMetrics(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	v := 2.5
	for s := 1; s <= 5; s++ {
		rec := Record{Step: s, Tokens: int64(s * 10), TrainLoss: 3, LR: 1e-3}
		if s == 4 {
			rec.ValLoss = &v
		}
		if err := ml.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	ml.Close()
	ml, err = OpenMetrics(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	ml.Write(Record{Step: 5, Tokens: 50, TrainLoss: math.NaN()})
	ml.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("metrics file after resume: %v, %v", st, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("resume rewrite left files behind: %v", ents)
	}
	recs, err := ReadMetrics(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || recs[4].Step != 5 || recs[4].TrainLoss != -1 || recs[3].ValLoss == nil || *recs[3].ValLoss != 2.5 {
		t.Fatalf("records after resume: %+v", recs)
	}
	svg := LossSVG(recs, "test <run>")
	d := xml.NewDecoder(bytes.NewReader(svg))
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed XML: %v\n%s", err, svg)
			}
			break
		}
	}
	if !bytes.Contains(svg, []byte("<polyline")) || !bytes.Contains(svg, []byte("&lt;run&gt;")) {
		t.Fatalf("SVG lacks curves or escaping:\n%s", svg)
	}
}

func TestGradNormMatchesReferenceAcrossThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	g := make([]float32, 3*chunk+13)
	var ref float64
	for i := range g {
		g[i] = float32(r.NormFloat64())
		ref += float64(g[i]) * float64(g[i])
	}
	ref = math.Sqrt(ref)
	n1 := (&AdamW{Threads: 1}).GradNorm(g)
	n3 := (&AdamW{Threads: 3}).GradNorm(g)
	if math.Abs(n1-ref) > 1e-9*ref || n1 != n3 {
		t.Fatalf("norm %v (1 thread) %v (3 threads), reference %v", n1, n3, ref)
	}
}

// TestBatchRampRule checks the documented rule: ⌈(start + (end−start)·
// min(1, consumed/ramp)) / micro⌉ micro-batches, at least one.
func TestBatchRampRule(t *testing.T) {
	r := BatchRamp{Start: 100, End: 1000, Tokens: 3000, Micro: 128}
	for _, c := range []struct {
		consumed int64
		want     int
	}{
		{0, 1},       // 100 tokens → 1 micro-batch
		{1000, 4},    // 400 → ⌈3.125⌉
		{1500, 5},    // 550 → ⌈4.297⌉
		{2999, 8},    // 999.7 → ⌈7.81⌉
		{3000, 8},    // 1000 → ⌈7.8125⌉
		{1 << 40, 8}, // after the ramp
	} {
		if got := r.Accum(c.consumed); got != c.want {
			t.Errorf("Accum(%d) = %d, want %d", c.consumed, got, c.want)
		}
	}
	if got := (BatchRamp{Start: 1, End: 1, Micro: 64}).Accum(0); got != 1 {
		t.Errorf("tiny target: %d micro-batches, want 1", got)
	}
	// RunTokens walks the same steps.
	var c int64
	for s := 0; s < 20; s++ {
		c += int64(r.Accum(c) * r.Micro)
	}
	if got := r.RunTokens(20); got != c {
		t.Errorf("RunTokens(20) = %d, stepping gives %d", got, c)
	}
}
