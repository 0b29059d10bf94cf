package infer

import (
	"fmt"
	"unsafe"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/model"
)

// Linear is one weight matrix of the forward pass: n outputs of k inputs,
// stored out×in (n rows of k) as ggml and GGUF store it, in the type it is
// stored in. A float32 matrix (a run directory's weights) may carry a copy
// packed in panels for small products and, in low-precision modes,
// bfloat16 copies; a GGUF matrix is raw bytes of a compute.QType (F32
// included), used in place from the mapped file. mul is the one place
// that decides which kernel multiplies by it.
type Linear struct {
	n, k int
	// f32 holds the rows as float32, or nil for a raw matrix.
	f32 []float32
	// typ and raw are the storage type and bytes of a raw matrix.
	typ compute.QType
	raw []byte
	// panels is a compute.PackPanels copy of f32 (64-column panels stored
	// in×out), which the small-M products of decoding, verification and
	// serving stream with broadcast-FMA kernels (no horizontal sums, each
	// panel read front to back, rounding independent of the number of
	// rows); nil when the model is too large to copy.
	panels []float32
	// panelsBF is a bfloat16 copy of panels (low-precision modes), bf one
	// of f32 (UseBF16).
	panelsBF []compute.BF16
	bf       []compute.BF16
}

// precision selects the weights a product reads.
type precision int

const (
	// precFull multiplies by the weights as stored.
	precFull precision = iota
	// precDraft reads the bfloat16 panels of small products (a speculative
	// draft's proposals).
	precDraft
	// precBF16 reads bfloat16 copies of every float32 matrix (UseBF16).
	precBF16
)

// newLinear returns a float32 Linear over w (n×k).
func newLinear(w []float32, n, k int) Linear { return Linear{n: n, k: k, f32: w} }

// matrixLinear returns the Linear of a GGUF matrix, its bytes used in
// place in their stored type (F32 included: compute.QMatMul keeps each
// row's result independent of the others, which a float32 matrix without
// panels would not).
func matrixLinear(x gguf.Matrix) Linear {
	return Linear{n: x.Rows, k: x.Cols, typ: x.Type, raw: x.Data}
}

// pack builds the float32 panels (a no-op for a raw matrix).
func (l *Linear) pack() {
	if l.f32 == nil || l.panels != nil {
		return
	}
	l.panels = make([]float32, compute.PanelsLen(l.n, l.k))
	_ = compute.PackPanels(l.panels, l.f32, l.n, l.k) // sizes are right by construction
}

// packBF16 builds the bfloat16 copy of the panels, and with all the one of
// the whole matrix.
func (l *Linear) packBF16(all bool) {
	if l.panels != nil && l.panelsBF == nil {
		l.panelsBF = make([]compute.BF16, len(l.panels))
		compute.BF16FromFloat32(l.panelsBF, l.panels)
	}
	if all && l.f32 != nil && l.bf == nil {
		l.bf = make([]compute.BF16, len(l.f32))
		compute.BF16FromFloat32(l.bf, l.f32)
	}
}

// dropBF16 frees the bfloat16 copies.
func (l *Linear) dropBF16() { l.panelsBF, l.bf = nil, nil }

// row writes row i of the matrix (k floats) into dst, dequantizing a raw
// row (ggml's get_rows): the embedding lookup.
func (l *Linear) row(i int, dst []float32) error {
	if l.f32 != nil {
		copy(dst[:l.k], l.f32[i*l.k:(i+1)*l.k])
		return nil
	}
	rb := len(l.raw) / l.n
	if err := compute.Dequantize(l.typ, l.raw[i*rb:(i+1)*rb], dst[:l.k]); err != nil {
		return fmt.Errorf("infer: row %d of a %s matrix: %w", i, l.typ, err)
	}
	return nil
}

