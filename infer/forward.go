package infer

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/moe-llm/moe/compute"
	scratchbuf "github.com/moe-llm/moe/internal/scratch"
	"github.com/moe-llm/moe/model"
)

// Stats describes what one Forward call did.
type Stats struct {
	// Rows is the number of token positions processed.
	Rows int
	// Touched holds, per layer, how many distinct routed experts received at
	// least one row (0 for dense layers). Their sum prices a verification
	// pass of an MoE model: each touched expert's weights are read once.
	Touched []int
	// ExpertRows holds, per layer, the rows each routed expert received
	// (nil for a dense model).
	ExpertRows [][]int
}

// TouchedTotal returns the sum of Touched over layers.
func (s *Stats) TouchedTotal() int {
	t := 0
	for _, v := range s.Touched {
		t += v
	}
	return t
}

// scratch holds the activations of one Forward call, grown as needed.
type scratch struct {
	x, xn, qkv, att, o []float32
	ffn                ffnBuf
	workers            []ffnBuf // per pool worker
	expOut             []float32
	route, scores      []float32
	logits             []float32 // the logits of a call with a ReuseLogits sequence
	moe                moeScratch
	rowSeq, rowPos     []int32
	mla                mlaScratch
	// prec is the precision of the current call's products.
	prec precision
}

// moeScratch holds an MoE layer's routing: each row's picks (idx, wts,
// probs), the rows and weights each expert takes, the experts with rows,
// and the order and output offsets of their tasks.
type moeScratch struct {
	idx        []int32
	wts, probs []float32
	rows       [][]int32
	w          [][]float32
	es         []int
	offs       []int
	order      []int
}

// maxScratchLogits bounds the logits (rows × vocabulary floats) a call
// computes in the model's scratch for sequences that reuse their buffers:
// larger calls (a long prompt scored whole) allocate, so that the scratch
// does not keep their size for the model's lifetime.
const maxScratchLogits = 1 << 22

// grow reuses or allocates a float32 scratch buffer (scratchbuf.Grow); it
// stays as a short name for the call sites in this package.
func grow(b []float32, n int) []float32 { return scratchbuf.Grow(b, n) }

// growI is grow for int32 buffers.
func growI(b []int32, n int) []int32 { return scratchbuf.Grow(b, n) }

// Forward appends tokens[i] to seqs[i] for every i in one batched pass: all
// rows of all sequences go through each weight matrix as one GEMM, attention
// runs per sequence against its own cache, and in MoE layers rows are grouped
// per expert so that only the experts the router picks are computed. It
// returns, for each sequence, the logits of every new position (n·V floats,
// position-major) when allLogits is set, else those of its last new position
// (V floats). A sequence with no new tokens gets nil; one with ReuseLogits
// set gets its logits in its own buffer, valid until the next Forward that
// includes it. Forward is safe for concurrent use (calls are serialised).
func (m *Model) Forward(seqs []*Seq, tokens [][]int32, allLogits bool) ([][]float32, error) {
	logits, _, err := m.ForwardStats(seqs, tokens, allLogits)
	return logits, err
}

// ForwardStats is Forward that also reports which experts the call touched.
func (m *Model) ForwardStats(seqs []*Seq, tokens [][]int32, allLogits bool) ([][]float32, Stats, error) {
	return m.ForwardLast(seqs, tokens, allLogits, nil)
}

// ForwardLast is ForwardStats where last, if not nil, says for each sequence
// how many of its new positions, counted from the end, get logits (at least
// 1, at most its new tokens): speculative verification that also prefills a
// prompt needs the logits of the K+1 last positions only. With last nil,
// allLogits chooses all or the last one as in Forward.
func (m *Model) ForwardLast(seqs []*Seq, tokens [][]int32, allLogits bool, last []int) ([][]float32, Stats, error) {
	return m.forward(seqs, tokens, allLogits, last, false)
}

