package model

import (
	"fmt"
	"math"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/internal/scratch"
)

// Forward runs the model on B sequences of T tokens (tokens is [B·T],
// row-major) with the training routing. targets, when not nil, is [B·T] next
// tokens (negative = ignored) and the loss is computed; Backward may follow
// (the model keeps tokens and targets, which must not change until then).
func (m *Model) Forward(tokens, targets []int32, B, T int) (Stats, error) {
	return m.ForwardWith(tokens, targets, B, T, ForwardOptions{})
}

// ForwardWith is Forward with explicit routing options.
func (m *Model) ForwardWith(tokens, targets []int32, B, T int, opt ForwardOptions) (Stats, error) {
	m.state.ok = false
	cfg := m.Cfg
	if B <= 0 || T <= 0 {
		return Stats{}, fmt.Errorf("model: batch %d×%d must be positive", B, T)
	}
	N := B * T
	if len(tokens) != N {
		return Stats{}, fmt.Errorf("model: %d tokens for a %d×%d batch", len(tokens), B, T)
	}
	if targets != nil && len(targets) != N {
		return Stats{}, fmt.Errorf("model: %d targets for a %d×%d batch", len(targets), B, T)
	}
	V := cfg.VocabSize
	for i, t := range tokens {
		if t < 0 || int(t) >= V {
			return Stats{}, fmt.Errorf("model: token %d at position %d outside the vocabulary [0,%d)", t, i, V)
		}
	}
	for i, t := range targets {
		if int(t) >= V {
			return Stats{}, fmt.Errorf("model: target %d at position %d outside the vocabulary [0,%d)", t, i, V)
		}
	}
	if opt.CausalK < 0 {
		return Stats{}, fmt.Errorf("model: negative CausalK %d", opt.CausalK)
	}
	m.ensure(B, T, routedK(cfg, opt))
	if m.rope == nil || m.ropeLen() < T {
		r, err := NewRoPE(cfg, max(T, 64))
		if err != nil {
			return Stats{}, fmt.Errorf("model: %w", err)
		}
		m.rope = r
		m.ropeMax = max(T, 64)
	}
	a := &m.a
	d := cfg.HiddenSize
	// Embedding.
	x0 := a.res[0]
	for i, t := range tokens {
		copy(x0[i*d:i*d+d], m.W.Embed[int(t)*d:int(t)*d+d])
	}
	scaleBy(x0[:len(tokens)*d], m.embScale)
	st := m.forwardFrom(0, tokens, targets, B, T, opt)
	return st, nil
}

