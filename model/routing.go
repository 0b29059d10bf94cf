package model

import (
	"errors"
	"fmt"
	"math"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// The MoE feed-forward in named steps, in the manner of llm.c:
//
//	forward:  routerScores → tokenChoiceRoute | expertChoiceRoute → balanceLoss → expertsForward → combine
//	backward: combineBackward → expertsBackward → routeBackward → balanceBackward → scoresBackward
//
// Routing fills, per layer, the assignments grouped by expert (asTok, asW,
// asSlot over expOff); the expert and combine steps only read those.

// router is one config's per-token routing rule. Training (tokenChoiceRoute)
// and inference (RouteRow) share it, so both pick the same experts with the
// same weights.
type router struct {
	sigmoid   bool    // scores are σ(z); otherwise softmax(z)
	tkSoftmax bool    // weights are a softmax over the chosen logits (Mixtral order)
	norm      bool    // the chosen scores are renormalised to sum 1
	scale     float32 // routed_scaling_factor, applied to the combine weights
	// groups > 0 limits the selection to the groupsUsed best of groups
	// equal expert groups, ranked by their best key (groupMax) or the sum
	// of their two best.
	groups, groupsUsed int
	groupMax           bool
}

func newRouter(cfg *config.Config) router {
	ec := cfg.Routing == config.RoutingExpertChoice
	sig := cfg.SigmoidScoring()
	r := router{
		sigmoid:   sig,
		tkSoftmax: !ec && !sig && cfg.RouterOrder != config.RouterSoftmaxTopK,
		norm:      !ec && cfg.NormTopKProb,
		scale:     float32(cfg.RoutedScale()),
	}
	if !ec {
		r.groups, r.groupsUsed, r.groupMax = cfg.GroupLimited()
	}
	return r
}

// scores writes the expert scores of one token's router logits z into s:
// σ(z) elementwise, or softmax(z).
func (r router) scores(z, s []float32) {
	if r.sigmoid {
		for e, v := range z {
			s[e] = compute.Sigmoid(v)
		}
		return
	}
	copy(s, z)
	compute.SoftmaxRow(s)
}

// pick chooses len(sel) experts for one token from its logits z and scores
// s and writes their weights, before routed_scaling_factor, into w. The
// selection key is the logits in Mixtral order and the scores otherwise,
// plus bias when it is not nil; with expert groups, only the experts of
// the best groups by that key compete (key is scratch of len(z) for
// either). The weights never see the bias: a softmax over the chosen
// logits (Mixtral order), or the chosen scores, renormalised to sum 1 when
// norm.
func (r router) pick(z, s, bias, key []float32, sel []int32, w []float32) {
	src := s
	if r.tkSoftmax {
		src = z
	}
	if bias != nil {
		key = key[:len(src)]
		for e, v := range src {
			key[e] = v + bias[e]
		}
		src = key
	}
	if r.groups > 0 {
		key = key[:len(src)]
		copy(key, src)
		r.maskGroups(key)
		src = key
	}
	compute.TopK(src, len(sel), sel)
	if r.tkSoftmax {
		for j, e := range sel {
			w[j] = z[e]
		}
		compute.SoftmaxRow(w)
		return
	}
	var sum float32
	for j, e := range sel {
		w[j] = s[e]
		sum += w[j]
	}
	if r.norm {
		for j := range w {
			w[j] /= sum
		}
	}
}

// maskGroups sets the key of every expert outside the r.groupsUsed best
// of r.groups equal groups to −Inf. A group ranks by its best key
// (groupMax) or the sum of its two best; ties go to the lower group.
func (r router) maskGroups(key []float32) {
	var score [config.MaxExpertGroups]float32
	var best [config.MaxExpertGroups]int32
	per := len(key) / r.groups
	for g := 0; g < r.groups; g++ {
		a, b := float32(math.Inf(-1)), float32(math.Inf(-1)) // best, second best
		for _, v := range key[g*per : (g+1)*per] {
			if v > a {
				a, b = v, a
			} else if v > b {
				b = v
			}
		}
		score[g] = a
		if !r.groupMax {
			score[g] = a + b
		}
	}
	compute.TopK(score[:r.groups], r.groupsUsed, best[:r.groupsUsed])
	var keep [config.MaxExpertGroups]bool
	for _, g := range best[:r.groupsUsed] {
		keep[g] = true
	}
	for g := 0; g < r.groups; g++ {
		if !keep[g] {
			for i := g * per; i < (g+1)*per; i++ {
				key[i] = float32(math.Inf(-1))
			}
		}
	}
}

// RouteRow computes the inference routing of one token, the rule a causal
// forward (ForwardOptions{Causal: true}) applies, from its router logits z
// [E] and its layer's selection bias (Layer.RouterScoreBias: nil unless
// topk_method is noaux_tc). It writes the chosen experts, best first, into
// sel and their combine weights (routed_scaling_factor applied) into w,
// both of length at least RoutedK(cfg), and returns k. scratch holds at
// least 2·E floats.
//
// Token choice scores the experts by softmax or sigmoid (scoring_func),
// selects the top k by logit (Mixtral order) or by score (softmax_topk
// order, and always with sigmoid) plus the bias, and weights them by a
// softmax over the chosen logits or by the chosen scores (renormalised with
// norm_topk_prob). Expert-choice models use the causal rule: the top
// max(1, round(CapacityFactor)) scores, not renormalised. Ties go to the
// lower expert index.
func RouteRow(cfg *config.Config, z, bias, scratch []float32, sel []int32, w []float32) int {
	k, E := RoutedK(cfg), len(z)
	r := newRouter(cfg)
	s := scratch[:E]
	r.scores(z, s)
	r.pick(z, s, bias, scratch[E:2*E], sel[:k], w[:k])
	for j := range w[:k] {
		w[j] *= r.scale
	}
	return k
}

// moeForward computes a.layers[l].mid → a.res[l+1] with a routed MoE FFN.
// It returns the unscaled load-balancing and z losses of the layer and the
// numbers of token-choice assignments routed and dropped.
func (m *Model) moeForward(l int, opt ForwardOptions) (aux, zl float64, routed, dropped int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, d := a.B*a.T, cfg.HiddenSize
	xn16 := m.bf16Scratch(&a.xn16, N*d, d)
	rmsNorm(m.pool, la.xn2, la.mid, m.W.Layers[l].FFNNorm, N, d, m.eps, la.rstd2, xn16)
	zl = m.routerScores(l, xn16)
	if cfg.Routing == config.RoutingExpertChoice && !opt.Causal {
		routed, dropped = m.expertChoiceRoute(l)
	} else {
		routed, dropped = m.tokenChoiceRoute(l, opt)
	}
	aux = m.balanceLoss(l)
	m.expertsForward(l, xn16)
	m.combine(l, xn16)
	return aux, zl, routed, dropped
}

// routerScores computes layer l's router logits, their scores (softmax or
// sigmoid) and logsumexps, and returns the mean squared logsumexp (the
// unscaled z-loss). xn16 (or nil) is the normed input's bf16 copy.
func (m *Model) routerScores(l int, xn16 []compute.BF16) (zl float64) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, d, E := a.B*a.T, cfg.HiddenSize, cfg.NumExperts
	m.gemmA(m.pool, true, N, E, d, 1, la.xn2, xn16, d, m.W.Layers[l].Router, d, 0, la.rlog, E)
	for t := 0; t < N; t++ {
		z := la.rlog[t*E : (t+1)*E]
		if b := m.W.Layers[l].RouterBias; b != nil {
			compute.Add(z, b)
		}
		lse := compute.LogSumExp(z)
		la.lse[t] = float32(lse)
		zl += lse * lse
		m.rt.scores(z, la.score[t*E:(t+1)*E])
	}
	return zl / float64(N)
}

