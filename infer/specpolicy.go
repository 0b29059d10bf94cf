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
	// StartPlain begins with plain steps and speculates only once the
	// drafter's unverified proposals during plain steps (SpecStep's shadow
	// counts) say it would pay: for a drafter that costs nothing to ask
	// (prompt lookup), so that text it cannot predict costs no speculative
	// steps at all.
	StartPlain bool
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
	// Runs is, per sequence that proposed, how many tokens it proposed
	// and how many of them were accepted (nil: unknown; a step of one
	// sequence is then read from Proposed and Accepted).
	Runs []DraftRun
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

// DraftRun is one sequence's share of a speculative step: the tokens its
// draft proposed and how many of them (a prefix) the target accepted.
type DraftRun struct {
	Proposed, Accepted int
}

// SpecPolicy chooses the draft length K of speculative decoding, K = 0
// being plain decoding, by measured cost. It keeps running estimates of the
// draft's time per proposal, of the verification time as a function of the
// rows m in the pass (the faster half of recent passes: interference only
// ever adds time), and of the acceptance at each draft position i: the
// share a_i of proposals at position i that were accepted when every
// proposal before them was (counts decayed per speculative step, pulled
// toward a_(i−1), and a_1 toward an exponential average α of all
// proposals, while a position has few observations). Real text is not an i.i.d. run of acceptances: once a
// draft is right about a phrase it tends to stay right, so a_2, a_3, … are
// usually above a_1, and a model that took one α for every position would
// price long drafts too low. For n sequences
//
//	E[tokens](K) = n·(1 + Σ_{i≤K} a_1·…·a_i)
//	time(K)      = K·t_draft + t_verify(n·(K+1))
//
// where t_verify of an untried size comes from a fit of the measured sizes
// to the weights each reads, by CostModel, plus work per row: an MoE
// verification pass touches the union of the experts its rows pick,
// E·(1 − (1 − k/E)^m) per layer, calibrated by the unions the passes
// actually touched. The rates compared are these expectations, not
// the tokens a few recent steps happened to yield: with K ≤ 4 a step yields
// 1 to 5 tokens, so a window of a few steps swings by ±30% and would send
// the policy back to plain decoding on an unlucky run.
//
// It starts speculating with K; once K has run minSteps timed steps it
// runs minSteps plain ones (the price of plain decoding) unless plain steps
// were already measured. From then on, every minSteps timed steps of the
// current K, it moves K one step toward the K the model rates best, or to 0
// when no K beats plain decoding by specMargin. While K = 0 it probes the best K again
// after probeEvery plain steps, and doubles that wait (up to maxProbeWait)
// each time the probe does not pay, so that speculation which does not pay
// costs little more than the probes; the wait is longer when the draft's
// catch-up before a probe would take more than probeShare of the plain
// steps' time (wait). A cheap drafter (prompt lookup) can
// also propose during plain steps without verification (SpecStep's shadow
// counts): then a probe happens only when the acceptance those proposals
// would have had makes speculation look worth it.
type SpecPolicy struct {
	k, kMax    int
	fixed      bool
	startPlain bool    // SpecPolicyOptions.StartPlain
	warm       bool    // measuring plain decoding to compare lastK with
	kSteps     int     // timed steps run with the current K
	plainSteps int     // steps in a row with K = 0
	lastK      int     // K to probe when K = 0
	probeWait  int     // plain steps before the next probe
	probing    bool    // K was set by a probe and has not yet paid
	probeProp  int     // proposals since the probe began
	probeAcc   int     // of which accepted
	shadow     float64 // EMA of shadow acceptance (plain steps)
	shadowF    float64 // EMA of the share of shadow asks that proposed
	shadowN    int     // shadow observations since the last speculative step
	seqs       int     // sequences per step, last seen

	alpha   float64    // EMA of per-token acceptance
	reach   []float64  // decayed count of proposals at position i+1 that were reached
	pass    []float64  // decayed count of those that were accepted
	tDraft  timeWindow // seconds per draft pass
	tVerify map[int]*timeWindow

	cost  CostModel
	calib float64 // observed / predicted touched experts

	lastCatch float64 // the draft's last catch-up, seconds

	pbuf, rbuf []float32 // Step's scratch: one vocabulary each
}

