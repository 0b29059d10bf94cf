package model

import (
	"math"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// moeForward computes a.layers[l].mid → a.res[l+1] with a routed MoE FFN.
// It returns the unscaled load-balancing and z losses of the layer and the
// numbers of token-choice assignments routed and dropped.
func (m *Model) moeForward(l int, opt ForwardOptions) (aux, zl float64, routed, dropped int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	W := &m.W.Layers[l]
	N, d, E, ffe := a.B*a.T, cfg.HiddenSize, cfg.NumExperts, cfg.ExpertSize()
	rmsNorm(m.pool, la.xn2, la.mid, W.FFNNorm, N, d, m.eps, la.rstd2)
	compute.Gemm(m.pool, false, true, N, E, d, 1, la.xn2, d, W.Router, d, 0, la.rlog, E)
	for t := 0; t < N; t++ {
		z := la.rlog[t*E : (t+1)*E]
		lse := compute.LogSumExp(z)
		la.lse[t] = float32(lse)
		zl += lse * lse
		p := la.rprob[t*E : (t+1)*E]
		copy(p, z)
		compute.SoftmaxRow(p)
	}
	zl /= float64(N)

	cnt := a.cnt
	clear(cnt)
	clear(la.auxF)
	if cfg.Routing == config.RoutingExpertChoice && !opt.Causal {
		// Each expert takes its top-C tokens of the batch by softmax score.
		la.k = 0
		C := min(N, int(math.Ceil(float64(N)*expertChoiceCF(cfg)/float64(E))))
		off := 0
		for e := 0; e < E; e++ {
			la.expOff[e] = off
			for t := 0; t < N; t++ {
				a.col[t] = la.rprob[t*E+e]
			}
			n := compute.TopK(a.col[:N], C, a.colIdx)
			for j := 0; j < n; j++ {
				t := a.colIdx[j]
				la.asTok[off] = t
				la.asW[off] = la.rprob[int(t)*E+e]
				la.asSlot[off] = t*int32(E) + int32(e)
				off++
			}
			cnt[e] = n
			la.auxF[e] = float32(n)
		}
		la.expOff[E] = off
		// Tokens no expert took pass through with only the residual: report
		// them as dropped.
		covered := a.covered[:N]
		clear(covered)
		for _, t := range la.asTok[:off] {
			covered[t] = true
		}
		routed = N
		for _, c := range covered {
			if !c {
				dropped++
			}
		}
	} else {
		k := routedK(cfg, opt)
		la.k = k
		ec := cfg.Routing == config.RoutingExpertChoice
		la.tkSoftmax = !ec && cfg.RouterOrder != config.RouterSoftmaxTopK
		la.norm = !ec && cfg.NormTopKProb
		for t := 0; t < N; t++ {
			routeToken(la.tkSoftmax, la.norm, la.rlog[t*E:(t+1)*E], la.rprob[t*E:(t+1)*E],
				la.sel[t*k:(t+1)*k], la.selW[t*k:(t+1)*k])
		}
		capOn := cfg.CapacityFactor > 0 && !opt.Causal && !ec
		C := int(math.Ceil(float64(N*k) * cfg.CapacityFactor / float64(E)))
		for i, e := range la.sel[:N*k] {
			la.auxF[e]++
			if capOn && cnt[e] >= C {
				la.keep[i] = false
				dropped++
				continue
			}
			la.keep[i] = true
			cnt[e]++
		}
		routed = N * k
		off := 0
		for e := 0; e < E; e++ {
			la.expOff[e] = off
			off += cnt[e]
		}
		la.expOff[E] = off
		cur := a.cur
		copy(cur, la.expOff[:E])
		for i, e := range la.sel[:N*k] {
			if !la.keep[i] {
				continue
			}
			t := int32(i / k)
			p := cur[e]
			cur[e]++
			la.asTok[p] = t
			la.asW[p] = la.selW[i]
			la.asSlot[p] = t*int32(E) + e
		}
	}
	A := la.expOff[E]
	// Load statistics and the load-balancing loss E·Σ f_i·P_i, with f the
	// fraction of routed (pre-drop) assignments and P the mean router prob.
	var tot float32
	for _, f := range la.auxF {
		tot += f
	}
	for e := 0; e < E; e++ {
		if tot > 0 {
			la.auxF[e] /= tot
		}
		var P float64
		for t := 0; t < N; t++ {
			P += float64(la.rprob[t*E+e])
		}
		aux += float64(la.auxF[e]) * P / float64(N)
		a.loadCounts[e] = 0
		if A > 0 {
			a.loadCounts[e] = float64(cnt[e]) / float64(A)
		}
	}
	aux *= float64(E)

	// Experts: gather each expert's rows, one GEMM chain per expert.
	parallelFor(m.pool, E, func(_, e int) {
		off, n := la.expOff[e], la.expOff[e+1]-la.expOff[e]
		if n == 0 {
			return
		}
		xe := a.xA[off*d : (off+n)*d]
		compute.GatherRows(xe, la.xn2, la.asTok[off:off+n], d)
		ffnForward(m.pool, n, d, ffe, xe, m.wf[l].expertGU[e], W.ExpertDown[e],
			la.guA[off*2*ffe:(off+n)*2*ffe], la.hA[off*ffe:(off+n)*ffe], la.yA[off*d:(off+n)*d], 0)
	})
	out := a.res[l+1]
	copy(out, la.mid)
	compute.ScatterAddRows(out, la.yA[:A*d], la.asTok[:A], la.asW[:A], d)
	if s := cfg.SharedExpertIntermediateSize; s > 0 {
		ffnForward(m.pool, N, d, s, la.xn2, m.wf[l].sharedGU, W.SharedDown, la.guS, la.hS, out, 1)
	}
	return aux, zl, routed, dropped
}

// moeBackward back-propagates a.dres (the gradient of a.res[l+1]) through
// the MoE FFN, leaving in a.dres the gradient of a.layers[l].mid.
func (m *Model) moeBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	W, G := &m.W.Layers[l], &m.G.Layers[l]
	N, d, E, ffe := a.B*a.T, cfg.HiddenSize, cfg.NumExperts, cfg.ExpertSize()
	dxn := a.dxn
	clear(dxn)
	A := la.expOff[E]
	dw := a.dw[:N*E]
	clear(dw)
	parallelFor(m.pool, E, func(_, e int) {
		off, n := la.expOff[e], la.expOff[e+1]-la.expOff[e]
		if n == 0 {
			return
		}
		rows := la.asTok[off : off+n]
		dy := a.dyA[off*d : (off+n)*d]
		for j, t := range rows {
			i := off + j
			dr := a.dres[int(t)*d : int(t)*d+d]
			dw[la.asSlot[i]] = compute.Dot(dr, la.yA[i*d:i*d+d])
			w := la.asW[i]
			dyr := dy[j*d : j*d+d]
			for c, v := range dr {
				dyr[c] = w * v
			}
		}
		xe := a.xA[off*d : (off+n)*d]
		compute.GatherRows(xe, la.xn2, rows, d)
		ffnBackward(m.pool, n, d, ffe, xe, dy, m.wf[l].expertGU[e], W.ExpertDown[e],
			la.guA[off*2*ffe:(off+n)*2*ffe], la.hA[off*ffe:(off+n)*ffe],
			m.gf[l].expertGU[e], G.ExpertDown[e],
			a.dguA[off*2*ffe:(off+n)*2*ffe], a.dhA[off*ffe:(off+n)*ffe], a.dxA[off*d:(off+n)*d], 0)
	})
	compute.ScatterAddRows(dxn, a.dxA[:A*d], la.asTok[:A], nil, d)

	m.routerBackward(l)
	compute.Gemm(m.pool, true, false, E, d, N, 1, a.dz, E, la.xn2, d, 1, G.Router, d)
	compute.Gemm(m.pool, false, false, N, d, E, 1, a.dz, E, W.Router, d, 1, dxn, d)
	if s := cfg.SharedExpertIntermediateSize; s > 0 {
		ffnBackward(m.pool, N, d, s, la.xn2, a.dres, m.wf[l].sharedGU, W.SharedDown, la.guS, la.hS,
			m.gf[l].sharedGU, G.SharedDown, a.dgu, a.dh, dxn, 1)
	}
	rmsNormBackward(m.pool, a.dres, G.FFNNorm, dxn, la.mid, W.FFNNorm, la.rstd2, N, d, a.normPart)
}