// forward is ForwardLast; lowPrec makes the small-M products read bfloat16
// copies of the weights (built on first use, half the model's size) whether
// or not UseBF16 is on: a speculative draft proposes that way (see
// draftLowPrec), which halves its memory traffic without changing what
// speculative decoding outputs.
func (m *Model) forward(seqs []*Seq, tokens [][]int32, allLogits bool, last []int, lowPrec bool) ([][]float32, Stats, error) {
	var st Stats
	rows, err := m.checkBatch(seqs, tokens, last)
	if err != nil {
		return nil, st, err
	}
	st.Rows = rows
	if rows == 0 {
		return make([][]float32, len(seqs)), st, nil
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, st, errors.New("infer: forward on a closed model")
	}
	m.setPrecision(lowPrec)
	m.growScratch(rows)
	if err := m.embedRows(seqs, tokens); err != nil {
		return nil, st, err
	}
	if m.Cfg.IsMoE() {
		st.Touched = make([]int, m.Cfg.NumLayers)
		st.ExpertRows = make([][]int, m.Cfg.NumLayers)
	}
	for l := range m.layers {
		m.attentionBlock(l, seqs, rows)
		if !m.Cfg.LayerIsMoE(l) {
			m.denseFFN(l, rows)
			continue
		}
		st.Touched[l], st.ExpertRows[l] = m.moe(l, rows, m.sc.x)
	}
	out := m.logits(seqs, tokens, func(i int) int { return logitRows(len(tokens[i]), allLogits, last, i) })
	for i, s := range seqs {
		if len(tokens[i]) > 0 {
			s.tokens = append(s.tokens[:s.n], tokens[i]...)
			s.n += len(tokens[i])
		}
	}
	m.countRows(rows, st.ExpertRows)
	return out, st, nil
}

// logitRows is how many of a sequence's n new positions (the last ones)
// get logits: last[i] (at least 1, at most n) when last is given, all n
// with allLogits, else 1.
func logitRows(n int, allLogits bool, last []int, i int) int {
	switch {
	case last != nil:
		return min(max(last[i], 1), n)
	case allLogits:
		return n
	}
	return 1
}

// checkBatch validates a forward call's batch before anything runs: as
// many token lists (and logit counts, when given) as sequences, each
// sequence non-nil, of this model and in the batch once, within its
// length limit, every token in the vocabulary. It returns the rows.
func (m *Model) checkBatch(seqs []*Seq, tokens [][]int32, last []int) (int, error) {
	if last != nil && len(last) != len(seqs) {
		return 0, fmt.Errorf("infer: forward got %d sequences but %d logit counts", len(seqs), len(last))
	}
	if len(seqs) != len(tokens) {
		return 0, fmt.Errorf("infer: forward got %d sequences but %d token lists", len(seqs), len(tokens))
	}
	V := m.Cfg.VocabSize
	rows := 0
	seen := make(map[*Seq]bool, len(seqs))
	for i, s := range seqs {
		if s == nil {
			return 0, fmt.Errorf("infer: forward: sequence %d is nil", i)
		}
		if s.m != m {
			return 0, fmt.Errorf("infer: forward: sequence %d belongs to another model", i)
		}
		if seen[s] {
			return 0, fmt.Errorf("infer: forward: sequence %d appears twice in one batch", i)
		}
		seen[s] = true
		if s.n+len(tokens[i]) > s.maxLen {
			return 0, fmt.Errorf("infer: sequence %d would hold %d tokens, more than its limit of %d (model context %d)",
				i, s.n+len(tokens[i]), s.maxLen, m.ctxLen)
		}
		for _, t := range tokens[i] {
			if t < 0 || int(t) >= V {
				return 0, fmt.Errorf("infer: token id %d out of range [0,%d)", t, V)
			}
		}
		rows += len(tokens[i])
	}
	return rows, nil
}

