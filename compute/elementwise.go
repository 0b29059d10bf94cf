package compute

import (
	"errors"
	"fmt"
	"math"
)

// This file holds the element-wise transformer kernels shared by training
// (package model) and inference (package infer). All of them work on
// row-major float32 slices and allocate nothing. Backward kernels follow the
// llm.c convention: gradients of inputs that a caller typically sums over
// several paths (the residual stream, parameter gradients) are accumulated
// (+=); scratch gradients that are only produced once are overwritten, as
// each function's comment says.

// RMSNorm computes out = x / sqrt(mean(x²) + eps) · g for each of the rows
// rows of length d. rstd, when not nil, receives 1/sqrt(mean(x²)+eps) per
// row for the backward pass. out may alias x.
func RMSNorm(out, x, g []float32, rows, d int, eps float32, rstd []float32) {
	for r := 0; r < rows; r++ {
		xr := x[r*d : r*d+d]
		or := out[r*d : r*d+d]
		var ss float32
		for _, v := range xr {
			ss += v * v
		}
		s := float32(1 / math.Sqrt(float64(ss/float32(d)+eps)))
		if rstd != nil {
			rstd[r] = s
		}
		for i, v := range xr {
			or[i] = v * s * g[i]
		}
	}
}

// RMSNormBackward back-propagates through RMSNorm: given dout, the input x,
// the gain g and the rstd that RMSNorm saved, it ADDS the gradient of x to dx
// and the gradient of g to dg (dg may be nil to skip it).
func RMSNormBackward(dx, dg, dout, x, g, rstd []float32, rows, d int) {
	for r := 0; r < rows; r++ {
		xr := x[r*d : r*d+d]
		dr := dout[r*d : r*d+d]
		dxr := dx[r*d : r*d+d]
		s := rstd[r]
		// y_i = x_i·s·g_i; dL/dx_j = s·g_j·dy_j − s³/d · x_j · Σ_i dy_i·g_i·x_i
		var dot float32
		for i, v := range xr {
			dot += dr[i] * g[i] * v
		}
		c := s * s * s * dot / float32(d)
		for i, v := range xr {
			dxr[i] += s*g[i]*dr[i] - c*v
		}
		if dg != nil {
			for i, v := range xr {
				dg[i] += dr[i] * v * s
			}
		}
	}
}

// RoPE holds the cos/sin tables of rotary position embeddings in the
// Hugging Face "rotate_half" (NeoX) convention: within a head of dimension
// hd, element i < hd/2 is paired with i+hd/2 and both are rotated by the
// angle pos·invFreq[i] (invFreq[i] = theta^(−2i/hd) unscaled), then scaled
// by the attention factor (1 except for YaRN).
type RoPE struct {
	hd      int
	invFreq []float64 // [hd/2]
	attn    float64   // multiplies cos and sin
	maxPos  int
	cos     []float32 // [maxPos, hd/2]
	sin     []float32 // [maxPos, hd/2]
}

// NewRoPEFreqs precomputes the tables for the inverse frequencies invFreq
// (one per rotated pair, head dimension 2·len(invFreq)) and an attention
// factor that multiplies cos and sin (YaRN's; 1 otherwise): the form every
// RoPE scaling takes (see model.RopeFreqs).
func NewRoPEFreqs(invFreq []float64, maxPos int, attn float64) (*RoPE, error) {
	if len(invFreq) == 0 {
		return nil, errors.New("rope: no frequencies")
	}
	if maxPos < 0 {
		return nil, fmt.Errorf("rope: negative max position %d", maxPos)
	}
	if !(attn > 0) || math.IsInf(attn, 0) {
		return nil, fmt.Errorf("rope: attention factor %v must be positive and finite", attn)
	}
	for i, f := range invFreq {
		if !(f > 0) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("rope: inverse frequency %d is %v, must be positive and finite", i, f)
		}
	}
	h := len(invFreq)
	r := &RoPE{hd: 2 * h, invFreq: append([]float64(nil), invFreq...), attn: attn, maxPos: maxPos,
		cos: make([]float32, maxPos*h), sin: make([]float32, maxPos*h)}
	for p := 0; p < maxPos; p++ {
		for i := 0; i < h; i++ {
			c, s := r.cosSin(p, i)
			r.cos[p*h+i] = c
			r.sin[p*h+i] = s
		}
	}
	return r, nil
}

