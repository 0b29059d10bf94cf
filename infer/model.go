// Package infer runs trained models: a batched forward pass over per-sequence
// KV caches, token sampling (temperature, top-k, top-p, seeded), text
// generation with stop sequences, and exact speculative decoding with a
// smaller draft model.
//
// The forward pass here is written for inference only: it keeps each
// sequence's keys and values (Seq), so a new token costs one pass over the
// weights plus attention against the cache, and in MoE layers only the
// experts the router picks for the batch's rows are computed.
package infer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/plan"
	"github.com/moe-llm/moe/safetensors"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// Model is a model ready for inference: its config, weights, tokenizer and
// the tables and buffers the forward pass uses.
type Model struct {
	// Cfg describes the architecture.
	Cfg *config.Config
	// W holds the float32 parameters of a model made by New (read only
	// here); it is nil for a GGUF file, whose matrices are used in place.
	W *model.Weights
	// Tok turns text into token ids and back; it may be nil for a model used
	// only on token ids (tests, benchmarks).
	Tok *tokenizer.Tokenizer
	// Template is the chat template the model's file carries (nil: moe's
	// own, if the tokenizer has its chat tokens); see ChatTemplate.
	Template *chattmpl.Template
	// EndTokens are the end-of-generation ids the file declares (eos, eot,
	// eom); see StopTokens.
	EndTokens []int32
	// Pool runs the kernels; nil means the calling goroutine.
	Pool *compute.Pool

	ctxLen    int
	hd, kvDim int
	moeK      int
	// rope holds the RoPE tables for the first ropeLen positions, those
	// sequences have reached so far (grown by forward, up to ctxLen).
	rope    *compute.RoPE
	ropeLen int

	// The weights as the forward pass multiplies by them.
	embed     Linear
	lmHead    *Linear // &embed when the embeddings are tied
	finalNorm []float32
	layers    []layerWeights

	// file is the mapped GGUF file the raw matrices point into (nil for a
	// run directory); path is where the model was loaded from.
	file *gguf.Mapped
	path string

	// bf16 is set by UseBF16; bfPanels once the bfloat16 panels exist;
	// closed by Close.
	bf16, bfPanels, closed bool

	mu sync.Mutex // serialises Forward; guards sc
	sc scratch

	// Granite's scales as the forward pass applies them (model.Scales: 1
	// when unset, 1/sqrt(head_dim) for attention, the logits' factor
	// 1/logits_scaling), the rule the training model uses.
	embScale, resScale, attnScale, logitScale float32
	// swiLimit is gpt-oss's SwiGLU clamp (0: plain SwiGLU).
	swiLimit float32

	statsMu   sync.Mutex
	routed    [][]uint64
	totalRows uint64
}

// supported reports configs this forward pass cannot run: those the model
// package rejects, and a missing context length. For a GGUF file
// (fromFile) multi-head latent attention, which only this inference pass
// runs, is allowed.
func supported(cfg *config.Config, fromFile bool) error {
	c := cfg
	if fromFile && cfg.MLA() {
		c = cfg.Clone()
		c.HeadDim = cfg.HeadDimension()
		c.KVLoraRank, c.QLoraRank = 0, 0
	}
	if err := model.Supported(c); err != nil {
		return err
	}
	if cfg.MaxPositionEmbeddings <= 0 {
		return errors.New("max_position_embeddings (the context length) must be positive")
	}
	return nil
}

