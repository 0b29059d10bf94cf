package infer

import (
	"math"
	"slices"
)

// CostModel prices a verification pass in weight floats read, the measure
// a memory-bound forward pass costs: the non-expert weights once, plus one
// routed expert's weights for every distinct expert the pass's rows touch.
// It only extrapolates from measured passes to untried sizes; measured
// times always win.
type CostModel struct {
	// FixedWeights is the floats every pass reads (attention, dense
	// layers, embeddings, LM head, shared experts).
	FixedWeights float64
	// ExpertWeights is the floats of one routed expert of one layer.
	ExpertWeights float64
	// Layers, Experts and TopK describe the routed layers (Experts = 0 for
	// a dense model).
	Layers, Experts, TopK int
}

// VerifyCost returns the cost model of m's forward passes.
func (m *Model) VerifyCost() CostModel {
	cfg := m.Cfg
	total := float64(m.NumParams())
	if !cfg.IsMoE() {
		return CostModel{FixedWeights: total}
	}
	ew := float64(3 * cfg.ExpertSize() * cfg.HiddenSize)
	return CostModel{
		FixedWeights:  total - ew*float64(cfg.NumLayers*cfg.NumExperts),
		ExpertWeights: ew,
		Layers:        cfg.NumLayers, Experts: cfg.NumExperts, TopK: m.moeK,
	}
}

// SpecPolicyOptions configure a SpecPolicy.
type SpecPolicyOptions struct {
	// K is the first draft length tried (default 4).
	K int
	// MaxK bounds K (default max(2·K, 8)).
	MaxK int
	// Fixed keeps K at K: no adaptation and no fallback to plain decoding.
	Fixed bool
	// Cost prices verification passes of untried sizes.
	Cost CostModel
}

// SpecStep is what one decoding step did, as SpecPolicy.Observe takes it.
// A plain step (no proposals) is a step too: it measures the price of
// plain decoding.
type SpecStep struct {
	// K is the draft length the policy gave for the step (SpecPolicy.K).
	K int
	// Seqs is the number of sequences the step advanced (1 in Generate).
	Seqs int
	// Proposed and Accepted count draft tokens over all sequences.
	Proposed, Accepted int
	// Tokens is the number of tokens the step committed.
	Tokens int
	// Rows is the number of positions in the verification pass.
	Rows int
	// Touched is the number of routed experts (all layers) the pass
	// touched, 0 if unknown.
	Touched int
	// DraftSeconds and VerifySeconds are the step's drafting and
	// verification times.
	DraftSeconds, VerifySeconds float64
	// Timed says the timings are clean: false when a pass also prefilled a
	// prompt or the draft caught up on many tokens.
	Timed bool
	// CatchUp says the step's only flaw is a draft catching up on tokens
	// it had not seen (a new prompt, the tokens of plain steps): a cost of
	// switching to speculation, which the policy charges to the spell of
	// speculative steps it starts but not to the price of a draft pass.
	CatchUp bool
	// ShadowAsked, ShadowProposed and ShadowAccepted count, in a plain
	// step, the sequences whose cheap drafter (prompt lookup) was asked
	// for a proposal without its being verified, how many proposed, and
	// how many proposals were the token the target then produced: an
	// unbiased estimate of the acceptance of the first proposal (exact for
	// greedy decoding; p(d) when sampling) and of how often there is one,
	// free of verification cost. The policy uses them to decide when to
	// probe speculation again.
	ShadowAsked, ShadowProposed, ShadowAccepted int
}

