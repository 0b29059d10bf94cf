package infer

import (
	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/model"
)

// Multi-head latent attention (DeepSeek-V2/V3, llama.cpp's deepseek2) in
// its absorbed form, as llama.cpp computes it for files with split
// attn_k_b/attn_v_b: each position caches only its normed latent vector
// (kv_lora_rank) and its rotated shared key part (rope), one key of
// kv_lora_rank+rope per position and layer; each query head's nope part is
// taken into the latent space by its absorbed key matrix, so attention is
// multi-query attention over the latent keys, and a head's output is its
// value matrix times the attention-weighted latent vectors. This equals
// decompressing every cached position into per-head keys and values,
// without storing or recomputing them.

// mlaWeights are one layer's latent attention matrices.
type mlaWeights struct {
	// in multiplies the normed hidden state into [q or q_a; kv_a]: the
	// queries (or their LoRA input), then the latent vector and the
	// shared rope key.
	in stacked
	// qb takes the normed q_a into the queries (no rows: no q LoRA).
	qb             Linear
	qaNorm, kvNorm []float32
	// kb[h] takes head h's query nope part into the latent space; vb[h]
	// decompresses its attended latent vector into its value.
	kb, vb []Linear
}

// newMLAWeights returns the Linears of a mapped MLA layer.
func newMLAWeights(x *gguf.MLAMatrices) *mlaWeights {
	w := &mlaWeights{qaNorm: x.QANorm, kvNorm: x.KVANorm, kb: make([]Linear, len(x.KB)), vb: make([]Linear, len(x.VB))}
	if x.QA.Rows > 0 {
		w.in = fuseMatrices(x.QA, x.KVA)
		w.qb = matrixLinear(x.QB)
	} else {
		w.in = fuseMatrices(x.Q, x.KVA)
	}
	for h := range w.kb {
		w.kb[h] = matrixLinear(x.KB[h])
		w.vb[h] = matrixLinear(x.VB[h])
	}
	return w
}

// forEach calls f with every matrix of the latent attention.
func (w *mlaWeights) forEach(f func(l *Linear)) {
	if w == nil {
		return
	}
	for i := range w.in {
		f(&w.in[i])
	}
	if w.qb.n > 0 {
		f(&w.qb)
	}
	for h := range w.kb {
		f(&w.kb[h])
		f(&w.vb[h])
	}
}

// mlaScratch holds the latent attention's activations of one Forward.
type mlaScratch struct {
	in, q, qlat, olat, pe []float32
}

// cacheDims returns the floats a position's key and value take in one
// layer's cache: the latent key and no value under MLA (the values are
// the latent vectors, the keys' first kv_lora_rank floats), else the KV
// heads' keys and values.
func (m *Model) cacheDims() (k, v int) {
	if c := m.Cfg; c.MLA() {
		return c.KVLoraRank + c.QKRopeHeadDim, 0
	}
	return m.kvDim, m.kvDim
}

// ropePairs rotates one head's rope part src, stored in llama.cpp's NORM
// order (pairs 2i, 2i+1), at position p into dst in moe's order (pairs i,
// i+n/2). Queries and keys both go through it, so their dot products are
// those of the NORM rotation.
func (m *Model) ropePairs(dst, src []float32, p int) {
	h := len(src) / 2
	for i := 0; i < h; i++ {
		dst[i], dst[h+i] = src[2*i], src[2*i+1]
	}
	m.rope.Apply(dst, 1, p)
}