// setPrecision sets the precision of this call's products: bfloat16 for
// a model loaded with it, the draft's low precision (building its bf16
// panels the first time) when asked, else full.
func (m *Model) setPrecision(lowPrec bool) {
	switch {
	case m.bf16:
		m.sc.prec = precBF16
	case lowPrec:
		if !m.bfPanels {
			m.buildBF16(false)
		}
		m.sc.prec = precDraft
	default:
		m.sc.prec = precFull
	}
}

// growScratch sizes the call's row buffers for rows rows.
func (m *Model) growScratch(rows int) {
	d, qDim := m.Cfg.HiddenSize, m.Cfg.NumHeads*m.hd
	sc := &m.sc
	sc.x = grow(sc.x, rows*d)
	sc.xn = grow(sc.xn, rows*d)
	if !m.Cfg.MLA() { // latent attention has its own buffers (mlaScratch)
		sc.qkv = grow(sc.qkv, rows*(qDim+2*m.kvDim))
	}
	sc.att = grow(sc.att, rows*qDim)
	sc.o = grow(sc.o, rows*d)
	sc.rowSeq = growI(sc.rowSeq, rows)
	sc.rowPos = growI(sc.rowPos, rows)
}

// embedRows writes the embeddings of every new token into sc.x, the
// sequences' tokens one after the other, and which sequence and position
// each row is into sc.rowSeq and sc.rowPos; it makes room in each
// sequence's cache and extends the RoPE tables to the longest.
func (m *Model) embedRows(seqs []*Seq, tokens [][]int32) error {
	d := m.Cfg.HiddenSize
	sc := &m.sc
	x := sc.x
	r, maxLen := 0, 0
	for i, s := range seqs {
		s.reserve(s.n + len(tokens[i]))
		maxLen = max(maxLen, s.n+len(tokens[i]))
		for j, t := range tokens[i] {
			if err := m.embed.row(int(t), x[r*d:(r+1)*d]); err != nil {
				return err
			}
			sc.rowSeq[r] = int32(i)
			sc.rowPos[r] = int32(s.n + j)
			r++
		}
	}
	scaleBy(x[:r*d], m.embScale)
	return m.growRoPE(maxLen)
}

// attentionBlock runs layer l's attention half over the rows in sc.x:
// the norm, the q/k/v projection with each row's keys and values into its
// sequence's cache (or latent attention), attention, the output
// projection, the residual add, and the norm before the feed-forward half
// into sc.xn.
func (m *Model) attentionBlock(l int, seqs []*Seq, rows int) {
	L := &m.layers[l]
	sc := &m.sc
	d := m.Cfg.HiddenSize
	st := rowStep{m: m, l: l, seqs: seqs}
	forRows(m.Pool, rows, d, st, attnNormRows)
	rowSeq, rowPos := sc.rowSeq[:rows], sc.rowPos[:rows]
	if L.mla != nil {
		m.mlaAttention(seqs, l, rows, rowSeq, rowPos)
	} else {
		qDim := m.Cfg.NumHeads * m.hd
		qkvDim := qDim + 2*m.kvDim
		L.qkv.mul(m.Pool, sc.prec, rows, sc.xn, d, sc.qkv, qkvDim)
		// Each row writes its own position of its sequence's cache.
		forRows(m.Pool, rows, qkvDim, st, qkvRows)
		m.attention(seqs, l, rows, rowSeq, rowPos)
		L.o.mul(m.Pool, sc.prec, rows, sc.att, qDim, sc.o, d)
	}
	forRows(m.Pool, rows, d, st, attnOutRows)
}

// rowStep is what a row-wise step of a layer needs besides its rows (see
// forRows): the model, the layer, the batch's sequences, and for SwiGLU
// the buffers and width.
type rowStep struct {
	m    *Model
	l    int
	seqs []*Seq
	b    *ffnBuf
	ff   int
}

