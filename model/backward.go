package model

import (
	"errors"
	"math"

	"github.com/moe-llm/moe/compute"
)

// Backward back-propagates the loss of the last Forward (which must have had
// targets) and ADDS the gradients to G, so that calling Forward/Backward on
// several micro-batches accumulates their gradients (each micro-batch
// contributes the gradient of its own mean loss). It consumes the forward
// state: Logits() is no longer valid afterwards and a second Backward needs
// a new Forward.
func (m *Model) Backward() error {
	st := &m.state
	if !st.ok {
		return errors.New("model: Backward without a preceding Forward")
	}
	if st.targets == nil {
		return errors.New("model: Backward after a Forward without targets")
	}
	var scale float32
	if st.count > 0 {
		scale = 1 / float32(st.count)
	}
	a, V := &m.a, m.Cfg.VocabSize
	dl16 := m.bf16Scratch(&a.dl16, st.B*st.T*V, V)
	return m.backward(func(dlogits []float32) error {
		rowChunks(m.pool, st.B*st.T, func(_, r0, r1 int) {
			compute.CrossEntropyBackward(dlogits[r0*V:r1*V], dlogits[r0*V:r1*V], a.lse[r0:r1], st.targets[r0:r1], r1-r0, V, scale)
			putBF16(sub16(dl16, r0*V, r1*V), dlogits[r0*V:r1*V])
		})
		return nil
	}, dl16)
}

// BackwardLogits is Backward for a loss of the caller's: grad receives the
// last Forward's logits ([B·T·V], as Logits returns them) and overwrites
// them with the gradient of the loss with respect to them; the gradients
// of the router losses are added as in Backward. The last Forward need not
// have had targets (distillation trains on a teacher's distributions).
func (m *Model) BackwardLogits(grad func(logits []float32) error) error {
	if !m.state.ok {
		return errors.New("model: BackwardLogits without a preceding Forward")
	}
	return m.backward(grad, nil)
}

// backward consumes the forward state: grad turns the logits into their
// gradient, which is back-propagated through the network into G. dl16,
// when not nil, is scratch [N,V] that grad fills with the gradient's bf16
// copy (see bf16Scratch).
func (m *Model) backward(grad func(dlogits []float32) error, dl16 []compute.BF16) error {
	st := &m.state
	st.ok = false
	cfg, a := m.Cfg, &m.a
	N, d, V := st.B*st.T, cfg.HiddenSize, cfg.VocabSize
	dlogits := a.logits[:N*V]
	if err := grad(dlogits); err != nil {
		return err
	}
	m.gemmTA(m.pool, V, d, N, m.logitScale, dlogits, dl16, V, a.xf, d, 1, m.G.LMHead, d)
	m.gemmA(m.pool, false, N, d, V, m.logitScale, dlogits, dl16, V, m.W.LMHead, d, 0, a.dxn, d)
	clear(a.dres)
	L := cfg.NumLayers
	rmsNormBackward(m.pool, a.dres, m.G.FinalNorm, a.dxn, a.res[L], m.W.FinalNorm, a.rstdf, N, d, a.normPart)
	for l := L - 1; l >= 0; l-- {
		if cfg.LayerIsMoE(l) {
			m.moeBackward(l)
		} else {
			m.denseBackward(l)
		}
		m.attentionBackward(l)
		if m.layerGradHook != nil {
			m.layerGradHook(l, a.dres)
		}
	}
	scaleBy(a.dres[:N*d], m.embScale)
	for i, t := range st.tokens {
		compute.Add(m.G.Embed[int(t)*d:int(t)*d+d], a.dres[i*d:i*d+d])
	}
	return nil
}

// denseBackward back-propagates a.dres through the dense FFN of layer l.
func (m *Model) denseBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	W, G := &m.W.Layers[l], &m.G.Layers[l]
	N, d := a.B*a.T, cfg.HiddenSize
	ff := cfg.IntermediateSize
	m.ffnBackward(m.pool, N, d, ff, la.xn2, a.dres, nil, &m.wf[l].dense, &m.gf[l].dense, la.gu, la.h,
		a.dgu, a.dh, m.bf16Scratch(&a.g16, N*2*ff, 2*ff), a.dxn, m.resScale, 0)
	rmsNormBackward(m.pool, a.dres, G.FFNNorm, a.dxn, la.mid, W.FFNNorm, la.rstd2, N, d, a.normPart)
}

