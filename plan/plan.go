// Package plan is the model arithmetic behind `moe plan`: exact parameter
// counts by part, FLOPs per token and for training, KV-cache and weight
// memory, and the time and cost of a training run on a GPU cluster. Every
// function here is a pure function of a *config.Config and Options.
package plan

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"strings"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/internal/memest"
)

// GPU is an accelerator's dense bf16 tensor throughput.
type GPU struct {
	// Name is the lower-case name used on the command line (a100, h100).
	Name string `json:"name"`
	// PeakFLOPS is dense bf16 FLOP/s without sparsity.
	PeakFLOPS float64 `json:"peak_flops"`
	// DefaultPrice is the default rental price in USD per GPU-hour.
	DefaultPrice float64 `json:"default_price_usd_per_hour"`
	// MemoryBytes is the GPU's memory (the 80 GB parts).
	MemoryBytes float64 `json:"memory_bytes"`
}

// GPUs returns the accelerators moe plans for: A100 (312 TFLOP/s dense bf16)
// and H100 SXM (989 TFLOP/s dense bf16).
func GPUs() []GPU {
	return []GPU{
		{Name: "a100", PeakFLOPS: 312e12, DefaultPrice: 1.0, MemoryBytes: 80e9},
		{Name: "h100", PeakFLOPS: 989e12, DefaultPrice: 2.0, MemoryBytes: 80e9},
	}
}

// LookupGPU returns the GPU called name (case-insensitive).
func LookupGPU(name string) (GPU, error) {
	var names []string
	for _, g := range GPUs() {
		if strings.EqualFold(g.Name, name) {
			return g, nil
		}
		names = append(names, g.Name)
	}
	return GPU{}, fmt.Errorf("plan: unknown GPU %q (want one of %s)", name, strings.Join(names, ", "))
}

// Options are the training-run assumptions of a plan. Zero fields take the
// defaults of DefaultOptions.
type Options struct {
	// GPU is a100 or h100.
	GPU string
	// GPUs is the number of GPUs.
	GPUs int
	// MFU is the model FLOPs utilisation, in (0, 1].
	MFU float64
	// Tokens is the number of training tokens.
	Tokens float64
	// PricePerGPUHour is the rental price in USD.
	PricePerGPUHour float64
	// Context is the sequence length the FLOPs and KV cache are computed at.
	Context int
	// BatchTokens is the global batch size in tokens.
	BatchTokens float64
	// BatchTokensStart and BatchRampTokens describe a batch-size ramp: the
	// batch grows linearly from BatchTokensStart to BatchTokens over the
	// first BatchRampTokens training tokens (0: no ramp).
	BatchTokensStart, BatchRampTokens float64
	// LocalBatch and LocalSeqLen are the micro-batch of a `moe train` run
	// on this machine, for LocalTrainMemory (defaults: moe train's, 8
	// sequences of min(context, 256) tokens).
	LocalBatch, LocalSeqLen int
}

// DefaultOptions returns the assumptions moe plans cfg with. For the gpt4
// and gpt3 presets they are the published training setups (GPT-4: 13T
// tokens, 25,000 A100s at 34% MFU, $1 per A100-hour, 60M-token batches, 8k
// context; GPT-3: 300B tokens, 3.2M-token batches, 2k context). Otherwise:
// 1024 H100s at 40% MFU and $2 per GPU-hour, 20 training tokens per active
// parameter (the Chinchilla ratio), 4M-token batches, and the config's own
// context length.
func DefaultOptions(cfg *config.Config) Options {
	switch cfg.Name {
	case "gpt4":
		return Options{GPU: "a100", GPUs: 25000, MFU: 0.34, Tokens: 13e12, PricePerGPUHour: 1, Context: 8192, BatchTokens: 60e6}
	case "gpt3":
		return Options{GPU: "a100", GPUs: 1024, MFU: 0.4, Tokens: 300e9, PricePerGPUHour: 1, Context: 2048, BatchTokens: 3.2e6}
	}
	active := float64(Count(cfg).Active)
	return Options{GPU: "h100", GPUs: 1024, MFU: 0.4, Tokens: 20 * active, PricePerGPUHour: 2, Context: cfg.MaxPositionEmbeddings, BatchTokens: 4e6}
}