// attnNormRows writes the attention norm of rows [r0, r1) of sc.x to sc.xn.
func attnNormRows(s rowStep, r0, r1 int) {
	m, d := s.m, s.m.Cfg.HiddenSize
	sc := &m.sc
	compute.RMSNorm(sc.xn[r0*d:r1*d], sc.x[r0*d:r1*d], m.layers[s.l].attnNorm, r1-r0, d, model.NormEps(m.Cfg), nil)
}

// qkvRows finishes rows [r0, r1) of the q/k/v projection (qkvRow).
func qkvRows(s rowStep, r0, r1 int) {
	m := s.m
	sc := &m.sc
	qkvDim := m.Cfg.NumHeads*m.hd + 2*m.kvDim
	eps := model.NormEps(m.Cfg)
	for r := r0; r < r1; r++ {
		m.qkvRow(s.l, sc.qkv[r*qkvDim:(r+1)*qkvDim], s.seqs[sc.rowSeq[r]], int(sc.rowPos[r]), eps)
	}
}

// attnOutRows adds the attention output of rows [r0, r1) (bias, residual
// scale) to sc.x and writes the feed-forward norm of the result to sc.xn.
func attnOutRows(s rowStep, r0, r1 int) {
	m, d := s.m, s.m.Cfg.HiddenSize
	sc, L := &m.sc, &m.layers[s.l]
	x := sc.x[r0*d : r1*d]
	o := sc.o[r0*d : r1*d]
	addRowBias(o, L.oBias)
	scaleBy(o, m.resScale)
	compute.Add(x, o)
	compute.RMSNorm(sc.xn[r0*d:r1*d], x, L.ffnNorm, r1-r0, d, model.NormEps(m.Cfg), nil)
}

// swigluRows writes silu(gate) ⊙ up of rows [r0, r1) of s.b.gu to s.b.h.
func swigluRows(s rowStep, r0, r1 int) {
	b, ff := s.b, s.ff
	for r := r0; r < r1; r++ {
		g := b.gu[r*2*ff : (r+1)*2*ff]
		if s.m.swiLimit != 0 {
			model.SwiGLUClamped(b.h[r*ff:(r+1)*ff], g[:ff], g[ff:], s.m.swiLimit)
		} else {
			compute.SwiGLU(b.h[r*ff:(r+1)*ff], g[:ff], g[ff:])
		}
	}
}

// denseFFN runs layer l's dense feed-forward half: SwiGLU of sc.xn, added
// (residual-scaled) to sc.x.
func (m *Model) denseFFN(l, rows int) {
	sc := &m.sc
	d := m.Cfg.HiddenSize
	m.swiglu(m.Pool, &sc.ffn, rows, sc.xn, &m.layers[l].ffn)
	scaleBy(sc.ffn.o[:rows*d], m.resScale)
	compute.Add(sc.x[:rows*d], sc.ffn.o)
}

// logits returns, for each sequence with new tokens, the logits of the
// last nLogits(i) of its rows in sc.x: the final norm, the output head,
// the logit scale. They go to the model's scratch when a sequence reuses
// its own buffer (then each sequence's rows are copied out), else to a
// fresh slice that the sequences' results share.
func (m *Model) logits(seqs []*Seq, tokens [][]int32, nLogits func(i int) int) [][]float32 {
	d, V := m.Cfg.HiddenSize, m.Cfg.VocabSize
	sc := &m.sc
	x, eps := sc.x, model.NormEps(m.Cfg)
	np, r := 0, 0
	for i := range seqs {
		n := len(tokens[i])
		if n == 0 {
			continue
		}
		for j := n - nLogits(i); j < n; j++ {
			pr := r + j
			compute.RMSNorm(sc.xn[np*d:(np+1)*d], x[pr*d:(pr+1)*d], m.finalNorm, 1, d, eps, nil)
			np++
		}
		r += n
	}
	reuse := false
	for _, s := range seqs {
		reuse = reuse || s.reuseLogits
	}
	var all []float32
	if reuse && np*V <= maxScratchLogits {
		sc.logits = grow(sc.logits, np*V)
		all = sc.logits
	} else {
		all, reuse = make([]float32, np*V), false
	}
	m.lmHead.mul(m.Pool, sc.prec, np, sc.xn, d, all, V)
	scaleBy(all, m.logitScale)
	out := make([][]float32, len(seqs))
	j := 0
	for i, s := range seqs {
		if len(tokens[i]) == 0 {
			continue
		}
		k := nLogits(i)
		switch rows := all[j*V : (j+k)*V : (j+k)*V]; {
		case !reuse:
			out[i] = rows
		case s.reuseLogits:
			s.logits = grow(s.logits, k*V)
			out[i] = s.logits[: k*V : k*V]
			copy(out[i], rows)
		default:
			out[i] = slices.Clone(rows)
		}
		j += k
	}
	return out
}

