package infer

import (
	"context"
	"fmt"

	"github.com/moe-llm/moe/compute"
)

// evalPiece bounds the positions of one forward pass in Score, so that
// the logits of a piece (piece × vocabulary floats) stay small.
const evalPiece = 128

// Score runs each window but its last token through the model on a fresh
// sequence (causal routing, as in generation) and sums the cross-entropy
// in nats of the next-token predictions at positions from through
// len(window)-2: window[p+1] given window[:p+1]. A window may be one token
// longer than the context. each, if set, is called with every scored
// target. It returns the sum and the number of scored targets.
func (m *Model) Score(ctx context.Context, windows [][]int32, from int, each func(target int32)) (float64, int, error) {
	if from < 0 {
		return 0, 0, fmt.Errorf("infer: score: negative first position %d", from)
	}
	V := m.Cfg.VocabSize
	var sum float64
	n := 0
	for wi, w := range windows {
		in := len(w) - 1 // the last token is only a target
		if in > m.Context() {
			return 0, 0, fmt.Errorf("infer: score: window %d predicts %d tokens, more than the context of %d", wi, in, m.Context())
		}
		seq := m.NewSeq(max(in, 1))
		for p0 := 0; p0 < in; p0 += evalPiece {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
			p1 := min(p0+evalPiece, in)
			logits, err := m.Forward([]*Seq{seq}, [][]int32{w[p0:p1]}, true)
			if err != nil {
				return 0, 0, fmt.Errorf("infer: score: window %d: %w", wi, err)
			}
			for p := max(p0, from); p < p1; p++ {
				row := logits[0][(p-p0)*V : (p-p0+1)*V]
				target := w[p+1]
				if target < 0 || int(target) >= V {
					return 0, 0, fmt.Errorf("infer: score: token %d is outside the vocabulary of %d", target, V)
				}
				sum += compute.LogSumExp(row) - float64(row[target])
				n++
				if each != nil {
					each(target)
				}
			}
		}
	}
	return sum, n, nil
}

// PerplexityChunks cuts ids (a text tokenized whole, BOS first where the
// vocabulary adds it) into the windows llama.cpp's llama-perplexity scores:
// as many whole chunks of n tokens as fit, whose first token becomes BOS
// where the vocabulary adds it; Score them from n/2 (each chunk's second
// half is predicted with at least half a chunk of context).
func (m *Model) PerplexityChunks(ids []int32, n int) ([][]int32, error) {
	if n < 4 {
		return nil, fmt.Errorf("infer: perplexity chunks of %d tokens: need at least 4", n)
	}
	if len(ids) < 2*n {
		return nil, fmt.Errorf("infer: perplexity with chunks of %d tokens needs at least %d tokens; the text has %d", n, 2*n, len(ids))
	}
	sp := m.Tok.Specials()
	var out [][]int32
	for start := 0; start+n <= len(ids); start += n {
		c := append([]int32(nil), ids[start:start+n]...)
		if sp.AddBOS {
			c[0] = sp.BOS
		}
		out = append(out, c)
	}
	return out, nil
}
