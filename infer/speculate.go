package infer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// kTuner adapts the number K of draft tokens per speculative step. It keeps
// running estimates of the acceptance rate α (an exponential average), of
// the draft's time per proposed token and of the target's verification time
// as a function of the batch m = K+1 (minima over recent steps), which give
// a model of the expected tokens per second:
//
//	E[tokens](K) = (1 − α^(K+1)) / (1 − α)
//	time(K)      = K·t_draft + t_verify(K+1)
//
// t_verify(m) is measured for the m already tried; for an untried m it is
// scaled from the nearest measured one by a cost model in weight floats read:
// the non-expert weights plus one expert's weights for each expert the m
// tokens touch (the expected union of experts, calibrated by the unions the
// verification passes actually touched). It also measures the tokens per
// second each K actually delivered over its last steps. After a K has run
// minSteps steps, K moves by at most one toward the best neighbour: a
// neighbour's measured rate when it has one, else the model's rate scaled by
// the model's error at the current K. K = 0 is plain decoding, probed back to
// K = 1 every probeEvery steps.
type kTuner struct {
	k, kMin, kMax int
	fixed         bool
	plainSteps    int // steps in a row with K = 0

	alpha   float64   // EMA of per-token acceptance
	tDraft  minWindow // seconds per draft forward
	tVerify map[int]*minWindow
	steps   map[int]*stepWindow // measured tokens and seconds per K

	fixedW, expertW float64 // floats read: non-expert weights, one expert of one layer
	layers, E, topk int
	calib           float64 // observed / predicted touched experts
}

const emaW = 0.2

// probeEvery is how many plain steps (K = 0) pass before the tuner tries
// speculation again.
const probeEvery = 16

// minWindow keeps the last few timings of one operation; their minimum is
// the estimate. Interference from other processes only ever adds time, so
// the minimum of recent runs tracks the operation's own cost better than a
// mean, while the window still follows real changes (a longer context).
type minWindow struct {
	vals [12]float64
	n    int // observations so far
}

func (w *minWindow) add(v float64) {
	w.vals[w.n%len(w.vals)] = v
	w.n++
}

func (w *minWindow) min() float64 {
	if w.n == 0 {
		return 0
	}
	m := w.vals[0]
	for _, v := range w.vals[1:min(w.n, len(w.vals))] {
		m = min(m, v)
	}
	return m
}

func newKTuner(target *Model, opts GenerateOptions) *kTuner {
	k := opts.DraftTokens
	if k <= 0 {
		k = 4
	}
	kMax := opts.MaxDraftTokens
	if kMax <= 0 {
		kMax = max(2*k, 8)
	}
	kMax = max(kMax, k)
	t := &kTuner{k: k, kMin: 0, kMax: kMax, fixed: opts.FixedDraftTokens, alpha: 0.7, tVerify: map[int]*minWindow{}, steps: map[int]*stepWindow{}, calib: 1}
	cfg := target.Cfg
	total := float64(target.NumParams())
	if cfg.IsMoE() {
		t.layers, t.E, t.topk = cfg.NumLayers, cfg.NumExperts, target.moeK
		t.expertW = float64(3 * cfg.ExpertSize() * cfg.HiddenSize)
		t.fixedW = total - t.expertW*float64(cfg.NumLayers*cfg.NumExperts)
	} else {
		t.fixedW = total
	}
	return t
}

// predictedTouched is the expected number of routed experts (all layers) m
// tokens touch if each picks topk of E at random, times the calibration.
func (t *kTuner) predictedTouched(m int) float64 {
	if t.E == 0 {
		return 0
	}
	p := 1 - math.Pow(1-float64(t.topk)/float64(t.E), float64(m))
	return t.calib * float64(t.layers) * float64(t.E) * p
}

func (t *kTuner) units(m int) float64 {
	return t.fixedW + t.expertW*t.predictedTouched(m)
}