// qkvRow finishes one row of layer l's q/k/v projection at position p of
// seq: the bias, the q/k norms, RoPE, then the row's keys and values into
// the sequence's cache.
func (m *Model) qkvRow(l int, row []float32, sq *Seq, p int, eps float32) {
	L := &m.layers[l]
	nh, nkv := m.Cfg.NumHeads, m.Cfg.KVHeads()
	qDim, kvDim := nh*m.hd, m.kvDim
	if L.qkvBias != nil {
		compute.Add(row, L.qkvBias)
	}
	if L.qNorm != nil {
		// q/k RMSNorm before RoPE, per head when the gain is head_dim
		// wide, else over the whole projection.
		q, k := row[:qDim], row[qDim:qDim+kvDim]
		compute.RMSNorm(q, q, L.qNorm, qDim/len(L.qNorm), len(L.qNorm), eps, nil)
		compute.RMSNorm(k, k, L.kNorm, kvDim/len(L.kNorm), len(L.kNorm), eps, nil)
	}
	m.rope.Apply(row[:qDim], nh, p)
	m.rope.Apply(row[qDim:qDim+kvDim], nkv, p)
	kt := sq.k[l]
	for i, v := range row[qDim : qDim+kvDim] {
		kt[i*sq.cap+p] = v
	}
	copy(sq.v[l][p*kvDim:(p+1)*kvDim], row[qDim+kvDim:])
}

