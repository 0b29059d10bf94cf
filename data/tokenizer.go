package data

import (
	"context"
	"errors"
	"fmt"

	"github.com/moe-llm/moe/tokenizer"
)

// errBudget stops a source's document walk once its byte budget is spent.
var errBudget = errors.New("byte budget reached")

// TrainTokenizer trains a byte-level BPE tokenizer of vocabSize tokens on the
// documents of sources. When maxBytes > 0 at most about maxBytes bytes are
// read, shared among the sources in proportion to size × epochs (so a
// code@4 source weighs as it will in training); each source contributes its
// first documents within its share. Training on a sample of a few hundred
// megabytes gives nearly the same vocabulary as the whole corpus.
func TrainTokenizer(ctx context.Context, sources []Source, vocabSize int, maxBytes int64) (*tokenizer.Tokenizer, error) {
	if len(sources) == 0 {
		return nil, errors.New("train tokenizer: no sources")
	}
	budgets := make([]int64, len(sources))
	var weight float64
	sizes := make([]float64, len(sources))
	for i, s := range sources {
		_, size, err := fingerprint(s.Path)
		if err != nil {
			return nil, fmt.Errorf("train tokenizer: source %s: %w", s.Name, err)
		}
		sizes[i] = float64(size) * float64(max(s.Epochs, 1))
		weight += sizes[i]
	}
	for i := range budgets {
		if maxBytes <= 0 || weight == 0 {
			budgets[i] = -1
		} else {
			budgets[i] = max(1, int64(float64(maxBytes)*sizes[i]/weight))
		}
	}
	var walkErr error
	docs := func(yield func([]byte) bool) {
		for i, s := range sources {
			var used int64
			_, err := Documents(ctx, s, func(doc []byte) error {
				if budgets[i] >= 0 && used >= budgets[i] {
					return errBudget
				}
				used += int64(len(doc))
				if !yield(doc) {
					return context.Canceled
				}
				return nil
			})
			if err != nil && !errors.Is(err, errBudget) {
				walkErr = err
				return
			}
		}
	}
	tok, err := tokenizer.Train(ctx, docs, vocabSize)
	if walkErr != nil {
		return nil, fmt.Errorf("train tokenizer: %w", walkErr)
	}
	if err != nil {
		return nil, fmt.Errorf("train tokenizer: %w", err)
	}
	return tok, nil
}
