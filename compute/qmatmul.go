package compute

import (
	"fmt"
	"math"
	"unsafe"
)

// Quantized matrix products: C = A·Wᵀ for a float32 A and a weight matrix W
// kept in its stored type (ggml's block layouts, as a GGUF file holds it).
//
// The way ggml's CPU backend does it: each row of A is quantized once per
// call to 8 bits (per block of 32 for the 32-element block types, per
// super-block of 256 for the k-quants), then every output is a sum of exact
// integer block dot products, each scaled by the weight's and the
// activation's float scales.
//
// The arithmetic is pinned down so that the assembly kernels and the
// portable Go code give the same bits ("the lane model"): an output keeps 16
// float32 partial sums ("lanes"); a lane collects the integer products of
// four consecutive bytes of a 64-byte weight vector ("unit") per group of
// blocks, the group's float scale multiplies the lane's exact integer sum
// and the product is added to the lane (multiply, then add: never fused);
// at the end the lanes are summed pairwise, l+8, l+4, l+2, l+1. Weights are
// made unsigned (an offset o added, o·Σa subtracted in integers), so that
// one u8×s8 dot product (AVX-512 VNNI's vpdpbusd) serves every type.
// Because each output is computed on its own by one goroutine in a fixed
// order, results depend neither on the thread count nor, for a given row,
// on the other rows of the call.

// qLanes is the number of float32 partial sums per output.
const qLanes = 16

// qFamily says how a type's weights are grouped.
type qFamily int

const (
	// famFloat: F32, F16, BF16, multiplied in float32 without quantizing A.
	famFloat qFamily = iota
	// famB32: 32-element blocks with one scale (and maybe a min) each;
	// a group is 2 blocks (Q8_0: one unit) or 4 (the 4/5-bit types: a unit
	// of the first 16 elements of each block, one of the last 16).
	famB32
	// famK: 256-element super-blocks with 8 or 16 integer sub-scales; a
	// group is a super-block of 4 units.
	famK
)

// qSpec is how QMatMul computes with one weight type.
type qSpec struct {
	fam qFamily
	// bpg is blocks per group (famB32) and halves the units per group.
	bpg, halves int
	// off is the offset added to make weights unsigned (0: the type has
	// mins and the lanes carry Σa for them instead).
	off int32
	// hasMin says a min (famB32: m, famK: dmin·m) is added/subtracted.
	hasMin bool
	// decode32 unpacks one 32-element block: unsigned weights (value+off)
	// in element order, its scale and min.
	decode32 func(blk []byte, q *[32]uint8) (d, m float32)
	// decodeK unpacks one super-block: unsigned weights in unit position
	// order, sub-block scales, mins (or nothing), d and dmin.
	decodeK func(blk []byte, q *[256]uint8, sc, mn *[16]int32) (d, dmin float32)
	// perm[pos] is the element at unit position pos (famK).
	perm *[256]uint8
	// sub is the sub-block size (famK) and nsub the sub-blocks.
	sub, nsub int
}