// verifyTime estimates the verification time of m tokens.
func (t *kTuner) verifyTime(m int) float64 {
	if v, ok := t.tVerify[m]; ok {
		return v.min()
	}
	best, bestD := 0, math.MaxInt
	for mm := range t.tVerify {
		d := mm - m
		if d < 0 {
			d = -d
		}
		if d < bestD || (d == bestD && mm < best) {
			best, bestD = mm, d
		}
	}
	if bestD == math.MaxInt {
		return 0
	}
	return t.tVerify[best].min() * t.units(m) / t.units(best)
}

func (t *kTuner) rate(k int) float64 {
	a := min(t.alpha, 0.999)
	tokens := (1 - math.Pow(a, float64(k+1))) / (1 - a)
	cost := float64(k)*t.tDraft.min() + t.verifyTime(k+1)
	if cost <= 0 {
		return 0
	}
	return tokens / cost
}

// observe records one step: k proposed, acc accepted, the draft's time per
// forward, the verification time of m rows and the experts it touched. A
// timing taken while a pass also prefilled a prompt or caught up on
// several tokens says nothing about drafting or verifying; draftTimed and
// verifyTimed say which timings are clean.
func (t *kTuner) observe(k, acc int, draftPerTok float64, draftTimed bool, verify float64, verifyTimed bool, m, touched int) {
	if verifyTimed && (draftTimed || k == 0) {
		w := t.steps[k]
		if w == nil {
			w = &stepWindow{}
			t.steps[k] = w
		}
		w.add(float64(acc+1), float64(k)*draftPerTok+verify)
	}
	if k > 0 {
		t.alpha = (1-emaW)*t.alpha + emaW*float64(acc)/float64(k)
		if draftTimed {
			t.tDraft.add(draftPerTok)
		}
	}
	if !verifyTimed {
		return
	}
	if t.E > 0 && touched > 0 {
		pred := t.predictedTouched(m) / t.calib
		if pred > 0 {
			t.calib = (1-emaW)*t.calib + emaW*float64(touched)/pred
		}
	}
	w, ok := t.tVerify[m]
	if !ok {
		w = &minWindow{}
		t.tVerify[m] = w
	}
	w.add(verify)
	if t.fixed || t.tDraft.n == 0 {
		return
	}
	if t.k == 0 {
		// Speculation is off; probe it now and then, since the acceptance
		// rate is only measured while drafting.
		if t.plainSteps++; t.plainSteps >= probeEvery {
			t.plainSteps = 0
			t.k = 1
			return
		}
	}
	if t.steps[t.k].count() < minSteps {
		return // measure the current K first
	}
	best, bestR := t.k, t.estimate(t.k)
	for _, c := range []int{t.k - 1, t.k + 1} {
		if c < t.kMin || c > t.kMax {
			continue
		}
		if r := t.estimate(c); r > bestR*1.02 {
			best, bestR = c, r
		}
	}
	t.k = best
}

// estimate returns the expected tokens per second with K = c: the measured
// rate if c ran for a few recent steps, else the model's rate scaled by how
// far the model is off at the current K.
func (t *kTuner) estimate(c int) float64 {
	if r, ok := t.steps[c].rate(); ok {
		return r
	}
	model := t.rate(c)
	if r, ok := t.steps[t.k].rate(); ok {
		if mk := t.rate(t.k); mk > 0 {
			return model * r / mk
		}
	}
	return model
}

// minSteps is how many steps a K must run before its measured rate counts.
const minSteps = 3

// stepWindow keeps the tokens committed and seconds spent by the last steps
// run with one K; their ratio is the measured rate. Real text is not an
// i.i.d. sequence of acceptances (a draft can be wrong at one phase of a
// repeated phrase), so the measured rate can differ from the model's.
type stepWindow struct {
	tok, sec [8]float64
	n        int
}

func (w *stepWindow) add(tok, sec float64) {
	w.tok[w.n%len(w.tok)] = tok
	w.sec[w.n%len(w.sec)] = sec
	w.n++
}

func (w *stepWindow) count() int {
	if w == nil {
		return 0
	}
	return w.n
}

