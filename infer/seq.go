package infer

// Seq is one sequence's state during generation: the tokens it has seen and
// their keys and values in every layer (the KV cache). A Seq belongs to the
// Model that made it and is not safe for concurrent use; Forward appends to
// it, Truncate rolls it back.
type Seq struct {
	m      *Model
	maxLen int
	n      int
	tokens []int32
	// k holds, per layer, the keys transposed: [KVHeads·HeadDim][capacity]
	// floats (position fastest), so that a query's scores against every
	// position are one row-streaming product; v holds the values as
	// [capacity][KVHeads·HeadDim]. The first n positions are valid. Under
	// multi-head latent attention k holds the latent keys
	// ([kv_lora_rank+rope][capacity]) and v nothing (see cacheDims).
	k, v [][]float32
	cap  int
	// logits, when reuseLogits is set, is the buffer Forward returns this
	// sequence's logits in (see ReuseLogits).
	logits      []float32
	reuseLogits bool
}

// ReuseLogits sets whether Forward returns this sequence's logits in a
// buffer the sequence owns and reuses, valid only until the next Forward
// that includes the sequence, instead of a fresh slice per call. Decoding
// loops that read each step's logits before the next step set it: a
// fresh vocabulary-sized slice a step (several at a verification) costs
// an allocation, its clearing and, when the runtime has returned the
// memory to the system, a page fault per 4 KiB, which on a small model
// is a tenth of the step. Off by default.
func (s *Seq) ReuseLogits(on bool) { s.reuseLogits = on }

// reusingLogits turns ReuseLogits on for a loop that owns s for a while
// and returns the call that puts the caller's setting back.
func (s *Seq) reusingLogits() (restore func()) {
	prev := s.reuseLogits
	s.reuseLogits = true
	return func() { s.reuseLogits = prev }
}

// NewSeq returns an empty sequence that may grow to maxLen tokens; maxLen
// <= 0 or beyond the model's context means the model's context. The cache
// grows as tokens arrive, so a long maxLen costs nothing up front.
func (m *Model) NewSeq(maxLen int) *Seq {
	if maxLen <= 0 || maxLen > m.ctxLen {
		maxLen = m.ctxLen
	}
	return &Seq{
		m:      m,
		maxLen: maxLen,
		k:      make([][]float32, m.Cfg.NumLayers),
		v:      make([][]float32, m.Cfg.NumLayers),
	}
}

// Len returns the number of tokens in the cache.
func (s *Seq) Len() int { return s.n }

// Tokens returns the tokens in the cache, oldest first. The slice is the
// sequence's own: do not modify it, and copy it if it must outlive the next
// Forward or Truncate.
func (s *Seq) Tokens() []int32 { return s.tokens[:s.n:s.n] }

// Truncate rolls the sequence back to its first n tokens (after rejected
// draft tokens, or to reuse a shared prefix). n beyond Len is a no-op and
// n < 0 empties the sequence.
func (s *Seq) Truncate(n int) {
	if n < 0 {
		n = 0
	}
	if n >= s.n {
		return
	}
	s.n = n
	s.tokens = s.tokens[:n]
}

// Reset empties the sequence, keeping its memory.
func (s *Seq) Reset() { s.Truncate(0) }

// reserve makes room for n positions in every layer, growing geometrically.
func (s *Seq) reserve(n int) {
	if n <= s.cap {
		return
	}
	c := max(n, 2*s.cap, 16)
	c = min(c, s.maxLen)
	c = max(c, n)
	c = (c + 15) &^ 15 // attention reads key rows in whole 16-position vectors
	kd, vd := s.m.cacheDims()
	for l := range s.k {
		nk := make([]float32, c*kd)
		nv := make([]float32, c*vd)
		for i := 0; i < kd && s.n > 0; i++ {
			copy(nk[i*c:i*c+s.n], s.k[l][i*s.cap:i*s.cap+s.n])
		}
		copy(nv, s.v[l][:s.n*vd])
		s.k[l], s.v[l] = nk, nv
	}
	s.cap = c
}