// ffnBackward back-propagates dy [n,d] through ffnForward's y (w's
// parameters, the gate and up outputs gu and activation h it saved): it
// adds the parameter gradients to g and writes dx = beta·dx + ∂/∂x, using
// dgu [n,2f] and dh [n,f] as scratch. dy16 (or nil) is dy's bf16 copy;
// dgu16, when not nil, is scratch [n,2f] for dgu's (see bf16Scratch).
func (m *Model) ffnBackward(p *compute.Pool, n, d, f int, x, dy []float32, dy16 []compute.BF16, w, g *ffnParams, gu, h, dgu, dh []float32, dgu16 []compute.BF16, dx []float32, alpha, beta float32) {
	if n == 0 {
		return
	}
	m.gemmA(p, false, n, f, d, alpha, dy, dy16, d, w.down, f, 0, dh, f)
	m.gemmTA(p, d, f, n, alpha, dy, dy16, d, h, f, 1, g.down, f)
	rowChunks(p, n, func(_, r0, r1 int) {
		for r := r0; r < r1; r++ {
			pre := gu[r*2*f : (r+1)*2*f]
			dg := dgu[r*2*f : (r+1)*2*f]
			m.swigluBackward(dg[:f], dg[f:], dh[r*f:(r+1)*f], pre[:f], pre[f:])
			putBF16(sub16(dgu16, r*2*f, (r+1)*2*f), dg)
		}
	})
	// The biases' gradients, summed over the rows in order: the bits do
	// not depend on threads.
	for r := 0; g.downBias != nil && r < n; r++ {
		for c, v := range dy[r*d : (r+1)*d] {
			g.downBias[c] += alpha * v
		}
	}
	for r := 0; g.guBias != nil && r < n; r++ {
		compute.Add(g.guBias, dgu[r*2*f:(r+1)*2*f])
	}
	m.gemmTA(p, 2*f, d, n, 1, dgu, dgu16, 2*f, x, d, 1, g.gu, d)
	m.gemmA(p, false, n, d, 2*f, 1, dgu, dgu16, 2*f, w.gu, d, beta, dx, d)
}