// routerBackward turns a.dw (gradients of the combine weights, by
// token·E+expert) plus the aux and z losses into a.dz, the gradient of the
// router logits.
func (m *Model) routerBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, E := a.B*a.T, cfg.NumExperts
	dz, dp, dw := a.dz[:N*E], a.dp[:N*E], a.dw[:N*E]
	clear(dz)
	if la.k == 0 {
		copy(dp, dw) // expert choice: weights are the probabilities themselves
	} else {
		clear(dp)
		k := la.k
		for t := 0; t < N; t++ {
			sel := la.sel[t*k : (t+1)*k]
			w := la.selW[t*k : (t+1)*k]
			var s float32 // Σ w_j·dw_j
			for j, e := range sel {
				s += w[j] * dw[t*E+int(e)]
			}
			switch {
			case la.tkSoftmax: // w = softmax(z_sel)
				for j, e := range sel {
					dz[t*E+int(e)] += w[j] * (dw[t*E+int(e)] - s)
				}
			case la.norm: // w_j = p_j / Σ p_sel
				var S float32
				for _, e := range sel {
					S += la.rprob[t*E+int(e)]
				}
				for _, e := range sel {
					dp[t*E+int(e)] += (dw[t*E+int(e)] - s) / S
				}
			default: // w_j = p_j
				for _, e := range sel {
					dp[t*E+int(e)] += dw[t*E+int(e)]
				}
			}
		}
	}
	nm := float64(m.nMoE)
	auxC := float32(cfg.RouterAuxLossCoef * float64(E) / (float64(N) * nm))
	zC := float32(cfg.RouterZLossCoef * 2 / (float64(N) * nm))
	for t := 0; t < N; t++ {
		p := la.rprob[t*E : (t+1)*E]
		dpt := dp[t*E : (t+1)*E]
		if auxC != 0 {
			for e := range dpt {
				dpt[e] += auxC * la.auxF[e]
			}
		}
		dzt := dz[t*E : (t+1)*E]
		var dot float32
		for e, v := range p {
			dot += dpt[e] * v
		}
		zt := zC * la.lse[t]
		for e, v := range p {
			dzt[e] += v*(dpt[e]-dot) + zt*v
		}
	}
}