// qSpecs lists the types QMatMul computes with; filled once at package
// initialisation and read-only after.
var qSpecs = map[QType]*qSpec{
	QF32:    {fam: famFloat},
	QF16:    {fam: famFloat},
	QBF16:   {fam: famFloat},
	QQ8_0:   {fam: famB32, bpg: 2, halves: 1, off: 128, decode32: decQ8_0},
	QQ4_0:   {fam: famB32, bpg: 4, halves: 2, off: 8, decode32: decQ4_0},
	QQ4_1:   {fam: famB32, bpg: 4, halves: 2, hasMin: true, decode32: decQ4_1},
	QQ5_0:   {fam: famB32, bpg: 4, halves: 2, off: 16, decode32: decQ5_0},
	QQ5_1:   {fam: famB32, bpg: 4, halves: 2, hasMin: true, decode32: decQ5_1},
	QIQ4_NL: {fam: famB32, bpg: 4, halves: 2, off: 128, decode32: decIQ4NL},
	QMXFP4:  {fam: famB32, bpg: 4, halves: 2, off: 16, decode32: decMXFP4},
	QQ2_K:   {fam: famK, hasMin: true, decodeK: decQ2K, perm: &permQ23K, sub: 16, nsub: 16},
	QQ3_K:   {fam: famK, off: 4, decodeK: decQ3K, perm: &permQ23K, sub: 16, nsub: 16},
	QQ4_K:   {fam: famK, hasMin: true, decodeK: decQ4K, perm: &permQ45K, sub: 32, nsub: 8},
	QQ5_K:   {fam: famK, hasMin: true, decodeK: decQ5K, perm: &permQ45K, sub: 32, nsub: 8},
	QQ6_K:   {fam: famK, off: 32, decodeK: decQ6K, perm: &permNatural, sub: 16, nsub: 16},
	QIQ4_XS: {fam: famK, off: 128, decodeK: decIQ4XS, perm: &permIQ4XS, sub: 32, nsub: 8},
}

// The unit position orders of the k-quants: perm[64u+p] is the element of
// the super-block that byte p of unit u multiplies.
var (
	permNatural = func() (t [256]uint8) {
		for i := range t {
			t[i] = uint8(i)
		}
		return
	}()
	// Q4_K, Q5_K: unit u holds the low (u even) or high nibbles of
	// qs[64(u/2):+64]: sub-blocks 4(u/2)+u%2 and that +2.
	permQ45K = func() (t [256]uint8) {
		for pos := range t {
			u, p := pos/64, pos%64
			sub := 4*(u/2) + u%2 + 2*(p/32)
			t[pos] = uint8(32*sub + p%32)
		}
		return
	}()
	// Q2_K, Q3_K: unit j holds bits 2j..2j+1 of qs[0:64]: the first 32
	// bytes are elements 32j.., the next 32 elements 128+32j...
	permQ23K = func() (t [256]uint8) {
		for pos := range t {
			j, p := pos/64, pos%64
			t[pos] = uint8(128*(p/32) + 32*j + p%32)
		}
		return
	}()
	// IQ4_XS: unit 2c+h holds the low (h=0) or high nibbles of
	// qs[64c:+64], 16 bytes per sub-block.
	permIQ4XS = func() (t [256]uint8) {
		for pos := range t {
			u, p := pos/64, pos%64
			sub := 4*(u/2) + p/16
			t[pos] = uint8(32*sub + 16*(u%2) + p%16)
		}
		return
	}()
)

// QMatMulSupported reports whether QMatMul computes with weights of type t.
func QMatMulSupported(t QType) bool { return qSpecs[t] != nil }

// QMatMulKernels names the kernels QMatMul runs on this machine: "avx512"
// (AVX-512 with VNNI), "avx2" or "generic" (portable Go; also with -tags
// purego).
func QMatMulKernels() string {
	if qBest == nil {
		return "generic"
	}
	return qBest.name
}

// checkQMatMul reports whether QMatMul's arguments are consistent, naming
// the first problem.
func checkQMatMul(t QType, rows, n, k int, a []float32, lda int, w []byte, c []float32, ldc int) error {
	if !QMatMulSupported(t) {
		return fmt.Errorf("compute: QMatMul: weight type %s is not supported", t)
	}
	if rows < 0 || n < 0 || k < 0 {
		return fmt.Errorf("compute: QMatMul: negative size rows=%d n=%d k=%d", rows, n, k)
	}
	rb, err := t.RowBytes(k)
	if err != nil {
		return fmt.Errorf("compute: QMatMul: weight rows: %w", err)
	}
	if rows == 0 || n == 0 {
		return nil
	}
	if lda < k || ldc < n {
		return fmt.Errorf("compute: QMatMul: leading dimensions lda=%d ldc=%d too small for k=%d n=%d", lda, ldc, k, n)
	}
	if len(a) < (rows-1)*lda+k {
		return fmt.Errorf("compute: QMatMul: A holds %d floats, too few for %d rows of %d (lda %d)", len(a), rows, k, lda)
	}
	if len(w) < n*rb {
		return fmt.Errorf("compute: QMatMul: W holds %d bytes, too few for %d rows of %d %s elements (%d bytes each)", len(w), n, k, t, rb)
	}
	if len(c) < (rows-1)*ldc+n {
		return fmt.Errorf("compute: QMatMul: C holds %d floats, too few for %d×%d (ldc %d)", len(c), rows, n, ldc)
	}
	return nil
}

