package model

import (
	"math"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/internal/scratch"
)

// layerActs are the activations of one layer that the backward pass reads.
type layerActs struct {
	xn1, rstd1 []float32 // attention RMSNorm output [N,d] and 1/rms [N]
	qkv        []float32 // [N, (nh+2·nkv)·hd], q and k after RoPE
	// q and k before their norms ([N, nh·hd], [N, nkv·hd]) and the norms'
	// 1/rms per normed row; empty without q/k norms.
	qPre, kPre, qRstd, kRstd []float32
	attLSE                   []float32 // [B, nh, T] logsumexp of each attention score row
	ao                       []float32 // [N, nh·hd] attention output before wo
	mid                      []float32 // [N,d] residual after attention
	xn2, rstd2               []float32 // FFN RMSNorm output and 1/rms

	gu, h []float32 // dense FFN: [N, 2·ff] gate|up, [N, ff] swiglu

	// MoE routing.
	rlog  []float32 // [N,E] router logits
	score []float32 // [N,E] expert scores: softmax over all experts, or σ(logit)
	ssum  []float32 // [N] Σ of each token's sigmoid scores (sigmoid scoring)
	lse   []float32 // [N] logsumexp of the router logits
	k     int       // experts per token of token-choice routing (0: expert choice)
	sel   []int32   // [N·k] chosen experts, best first
	selW  []float32 // [N·k] their combine weights
	keep  []bool    // [N·k] false when dropped for capacity
	auxF  []float32 // [E] fraction of routed assignments per expert
	// Assignments grouped by expert: expert e owns [expOff[e], expOff[e+1]).
	asTok  []int32   // token row of each assignment
	asW    []float32 // combine weight
	asSlot []int32   // token·E + expert, the router-gradient slot
	expOff []int     // [E+1]
	guA    []float32 // [A, 2·ffe]
	hA     []float32 // [A, ffe]
	yA     []float32 // [A, d] expert outputs before weighting
	guS    []float32 // shared expert [N, 2·ffs]
	hS     []float32 // [N, ffs]
	// Gated shared expert (qwen2_moe): its output before the gate [N,d]
	// and each token's gate sigmoid(x·g) [N].
	yS, sg []float32
}

// acts are all buffers of a forward/backward pass for N = B·T tokens.
type acts struct {
	B, T   int
	k      int         // token-choice experts per token the buffers hold
	res    [][]float32 // L+1 residual streams [N,d]: res[l] is layer l's input
	layers []layerActs
	xf     []float32 // final norm output [N,d]
	rstdf  []float32
	logits []float32 // [N,V]; Backward turns it into dlogits
	lse    []float32 // [N] logsumexp of each row of logits

	lossParts  []float64 // per-chunk loss sums
	countParts []int

	// Scratch shared by all layers.
	dres, dxn  []float32 // [N,d]
	normPart   []float32 // rmsNormBackward's per-block gain gradients
	dqkv       []float32 // [N, qkvdim]
	dao        []float32 // [N, qdim]
	dqk, dqkx  []float32 // [N, qdim] gradients through the q/k norms
	scrP, dP   []float32 // [threads, T, T] attention probabilities and their gradient
	dgu, dh    []float32 // [N, 2·max(ff,ffs)], [N, max(ff,ffs)]
	dS, dsg    []float32 // [N,d], [N] gradients of the gated shared expert's output and gate logit
	sinkPart   []float32 // [B·nh] attention sinks' gradients per sequence and head
	xA, dyA    []float32 // [A, d]
	dxA        []float32 // [A, d]
	dguA, dhA  []float32 // [A, 2·ffe], [A, ffe]
	dz, dw     []float32 // [N,E] router logit grads, combine-weight grads
	dp         []float32 // [N,E] router score grads
	key        []float32 // [E] selection key (scores plus bias)
	col        []float32 // [N] one expert's scores (expert choice)
	colIdx     []int32   // [N]
	covered    []bool    // [N] tokens some expert took (expert choice)
	cnt, cur   []int     // [E]
	maxA       int
	loadCounts []float64 // [E]

	// bf16 copies of matmul A operands, written by their producers (bf16
	// precision only; see Model.bf16Scratch).
	xn16 []compute.BF16 // [N,d] a norm's output
	xA16 []compute.BF16 // [A,d] the experts' gathered inputs
	dy16 []compute.BF16 // [A,d] the experts' output gradients
	h16  []compute.BF16 // [rows,f] SwiGLU outputs
	g16  []compute.BF16 // [rows,2f] SwiGLU input gradients
	dl16 []compute.BF16 // [N,V] the logits' gradients (Backward)
}

// maxAssignments bounds the token-expert assignments of one MoE layer for
// N tokens under any routing this config can use.
func maxAssignments(cfg *config.Config, N, k int) int {
	if !cfg.IsMoE() {
		return 0
	}
	a := N * k
	if cfg.Routing == config.RoutingExpertChoice {
		c := min(N, int(math.Ceil(float64(N)*expertChoiceCF(cfg)/float64(cfg.NumExperts))))
		a = max(a, c*cfg.NumExperts)
	}
	return a
}

