package infer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	scratchbuf "github.com/moe-llm/moe/internal/scratch"
)

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

// speculate is speculative decoding (Leviathan et al. 2023, Chen et al.
// 2023) with opts.Drafter, or a ModelDrafter of opts.Draft: a loop of
// SpecPolicy.Step over a batch of one sequence, the step the server runs
// over its batch. Invariant between steps: the target's cache holds the
// committed context except its pending token, the newest committed one.
func (m *Model) speculate(ctx context.Context, seq *Seq, prompt, pending []int32, opts GenerateOptions, o *output, res *Result, start time.Time) error {
	dr := opts.Drafter
	if dr == nil {
		if opts.DraftSeq != nil && opts.DraftSeq.m != opts.Draft {
			return errors.New("infer: opts.DraftSeq belongs to another model")
		}
		md, err := NewModelDrafter(m, opts.Draft, opts.DraftSeq, seq.maxLen, opts.Sampling)
		if err != nil {
			return fmt.Errorf("infer: %w", err)
		}
		if len(prompt) > md.seq.maxLen {
			return fmt.Errorf("infer: prompt of %d tokens is longer than the draft's context of %d tokens", len(prompt), md.seq.maxLen)
		}
		dr = md
	}
	_, lookup := dr.(*NgramDrafter)
	pol := NewSpecPolicy(SpecPolicyOptions{K: opts.DraftTokens, MaxK: opts.MaxDraftTokens, Fixed: opts.FixedDraftTokens,
		Cost: m.VerifyCost(), StartPlain: lookup})
	var vs Verifier // nil: greedy
	if ps := NewSampler(opts.Sampling); !ps.Greedy() {
		vs = ps
	}
	b := SpecBatch{
		Ctx: [][]int32{slices.Clone(prompt)}, Pending: [][]int32{slices.Clone(pending)}, Limit: []int{0},
		Drafter: Drafters{dr}, Verifiers: []Verifier{vs},
		Verify: func(toks [][]int32, rows []int) ([][]float32, int, error) {
			lg, st, err := m.ForwardLast([]*Seq{seq}, toks, true, rows)
			return lg, st.TouchedTotal(), err
		},
	}
	steps := 0
	o.rounds = &steps // the first step's tokens are the prefill pass's
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		tpending := b.Pending[0]
		b.Limit[0] = seq.maxLen - seq.Len() - len(tpending)
		if opts.MaxTokens > 0 {
			b.Limit[0] = min(b.Limit[0], opts.MaxTokens-len(o.tokens)-1)
		}
		b.Cold = steps == 0
		if err := pol.Step(&b); err != nil {
			return fmt.Errorf("infer: %w", err)
		}
		steps++
		if steps == 1 {
			res.PrefillSeconds = time.Since(start).Seconds()
		}
		drafts, acc, next := b.Drafts[0], b.Accepted[0], b.Next[0]
		if len(drafts) > 0 {
			res.Rounds++
			res.Proposed += len(drafts)
			res.Accepted += acc
			res.DraftSeconds += b.Observed.DraftSeconds
			res.VerifySeconds += b.Observed.VerifySeconds
			res.TargetTouched += b.Observed.Touched
		}
		res.FinalDraftTokens = pol.K()

		// Roll the target's cache back to the committed tokens.
		seq.Truncate(seq.Len() - len(drafts) + acc)
		b.Pending[0] = append(tpending[:0], next)
		for _, t := range append(drafts[:acc:acc], next) {
			b.Ctx[0] = append(b.Ctx[0], t)
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

// BatchDrafter proposes tokens for several sequences at once (a draft
// model can run all of them in one batched pass per proposal). Drafters
// adapts per-sequence Drafters.
type BatchDrafter interface {
	// ProposeBatch returns, for each i, up to k[i] tokens that may follow
	// ctxs[i] and the distributions they were drawn from, as
	// Drafter.Propose does (qs[i] nil: point masses; qs itself may be nil),
	// and the most context tokens one sequence's drafter had to feed
	// before proposing: more than two means the drafting time includes a
	// prefill. The slices are valid until the next call.
	ProposeBatch(ctxs [][]int32, k []int) (drafts [][]int32, qs [][][]float32, caughtUp int, err error)
}

// Drafters is a BatchDrafter made of one Drafter per sequence: Drafters[i]
// proposes for ctxs[i].
type Drafters []Drafter

// ProposeBatch implements BatchDrafter.
func (ds Drafters) ProposeBatch(ctxs [][]int32, k []int) ([][]int32, [][][]float32, int, error) {
	drafts := make([][]int32, len(ds))
	qs := make([][][]float32, len(ds))
	caughtUp := 0
	for i, d := range ds {
		if k[i] <= 0 {
			continue
		}
		var err error
		if drafts[i], qs[i], err = d.Propose(ctxs[i], k[i]); err != nil {
			return nil, nil, 0, err
		}
		if c, ok := d.(interface{ caughtUp() int }); ok {
			caughtUp = max(caughtUp, c.caughtUp())
		}
	}
	return drafts, qs, caughtUp, nil
}

// shadow returns, when every drafter is prompt lookup (cheap enough to ask
// on a plain step), each one's first proposal for ctxs[i] or -1 for none;
// else nil.
func (ds Drafters) shadow(ctxs [][]int32) []int32 {
	for _, d := range ds {
		if _, ok := d.(*NgramDrafter); !ok {
			return nil
		}
	}
	out := make([]int32, len(ds))
	for i, d := range ds {
		out[i] = -1
		if p, _, _ := d.Propose(ctxs[i], 1); len(p) > 0 {
			out[i] = p[0]
		}
	}
	return out
}

// SpecBatch is one step of speculative decoding over n sequences, as
// SpecPolicy.Step runs it: Generate's loop (n = 1) and the server's
// batched decoding (n = the running batch) both drive it, so both share
// one draft-verify-accept routine and one draft-length policy.
type SpecBatch struct {
	// Ctx[i] is sequence i's committed context: the prompt and the tokens
	// generated so far, its pending tokens included.
	Ctx [][]int32
	// Pending[i] is the suffix of Ctx[i] that the target has not cached
	// yet: its newest token (more when the step also feeds the prompt).
	Pending [][]int32
	// Limit[i] bounds sequence i's proposals (the context and the tokens
	// it may still generate).
	Limit []int
	// Drafter proposes for all sequences.
	Drafter BatchDrafter
	// Verifiers[i] is sequence i's target sampler; nil (or a nil slice)
	// means greedy.
	Verifiers []Verifier
	// Verify feeds toks[i] (Pending[i] and the proposals) to the target,
	// all sequences in one pass, and returns per sequence the logits of
	// its last rows[i] positions (rows[i]×vocab) and the routed experts
	// the pass touched (all layers; 0 if unknown).
	Verify func(toks [][]int32, rows []int) (logits [][]float32, touched int, err error)
	// Cold marks a step whose times do not count (a request's first pass).
	Cold bool

	// Set by Step: Drafts[i] are sequence i's proposals, of which the
	// first Accepted[i] were accepted, and Next[i] is the target's token
	// after them. The caller commits them and rolls the target's cache
	// back to the committed tokens.
	Drafts   [][]int32
	Accepted []int
	Next     []int32
	// Observed is what the step told the policy.
	Observed SpecStep
}

// Step runs one step of speculative decoding over b with the policy's K
// (K = 0: a plain step, one token per sequence): the drafter proposes up to
// min(K, Limit[i]) tokens per sequence, the target scores every pending
// token and proposal in one pass, VerifyDrafts keeps a prefix of each
// sequence's proposals plus one token of the target's own, and the policy
// observes the step's cost and yield. In a plain step a prompt-lookup
// drafter still proposes, unverified, to estimate what speculation would
// accept (SpecStep's shadow counts).
func (p *SpecPolicy) Step(b *SpecBatch) error {
	n := len(b.Ctx)
	kp := p.K()
	b.Drafts = slices.Grow(b.Drafts[:0], n)[:n]
	b.Accepted = slices.Grow(b.Accepted[:0], n)[:n]
	b.Next = slices.Grow(b.Next[:0], n)[:n]
	clear(b.Drafts)
	clear(b.Accepted)
	k := make([]int, n)
	propose := false
	for i := range k {
		k[i] = max(0, min(kp, b.Limit[i]))
		propose = propose || k[i] > 0
	}
	var qs [][][]float32
	caughtUp := 0
	t0 := time.Now()
	if propose {
		d, q, c, err := b.Drafter.ProposeBatch(b.Ctx, k)
		if err != nil {
			return fmt.Errorf("draft: %w", err)
		}
		if len(d) != n || q != nil && len(q) != n {
			return fmt.Errorf("draft: %d proposal lists for %d sequences", len(d), n)
		}
		for i := range n {
			b.Drafts[i] = d[i][:min(len(d[i]), k[i])]
		}
		qs, caughtUp = q, c
	}
	draftTime := time.Since(t0).Seconds()
	var shadow []int32
	if ds, ok := b.Drafter.(Drafters); ok && kp == 0 {
		shadow = ds.shadow(b.Ctx)
	}

	// Verify: the target scores the pending tokens and all proposals in
	// one pass; the last len(drafts)+1 rows of each are p_1..p_{K+1}.
	t1 := time.Now()
	toks := make([][]int32, n)
	rows := make([]int, n)
	st := SpecStep{K: kp, Seqs: n, DraftSeconds: draftTime}
	clean := !b.Cold
	for i := range n {
		toks[i] = append(slices.Clip(b.Pending[i]), b.Drafts[i]...)
		rows[i] = len(b.Drafts[i]) + 1
		st.Rows += len(toks[i])
		clean = clean && len(b.Pending[i]) == 1
	}
	st.Timed, st.CatchUp = clean && caughtUp <= 2, clean && caughtUp > 2
	lg, touched, err := b.Verify(toks, rows)
	if err == nil && len(lg) != n {
		err = fmt.Errorf("%d logit rows for %d sequences", len(lg), n)
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	st.VerifySeconds = time.Since(t1).Seconds()
	st.Touched = touched
	for i := range n {
		if len(lg[i]) == 0 || len(lg[i])%rows[i] != 0 {
			return fmt.Errorf("verify: %d logits for %d positions of sequence %d", len(lg[i]), rows[i], i)
		}
		V := len(lg[i]) / rows[i]
		p.pbuf = scratchbuf.Grow(p.pbuf, V)
		p.rbuf = scratchbuf.Grow(p.rbuf, V)
		var vs Verifier
		if b.Verifiers != nil {
			vs = b.Verifiers[i]
		}
		var q [][]float32
		if qs != nil {
			q = qs[i]
		}
		b.Accepted[i], b.Next[i] = VerifyDrafts(vs, lg[i], b.Drafts[i], q, p.pbuf, p.rbuf)
		st.Proposed += len(b.Drafts[i])
		st.Accepted += b.Accepted[i]
		if len(b.Drafts[i]) > 0 {
			st.Runs = append(st.Runs, DraftRun{Proposed: len(b.Drafts[i]), Accepted: b.Accepted[i]})
		}
		st.Tokens += b.Accepted[i] + 1
		if shadow != nil {
			st.ShadowAsked++
			if shadow[i] >= 0 {
				st.ShadowProposed++
				if shadow[i] == b.Next[i] {
					st.ShadowAccepted++
				}
			}
		}
	}
	b.Observed = st
	p.Observe(st)
	return nil
}

// Verifier is the target's side of a speculative step: its filtered
// distribution and its randomness. *Sampler implements it.
type Verifier interface {
	ProbDrawer
	// Probs writes into dst the distribution the target samples from.
	Probs(logits, dst []float32)
}

// VerifyDrafts is the acceptance routine of speculative decoding, shared by
// Generate and the server. rows holds the target's logits for the
// len(drafts)+1 positions that follow the committed context: row i scores
// the position of drafts[i], and the last row the position after all of
// them. It returns how many drafts are accepted and the token that follows
// them.
//
// With s nil (greedy) a draft is accepted iff it is the target's argmax,
// and the next token is the argmax of the first rejected position (or of
// the last row), so the output equals plain greedy decoding. Otherwise
// each draft goes through SpeculativeAccept against the distribution qs[i]
// it was drawn from (nil qs: point masses); the first rejection's
// replacement and, if all are accepted, a bonus token from the last row
// make every token distributed exactly as the target's. p and resid are
// scratch of one vocabulary each.
func VerifyDrafts(s Verifier, rows []float32, drafts []int32, qs [][]float32, p, resid []float32) (accepted int, next int32) {
	V := len(rows) / (len(drafts) + 1)
	for i := 0; i <= len(drafts); i++ {
		row := rows[i*V : (i+1)*V]
		if s == nil {
			a := Argmax(row)
			if i < len(drafts) && a == drafts[i] {
				continue
			}
			return i, a
		}
		s.Probs(row, p)
		if i == len(drafts) {
			return i, s.SampleProbs(p)
		}
		var q []float32
		if qs != nil {
			q = qs[i]
		}
		if t, ok := SpeculativeAccept(s, p, q, drafts[i], resid); !ok {
			return i, t
		}
	}
	return len(drafts), 0 // not reached: the last row always returns
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
// it is d by acceptance. A nil q is the point mass on d (a deterministic
// draft such as prompt lookup): d is kept with probability p[d], else the
// result is drawn from p without d. resid (len(p) floats) receives the residual and may
// alias p, in which case p is overwritten. Sums are accumulated in float64.
func SpeculativeAccept(r ProbDrawer, p, q []float32, d int32, resid []float32) (tok int32, accepted bool) {
	if q == nil {
		return acceptPoint(r, p, d, resid)
	}
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

// acceptPoint is SpeculativeAccept for the point mass q = δ_d.
func acceptPoint(r ProbDrawer, p []float32, d int32, resid []float32) (int32, bool) {
	pd := float64(p[d])
	if pd >= 1 || r.Float64() < pd {
		return d, true
	}
	resid = resid[:len(p)]
	copy(resid, p)
	resid[d] = 0
	var sum float64
	for _, x := range resid {
		sum += float64(max(x, 0))
	}
	if sum <= 0 {
		return d, true // p is the point mass on d up to rounding
	}
	return r.SampleProbs(resid), false
}