// attentionBackward back-propagates a.dres (the gradient of
// a.layers[l].mid) through the attention block, leaving in a.dres the
// gradient of a.res[l].
func (m *Model) attentionBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	W, G := &m.W.Layers[l], &m.G.Layers[l]
	B, T := a.B, a.T
	N := B * T
	d, hd, nh, nkv, qdim, kvdim, qkvdim := attnSizes(cfg)
	group := nh / nkv
	scale := m.attnScale
	win := cfg.AttentionWindow(l)

	// Output projection: mid = x + resScale·(ao·Woᵀ + bias).
	for i := 0; G.OBias != nil && i < N; i++ {
		for c, v := range a.dres[i*d : (i+1)*d] {
			G.OBias[c] += m.resScale * v
		}
	}
	m.gemm(m.pool, true, false, d, qdim, N, m.resScale, a.dres, d, la.ao, qdim, 1, G.Wo, qdim)
	m.gemm(m.pool, false, false, N, qdim, d, m.resScale, a.dres, d, W.Wo, qdim, 0, a.dao, qdim)

	dqkv := a.dqkv[:N*qkvdim]
	clear(dqkv)
	sinks, sinkPart := W.Sinks, a.sinkPart
	if sinks != nil {
		sinkPart = sinkPart[:B*nh]
		clear(sinkPart)
	}
	// One job per (sequence, kv head): the query heads of a group write the
	// same dk, dv rows, so they run on one goroutine.
	parallelFor(m.pool, B*nkv, func(worker, job int) {
		b, g := job/nkv, job%nkv
		base := b * T * qkvdim
		k := la.qkv[base+qdim+g*hd:]
		v := la.qkv[base+qdim+kvdim+g*hd:]
		dk := dqkv[base+qdim+g*hd:]
		dv := dqkv[base+qdim+kvdim+g*hd:]
		dP := a.dP[worker*T*T : (worker+1)*T*T]
		for h := g * group; h < (g+1)*group; h++ {
			q := la.qkv[base+h*hd:]
			dq := dqkv[base+h*hd:]
			do := a.dao[b*T*qdim+h*hd:]
			// Recompute the probabilities: P = exp(scale·QKᵀ − lse) on the
			// causal (windowed) band, zero elsewhere.
			P := a.scrP[worker*T*T : (worker+1)*T*T]
			lse := la.attLSE[(b*nh+h)*T : (b*nh+h+1)*T]
			m.causalABt(T, hd, scale, q, qkvdim, k, qkvdim, P)
			for t := 0; t < T; t++ {
				lo := WindowStart(t, win)
				row := P[t*T : (t+1)*T]
				clear(row[:lo])
				compute.ExpScale(row[lo:t+1], row[lo:t+1], lse[t], 1)
				clear(row[t+1:])
			}
			// dP = dO·Vᵀ (lower triangle by row blocks).
			m.causalABt(T, hd, 1, do, qdim, v, qkvdim, dP)
			// dV += Pᵀ·dO.
			m.causalPtB(T, hd, P, do, qdim, dv, qkvdim)
			// dS = softmax backward, times the score scale.
			for t := 0; t < T; t++ {
				lo := WindowStart(t, win)
				row := dP[t*T+lo : t*T+t+1]
				if sinks != nil {
					// The sink's probability times −Σ P·dP.
					ps := float32(math.Exp(float64(sinks[h] - lse[t])))
					sinkPart[b*nh+h] -= ps * compute.Dot(P[t*T+lo:t*T+t+1], row)
				}
				compute.SoftmaxBackwardScaled(row, row, P[t*T+lo:t*T+t+1], scale)
				clear(dP[t*T : t*T+lo])
				clear(dP[t*T+t+1 : (t+1)*T])
			}
			// dQ = dS·K; dK += dSᵀ·Q.
			m.causalPB(T, hd, dP, k, qkvdim, dq, qkvdim)
			m.causalPtB(T, hd, dP, q, qkvdim, dk, qkvdim)
		}
	})
	for i := 0; sinks != nil && i < B*nh; i++ {
		G.Sinks[i%nh] += sinkPart[i]
	}
	rowChunks(m.pool, N, func(_, r0, r1 int) {
		for i := r0; i < r1; i++ {
			row := dqkv[i*qkvdim : (i+1)*qkvdim]
			pos := i % T
			m.rope.Backward(row[:qdim], nh, pos)
			m.rope.Backward(row[qdim:qdim+kvdim], nkv, pos)
		}
	})
	if W.QNorm != nil {
		m.qkNormBackward(N, qkvdim, 0, qdim, dqkv, la.qPre, W.QNorm, G.QNorm, la.qRstd)
		m.qkNormBackward(N, qkvdim, qdim, kvdim, dqkv, la.kPre, W.KNorm, G.KNorm, la.kRstd)
	}
	if G.QKVBias != nil {
		// Summed over the rows in order: the bits do not depend on threads.
		for i := 0; i < N; i++ {
			compute.Add(G.QKVBias, dqkv[i*qkvdim:(i+1)*qkvdim])
		}
	}
	m.gemm(m.pool, true, false, qkvdim, d, N, 1, dqkv, qkvdim, la.xn1, d, 1, m.gf[l].qkv, d)
	m.gemm(m.pool, false, false, N, d, qkvdim, 1, dqkv, qkvdim, m.wf[l].qkv, d, 0, a.dxn, d)
	rmsNormBackward(m.pool, a.dres, G.AttnNorm, a.dxn, a.res[l], W.AttnNorm, la.rstd1, N, d, a.normPart)
}

// qkNormBackward back-propagates through the q or k norm of attention
// (qkNormRow): the w columns at off of each of the N rows of dqkv (stride
// qkvdim) hold the gradient of the normed values and are replaced by that
// of the norm's input pre; the gain gradient is added to dg.
func (m *Model) qkNormBackward(N, qkvdim, off, w int, dqkv, pre, g, dg, rstd []float32) {
	a := &m.a
	dout, dx := a.dqk[:N*w], a.dqkx[:N*w]
	for i := 0; i < N; i++ {
		copy(dout[i*w:(i+1)*w], dqkv[i*qkvdim+off:i*qkvdim+off+w])
	}
	clear(dx)
	rmsNormBackward(m.pool, dx, dg, dout, pre, g, rstd, N*w/len(g), len(g), a.normPart)
	for i := 0; i < N; i++ {
		copy(dqkv[i*qkvdim+off:i*qkvdim+off+w], dx[i*w:(i+1)*w])
	}
}