func (w *stepWindow) rate() (float64, bool) {
	if w.count() < minSteps {
		return 0, false
	}
	var tok, sec float64
	for i := 0; i < min(w.n, len(w.tok)); i++ {
		tok += w.tok[i]
		sec += w.sec[i]
	}
	if sec <= 0 {
		return 0, false
	}
	return tok / sec, true
}

// minLowPrecDraft is the smallest draft (in parameters) that proposes with
// bf16 weights: 1 MiB of float32, about an L2 cache; a smaller draft stays
// in cache between rounds and gains nothing from halving its bytes.
const minLowPrecDraft = 1 << 18

// draftLowPrec says whether draft dm proposes for target m with bf16
// weights (forwardDraft): when it is large enough for its memory traffic
// to matter, and unless it shares the target's weights (self-drafting,
// where full precision makes every proposal the target's own choice).
// Either way the target's verification decides every emitted token.
func draftLowPrec(m, dm *Model) bool {
	if dm.NumParams() < minLowPrecDraft {
		return false
	}
	return !dm.sharesWeights(m)
}

// speculate is speculative decoding with opts.Draft (Leviathan et al. 2023,
// Chen et al. 2023). Invariant between steps: each model's cache holds the
// committed context except its pending tokens, the last of which is the
// newest committed token.
func (m *Model) speculate(ctx context.Context, seq *Seq, prompt, pending []int32, opts GenerateOptions, o *output, res *Result, start time.Time) error {
	dm := opts.Draft
	if err := CheckDraft(m, dm); err != nil {
		return fmt.Errorf("infer: %w", err)
	}
	lowPrec := draftLowPrec(m, dm)
	dseq := opts.DraftSeq
	if dseq == nil {
		dseq = dm.NewSeq(seq.maxLen)
	} else if dseq.m != dm {
		return errors.New("infer: opts.DraftSeq belongs to another model")
	}
	if len(prompt) > dseq.maxLen {
		return fmt.Errorf("infer: prompt of %d tokens is longer than the draft's context of %d tokens", len(prompt), dseq.maxLen)
	}
	dpending := append([]int32(nil), syncSeq(dseq, prompt)...)
	tpending := append([]int32(nil), pending...)
	tuner := newKTuner(m, opts)
	ps := NewSampler(opts.Sampling) // target: acceptance tests and resampling
	ds := NewSampler(SampleOptions{Temperature: opts.Sampling.Temperature, TopP: opts.Sampling.TopP,
		TopK: opts.Sampling.TopK, Seed: opts.Sampling.Seed ^ 0x5bd1e995})
	V := m.Cfg.VocabSize
	var qs [][]float32 // draft distributions, one per proposal
	p := make([]float32, V)
	resid := make([]float32, V)
	first := true
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// How many proposals fit: the target must hold its pending tokens and
		// K drafts; the draft its pending tokens and K-1 drafts; and the
		// step yields up to K+1 tokens.
		k := tuner.k
		k = min(k, seq.maxLen-seq.Len()-len(tpending))
		k = min(k, dseq.maxLen-dseq.Len()-len(dpending)+1)
		if opts.MaxTokens > 0 {
			k = min(k, opts.MaxTokens-len(o.tokens)-1)
		}
		k = max(k, 0)

		// Passes that also prefill a prompt or catch up are not timed.
		verifyTimed := len(tpending) == 1
		draftTimed := len(dpending) <= 2

		// Draft K tokens.
		t0 := time.Now()
		drafts := make([]int32, 0, k)
		for len(qs) < k {
			qs = append(qs, make([]float32, V))
		}
		in := dpending
		for i := 0; i < k; i++ {
			lg, _, err := dm.forward([]*Seq{dseq}, [][]int32{in}, false, nil, lowPrec)
			if err != nil {
				return fmt.Errorf("infer: draft: %w", err)
			}
			ds.Probs(lg[0], qs[i])
			d := ds.SampleProbs(qs[i])
			drafts = append(drafts, d)
			in = []int32{d}
		}
		if k > 0 {
			dpending = nil
		}
		draftTime := time.Since(t0).Seconds()
		res.DraftSeconds += draftTime

		// Verify: the target scores its pending tokens and all K drafts in
		// one pass; the last K+1 rows are p_1..p_{K+1}.
		t1 := time.Now()
		batch := append(append([]int32(nil), tpending...), drafts...)
		lg, st, err := m.ForwardLast([]*Seq{seq}, [][]int32{batch}, true, []int{k + 1})
		if err != nil {
			return fmt.Errorf("infer: verify: %w", err)
		}
		verifyTime := time.Since(t1).Seconds()
		res.VerifySeconds += verifyTime
		if first {
			res.PrefillSeconds = time.Since(start).Seconds()
			first = false
		}
		rowsP := lg[0]
		res.Rounds++
		res.Proposed += k
		res.TargetTouched += st.TouchedTotal()

		// Accept each draft with probability min(1, p/q); the first
		// rejection resamples from normalize(max(0, p−q)); if all pass, a
		// bonus token comes from p_{K+1}.
		acc := 0
		var next int32
		for i := 0; i <= k; i++ {
			ps.Probs(rowsP[i*V:(i+1)*V], p)
			if i == k {
				next = ps.SampleProbs(p)
				break
			}
			t, ok := SpeculativeAccept(ps, p, qs[i], drafts[i], resid)
			if ok {
				acc++
				continue
			}
			next = t
			break
		}
		res.Accepted += acc
		perTok := 0.0
		if k > 0 {
			perTok = draftTime / float64(k)
		}
		tuner.observe(k, acc, perTok, draftTimed, verifyTime, verifyTimed, k+1, st.TouchedTotal())
		res.FinalDraftTokens = tuner.k

		// Roll back both caches to the committed tokens.
		base := seq.Len() - len(batch)
		seq.Truncate(base + len(tpending) + acc)
		tpending = []int32{next}
		if k > 0 {
			dbase := dseq.Len() - (k - 1) // draft holds its old pending + drafts[:k-1]
			kept := min(acc, k-1)
			dseq.Truncate(dbase + kept)
			if acc == k {
				dpending = []int32{drafts[k-1], next}
			} else {
				dpending = []int32{next}
			}
		} else {
			dpending = append(dpending, next)
		}

		// Commit accepted drafts and the final token.
		for _, t := range append(drafts[:acc:acc], next) {
			done, err := o.push(t)
			if err != nil || done {
				return err
			}
		}
		if seq.Len() >= seq.maxLen {
			return o.stop(StopContext)
		}
	}
}