// QMatMul computes c[r*ldc+j] = Σ_i a[r*lda+i]·W[j][i] for r < rows, j < n,
// where W is n rows of k elements stored in type t, row after row (each row
// t.RowBytes(k) bytes, ggml's block layout), on pool (nil: the calling
// goroutine). k must be a whole number of t's blocks. Inconsistent
// arguments panic with checkQMatMul's error.
//
// A is quantized to 8 bits per block once per call (not for F32, F16 and
// BF16), so results differ from a float product by that rounding. Each
// output is computed by one goroutine in a fixed order: the result does not
// depend on the pool's size, nor a row's on the other rows.
func QMatMul(pool *Pool, t QType, rows, n, k int, a []float32, lda int, w []byte, c []float32, ldc int) {
	if err := checkQMatMul(t, rows, n, k, a, lda, w, c, ldc); err != nil {
		panic(err)
	}
	qmatmul(pool, t, rows, n, k, a, lda, w, c, ldc, qBest)
}

// qmatmul is QMatMul on checked arguments with the kernel set ks (nil:
// the portable kernels; the tests compare them all).
func qmatmul(pool *Pool, t QType, rows, n, k int, a []float32, lda int, w []byte, c []float32, ldc int, ks *qKernels) {
	if emptyProduct(rows, n, k, c, ldc) {
		return
	}
	sp := qSpecs[t]
	rb, _ := t.RowBytes(k)
	var act *qAct
	if sp.fam != famFloat {
		buf := pool.getBuf(qActFloats(sp, rows, k))
		defer pool.putBuf(buf)
		act = quantizeActs(pool, sp, rows, k, a, lda, *buf)
	}
	// Column chunks of about 64 KiB of weights (at least 16 columns), so
	// that the pool balances and each chunk's weights stay in cache while
	// all rows pass over them.
	chunk := max(16, (64<<10)/rb)
	chunk = (chunk + 15) &^ 15
	nch := (n + chunk - 1) / chunk
	if nch < 2*pool.Threads() && n > 16 {
		chunk = max(4, (n+2*pool.Threads()-1)/(2*pool.Threads()))
		nch = (n + chunk - 1) / chunk
	}
	pool.Run(nch, func(ci int) {
		j0 := ci * chunk
		j1 := min(n, j0+chunk)
		qmatmulCols(t, sp, rows, k, a, lda, act, w[j0*rb:j1*rb], rb, j1-j0, c[j0:], ldc, ks)
	})
}

// qmatmulCols computes columns [0, ncol) of c from the ncol weight rows in w.
func qmatmulCols(t QType, sp *qSpec, rows, k int, a []float32, lda int, act *qAct, w []byte, rb, ncol int, c []float32, ldc int, ks *qKernels) {
	if sp.fam == famFloat {
		if qmatmulFloatAsm(ks, t, rows, k, a, lda, w, rb, ncol, c, ldc) {
			return
		}
		qmatmulFloatGo(t, rows, k, a, lda, w, rb, ncol, c, ldc)
		return
	}
	if qmatmulAsm(ks, t, sp, rows, act, w, rb, ncol, c, ldc) {
		return
	}
	switch sp.fam {
	case famB32:
		qmatmulB32Go(sp, rows, act, w, rb, ncol, c, ldc)
	case famK:
		qmatmulKGo(sp, rows, act, w, rb, ncol, c, ldc)
	}
}