// forwardFrom runs layers from..L-1 on a.res[from], the final norm, the LM
// head and the loss, and records the state Backward needs. The aux and z
// losses cover only the layers it ran (all of them when from is 0).
func (m *Model) forwardFrom(from int, tokens, targets []int32, B, T int, opt ForwardOptions) Stats {
	cfg, a := m.Cfg, &m.a
	N, d, V := B*T, cfg.HiddenSize, cfg.VocabSize
	st := Stats{}
	if cfg.IsMoE() {
		st.ExpertLoad = make([][]float64, cfg.NumLayers)
		st.RoutedLoad = make([][]float64, cfg.NumLayers)
	}
	var routed, dropped int
	for l := from; l < cfg.NumLayers; l++ {
		m.attentionForward(l)
		if cfg.LayerIsMoE(l) {
			aux, z, r, dr := m.moeForward(l, opt)
			st.AuxLoss += aux
			st.ZLoss += z
			routed += r
			dropped += dr
			st.ExpertLoad[l] = append([]float64(nil), a.loadCounts...)
			st.RoutedLoad[l] = make([]float64, cfg.NumExperts)
			for e, f := range a.layers[l].auxF {
				st.RoutedLoad[l][e] = float64(f)
			}
		} else {
			m.denseForward(l)
		}
	}
	if m.nMoE > 0 {
		st.AuxLoss *= cfg.RouterAuxLossCoef / float64(m.nMoE)
		st.ZLoss *= cfg.RouterZLossCoef / float64(m.nMoE)
	}
	if routed > 0 {
		st.DroppedFrac = float64(dropped) / float64(routed)
	}

	// Final norm and LM head.
	xf16 := m.bf16Scratch(&a.xn16, N*d, d)
	rmsNorm(m.pool, a.xf, a.res[cfg.NumLayers], m.W.FinalNorm, N, d, m.eps, a.rstdf, xf16)
	m.gemmA(m.pool, true, N, V, d, m.logitScale, a.xf, xf16, d, m.W.LMHead, d, 0, a.logits, V)

	m.state = fwdState{ok: true, tokens: tokens, targets: targets, B: B, T: T, opt: opt}
	if targets != nil {
		a.lse = scratch.Grow(a.lse, N)
		parts := scratch.Grow(a.lossParts, numChunks(m.pool, N))
		a.lossParts = parts
		counts := scratch.Grow(a.countParts, len(parts))
		a.countParts = counts
		rowChunks(m.pool, N, func(c, r0, r1 int) {
			// ForwardWith checked the targets, so this cannot fail.
			parts[c], counts[c], _ = compute.CrossEntropyLSE(a.logits[r0*V:r1*V], targets[r0:r1], r1-r0, V, a.lse[r0:r1])
		})
		var sum float64
		n := 0
		for c := range parts {
			sum += parts[c]
			n += counts[c]
		}
		m.state.count = n
		st.Targets = n
		if n > 0 {
			st.CELoss = sum / float64(n)
		}
	}
	st.Loss = st.CELoss + st.AuxLoss + st.ZLoss
	return st
}

func (m *Model) ropeLen() int { return m.ropeMax }

// attnSizes returns cfg's attention sizes: the model width d, the head
// dimension hd, the query and key/value heads nh and nkv, and the widths of
// a row of queries (nh·hd), of keys or values (nkv·hd) and of the fused
// [q; k; v] row.
func attnSizes(cfg *config.Config) (d, hd, nh, nkv, qdim, kvdim, qkvdim int) {
	d, hd = cfg.HiddenSize, cfg.HeadDimension()
	nh, nkv = cfg.NumHeads, cfg.KVHeads()
	qdim, kvdim = nh*hd, nkv*hd
	return d, hd, nh, nkv, qdim, kvdim, qdim + 2*kvdim
}

// The causal attention products, over T×T score matrices (row stride T)
// whose entries above the diagonal are zero or ignored, taken in blocks of
// m.attnBlock rows so that no block multiplies the zero upper triangle.

// causalABt writes the lower triangle (by row blocks: block [r0,r1) gets
// columns [0,r1)) of C = alpha·A·Bᵀ into c, for A and B of T rows of w
// (strides lda, ldb): scores Q·Kᵀ, or dO·Vᵀ.
func (m *Model) causalABt(T, w int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32) {
	for r0 := 0; r0 < T; r0 += m.attnBlock {
		r1 := min(T, r0+m.attnBlock)
		m.attnGemm(false, true, r1-r0, r1, w, alpha, a[r0*lda:], lda, b, ldb, 0, c[r0*T:], T)
	}
}

// causalPB writes C = P·B (T×w, stride ldc) for a lower-triangular P and
// B of T rows of w (stride ldb): block [r0,r1) reads B's first r1 rows.
func (m *Model) causalPB(T, w int, p, b []float32, ldb int, c []float32, ldc int) {
	for r0 := 0; r0 < T; r0 += m.attnBlock {
		r1 := min(T, r0+m.attnBlock)
		m.attnGemm(false, false, r1-r0, w, r1, 1, p[r0*T:], T, b, ldb, 0, c[r0*ldc:], ldc)
	}
}