// New prepares a model for inference. tok may be nil (token ids only); when
// given, its vocabulary must fit the model's embedding table.
func New(cfg *config.Config, w *model.Weights, tok *tokenizer.Tokenizer, pool *compute.Pool) (*Model, error) {
	if cfg == nil || w == nil {
		return nil, errors.New("infer: nil config or weights")
	}
	m, err := newModel(cfg, tok, pool, false)
	if err != nil {
		return nil, err
	}
	if n := model.NumParams(cfg); len(w.Flat) != n {
		return nil, fmt.Errorf("infer: weights hold %d floats, the config needs %d", len(w.Flat), n)
	}
	m.W = w
	d := cfg.HiddenSize
	m.embed = newLinear(w.Embed, cfg.VocabSize, d)
	m.lmHead = &m.embed
	if len(w.LMHead) == 0 || &w.LMHead[0] != &w.Embed[0] {
		head := newLinear(w.LMHead, cfg.VocabSize, d)
		m.lmHead = &head
	}
	m.finalNorm = w.FinalNorm
	// ffn takes one feed-forward's gate, up and down weights and their
	// biases (nil: none).
	ffn := func(gate, up, down, gateB, upB, downB []float32, width int) ffnWeights {
		x := ffnWeights{gu: fuseFloat32(w.Flat, d, gate, up), down: newLinear(down, d, width), width: width, downBias: downB}
		if gateB != nil {
			x.guBias = slices.Concat(gateB, upB)
		}
		return x
	}
	at := func(bs [][]float32, e int) []float32 {
		if bs == nil {
			return nil
		}
		return bs[e]
	}
	m.layers = make([]layerWeights, len(w.Layers))
	for l := range w.Layers {
		L, W := &m.layers[l], &w.Layers[l]
		L.attnNorm, L.ffnNorm = W.AttnNorm, W.FFNNorm
		L.qNorm, L.kNorm, L.qkvBias = W.QNorm, W.KNorm, W.QKVBias
		L.qkv = fuseFloat32(w.Flat, d, W.Wq, W.Wk, W.Wv)
		L.o = newLinear(W.Wo, d, cfg.NumHeads*m.hd)
		L.oBias, L.sinks = W.OBias, W.Sinks
		if !cfg.LayerIsMoE(l) {
			L.ffn = ffn(W.Gate, W.Up, W.Down, W.GateBias, W.UpBias, W.DownBias, cfg.IntermediateSize)
			continue
		}
		L.router = newLinear(W.Router, cfg.NumExperts, d)
		L.scoreBias, L.shGate, L.routerBias = W.RouterScoreBias, W.SharedGateInp, W.RouterBias
		L.experts = make([]ffnWeights, len(W.ExpertGate))
		for e := range L.experts {
			L.experts[e] = ffn(W.ExpertGate[e], W.ExpertUp[e], W.ExpertDown[e],
				at(W.ExpertGateBias, e), at(W.ExpertUpBias, e), at(W.ExpertDownBias, e), cfg.ExpertSize())
		}
		if s := cfg.SharedExpertIntermediateSize; s > 0 {
			L.shared = ffn(W.SharedGate, W.SharedUp, W.SharedDown, W.SharedGateBias, W.SharedUpBias, W.SharedDownBias, s)
		}
	}
	if len(w.Flat) <= maxTransposedFloats {
		var ls []*Linear
		m.forEachLinear(func(l *Linear, _ bool) { ls = append(ls, l) })
		pool.Run(len(ls), func(i int) { ls[i].pack() })
	}
	return m, nil
}

