package infer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
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
// 2023) with opts.Drafter, or a ModelDrafter of opts.Draft. Each step the
// SpecPolicy gives K (0: a plain step), the drafter proposes up to K tokens,
// the target scores its pending token and the proposals in one pass, and
// VerifyDrafts keeps a prefix of them plus one token of the target's own.
// Invariant between steps: the target's cache holds the committed context
// except its pending token, the newest committed one.
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
	pol := NewSpecPolicy(SpecPolicyOptions{K: opts.DraftTokens, MaxK: opts.MaxDraftTokens, Fixed: opts.FixedDraftTokens, Cost: m.VerifyCost()})
	var vs Verifier // nil: greedy
	if ps := NewSampler(opts.Sampling); !ps.Greedy() {
		vs = ps
	}
	V := m.Cfg.VocabSize
	p := make([]float32, V)
	resid := make([]float32, V)
	committed := slices.Clone(prompt)
	tpending := append([]int32(nil), pending...)
	steps := 0
	o.rounds = &steps // the first step's tokens are the prefill pass's
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		kp := pol.K()
		k := min(kp, seq.maxLen-seq.Len()-len(tpending))
		if opts.MaxTokens > 0 {
			k = min(k, opts.MaxTokens-len(o.tokens)-1)
		}
		var drafts []int32
		var qs [][]float32
		t0 := time.Now()
		draftTimed := true
		if k > 0 {
			var err error
			if drafts, qs, err = dr.Propose(committed, k); err != nil {
				return fmt.Errorf("infer: %w", err)
			}
			drafts = drafts[:min(len(drafts), k)]
			if c, ok := dr.(interface{ caughtUp() int }); ok && c.caughtUp() > 2 {
				draftTimed = false
			}
		}
		draftTime := time.Since(t0).Seconds()
		// A plain step with a cheap drafter: propose anyway, unverified,
		// and count whether the proposal was the token produced.
		var shadow int32 = -1
		ng, asked := dr.(*NgramDrafter)
		if asked = asked && kp == 0; asked {
			if d, _, _ := ng.Propose(committed, 1); len(d) > 0 {
				shadow = d[0]
			}
		}

		// Verify: the target scores its pending tokens and all drafts in
		// one pass; the last len(drafts)+1 rows are p_1..p_{K+1}.
		t1 := time.Now()
		batch := append(append([]int32(nil), tpending...), drafts...)
		lg, st, err := m.ForwardLast([]*Seq{seq}, [][]int32{batch}, true, []int{len(drafts) + 1})
		if err != nil {
			return fmt.Errorf("infer: verify: %w", err)
		}
		verifyTime := time.Since(t1).Seconds()
		steps++
		if steps == 1 {
			res.PrefillSeconds = time.Since(start).Seconds()
		}
		acc, next := VerifyDrafts(vs, lg[0], drafts, qs, p, resid)
		if len(drafts) > 0 {
			res.Rounds++
			res.Proposed += len(drafts)
			res.Accepted += acc
			res.DraftSeconds += draftTime
			res.VerifySeconds += verifyTime
			res.TargetTouched += st.TouchedTotal()
		}
		ss := SpecStep{K: kp, Seqs: 1, Proposed: len(drafts), Accepted: acc, Tokens: acc + 1, Rows: len(batch),
			Touched: st.TouchedTotal(), DraftSeconds: draftTime, VerifySeconds: verifyTime,
			Timed: steps > 1 && len(tpending) == 1 && draftTimed}
		if asked {
			ss.ShadowAsked = 1
		}
		if shadow >= 0 {
			ss.ShadowProposed = 1
			if shadow == next {
				ss.ShadowAccepted = 1
			}
		}
		pol.Observe(ss)
		res.FinalDraftTokens = pol.K()

		// Roll the target's cache back to the committed tokens.
		seq.Truncate(seq.Len() - len(batch) + len(tpending) + acc)
		tpending = []int32{next}
		for _, t := range append(drafts[:acc:acc], next) {
			committed = append(committed, t)
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
