package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// Stats reports one forward pass.
type Stats struct {
	// Loss is the training objective: CELoss + AuxLoss + ZLoss.
	Loss float64
	// CELoss is the mean cross-entropy over targets that are not ignored
	// (targets < 0 are ignored); 0 when there are none.
	CELoss float64
	// AuxLoss is the Switch load-balancing loss, already scaled by
	// RouterAuxLossCoef and averaged over MoE layers.
	AuxLoss float64
	// ZLoss is the ST-MoE router z-loss, already scaled by RouterZLossCoef
	// and averaged over MoE layers.
	ZLoss float64
	// Targets is the number of targets the cross-entropy counted.
	Targets int
	// ExpertLoad is, per layer and expert, the fraction of the layer's
	// processed (not dropped) token-expert assignments that went to the
	// expert; nil for dense models, nil rows for dense layers.
	ExpertLoad [][]float64
	// RoutedLoad is, per layer and expert, the fraction of the layer's
	// routed assignments (token-choice selections before capacity
	// dropping) that chose the expert: what loss-free balancing
	// (BalanceRouters) evens out. Nil like ExpertLoad.
	RoutedLoad [][]float64
	// DroppedFrac is, for token choice, the fraction of assignments dropped
	// for exceeding expert capacity (training routing with CapacityFactor >
	// 0); for expert choice (batch routing), the fraction of tokens that no
	// expert took (they pass through on the residual alone). Averaged over
	// MoE layers.
	DroppedFrac float64
}

// ForwardOptions selects how a forward pass routes tokens.
type ForwardOptions struct {
	// Causal selects the routing used for generation, where tokens arrive
	// one at a time: token-choice routing is dropless (capacity is ignored),
	// and expert-choice models route each token to its
	// k = max(1, round(CapacityFactor)) experts of highest softmax score,
	// weighted by those scores without renormalisation. The zero value is
	// the training routing: capacity dropping and batch-wide expert choice.
	Causal bool
	// CausalK, when > 0, overrides the k of the causal rule for
	// expert-choice models (to measure alternatives to round(CapacityFactor)).
	CausalK int
}

// Model is a decoder-only (MoE) transformer with explicit forward and
// backward passes over the compute kernels. It is not safe for concurrent
// use; its buffers are reused between calls.
type Model struct {
	// Cfg is the architecture.
	Cfg *config.Config
	// W holds the parameters.
	W *Weights
	// G holds the gradients, in the same layout as W; Backward adds into it.
	G *Weights

	pool    *compute.Pool
	wf      []fused // per layer, views over W
	gf      []fused // per layer, views over G
	rope    *compute.RoPE
	ropeMax int
	rt      router // the per-token routing rule of Cfg
	// attnBlock is the row block of the causal attention GEMMs: only
	// blocks on or below the diagonal are computed. 128 beat 64 by ~4% on
	// bench train tiny (T = 256, head dim 32: fewer, larger shallow GEMMs
	// outweigh the extra upper-triangle work); 192 and 256 were level.
	attnBlock int
	// layerGradHook, when set (by tests), sees the gradient of each layer's
	// input during Backward.
	layerGradHook func(l int, dx []float32)
	eps           float32
	// Granite's scales (1 when the config leaves them unset): the token
	// embeddings' factor, each block output's factor before the residual
	// add, the attention score scale (1/sqrt(head_dim) unless
	// attention_multiplier replaces it) and the logits' factor
	// (1/logits_scaling).
	embScale, resScale, attnScale, logitScale float32
	// wScale scales the routed experts' combine weights:
	// routed_scaling_factor times resScale.
	wScale float32
	// swiLimit is gpt_oss's SwiGLU clamp (swiglu_limit; 0: plain SwiGLU).
	swiLimit  float32
	precision Precision // arithmetic of the matmuls (SetPrecision)
	nMoE      int       // number of MoE layers
	state     fwdState
	a         acts

	// noBF16Copies makes every bf16 product convert its A operand itself
	// (tests compare it with the producers' copies: the same bits).
	noBF16Copies bool
}