// Route computes the causal (inference) routing of one token from its
// router logits z [E], the same rule ForwardOptions{Causal: true} applies:
// it writes the chosen experts, best first, into sel and their combine
// weights into w (both of length at least RoutedK(cfg)) and returns k. probs
// is scratch of length E and receives softmax(z). Token-choice uses
// RouterOrder and NormTopKProb; expert-choice models use the top
// max(1, round(CapacityFactor)) softmax scores, not renormalised.
func Route(cfg *config.Config, z, probs []float32, sel []int32, w []float32) int {
	k := RoutedK(cfg)
	ec := cfg.Routing == config.RoutingExpertChoice
	copy(probs, z)
	compute.SoftmaxRow(probs[:len(z)])
	routeToken(!ec && cfg.RouterOrder != config.RouterSoftmaxTopK, !ec && cfg.NormTopKProb, z, probs, sel[:k], w[:k])
	return k
}

// routeToken picks len(sel) experts for one token. With tkSoftmax the
// weights are a softmax over the chosen logits (Mixtral); otherwise they are
// the chosen softmax probabilities p, renormalised to sum 1 when norm.
func routeToken(tkSoftmax, norm bool, z, p []float32, sel []int32, w []float32) {
	k := len(sel)
	if tkSoftmax {
		compute.TopK(z, k, sel)
		for j, e := range sel {
			w[j] = z[e]
		}
		compute.SoftmaxRow(w)
		return
	}
	compute.TopK(p, k, sel)
	var s float32
	for j, e := range sel {
		w[j] = p[e]
		s += w[j]
	}
	if norm {
		for j := range w {
			w[j] /= s
		}
	}
}