// SpecPolicy chooses the draft length K of speculative decoding, K = 0
// being plain decoding, by measured cost. It keeps running estimates of the
// acceptance rate α (an exponential average), of the draft's time per
// proposal, of the verification time as a function of the rows m in the
// pass (minima over recent passes), and of the tokens per second each K
// actually delivered over its last steps. For K without recent steps it uses
// the model
//
//	E[tokens](K) = n·(1 − α^(K+1)) / (1 − α)
//	time(K)      = K·t_draft + t_verify(n·(K+1))
//
// for n sequences, where t_verify of an untried size is scaled from the
// nearest measured one by CostModel: an MoE verification pass touches the
// union of the experts its rows pick, E·(1 − (1 − k/E)^m) per layer,
// calibrated by the unions the passes actually touched.
//
// It starts speculating with K; once K has run minSteps timed steps it
// runs minSteps plain ones (the price of plain decoding) unless plain steps
// were already measured, and keeps whichever delivered more tokens per
// second. From then on, after a K has run minSteps steps, K moves by at
// most one toward the best neighbour, or to 0 when plain decoding
// delivered more tokens per second than K does. While K = 0 it probes the last K again
// after probeEvery plain steps, and doubles that wait (up to maxProbeWait)
// each time the probe does not pay, so that speculation which does not pay
// costs little more than the probes. A cheap drafter (prompt lookup) can
// also propose during plain steps without verification (SpecStep's shadow
// counts): then a probe happens only when the acceptance those proposals
// would have had makes speculation look worth it.
type SpecPolicy struct {
	k, kMax    int
	fixed      bool
	warm       bool    // measuring plain decoding to compare lastK with
	plainSteps int     // steps in a row with K = 0
	lastK      int     // K to probe when K = 0
	probeWait  int     // plain steps before the next probe
	probing    bool    // K was set by a probe and has not yet paid
	shadow     float64 // EMA of shadow acceptance (plain steps)
	shadowF    float64 // EMA of the share of shadow asks that proposed
	shadowN    int     // shadow observations since the last speculative step
	seqs       int     // sequences per step, last seen

	alpha   float64   // EMA of per-token acceptance
	tDraft  minWindow // seconds per draft pass
	tVerify map[int]*minWindow
	steps   map[int]*stepWindow // measured tokens and seconds per K

	cost  CostModel
	calib float64 // observed / predicted touched experts

	// The tokens of the current spell of speculative steps (since K left
	// 0) and the seconds its drafts spent catching up.
	spellTok, spellCatch float64
	spellSteps           int
	lastCatch            float64 // the last catch-up's draft seconds

	pbuf, rbuf []float32 // Step's scratch: one vocabulary each
}

const emaW = 0.2

// probeEvery is how many plain steps (K = 0) pass before the policy first
// tries speculation again; maxProbeWait bounds the doubled wait.
const (
	probeEvery   = 16
	maxProbeWait = 256
)

// specMargin is how much faster than plain decoding (tokens per second)
// speculation must measure to be kept: its rate leaves out costs that no
// step's timing holds (a draft model catching up on a new prompt or on the
// tokens of plain steps, the bookkeeping of a longer step), so a K merely
// level with plain decoding is slower in the end.
const specMargin = 1.05

// minSteps is how many steps a K must run before its measured rate counts.
const minSteps = 3

// NewSpecPolicy returns a policy for the given options.
func NewSpecPolicy(o SpecPolicyOptions) *SpecPolicy {
	k := o.K
	if k <= 0 {
		k = 4
	}
	kMax := o.MaxK
	if kMax <= 0 {
		kMax = max(2*k, 8)
	}
	kMax = max(kMax, k)
	p := &SpecPolicy{k: k, lastK: k, kMax: kMax, fixed: o.Fixed, alpha: 0.7, probeWait: probeEvery,
		seqs: 1, tVerify: map[int]*minWindow{}, steps: map[int]*stepWindow{}, cost: o.Cost, calib: 1}
	return p
}

// Derive returns a policy for batches of seqs sequences (a server keeps one
// per batch size: both the price of verification and the tokens a step
// yields depend on the batch) that starts from what p has learned: the
// acceptance, the shadow acceptance, the draft's time per proposal and the
// measured verification times by rows (a pass of m rows costs the same
// whichever batch it advances); the tokens per second each K delivered are
// its own to measure. It starts at the K the cost model rates best for
// seqs sequences, or with plain steps (probing that K later, as after a
// fallback) when no K is rated above plain decoding: a batch of many
// sequences already shares each pass's weight reads among its tokens, so
// the extra rows of a verification pass rarely pay there.
func (p *SpecPolicy) Derive(seqs int) *SpecPolicy {
	q := &SpecPolicy{kMax: p.kMax, fixed: p.fixed, probeWait: probeEvery, seqs: max(seqs, 1),
		shadow: p.shadow, shadowF: p.shadowF, shadowN: p.shadowN, alpha: p.alpha, tDraft: p.tDraft, lastCatch: p.lastCatch,
		tVerify: make(map[int]*minWindow, len(p.tVerify)), steps: map[int]*stepWindow{}, cost: p.cost, calib: p.calib}
	for m, w := range p.tVerify {
		c := *w
		q.tVerify[m] = &c
	}
	q.k, q.lastK = p.lastK, p.lastK
	if p.k > 0 {
		q.k, q.lastK = p.k, p.k
	}
	if q.fixed {
		return q
	}
	if t := q.verifyTime(q.seqs); t > 0 {
		k := q.bestK()
		q.k, q.lastK = k, k
		if q.rate(k) <= float64(q.seqs)/t*specMargin {
			q.k = 0
		}
		if !q.ceilingPays() {
			q.probeWait = maxProbeWait
		}
	}
	return q
}

