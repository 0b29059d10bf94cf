package serve

import (
	"fmt"
	"slices"
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
// the batch, so each size learns its own K, down to 0 (plain steps). A new
// size starts from what the nearest size has learned (infer's
// SpecPolicy.Derive): its cost model then sees the batch before the first
// step, and a large batch, whose plain steps already share the weight
// reads, starts with plain steps when speculation is not rated to pay.
func (s *scheduler) policy(n int) *infer.SpecPolicy {
	if s.policies == nil {
		s.policies = map[int]*infer.SpecPolicy{}
	}
	p := s.policies[n]
	if p != nil {
		return p
	}
	near := 0
	for m := range s.policies {
		if near == 0 || abs(m-n) < abs(near-n) || abs(m-n) == abs(near-n) && m < near {
			near = m
		}
	}
	if near > 0 {
		p = s.policies[near].Derive(n)
	} else {
		var cost infer.CostModel
		if c, ok := s.eng.(interface{ VerifyCost() infer.CostModel }); ok {
			cost = c.VerifyCost()
		}
		p = infer.NewSpecPolicy(infer.SpecPolicyOptions{K: s.cfg.draftTokens, MaxK: 2 * s.cfg.draftTokens, Cost: cost,
			Fixed: s.cfg.fixedDraft, StartPlain: s.draft == nil}) // prompt lookup: its shadow acceptance decides
	}
	s.policies[n] = p
	return p
}

func abs(x int) int { return max(x, -x) }

// decode advances the running batch by one step. A batch that can
// speculate (every sequence eligible and decoding) runs infer's
// speculative step with its batch size's policy: speculative when the
// policy's K > 0, plain otherwise, timed either way for the policy, which
// compares the two by tokens per second. Other batches take a plain step.
func (s *scheduler) decode(running []*job, free func(*job, string, error)) error {
	pol, ok := s.specPolicy(running)
	if !ok {
		return s.step(running, free)
	}
	return s.speculate(running, pol, free)
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

// speculate runs one step of infer's speculative decoding
// (infer.SpecPolicy.Step, the step Generate runs) over the running batch
// (all decoding, all eligible): each sequence's drafter proposes up to K
// tokens (the draft model in K batched passes, or prompt lookup), the
// target checks all proposals in one batched pass, and infer.VerifyDrafts
// keeps the accepted ones plus one token of the target's own: greedy
// output is exactly plain greedy decoding, sampled output has exactly the
// target's distribution (Leviathan et al. 2023, Chen et al. 2023).
func (s *scheduler) speculate(running []*job, pol *infer.SpecPolicy, free func(*job, string, error)) error {
	n := len(running)
	b := &s.spec
	b.Ctx = b.Ctx[:0]
	b.Pending = b.Pending[:0]
	b.Limit = b.Limit[:0]
	b.Verifiers = b.Verifiers[:0]
	base := make([]int, n)
	for i, j := range running {
		j.hist = append(j.hist, j.next) // the pending token, dropped below
		b.Ctx = append(b.Ctx, j.hist)
		b.Pending = append(b.Pending, j.hist[len(j.hist)-1:])
		b.Limit = append(b.Limit, j.maxTokens-j.generated-1)
		var vs infer.Verifier
		if j.tprob != nil {
			vs = j.tprob
		}
		b.Verifiers = append(b.Verifiers, vs)
		base[i] = j.seq.Len()
	}
	if s.draft != nil {
		s.drafts.s, s.drafts.jobs = s, running
		b.Drafter = &s.drafts
	} else {
		ds := s.ngrams[:0]
		for _, j := range running {
			ds = append(ds, j.ngram)
		}
		s.ngrams = ds
		b.Drafter = ds
	}
	b.Verify = func(toks [][]int32, rows []int) ([][]float32, int, error) {
		seqs := make([]Seq, n)
		ntok := 0
		for i, j := range running {
			seqs[i] = j.seq
			ntok += len(toks[i])
		}
		lg, err := s.forward(s.eng, seqs, toks, true)
		if err != nil {
			return nil, 0, fmt.Errorf("forward pass: %w", err)
		}
		s.m.steps.Add(1)
		s.m.stepTokens.Add(uint64(ntok))
		s.m.batchSize.observe(float64(n))
		return lg, s.touched(), nil
	}
	err := pol.Step(b)
	for _, j := range running {
		j.hist = j.hist[:len(j.hist)-1]
	}
	if err != nil {
		for _, j := range running {
			free(j, "", err)
		}
		return err
	}
	now := time.Now()
	for i, j := range running {
		props, acc := b.Drafts[i], b.Accepted[i]
		s.m.specProposed.Add(uint64(len(props)))
		s.m.specAccepted.Add(uint64(acc))
		j.hist = append(j.hist, j.next)
		for x, t := range append(props[:acc:acc], b.Next[i]) {
			s.accept(j, t, now, free)
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
	return nil
}

// engineDrafter is the server's draft model as an infer.BatchDrafter: it
// proposes for every running sequence together, one batched pass of the
// draft Engine per proposal, sampling with each job's draft sampler (argmax
// for greedy jobs).
type engineDrafter struct {
	s     *scheduler
	jobs  []*job
	props [][]int32
	qs    [][][]float32
}

// ProposeBatch implements infer.BatchDrafter: each draft sequence first
// catches up on its context (the target's history plus the pending token),
// then proposes. ctxs[i] is jobs[i]'s context.
func (d *engineDrafter) ProposeBatch(ctxs [][]int32, k []int) ([][]int32, [][][]float32, int, error) {
	n := len(d.jobs)
	d.props = slices.Grow(d.props[:0], n)[:n]
	d.qs = slices.Grow(d.qs[:0], n)[:n]
	maxK := 0
	for i, j := range d.jobs {
		d.props[i], d.qs[i] = d.props[i][:0], nil
		maxK = max(maxK, k[i])
		if j.dprob != nil {
			d.qs[i] = j.q[:0]
		}
	}
	caughtUp := 0
	for r := 0; r < maxK; r++ {
		var seqs []Seq
		var toks [][]int32
		var idx []int
		for i, j := range d.jobs {
			if r >= k[i] {
				continue
			}
			var t []int32
			if r == 0 {
				t = ctxs[i][j.draft.Len():]
				caughtUp = max(caughtUp, len(t))
			} else {
				t = d.props[i][r-1 : r]
			}
			seqs, toks, idx = append(seqs, j.draft), append(toks, t), append(idx, i)
		}
		logits, err := d.s.forward(d.s.draft, seqs, toks, false)
		if err == nil && len(logits) != len(seqs) {
			err = fmt.Errorf("draft returned %d logit rows for %d sequences", len(logits), len(seqs))
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("draft forward pass: %w", err)
		}
		for x, i := range idx {
			j := d.jobs[i]
			if j.dprob == nil {
				d.props[i] = append(d.props[i], infer.Argmax(logits[x]))
				continue
			}
			if len(j.q) <= r {
				j.q = append(j.q, nil)
			}
			j.q[r] = scratch.Grow(j.q[r], len(logits[x]))
			j.dprob.Probs(logits[x], j.q[r])
			d.props[i] = append(d.props[i], j.dprob.SampleProbs(j.q[r]))
			d.qs[i] = j.q[:r+1]
		}
	}
	return d.props, d.qs, caughtUp, nil
}