// causalPtB adds Pᵀ·B into C (T×w, stride ldc) for a lower-triangular P:
// rows [c0,c1) of C see rows i ≥ c0 of P and B.
func (m *Model) causalPtB(T, w int, p, b []float32, ldb int, c []float32, ldc int) {
	for c0 := 0; c0 < T; c0 += m.attnBlock {
		c1 := min(T, c0+m.attnBlock)
		m.attnGemm(true, false, c1-c0, w, T-c0, 1, p[c0*T+c0:], T, b[c0*ldb:], ldb, 1, c[c0*ldc:], ldc)
	}
}

// attentionForward computes a.res[l] → a.layers[l].mid.
func (m *Model) attentionForward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	B, T := a.B, a.T
	N := B * T
	d, hd, nh, nkv, qdim, kvdim, qkvdim := attnSizes(cfg)
	x := a.res[l]
	xn16 := m.bf16Scratch(&a.xn16, N*d, d)
	rmsNorm(m.pool, la.xn1, x, m.W.Layers[l].AttnNorm, N, d, m.eps, la.rstd1, xn16)
	m.gemmA(m.pool, true, N, qkvdim, d, 1, la.xn1, xn16, d, m.wf[l].qkv, d, 0, la.qkv, qkvdim)
	W := &m.W.Layers[l]
	rowChunks(m.pool, N, func(_, r0, r1 int) {
		for i := r0; i < r1; i++ {
			row := la.qkv[i*qkvdim : (i+1)*qkvdim]
			if W.QKVBias != nil {
				compute.Add(row, W.QKVBias)
			}
			if W.QNorm != nil {
				// q/k RMSNorm after the biases, before RoPE.
				m.qkNormRow(row[:qdim], la.qPre, W.QNorm, la.qRstd, i)
				m.qkNormRow(row[qdim:qdim+kvdim], la.kPre, W.KNorm, la.kRstd, i)
			}
			pos := i % T
			m.rope.Apply(row[:qdim], nh, pos)
			m.rope.Apply(row[qdim:qdim+kvdim], nkv, pos)
		}
	})
	scale := m.attnScale
	group := nh / nkv
	win := cfg.AttentionWindow(l)
	sinks := W.Sinks
	parallelFor(m.pool, B*nh, func(worker, job int) {
		b, h := job/nh, job%nh
		g := h / group
		q := la.qkv[b*T*qkvdim+h*hd:]
		k := la.qkv[b*T*qkvdim+qdim+g*hd:]
		v := la.qkv[b*T*qkvdim+qdim+kvdim+g*hd:]
		// The probabilities live in per-worker scratch; only each row's
		// logsumexp is kept, and the backward recomputes them.
		P := a.scrP[worker*T*T : (worker+1)*T*T]
		lse := la.attLSE[(b*nh+h)*T : (b*nh+h+1)*T]
		out := la.ao[b*T*qdim+h*hd:]
		m.causalABt(T, hd, scale, q, qkvdim, k, qkvdim, P)
		for t := 0; t < T; t++ {
			row := P[t*T : (t+1)*T]
			lo := WindowStart(t, win)
			clear(row[:lo])
			lse[t] = compute.SoftmaxRowLSE(row[lo : t+1])
			if sinks != nil {
				lse[t] = withSink(row[lo:t+1], lse[t], sinks[h])
			}
			clear(row[t+1:])
		}
		m.causalPB(T, hd, P, v, qkvdim, out, qdim)
	})
	copy(la.mid, x)
	m.gemm(m.pool, false, true, N, d, qdim, m.resScale, la.ao, qdim, W.Wo, qdim, 1, la.mid, d)
	if b := W.OBias; b != nil {
		for i := 0; i < N; i++ {
			row := la.mid[i*d : (i+1)*d]
			for c, v := range b {
				row[c] += m.resScale * v
			}
		}
	}
}

