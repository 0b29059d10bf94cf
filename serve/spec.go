package serve

import (
	"fmt"
	"time"

	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/internal/scratch"
)

// specOn reports whether the server speculates at all: with a draft model
// or with prompt lookup.
func (s *scheduler) specOn() bool { return s.draft != nil || s.cfg.ngram }

// attachDraft makes j eligible for speculation: greedy jobs always, sampled
// jobs when the target's (and a draft model's) samplers expose their
// distributions. With a draft model j gets a draft sequence, with prompt
// lookup an infer.NgramDrafter.
func (s *scheduler) attachDraft(j *job) {
	if j.pen != nil {
		return // penalties change the target's distribution step by step
	}
	if !j.greedy {
		tp, ok := j.sampler.(ProbSampler)
		if !ok {
			return
		}
		if s.draft != nil {
			o := j.sampleOpts
			o.Seed ^= 0x5bd1e9955bd1e995
			dp, ok := s.draft.NewSampler(o).(ProbSampler)
			if !ok {
				return
			}
			j.dprob = dp
		}
		j.tprob = tp
	}
	if s.draft != nil {
		j.draft = s.draft.NewSeq(j.kv)
	} else {
		j.ngram = &infer.NgramDrafter{}
	}
	j.spec = true
}

// policy returns the draft-length policy for batches of n sequences: the
// price of verification and the tokens speculation yields both depend on
// the batch, so each size learns its own K, down to 0 (plain steps).
func (s *scheduler) policy(n int) *infer.SpecPolicy {
	if s.policies == nil {
		s.policies = map[int]*infer.SpecPolicy{}
	}
	p := s.policies[n]
	if p == nil {
		var cost infer.CostModel
		if c, ok := s.eng.(interface{ VerifyCost() infer.CostModel }); ok {
			cost = c.VerifyCost()
		}
		p = infer.NewSpecPolicy(infer.SpecPolicyOptions{K: s.cfg.draftTokens, MaxK: 2 * s.cfg.draftTokens, Cost: cost})
		s.policies[n] = p
	}
	return p
}

// decode advances the running batch by one step: speculative when every
// sequence qualifies and the batch's policy says it pays (K > 0), plain
// otherwise. A plain step of a batch that could speculate is timed for the
// policy, which compares the two by tokens per second.
func (s *scheduler) decode(running []*job, free func(*job, string, error)) error {
	pol, ok := s.specPolicy(running)
	if ok && pol.K() > 0 {
		s.speculate(running, pol, free)
		return nil
	}
	// With prompt lookup, plain steps still propose (unverified, ~free)
	// and count whether the proposal was the token produced: the policy's
	// shadow acceptance.
	var shadow []int32
	if ok && s.cfg.ngram {
		shadow = make([]int32, len(running))
		for i, j := range running {
			shadow[i] = -1
			ctx := append(j.hist, j.next)
			if d, _, _ := j.ngram.Propose(ctx, 1); len(d) > 0 {
				shadow[i] = d[0]
			}
			j.hist = ctx[:len(ctx)-1]
		}
	}
	t := time.Now()
	gen := s.m.generatedTokens.Load()
	err := s.step(running, free)
	if ok && err == nil {
		st := infer.SpecStep{Seqs: len(running), Tokens: int(s.m.generatedTokens.Load() - gen), Rows: len(running),
			Touched: s.touched(), VerifySeconds: time.Since(t).Seconds(), Timed: true}
		for i, j := range running {
			if shadow != nil && j.seq != nil {
				st.ShadowAsked++
			}
			if shadow != nil && shadow[i] >= 0 && j.seq != nil {
				st.ShadowProposed++
				if j.next == shadow[i] {
					st.ShadowAccepted++
				}
			}
		}
		pol.Observe(st)
	}
	return err
}

// specPolicy returns the policy of the batch when it can speculate: a
// speculating server, at most specMaxBatch sequences, all decoding (no
// prompt left to feed) and all eligible.
func (s *scheduler) specPolicy(running []*job) (*infer.SpecPolicy, bool) {
	if !s.specOn() || len(running) > s.cfg.specMaxBatch {
		return nil, false
	}
	for _, j := range running {
		if !j.spec || j.fed < len(j.prompt) {
			return nil, false
		}
	}
	return s.policy(len(running)), true
}

// touched returns the routed experts the engine's last pass touched, 0 if
// it does not say.
func (s *scheduler) touched() int {
	if t, ok := s.eng.(interface{ LastTouched() int }); ok {
		return t.LastTouched()
	}
	return 0
}