// cosSin returns attn·cos and attn·sin of the angle of pair i at pos.
func (r *RoPE) cosSin(pos, i int) (float32, float32) {
	s, c := math.Sincos(float64(pos) * r.invFreq[i])
	if r.attn != 1 {
		s, c = s*r.attn, c*r.attn
	}
	return float32(c), float32(s)
}

// Apply rotates x in place: x holds heads consecutive vectors of length hd,
// all at position pos (one token's query or key heads).
func (r *RoPE) Apply(x []float32, heads, pos int) { r.rotate(x, heads, pos, 1) }

// Backward back-propagates through Apply in place: dx holds the gradient of
// the rotated vectors and receives the gradient of the unrotated ones (a
// rotation by the opposite angle).
func (r *RoPE) Backward(dx []float32, heads, pos int) { r.rotate(dx, heads, pos, -1) }

func (r *RoPE) rotate(x []float32, heads, pos int, sign float32) {
	h := r.hd / 2
	var cs, sn []float32
	if pos >= 0 && pos < r.maxPos {
		cs, sn = r.cos[pos*h:pos*h+h], r.sin[pos*h:pos*h+h]
	}
	for hh := 0; hh < heads; hh++ {
		v := x[hh*r.hd : hh*r.hd+r.hd]
		for i := 0; i < h; i++ {
			var c, s float32
			if cs != nil {
				c, s = cs[i], sn[i]
			} else {
				c, s = r.cosSin(pos, i)
			}
			s *= sign
			a, b := v[i], v[i+h]
			// rotate_half: out = x·cos + (−x2, x1)·sin
			v[i] = a*c - b*s
			v[i+h] = b*c + a*s
		}
	}
}

// Sigmoid returns 1/(1+e^−x) in float32, stable for large |x|.
func Sigmoid(x float32) float32 {
	if x >= 0 {
		return 1 / (1 + Exp32(-x))
	}
	e := Exp32(x)
	return e / (1 + e)
}

// SwiGLU computes out = silu(gate) ⊙ up over equal-length slices. out may
// alias gate or up.
func SwiGLU(out, gate, up []float32) { swiglu(out, gate, up) }

func swigluGeneric(out, gate, up []float32) {
	if len(gate) == 0 {
		return
	}
	_ = out[len(gate)-1]
	_ = up[len(gate)-1]
	for i, g := range gate {
		out[i] = g * Sigmoid(g) * up[i]
	}
}

// SwiGLUBackward computes (overwriting) dgate and dup from dout, the
// gradient of out = silu(gate) ⊙ up. dgate and dup may alias gate and up
// respectively (the inputs are read before they are written).
func SwiGLUBackward(dgate, dup, dout, gate, up []float32) { swigluBackward(dgate, dup, dout, gate, up) }

func swigluBackwardGeneric(dgate, dup, dout, gate, up []float32) {
	if len(gate) == 0 {
		return
	}
	_ = dgate[len(gate)-1]
	_ = dup[len(gate)-1]
	_ = dout[len(gate)-1]
	for i, g := range gate {
		s := Sigmoid(g)
		u := up[i]
		d := dout[i]
		dgate[i] = d * u * s * (1 + g*(1-s))
		dup[i] = d * g * s
	}
}

// expScaleGeneric is the portable expScale.
func expScaleGeneric(x, y []float32, shift, scale float32) float32 {
	var s float32
	if y == nil || len(x) == 0 {
		for _, v := range x {
			s += Exp32(v - shift)
		}
		return s
	}
	_ = y[len(x)-1]
	for i, v := range x {
		e := Exp32(v - shift)
		s += e
		y[i] = scale * e
	}
	return s
}

// SoftmaxRow replaces x with its softmax in place.
func SoftmaxRow(x []float32) {
	if len(x) == 0 {
		return
	}
	softmaxInPlace(x)
}