// expertChoiceRoute lets each expert of layer l take its top-C tokens of
// the batch by score, C = ceil(N·CapacityFactor/E), weighted by those
// scores. It returns the tokens routed (N) and the tokens no expert took
// (they pass through on the residual alone).
func (m *Model) expertChoiceRoute(l int) (routed, dropped int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, E := a.B*a.T, cfg.NumExperts
	clear(la.auxF)
	la.k = 0
	C := min(N, int(math.Ceil(float64(N)*expertChoiceCF(cfg)/float64(E))))
	off := 0
	for e := 0; e < E; e++ {
		la.expOff[e] = off
		for t := 0; t < N; t++ {
			a.col[t] = la.score[t*E+e]
		}
		n := compute.TopK(a.col[:N], C, a.colIdx)
		for j := 0; j < n; j++ {
			t := a.colIdx[j]
			la.asTok[off] = t
			la.asW[off] = m.wScale * la.score[int(t)*E+e]
			la.asSlot[off] = t*int32(E) + int32(e)
			off++
		}
		a.cnt[e] = n
		la.auxF[e] = float32(n)
	}
	la.expOff[E] = off
	covered := a.covered[:N]
	clear(covered)
	for _, t := range la.asTok[:off] {
		covered[t] = true
	}
	for _, c := range covered {
		if !c {
			dropped++
		}
	}
	return N, dropped
}

