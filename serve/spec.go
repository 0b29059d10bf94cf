package serve

import (
	"fmt"
	"time"
)

// speculate runs one step of speculative decoding when every running
// sequence is a greedy decode with a draft sequence: the draft proposes up
// to draftTokens tokens per sequence (draftTokens batched draft passes), the
// target checks all proposals in one batched pass, and each sequence keeps
// the longest prefix the target agrees with plus the target's own next
// token. Output is identical to plain greedy decoding. It returns false,
// doing nothing, when the batch does not qualify.
func (s *scheduler) speculate(running []*job, free func(*job, string, error)) bool {
	for _, j := range running {
		if j.draft == nil || j.fed < len(j.prompt) {
			return false
		}
	}
	n := len(running)
	k := make([]int, n) // proposals per sequence
	maxK := 0
	for i, j := range running {
		k[i] = min(s.cfg.draftTokens, j.maxTokens-j.generated-1)
		maxK = max(maxK, k[i])
	}
	if maxK <= 0 {
		return false
	}
	// Draft: catch up on the target's history plus the pending token, then
	// propose greedily, one batched pass per proposal.
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
		logits, err := s.draft.Forward(seqs, toks, false)
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
			props[i] = append(props[i], argmax(logits[x]))
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
	logits, err := s.eng.Forward(seqs, toks, true)
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
			t := j.sampler.Sample(logits[i][r*v : (r+1)*v])
			agree := r < len(props[i]) && t == props[i][r]
			s.accept(j, t, now, free)
			if j.seq == nil || !agree {
				break
			}
			accepted++
			j.hist = append(j.hist, t)
		}
		s.m.specProposed.Add(uint64(len(props[i])))
		s.m.specAccepted.Add(uint64(accepted))
		if j.seq == nil {
			continue
		}
		keep := base[i] + 1 + accepted
		j.seq.Truncate(keep)
		j.draft.Truncate(keep)
	}
	return true
}

// argmax returns the index of the largest logit (the first on ties).
func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}