const emaW = 0.2

// posDecay is the weight an acceptance count keeps per speculative step
// (about the last dozen steps count), and posPrior the weight, in
// observations, of a position's prior (the acceptance at the position
// before it).
const (
	posDecay = 0.96
	posPrior = 2.0
)

// probeEvery is how many plain steps (K = 0) pass before the policy first
// tries speculation again; maxProbeWait bounds the doubled wait.
const (
	probeEvery   = 16
	maxProbeWait = 256
)

// specMargin is how much faster than plain decoding (tokens per second)
// speculation must be rated to be kept: its rate leaves out costs that no
// step's timing holds (a draft model catching up on a new prompt or on the
// tokens of plain steps, the bookkeeping of a longer step), so a K merely
// level with plain decoding is slower in the end.
const specMargin = 1.05

// minSteps is how many timed steps a K runs before the policy judges again.
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
		seqs: 1, tVerify: map[int]*timeWindow{}, cost: o.Cost, calib: 1}
	if o.StartPlain && !o.Fixed {
		// The first probe may come as soon as the shadow acceptance
		// counts (minShadow plain steps) and says speculation pays.
		p.k, p.startPlain, p.probeWait = 0, true, minShadow
	}
	return p
}

// Derive returns a policy for batches of seqs sequences (a server keeps one
// per batch size: both the price of verification and the tokens a step
// yields depend on the batch) that starts from what p has learned: the
// acceptance at each position, the shadow acceptance, the draft's time per
// proposal and the measured verification times by rows (a pass of m rows
// costs the same whichever batch it advances). It starts at the K the
// model rates best for seqs sequences, or with plain steps (probing that K
// later, as after a fallback) when no K is rated above plain decoding: a
// batch of many sequences already shares each pass's weight reads among
// its tokens, so the extra rows of a verification pass rarely pay there.
func (p *SpecPolicy) Derive(seqs int) *SpecPolicy {
	q := &SpecPolicy{kMax: p.kMax, fixed: p.fixed, probeWait: probeEvery, seqs: max(seqs, 1),
		shadow: p.shadow, shadowF: p.shadowF, shadowN: p.shadowN, alpha: p.alpha, tDraft: p.tDraft, lastCatch: p.lastCatch,
		reach: slices.Clone(p.reach), pass: slices.Clone(p.pass),
		tVerify: make(map[int]*timeWindow, len(p.tVerify)), cost: p.cost, calib: p.calib}
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
	if p.startPlain && p.tDraft.n == 0 {
		// Nothing speculated yet: the shadow acceptance decides here too.
		q.k, q.startPlain, q.probeWait = 0, true, minShadow
		return q
	}
	if plain, ok := q.plainRate(); ok {
		k := q.bestK()
		q.k, q.lastK = k, k
		if q.rate(k) <= plain*specMargin {
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
	p.observeRuns(s)
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
	if p.probing && s.K > 0 && s.K == p.k {
		p.probeProp += s.Proposed
		p.probeAcc += s.Accepted
	}
	if s.K > 0 && s.K == p.k && s.CatchUp {
		p.lastCatch = s.DraftSeconds
	}
	if !s.Timed {
		return
	}
	if s.K > 0 && s.Proposed > 0 {
		p.tDraft.add(s.DraftSeconds / float64(s.K))
	}
	if p.cost.Experts > 0 && s.Touched > 0 {
		if pred := p.predictedTouched(s.Rows) / p.calib; pred > 0 {
			p.calib = (1-emaW)*p.calib + emaW*float64(s.Touched)/pred
		}
	}
	v, ok := p.tVerify[s.Rows]
	if !ok {
		v = &timeWindow{}
		p.tVerify[s.Rows] = v
	}
	v.add(s.VerifySeconds)
	// A step with nothing proposed (a prompt-lookup draft without a match)
	// was a plain one: it measured a plain pass, not a step of K.
	if p.fixed || s.K != p.k || s.K > 0 && s.Proposed == 0 {
		return
	}
	p.kSteps++
	if p.k == 0 {
		p.plainSteps++
		if p.warm {
			if p.kSteps >= minSteps {
				p.warm = false
				p.judge()
			}
			return
		}
		if p.plainSteps >= p.wait() {
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
			p.probing, p.probeProp, p.probeAcc = true, 0, 0
			p.shadowN = 0
			p.setK(max(p.lastK, 1))
		}
		return
	}
	if p.kSteps < minSteps {
		return // measure the current K first
	}
	if _, ok := p.plainRate(); !ok {
		// Plain decoding has not been measured yet: measure it, then
		// come back to K if K pays.
		p.lastK, p.warm = p.k, true
		p.setK(0)
		return
	}
	p.judge()
}

// observeRuns adds a step's proposals to the acceptance counts by position.
// A step without SpecStep.Runs counts as one run when it advanced one
// sequence.
func (p *SpecPolicy) observeRuns(s SpecStep) {
	runs := s.Runs
	if runs == nil && s.Seqs == 1 && s.Proposed > 0 {
		runs = []DraftRun{{Proposed: s.Proposed, Accepted: s.Accepted}}
	}
	if len(runs) == 0 {
		return
	}
	// Every position's counts decay with each speculative step, observed
	// or not: a position a short K no longer reaches drifts back to its
	// prior (the acceptance at the position before it) instead of keeping
	// what the last long drafts measured, which would price longer K by
	// stale luck and keep the policy at the short K.
	for i := range p.reach {
		p.reach[i] *= posDecay
		p.pass[i] *= posDecay
	}
	for _, r := range runs {
		for i := 0; i < r.Proposed && i <= r.Accepted; i++ {
			if i >= len(p.reach) {
				p.reach = append(p.reach, 0)
				p.pass = append(p.pass, 0)
			}
			p.reach[i]++
			if i < r.Accepted {
				p.pass[i]++
			}
		}
	}
}

// judge sets K, after minSteps steps of the current K (or of plain
// decoding, measured to compare with lastK), to the K the model rates best,
// or to 0 when no K is rated above plain decoding by specMargin.
func (p *SpecPolicy) judge() {
	plain, _ := p.plainRate()
	best := p.bestK()
	r := p.rate(best)
	if plain*specMargin >= r {
		if p.probing && p.k < p.kMax && p.probeProp > 0 && float64(p.probeAcc) >= probeClimb*float64(p.probeProp) {
			// The probe's drafts were nearly all accepted, yet K is not
			// rated above plain decoding: the positions past K still carry
			// the acceptance that ended the last spell. Try K+1 before
			// giving up (a draft that was wrong about a passage's first
			// tokens and right after them was sent back to plain
			// decoding by every probe at the short K it had fallen to).
			p.probeProp, p.probeAcc = 0, 0
			p.setK(p.k + 1)
			return
		}
		// No K delivers more tokens per second than plain decoding by the
		// margin: decode plainly and probe best later.
		p.lastK = best
		if p.probing {
			p.probeWait = min(2*p.probeWait, maxProbeWait)
		}
		p.probing = false
		p.setK(0)
		return
	}
	if p.probing {
		p.probing = false
		p.probeWait = probeEvery
	}
	switch {
	case p.k == 0:
		p.setK(best)
	case best != p.k && p.rate(best) > 1.02*p.rate(p.k):
		// One step toward best: K's neighbours are the sizes the
		// measurements say most about, and a few lucky steps must not
		// send K to a length whose acceptance is all extrapolation.
		if best > p.k {
			p.setK(p.k + 1)
		} else {
			p.setK(p.k - 1)
		}
	default:
		p.kSteps = 0 // judge again after minSteps more steps
	}
}

// probeClimb is the share of a probe's proposals that must have been
// accepted for a probe that does not pay to try K+1 instead of ending.
const probeClimb = 0.9

// bestK returns the K in [1, kMax] with the highest rated tokens per second.
func (p *SpecPolicy) bestK() int {
	best, bestR := 1, p.rate(1)
	for c := 2; c <= p.kMax; c++ {
		if r := p.rate(c); r > bestR {
			best, bestR = c, r
		}
	}
	return best
}

// plainRate is plain decoding's tokens per second: seqs over the measured
// time of a pass of seqs rows.
func (p *SpecPolicy) plainRate() (float64, bool) {
	v, ok := p.tVerify[p.seqs]
	if !ok {
		return 0, false
	}
	t := v.estimate()
	if t <= 0 {
		return 0, false
	}
	return float64(p.seqs) / t, true
}

// minShadow is how many shadow observations the policy needs before it
// trusts them over a probe.
const minShadow = 8

// shadowPays says whether speculating with the last K would beat the
// measured plain rate by a margin, by the model with α = the shadow
// acceptance, where a share f = shadowF of the steps propose (the others
// are plain steps): (f·E[tokens] + 1 − f) / (f·time(K) + (1 − f)/plain).
func (p *SpecPolicy) shadowPays() bool {
	plain, ok := p.plainRate()
	if !ok {
		return true
	}
	a := min(p.shadow, 0.999)
	k := p.lastK
	n := float64(p.seqs)
	tokens := n * (1 - math.Pow(a, float64(k+1))) / (1 - a)
	cost := p.stepTime(k)
	f := p.shadowF
	r := (f*tokens + (1-f)*n) / (f*cost + (1-f)*n/plain)
	return r > 1.1*plain
}

// probeShare bounds the share of plain decoding's time that the draft's
// catch-ups at probes may take.
const probeShare = 0.03

// wait is how many plain steps pass before the next probe: probeWait, or
// more when the draft's last catch-up (what a probe costs before its first
// step: a draft model feeding on the tokens of the plain steps, ~µs for
// prompt lookup) would take more than probeShare of the plain steps' time;
// a batch of sequences whose draft is a tenth of the target catches up on
// several plain steps' worth.
func (p *SpecPolicy) wait() int {
	w := p.probeWait
	if t := p.verifyTime(p.seqs); t > 0 && p.lastCatch > 0 {
		w = max(w, int(math.Ceil(p.lastCatch/(probeShare*t))))
	}
	return w
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
	plain, ok := p.plainRate()
	if !ok || p.tDraft.n == 0 {
		return true
	}
	for k := 1; k <= p.kMax; k++ {
		t := p.stepTime(k) + p.lastCatch/probeEvery
		if t <= 0 || float64(n*(k+1))/t > plain*specMargin {
			return true
		}
	}
	return false
}

// setK switches to K = k, to be measured afresh.
func (p *SpecPolicy) setK(k int) {
	p.k, p.kSteps = k, 0
	if k == 0 {
		p.plainSteps = 0
	}
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
// estimate if m rows were measured; else α·units(m) + β·m, the price α of
// a weight float and β of a row fitted to all measured sizes (fitCost),
// since a pass's time is its weight reads (for an MoE the union of the
// experts its rows pick, which stops growing once the rows touch them all)
// plus work per row. A line through two sizes, as this once was, went
// wrong both ways on a small MoE: adjacent sizes differ by less than their
// timings' noise, so one slow pass priced every longer K too high ever to
// be tried and corrected, and a line through 1 and 6 rows of tiny said 9
// rows cost 1.4× 6 rows, where they cost 1.1×. Below the smallest size or
// from a single one, the nearest measured size scaled by the CostModel.
func (p *SpecPolicy) verifyTime(m int) float64 {
	if v, ok := p.tVerify[m]; ok {
		return v.estimate()
	}
	if len(p.tVerify) == 0 {
		return 0
	}
	sizes := make([]int, 0, len(p.tVerify))
	for mm := range p.tVerify {
		sizes = append(sizes, mm)
	}
	slices.Sort(sizes)
	if len(sizes) >= 2 && m > sizes[0] {
		alpha, beta := p.fitCost(sizes)
		return alpha*p.fitUnits(m) + beta*float64(m)
	}
	i, _ := slices.BinarySearch(sizes, m) // sizes[i-1] < m < sizes[i]
	near := sizes[min(i, len(sizes)-1)]
	if i > 0 && (i == len(sizes) || m-sizes[i-1] <= sizes[i]-m) {
		near = sizes[i-1]
	}
	t := p.tVerify[near].estimate()
	if u := p.units(near); u > 0 {
		t *= p.units(m) / u
	}
	return t
}

// fitCost fits t(m) ≈ α·units(m) + β·m, α, β ≥ 0, to the measured sizes'
// estimates by least squares, each weighted by its number of timings (the
// current K's, timed again and again, more than a size tried once). For a
// dense model units is a constant and α·units the pass's fixed cost
// (without a CostModel, units counts 1).
func (p *SpecPolicy) fitCost(sizes []int) (alpha, beta float64) {
	var suu, sum, smm, sut, smt float64
	for _, m := range sizes {
		u, x, t := p.fitUnits(m), float64(m), p.tVerify[m].estimate()
		w := float64(p.tVerify[m].count())
		suu += w * u * u
		sum += w * u * x
		smm += w * x * x
		sut += w * u * t
		smt += w * x * t
	}
	if det := suu*smm - sum*sum; det > 1e-9*suu*smm {
		alpha = (sut*smm - smt*sum) / det
		beta = (smt*suu - sut*sum) / det
		if alpha >= 0 && beta >= 0 {
			return alpha, beta
		}
	}
	// One of them came out negative (or the sizes cannot tell them apart):
	// the better of the two one-term fits.
	a, b := 0.0, 0.0
	if suu > 0 {
		a = max(sut/suu, 0)
	}
	if smm > 0 {
		b = max(smt/smm, 0)
	}
	ra, rb := 0.0, 0.0
	for _, m := range sizes {
		t, w := p.tVerify[m].estimate(), float64(p.tVerify[m].count())
		ra += w * sq(t-a*p.fitUnits(m))
		rb += w * sq(t-b*float64(m))
	}
	if ra <= rb {
		return a, 0
	}
	return 0, b
}

// fitUnits is units(m), or 1 without a CostModel.
func (p *SpecPolicy) fitUnits(m int) float64 {
	if u := p.units(m); u > 0 {
		return u
	}
	return 1
}

// sq is x².
func sq(x float64) float64 { return x * x }

// expectedTokens is the tokens one sequence commits in a step with K = k:
// 1 + Σ_{i≤k} a_1·…·a_i, a_i the acceptance at position i (its decayed
// counts pulled toward a_(i−1) by posPrior observations; a_0 = α).
func (p *SpecPolicy) expectedTokens(k int) float64 {
	tok, surv, a := 1.0, 1.0, min(p.alpha, 0.999)
	for i := 0; i < k; i++ {
		if i < len(p.reach) {
			a = min((p.pass[i]+posPrior*a)/(p.reach[i]+posPrior), 0.999)
		}
		surv *= a
		tok += surv
	}
	return tok
}

// stepTime is the expected seconds of a step with K = k: k draft passes
// and the verification of seqs·(k+1) rows.
func (p *SpecPolicy) stepTime(k int) float64 {
	return float64(k)*p.tDraft.estimate() + p.verifyTime(p.seqs*(k+1))
}

// rate is the model's tokens per second with K = k.
func (p *SpecPolicy) rate(k int) float64 {
	cost := p.stepTime(k)
	if cost <= 0 {
		return 0
	}
	return float64(p.seqs) * p.expectedTokens(k) / cost
}

// timeWindow keeps the last few timings of one operation; the mean of the
// faster half of them is the estimate. Interference from other processes
// only ever adds time, so the faster runs track the operation's own cost
// better than a mean of all, while the window still follows real changes
// (a longer context). Not their minimum: the minimum of many draws is
// lower than the minimum of a few, so plain passes (run often) were priced
// at their luckiest draw and verification passes (a few at each size) at
// typical ones, and plain decoding looked 10–15% faster than it was; the
// mean of the faster half depends far less on how many draws there were.
type timeWindow struct {
	vals [8]float64
	n    int // observations so far
}

func (w *timeWindow) add(v float64) {
	w.vals[w.n%len(w.vals)] = v
	w.n++
}

// count is how many timings the window holds.
func (w *timeWindow) count() int { return min(w.n, len(w.vals)) }

func (w *timeWindow) estimate() float64 {
	n := w.count()
	if n == 0 {
		return 0
	}
	v := w.vals
	s := v[:n]
	slices.Sort(s)
	h := (n + 1) / 2
	var sum float64
	for _, x := range s[:h] {
		sum += x
	}
	return sum / float64(h)
}