// fused holds views over parameter tensors that are adjacent in the flat
// layout, so that one GEMM computes several projections.
type fused struct {
	qkv     []float32   // [wq; wk; wv] = [(nh+2·nkv)·hd, d]
	dense   ffnParams   // a dense layer's feed-forward
	experts []ffnParams // an MoE layer's experts
	shared  ffnParams   // its shared expert (empty without)
}

// ffnParams are one SwiGLU feed-forward's parameters of width f: the fused
// [gate; up] weights [2f, d] and down [d, f], and their biases [2f] and
// [d] (nil without).
type ffnParams struct {
	gu, down, guBias, downBias []float32
}

// fwdState is what Backward needs to know about the last forward pass.
type fwdState struct {
	ok      bool
	tokens  []int32
	targets []int32
	B, T    int
	opt     ForwardOptions
	count   int // counted targets
}

// NormEps returns the RMSNorm epsilon moe uses for cfg (RMSNormEps, or 1e-5
// when it is unset).
func NormEps(cfg *config.Config) float32 {
	if cfg.RMSNormEps > 0 {
		return float32(cfg.RMSNormEps)
	}
	return 1e-5
}

// RopeTheta returns the RoPE base moe uses for cfg (RopeTheta, or 10000
// when it is unset).
func RopeTheta(cfg *config.Config) float64 {
	if cfg.RopeTheta > 0 {
		return cfg.RopeTheta
	}
	return 10000
}

// Scales returns the factors the forward pass applies for cfg's Granite
// scales (embedding_multiplier, residual_multiplier, attention_multiplier,
// logits_scaling), 1 for those unset: the token embeddings' factor, the
// factor of each block's output before it joins the residual stream, the
// attention score scale (1/sqrt(head_dim) without attention_multiplier)
// and the logits' factor (1/logits_scaling).
func Scales(cfg *config.Config) (emb, res, attn, logit float32) {
	orOne := func(v float64) float32 {
		if v == 0 {
			return 1
		}
		return float32(v)
	}
	attn = float32(1 / math.Sqrt(float64(cfg.HeadDimension())))
	if cfg.AttentionMultiplier != 0 {
		attn = float32(cfg.AttentionMultiplier)
	}
	return orOne(cfg.EmbeddingMultiplier), orOne(cfg.ResidualMultiplier), attn, 1 / orOne(cfg.LogitsScaling)
}

// RoutedK returns the number of experts each token is routed to at
// inference for an MoE config: ExpertsPerToken for token-choice, and
// max(1, round(CapacityFactor)) (CapacityFactor defaulting to 2) for
// expert-choice. It returns 0 for dense configs.
func RoutedK(cfg *config.Config) int {
	if !cfg.IsMoE() {
		return 0
	}
	if cfg.Routing == config.RoutingExpertChoice {
		return min(cfg.NumExperts, max(1, int(math.Round(expertChoiceCF(cfg)))))
	}
	return min(cfg.NumExperts, cfg.ExpertsPerToken)
}

// routedK is the token-choice k a forward with opt uses.
func routedK(cfg *config.Config, opt ForwardOptions) int {
	if cfg.IsMoE() && cfg.Routing == config.RoutingExpertChoice && opt.Causal && opt.CausalK > 0 {
		return min(cfg.NumExperts, opt.CausalK)
	}
	return RoutedK(cfg)
}

func expertChoiceCF(cfg *config.Config) float64 {
	if cfg.CapacityFactor > 0 {
		return cfg.CapacityFactor
	}
	return 2
}

