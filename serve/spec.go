package serve

import (
	"fmt"
	"time"

	"github.com/moe-llm/moe/infer"
	"github.com/moe-llm/moe/internal/scratch"
)

// attachDraft gives j a draft sequence when it can be speculated: greedy
// jobs always, sampled jobs when the target's and the draft's samplers both
// expose their distributions.
func (s *scheduler) attachDraft(j *job) {
	if j.pen != nil {
		return // penalties change the target's distribution step by step
	}
	if !j.greedy {
		tp, ok := j.sampler.(ProbSampler)
		if !ok {
			return
		}
		o := j.sampleOpts
		o.Seed ^= 0x5bd1e9955bd1e995
		dp, ok := s.draft.NewSampler(o).(ProbSampler)
		if !ok {
			return
		}
		j.tprob, j.dprob = tp, dp
	}
	j.draft = s.draft.NewSeq(j.kv)
}

// speculate runs one step of speculative decoding when every running
// sequence is decoding with a draft sequence and the batch is small: the
// draft proposes K tokens per sequence (K batched draft passes; each
// sequence's K starts at draftTokens and adapts between 1 and twice that to
// its acceptance), the target checks all proposals in one batched pass, and
// each sequence keeps the proposals the target accepts plus one token of
// the target's own. Greedy sequences keep the longest prefix that matches
// the target's argmax, so their output is exactly plain greedy decoding;
// sampled ones use speculative sampling (Leviathan et al. 2023, Chen et al.
// 2023), whose output has exactly the target's distribution. It returns
// false, doing nothing, when the batch does not qualify.
func (s *scheduler) speculate(running []*job, free func(*job, string, error)) bool {
	if len(running) > s.cfg.specMaxBatch {
		return false
	}
	for _, j := range running {
		if j.draft == nil || j.fed < len(j.prompt) {
			return false
		}
	}
	n := len(running)
	k := make([]int, n) // proposals per sequence
	maxK := 0
	for i, j := range running {
		if j.specK == 0 {
			j.specK = s.cfg.draftTokens
		}
		k[i] = min(j.specK, j.maxTokens-j.generated-1)
		maxK = max(maxK, k[i])
	}
	if maxK <= 0 {
		return false
	}
	// Draft: catch up on the target's history plus the pending token, then
	// propose, one batched pass per proposal.
	props := make([][]int32, n)
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
			for _, j := range running {
				free(j, "", fmt.Errorf("draft forward pass: %w", err))
			}
			return true
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
	// Target: verify [next, proposals...] of every sequence in one pass.
	seqs := make([]Seq, n)
	toks := make([][]int32, n)
	base := make([]int, n)
	for i, j := range running {
		seqs[i] = j.seq
		base[i] = j.seq.Len()
		toks[i] = append([]int32{j.next}, props[i]...)
	}
	logits, err := s.forward(s.eng, seqs, toks, true)
	if err == nil && len(logits) != n {
		err = fmt.Errorf("engine returned %d logit rows for %d sequences", len(logits), n)
	}
	if err != nil {
		for _, j := range running {
			free(j, "", fmt.Errorf("forward pass: %w", err))
		}
		return true
	}
	ntok := 0
	for _, t := range toks {
		ntok += len(t)
	}
	s.m.steps.Add(1)
	s.m.stepTokens.Add(uint64(ntok))
	s.m.batchSize.observe(float64(n))
	now := time.Now()
	for i, j := range running {
		rows := len(toks[i])
		if rows == 0 || len(logits[i])%rows != 0 {
			free(j, "", fmt.Errorf("engine returned %d logits for %d positions", len(logits[i]), rows))
			continue
		}
		v := len(logits[i]) / rows
		j.hist = append(j.hist, j.next)
		accepted := 0
		for r := 0; r < rows && j.seq != nil; r++ {
			row := logits[i][r*v : (r+1)*v]
			var t int32
			agree := false
			switch {
			case r == len(props[i]):
				t = j.sampler.Sample(row) // every proposal accepted: one more from the target
			case j.tprob == nil:
				t = j.sampler.Sample(row)
				agree = t == props[i][r]
			default:
				s.pbuf = scratch.Grow(s.pbuf, v)
				j.tprob.Probs(row, s.pbuf)
				t, agree = infer.SpeculativeAccept(j.tprob, s.pbuf, j.q[r], props[i][r], s.pbuf)
			}
			s.accept(j, t, now, free)
			if j.seq == nil || !agree {
				break
			}
			accepted++
			j.hist = append(j.hist, t)
		}
		s.m.specProposed.Add(uint64(len(props[i])))
		s.m.specAccepted.Add(uint64(accepted))
		// Adapt this sequence's draft length: longer while every proposal
		// is accepted, shorter while most are rejected.
		switch kk := len(props[i]); {
		case kk == 0:
		case accepted == kk:
			j.specK = min(j.specK+1, 2*s.cfg.draftTokens)
		case 2*accepted < kk:
			j.specK = max(j.specK-1, 1)
		}
		if j.seq == nil {
			continue
		}
		keep := base[i] + 1 + accepted
		j.seq.Truncate(keep)
		j.draft.Truncate(keep)
	}
	return true
}