// SoftmaxRowSink replaces x with its softmax over x and one more logit,
// sink, which takes part in the normalisation but has no output: an
// attention sink (gpt-oss), x_i = e^(x_i−m) / (Σ_j e^(x_j−m) + e^(sink−m))
// with m the largest of x and sink, as ggml's soft_max with sinks computes.
func SoftmaxRowSink(x []float32, sink float32) {
	if len(x) == 0 {
		return
	}
	m := rowMax(x)
	if sink > m {
		m = sink
	}
	sum := expScale(x, nil, m, 1) + Exp32(sink-m)
	expScale(x, x, m, 1/sum)
}

// softmaxInPlace replaces the non-empty x with its softmax and returns the
// shift it used (the maximum, or the first NaN) and the sum of the shifted
// exponentials.
func softmaxInPlace(x []float32) (m, sum float32) {
	m = rowMax(x)
	// Sum first, then store e^(x−m)·(1/sum): two vector exp passes beat
	// one exp pass plus a scalar normalising loop, with the same bits.
	sum = expScale(x, nil, m, 1)
	expScale(x, x, m, 1/sum)
	return m, sum
}

// rowMaxGeneric returns the largest element of a non-empty x, or the first
// NaN.
func rowMaxGeneric(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		if v > m || v != v {
			m = v
			if v != v {
				break
			}
		}
	}
	return m
}

// SoftmaxBackwardScaled computes (overwriting) dx = scale·y ⊙ (dy − Σ dy·y)
// for one row, where y = softmax(x); dx and dy must be at least len(y)
// long and dx may alias dy.
func SoftmaxBackwardScaled(dx, dy, y []float32, scale float32) {
	if len(y) == 0 {
		return
	}
	dot := Dot(y, dy)
	softmaxBwdRow(dx[:len(y)], dy[:len(y)], y, dot, scale)
}

// softmaxBwdRowGeneric writes dx[i] = scale·y[i]·(dy[i] − dot).
func softmaxBwdRowGeneric(dx, dy, y []float32, dot, scale float32) {
	for i, v := range y {
		dx[i] = scale * (v * (dy[i] - dot))
	}
}

// LogSumExp returns log Σ exp(x_i), computed stably in float64.
func LogSumExp(x []float32) float64 {
	if len(x) == 0 {
		return math.Inf(-1)
	}
	// A NaN anywhere makes the exp sum NaN; only an infinite maximum needs
	// the scalar scan (NaN beats +Inf there).
	m := rowMax(x)
	if math.IsInf(float64(m), 0) {
		if m = rowMaxGeneric(x); m != m {
			return math.NaN()
		}
		return float64(m)
	}
	return float64(m) + math.Log(float64(expScale(x, nil, m, 1)))
}

// better reports whether score a at index ia ranks above score b at index
// ib: larger first, ties toward the lower index, NaN below everything.
func better(a float32, ia int32, b float32, ib int32) bool {
	an, bn := a != a, b != b
	switch {
	case an && bn:
		return ia < ib
	case an:
		return false
	case bn:
		return true
	case a != b:
		return a > b
	}
	return ia < ib
}