// qAct is a call's activations, quantized for one weight type. Row r's
// data are q[r*qStride:], lan[r*lStride:] and d[r*dStride:]; per group:
//   - q: the 8-bit values in the weight type's unit position order
//     (64·halves bytes per famB32 group, 256 per super-block);
//   - lan: 16 int32 lanes: famB32, -off·(sum of the lane's activation
//     bytes) for offset types or that sum for types with mins; famK, the
//     activation sum of each sub-block (lanes beyond the sub-blocks 0);
//   - d: famB32, the scale of each lane's block (16 floats); famK, the
//     super-block's scale (1 float).
type qAct struct {
	q                         []int8
	lan                       []int32
	d                         []float32
	qStride, lStride, dStride int
	groups                    int
	// nb is the blocks per row (famB32), for the tail group.
	nb int
}

// qActLayout sets act's strides and group count for rows of k elements.
func qActLayout(sp *qSpec, k int, act *qAct) {
	switch sp.fam {
	case famB32:
		nb := k / 32
		act.nb = nb
		act.groups = (nb + sp.bpg - 1) / sp.bpg
		act.qStride = act.groups * 64 * sp.halves
		act.lStride = act.groups * qLanes
		act.dStride = act.groups * qLanes
	case famK:
		act.groups = k / 256
		act.qStride = act.groups * 256
		act.lStride = act.groups * qLanes
		act.dStride = act.groups
	}
}

// qActFloats is the float32 words quantizeActs needs for rows of k.
func qActFloats(sp *qSpec, rows, k int) int {
	var act qAct
	qActLayout(sp, k, &act)
	return rows * (act.qStride/4 + act.lStride + act.dStride)
}

// quantizeActs quantizes rows of a for spec sp into buf (qActFloats words),
// rows split over pool when there are enough of them (each row is
// quantized on its own: the split does not change the result).
func quantizeActs(pool *Pool, sp *qSpec, rows, k int, a []float32, lda int, buf []float32) *qAct {
	act := &qAct{}
	qActLayout(sp, k, act)
	nq, nl := rows*act.qStride/4, rows*act.lStride
	act.q = unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(buf))), 4*nq)
	act.lan = unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(buf[nq:]))), nl)
	act.d = buf[nq+nl : nq+nl+rows*act.dStride]
	quant := func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			x := a[r*lda : r*lda+k]
			q := act.q[r*act.qStride : (r+1)*act.qStride]
			lan := act.lan[r*act.lStride : (r+1)*act.lStride]
			d := act.d[r*act.dStride : (r+1)*act.dStride]
			if sp.fam == famB32 {
				quantRowB32(sp, x, q, lan, d)
			} else {
				quantRowK(sp, x, q, lan, d)
			}
		}
	}
	// Parts of at least qActSplit elements, so that a small call is not
	// slowed by handing work out.
	parts := min(pool.Threads(), rows*k/qActSplit)
	if parts < 2 {
		quant(0, rows)
		return act
	}
	pool.Run(parts, func(i int) { quant(i*rows/parts, (i+1)*rows/parts) })
	return act
}

// qActSplit is the fewest activation elements quantizeActs hands to one
// goroutine.
const qActSplit = 4096

