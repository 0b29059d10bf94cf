package tokenizer

import (
	"container/heap"
	"math"
)

// shortPiece is the length up to which the quadratic merge loop is used; longer
// pieces use a heap so that pathological inputs (megabytes of punctuation)
// stay O(n log n).
const shortPiece = 64

// rankOf returns the rank of p or math.MaxInt32 when p is not a token.
func (t *Tokenizer) rankOf(p []byte) int32 {
	if id, ok := t.ranks[string(p)]; ok {
		return id
	}
	return math.MaxInt32
}

// bytePairMerge appends the encoding of piece p: starting from single bytes,
// repeatedly merge the adjacent pair whose concatenation has the lowest rank
// (leftmost on ties) until no adjacent concatenation is a token.
func (t *Tokenizer) bytePairMerge(dst []int32, p []byte) []int32 {
	if len(p) > shortPiece {
		return t.bytePairMergeHeap(dst, p)
	}
	var bbuf [shortPiece + 1]int
	var rbuf [shortPiece]int32
	bounds := bbuf[:len(p)+1] // part i is p[bounds[i]:bounds[i+1]]
	for i := range bounds {
		bounds[i] = i
	}
	ranks := rbuf[:len(p)-1] // ranks[i]: rank of parts i and i+1 merged
	for i := range ranks {
		ranks[i] = t.rankOf(p[i : i+2])
	}
	for len(ranks) > 0 {
		best, bi := int32(math.MaxInt32), -1
		for i, r := range ranks {
			if r < best {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		// Merge parts bi and bi+1: drop boundary bi+1 and rank bi+1.
		bounds = append(bounds[:bi+1], bounds[bi+2:]...)
		ranks = append(ranks[:bi], ranks[bi+1:]...)
		if bi < len(ranks) {
			ranks[bi] = t.rankOf(p[bounds[bi]:bounds[bi+2]])
		}
		if bi > 0 {
			ranks[bi-1] = t.rankOf(p[bounds[bi-1]:bounds[bi+1]])
		}
	}
	for i := 0; i+1 < len(bounds); i++ {
		dst = append(dst, t.ranks[string(p[bounds[i]:bounds[i+1]])])
	}
	return dst
}

// mergeEntry is a candidate merge of the part starting at byte pos with its
// successor, valid while stamp matches the part's current stamp.
type mergeEntry struct {
	rank  int32
	pos   int32
	stamp int32
}

type mergeHeap []mergeEntry

// Len, Less, Swap, Push and Pop implement heap.Interface.
func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(mergeEntry)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// bytePairMergeHeap is bytePairMerge for long pieces: parts form a linked list
// indexed by their first byte, and candidate merges sit in a min-heap ordered
// by (rank, position), which reproduces the leftmost-lowest-rank rule.
func (t *Tokenizer) bytePairMergeHeap(dst []int32, p []byte) []int32 {
	n := len(p)
	next := heapMerge(n, func(i, _, end int32) (int32, bool) {
		r := t.rankOf(p[i:end])
		return r, r != math.MaxInt32
	}, func(_, _ int32) {})
	for i := int32(0); i < int32(n); i = next[i] {
		dst = append(dst, t.ranks[string(p[i:next[i]])])
	}
	return dst
}

// heapMerge is the leftmost-lowest-rank merge loop over n parts for long
// inputs: the parts form a linked list indexed by their first position, and
// candidate merges sit in a min-heap ordered by (rank, position). rank
// gives the rank of merging part i with the following part j (which ends
// at end) and false when the pair does not merge; merged is told, before
// the list changes, that j's part joins i's. It returns next: for a part i
// that survives, next[i] is the start of the following part (n after the
// last); the first part starts at 0.
func heapMerge(n int, rank func(i, j, end int32) (int32, bool), merged func(i, j int32)) []int32 {
	next := make([]int32, n) // start of the following part, n at the end
	prev := make([]int32, n) // start of the preceding part, -1 at the start
	stamp := make([]int32, n)
	alive := make([]bool, n)
	h := make(mergeHeap, 0, n)
	for i := range n {
		next[i], prev[i], alive[i] = int32(i+1), int32(i-1), true
	}
	for i := range int32(n - 1) {
		if r, ok := rank(i, i+1, i+2); ok {
			h = append(h, mergeEntry{rank: r, pos: i})
		}
	}
	heap.Init(&h)
	push := func(i int32) {
		stamp[i]++
		j := next[i]
		if j >= int32(n) {
			return
		}
		if r, ok := rank(i, j, next[j]); ok {
			heap.Push(&h, mergeEntry{rank: r, pos: i, stamp: stamp[i]})
		}
	}
	for h.Len() > 0 {
		e := heap.Pop(&h).(mergeEntry)
		i := e.pos
		if !alive[i] || e.stamp != stamp[i] {
			continue
		}
		j := next[i]
		merged(i, j)
		alive[j] = false
		stamp[j]++
		next[i] = next[j]
		if next[j] < int32(n) {
			prev[next[j]] = i
		}
		push(i)
		if prev[i] >= 0 {
			push(prev[i])
		}
	}
	return next
}