// withDefaults fills the zero fields of o from DefaultOptions(cfg), taking
// the default price of o's GPU when the GPU was changed.
func (o Options) withDefaults(cfg *config.Config) Options {
	d := DefaultOptions(cfg)
	if o.PricePerGPUHour == 0 && !strings.EqualFold(cmp.Or(o.GPU, d.GPU), d.GPU) {
		if g, err := LookupGPU(o.GPU); err == nil {
			o.PricePerGPUHour = g.DefaultPrice
		}
	}
	o.GPU = cmp.Or(o.GPU, d.GPU)
	o.GPUs = cmp.Or(o.GPUs, d.GPUs)
	o.MFU = cmp.Or(o.MFU, d.MFU)
	o.Tokens = cmp.Or(o.Tokens, d.Tokens)
	o.PricePerGPUHour = cmp.Or(o.PricePerGPUHour, d.PricePerGPUHour)
	o.Context = cmp.Or(o.Context, d.Context)
	o.BatchTokens = cmp.Or(o.BatchTokens, d.BatchTokens)
	o.LocalBatch = cmp.Or(o.LocalBatch, 8)
	o.LocalSeqLen = cmp.Or(o.LocalSeqLen, min(cfg.MaxPositionEmbeddings, 256))
	return o
}

// validate reports a bad option, naming its flag.
func (o Options) validate() error {
	if _, err := LookupGPU(o.GPU); err != nil {
		return fmt.Errorf("--gpu: %w", err)
	}
	switch {
	case o.GPUs < 1:
		return fmt.Errorf("--gpus: must be at least 1 (got %d)", o.GPUs)
	case !(o.MFU > 0 && o.MFU <= 1):
		return fmt.Errorf("--mfu: must be in (0, 1] (got %v)", o.MFU)
	case !(o.Tokens > 0 && o.Tokens < 1e30):
		return fmt.Errorf("--tokens: must be positive (got %v)", o.Tokens)
	case !(o.PricePerGPUHour >= 0 && o.PricePerGPUHour < 1e9):
		return fmt.Errorf("--price: must be non-negative (got %v)", o.PricePerGPUHour)
	case o.Context < 1 || o.Context > 1<<30:
		return fmt.Errorf("--context: must be in [1, 2^30] (got %d)", o.Context)
	case !(o.BatchTokens > 0 && o.BatchTokens < 1e30):
		return fmt.Errorf("--batch-tokens: must be positive (got %v)", o.BatchTokens)
	case (o.BatchTokensStart != 0 || o.BatchRampTokens != 0) && !(o.BatchTokensStart > 0 && o.BatchTokensStart <= o.BatchTokens && o.BatchRampTokens > 0):
		return fmt.Errorf("--batch-tokens-start %v and --batch-ramp-tokens %v: both must be positive, the start at most --batch-tokens %v", o.BatchTokensStart, o.BatchRampTokens, o.BatchTokens)
	case o.BatchRampTokens > o.Tokens:
		return fmt.Errorf("--batch-ramp-tokens: the ramp (%v tokens) is longer than the run (%v tokens)", o.BatchRampTokens, o.Tokens)
	}
	return nil
}

// RampPoint is one point of a batch-size ramp.
type RampPoint struct {
	// Consumed is the training tokens seen before the step.
	Consumed float64 `json:"consumed_tokens"`
	// BatchTokens is the batch at that point.
	BatchTokens float64 `json:"batch_tokens"`
	// TokensPerExpert is what each expert of one MoE layer processes per
	// step with balanced routing.
	TokensPerExpert float64 `json:"tokens_per_expert"`
}