// quantBlock quantizes x to q (x ≈ d·q, |q| <= 127, rounded to nearest,
// ties to even) and returns d. A block holding an infinity or NaN gets
// d = NaN, so that the outputs it reaches are NaN, not silently wrong.
func quantBlock(x []float32, q []int8) float32 {
	// The largest magnitude as bits (ordered as the floats are; above
	// +Inf's bits is NaN), without data-dependent branches.
	var m uint32
	for _, v := range x {
		m = max(m, math.Float32bits(v)&^(1<<31))
	}
	if m == 0 || m >= 0x7f800000 {
		clear(q)
		if m == 0 {
			return 0
		}
		return float32(math.NaN())
	}
	amax := math.Float32frombits(m)
	id := 127 / amax
	for i, v := range x {
		// |v·id| <= 127: adding 1.5·2^23 rounds it to an integer (ties to
		// even) held in the low mantissa bits.
		f := float32(v*id) + qRoundMagic
		q[i] = int8(int32(math.Float32bits(f)) - qRoundMagicBits)
	}
	return amax / 127
}

// qRoundMagic is 1.5·2^23; qRoundMagicBits its bits.
const (
	qRoundMagic     = 12582912
	qRoundMagicBits = 0x4B400000
)

// quantRowB32 fills one row's famB32 activation data: whole groups in
// assembly where there is a kernel, the rest in Go.
func quantRowB32(sp *qSpec, x []float32, q []int8, lan []int32, d []float32) {
	quantRowB32From(sp, quantRowB32Asm(sp, x, q, lan, d), x, q, lan, d)
}

// quantRowB32From fills one row's famB32 activation data from block b0 on
// (the portable quantizer: b0 = 0).
func quantRowB32From(sp *qSpec, b0 int, x []float32, q []int8, lan []int32, d []float32) {
	var blk [32]int8
	lpb := qLanes / sp.bpg // lanes per block
	if len(x)/32%sp.bpg != 0 {
		// The partial last group's missing blocks read as zeros.
		clear(q[len(q)-64*sp.halves:])
		clear(lan[len(lan)-qLanes:])
		clear(d[len(d)-qLanes:])
	}
	for b := b0; b < len(x)/32; b++ {
		// The block's scale is rounded to float16 as ggml stores it in
		// its q8_0/q8_1 activation blocks, so that products agree with
		// llama.cpp's to float32 rounding rather than to 8-bit noise.
		db := roundF16(quantBlock(x[32*b:32*b+32], blk[:]))
		g, bi := b/sp.bpg, b%sp.bpg
		gq := q[g*64*sp.halves:]
		gl := lan[g*qLanes+bi*lpb : g*qLanes+(bi+1)*lpb]
		gd := d[g*qLanes+bi*lpb : g*qLanes+(bi+1)*lpb]
		for l := range gd {
			gd[l] = db
		}
		// Lane sums over the positions each lane multiplies: 4 bytes of
		// the block (Q8_0), or 4 of its first and 4 of its last 16.
		if sp.halves == 1 {
			copy(gq[32*bi:32*bi+32], blk[:])
			for j := range gl {
				gl[j] = int32(blk[4*j]) + int32(blk[4*j+1]) + int32(blk[4*j+2]) + int32(blk[4*j+3])
			}
		} else {
			copy(gq[16*bi:16*bi+16], blk[:16])
			copy(gq[64+16*bi:64+16*bi+16], blk[16:])
			for j := range gl {
				lo := int32(blk[4*j]) + int32(blk[4*j+1]) + int32(blk[4*j+2]) + int32(blk[4*j+3])
				hi := int32(blk[16+4*j]) + int32(blk[17+4*j]) + int32(blk[18+4*j]) + int32(blk[19+4*j])
				gl[j] = lo + hi
			}
		}
		if sp.off != 0 {
			for j := range gl {
				gl[j] *= -sp.off
			}
		}
	}
}

// quantRowK fills one row's famK activation data: in assembly where there
// is a kernel, else in Go.
func quantRowK(sp *qSpec, x []float32, q []int8, lan []int32, d []float32) {
	if !quantRowKAsm(sp, x, q, lan, d) {
		quantRowKGo(sp, x, q, lan, d)
	}
}

