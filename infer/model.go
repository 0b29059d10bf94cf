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
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
	"github.com/moe-llm/moe/tokenizer"
	"github.com/moe-llm/moe/tokenizer/chattmpl"
)

// Model is a model ready for inference: its config, weights, tokenizer and
// the tables and buffers the forward pass uses.
type Model struct {
	// Cfg describes the architecture.
	Cfg *config.Config
	// W holds the parameters (read only here).
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
	rope      *compute.RoPE

	fused []fusedViews // per layer

	// bf, when set, is a bfloat16 copy of W.Flat that the matrix products
	// read instead (half the memory traffic); bfOff maps the first element
	// of each weight view to its offset in Flat.
	bf    []compute.BF16
	bfOff map[*float32]int

	// wp holds, for each weight matrix the forward pass multiplies by (as
	// its fused view when there is one), a copy packed by
	// compute.PackPanels: 64-column panels stored in×out, which the small-M
	// products of decoding, verification and serving stream with
	// broadcast-FMA kernels (no horizontal sums, each panel read front to
	// back, rounding independent of the number of rows). Nil when the model
	// is too large to copy.
	wp map[wKey][]float32
	// wpBF holds bfloat16 copies of wp's panels while UseBF16 is on.
	wpBF map[wKey][]compute.BF16

	mu sync.Mutex // serialises Forward; guards sc
	sc scratch

	statsMu   sync.Mutex
	routed    [][]uint64
	totalRows uint64
}

// supported reports configs this forward pass cannot run: those the model
// package rejects, and a missing context length.
func supported(cfg *config.Config) error {
	if err := model.Supported(cfg); err != nil {
		return err
	}
	if cfg.MaxPositionEmbeddings <= 0 {
		return errors.New("max_position_embeddings (the context length) must be positive")
	}
	return nil
}

// InferenceExperts returns the number of experts each token is routed to at
// inference: num_experts_per_tok for token choice, and for expert-choice
// models the causal rule k = max(1, round(CapacityFactor)) (CapacityFactor 2
// when unset), capped at the number of experts. It is 0 for a dense model.
func InferenceExperts(cfg *config.Config) int { return model.RoutedK(cfg) }

// New prepares a model for inference. tok may be nil (token ids only); when
// given, its vocabulary must fit the model's embedding table.
func New(cfg *config.Config, w *model.Weights, tok *tokenizer.Tokenizer, pool *compute.Pool) (*Model, error) {
	if cfg == nil || w == nil {
		return nil, errors.New("infer: nil config or weights")
	}
	if err := supported(cfg); err != nil {
		return nil, fmt.Errorf("infer: unsupported model: %w", err)
	}
	if n := model.NumParams(cfg); len(w.Flat) != n {
		return nil, fmt.Errorf("infer: weights hold %d floats, the config needs %d", len(w.Flat), n)
	}
	if tok != nil && tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("infer: tokenizer has %d tokens but the model's vocab_size is %d", tok.VocabSize(), cfg.VocabSize)
	}
	hd := cfg.HeadDimension()
	m := &Model{
		Cfg:    cfg,
		W:      w,
		Tok:    tok,
		Pool:   pool,
		ctxLen: cfg.MaxPositionEmbeddings,
		hd:     hd,
		kvDim:  cfg.KVHeads() * hd,
		moeK:   InferenceExperts(cfg),
		routed: make([][]uint64, cfg.NumLayers),
	}
	for l := range m.routed {
		m.routed[l] = make([]uint64, max(cfg.NumExperts, 0))
	}
	m.fused = makeFused(cfg, w)
	rope, err := compute.NewRoPE(hd, m.ctxLen, model.RopeTheta(cfg))
	if err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	m.rope = rope
	if len(w.Flat) <= maxTransposedFloats {
		m.wp = panelWeights(cfg, w, m.fused, pool)
	}
	return m, nil
}

// wKey identifies a weight view by its first element and length (a fused
// view starts where its first part does).
type wKey struct {
	p *float32
	n int
}

func keyOf(w []float32) wKey {
	if len(w) == 0 {
		return wKey{}
	}
	return wKey{&w[0], len(w)}
}

// forEachMatrix calls f with every weight matrix (n×k, stored out×in) the
// forward pass multiplies by: per layer [wq;wk;wv] (or each), wo, the
// router, the (fused) FFN or expert and shared-expert matrices; and the LM
// head.
func forEachMatrix(cfg *config.Config, w *model.Weights, fused []fusedViews, f func(v []float32, n, k int)) {
	d := cfg.HiddenSize
	add := func(v []float32, n, k int) {
		if len(v) == n*k && n > 0 && k > 0 {
			f(v, n, k)
		}
	}
	pair := func(f, a, b []float32, n, k int) {
		if f != nil {
			add(f, 2*n, k)
			return
		}
		add(a, n, k)
		add(b, n, k)
	}
	hd := cfg.HeadDimension()
	qDim, kvDim := cfg.NumHeads*hd, cfg.KVHeads()*hd
	for l := range w.Layers {
		L := &w.Layers[l]
		F := &fused[l]
		if F.qkv != nil {
			add(F.qkv, qDim+2*kvDim, d)
		} else {
			add(L.Wq, qDim, d)
			add(L.Wk, kvDim, d)
			add(L.Wv, kvDim, d)
		}
		add(L.Wo, d, qDim)
		if !cfg.IsMoE() {
			ff := cfg.IntermediateSize
			pair(F.gu, L.Gate, L.Up, ff, d)
			add(L.Down, d, ff)
			continue
		}
		add(L.Router, cfg.NumExperts, d) // float32 even with UseBF16
		ffe := cfg.ExpertSize()
		for e := range L.ExpertDown {
			pair(F.expertGU[e], L.ExpertGate[e], L.ExpertUp[e], ffe, d)
			add(L.ExpertDown[e], d, ffe)
		}
		if sf := cfg.SharedExpertIntermediateSize; sf > 0 {
			pair(F.sharedGU, L.SharedGate, L.SharedUp, sf, d)
			add(L.SharedDown, d, sf)
		}
	}
	add(w.LMHead, cfg.VocabSize, d)
}

