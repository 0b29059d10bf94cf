package tokenizer

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sort"
)

// MaxVocabSize bounds the vocabulary size Train accepts.
const MaxVocabSize = 1 << 20

// maxTrainPiece caps the length of a pre-token counted by Train.
const maxTrainPiece = 256

// MinVocabSize is the smallest vocabulary Train accepts: 256 bytes plus the
// special tokens.
const MinVocabSize = 256 + len(SpecialNames)

// Train learns a byte-level BPE vocabulary of vocabSize tokens (special tokens
// included) from the documents docs yields. Ids 0–255 are the single bytes,
// merges follow in the order they were learned and the special tokens
// (SpecialNames) take the last ids. Training counts pre-tokens once and then
// updates pair counts incrementally, with a max-heap of pair counts; ties are
// broken by the smaller pair of ids, so the result is deterministic. When the
// corpus runs out of pairs before vocabSize is reached the vocabulary is
// smaller: VocabSize reports the real size. A slice passed to yield need only
// stay valid during that call.
func Train(ctx context.Context, docs func(yield func([]byte) bool), vocabSize int) (*Tokenizer, error) {
	return train(ctx, docs, vocabSize, maxPieces)
}

// maxPieces bounds the distinct pre-tokens Train keeps while counting (about
// 100 MB); beyond it the rarest are dropped (see pieceCounter.prune).
const maxPieces = 1 << 20

// pieceCounter counts distinct pre-tokens in bounded memory.
type pieceCounter struct {
	index  map[string]int32 // piece -> position in counts
	counts []int64
	limit  int
	pruned int // pieces dropped so far
}

func (c *pieceCounter) add(p []byte) {
	if i, ok := c.index[string(p)]; ok {
		c.counts[i]++
		return
	}
	if len(c.counts) >= c.limit {
		c.prune()
	}
	c.index[string(p)] = int32(len(c.counts))
	c.counts = append(c.counts, 1)
}

// prune drops every piece whose count is at most k, for the smallest k that
// leaves at most half the limit: a lossy count in which a frequent piece is
// never dropped (it exceeds k) and a rare one restarts from 1 if it returns.
// The surviving counts depend only on the input, not on map order.
func (c *pieceCounter) prune() {
	hist := map[int64]int{}
	for _, n := range c.counts {
		hist[n]++
	}
	values := make([]int64, 0, len(hist))
	for v := range hist {
		values = append(values, v)
	}
	slices.Sort(values)
	keep, k := len(c.counts), int64(0)
	for _, v := range values {
		if keep <= c.limit/2 {
			break
		}
		keep -= hist[v]
		k = v
	}
	counts := make([]int64, 0, max(keep, c.limit))
	for key, i := range c.index {
		if n := c.counts[i]; n > k {
			c.index[key] = int32(len(counts))
			counts = append(counts, n)
		} else {
			delete(c.index, key)
			c.pruned++
		}
	}
	c.counts = counts
}