// tokenChoiceRoute sends each token of layer l to its k experts (the
// router rule, with the layer's selection bias when it has one), drops
// assignments beyond an expert's capacity ceil(N·k·CapacityFactor/E) when
// the training routing has a capacity factor, and groups the kept
// assignments by expert. It returns the assignments routed and dropped.
func (m *Model) tokenChoiceRoute(l int, opt ForwardOptions) (routed, dropped int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, E := a.B*a.T, cfg.NumExperts
	k := routedK(cfg, opt)
	la.k = k
	bias := m.W.Layers[l].RouterScoreBias
	for t := 0; t < N; t++ {
		m.rt.pick(la.rlog[t*E:(t+1)*E], la.score[t*E:(t+1)*E], bias, a.key,
			la.sel[t*k:(t+1)*k], la.selW[t*k:(t+1)*k])
	}
	cnt := a.cnt
	clear(cnt)
	clear(la.auxF)
	capOn := cfg.CapacityFactor > 0 && !opt.Causal && cfg.Routing != config.RoutingExpertChoice
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
		la.asW[p] = m.wScale * la.selW[i]
		la.asSlot[p] = t*int32(E) + e
	}
	return N * k, dropped
}

// balanceLoss turns layer l's selection counts (la.auxF) into fractions f
// of the routed (pre-drop) assignments, records the processed load per
// expert, and returns the Switch load-balancing loss E·Σ f_e·P_e, with P_e
// the mean normalised score (the softmax, or σ(z)/Σσ(z) for sigmoid
// scoring).
func (m *Model) balanceLoss(l int) (aux float64) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, E := a.B*a.T, cfg.NumExperts
	var tot float32
	for _, f := range la.auxF {
		tot += f
	}
	if m.rt.sigmoid {
		for t := 0; t < N; t++ {
			var s float32
			for _, v := range la.score[t*E : (t+1)*E] {
				s += v
			}
			la.ssum[t] = s
		}
	}
	A := la.expOff[E]
	for e := 0; e < E; e++ {
		if tot > 0 {
			la.auxF[e] /= tot
		}
		var P float64
		for t := 0; t < N; t++ {
			if m.rt.sigmoid {
				P += float64(la.score[t*E+e]) / float64(la.ssum[t])
			} else {
				P += float64(la.score[t*E+e])
			}
		}
		aux += float64(la.auxF[e]) * P / float64(N)
		a.loadCounts[e] = 0
		if A > 0 {
			a.loadCounts[e] = float64(a.cnt[e]) / float64(A)
		}
	}
	return aux * float64(E)
}