// Supported returns an error naming the first feature of cfg that this
// package does not implement, or a malformed dimension. It trains the
// families' pieces (q/k norms, q/k/v and attention biases, gated shared
// experts, sigmoid/bias and group-limited routing, dense layers among
// sparse ones, Granite's scales, gpt_oss's sinks, biases and clamped
// SwiGLU, sliding windows) and refuses GPT-3's plain MLP, LayerNorm and
// learned positions, DeepSeek's multi-head latent attention and
// activations other than SiLU.
func Supported(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("model: nil config")
	}
	switch {
	case cfg.SwiGLULimit < 0:
		return fmt.Errorf("model: negative swiglu_limit %g", cfg.SwiGLULimit)
	case (cfg.ExpertBias || cfg.RouterBias) && !cfg.IsMoE():
		return errors.New("model: expert or router biases (moe_expert_bias, moe_router_bias) on a dense model")
	case cfg.SharedExpertGate && (!cfg.IsMoE() || cfg.SharedExpertIntermediateSize <= 0):
		return errors.New("model: moe_shared_expert_gate is set but the model has no shared expert (shared_expert_intermediate_size)")
	case cfg.PlainMLP:
		return errors.New("model: a plain (ungated) MLP is not supported, only SwiGLU")
	case cfg.LayerNorm:
		return errors.New("model: LayerNorm is not supported, only RMSNorm")
	case cfg.LearnedPositions:
		return errors.New("model: learned position embeddings are not supported, only RoPE")
	case cfg.MLA():
		return errors.New("model: multi-head latent attention (kv_lora_rank) is not supported")
	case cfg.HiddenAct != "" && cfg.HiddenAct != "silu" && cfg.HiddenAct != "swish":
		return fmt.Errorf("model: activation %q is not supported, only silu (SwiGLU)", cfg.HiddenAct)
	}
	if cfg.SlidingWindow < 0 {
		return fmt.Errorf("model: negative sliding_window %d", cfg.SlidingWindow)
	}
	for _, t := range cfg.LayerTypes {
		if t != config.LayerFullAttention && t != config.LayerSlidingAttention {
			return fmt.Errorf("model: unknown layer type %q", t)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"vocab_size", cfg.VocabSize}, {"hidden_size", cfg.HiddenSize},
		{"num_hidden_layers", cfg.NumLayers}, {"num_attention_heads", cfg.NumHeads},
	} {
		if f.v <= 0 {
			return fmt.Errorf("model: %s = %d must be positive", f.name, f.v)
		}
	}
	hd := cfg.HeadDimension()
	if hd <= 0 || hd%2 != 0 {
		return fmt.Errorf("model: head dimension %d must be positive and even (RoPE)", hd)
	}
	if cfg.KVHeads() <= 0 || cfg.NumHeads%cfg.KVHeads() != 0 {
		return fmt.Errorf("model: num_attention_heads %d is not a multiple of num_key_value_heads %d", cfg.NumHeads, cfg.KVHeads())
	}
	if cfg.RMSNormEps < 0 || cfg.RopeTheta < 0 || cfg.CapacityFactor < 0 || cfg.RouterAuxLossCoef < 0 || cfg.RouterZLossCoef < 0 {
		return errors.New("model: rms_norm_eps, rope_theta, capacity factor and loss coefficients must not be negative")
	}
	if err := cfg.ValidateScoring(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := cfg.ValidateRopeScaling(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := cfg.RopeScalingImplemented(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if cfg.DecoderSparseStep < 0 {
		return fmt.Errorf("model: negative decoder_sparse_step %d", cfg.DecoderSparseStep)
	}
	for _, l := range cfg.MLPOnlyLayers {
		if l < 0 || l >= cfg.NumLayers {
			return fmt.Errorf("model: mlp_only_layers names layer %d, outside [0, %d)", l, cfg.NumLayers)
		}
	}
	if moeLayers(cfg) < cfg.NumLayers && cfg.IntermediateSize <= 0 {
		return fmt.Errorf("model: intermediate_size = %d must be positive (the width of the dense feed-forward layers)", cfg.IntermediateSize)
	}
	if !cfg.IsMoE() {
		return nil
	}
	if cfg.ExpertSize() <= 0 {
		return fmt.Errorf("model: expert intermediate size %d must be positive", cfg.ExpertSize())
	}
	if cfg.SharedExpertIntermediateSize < 0 {
		return fmt.Errorf("model: shared_expert_intermediate_size %d is negative", cfg.SharedExpertIntermediateSize)
	}
	switch cfg.Routing {
	case "", config.RoutingTokenChoice:
		if cfg.ExpertsPerToken < 1 || cfg.ExpertsPerToken > cfg.NumExperts {
			return fmt.Errorf("model: num_experts_per_tok = %d must be in [1, %d]", cfg.ExpertsPerToken, cfg.NumExperts)
		}
	case config.RoutingExpertChoice:
	default:
		return fmt.Errorf("model: unknown routing %q (want %q or %q)", cfg.Routing, config.RoutingTokenChoice, config.RoutingExpertChoice)
	}
	switch cfg.RouterOrder {
	case "", config.RouterTopKSoftmax, config.RouterSoftmaxTopK:
	default:
		return fmt.Errorf("model: unknown router order %q (want %q or %q)", cfg.RouterOrder, config.RouterTopKSoftmax, config.RouterSoftmaxTopK)
	}
	return nil
}

// New builds a model for cfg with zeroed parameters and gradients (call
// Init or load W.Flat). pool may be nil (single-threaded).
func New(cfg *config.Config, pool *compute.Pool) (*Model, error) {
	if err := Supported(cfg); err != nil {
		return nil, err
	}
	w, err := NewWeights(cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("model: parameters: %w", err)
	}
	g, err := NewWeights(cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("model: gradients: %w", err)
	}
	m := &Model{Cfg: cfg, W: w, G: g, pool: pool, eps: NormEps(cfg), attnBlock: 128}
	m.rt = newRouter(cfg)
	m.embScale, m.resScale, m.attnScale, m.logitScale = Scales(cfg)
	m.wScale = m.rt.scale * m.resScale
	m.swiLimit = float32(cfg.SwiGLULimit)
	m.wf = fusedViews(cfg, w)
	m.gf = fusedViews(cfg, g)
	m.nMoE = moeLayers(cfg)
	return m, nil
}

// moeLayers returns the number of layers of cfg with a sparse MoE
// feed-forward (config.LayerIsMoE); the others have a dense SwiGLU of width
// IntermediateSize.
func moeLayers(cfg *config.Config) int {
	n := 0
	for l := 0; l < cfg.NumLayers; l++ {
		if cfg.LayerIsMoE(l) {
			n++
		}
	}
	return n
}

// fusedViews returns per-layer views over adjacent tensors of w (the layout
// order of walk puts wq, wk, wv and each gate, up pair, and their biases,
// next to each other).
func fusedViews(cfg *config.Config, w *Weights) []fused {
	off := map[string]int{}
	at := 0
	walk(cfg, &Weights{Layers: make([]Layer, cfg.NumLayers)}, func(name string, _ *[]float32, size int, _ bool) {
		off[name] = at
		at += size
	})
	d, hd := cfg.HiddenSize, cfg.HeadDimension()
	span := func(name string, n int) []float32 { o := off[name]; return w.Flat[o : o+n : o+n] }
	ffn := func(p string, f int, bias bool) ffnParams {
		x := ffnParams{gu: span(p+"gate", 2*f*d), down: span(p+"down", d*f)}
		if bias {
			x.guBias, x.downBias = span(p+"gate_bias", 2*f), span(p+"down_bias", d)
		}
		return x
	}
	fs := make([]fused, cfg.NumLayers)
	for i := range fs {
		p := fmt.Sprintf("layers.%d.", i)
		fs[i].qkv = span(p+"wq", (cfg.NumHeads+2*cfg.KVHeads())*hd*d)
		if !cfg.LayerIsMoE(i) {
			fs[i].dense = ffn(p, cfg.IntermediateSize, cfg.MLPBias)
			continue
		}
		fs[i].experts = make([]ffnParams, cfg.NumExperts)
		for e := range fs[i].experts {
			fs[i].experts[e] = ffn(fmt.Sprintf("%sexpert.%d.", p, e), cfg.ExpertSize(), cfg.ExpertBias)
		}
		if s := cfg.SharedExpertIntermediateSize; s > 0 {
			fs[i].shared = ffn(p+"shared.", s, cfg.ExpertBias)
		}
	}
	return fs
}

// Init fills the parameters deterministically from seed: normal(0, std)
// with std = InitStd (0.02 when unset), output projections (wo and every
// down projection) scaled by 1/sqrt(2·NumLayers), norm gains 1, biases
// (q/k/v, router selection) 0.
func (m *Model) Init(seed uint64) {
	std := m.Cfg.InitStd
	if std <= 0 {
		std = 0.02
	}
	outStd := std / math.Sqrt(2*float64(m.Cfg.NumLayers))
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m.W.Visit(m.Cfg, func(name string, t []float32) {
		switch {
		case strings.HasSuffix(name, "norm"):
			for i := range t {
				t[i] = 1
			}
			return
		case strings.HasSuffix(name, "bias"):
			clear(t) // router selection biases: balanced until training says otherwise
			return
		case strings.HasSuffix(name, "wo") || strings.HasSuffix(name, "down"):
			fillNormal(r, t, outStd)
		default:
			fillNormal(r, t, std)
		}
	})
}

func fillNormal(r *rand.Rand, t []float32, std float64) {
	for i := range t {
		t[i] = float32(r.NormFloat64() * std)
	}
}

// ZeroGrad clears the gradients.
func (m *Model) ZeroGrad() { clear(m.G.Flat) }

// Logits returns the [B·T, V] logits of the last Forward. The slice is
// owned by the model: it is overwritten by the next Forward and by Backward
// (which turns it into the logits' gradient).
func (m *Model) Logits() []float32 {
	if !m.state.ok {
		return nil
	}
	return m.a.logits[:m.state.B*m.state.T*m.Cfg.VocabSize]
}

// parallelFor runs f(worker, i) for i in [0, n) on the pool's workers;
// worker in [0, pool.Threads()) is exclusive to one call at a time, so it
// can index per-worker scratch.
func parallelFor(p *compute.Pool, n int, f func(worker, i int)) {
	th := min(p.Threads(), n)
	if th <= 1 {
		for i := 0; i < n; i++ {
			f(0, i)
		}
		return
	}
	slots := make(chan int, th)
	for w := 0; w < th; w++ {
		slots <- w
	}
	p.Run(n, func(i int) {
		w := <-slots
		f(w, i)
		slots <- w
	})
}

// rowChunks runs f over [0, rows) split into contiguous chunks spread over
// the pool; chunk c of chunks covers [c·rows/chunks, (c+1)·rows/chunks).
func rowChunks(p *compute.Pool, rows int, f func(c, r0, r1 int)) {
	p.RunRows(rows, numChunks(p, rows), f)
}

// numChunks is the number of chunks rowChunks splits rows into.
func numChunks(p *compute.Pool, rows int) int { return max(1, min(rows, 4*p.Threads())) }

// rmsNorm is compute.RMSNorm with the rows spread over the pool (each row
// is independent, so the result does not depend on the split). out16, when
// not nil, receives the output's bf16 copy, written block by block while
// the rows are in cache.
func rmsNorm(p *compute.Pool, out, x, g []float32, rows, d int, eps float32, rstd []float32, out16 []compute.BF16) {
	rowChunks(p, rows, func(_, r0, r1 int) {
		if out16 == nil {
			compute.RMSNorm(out[r0*d:r1*d], x[r0*d:r1*d], g, r1-r0, d, eps, rstd[r0:r1])
			return
		}
		const block = 16
		for b0 := r0; b0 < r1; b0 += block {
			b1 := min(r1, b0+block)
			compute.RMSNorm(out[b0*d:b1*d], x[b0*d:b1*d], g, b1-b0, d, eps, rstd[b0:b1])
			putBF16(out16[b0*d:b1*d], out[b0*d:b1*d])
		}
	})
}

// normBwdRows is the fixed row block of rmsNormBackward: the gain gradient
// is summed per block and the blocks in order, so the bits do not depend on
// the thread count.
const normBwdRows = 64

// rmsNormBackward is compute.RMSNormBackward with row blocks of
// normBwdRows spread over the pool; part is scratch of at least
// ceil(rows/normBwdRows)·d floats for the per-block gain gradients.
func rmsNormBackward(p *compute.Pool, dx, dg, dout, x, g, rstd []float32, rows, d int, part []float32) {
	nb := (rows + normBwdRows - 1) / normBwdRows
	part = part[:nb*d]
	parallelFor(p, nb, func(_, b int) {
		r0, r1 := b*normBwdRows, min(rows, (b+1)*normBwdRows)
		var pb []float32
		if dg != nil {
			pb = part[b*d : (b+1)*d]
			clear(pb)
		}
		compute.RMSNormBackward(dx[r0*d:r1*d], pb, dout[r0*d:r1*d], x[r0*d:r1*d], g, rstd[r0:r1], r1-r0, d)
	})
	for b := 0; dg != nil && b < nb; b++ {
		compute.Add(dg[:d], part[b*d:(b+1)*d])
	}
}