// Params is an exact parameter count by part. Each field counts all layers.
type Params struct {
	// Embedding is the token embedding table (V·d).
	Embedding int64 `json:"embedding_params"`
	// Position is a learned absolute position table (GPT-3), else 0.
	Position int64 `json:"position_params"`
	// LMHead is the output projection; 0 when tied to Embedding.
	LMHead int64 `json:"lm_head_params"`
	// Attention is q/k/v/o with their biases, q/k norms and sinks.
	Attention int64 `json:"attention_params"`
	// Router is the routers of all MoE layers, with biases.
	Router int64 `json:"router_params"`
	// RoutedExperts is every routed expert of every MoE layer.
	RoutedExperts int64 `json:"routed_expert_params"`
	// Expert is one routed expert summed over the MoE layers.
	Expert int64 `json:"expert_params"`
	// SharedExperts is the always-on shared experts with their gates.
	SharedExperts int64 `json:"shared_expert_params"`
	// DenseFFN is the feed-forward of dense layers (all of a dense model's).
	DenseFFN int64 `json:"dense_ffn_params"`
	// Norms is every normalisation gain and bias outside attention.
	Norms int64 `json:"norm_params"`
	// Total is every parameter.
	Total int64 `json:"total_params"`
	// Active is the parameters one token uses: everything but the routed
	// experts it is not sent to (embeddings counted, as in Mixtral's 12.9B).
	Active int64 `json:"active_params"`
	// ActiveNonEmbedding is Active without the embedding, position and LM
	// head tables.
	ActiveNonEmbedding int64 `json:"active_non_embedding_params"`
	// MoELayers is the number of layers with a sparse feed-forward.
	MoELayers int `json:"moe_layers"`
}

// Count returns the exact parameter count of cfg by part.
func Count(cfg *config.Config) Params {
	var p Params
	d := int64(cfg.HiddenSize)
	v := int64(cfg.VocabSize)
	hd := int64(cfg.HeadDimension())
	nh, nkv := int64(cfg.NumHeads), int64(cfg.KVHeads())
	qw, kvw := nh*hd, nkv*hd // widths of the q and of the k (= v) projections

	p.Embedding = v * d
	if !cfg.TieWordEmbeddings {
		p.LMHead = v * d
	}
	if cfg.LearnedPositions {
		p.Position = int64(cfg.MaxPositionEmbeddings) * d
	}
	normSize := d // one norm's parameters
	if cfg.LayerNorm {
		normSize = 2 * d
	}

	attn := d*qw + 2*d*kvw + qw*d
	if cfg.MLA() {
		attn = mlaParams(cfg)
	}
	switch {
	case cfg.AttentionBias:
		attn += qw + 2*kvw + d
	case cfg.QKVBias:
		attn += qw + 2*kvw
	}
	if cfg.QKNorm {
		if cfg.QKNormPerHead {
			attn += 2 * hd
		} else {
			attn += qw + kvw
		}
	}
	if cfg.AttentionSinks {
		attn += nh
	}

	mlp := func(ff int64, bias bool) int64 {
		if cfg.PlainMLP {
			n := 2 * d * ff
			if bias {
				n += ff + d
			}
			return n
		}
		n := 3 * d * ff
		if bias {
			n += 2*ff + d
		}
		return n
	}
	e := int64(cfg.NumExperts)
	k := EffectiveExpertsPerToken(cfg)
	expert := mlp(int64(cfg.ExpertSize()), cfg.ExpertBias)
	var routedActive float64
	for i := 0; i < cfg.NumLayers; i++ {
		p.Attention += attn
		p.Norms += 2 * normSize
		if !cfg.LayerIsMoE(i) {
			p.DenseFFN += mlp(int64(cfg.IntermediateSize), cfg.MLPBias)
			continue
		}
		p.MoELayers++
		p.Router += e * d
		if cfg.RouterBias {
			p.Router += e
		}
		if cfg.HasRouterScoreBias() {
			p.Router += e // the selection bias (e_score_correction_bias)
		}
		p.RoutedExperts += e * expert
		p.Expert += expert
		routedActive += k * float64(expert)
		if s := int64(cfg.SharedExpertIntermediateSize); s > 0 {
			p.SharedExperts += mlp(s, cfg.ExpertBias)
			if cfg.SharedExpertGate {
				p.SharedExperts += d
			}
		}
	}
	p.Norms += normSize // final norm

	tables := p.Embedding + p.Position + p.LMHead
	body := p.Attention + p.Router + p.SharedExperts + p.DenseFFN + p.Norms
	p.Total = tables + body + p.RoutedExperts
	p.ActiveNonEmbedding = body + int64(math.Round(routedActive))
	p.Active = tables + p.ActiveNonEmbedding
	return p
}