// expertsForward gathers each expert's rows of layer l and runs its SwiGLU,
// one GEMM chain per expert.
func (m *Model) expertsForward(l int, xn16 []compute.BF16) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	d, ffe := cfg.HiddenSize, cfg.ExpertSize()
	A := la.expOff[cfg.NumExperts]
	var xA16 []compute.BF16
	if xn16 != nil {
		xA16 = m.bf16Scratch(&a.xA16, A*d, d)
	}
	h16 := m.bf16Scratch(&a.h16, A*ffe, ffe)
	m.forEachExpert(l, xA16 == nil, func(e, off, n int, xe []float32) {
		var xe16 []compute.BF16
		if xA16 != nil {
			// The bf16 rows are all the forward product needs.
			xe16 = xA16[off*d : (off+n)*d]
			compute.GatherRows(xe16, xn16, la.asTok[off:off+n], d)
		}
		m.ffnForward(m.pool, n, d, ffe, xe, xe16, &m.wf[l].experts[e],
			la.guA[off*2*ffe:(off+n)*2*ffe], la.hA[off*ffe:(off+n)*ffe], sub16(h16, off*ffe, (off+n)*ffe), la.yA[off*d:(off+n)*d], 1, 0)
	})
}

// sub16 is b[lo:hi], or nil for a nil b.
func sub16(b []compute.BF16, lo, hi int) []compute.BF16 {
	if b == nil {
		return nil
	}
	return b[lo:hi]
}

// forEachExpert runs f, in parallel over the experts of layer l that got
// rows, with the expert's first assignment off, its row count n and, when
// gather is set, its input rows xe (gathered from the normed activations
// into a.xA; nil otherwise).
func (m *Model) forEachExpert(l int, gather bool, f func(e, off, n int, xe []float32)) {
	a := &m.a
	la := &a.layers[l]
	d := m.Cfg.HiddenSize
	parallelFor(m.pool, m.Cfg.NumExperts, func(_, e int) {
		off, n := la.expOff[e], la.expOff[e+1]-la.expOff[e]
		if n == 0 {
			return
		}
		var xe []float32
		if gather {
			xe = a.xA[off*d : (off+n)*d]
			compute.GatherRows(xe, la.xn2, la.asTok[off:off+n], d)
		}
		f(e, off, n, xe)
	})
}

// combine writes a.res[l+1] = mid + Σ w·expert outputs + the shared expert
// (xn16, or nil, is the normed input's bf16 copy).
func (m *Model) combine(l int, xn16 []compute.BF16) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, d, A := a.B*a.T, cfg.HiddenSize, la.expOff[cfg.NumExperts]
	out := a.res[l+1]
	copy(out, la.mid)
	compute.ScatterAddRows(out, la.yA[:A*d], la.asTok[:A], la.asW[:A], d)
	s := cfg.SharedExpertIntermediateSize
	if s == 0 {
		return
	}
	W := &m.W.Layers[l]
	if W.SharedGateInp == nil {
		m.ffnForward(m.pool, N, d, s, la.xn2, xn16, &m.wf[l].shared, la.guS, la.hS, m.bf16Scratch(&a.h16, N*s, s), out, m.resScale, 1)
		return
	}
	// Gated (qwen2_moe): out += resScale·sigmoid(x·g)·shared(x), per token.
	m.ffnForward(m.pool, N, d, s, la.xn2, xn16, &m.wf[l].shared, la.guS, la.hS, m.bf16Scratch(&a.h16, N*s, s), la.yS, 1, 0)
	rowChunks(m.pool, N, func(_, r0, r1 int) {
		for t := r0; t < r1; t++ {
			g := compute.Sigmoid(compute.Dot(la.xn2[t*d:(t+1)*d], W.SharedGateInp))
			la.sg[t] = g
			o, y := out[t*d:(t+1)*d], la.yS[t*d:(t+1)*d]
			for c, v := range y {
				o[c] += m.resScale * g * v
			}
		}
	})
}