// K returns the draft length for the next step; 0 means plain decoding.
func (p *SpecPolicy) K() int { return p.k }

// Observe records one step and adapts K.
func (p *SpecPolicy) Observe(s SpecStep) {
	if s.Proposed > 0 {
		p.alpha = (1-emaW)*p.alpha + emaW*float64(s.Accepted)/float64(s.Proposed)
	}
	if s.Seqs > 0 {
		p.seqs = s.Seqs
	}
	if s.ShadowAsked > 0 {
		f := float64(s.ShadowProposed) / float64(s.ShadowAsked)
		a := p.shadow
		if s.ShadowProposed > 0 {
			a = float64(s.ShadowAccepted) / float64(s.ShadowProposed)
		}
		if p.shadowN == 0 {
			p.shadow, p.shadowF = a, f
		} else {
			p.shadow = (1-emaW)*p.shadow + emaW*a
			p.shadowF = (1-emaW)*p.shadowF + emaW*f
		}
		p.shadowN++
	}
	if s.K > 0 && s.K == p.k && (s.Timed || s.CatchUp) {
		p.spellTok += float64(s.Tokens)
		p.spellSteps++
		if s.CatchUp {
			p.spellCatch += s.DraftSeconds
			p.lastCatch = s.DraftSeconds
		}
	}
	if !s.Timed {
		return
	}
	if s.K > 0 && s.Proposed > 0 {
		p.tDraft.add(s.DraftSeconds / float64(s.K))
	}
	// A step with nothing proposed (a prompt-lookup draft without a match)
	// was a plain one: it keeps the plain rate current and is not a step
	// of K, whose rate is what its proposing steps deliver.
	nothing := s.K > 0 && s.Proposed == 0
	if nothing {
		p.window(0).add(float64(s.Tokens), s.DraftSeconds+s.VerifySeconds)
	} else {
		p.window(s.K).add(float64(s.Tokens), s.DraftSeconds+s.VerifySeconds)
	}
	if p.cost.Experts > 0 && s.Touched > 0 {
		if pred := p.predictedTouched(s.Rows) / p.calib; pred > 0 {
			p.calib = (1-emaW)*p.calib + emaW*float64(s.Touched)/pred
		}
	}
	v, ok := p.tVerify[s.Rows]
	if !ok {
		v = &minWindow{}
		p.tVerify[s.Rows] = v
	}
	v.add(s.VerifySeconds)
	if p.fixed || s.K != p.k || nothing {
		return
	}
	if p.k == 0 {
		p.plainSteps++
		if p.warm {
			if plain, ok := p.steps[0].rate(); ok {
				p.warm = false
				if r, ok := p.steps[p.lastK].rate(); ok && r > plain*specMargin {
					p.k, p.plainSteps = p.lastK, 0
					p.spellTok, p.spellCatch, p.spellSteps = 0, 0, 0
				} else {
					p.lastK = p.bestK() // the K to probe
				}
			}
			return
		}
		if p.plainSteps >= p.probeWait {
			if !p.ceilingPays() {
				// Not even drafts that are always accepted would pay at
				// this batch: wait the longest before looking again.
				p.plainSteps, p.probeWait = 0, maxProbeWait
				return
			}
			if p.shadowN >= minShadow && !p.shadowPays() {
				// The shadow acceptance says speculation would not pay:
				// keep decoding plainly, without the cost of a probe.
				p.plainSteps = 0
				return
			}
			p.probing = true
			p.shadowN = 0
			p.start(p.lastK)
		}
		return
	}
	if p.steps[p.k].count() < minSteps {
		return // measure the current K first
	}
	cur := p.estimate(p.k)
	if p.spellCatch > 0 && cur > 0 {
		// The draft's catch-up when the spell began is part of its cost,
		// spread over the spell's tokens, or over probeEvery steps' worth
		// if the spell is shorter (a kept K runs at least that long).
		tok := max(p.spellTok, probeEvery*p.spellTok/float64(p.spellSteps))
		cur = 1 / (1/cur + p.spellCatch/tok)
	}
	plain, ok := p.steps[0].rate()
	if !ok {
		// Plain decoding has not been measured yet: measure it, then
		// come back to K if K was faster.
		p.lastK, p.warm = p.k, true
		p.k, p.plainSteps = 0, 0
		return
	}
	if plain*specMargin > cur {
		// Speculation delivers fewer tokens per second than plain
		// decoding. The next probe tries the K the model rates best: the
		// cheapest probe (K = 1) unless acceptance is high.
		p.lastK = p.bestK()
		if p.probing {
			p.probeWait = min(2*p.probeWait, maxProbeWait)
		}
		p.probing = false
		p.k, p.plainSteps = 0, 0
		return
	}
	if p.probing {
		p.probing = false
		p.probeWait = probeEvery
	}
	best, bestR := p.k, cur
	for _, c := range []int{p.k - 1, p.k + 1} {
		if c < 1 || c > p.kMax {
			continue
		}
		if r := p.estimate(c); r > bestR*1.02 {
			best, bestR = c, r
		}
	}
	p.k = best
}