// newMapped prepares a GGUF model opened by gguf.OpenModel, its matrices
// used in place; the Model owns mm and closes it in Close.
func newMapped(mm *gguf.Mapped, pool *compute.Pool) (*Model, error) {
	cfg := mm.Cfg
	m, err := newModel(cfg, mm.Tok, pool, true)
	if err != nil {
		return nil, err
	}
	m.file = mm
	m.embed = matrixLinear(mm.Embed)
	m.lmHead = &m.embed
	if unsafe.SliceData(mm.Output.Data) != unsafe.SliceData(mm.Embed.Data) {
		head := matrixLinear(mm.Output)
		m.lmHead = &head
	}
	m.finalNorm = mm.FinalNorm
	ffn := func(x gguf.ExpertMatrices) ffnWeights {
		w := ffnWeights{gu: fuseMatrices(x.Gate, x.Up), down: matrixLinear(x.Down), width: x.Gate.Rows, downBias: x.DownBias}
		if x.GateBias != nil {
			w.guBias = slices.Concat(x.GateBias, x.UpBias)
		}
		return w
	}
	m.layers = make([]layerWeights, len(mm.Layers))
	for l := range mm.Layers {
		L, X := &m.layers[l], &mm.Layers[l]
		L.attnNorm, L.ffnNorm = X.AttnNorm, X.FFNNorm
		if X.MLA != nil {
			L.mla = newMLAWeights(X.MLA)
		} else {
			L.qkv = fuseMatrices(X.Q, X.K, X.V)
		}
		L.qNorm, L.kNorm, L.shGate, L.scoreBias = X.QNorm, X.KNorm, X.SharedGateInp, X.ScoreBias
		L.sinks, L.oBias, L.routerBias = X.Sinks, X.OBias, X.RouterBias
		if X.QBias != nil {
			L.qkvBias = slices.Concat(X.QBias, X.KBias, X.VBias)
		}
		L.o = matrixLinear(X.O)
		if !cfg.LayerIsMoE(l) {
			L.ffn = ffn(X.FFN)
			continue
		}
		L.router = matrixLinear(X.Router)
		L.experts = make([]ffnWeights, len(X.Experts))
		for e := range L.experts {
			L.experts[e] = ffn(X.Experts[e])
		}
		if X.Shared.Gate.Rows > 0 {
			L.shared = ffn(X.Shared)
		}
	}
	// A Model dropped without Close still releases its mapping.
	runtime.AddCleanup(m, func(f *gguf.Mapped) { f.Close() }, mm)
	return m, nil
}

// newModel checks cfg and tok and sets up what every model has but its
// weights; fromFile allows what only GGUF files have (see supported).
func newModel(cfg *config.Config, tok *tokenizer.Tokenizer, pool *compute.Pool, fromFile bool) (*Model, error) {
	if err := supported(cfg, fromFile); err != nil {
		return nil, fmt.Errorf("infer: unsupported model: %w", err)
	}
	if tok != nil && tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("infer: tokenizer has %d tokens but the model's vocab_size is %d", tok.VocabSize(), cfg.VocabSize)
	}
	hd := cfg.HeadDimension()
	m := &Model{
		Cfg:    cfg,
		Tok:    tok,
		Pool:   pool,
		ctxLen: cfg.MaxPositionEmbeddings,
		hd:     hd,
		kvDim:  cfg.KVHeads() * hd,
		moeK:   model.RoutedK(cfg),
		routed: make([][]uint64, cfg.NumLayers),

		swiLimit: float32(cfg.SwiGLULimit),
	}
	m.embScale, m.resScale, m.attnScale, m.logitScale = model.Scales(cfg)
	for l := range m.routed {
		m.routed[l] = make([]uint64, max(cfg.NumExperts, 0))
	}
	if err := m.growRoPE(min(m.ctxLen, initialRoPE)); err != nil {
		return nil, err
	}
	return m, nil
}

// initialRoPE is the number of positions whose RoPE tables a new model
// builds; forward grows them as sequences get longer, so that a file
// claiming a huge context costs nothing until it is used.
const initialRoPE = 1024

// growRoPE makes the RoPE tables cover at least n positions (at most the
// context): positions past the tables would be computed on the fly with
// the same values, so growing changes no result, only the time.
func (m *Model) growRoPE(n int) error {
	if m.rope != nil && m.ropeLen >= n {
		return nil
	}
	size := n
	if m.rope != nil {
		size = min(max(n, 2*m.ropeLen), m.ctxLen)
	}
	rope, err := model.NewRoPE(m.Cfg, size)
	if err != nil {
		return fmt.Errorf("infer: %w", err)
	}
	m.rope, m.ropeLen = rope, size
	return nil
}

// forEachLinear calls f with every matrix the forward pass multiplies by
// (the LM head once even when tied), and whether it is a router.
func (m *Model) forEachLinear(f func(l *Linear, router bool)) {
	for l := range m.layers {
		m.layers[l].forEach(f)
	}
	f(m.lmHead, false)
}