// quantRowKGo fills one row's famK activation data (the portable quantizer).
func quantRowKGo(sp *qSpec, x []float32, q []int8, lan []int32, d []float32) {
	var blk [256]int8
	for g := 0; g < len(x)/256; g++ {
		d[g] = quantBlock(x[256*g:256*g+256], blk[:])
		gq := q[256*g : 256*g+256]
		// Every unit order moves runs of at least 16 elements.
		for pos := 0; pos < 256; pos += 16 {
			e := int(sp.perm[pos])
			copy(gq[pos:pos+16], blk[e:e+16])
		}
		gl := lan[g*qLanes : g*qLanes+qLanes]
		var s16 [16]int32
		for i := range s16 {
			var s int32
			for _, v := range blk[16*i : 16*i+16] {
				s += int32(v)
			}
			s16[i] = s
		}
		if sp.sub == 16 {
			copy(gl, s16[:])
		} else {
			for i := 0; i < 8; i++ {
				gl[i] = s16[2*i] + s16[2*i+1]
			}
			clear(gl[8:])
		}
	}
}

// qReduce sums the 16 lanes pairwise: l+8, l+4, l+2, l+1.
func qReduce(acc *[qLanes]float32) float32 {
	var h [8]float32
	for l := 0; l < 8; l++ {
		h[l] = acc[l] + acc[l+8]
	}
	for l := 0; l < 4; l++ {
		h[l] = h[l] + h[l+4]
	}
	for l := 0; l < 2; l++ {
		h[l] = h[l] + h[l+2]
	}
	return h[0] + h[1]
}

// qmatmulB32Go is the portable famB32 kernel.
func qmatmulB32Go(sp *qSpec, rows int, act *qAct, w []byte, rb, ncol int, c []float32, ldc int) {
	facc := make([][qLanes]float32, rows)
	for j := 0; j < ncol; j++ {
		row := w[j*rb : (j+1)*rb]
		clear(facc)
		for g := 0; g < act.groups; g++ {
			b32Group(sp, act, row, g, 0, facc)
		}
		for r := 0; r < rows; r++ {
			c[r*ldc+j] = qReduce(&facc[r])
		}
	}
}

// b32Group adds group g of weight row `row` to the lanes facc of the
// activation rows r0, r0+1, ....
func b32Group(sp *qSpec, act *qAct, row []byte, g, r0 int, facc [][qLanes]float32) {
	ts := len(row) / act.nb // bytes per block
	lpb := qLanes / sp.bpg  // lanes per block
	var wq [32]uint8
	var dw, mw [4]float32
	var u [2][64]uint8
	nblk := min(sp.bpg, act.nb-g*sp.bpg)
	for bi := 0; bi < nblk; bi++ {
		b := g*sp.bpg + bi
		dw[bi], mw[bi] = sp.decode32(row[b*ts:(b+1)*ts], &wq)
		if sp.halves == 1 {
			copy(u[0][32*bi:], wq[:])
		} else {
			copy(u[0][16*bi:16*bi+16], wq[:16])
			copy(u[1][16*bi:16*bi+16], wq[16:])
		}
	}
	for i := range facc {
		r := r0 + i
		aq := act.q[r*act.qStride+g*64*sp.halves:]
		lan := act.lan[r*act.lStride+g*qLanes:]
		ad := act.d[r*act.dStride+g*qLanes:]
		fa := &facc[i]
		for l := 0; l < nblk*lpb; l++ {
			bi := l / lpb
			var is int32
			if !sp.hasMin {
				is = lan[l]
			}
			for h := 0; h < sp.halves; h++ {
				for t := 0; t < 4; t++ {
					is += int32(u[h][4*l+t]) * int32(aq[64*h+4*l+t])
				}
			}
			s := dw[bi] * ad[l]
			fa[l] += float32(s * float32(is))
			if sp.hasMin {
				s2 := mw[bi] * ad[l]
				fa[l] += float32(s2 * float32(lan[l]))
			}
		}
	}
}