// bestK returns the K in [1, kMax] with the highest estimated rate.
func (p *SpecPolicy) bestK() int {
	best, bestR := 1, p.estimate(1)
	for c := 2; c <= p.kMax; c++ {
		if r := p.estimate(c); r > bestR {
			best, bestR = c, r
		}
	}
	return best
}

// window returns the step window of K = k.
func (p *SpecPolicy) window(k int) *stepWindow {
	w := p.steps[k]
	if w == nil {
		w = &stepWindow{}
		p.steps[k] = w
	}
	return w
}

// minShadow is how many shadow observations the policy needs before it
// trusts them over a probe.
const minShadow = 8

// shadowPays says whether speculating with the last K would beat the
// measured plain rate by a margin, by the model with α = the shadow
// acceptance, where a share f = shadowF of the steps propose (the others
// are plain steps): (f·E[tokens] + 1 − f) / (f·time(K) + (1 − f)/plain).
func (p *SpecPolicy) shadowPays() bool {
	plain, ok := p.steps[0].rate()
	if !ok {
		return true
	}
	a := min(p.shadow, 0.999)
	k := p.lastK
	n := float64(p.seqs)
	tokens := n * (1 - math.Pow(a, float64(k+1))) / (1 - a)
	cost := float64(k)*p.tDraft.min() + p.verifyTime(p.seqs*(k+1))
	f := p.shadowF
	r := (f*tokens + (1-f)*n) / (f*cost + (1-f)*n/plain)
	return r > 1.1*plain
}

// ceilingPays says whether some K would beat the measured plain rate by
// specMargin if every proposal were accepted (n·(K+1) tokens a step), by
// the measured draft time and the verification time of n·(K+1) rows. When
// it would not, speculation cannot pay whatever the acceptance: in a large
// batch the plain step already shares the weight reads among n tokens and
// the extra rows cost more than they can yield. The draft's last catch-up
// (what switching to speculation costs) counts as spread over probeEvery
// steps. Unknown prices (nothing measured yet) count as paying.
func (p *SpecPolicy) ceilingPays() bool {
	n := p.seqs
	plain, ok := p.steps[0].rate()
	if t := p.verifyTime(n); !ok && t > 0 {
		plain, ok = float64(n)/t, true
	}
	if !ok || p.tDraft.n == 0 {
		return true
	}
	for k := 1; k <= p.kMax; k++ {
		t := float64(k)*p.tDraft.min() + p.verifyTime(n*(k+1)) + p.lastCatch/probeEvery
		if t <= 0 || float64(n*(k+1))/t > plain*specMargin {
			return true
		}
	}
	return false
}

// start switches to K = k (≥ 1) with a fresh measurement of its rate.
func (p *SpecPolicy) start(k int) {
	p.k, p.plainSteps = max(k, 1), 0
	p.spellTok, p.spellCatch, p.spellSteps = 0, 0, 0
	delete(p.steps, p.k)
}