// ensure sizes every buffer for a B×T batch routing up to k experts per
// token with token choice.
func (m *Model) ensure(B, T, k int) {
	a := &m.a
	cfg := m.Cfg
	if a.B == B && a.T == T && a.k >= k && a.layers != nil {
		return
	}
	a.B, a.T, a.k = B, T, max(k, a.k)
	N := B * T
	d, V, hd := cfg.HiddenSize, cfg.VocabSize, cfg.HeadDimension()
	nh, nkv := cfg.NumHeads, cfg.KVHeads()
	qdim, qkvdim := nh*hd, (nh+2*nkv)*hd
	L := cfg.NumLayers
	if len(a.res) != L+1 {
		a.res = make([][]float32, L+1)
		a.layers = make([]layerActs, L)
	}
	for i := range a.res {
		a.res[i] = scratch.Grow(a.res[i], N*d)
	}
	E, ff, ffe, ffs := cfg.NumExperts, cfg.IntermediateSize, cfg.ExpertSize(), cfg.SharedExpertIntermediateSize
	kk := a.k
	A := maxAssignments(cfg, N, kk)
	a.maxA = A
	for i := range a.layers {
		la := &a.layers[i]
		la.xn1 = scratch.Grow(la.xn1, N*d)
		la.rstd1 = scratch.Grow(la.rstd1, N)
		la.qkv = scratch.Grow(la.qkv, N*qkvdim)
		la.attLSE = scratch.Grow(la.attLSE, B*nh*T)
		if cfg.QKNorm {
			qn, kn := qkNormWidths(cfg)
			la.qPre = scratch.Grow(la.qPre, N*qdim)
			la.kPre = scratch.Grow(la.kPre, N*nkv*hd)
			la.qRstd = scratch.Grow(la.qRstd, N*qdim/qn)
			la.kRstd = scratch.Grow(la.kRstd, N*nkv*hd/kn)
		}
		la.ao = scratch.Grow(la.ao, N*qdim)
		la.mid = scratch.Grow(la.mid, N*d)
		la.xn2 = scratch.Grow(la.xn2, N*d)
		la.rstd2 = scratch.Grow(la.rstd2, N)
		if !cfg.LayerIsMoE(i) {
			la.gu = scratch.Grow(la.gu, N*2*ff)
			la.h = scratch.Grow(la.h, N*ff)
			continue
		}
		la.rlog = scratch.Grow(la.rlog, N*E)
		la.score = scratch.Grow(la.score, N*E)
		la.ssum = scratch.Grow(la.ssum, N)
		la.lse = scratch.Grow(la.lse, N)
		la.sel = scratch.Grow(la.sel, N*kk)
		la.selW = scratch.Grow(la.selW, N*kk)
		la.keep = scratch.Grow(la.keep, N*kk)
		la.asTok = scratch.Grow(la.asTok, A)
		la.asW = scratch.Grow(la.asW, A)
		la.asSlot = scratch.Grow(la.asSlot, A)
		la.expOff = scratch.Grow(la.expOff, E+1)
		la.auxF = scratch.Grow(la.auxF, E)
		la.guA = scratch.Grow(la.guA, A*2*ffe)
		la.hA = scratch.Grow(la.hA, A*ffe)
		la.yA = scratch.Grow(la.yA, A*d)
		if ffs > 0 {
			la.guS = scratch.Grow(la.guS, N*2*ffs)
			la.hS = scratch.Grow(la.hS, N*ffs)
		}
		if cfg.SharedExpertGate {
			la.yS = scratch.Grow(la.yS, N*d)
			la.sg = scratch.Grow(la.sg, N)
		}
	}
	a.xf = scratch.Grow(a.xf, N*d)
	a.rstdf = scratch.Grow(a.rstdf, N)
	a.logits = scratch.Grow(a.logits, N*V)
	a.dres = scratch.Grow(a.dres, N*d)
	a.dxn = scratch.Grow(a.dxn, N*d)
	part := (N + normBwdRows - 1) / normBwdRows * d
	if cfg.QKNorm {
		qn, _ := qkNormWidths(cfg)
		part = max(part, (N*qdim/qn+normBwdRows-1)/normBwdRows*qn)
		a.dqk = scratch.Grow(a.dqk, N*qdim)
		a.dqkx = scratch.Grow(a.dqkx, N*qdim)
	}
	a.normPart = scratch.Grow(a.normPart, part)
	a.dqkv = scratch.Grow(a.dqkv, N*qkvdim)
	a.dao = scratch.Grow(a.dao, N*qdim)
	if cfg.AttentionSinks {
		a.sinkPart = scratch.Grow(a.sinkPart, B*nh)
	}
	a.dP = scratch.Grow(a.dP, m.pool.Threads()*T*T)
	a.scrP = scratch.Grow(a.scrP, m.pool.Threads()*T*T)
	fmax := ffs
	if m.nMoE < L {
		fmax = max(ff, ffs)
	}
	a.dgu = scratch.Grow(a.dgu, N*2*fmax)
	a.dh = scratch.Grow(a.dh, N*fmax)
	if cfg.IsMoE() {
		a.xA = scratch.Grow(a.xA, A*d)
		a.dyA = scratch.Grow(a.dyA, A*d)
		a.dxA = scratch.Grow(a.dxA, A*d)
		a.dguA = scratch.Grow(a.dguA, A*2*ffe)
		a.dhA = scratch.Grow(a.dhA, A*ffe)
		a.dz = scratch.Grow(a.dz, N*E)
		a.dw = scratch.Grow(a.dw, N*E)
		a.dp = scratch.Grow(a.dp, N*E)
		if cfg.SharedExpertGate {
			a.dS = scratch.Grow(a.dS, N*d)
			a.dsg = scratch.Grow(a.dsg, N)
		}
		a.key = scratch.Grow(a.key, E)
		a.col = scratch.Grow(a.col, N)
		a.colIdx = scratch.Grow(a.colIdx, N)
		a.covered = scratch.Grow(a.covered, N)
		a.cnt = scratch.Grow(a.cnt, E)
		a.cur = scratch.Grow(a.cur, E)
		a.loadCounts = scratch.Grow(a.loadCounts, E)
	}
}