// maxTransposedFloats caps the weights copied into panels (1 GiB of
// float32): larger models use the matrices as stored.
const maxTransposedFloats = 1 << 28

// NumParams returns the model's parameter count.
func (m *Model) NumParams() int {
	if m.Cfg.MLA() { // the training model's layout has no latent attention
		return int(plan.Count(m.Cfg).Total)
	}
	return model.NumParams(m.Cfg)
}

// sharesWeights reports whether m and o multiply by the same weights
// (a model used as its own draft).
func (m *Model) sharesWeights(o *Model) bool {
	a, b := m.lmHead, o.lmHead
	if a.f32 != nil || b.f32 != nil {
		return unsafe.SliceData(a.f32) == unsafe.SliceData(b.f32)
	}
	return unsafe.SliceData(a.raw) == unsafe.SliceData(b.raw)
}

// Close releases the mapped file of a GGUF model, after any Forward in
// progress; a later Forward fails. It is a no-op for a run directory's
// model and safe to call more than once.
func (m *Model) Close() error {
	if m == nil || m.file == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	err := m.file.Close()
	m.file = nil
	return err
}

// Float32Weights returns the model's parameters as float32: W for a model
// made by New, else the GGUF file decoded afresh (a full-size copy).
func (m *Model) Float32Weights(ctx context.Context) (*model.Weights, error) {
	if m.W != nil {
		return m.W, nil
	}
	_, w, _, err := gguf.ReadModel(ctx, m.path)
	if err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	return w, nil
}

// Context returns the model's context length in tokens.
func (m *Model) Context() int { return m.ctxLen }

// Load reads a model for inference from path: a run directory (config,
// checkpoint and tokenizer, as `moe train` writes it), a .gguf file, or a
// Hugging Face model directory (config.json, safetensors, tokenizer.json):
// gpt_oss, deepseek_v2/deepseek_v3, or one of the families
// safetensors.OpenMapped reads.
//
// A GGUF file's weights go where gguf.PlaceAuto puts them (huge pages when
// the system offers them and memory allows, else the mapping in place);
// LoadPlaced chooses.
func Load(path string, pool *compute.Pool) (*Model, error) {
	return LoadPlaced(path, pool, gguf.PlaceAuto)
}

// LoadPlaced is Load with the placement of a GGUF file's weights given
// (other formats ignore it).
func LoadPlaced(path string, pool *compute.Pool, place gguf.Placement) (*Model, error) {
	load := loadRunDir
	switch {
	case strings.HasSuffix(strings.ToLower(path), ".gguf"):
		load = func(path string, pool *compute.Pool) (*Model, error) { return loadGGUF(path, pool, place) }
	case safetensors.IsHFDir(path):
		load = loadHF
	}
	m, err := load(path, pool)
	if err != nil {
		return nil, err
	}
	if m.Template, m.EndTokens, err = ReadChat(path, m.Tok); err != nil {
		return nil, fmt.Errorf("infer: load model %s: %w", path, err)
	}
	return m, nil
}

// UseBF16 makes the forward pass read bfloat16 copies of the weight
// matrices (the router stays float32), halving the memory traffic of
// decoding at the cost of rounding the weights to 8 bits of mantissa; the
// products still accumulate in float32. It costs half the model's size in
// extra memory. UseBF16(false) returns to float32. Not safe to call during
// a Forward.
func (m *Model) UseBF16(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !on {
		m.forEachLinear(func(l *Linear, _ bool) { l.dropBF16() })
		m.bf16, m.bfPanels = false, false
		return
	}
	if m.bf16 {
		return
	}
	m.buildBF16(true)
	m.bf16 = true
}

// buildBF16 makes the bfloat16 panels of every matrix but the routers, and
// with all the bfloat16 copies of the whole matrices; m.mu must be held.
func (m *Model) buildBF16(all bool) {
	m.forEachLinear(func(l *Linear, router bool) {
		if !router {
			l.packBF16(all)
		}
	})
	m.bfPanels = true
}