// mul computes, on pool, c = a·Wᵀ for rows rows of a (stride lda) into c
// (stride ldc). A raw matrix goes to compute.QMatMul. A float32 one, up to
// smallRows rows, multiplies by its packed panels (bfloat16 ones when p
// asks and they exist), split by columns over the pool for a large matrix:
// the product is bound by reading the weights, which two cores do faster
// than one even where compute's flop threshold would keep it serial, and
// every output's sum runs in the same order either way. More rows take the
// blocked GEMM (over the bfloat16 copy under precBF16).
func (l *Linear) mul(pool *compute.Pool, p precision, rows int, a []float32, lda int, c []float32, ldc int) {
	n, k := l.n, l.k
	if l.f32 == nil {
		compute.QMatMul(pool, l.typ, rows, n, k, a, lda, l.raw, c, ldc)
		return
	}
	if p != precFull {
		if wp := l.panelsBF; wp != nil && rows <= smallRows {
			if colParts(pool, n, k) < 2 {
				panelsBF16(rows, n, k, a, lda, wp, 0, n, c, ldc) // no closure to allocate
				return
			}
			splitCols(pool, n, k, func(j0, j1 int) { panelsBF16(rows, n, k, a, lda, wp, j0, j1, c, ldc) })
			return
		}
		if p == precBF16 && l.bf != nil {
			compute.GemmBF16(pool, rows, n, k, 1, a, lda, l.bf, k, 0, c, ldc)
			return
		}
	}
	if wp := l.panels; wp != nil && rows <= smallRows {
		if colParts(pool, n, k) < 2 {
			compute.GemmPanels(rows, n, k, a, lda, wp, 0, n, c, ldc)
			return
		}
		splitCols(pool, n, k, func(j0, j1 int) {
			compute.GemmPanels(rows, n, k, a, lda, wp, j0, j1, c, ldc)
		})
		return
	}
	compute.Gemm(pool, false, true, rows, n, k, 1, a, lda, l.f32, k, 0, c, ldc)
}

// panelsBF16 computes columns [j0, j1) (j0 a multiple of PanelCols) of
// c = a·Wᵀ from W's bfloat16 panels wp.
func panelsBF16(rows, n, k int, a []float32, lda int, wp []compute.BF16, j0, j1 int, c []float32, ldc int) {
	for j := j0; j < j1; j += compute.PanelCols {
		compute.GemmBF16T(rows, min(compute.PanelCols, n-j), k, a, lda, wp[j*k:], compute.PanelCols, c[j:], ldc)
	}
}

// stacked is a matrix held as row blocks multiplied one after the other,
// their outputs side by side: a fused [q; k; v] or [gate; up] is one block,
// separately stored projections are several.
type stacked []Linear

// rows returns the stacked matrix's outputs.
func (s stacked) rows() int {
	n := 0
	for i := range s {
		n += s[i].n
	}
	return n
}

// mul computes c = a·[W₀; W₁; …]ᵀ as Linear.mul does.
func (s stacked) mul(pool *compute.Pool, p precision, rows int, a []float32, lda int, c []float32, ldc int) {
	col := 0
	for i := range s {
		s[i].mul(pool, p, rows, a, lda, c[col:], ldc)
		col += s[i].n
	}
}

// fuseFloat32 returns parts (each n_i×k) as a stacked matrix: one block
// when they lie back to back in flat, else one per part.
func fuseFloat32(flat []float32, k int, parts ...[]float32) stacked {
	if v := adjacent(flat, parts...); v != nil {
		return stacked{newLinear(v, len(v)/k, k)}
	}
	s := make(stacked, len(parts))
	for i, p := range parts {
		s[i] = newLinear(p, len(p)/k, k)
	}
	return s
}

// adjacent returns the view of flat over parts laid out back to back, or
// nil if they are not.
func adjacent(flat []float32, parts ...[]float32) []float32 {
	if len(flat) == 0 || len(parts) == 0 || len(parts[0]) == 0 {
		return nil
	}
	p0, f0 := uintptr(unsafe.Pointer(&parts[0][0])), uintptr(unsafe.Pointer(&flat[0]))
	if p0 < f0 || (p0-f0)%4 != 0 || (p0-f0)/4 >= uintptr(len(flat)) {
		return nil
	}
	off := int((p0 - f0) / 4)
	pos := off
	for _, p := range parts {
		if len(p) == 0 || pos+len(p) > len(flat) || &flat[pos] != &p[0] {
			return nil
		}
		pos += len(p)
	}
	return flat[off:pos:pos]
}