// withSink renormalises p, the softmax of a row of scores whose logsumexp
// is lse, to include an attention sink logit in the normalisation (gpt_oss:
// the sink has no value), and returns the logsumexp with the sink.
func withSink(p []float32, lse, sink float32) float32 {
	hi, lo := float64(max(lse, sink)), float64(min(lse, sink))
	all := hi + math.Log1p(math.Exp(lo-hi))
	f := float32(math.Exp(float64(lse) - all))
	for i := range p {
		p[i] *= f
	}
	return float32(all)
}

// qkNormRow normalises y, the q or k part of token row i, in place with the
// gains g (per head when g is narrower than y), saving its input in row i of
// pre and the 1/rms of each normed span in rstd.
func (m *Model) qkNormRow(y, pre, g, rstd []float32, i int) {
	w, n := len(y), len(y)/len(g)
	p := pre[i*w : (i+1)*w]
	copy(p, y)
	compute.RMSNorm(y, p, g, n, len(g), m.eps, rstd[i*n:(i+1)*n])
}

// denseForward computes a.layers[l].mid → a.res[l+1] with a SwiGLU FFN.
func (m *Model) denseForward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, d := a.B*a.T, cfg.HiddenSize
	xn16 := m.bf16Scratch(&a.xn16, N*d, d)
	rmsNorm(m.pool, la.xn2, la.mid, m.W.Layers[l].FFNNorm, N, d, m.eps, la.rstd2, xn16)
	out := a.res[l+1]
	copy(out, la.mid)
	ff := cfg.IntermediateSize
	m.ffnForward(m.pool, N, d, ff, la.xn2, xn16, &m.wf[l].dense, la.gu, la.h, m.bf16Scratch(&a.h16, N*ff, ff), out, m.resScale, 1)
}

// ffnForward computes y = beta·y + alpha·(down(act(gate(x), up(x))) + b)
// for n rows of the feed-forward w of width f (act SwiGLU, or gpt_oss's
// clamped one; the gate and up projections with their biases when w has
// them, b the down bias or 0), saving gate and up [n,2f] and the
// activation h [n,f]. x16 (or nil) is x's bf16 copy; h16, when not nil,
// is scratch [n,f] for h's (see bf16Scratch).
func (m *Model) ffnForward(p *compute.Pool, n, d, f int, x []float32, x16 []compute.BF16, w *ffnParams, gu, h []float32, h16 []compute.BF16, y []float32, alpha, beta float32) {
	if n == 0 {
		return
	}
	m.gemmA(p, true, n, 2*f, d, 1, x, x16, d, w.gu, d, 0, gu, 2*f)
	rowChunks(p, n, func(_, r0, r1 int) {
		for r := r0; r < r1; r++ {
			row := gu[r*2*f : (r+1)*2*f]
			if w.guBias != nil {
				compute.Add(row, w.guBias)
			}
			m.swiglu(h[r*f:(r+1)*f], row[:f], row[f:])
			putBF16(sub16(h16, r*f, (r+1)*f), h[r*f:(r+1)*f])
		}
	})
	if b := w.downBias; b != nil {
		// The bias goes in first: y = beta·y + alpha·b, then the product.
		for r := 0; r < n; r++ {
			yr := y[r*d : (r+1)*d]
			for c, v := range b {
				if beta == 0 {
					yr[c] = alpha * v
				} else {
					yr[c] = beta*yr[c] + alpha*v
				}
			}
		}
		beta = 1
	}
	m.gemmA(p, true, n, d, f, alpha, h, h16, f, w.down, f, beta, y, d)
}

// scaleBy multiplies x by s in place (nothing to do for s = 1).
func scaleBy(x []float32, s float32) {
	if s == 1 {
		return
	}
	for i := range x {
		x[i] *= s
	}
}

// WindowStart returns the first key position query t attends to with a
// sliding window of win keys (0 = full causal attention). Training and
// inference share it so that both see the same band.
func WindowStart(t, win int) int {
	if win > 0 && t >= win {
		return t - win + 1
	}
	return 0
}