// EffectiveExpertsPerToken returns how many routed experts a token uses on
// average: top-k for token-choice routing; for expert choice, where each
// expert takes tokens·C/E tokens, the capacity factor C (2 when unset, as
// in the model code).
func EffectiveExpertsPerToken(cfg *config.Config) float64 {
	if !cfg.IsMoE() {
		return 0
	}
	if cfg.Routing == config.RoutingExpertChoice {
		if cfg.CapacityFactor > 0 {
			return math.Min(cfg.CapacityFactor, float64(cfg.NumExperts))
		}
		return math.Min(2, float64(cfg.NumExperts))
	}
	return float64(cfg.ExpertsPerToken)
}

// Bytes per parameter of the weight formats plan reports.
var weightFormats = []struct {
	name  string
	bytes float64
}{{"fp32", 4}, {"bf16", 2}, {"int8", 1}, {"int4", 0.5}}

// trainBytesPerParam is fp32 master weights, fp32 gradients and AdamW's two
// fp32 moments (mixed precision with bf16 copies comes to the same 16).
const trainBytesPerParam = 16

// Report is the whole plan for one model: what `moe plan --json` prints.
type Report struct {
	Name      string `json:"name"`
	ModelType string `json:"model_type"`
	Params

	Layers          int `json:"layers"`
	HiddenSize      int `json:"hidden_size"`
	Heads           int `json:"heads"`
	KVHeads         int `json:"kv_heads"`
	HeadDim         int `json:"head_dim"`
	Experts         int `json:"experts"`
	ExpertsPerToken int `json:"experts_per_token"`
	ExpertSize      int `json:"expert_intermediate_size"`
	Context         int `json:"context"`

	// ForwardMatmulFLOPsPerToken is 2 FLOPs per weight a token multiplies
	// by (the LM head included, embedding lookups not).
	ForwardMatmulFLOPsPerToken float64 `json:"forward_matmul_flops_per_token"`
	// ForwardAttentionFLOPsPerToken is QKᵀ and the weighted sum of values
	// for a token that attends to Context earlier keys (capped at each
	// layer's sliding window).
	ForwardAttentionFLOPsPerToken float64 `json:"forward_attention_flops_per_token"`
	// ForwardFLOPsPerToken is the sum of the two above.
	ForwardFLOPsPerToken float64 `json:"forward_flops_per_token"`

	TrainTokens float64 `json:"train_tokens"`
	// TrainMatmulFLOPs is 6·N·D with N the matmul parameters a token uses.
	TrainMatmulFLOPs float64 `json:"train_matmul_flops"`
	// TrainAttentionFLOPs is 3× the forward attention FLOPs averaged over
	// causal positions of Context-long sequences.
	TrainAttentionFLOPs float64 `json:"train_attention_flops"`
	// TrainFLOPs is the sum of the two above.
	TrainFLOPs float64 `json:"train_flops"`

	// KVCacheBytesPerToken is bf16 K and V for one token at Context (a
	// sliding-window layer's cache is spread over the Context tokens).
	KVCacheBytesPerToken float64 `json:"kv_cache_bytes_per_token"`
	// KVCacheBytesPerSequence is the bf16 KV cache of one Context-long sequence.
	KVCacheBytesPerSequence float64 `json:"kv_cache_bytes_per_sequence"`
	// WeightBytes is the weights' memory by format: fp32, bf16, int8, int4.
	WeightBytes map[string]float64 `json:"weight_bytes"`
	// TrainMemoryBytes is weights + gradients + AdamW moments in fp32
	// (16 bytes per parameter), activations not included.
	TrainMemoryBytes float64 `json:"train_memory_bytes"`
	// GPUsForBF16Weights is how many GPUs it takes just to hold the bf16
	// weights; GPUsForTrainState likewise for TrainMemoryBytes.
	GPUsForBF16Weights int `json:"gpus_for_bf16_weights"`
	GPUsForTrainState  int `json:"gpus_for_train_state"`
	// LocalTrainMemory is what `moe train` on this machine's CPUs checks
	// against the available memory before it starts: float32 weights,
	// gradients, AdamW moments and one LocalBatch×LocalSeqLen micro-batch's
	// activations.
	LocalTrainMemory memest.Estimate `json:"local_train_memory"`
	LocalBatch       int             `json:"local_batch"`
	LocalSeqLen      int             `json:"local_seq_len"`

	GPU             string  `json:"gpu"`
	GPUPeakFLOPS    float64 `json:"gpu_peak_flops"`
	GPUs            int     `json:"gpus"`
	MFU             float64 `json:"mfu"`
	PricePerGPUHour float64 `json:"price_usd_per_gpu_hour"`
	TrainSeconds    float64 `json:"train_seconds"`
	TrainDays       float64 `json:"train_days"`
	GPUHours        float64 `json:"gpu_hours"`
	CostUSD         float64 `json:"cost_usd"`

	BatchTokens float64 `json:"batch_tokens"`
	// TokensPerExpertPerBatch is how many tokens each expert of one MoE
	// layer processes per batch with balanced routing: batch·k/E (the whole
	// batch for a dense model).
	TokensPerExpertPerBatch float64 `json:"tokens_per_expert_per_batch"`

	// Ramp is the batch-size ramp at 0, ¼, ½, ¾ and all of its length, when
	// there is one; RampSteps is the optimizer steps it takes,
	// ∫dτ/batch(τ) = R·ln(end/start)/(end−start) (R when start = end).
	Ramp      []RampPoint `json:"batch_ramp,omitempty"`
	RampSteps float64     `json:"batch_ramp_steps,omitempty"`

	// Checks sets each figure of a published account beside the arithmetic
	// (the gpt4 preset only).
	Checks []Check `json:"checks,omitempty"`
}