// sharedBackward back-propagates a.dres through layer l's shared expert,
// adding its input gradient into a.dxn; for a gated one also through the
// gate sigmoid(x·g), whose gradient goes to G.SharedGateInp.
func (m *Model) sharedBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	W, G := &m.W.Layers[l], &m.G.Layers[l]
	N, d, s := a.B*a.T, cfg.HiddenSize, cfg.SharedExpertIntermediateSize
	dy, alpha := a.dres, m.resScale
	if W.SharedGateInp != nil {
		// With r the residual scale: dS = r·g·dres; ∂g = r·dres·S;
		// ∂(x·gate) = ∂g·g·(1−g).
		alpha = 1
		dy = a.dS[:N*d]
		dz := a.dsg[:N]
		rowChunks(m.pool, N, func(_, r0, r1 int) {
			for t := r0; t < r1; t++ {
				g, r := la.sg[t], m.resScale
				dr := a.dres[t*d : (t+1)*d]
				dz[t] = r * compute.Dot(dr, la.yS[t*d:(t+1)*d]) * g * (1 - g)
				ds := dy[t*d : (t+1)*d]
				for c, v := range dr {
					ds[c] = r * g * v
				}
			}
		})
		// Summed over the tokens in order: the bits do not depend on threads.
		for t := 0; t < N; t++ {
			x := la.xn2[t*d : (t+1)*d]
			dx := a.dxn[t*d : (t+1)*d]
			for c := range x {
				G.SharedGateInp[c] += dz[t] * x[c]
				dx[c] += dz[t] * W.SharedGateInp[c]
			}
		}
	}
	m.ffnBackward(m.pool, N, d, s, la.xn2, dy, nil, &m.wf[l].shared, &m.gf[l].shared, la.guS, la.hS,
		a.dgu, a.dh, m.bf16Scratch(&a.g16, N*2*s, 2*s), a.dxn, alpha, 1)
}

// moeBackward back-propagates a.dres (the gradient of a.res[l+1]) through
// the MoE FFN, leaving in a.dres the gradient of a.layers[l].mid.
func (m *Model) moeBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	W, G := &m.W.Layers[l], &m.G.Layers[l]
	N, d, E := a.B*a.T, cfg.HiddenSize, cfg.NumExperts
	clear(a.dxn)
	m.combineBackward(l)
	m.expertsBackward(l)
	m.routeBackward(l)
	m.balanceBackward(l)
	m.scoresBackward(l)
	for t := 0; G.RouterBias != nil && t < N; t++ {
		compute.Add(G.RouterBias, a.dz[t*E:(t+1)*E])
	}
	m.gemm(m.pool, true, false, E, d, N, 1, a.dz, E, la.xn2, d, 1, G.Router, d)
	m.gemm(m.pool, false, false, N, d, E, 1, a.dz, E, W.Router, d, 1, a.dxn, d)
	if cfg.SharedExpertIntermediateSize > 0 {
		m.sharedBackward(l)
	}
	rmsNormBackward(m.pool, a.dres, G.FFNNorm, a.dxn, la.mid, W.FFNNorm, la.rstd2, N, d, a.normPart)
}

// combineBackward splits the output gradient a.dres over the assignments:
// a.dw[token·E+expert] = dres·y (the combine weight's gradient) and a.dyA =
// w·dres (each expert output's gradient).
func (m *Model) combineBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, d, E := a.B*a.T, cfg.HiddenSize, cfg.NumExperts
	clear(a.dw[:N*E])
	dy16 := m.bf16Scratch(&a.dy16, la.expOff[E]*d, d)
	parallelFor(m.pool, E, func(_, e int) {
		off, end := la.expOff[e], la.expOff[e+1]
		for i := off; i < end; i++ {
			t := int(la.asTok[i])
			dr := a.dres[t*d : t*d+d]
			a.dw[la.asSlot[i]] = compute.Dot(dr, la.yA[i*d:i*d+d])
			w := la.asW[i]
			dyr := a.dyA[i*d : i*d+d]
			for c, v := range dr {
				dyr[c] = w * v
			}
			putBF16(sub16(dy16, i*d, i*d+d), dyr)
		}
	})
}