// ProbDrawer is the randomness SpeculativeAccept needs: a uniform number in
// [0,1) and a draw from a distribution. *Sampler implements it.
type ProbDrawer interface {
	// Float64 returns a uniform number in [0, 1).
	Float64() float64
	// SampleProbs draws an id from the (non-negative) distribution p.
	SampleProbs(p []float32) int32
}

// SpeculativeAccept is one step of speculative sampling: a draft token d,
// drawn from the draft's distribution q, is kept with probability
// min(1, p[d]/q[d]) against the target's distribution p; otherwise the
// result is drawn from the residual max(0, p−q), renormalised. Either way
// the returned token is distributed exactly as p; accepted reports whether
// it is d by acceptance. resid (len(p) floats) receives the residual and may
// alias p, in which case p is overwritten. Sums are accumulated in float64.
func SpeculativeAccept(r ProbDrawer, p, q []float32, d int32, resid []float32) (tok int32, accepted bool) {
	pd, qd := float64(p[d]), float64(q[d])
	// pd >= qd accepts with probability one, without a draw.
	if qd > 0 && (pd >= qd || r.Float64()*qd < pd) {
		return d, true
	}
	resid = resid[:len(p)]
	var sum float64
	for j := range p {
		x := p[j] - q[j]
		if x < 0 {
			x = 0
		}
		resid[j] = x
		sum += float64(x)
	}
	if sum <= 0 {
		// p ≤ q everywhere means p == q up to rounding, and d would have
		// been accepted with probability ~1.
		return d, true
	}
	return r.SampleProbs(resid), false
}
