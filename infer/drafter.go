package infer

import (
	"errors"
	"fmt"
	"slices"
)

// Drafter proposes tokens for speculative decoding. The target verifies
// every proposal (VerifyDrafts), so a drafter only changes the speed, never
// the output: greedy text is identical to plain decoding and sampled text
// has exactly the target's distribution.
type Drafter interface {
	// Propose returns up to k tokens that may follow ctx, which holds every
	// committed token (the prompt and the tokens generated so far). When
	// the proposals were sampled, qs[i] is the distribution (one float per
	// vocabulary entry) proposal i was drawn from; a drafter whose proposals
	// are a function of ctx alone returns nil qs (each proposal is then a
	// point mass). The slices are valid until the next call.
	Propose(ctx []int32, k int) (drafts []int32, qs [][]float32, err error)
}

// ModelDrafter drafts with a smaller model that shares the target's
// tokenizer: it samples each proposal from the draft model's filtered
// distribution (the target's SampleOptions, another seed).
type ModelDrafter struct {
	m       *Model
	seq     *Seq
	s       *Sampler
	lowPrec bool
	qs      [][]float32
	drafts  []int32
	fed     int // context tokens fed by the last Propose before drafting
}

// NewModelDrafter returns a drafter running draft for target with
// sampling options so. seq, if non-nil, is the draft's sequence, whose
// cached prefix is reused; else one of maxLen positions is made.
func NewModelDrafter(target, draft *Model, seq *Seq, maxLen int, so SampleOptions) (*ModelDrafter, error) {
	if err := CheckDraft(target, draft); err != nil {
		return nil, err
	}
	if seq == nil {
		seq = draft.NewSeq(maxLen)
	} else if seq.m != draft {
		return nil, errors.New("the draft sequence belongs to another model")
	}
	so.Seed ^= 0x5bd1e995
	return &ModelDrafter{m: draft, seq: seq, s: NewSampler(so), lowPrec: draftLowPrec(target, draft)}, nil
}

// Propose implements Drafter: the draft catches up on the context (its
// cache keeps the longest common prefix) and proposes k tokens, one forward
// pass each.
func (d *ModelDrafter) Propose(ctx []int32, k int) ([]int32, [][]float32, error) {
	if len(ctx) > d.seq.maxLen {
		return nil, nil, fmt.Errorf("context of %d tokens is longer than the draft's context of %d tokens", len(ctx), d.seq.maxLen)
	}
	// After the context the cache holds len(ctx) tokens, and each proposal
	// but the last is fed back.
	k = min(k, d.seq.maxLen-len(ctx)+1)
	d.drafts = d.drafts[:0]
	d.fed = 0
	if k <= 0 {
		return nil, nil, nil
	}
	in := syncSeq(d.seq, ctx)
	d.fed = len(in)
	defer d.seq.reusingLogits()() // each proposal's logits become d.qs[i]
	V := d.m.Cfg.VocabSize
	for len(d.qs) < k {
		d.qs = append(d.qs, make([]float32, V))
	}
	for i := 0; i < k; i++ {
		lg, _, err := d.m.forward([]*Seq{d.seq}, [][]int32{in}, false, nil, d.lowPrec)
		if err != nil {
			return nil, nil, fmt.Errorf("draft: %w", err)
		}
		d.s.Probs(lg[0], d.qs[i])
		t := d.s.SampleProbs(d.qs[i])
		d.drafts = append(d.drafts, t)
		in = []int32{t}
	}
	return d.drafts, d.qs[:k], nil
}

// caughtUp reports how many context tokens the last Propose fed before
// drafting: more than two means its time includes a prefill.
func (d *ModelDrafter) caughtUp() int { return d.fed }

// NgramDrafter is prompt-lookup drafting (no model): it finds the latest
// earlier occurrence of the last n tokens of the context (n from MaxN down
// to MinN) and proposes the tokens that followed it (continuing, like an
// overlapping copy, past the end of the context). It suits edits,
// summaries and code, where the answer repeats spans of the prompt. Its
// proposals are a function of the context, so verification treats each as
// a point mass: accepted with the target's probability of it, which keeps
// sampling exact.
type NgramDrafter struct {
	// MaxN and MinN bound the length of the matched suffix (defaults 3
	// and 1); longer matches are tried first.
	MaxN, MinN int
	out        []int32
}

// Propose implements Drafter.
func (d *NgramDrafter) Propose(ctx []int32, k int) ([]int32, [][]float32, error) {
	maxN, minN := d.MaxN, d.MinN
	if maxN <= 0 {
		maxN = 3
	}
	if minN <= 0 {
		minN = 1
	}
	d.out = d.out[:0]
	L := len(ctx)
	if k <= 0 || L < 2 {
		return nil, nil, nil
	}
	for n := min(maxN, L-1); n >= minN; n-- {
		suffix := ctx[L-n:]
		last := suffix[n-1]
		// An occurrence ctx[i:i+n] that ends before the suffix's last token,
		// latest first, so that its continuation ctx[i+n:] is not empty.
		for i := L - n - 1; i >= 0; i-- {
			if ctx[i+n-1] != last || !slices.Equal(ctx[i:i+n], suffix) {
				continue
			}
			// Copy what followed; past the end of the context the copy
			// continues from its own output (a repeating phrase repeats on).
			for j := i + n; len(d.out) < k; j++ {
				if j < L {
					d.out = append(d.out, ctx[j])
				} else {
					d.out = append(d.out, d.out[j-L])
				}
			}
			return d.out, nil, nil
		}
	}
	return nil, nil, nil
}