// attentionFLOPs returns the forward attention FLOPs of one token that has
// keys earlier keys: per layer 2·nh·hd·keys for QKᵀ and as many for the
// weighted sum of values, with keys capped at the layer's window.
func attentionFLOPs(cfg *config.Config, keys float64) float64 {
	width := attnWidth(cfg)
	var f float64
	for i := 0; i < cfg.NumLayers; i++ {
		k := keys
		if w := cfg.AttentionWindow(i); w > 0 && float64(w) < k {
			k = float64(w)
		}
		f += 4 * width * k
	}
	return f
}

// meanCausalAttentionFLOPs averages attentionFLOPs over the positions
// 1..ctx of a causal sequence: position t sees t keys, or the window.
func meanCausalAttentionFLOPs(cfg *config.Config, ctx int) float64 {
	width := attnWidth(cfg)
	n := float64(ctx)
	var f float64
	for i := 0; i < cfg.NumLayers; i++ {
		w := float64(cfg.AttentionWindow(i))
		var mean float64
		if w <= 0 || w >= n {
			mean = (n + 1) / 2
		} else {
			// Σ_{t=1..n} min(t, w) = w(w+1)/2 + (n−w)·w
			mean = (w*(w+1)/2 + (n-w)*w) / n
		}
		f += 4 * width * mean
	}
	return f
}

// kvBytes returns the bf16 KV-cache bytes of one ctx-long sequence.
func kvBytes(cfg *config.Config, ctx int) float64 {
	perLayer := 2 * float64(cfg.KVHeads()*cfg.HeadDimension()) * 2 // K and V, 2 bytes each
	if cfg.MLA() {
		perLayer = float64(cfg.KVLoraRank+cfg.QKRopeHeadDim) * 2 // the latent key, 2 bytes a float
	}
	var b float64
	for i := 0; i < cfg.NumLayers; i++ {
		n := ctx
		if w := cfg.AttentionWindow(i); w > 0 && w < n {
			n = w
		}
		b += perLayer * float64(n)
	}
	return b
}

// New computes the plan of cfg under opts (zero fields take defaults). For
// the gpt4 preset the report carries Checks, which always use the
// account's own figures whatever opts say.
func New(cfg *config.Config, opts Options) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	o := opts.withDefaults(cfg)
	if err := o.validate(); err != nil {
		return nil, err
	}
	r := newReport(cfg, o)
	if cfg.Name == "gpt4" {
		checks, err := GPT4Checks()
		if err != nil {
			return nil, err
		}
		r.Checks = checks
	}
	return r, nil
}