// attention computes sc.att for every row: causal grouped-query attention of
// each row's query heads against its sequence's cache up to its position
// (within the layer's sliding window, when the config has one).
// Per (row, KV head) the scores of the head's query group against all
// positions are one product with the transposed keys, and their outputs one
// product with the values, both through the row-streaming small-M kernels;
// each row's result depends only on its own position, not on the batch.
func (m *Model) attention(seqs []*Seq, l, rows int, rowSeq, rowPos []int32) {
	cfg := m.Cfg
	hd, nh, nkv := m.hd, cfg.NumHeads, cfg.KVHeads()
	group := nh / nkv
	qDim, kvDim := nh*hd, m.kvDim
	qkvDim := qDim + 2*kvDim
	scale := m.attnScale
	win := cfg.AttentionWindow(l)
	sinks := m.layers[l].sinks
	sc := &m.sc
	work := rows * nkv
	maxPos := 0
	for r := 0; r < rows; r++ {
		maxPos = max(maxPos, int(rowPos[r])+1)
	}
	// Split the (row, KV head) pairs into chunks over the pool, unless the
	// work is too small to be worth the hand-off.
	chunks := min(m.Pool.Threads()*4, work, max(1, work*group*maxPos*hd/8192))
	// Scores are computed for P rounded up to 16 positions (the key cache's
	// capacity is a multiple of 16; the extra columns are ignored), so every
	// column goes through the vector kernels.
	stride := group * ((maxPos + 15) &^ 15)
	sc.scores = grow(sc.scores, chunks*stride)
	per := (work + chunks - 1) / chunks
	chunks = (work + per - 1) / per
	m.Pool.Run(chunks, func(c int) {
		scores := sc.scores[c*stride : (c+1)*stride]
		for w := c * per; w < min(work, (c+1)*per); w++ {
			r, g := w/nkv, w%nkv
			P := int(rowPos[r]) + 1
			s := seqs[rowSeq[r]]
			q := sc.qkv[r*qkvDim+g*group*hd : r*qkvDim+(g+1)*group*hd]
			// Sliding window: keys before lo get no weight; those before
			// b, lo rounded down to a multiple of 16, are not computed at
			// all, so a window layer costs its window, not the context
			// (b + Pn ≤ P rounded up to 16 ≤ the cache's capacity).
			lo := model.WindowStart(P-1, win)
			b := lo &^ 15
			n := P - b
			Pn := (n + 15) &^ 15
			sco := scores[:group*Pn]
			compute.Gemm(nil, false, false, group, Pn, hd, scale, q, hd, s.k[l][g*hd*s.cap+b:], s.cap, 0, sco, Pn)
			for j := 0; j < group; j++ {
				row := sco[j*Pn : j*Pn+n]
				for i := range row[:lo-b] {
					row[i] = float32(math.Inf(-1))
				}
				if sinks != nil {
					// gpt-oss: query head g·group+j's sink logit joins
					// the normalisation.
					compute.SoftmaxRowSink(row, sinks[g*group+j])
				} else {
					compute.SoftmaxRow(row)
				}
			}
			o := sc.att[r*qDim+g*group*hd : r*qDim+(g+1)*group*hd]
			compute.Gemm(nil, false, false, group, hd, n, 1, sco, Pn, s.v[l][b*kvDim+g*hd:], kvDim, 0, o, hd)
		}
	})
}

// ffnBuf holds the intermediate activations of one SwiGLU evaluation.
type ffnBuf struct{ gath, gu, h, o []float32 }

// swiglu computes down(silu(gate(xn)) ⊙ up(xn)) for rows rows of xn into
// b.o, on pool.
func (m *Model) swiglu(pool *compute.Pool, b *ffnBuf, rows int, xn []float32, w *ffnWeights) {
	d, ff := m.Cfg.HiddenSize, w.width
	b.gu = grow(b.gu, rows*2*ff)
	b.h = grow(b.h, rows*ff)
	b.o = grow(b.o, rows*d)
	w.gu.mul(pool, m.sc.prec, rows, xn, d, b.gu, 2*ff)
	addRowBias(b.gu[:rows*2*ff], w.guBias)
	forRows(pool, rows, ff, rowStep{m: m, b: b, ff: ff}, swigluRows)
	w.down.mul(pool, m.sc.prec, rows, b.h, ff, b.o, d)
	addRowBias(b.o[:rows*d], w.downBias)
}

// routeRow picks the experts of one row of layer l from its router logits
// and writes their indices and weights into idx and w (length k): the
// training model's inference rule, model.RouteRow. probs is scratch of 2·E.
func (m *Model) routeRow(l int, logits []float32, idx []int32, w []float32, probs []float32) {
	model.RouteRow(m.Cfg, logits, m.layers[l].scoreBias, probs, idx, w)
}