// fuseMatrices returns GGUF matrices as a stacked matrix (joined where
// gguf.Fuse can).
func fuseMatrices(parts ...gguf.Matrix) stacked {
	fs := gguf.Fuse(parts...)
	s := make(stacked, len(fs))
	for i, x := range fs {
		s[i] = matrixLinear(x)
	}
	return s
}

// ffnWeights are a SwiGLU block's matrices: [gate; up] (width rows each)
// and down.
type ffnWeights struct {
	gu    stacked
	down  Linear
	width int
	// guBias ([gate; up], 2·width) and downBias are the projections'
	// biases (gpt-oss's experts); nil: none.
	guBias, downBias []float32
}

// layerWeights are one layer's weights as the forward pass uses them.
type layerWeights struct {
	attnNorm, ffnNorm []float32
	qkv               stacked // [q; k; v]
	o                 Linear
	ffn               ffnWeights // dense layers
	router            Linear     // MoE layers: always multiplied in float32
	scoreBias         []float32  // per-expert selection bias (loss-free balancing); nil: none
	experts           []ffnWeights
	shared            ffnWeights // width 0: none
	// Pieces of GGUF families beyond a Mixtral-style layer (nil: none):
	// q/k RMSNorm gains (per head when shorter than the projection), the
	// q/k/v biases as one [q; k; v] vector, the shared expert's sigmoid
	// gate.
	qNorm, kNorm, qkvBias, shGate []float32
	// mla replaces qkv under multi-head latent attention; nil otherwise.
	mla *mlaWeights
	// gpt-oss: the per-head attention sink logits, the output projection's
	// bias and the router logits' bias.
	sinks, oBias, routerBias []float32
}

// forEach calls f with every matrix of the layer the forward pass
// multiplies by, and whether it is the router.
func (L *layerWeights) forEach(f func(l *Linear, router bool)) {
	for i := range L.qkv {
		f(&L.qkv[i], false)
	}
	f(&L.o, false)
	ffn := func(x *Linear) { f(x, false) }
	L.mla.forEach(ffn)
	L.ffn.forEach(ffn)
	if L.router.n > 0 {
		f(&L.router, true)
	}
	for e := range L.experts {
		L.experts[e].forEach(ffn)
	}
	L.shared.forEach(ffn)
}

// forEach calls f with each matrix of the FFN (none when its width is 0).
func (w *ffnWeights) forEach(f func(l *Linear)) {
	if w.width == 0 {
		return
	}
	for i := range w.gu {
		f(&w.gu[i])
	}
	f(&w.down)
}

// bytes returns the bytes one product by l reads at full precision: the
// stored matrix of a raw Linear, the float32 panels or rows otherwise.
func (l *Linear) bytes() int64 {
	if l.raw != nil {
		return int64(len(l.raw))
	}
	if l.panels != nil {
		return 4 * int64(len(l.panels))
	}
	return 4 * int64(len(l.f32))
}

// ActiveWeightBytes returns the weight bytes one decoded token reads on
// average: every dense matrix, the LM head, and of each MoE layer's
// experts the fraction ExpertsPerToken / NumExperts (the embedding row and
// the norms are left out). Times the decode rate it is the memory traffic
// decoding needs, to set beside the machine's read bandwidth.
func (m *Model) ActiveWeightBytes() int64 {
	var dense int64
	var expert float64
	k := float64(model.RoutedK(m.Cfg))
	for l := range m.layers {
		L := &m.layers[l]
		var all, ex int64
		L.forEach(func(x *Linear, _ bool) { all += x.bytes() })
		for e := range L.experts {
			L.experts[e].forEach(func(x *Linear) { ex += x.bytes() })
		}
		dense += all - ex
		if n := len(L.experts); n > 0 {
			expert += float64(ex) * min(k, float64(n)) / float64(n)
		}
	}
	return dense + m.lmHead.bytes() + int64(expert)
}