// qmatmulKGo is the portable famK kernel.
func qmatmulKGo(sp *qSpec, rows int, act *qAct, w []byte, rb, ncol int, c []float32, ldc int) {
	ts := rb / act.groups
	facc := make([][qLanes]float32, rows)
	var wq [256]uint8
	var sc, mn [16]int32
	var lsc [4][qLanes]int32
	for j := 0; j < ncol; j++ {
		row := w[j*rb : (j+1)*rb]
		clear(facc)
		for g := 0; g < act.groups; g++ {
			d, dmin := sp.decodeK(row[g*ts:(g+1)*ts], &wq, &sc, &mn)
			for u := 0; u < 4; u++ {
				for l := 0; l < qLanes; l++ {
					lsc[u][l] = sc[int(sp.perm[64*u+4*l])/sp.sub]
				}
			}
			for r := 0; r < rows; r++ {
				aq := act.q[r*act.qStride+256*g:]
				bs := act.lan[r*act.lStride+g*qLanes:]
				ad := act.d[r*act.dStride+g]
				fa := &facc[r]
				for l := 0; l < qLanes; l++ {
					var is int32
					for u := 0; u < 4; u++ {
						var part int32
						for t := 0; t < 4; t++ {
							p := 64*u + 4*l + t
							part += int32(wq[p]) * int32(aq[p])
						}
						is += lsc[u][l] * part
					}
					var im int32
					if sp.hasMin {
						im = mn[l] * bs[l]
					} else {
						im = sc[l] * bs[l]
						is -= sp.off * im
					}
					s := d * ad
					fa[l] += float32(s * float32(is))
					if sp.hasMin {
						s2 := dmin * ad
						fa[l] -= float32(s2 * float32(im))
					}
				}
			}
		}
		for r := 0; r < rows; r++ {
			c[r*ldc+j] = qReduce(&facc[r])
		}
	}
}

// qmatmulFloatGo is the float-weight kernel: lane l of an output sums
// a[i]·w[i] for i ≡ l (mod 16), multiply then add.
func qmatmulFloatGo(t QType, rows, k int, a []float32, lda int, w []byte, rb, ncol int, c []float32, ldc int) {
	wf := make([]float32, k)
	for j := 0; j < ncol; j++ {
		floatRow(t, w[j*rb:(j+1)*rb], wf)
		for r := 0; r < rows; r++ {
			x := a[r*lda : r*lda+k]
			var acc [qLanes]float32
			for i, v := range x {
				acc[i%qLanes] += float32(v * wf[i])
			}
			c[r*ldc+j] = qReduce(&acc)
		}
	}
}

// floatRow widens len(dst) float weights of type t (F32, F16, BF16) from
// src to dst.
func floatRow(t QType, src []byte, dst []float32) {
	switch t {
	case QF32:
		for i := range dst {
			dst[i] = math.Float32frombits(le32(src[4*i:]))
		}
	case QF16:
		for i := range dst {
			dst[i] = qmHalf(le16(src[2*i:]))
		}
	case QBF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le16(src[2*i:])) << 16)
		}
	}
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// qmHalf converts an IEEE half-precision value to float32 (exactly).
func qmHalf(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0:
		// Zero or subnormal: man·2^-24, exact in float32.
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// qmE8M0Half is ggml's e8m0 scale halved: 2^(e-128).
func qmE8M0Half(e uint8) float32 {
	if e < 2 {
		return math.Float32frombits(0x00200000 << e)
	}
	return math.Float32frombits(uint32(e-1) << 23)
}

// qReadGo is the portable qReadBytes: the xor of b's bytes, 8 at a time.
func qReadGo(b []byte) uint64 {
	var x uint64
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x ^= uint64(le32(b[i:])) | uint64(le32(b[i+4:]))<<32
	}
	for ; i < len(b); i++ {
		x ^= uint64(b[i]) << (8 * (i % 8))
	}
	return x
}