// moe runs the sparse feed-forward of layer l over the rows of sc.xn and adds
// it into x. It returns the number of experts that got rows and the rows per
// expert.
func (m *Model) moe(l, rows int, x []float32) (int, []int) {
	cfg := m.Cfg
	L := &m.layers[l]
	d, E, k := cfg.HiddenSize, cfg.NumExperts, m.moeK
	sc := &m.sc
	sc.route = grow(sc.route, rows*E)
	L.router.mul(m.Pool, precFull, rows, sc.xn, d, sc.route, E) // routing stays float32
	addRowBias(sc.route[:rows*E], L.routerBias)
	// rs is the residual scale of the block's output (Granite).
	rs := m.resScale
	// Routing buffers live in the scratch: a decode step would otherwise
	// allocate them in every layer (and fresh memory costs page faults).
	mb := &sc.moe
	mb.idx = growI(mb.idx, k)
	mb.wts = grow(mb.wts, k)
	mb.probs = grow(mb.probs, 2*E)
	if len(mb.rows) < E {
		mb.rows, mb.w = make([][]int32, E), make([][]float32, E)
	}
	idx, wts, probs := mb.idx, mb.wts, mb.probs
	expRows, expW := mb.rows[:E], mb.w[:E]
	for e := range expRows {
		expRows[e], expW[e] = expRows[e][:0], expW[e][:0]
	}
	for r := 0; r < rows; r++ {
		m.routeRow(l, sc.route[r*E:(r+1)*E], idx, wts, probs)
		for j, e := range idx {
			expRows[e] = append(expRows[e], int32(r))
			expW[e] = append(expW[e], wts[j]*rs)
		}
	}
	// The shared expert sees every row, gated by sigmoid(shGate·x) when
	// the model has the gate.
	if cfg.SharedExpertIntermediateSize > 0 {
		m.swiglu(m.Pool, &sc.ffn, rows, sc.xn, &L.shared)
		for r := 0; r < rows; r++ {
			g := rs
			if L.shGate != nil {
				g *= compute.Sigmoid(compute.Dot(sc.xn[r*d:(r+1)*d], L.shGate))
			}
			if g != 1 {
				scaleBy(sc.ffn.o[r*d:(r+1)*d], g)
			}
		}
		compute.Add(x[:rows*d], sc.ffn.o)
	}
	counts := make([]int, E) // returned in Stats
	mb.es = mb.es[:0]
	maxRows := 0
	for e := 0; e < E; e++ {
		counts[e] = len(expRows[e])
		if counts[e] > 0 {
			mb.es = append(mb.es, e)
			maxRows = max(maxRows, counts[e])
		}
	}
	es := mb.es
	run := func(pool *compute.Pool, b *ffnBuf, e int) {
		n := len(expRows[e])
		b.gath = grow(b.gath, n*d)
		compute.GatherRows(b.gath, sc.xn, expRows[e], d)
		m.swiglu(pool, b, n, b.gath, &L.experts[e])
	}
	nw := min(m.Pool.Threads(), len(es))
	if nw < 2 || maxRows > 32 {
		// One expert at a time, each GEMM split over the pool.
		for _, e := range es {
			run(m.Pool, &sc.ffn, e)
			// An expert's rows are distinct rows of x.
			splitRows(m.Pool, len(expRows[e]), d, func(r0, r1 int) {
				compute.ScatterAddRows(x, sc.ffn.o[r0*d:r1*d], expRows[e][r0:r1], expW[e][r0:r1], d)
			})
		}
		return len(es), counts
	}
	// Few rows per expert (decode, verification): one task per expert
	// with single-threaded GEMMs, which needs far fewer hand-offs; tasks
	// are handed out busiest expert first so that the workers finish
	// together. The outputs are added in expert order, as above, so the
	// result does not depend on the schedule.
	for len(sc.workers) < len(es) {
		sc.workers = append(sc.workers, ffnBuf{})
	}
	mb.offs = scratchbuf.Grow(mb.offs, len(es)+1)
	offs := mb.offs
	offs[0] = 0
	for i, e := range es {
		offs[i+1] = offs[i] + len(expRows[e])*d
	}
	mb.order = scratchbuf.Grow(mb.order, len(es))
	order := mb.order
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return counts[es[b]] - counts[es[a]] })
	sc.expOut = grow(sc.expOut, offs[len(es)])
	m.Pool.Run(len(es), func(t int) {
		i := order[t]
		b := &sc.workers[t]
		run(nil, b, es[i])
		copy(sc.expOut[offs[i]:offs[i+1]], b.o)
	})
	for i, e := range es {
		compute.ScatterAddRows(x, sc.expOut[offs[i]:offs[i+1]], expRows[e], expW[e], d)
	}
	return len(es), counts
}