// predictedTouched is the expected number of routed experts (all layers) m
// rows touch if each picks TopK of Experts at random, times the calibration.
func (p *SpecPolicy) predictedTouched(m int) float64 {
	c := p.cost
	if c.Experts == 0 {
		return 0
	}
	q := 1 - math.Pow(1-float64(c.TopK)/float64(c.Experts), float64(m))
	return p.calib * float64(c.Layers) * float64(c.Experts) * q
}

func (p *SpecPolicy) units(m int) float64 {
	return p.cost.FixedWeights + p.cost.ExpertWeights*p.predictedTouched(m)
}

// verifyTime estimates the verification time of m rows: the measured
// minimum if m rows were measured; else linear in the rows between (or
// beyond) the nearest measured sizes, since a pass's time is its weight
// reads plus work per row, and never below the nearest measured size
// scaled by the CostModel (the weights, and for an MoE the union of the
// experts the rows pick); from a single measured size, that scaling alone.
func (p *SpecPolicy) verifyTime(m int) float64 {
	if v, ok := p.tVerify[m]; ok {
		return v.min()
	}
	if len(p.tVerify) == 0 {
		return 0
	}
	sizes := make([]int, 0, len(p.tVerify))
	for mm := range p.tVerify {
		sizes = append(sizes, mm)
	}
	slices.Sort(sizes)
	i, _ := slices.BinarySearch(sizes, m) // sizes[i-1] < m < sizes[i]
	near := sizes[min(i, len(sizes)-1)]
	if i > 0 && (i == len(sizes) || m-sizes[i-1] <= sizes[i]-m) {
		near = sizes[i-1]
	}
	t := p.tVerify[near].min()
	if u := p.units(near); u > 0 {
		t *= p.units(m) / u
	}
	if len(sizes) < 2 {
		return t
	}
	a, b := i-1, i // the sizes to interpolate between, or extrapolate from
	if a < 0 {
		a, b = 0, 1
	} else if b == len(sizes) {
		a, b = len(sizes)-2, len(sizes)-1
	}
	ta, tb := p.tVerify[sizes[a]].min(), p.tVerify[sizes[b]].min()
	lin := ta + (tb-ta)*float64(m-sizes[a])/float64(sizes[b]-sizes[a])
	if m > sizes[len(sizes)-1] {
		return max(lin, t)
	}
	return max(lin, 0)
}

// rate is the model's tokens per second with K = k.
func (p *SpecPolicy) rate(k int) float64 {
	a := min(p.alpha, 0.999)
	n := float64(p.seqs)
	tokens := n * (1 - math.Pow(a, float64(k+1))) / (1 - a)
	cost := float64(k)*p.tDraft.min() + p.verifyTime(p.seqs*(k+1))
	if cost <= 0 {
		return 0
	}
	return tokens / cost
}

// estimate returns the expected tokens per second with K = c: the measured
// rate if c ran for a few recent steps, else the model's rate scaled by how
// far the model is off at the current K.
func (p *SpecPolicy) estimate(c int) float64 {
	if r, ok := p.steps[c].rate(); ok {
		return r
	}
	model := p.rate(c)
	if r, ok := p.steps[p.k].rate(); ok {
		if mk := p.rate(p.k); mk > 0 {
			return model * r / mk
		}
	}
	return model
}

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

// stepWindow keeps the tokens committed and seconds spent by the last steps
// run with one K; mean tokens over the lower quartile of step times is the
// measured rate. Real text is not an i.i.d. sequence of acceptances (a
// draft can be wrong at one phase of a repeated phrase), so the measured
// rate can differ from the model's. Steps of one K in one batch cost
// nearly the same, and interference from other processes (or the garbage
// collector) only ever adds time to a step, so a low quantile tracks the
// step's own cost, as minWindow does for one pass, and one stalled step
// does not swing the choice between K and plain decoding.
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
	n := min(w.n, len(w.tok))
	var tok float64
	for _, t := range w.tok[:n] {
		tok += t
	}
	sec := w.sec
	s := sec[:n]
	slices.Sort(s)
	q := s[(n-1)/4]
	if q <= 0 {
		return 0, false
	}
	return tok / float64(n) / q, true
}