// expertsBackward back-propagates a.dyA through each expert's SwiGLU,
// adding the weight gradients and scattering the input gradients into
// a.dxn.
func (m *Model) expertsBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	d, E, ffe := cfg.HiddenSize, cfg.NumExperts, cfg.ExpertSize()
	dy16 := m.bf16Scratch(&a.dy16, la.expOff[E]*d, d)
	g16 := m.bf16Scratch(&a.g16, la.expOff[E]*2*ffe, 2*ffe)
	m.forEachExpert(l, true, func(e, off, n int, xe []float32) {
		m.ffnBackward(m.pool, n, d, ffe, xe, a.dyA[off*d:(off+n)*d], sub16(dy16, off*d, (off+n)*d), &m.wf[l].experts[e], &m.gf[l].experts[e],
			la.guA[off*2*ffe:(off+n)*2*ffe], la.hA[off*ffe:(off+n)*ffe],
			a.dguA[off*2*ffe:(off+n)*2*ffe], a.dhA[off*ffe:(off+n)*ffe], sub16(g16, off*2*ffe, (off+n)*2*ffe), a.dxA[off*d:(off+n)*d], 1, 0)
	})
	A := la.expOff[E]
	compute.ScatterAddRows(a.dxn, a.dxA[:A*d], la.asTok[:A], nil, d)
}

// routeBackward turns a.dw (gradients of the combine weights, by
// token·E+expert) into a.dp, the gradient of the scores, and for Mixtral
// order (weights a softmax over the chosen logits) directly into a.dz, the
// gradient of the logits. The selection itself, and its bias, have no
// gradient.
func (m *Model) routeBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, E := a.B*a.T, cfg.NumExperts
	dz, dp, dw := a.dz[:N*E], a.dp[:N*E], a.dw[:N*E]
	clear(dz)
	for i := range dw {
		dw[i] *= m.wScale // the weights before routed_scaling_factor and the residual scale
	}
	if la.k == 0 {
		copy(dp, dw) // expert choice: the weights are the scores themselves
		return
	}
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
		case m.rt.tkSoftmax: // w = softmax(z_sel)
			for j, e := range sel {
				dz[t*E+int(e)] += w[j] * (dw[t*E+int(e)] - s)
			}
		case m.rt.norm: // w_j = s_j / Σ s_sel
			var S float32
			for _, e := range sel {
				S += la.score[t*E+int(e)]
			}
			for _, e := range sel {
				dp[t*E+int(e)] += (dw[t*E+int(e)] - s) / S
			}
		default: // w_j = s_j
			for _, e := range sel {
				dp[t*E+int(e)] += dw[t*E+int(e)]
			}
		}
	}
}

// balanceBackward adds the load-balancing loss's gradient to a.dp: f is
// constant, so ∂/∂P_e = coef·E·f_e/(N·layers) on every token's normalised
// score, taken back through σ/Σσ for sigmoid scoring.
func (m *Model) balanceBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, E := a.B*a.T, cfg.NumExperts
	auxC := float32(cfg.RouterAuxLossCoef * float64(E) / (float64(N) * float64(m.nMoE)))
	if auxC == 0 {
		return
	}
	for t := 0; t < N; t++ {
		dpt := a.dp[t*E : (t+1)*E]
		if !m.rt.sigmoid {
			for e := range dpt {
				dpt[e] += auxC * la.auxF[e]
			}
			continue
		}
		// q = s/S: ∂q_e/∂s_j = (δ_ej − q_e)/S.
		s, S := la.score[t*E:(t+1)*E], la.ssum[t]
		var gq float32 // Σ g_e·q_e
		for e, v := range s {
			gq += auxC * la.auxF[e] * v / S
		}
		for e := range dpt {
			dpt[e] += (auxC*la.auxF[e] - gq) / S
		}
	}
}