// newReport computes a report for validated cfg and o.
func newReport(cfg *config.Config, o Options) *Report {
	gpu, _ := LookupGPU(o.GPU)
	p := Count(cfg)
	r := &Report{
		Name: cfg.Name, ModelType: cfg.ModelType, Params: p,
		Layers: cfg.NumLayers, HiddenSize: cfg.HiddenSize, Heads: cfg.NumHeads, KVHeads: cfg.KVHeads(),
		HeadDim: cfg.HeadDimension(), Experts: cfg.NumExperts, ExpertsPerToken: cfg.ExpertsPerToken,
		ExpertSize: cfg.ExpertSize(), Context: o.Context,
		TrainTokens: o.Tokens, GPU: gpu.Name, GPUPeakFLOPS: gpu.PeakFLOPS, GPUs: o.GPUs, MFU: o.MFU,
		PricePerGPUHour: o.PricePerGPUHour, BatchTokens: o.BatchTokens,
	}
	if !cfg.IsMoE() {
		r.ExpertSize = 0
	}
	matmul := float64(p.ActiveNonEmbedding) + float64(cfg.VocabSize)*float64(cfg.HiddenSize)
	r.ForwardMatmulFLOPsPerToken = 2 * matmul
	r.ForwardAttentionFLOPsPerToken = attentionFLOPs(cfg, float64(o.Context))
	r.ForwardFLOPsPerToken = r.ForwardMatmulFLOPsPerToken + r.ForwardAttentionFLOPsPerToken
	r.TrainMatmulFLOPs = 6 * matmul * o.Tokens
	r.TrainAttentionFLOPs = 3 * meanCausalAttentionFLOPs(cfg, o.Context) * o.Tokens
	r.TrainFLOPs = r.TrainMatmulFLOPs + r.TrainAttentionFLOPs

	r.KVCacheBytesPerSequence = kvBytes(cfg, o.Context)
	r.KVCacheBytesPerToken = r.KVCacheBytesPerSequence / float64(o.Context)
	r.WeightBytes = make(map[string]float64, len(weightFormats))
	for _, f := range weightFormats {
		r.WeightBytes[f.name] = float64(p.Total) * f.bytes
	}
	r.TrainMemoryBytes = float64(p.Total) * trainBytesPerParam
	r.LocalBatch, r.LocalSeqLen = o.LocalBatch, o.LocalSeqLen
	r.LocalTrainMemory = memest.Train(cfg, o.LocalBatch, o.LocalSeqLen, runtime.GOMAXPROCS(0))
	r.GPUsForBF16Weights = int(math.Ceil(r.WeightBytes["bf16"] / gpu.MemoryBytes))
	r.GPUsForTrainState = int(math.Ceil(r.TrainMemoryBytes / gpu.MemoryBytes))

	r.TrainSeconds = r.TrainFLOPs / (float64(o.GPUs) * gpu.PeakFLOPS * o.MFU)
	r.TrainDays = r.TrainSeconds / 86400
	r.GPUHours = r.TrainSeconds / 3600 * float64(o.GPUs)
	r.CostUSD = r.GPUHours * o.PricePerGPUHour
	perExpert := func(batch float64) float64 {
		if cfg.IsMoE() {
			return batch * EffectiveExpertsPerToken(cfg) / float64(cfg.NumExperts)
		}
		return batch
	}
	r.TokensPerExpertPerBatch = perExpert(o.BatchTokens)
	if R := o.BatchRampTokens; R > 0 {
		s0, s1 := o.BatchTokensStart, o.BatchTokens
		for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
			b := s0 + (s1-s0)*f
			r.Ramp = append(r.Ramp, RampPoint{Consumed: f * R, BatchTokens: b, TokensPerExpert: perExpert(b)})
		}
		r.RampSteps = R / s0
		if s1 != s0 {
			r.RampSteps = R * math.Log(s1/s0) / (s1 - s0)
		}
	}
	return r
}