// speculate runs one step of speculative decoding over the running batch
// (all decoding, all eligible): each sequence's drafter proposes up to K
// tokens (a draft model in K batched passes, or prompt lookup), the target
// checks all proposals in one batched pass, and infer.VerifyDrafts keeps
// the accepted ones plus one token of the target's own: greedy output is
// exactly plain greedy decoding, sampled output has exactly the target's
// distribution (Leviathan et al. 2023, Chen et al. 2023).
func (s *scheduler) speculate(running []*job, pol *infer.SpecPolicy, free func(*job, string, error)) {
	n := len(running)
	K := pol.K()
	k := make([]int, n) // proposals per sequence
	props := make([][]int32, n)
	qs := make([][][]float32, n)
	t0 := time.Now()
	caughtUp := 0
	if s.draft != nil {
		maxK := 0
		for i, j := range running {
			k[i] = max(0, min(K, j.maxTokens-j.generated-1))
			maxK = max(maxK, k[i])
		}
		var err error
		if caughtUp, err = s.draftModel(running, k, maxK, props); err != nil {
			for _, j := range running {
				free(j, "", fmt.Errorf("draft forward pass: %w", err))
			}
			return
		}
		for i, j := range running {
			if j.dprob != nil {
				qs[i] = j.q[:len(props[i])]
			}
		}
	} else {
		for i, j := range running {
			k[i] = max(0, min(K, j.maxTokens-j.generated-1))
			s.cbuf = append(append(s.cbuf[:0], j.hist...), j.next)
			d, _, _ := j.ngram.Propose(s.cbuf, k[i])
			props[i] = append(props[i], d...)
		}
	}
	draftTime := time.Since(t0).Seconds()

	// Target: verify [next, proposals...] of every sequence in one pass.
	t1 := time.Now()
	seqs := make([]Seq, n)
	toks := make([][]int32, n)
	base := make([]int, n)
	rows := 0
	for i, j := range running {
		seqs[i] = j.seq
		base[i] = j.seq.Len()
		toks[i] = append([]int32{j.next}, props[i]...)
		rows += len(toks[i])
	}
	logits, err := s.forward(s.eng, seqs, toks, true)
	if err == nil && len(logits) != n {
		err = fmt.Errorf("engine returned %d logit rows for %d sequences", len(logits), n)
	}
	if err != nil {
		for _, j := range running {
			free(j, "", fmt.Errorf("forward pass: %w", err))
		}
		return
	}
	verifyTime := time.Since(t1).Seconds()
	s.m.steps.Add(1)
	s.m.stepTokens.Add(uint64(rows))
	s.m.batchSize.observe(float64(n))
	now := time.Now()
	st := infer.SpecStep{K: K, Seqs: n, Rows: rows, Touched: s.touched(), DraftSeconds: draftTime, VerifySeconds: verifyTime,
		Timed: caughtUp <= 2}
	for i, j := range running {
		if len(logits[i]) == 0 || len(logits[i])%len(toks[i]) != 0 {
			free(j, "", fmt.Errorf("engine returned %d logits for %d positions", len(logits[i]), len(toks[i])))
			continue
		}
		var vs infer.Verifier
		if j.tprob != nil {
			vs = j.tprob
			v := len(logits[i]) / len(toks[i])
			s.pbuf = scratch.Grow(s.pbuf, v)
			s.rbuf = scratch.Grow(s.rbuf, v)
		}
		acc, next := infer.VerifyDrafts(vs, logits[i], props[i], qs[i], s.pbuf, s.rbuf)
		st.Proposed += len(props[i])
		st.Accepted += acc
		s.m.specProposed.Add(uint64(len(props[i])))
		s.m.specAccepted.Add(uint64(acc))
		j.hist = append(j.hist, j.next)
		for x, t := range append(props[i][:acc:acc], next) {
			s.accept(j, t, now, free)
			st.Tokens++
			if j.seq == nil {
				break
			}
			if x < acc {
				j.hist = append(j.hist, t)
			}
		}
		if j.seq == nil {
			continue
		}
		keep := base[i] + 1 + acc
		j.seq.Truncate(keep)
		if j.draft != nil {
			j.draft.Truncate(keep)
		}
	}
	pol.Observe(st)
}

// draftModel fills props with k[i] proposals of the draft model for each
// running sequence: it catches up on the target's history plus the pending
// token, then proposes, one batched pass per proposal. It returns the most
// history tokens a sequence caught up on (a long catch-up is a prefill, so
// the step's timing does not count).
func (s *scheduler) draftModel(running []*job, k []int, maxK int, props [][]int32) (int, error) {
	caughtUp := 0
	for r := 0; r < maxK; r++ {
		var seqs []Seq
		var toks [][]int32
		var idx []int
		for i, j := range running {
			if r >= k[i] {
				continue
			}
			var t []int32
			if r == 0 {
				t = append(t, j.hist[j.draft.Len():]...)
				t = append(t, j.next)
				caughtUp = max(caughtUp, len(t))
			} else {
				t = []int32{props[i][r-1]}
			}
			seqs, toks, idx = append(seqs, j.draft), append(toks, t), append(idx, i)
		}
		logits, err := s.forward(s.draft, seqs, toks, false)
		if err == nil && len(logits) != len(seqs) {
			err = fmt.Errorf("draft returned %d logit rows for %d sequences", len(logits), len(seqs))
		}
		if err != nil {
			return 0, err
		}
		for x, i := range idx {
			j := running[i]
			if j.dprob == nil {
				props[i] = append(props[i], infer.Argmax(logits[x]))
				continue
			}
			if len(j.q) <= r {
				j.q = append(j.q, nil)
			}
			j.q[r] = scratch.Grow(j.q[r], len(logits[x]))
			j.dprob.Probs(logits[x], j.q[r])
			props[i] = append(props[i], j.dprob.SampleProbs(j.q[r]))
		}
	}
	return caughtUp, nil
}