// scoresBackward takes a.dp back through the scores (softmax or sigmoid)
// into a.dz and adds the z-loss gradient 2·coef·lse·softmax(z)/(N·layers).
func (m *Model) scoresBackward(l int) {
	cfg, a := m.Cfg, &m.a
	la := &a.layers[l]
	N, E := a.B*a.T, cfg.NumExperts
	zC := float32(cfg.RouterZLossCoef * 2 / (float64(N) * float64(m.nMoE)))
	for t := 0; t < N; t++ {
		s := la.score[t*E : (t+1)*E]
		dpt := a.dp[t*E : (t+1)*E]
		dzt := a.dz[t*E : (t+1)*E]
		zt := zC * la.lse[t]
		if m.rt.sigmoid {
			z := la.rlog[t*E : (t+1)*E]
			for e, v := range s {
				dzt[e] += dpt[e] * v * (1 - v)
				if zt != 0 {
					dzt[e] += zt * float32(math.Exp(float64(z[e]-la.lse[t])))
				}
			}
			continue
		}
		var dot float32
		for e, v := range s {
			dot += dpt[e] * v
		}
		for e, v := range s {
			dzt[e] += v*(dpt[e]-dot) + zt*v
		}
	}
}

// BalanceRouters applies one step of auxiliary-loss-free balancing
// (DeepSeek-V3) to every layer with a selection bias: each expert's bias
// moves by rate·sign(1/E − load[l][e]), so an underloaded expert becomes
// likelier to be chosen and an overloaded one less. load[l] is the
// fraction of layer l's token-choice selections (before capacity dropping)
// that went to each expert over the optimizer step: Stats.RoutedLoad,
// averaged over the step's micro-batches. Models without a bias ignore it.
func (m *Model) BalanceRouters(load [][]float64, rate float64) error {
	if !m.Cfg.HasRouterScoreBias() {
		return nil
	}
	E := m.Cfg.NumExperts
	if len(load) != m.Cfg.NumLayers {
		return fmt.Errorf("model: router load for %d layers, the model has %d", len(load), m.Cfg.NumLayers)
	}
	mean, g := 1/float64(E), float32(rate)
	for l, ld := range load {
		b := m.W.Layers[l].RouterScoreBias
		if b == nil {
			continue
		}
		if len(ld) != E {
			return fmt.Errorf("model: router load of layer %d has %d experts, the model %d", l, len(ld), E)
		}
		for e, f := range ld {
			switch {
			case f < mean:
				b[e] += g
			case f > mean:
				b[e] -= g
			}
		}
	}
	return nil
}

// CountRoutes adds the routing of the last forward to per-source counts:
// for every MoE layer l, token t and expert e the token was routed to
// (token choice: its selections, before capacity dropping; expert choice:
// the experts that took it), counts[l][src[t]][e]++; dense layers count
// nothing. src gives each of the
// B·T tokens' source index (negative: not counted, e.g. padding); counts is
// [layers][sources][experts]. It is
// cheap: one pass over the selections. Call it after Forward, before
// Backward.
func (m *Model) CountRoutes(src []int16, counts [][][]uint64) error {
	cfg, a := m.Cfg, &m.a
	if !cfg.IsMoE() {
		return nil
	}
	if !m.state.ok {
		return errors.New("model: CountRoutes needs a forward (and no backward since)")
	}
	N, E := m.state.B*m.state.T, cfg.NumExperts
	if len(src) != N {
		return fmt.Errorf("model: %d token sources for %d tokens", len(src), N)
	}
	if len(counts) != cfg.NumLayers {
		return fmt.Errorf("model: route counts for %d layers, the model has %d", len(counts), cfg.NumLayers)
	}
	for l := range counts {
		for s, c := range counts[l] {
			if len(c) != E {
				return fmt.Errorf("model: route counts of layer %d source %d have %d experts, the model %d", l, s, len(c), E)
			}
		}
	}
	for _, s := range src {
		if int(s) >= len(counts[0]) {
			return fmt.Errorf("model: token source %d outside [0, %d)", s, len(counts[0]))
		}
	}
	for l := range counts {
		if !cfg.LayerIsMoE(l) {
			continue // a dense layer routes nothing
		}
		la := &a.layers[l]
		if la.k == 0 {
			for i, t := range la.asTok[:la.expOff[E]] {
				if s := src[t]; s >= 0 {
					counts[l][s][la.asSlot[i]%int32(E)]++
				}
			}
			continue
		}
		k := la.k
		for i, e := range la.sel[:N*k] {
			if s := src[i/k]; s >= 0 {
				counts[l][s][e]++
			}
		}
	}
	return nil
}