func train(ctx context.Context, docs func(yield func([]byte) bool), vocabSize, limit int) (*Tokenizer, error) {
	if vocabSize < MinVocabSize || vocabSize > MaxVocabSize {
		return nil, fmt.Errorf("tokenizer: vocabulary size %d out of range [%d, %d]", vocabSize, MinVocabSize, MaxVocabSize)
	}
	if docs == nil {
		return nil, fmt.Errorf("tokenizer: no training documents")
	}
	// Count pre-tokens.
	pc := &pieceCounter{index: make(map[string]int32), limit: max(limit, 2)}
	var err error
	ndocs := 0
	docs(func(doc []byte) bool {
		if ndocs++; ndocs%64 == 0 {
			if err = ctx.Err(); err != nil {
				return false
			}
		}
		for len(doc) > 0 {
			n := nextPiece(doc)
			piece := doc[:n]
			doc = doc[n:]
			// Very long pieces (a line of 10k '=') are counted in chunks:
			// rewriting a huge word on every merge would make training
			// quadratic, and such runs make no useful tokens past this length.
			for len(piece) > 0 {
				p := piece[:min(len(piece), maxTrainPiece)]
				piece = piece[len(p):]
				pc.add(p)
			}
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("tokenizer: training cancelled: %w", err)
	}
	if len(pc.counts) == 0 {
		return nil, fmt.Errorf("tokenizer: training corpus is empty")
	}
	// Words in sorted order, so that nothing depends on map order.
	keys := make([]string, 0, len(pc.index))
	for k := range pc.index {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	words := make([][]int32, len(keys))
	counts := make([]int64, len(keys))
	for wi, k := range keys {
		w := make([]int32, len(k))
		for i := 0; i < len(k); i++ {
			w[i] = int32(k[i])
		}
		words[wi], counts[wi] = w, pc.counts[pc.index[k]]
	}
	keys, pc = nil, nil

	vocab := make([][]byte, 256, vocabSize)
	for i := range vocab {
		vocab[i] = []byte{byte(i)}
	}
	known := make(map[string]int32, vocabSize)
	for i, b := range vocab {
		known[string(b)] = int32(i)
	}

	pairCount := make(map[uint64]int64)
	where := make(map[uint64][]int32)
	for wi, w := range words {
		for k := 0; k+1 < len(w); k++ {
			key := pairKey(w[k], w[k+1])
			pairCount[key] += counts[wi]
			where[key] = append(where[key], int32(wi))
		}
	}
	h := make(pairHeap, 0, len(pairCount))
	for key, c := range pairCount {
		h = append(h, pairEntry{count: c, key: key})
	}
	heap.Init(&h)

	seen := make([]int32, len(words)) // merge number that last touched a word
	merges := vocabSize - len(SpecialNames) - 256
	var newPairs []uint64
	step := int32(0)
	for m := 0; m < merges && h.Len() > 0; {
		if step++; step%128 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("tokenizer: training cancelled: %w", err)
			}
		}
		e := heap.Pop(&h).(pairEntry)
		c := pairCount[e.key]
		if c != e.count {
			if c > 0 {
				heap.Push(&h, pairEntry{count: c, key: e.key})
			}
			continue
		}
		a, b := int32(e.key>>32), int32(uint32(e.key))
		joined := append(append([]byte(nil), vocab[a]...), vocab[b]...)
		z, exists := known[string(joined)]
		if !exists {
			z = int32(len(vocab))
			vocab = append(vocab, joined)
			known[string(joined)] = z
			m++
		}
		newPairs = newPairs[:0]
		for _, wi := range where[e.key] {
			if seen[wi] == step {
				continue
			}
			seen[wi] = step
			w := words[wi]
			wc := counts[wi]
			has := false
			for k := 0; k+1 < len(w); k++ {
				if w[k] == a && w[k+1] == b {
					has = true
					break
				}
			}
			if !has {
				continue
			}
			for k := 0; k+1 < len(w); k++ {
				key := pairKey(w[k], w[k+1])
				if pairCount[key] -= wc; pairCount[key] <= 0 {
					delete(pairCount, key)
				}
			}
			out := w[:0]
			for k := 0; k < len(w); k++ {
				if k+1 < len(w) && w[k] == a && w[k+1] == b {
					out = append(out, z)
					k++
				} else {
					out = append(out, w[k])
				}
			}
			words[wi] = out
			for k := 0; k+1 < len(out); k++ {
				key := pairKey(out[k], out[k+1])
				pairCount[key] += wc
				if out[k] == z || out[k+1] == z {
					where[key] = append(where[key], wi)
					newPairs = append(newPairs, key)
				}
			}
		}
		delete(where, e.key)
		for _, key := range newPairs {
			if c := pairCount[key]; c > 0 {
				heap.Push(&h, pairEntry{count: c, key: key})
			}
		}
	}
	specials := make(map[string]int32, len(SpecialNames))
	for i, name := range SpecialNames {
		specials[name] = int32(len(vocab) + i)
	}
	return newTokenizer(vocab, specials, PatternCL100K)
}

func pairKey(a, b int32) uint64 { return uint64(a)<<32 | uint64(uint32(b)) }

// pairEntry is a (possibly stale) pair count in the training heap.
type pairEntry struct {
	count int64
	key   uint64
}

// pairHeap is a max-heap on count, then min on key.
type pairHeap []pairEntry

// Len, Less, Swap, Push and Pop implement heap.Interface.
func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	return h[i].key < h[j].key
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairEntry)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