// mlaAttention computes the attention block of MLA layer l for the rows of
// sc.xn (the normed hidden states) into sc.o, writing each row's latent
// key into its sequence's cache first.
func (m *Model) mlaAttention(seqs []*Seq, l, rows int, rowSeq, rowPos []int32) {
	cfg, sc := m.Cfg, &m.sc
	L := &m.layers[l]
	w, b, prec := L.mla, &sc.mla, sc.prec
	d, nh := cfg.HiddenSize, cfg.NumHeads
	nope, rp, rank, vd := cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.KVLoraRank, cfg.VHeadDim
	qk, lat := nope+rp, rank+rp
	eps := model.NormEps(cfg)
	qIn := nh * qk
	if w.qb.n > 0 {
		qIn = cfg.QLoraRank
	}
	inW := qIn + lat
	b.in = grow(b.in, rows*inW)
	w.in.mul(m.Pool, prec, rows, sc.xn, d, b.in, inW)
	q, ldq := b.in, inW
	if w.qb.n > 0 {
		for r := 0; r < rows; r++ {
			qa := b.in[r*inW : r*inW+qIn]
			compute.RMSNorm(qa, qa, w.qaNorm, 1, qIn, eps, nil)
		}
		b.q = grow(b.q, rows*nh*qk)
		w.qb.mul(m.Pool, prec, rows, b.in, inW, b.q, nh*qk)
		q, ldq = b.q, nh*qk
	}
	// The latent keys: the normed latent vector, then the rotated rope key.
	b.pe = grow(b.pe, rp)
	for r := 0; r < rows; r++ {
		p := int(rowPos[r])
		kv := b.in[r*inW+qIn : (r+1)*inW]
		compute.RMSNorm(kv[:rank], kv[:rank], w.kvNorm, 1, rank, eps, nil)
		m.ropePairs(b.pe, kv[rank:], p)
		copy(kv[rank:], b.pe)
		s := seqs[rowSeq[r]]
		kt := s.k[l]
		for i, v := range kv {
			kt[i*s.cap+p] = v
		}
	}
	// The queries in the latent space: per head the absorbed nope part,
	// then the rotated rope part.
	b.qlat = grow(b.qlat, rows*nh*lat)
	m.Pool.Run(nh, func(h int) {
		w.kb[h].mul(nil, prec, rows, q[h*qk:], ldq, b.qlat[h*lat:], nh*lat)
	})
	for r := 0; r < rows; r++ {
		p := int(rowPos[r])
		for h := 0; h < nh; h++ {
			m.ropePairs(b.qlat[(r*nh+h)*lat+rank:(r*nh+h+1)*lat], q[r*ldq+h*qk+nope:r*ldq+(h+1)*qk], p)
		}
	}
	b.olat = grow(b.olat, rows*nh*rank)
	m.latentAttention(seqs, l, rows, rowSeq, rowPos)
	// Each head's value from its attended latent vector, then the output.
	sc.att = grow(sc.att, rows*nh*vd)
	m.Pool.Run(nh, func(h int) {
		w.vb[h].mul(nil, prec, rows, b.olat[h*rank:], nh*rank, sc.att[h*vd:], nh*vd)
	})
	L.o.mul(m.Pool, prec, rows, sc.att, nh*vd, sc.o, d)
}

// mlaHeadBlock is the number of heads one unit of latentAttention's work
// scores together (one product of the block's latent queries with the
// cached keys).
const mlaHeadBlock = 4

// latentAttention computes sc.mla.olat: for every row and head, the
// softmax-weighted sum of the cached latent vectors of the row's sequence
// up to its position, weighted by the scaled scores of the head's latent
// query against the cached latent keys. Work is split over (row, block of
// heads); each row's result depends only on its own position, not on the
// batch or the pool.
func (m *Model) latentAttention(seqs []*Seq, l, rows int, rowSeq, rowPos []int32) {
	cfg, b := m.Cfg, &m.sc.mla
	nh, rank := cfg.NumHeads, cfg.KVLoraRank
	lat := rank + cfg.QKRopeHeadDim
	scale := float32(cfg.MLASoftmaxScale())
	threads := m.Pool.Threads()
	// Each unit of work is one row's block of heads; the blocks do not
	// depend on the pool's size, so neither do the products' shapes and
	// sums.
	per := min(nh, mlaHeadBlock)
	blocks := (nh + per - 1) / per
	maxPos := 0
	for r := 0; r < rows; r++ {
		maxPos = max(maxPos, int(rowPos[r])+1)
	}
	work := rows * blocks
	chunks := min(4*threads, work)
	stride := per * ((maxPos + 15) &^ 15)
	m.sc.scores = grow(m.sc.scores, chunks*stride)
	each := (work + chunks - 1) / chunks
	chunks = (work + each - 1) / each
	m.Pool.Run(chunks, func(c int) {
		scores := m.sc.scores[c*stride : (c+1)*stride]
		for u := c * each; u < min(work, (c+1)*each); u++ {
			r, h0 := u/blocks, (u%blocks)*per
			hn := min(per, nh-h0)
			P := int(rowPos[r]) + 1
			Pn := (P + 15) &^ 15
			s := seqs[rowSeq[r]]
			kt := s.k[l]
			sco := scores[:hn*Pn]
			compute.Gemm(nil, false, false, hn, Pn, lat, scale, b.qlat[(r*nh+h0)*lat:], lat, kt, s.cap, 0, sco, Pn)
			for j := 0; j < hn; j++ {
				compute.SoftmaxRow(sco[j*Pn : j*Pn+P])
			}
			// The values are the latent vectors: the cached keys' first
			// rank rows, read transposed.
			compute.Gemm(nil, false, true, hn, rank, P, 1, sco, Pn, kt, s.cap, 0, b.olat[(r*nh+h0)*rank:], rank)
		}
	})
}