// countRows adds one call's routing to the model's running totals.
func (m *Model) countRows(rows int, expertRows [][]int) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	m.totalRows += uint64(rows)
	for l, c := range expertRows {
		for e, n := range c {
			m.routed[l][e] += uint64(n)
		}
	}
}

// RoutingCounts returns a copy of the running per-layer, per-expert counts of
// rows routed since the model was made, and the total rows processed.
func (m *Model) RoutingCounts() (perLayer [][]uint64, rows uint64) {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	perLayer = make([][]uint64, len(m.routed))
	for l := range m.routed {
		perLayer[l] = append([]uint64(nil), m.routed[l]...)
	}
	return perLayer, m.totalRows
}

// smallRows is the most rows for which Linear.mul multiplies by the packed
// weight copies (decode steps, verification, small batches); prefill takes
// the blocked GEMM over the matrices as stored.
const smallRows = 32

// minSplitFloats is the smallest weight matrix (in floats) whose small-M
// product Linear.mul splits over the pool.
const minSplitFloats = 1 << 19

// splitCols runs f over column ranges [j0, j1) of an n-column product with
// an n×k weight matrix: serially for a small matrix, else in blocks of at
// least 256 columns (multiples of 64), several per worker, so that a
// worker descheduled by another process on a shared machine holds up
// little of the product.
func splitCols(pool *compute.Pool, n, k int, f func(j0, j1 int)) {
	parts := colParts(pool, n, k)
	if parts < 2 {
		f(0, n)
		return
	}
	per := (n/parts + 63) &^ 63
	pool.Run((n+per-1)/per, func(t int) {
		f(t*per, min(n, (t+1)*per))
	})
}

// colParts is how many column blocks splitCols makes of an n×k product:
// 1 (run on the caller) for a small matrix.
func colParts(pool *compute.Pool, n, k int) int {
	if n*k < minSplitFloats {
		return 1
	}
	return min(4*pool.Threads(), n/256)
}

// minSplitRowFloats is the least work (rows × width floats) of a row-wise
// step that splitRows spreads over the pool: below it a hand-off costs
// more than it saves (decoding's single rows stay on the caller).
const minSplitRowFloats = 1 << 13

// splitRows calls f on ranges [r0, r1) covering rows rows of width floats
// each: on the caller for little work, else in a few ranges per worker.
// f must treat the rows independently, so that the result does not
// depend on the split.
func splitRows(pool *compute.Pool, rows, width int, f func(r0, r1 int)) {
	pool.RunRows(rows, rowParts(pool, rows, width), func(_, r0, r1 int) { f(r0, r1) })
}

// rowParts is how many ranges splitRows makes: 1 for little work.
func rowParts(pool *compute.Pool, rows, width int) int {
	if pool.Threads() < 2 || rows*width < minSplitRowFloats {
		return 1
	}
	return 2 * pool.Threads()
}

// forRows is splitRows for a step written as a function of s: on the
// caller (a decode step's rows) it builds no closure, where a closure per
// step and layer, allocated and soon garbage, cost more than the step.
func forRows(pool *compute.Pool, rows, width int, s rowStep, f func(s rowStep, r0, r1 int)) {
	if parts := rowParts(pool, rows, width); parts < 2 {
		f(s, 0, rows)
		return
	}
	splitRows(pool, rows, width, func(r0, r1 int) { f(s, r0, r1) })
}

// scaleBy multiplies x by s in place; s = 0 means unset (no change).
func scaleBy(x []float32, s float32) {
	if s == 0 || s == 1 {
		return
	}
	for i := range x {
		x[i] *= s
	}
}