// TopK writes into idx[:k] the indices of the k largest scores in
// descending order; ties break toward the lower index and NaN ranks below
// every number. k is clamped to len(scores) and len(idx); it returns the
// number of indices written.
func TopK(scores []float32, k int, idx []int32) int {
	n := len(scores)
	k = min(k, n, len(idx))
	if k <= 0 {
		return 0
	}
	if k <= 16 {
		// Insertion into a short sorted list.
		cnt := 0
		for i := 0; i < n; i++ {
			s := scores[i]
			if cnt == k && !better(s, int32(i), scores[idx[k-1]], idx[k-1]) {
				continue
			}
			j := cnt
			if cnt < k {
				cnt++
			} else {
				j = k - 1
			}
			for j > 0 && better(s, int32(i), scores[idx[j-1]], idx[j-1]) {
				idx[j] = idx[j-1]
				j--
			}
			idx[j] = int32(i)
		}
		return k
	}
	// A min-heap (worst at the root) of the k best seen so far.
	h := idx[:k]
	worse := func(a, b int32) bool { return better(scores[b], b, scores[a], a) }
	down := func(i, m int) {
		for {
			l := 2*i + 1
			if l >= m {
				return
			}
			c := l
			if r := l + 1; r < m && worse(h[r], h[l]) {
				c = r
			}
			if !worse(h[c], h[i]) {
				return
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
	}
	for i := 0; i < k; i++ {
		h[i] = int32(i)
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i, k)
	}
	for i := k; i < n; i++ {
		if better(scores[i], int32(i), scores[h[0]], h[0]) {
			h[0] = int32(i)
			down(0, k)
		}
	}
	// Heap-sort: repeatedly move the worst to the end → best first.
	for m := k - 1; m > 0; m-- {
		h[0], h[m] = h[m], h[0]
		down(0, m)
	}
	return k
}

// GatherRows copies rows: dst[i] = src[idx[i]] for each i, rows of length d.
func GatherRows[T any](dst, src []T, idx []int32, d int) {
	for i, j := range idx {
		copy(dst[i*d:i*d+d], src[int(j)*d:int(j)*d+d])
	}
}

// ScatterAddRows adds rows back: dst[idx[i]] += w[i]·src[i] for each i, rows
// of length d; w nil means weight 1.
func ScatterAddRows(dst, src []float32, idx []int32, w []float32, d int) {
	for i, j := range idx {
		dr := dst[int(j)*d : int(j)*d+d]
		sr := src[i*d : i*d+d]
		if w == nil {
			for c, v := range sr {
				dr[c] += v
			}
			continue
		}
		wi := w[i]
		for c, v := range sr {
			dr[c] += wi * v
		}
	}
}

// Add computes dst += src element-wise.
func Add(dst, src []float32) {
	if len(src) == 0 {
		return
	}
	_ = dst[len(src)-1]
	for i, v := range src {
		dst[i] += v
	}
}

// CrossEntropyLSE is the loss half of the softmax cross-entropy of rows
// rows of logits (each of length V) against targets, ignoring rows whose
// target is negative (a target ≥ V is an error): it returns the summed
// loss and the number of counted rows, and saves each row's logsumexp in
// lse (length rows; ignored rows get 0) for CrossEntropyBackward.
func CrossEntropyLSE(logits []float32, targets []int32, rows, V int, lse []float32) (float64, int, error) {
	if len(targets) < rows || len(lse) < rows {
		return 0, 0, fmt.Errorf("cross-entropy: %d targets and %d lse slots for %d rows", len(targets), len(lse), rows)
	}
	var sum float64
	n := 0
	for r := 0; r < rows; r++ {
		t := targets[r]
		if int(t) >= V {
			return 0, 0, fmt.Errorf("cross-entropy: target %d at row %d out of vocabulary %d", t, r, V)
		}
		lse[r] = 0
		if t < 0 {
			continue
		}
		xr := logits[r*V : r*V+V]
		l := LogSumExp(xr)
		lse[r] = float32(l)
		sum += l - float64(xr[t])
		n++
	}
	return sum, n, nil
}

// CrossEntropyBackward writes (overwrites) dlogits = scale·(softmax −
// onehot(target)) using the logsumexp that CrossEntropyLSE saved, and zeros
// for rows whose target is negative. dlogits may alias logits. Targets must
// be < V (CrossEntropyLSE has checked them).
func CrossEntropyBackward(dlogits, logits, lse []float32, targets []int32, rows, V int, scale float32) {
	for r := 0; r < rows; r++ {
		t := targets[r]
		dr := dlogits[r*V : r*V+V]
		if t < 0 {
			clear(dr)
			continue
		}
		expScale(logits[r*V:r*V+V], dr, lse[r], scale)
		dr[t] -= scale
	}
}

// SoftmaxRowLSE replaces x with its softmax in place, like SoftmaxRow, and
// returns the logsumexp of the original x (so that softmax(x) can later be
// recomputed as exp(x − lse), see ExpScale).
func SoftmaxRowLSE(x []float32) float32 {
	if len(x) == 0 {
		return float32(math.Inf(-1))
	}
	m, sum := softmaxInPlace(x)
	return m + float32(math.Log(float64(sum)))
}

// ExpScale writes dst[i] = scale·exp(src[i] − shift) (dst may alias src,
// and may be nil to only sum) and returns Σ exp(src[i] − shift).
func ExpScale(dst, src []float32, shift, scale float32) float32 {
	return expScale(src, dst, shift, scale)
}