// maxTransposedFloats caps the weights copied by panelWeights (1 GiB of
// float32): larger models use the matrices as stored.
const maxTransposedFloats = 1 << 28

// panelWeights returns compute.PackPanels copies of the matrices of
// forEachMatrix (the routers, 8-odd columns, padded to one panel).
func panelWeights(cfg *config.Config, w *model.Weights, fused []fusedViews, pool *compute.Pool) map[wKey][]float32 {
	type mat struct {
		w    []float32
		n, k int
	}
	var mats []mat
	forEachMatrix(cfg, w, fused, func(v []float32, n, k int) { mats = append(mats, mat{v, n, k}) })
	cp := make([][]float32, len(mats))
	for i, mt := range mats {
		cp[i] = make([]float32, compute.PanelsLen(mt.n, mt.k))
	}
	pool.Run(len(mats), func(i int) {
		_ = compute.PackPanels(cp[i], mats[i].w, mats[i].n, mats[i].k) // sizes are right by construction
	})
	panels := make(map[wKey][]float32, len(mats))
	for i, mt := range mats {
		panels[keyOf(mt.w)] = cp[i]
	}
	return panels
}

// Context returns the model's context length in tokens.
func (m *Model) Context() int { return m.ctxLen }

// Load reads a model for inference from path: a run directory (config,
// checkpoint and tokenizer, as `moe train` writes it) or a .gguf file.
func Load(path string, pool *compute.Pool) (*Model, error) {
	load := loadRunDir
	if strings.HasSuffix(strings.ToLower(path), ".gguf") {
		load = loadGGUF
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

// fusedViews are views over parameter tensors that lie next to each other in
// the flat layout, so that one GEMM computes several projections: [wq; wk;
// wv] and each [gate; up] pair. A nil view means the tensors are not
// adjacent and are used one by one.
type fusedViews struct {
	qkv, gu, sharedGU []float32
	expertGU          [][]float32
}

// adjacent returns the view over parts laid out back to back in flat from
// offset off, or nil if they are not.
func adjacent(flat []float32, off int, parts ...[]float32) []float32 {
	pos := off
	for _, p := range parts {
		if len(p) == 0 || pos < 0 || pos+len(p) > len(flat) || &flat[pos] != &p[0] {
			return nil
		}
		pos += len(p)
	}
	return flat[off:pos:pos]
}

// makeFused finds the fused views of every layer of w.
func makeFused(cfg *config.Config, w *model.Weights) []fusedViews {
	offs := map[string]int{}
	off := 0
	w.Visit(cfg, func(name string, t []float32) {
		offs[name] = off
		off += len(t)
	})
	fv := make([]fusedViews, len(w.Layers))
	for l := range w.Layers {
		L := &w.Layers[l]
		p := fmt.Sprintf("layers.%d.", l)
		f := &fv[l]
		f.qkv = adjacent(w.Flat, offs[p+"wq"], L.Wq, L.Wk, L.Wv)
		if !cfg.IsMoE() {
			f.gu = adjacent(w.Flat, offs[p+"gate"], L.Gate, L.Up)
			continue
		}
		f.expertGU = make([][]float32, cfg.NumExperts)
		for e := range f.expertGU {
			f.expertGU[e] = adjacent(w.Flat, offs[fmt.Sprintf("%sexpert.%d.gate", p, e)], L.ExpertGate[e], L.ExpertUp[e])
		}
		if L.SharedGate != nil {
			f.sharedGU = adjacent(w.Flat, offs[p+"shared.gate"], L.SharedGate, L.SharedUp)
		}
	}
	return fv
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
		m.bf, m.bfOff, m.wpBF = nil, nil, nil
		return
	}
	if m.bf != nil {
		return
	}
	bf := make([]compute.BF16, len(m.W.Flat))
	compute.BF16FromFloat32(bf, m.W.Flat)
	offs := map[*float32]int{}
	off := 0
	m.W.Visit(m.Cfg, func(_ string, t []float32) {
		if len(t) > 0 {
			offs[&t[0]] = off
		}
		off += len(t)
	})
	m.bf, m.bfOff = bf, offs
	if m.wpBF == nil {
		m.buildPanelsBF16()
	}
}

// buildPanelsBF16 makes wpBF, the bf16 copies of wp; m.mu must be held.
func (m *Model) buildPanelsBF16() {
	if m.wp == nil {
		return
	}
	m.wpBF = make(map[wKey][]compute.BF16, len(m.wp))
	for k, t := range m.wp {
		b := make([]compute.BF16, len(t))
		compute.BF16FromFloat32(b, t)
		m.wpBF[k] = b
	}
}

// BF16 reports whether the model computes with bfloat16 weights.
func (m *Model) BF16() bool { return m.bf != nil }
