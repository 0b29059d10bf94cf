package compute

import (
	"fmt"
	"math"
	"unsafe"
)

// GemmBF16Mixed is Gemm with bf16 inputs: C = alpha·op(A)·op(B) + beta·C
// where every element of A and B is first rounded to bfloat16 (nearest,
// ties to even; float32 denormals become zero) and the products are accumulated in float32, two depths at
// a time, the way the AVX-512 BF16 dot-product instruction (VDPBF16PS) does
// it: for each output, acc starts at zero and for l = 0, 2, 4, … takes
// acc += a[l+1]·b[l+1], then acc += a[l]·b[l] (each rounded to float32,
// denormal inputs and results flushed to zero), an odd k padded with a zero
// pair; then C = alpha·acc (+ beta·C), blocked over depth as Gemm is. C,
// alpha and beta stay float32. It is the matmul of bf16 mixed-precision
// training: master weights and accumulation stay float32. Where the CPU
// lacks AVX512_BF16 a portable Go kernel gives the same bits (slowly).
// The result does not depend on the pool's thread count.
//
// Inconsistent shapes panic with CheckGemm's error before memory is touched.
func GemmBF16Mixed(p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if err := CheckGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc); err != nil {
		panic(err)
	}
	gemmMixed(defaultMixed, p, transA, transB, m, n, k, alpha, a, lda, nil, b, ldb, beta, c, ldc)
}

// ConvertBF16Mixed sets dst[i] to src[i] rounded to bfloat16 the way
// GemmBF16Mixed rounds its inputs (nearest, ties to even; zeros and float32
// denormals become a zero of the same sign; NaNs stay quiet NaNs), for
// i < len(src). A producer of activations that writes this copy while the
// row is still in cache spares GemmBF16MixedA the conversion.
func ConvertBF16Mixed(dst []BF16, src []float32) {
	dst = dst[:len(src)]
	n := len(src) &^ 1
	if n > 0 {
		defaultMixed.cvtRow(src[:n], unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(dst))), n/2))
	}
	if n < len(src) {
		dst[n] = BF16(bf16DAZBits(src[n]))
	}
}

// CheckGemmBF16MixedA reports whether GemmBF16MixedA's arguments are
// consistent: besides CheckGemm's shapes, A's row stride and the depth k
// must be even (A's rows are read as bf16 pairs in place).
func CheckGemmBF16MixedA(transB bool, m, n, k int, a []BF16, lda int, b []float32, ldb int, c []float32, ldc int) error {
	if k%2 != 0 || lda%2 != 0 {
		return fmt.Errorf("gemm: bf16 A needs an even depth and row stride, got k=%d lda=%d", k, lda)
	}
	return checkGemmLens(false, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
}

// GemmBF16MixedA is GemmBF16Mixed for an untransposed A that is already
// rounded: a holds the m×k matrix (row stride lda) as ConvertBF16Mixed
// writes it, and the result is bit for bit GemmBF16Mixed's on the float32
// A it was converted from. k and lda must be even; inconsistent arguments
// panic with CheckGemmBF16MixedA's error before memory is touched.
func GemmBF16MixedA(p *Pool, transB bool, m, n, k int, alpha float32, a []BF16, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if err := CheckGemmBF16MixedA(transB, m, n, k, a, lda, b, ldb, c, ldc); err != nil {
		panic(err)
	}
	gemmMixed(defaultMixed, p, false, transB, m, n, k, alpha, nil, lda, a, b, ldb, beta, c, ldc)
}

// CheckGemmBF16MixedTA reports whether GemmBF16MixedTA's arguments are
// consistent: CheckGemm's shapes for a transposed A of k rows of m (row
// stride lda) held as bf16.
func CheckGemmBF16MixedTA(transB bool, m, n, k int, a []BF16, lda int, b []float32, ldb int, c []float32, ldc int) error {
	return checkGemmLens(true, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
}

// GemmBF16MixedTA is GemmBF16Mixed for op(A) = Aᵀ with A (k×m, row stride
// lda) already rounded, as ConvertBF16Mixed writes it: the weight-gradient
// products dW = dYᵀ·X whose dY has a bf16 copy. The A panels are built from
// the copy's words (half the bytes of the float32 A, nothing converted);
// the result is bit for bit GemmBF16Mixed's on the float32 A the copy was
// made from. Inconsistent arguments panic with CheckGemmBF16MixedTA's error
// before memory is touched.
func GemmBF16MixedTA(p *Pool, transB bool, m, n, k int, alpha float32, a []BF16, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if err := CheckGemmBF16MixedTA(transB, m, n, k, a, lda, b, ldb, c, ldc); err != nil {
		panic(err)
	}
	gemmMixed(defaultMixed, p, true, transB, m, n, k, alpha, nil, lda, a, b, ldb, beta, c, ldc)
}

// bf16Pairs reads a bf16 slice as pairs (a trailing odd element dropped):
// pair q is a[2q] in the low half and a[2q+1] in the high half.
func bf16Pairs(a []BF16) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(a))), len(a)/2)
}

// HasBF16Kernels reports whether GemmBF16Mixed runs on the AVX-512 BF16
// instructions here (false: the portable kernel, same results, slower).
func HasBF16Kernels() bool { return hasBF16Mixed }

// mixedMicro computes the mixedMR×mixedNR tile C = alpha·acc (+ C when
// add) over kp packed depth pairs (a: kp×mixedMR pairs, b: kp×mixedNR).
type mixedMicro func(kp int, a, b []uint32, c []float32, ldc int, alpha float32, add bool)

// The mixed-precision micro-kernel's tile and depth block (even).
const (
	mixedMR = 12
	mixedNR = 32
	mixedKC = 512
)

// dpbf16 is one lane of VDPBF16PS: acc + a.hi·b.hi, then + a.lo·b.lo,
// each an FMA rounded to nearest float32, denormal inputs and results
// flushed to zero. The products of two bf16 values are exact in float64,
// and float64 holds the sum with double rounding that is harmless for
// float32 operands (53 ≥ 2·24+2).
func dpbf16(acc float32, a, b uint32) float32 {
	acc = fmaFTZ(acc, bf16DAZ(a>>16), bf16DAZ(b>>16))
	return fmaFTZ(acc, bf16DAZ(a&0xffff), bf16DAZ(b&0xffff))
}

// bf16DAZ widens the bf16 bits h to float64, a denormal as zero.
func bf16DAZ(h uint32) float64 {
	f := math.Float32frombits(h << 16)
	if h&0x7f80 == 0 {
		f = 0
	}
	return float64(f)
}

// fmaFTZ returns float32(acc + x·y) with a denormal result flushed to zero
// (keeping its sign).
func fmaFTZ(acc float32, x, y float64) float32 {
	s := float32(float64(acc) + x*y)
	if b := math.Float32bits(s); b&0x7f800000 == 0 {
		return math.Float32frombits(b & 0x80000000)
	}
	return s
}

// microBF16Generic is the portable mixedMicro (sbgemmKernelAVX512's twin).
func microBF16Generic(kp int, a, b []uint32, c []float32, ldc int, alpha float32, add bool) {
	var acc [mixedMR * mixedNR]float32
	for p := 0; p < kp; p++ {
		ap := a[p*mixedMR : p*mixedMR+mixedMR]
		bp := b[p*mixedNR : p*mixedNR+mixedNR]
		for i, av := range ap {
			row := acc[i*mixedNR : i*mixedNR+mixedNR]
			for j, bv := range bp {
				row[j] = dpbf16(row[j], av, bv)
			}
		}
	}
	for i := 0; i < mixedMR; i++ {
		crow := c[i*ldc : i*ldc+mixedNR]
		for j, v := range acc[i*mixedNR : i*mixedNR+mixedNR] {
			v = float32(alpha * v)
			if add {
				v += crow[j]
			}
			crow[j] = v
		}
	}
}

// bf16Pair packs x (depth l) and y (depth l+1) as rounded bf16 halves.
func bf16Pair(x, y float32) uint32 { return bf16DAZBits(x) | bf16DAZBits(y)<<16 }

// bf16DAZBits is ToBF16 as the mixed product rounds its inputs (the
// conversion instruction's rule): zeros and denormals become a zero of the
// same sign, NaNs stay quiet NaNs, the rest round to nearest even.
func bf16DAZBits(x float32) uint32 {
	u := math.Float32bits(x)
	switch {
	case u&0x7f800000 == 0:
		return u >> 16 & 0x8000
	case u&0x7fffffff > 0x7f800000:
		return u>>16 | 0x40
	}
	return (u + 0x7fff + u>>16&1) >> 16
}

// mixedKernels is one implementation of the mixed GEMM's inner loops: the
// portable Go one or the AVX-512 BF16 one, which give the same bits.
type mixedKernels struct {
	// micro is the tile over packed A and B panels.
	micro mixedMicro
	// microRows is micro over a row-major pair copy of A: row i's pairs at
	// a[i*lda:], the mixedMR rows in place of a packed panel.
	microRows func(kp int, a []uint32, lda int, b []uint32, c []float32, ldc int, alpha float32, add bool)
	// cvtRow sets dst[q] = bf16Pair(src[2q], src[2q+1]) for q < len(src)/2
	// (len(src) even).
	cvtRow func(src []float32, dst []uint32)
	// cvtPairs sets dst[j] = bf16Pair(x[j], y[j]) for j < len(x).
	cvtPairs func(x, y []float32, dst []uint32)
	// transpose sets dst[q*mixedNR+j] = src[j*kp+q] for j < mixedNR and
	// q < kp: mixedNR rows of kp pairs into a packed B panel.
	transpose func(kp int, src, dst []uint32)
	// packATrans, where not nil, packs np adjacent whole mixedMR-row
	// panels of a transposed A: dst[p*pstride+q*mixedMR+i] =
	// bf16Pair(x[2q*ld+p*mixedMR+i], x[(2q+1)*ld+p*mixedMR+i]) for p < np,
	// q < kp, i < mixedMR; packB likewise whole mixedNR-column panels of an
	// untransposed B.
	packATrans, packB func(kp, np int, x []float32, ld int, dst []uint32, pstride int)
	// packATrans16, where not nil, is packATrans from a bf16 copy of A:
	// dst[p*pstride+q*mixedMR+i] = x[2q*ld+p*mixedMR+i] |
	// x[(2q+1)*ld+p*mixedMR+i]<<16.
	packATrans16 func(kp, np int, x []BF16, ld int, dst []uint32, pstride int)
}

// genericMixed is the portable mixedKernels.
var genericMixed = mixedKernels{micro: microBF16Generic, microRows: microRowsBF16Generic, cvtRow: cvtRowGeneric, cvtPairs: cvtPairsGeneric,
	transpose: transposePairsGeneric}

// transposePairsGeneric is the portable transpose.
func transposePairsGeneric(kp int, src, dst []uint32) {
	for j := 0; j < mixedNR; j++ {
		for q, v := range src[j*kp : (j+1)*kp] {
			dst[q*mixedNR+j] = v
		}
	}
}

// microRowsBF16Generic packs the rows into a panel and runs
// microBF16Generic.
func microRowsBF16Generic(kp int, a []uint32, lda int, b []uint32, c []float32, ldc int, alpha float32, add bool) {
	panel := make([]uint32, kp*mixedMR)
	panelFromRows(a, lda, kp, mixedMR, panel)
	microBF16Generic(kp, panel, b, c, ldc, alpha, add)
}

// panelFromRows copies rows (<= mixedMR) rows of kp pairs (stride lda) into
// a packed panel dst[q*MR+i], zero-padding the missing rows.
func panelFromRows(a []uint32, lda, kp, rows int, dst []uint32) {
	dst = dst[:kp*mixedMR]
	if rows < mixedMR {
		clear(dst)
	}
	for i := 0; i < rows; i++ {
		for q, v := range a[i*lda : i*lda+kp] {
			dst[q*mixedMR+i] = v
		}
	}
}

func cvtRowGeneric(src []float32, dst []uint32) {
	for q := range len(src) / 2 {
		dst[q] = bf16Pair(src[2*q], src[2*q+1])
	}
}

func cvtPairsGeneric(x, y []float32, dst []uint32) {
	y = y[:len(x)]
	dst = dst[:len(x)]
	for j := range x {
		dst[j] = bf16Pair(x[j], y[j])
	}
}

// convertRows writes the pairs of rows [i0, i0+rows) × depth [l0, l0+kc)
// of an untransposed A into dst, row i at dst[i*kp:] (an odd kc's last
// pair has a zero high half).
func convertRows(ks *mixedKernels, a []float32, lda int, i0, rows, l0, kc int, dst []uint32) {
	kp := (kc + 1) / 2
	for i := 0; i < rows; i++ {
		src := a[(i0+i)*lda+l0 : (i0+i)*lda+l0+kc]
		d := dst[i*kp : (i+1)*kp]
		ks.cvtRow(src[:kc&^1], d)
		if kc&1 == 1 {
			d[kp-1] = bf16DAZBits(src[kc-1])
		}
	}
}

// packATransMixed packs rows [i0, i0+rows) × depth [l0, l0+kc) of op(A) =
// Aᵀ (A stored k×m) into mixedMR-row panels of depth pairs:
// dst[panel*kp*MR + q*MR + i] holds depths l0+2q and l0+2q+1 of row i
// (zero past kc and past rows). a16, when not nil, is A's bf16 copy (same
// row stride), read in place of a: its words are paired, not converted.
func packATransMixed(ks *mixedKernels, a []float32, a16 []BF16, lda int, i0, rows, l0, kc int, dst []uint32) {
	kp := (kc + 1) / 2
	// bits returns the rounded bf16 bits of A's element at off.
	bits := func(off int) uint32 {
		if a16 != nil {
			return uint32(a16[off])
		}
		return bf16DAZBits(a[off])
	}
	if fast := ks.packATrans != nil && (a16 == nil || ks.packATrans16 != nil); fast && rows >= mixedMR {
		// Whole panels, four depth pairs (8 rows of the stored A) across all
		// of them at a time, so that the rows read stay in cache (measured
		// at 1024×512: 1 pair 0.41 ns per element, 4 pairs 0.10, 16 pairs
		// 0.22; whole panels one by one 0.30); an odd kc's last depth alone.
		const step = 4
		full := rows / mixedMR
		for q0 := 0; q0 < kc/2; q0 += step {
			if off := (l0+2*q0)*lda + i0; a16 != nil {
				ks.packATrans16(min(step, kc/2-q0), full, a16[off:], lda, dst[q0*mixedMR:], kp*mixedMR)
			} else {
				ks.packATrans(min(step, kc/2-q0), full, a[off:], lda, dst[q0*mixedMR:], kp*mixedMR)
			}
		}
		if kc&1 == 1 {
			for i := 0; i < full*mixedMR; i++ {
				dst[(i/mixedMR)*kp*mixedMR+(kp-1)*mixedMR+i%mixedMR] = bits((l0+kc-1)*lda + i0 + i)
			}
		}
		if full*mixedMR == rows {
			return
		}
		i0, rows, dst = i0+full*mixedMR, rows-full*mixedMR, dst[full*kp*mixedMR:]
	}
	// Panel by panel (the ragged last one, or all of them on the portable
	// path), each depth pair of its rows converted straight into place.
	np := (rows + mixedMR - 1) / mixedMR
	for pi := 0; pi < np; pi++ {
		col, r := i0+pi*mixedMR, min(mixedMR, rows-pi*mixedMR)
		for q := 0; q < kp; q++ {
			l := l0 + 2*q
			d := dst[pi*kp*mixedMR+q*mixedMR : pi*kp*mixedMR+(q+1)*mixedMR]
			switch {
			case a16 != nil:
				for i := range r {
					d[i] = uint32(a16[l*lda+col+i])
					if 2*q+1 < kc {
						d[i] |= uint32(a16[(l+1)*lda+col+i]) << 16
					}
				}
			case 2*q+1 < kc:
				ks.cvtPairs(a[l*lda+col:l*lda+col+r], a[(l+1)*lda+col:(l+1)*lda+col+r], d[:r])
			default:
				for i := range r {
					d[i] = bits(l*lda + col + i)
				}
			}
			clear(d[r:])
		}
	}
}

// packBMixed packs columns [j0, j0+cols) (cols <= mixedNR) × depth [l0,
// l0+kc) of op(B) into dst[q*NR + j] = depths l0+2q, l0+2q+1 of column j
// (zero past kc and past cols). A transposed B needs scratch of
// mixedNR×(kc+1)/2.
func packBMixed(ks *mixedKernels, transB bool, b []float32, ldb int, j0, cols, l0, kc int, dst, scratch []uint32) {
	kp := (kc + 1) / 2
	dst = dst[:kp*mixedNR]
	if transB {
		// The columns are rows of the stored B: convert them to rows of
		// pairs (zero rows past cols), then transpose into the panel.
		tmp := scratch[:kp*mixedNR]
		convertRows(ks, b, ldb, j0, cols, l0, kc, tmp)
		clear(tmp[cols*kp:])
		ks.transpose(kp, tmp, dst)
		return
	}
	if cols == mixedNR && ks.packB != nil {
		ks.packB(kc/2, 1, b[l0*ldb+j0:], ldb, dst, 0)
		if kc&1 == 1 {
			for j, v := range b[(l0+kc-1)*ldb+j0 : (l0+kc-1)*ldb+j0+mixedNR] {
				dst[(kp-1)*mixedNR+j] = bf16DAZBits(v)
			}
		}
		return
	}
	if cols < mixedNR {
		clear(dst)
	}
	for q := 0; q < kp; q++ {
		l := l0 + 2*q
		x := b[l*ldb+j0 : l*ldb+j0+cols]
		d := dst[q*mixedNR : q*mixedNR+cols]
		if 2*q+1 < kc {
			ks.cvtPairs(x, b[(l+1)*ldb+j0:(l+1)*ldb+j0+cols], d)
		} else {
			for j, v := range x {
				d[j] = bf16DAZBits(v)
			}
		}
	}
}

// mixedKCFor returns the depth block for depth k: equal even blocks of at
// most mixedKC.
func mixedKCFor(k int) int {
	blocks := (k + mixedKC - 1) / mixedKC
	kc := (k + blocks - 1) / blocks
	return kc + kc&1
}

// u32s reads float32 scratch as uint32 (nil stays nil).
func u32s(x []float32) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}

// gemmMixed is GemmBF16Mixed on a given micro-kernel, after argument checks:
// blocks of gemmNC columns and mixedKCFor(k) depth, B packed once per block
// (in parallel), then per gemmMC rows A packed and the tiles shared out as
// tasks. Every tile is computed the same way whatever the thread count.
//
// a16, when not nil, is A's bf16 copy (row stride lda) in place of a: an
// untransposed one (k and lda even) is read as pairs where its rows are, a
// transposed one is packed from it.
func gemmMixed(ks *mixedKernels, p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, a16 []BF16, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(p, m, n, beta, c, ldc)
		return
	}
	if 2*float64(m)*float64(n)*float64(k) < gemmSerialFlops {
		p = p.serial()
	}
	if beta != 0 && beta != 1 {
		scaleC(p, m, n, beta, c, ldc)
	}
	const mr, nr = mixedMR, mixedNR
	kcMax := mixedKCFor(k)
	kpMax := kcMax / 2
	ncMax, mcMax := min(n, gemmNC), min(m, gemmMC)
	var pairs16, at16 []BF16
	if transA {
		at16 = a16
	} else {
		pairs16 = a16
	}
	threads := p.Threads()
	// The scratch, all in one pool buffer, each part at a 64-byte offset:
	// the packed B and A panels; an untransposed float32 A is converted to
	// rows of pairs that the micro-kernel reads in place (its ragged last
	// panel is packed from them); a transposed B is packed through per-task
	// scratch (at most min(panels, 8·threads) tasks, see the chunking
	// below); a one-thread product computes its edge tiles in one tile.
	sizes := [5]int{(ncMax + nr - 1) / nr * kpMax * nr, (mcMax + mr - 1) / mr * kpMax * mr}
	if !transA && a16 == nil {
		sizes[2] = mcMax * kpMax
	}
	if transB {
		sizes[3] = min((ncMax+nr-1)/nr, 8*threads) * kpMax * nr
	}
	if threads == 1 && (m%mr != 0 || n%nr != 0) {
		sizes[4] = mr * nr
	}
	total := 0
	for _, z := range sizes {
		total += (z + 15) &^ 15
	}
	buf := p.getBuf(total)
	defer p.putBuf(buf)
	var parts [5][]float32
	for i, off := 0, 0; i < len(sizes); i++ {
		if sizes[i] > 0 {
			parts[i] = (*buf)[off : off+sizes[i]]
		}
		off += (sizes[i] + 15) &^ 15
	}
	// The block loops fill in one mixedCall whose methods are the tasks
	// (no closures per block; see run for where it lives).
	s := &mixedCall{ks: ks, transA: transA, transB: transB, m: m, n: n, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
		c: c, ldc: ldc, bpack: u32s(parts[0]), apack: u32s(parts[1]), arows: u32s(parts[2]), scratch: u32s(parts[3]), edge: parts[4],
		kpMax: kpMax, a16: bf16Pairs(pairs16), at16: at16}
	for s.jc = 0; s.jc < n; s.jc += gemmNC {
		s.nc = min(gemmNC, n-s.jc)
		s.npb = (s.nc + nr - 1) / nr
		for s.pc = 0; s.pc < k; s.pc += kcMax {
			s.kc = min(kcMax, k-s.pc)
			s.kp = (s.kc + 1) / 2
			s.add = beta != 0 || s.pc > 0
			s.chunk = max(1, s.npb/(4*threads))
			s.run(p, (s.npb+s.chunk-1)/s.chunk, mixedPackB)
			for s.ic = 0; s.ic < m; s.ic += gemmMC {
				s.mc = min(gemmMC, m-s.ic)
				s.npa = (s.mc + mr - 1) / mr
				s.achunk = max(1, s.npa/(4*threads))
				if pairs16 == nil {
					s.run(p, (s.npa+s.achunk-1)/s.achunk, mixedPackA)
				} else if s.mc%mr != 0 {
					// Only the ragged last panel to pack: no round over the pool.
					s.packATask((s.npa - 1) / s.achunk)
				}
				var colTasks int
				s.rowsPer, s.colsPer, s.rowTasks, colTasks = tileTasks(s.npa, s.npb, mr, nr, threads)
				s.run(p, s.rowTasks*colTasks, mixedTiles)
			}
		}
	}
}

// mixedCall is one gemmMixed product: its operands and scratch, and the
// block (jc, pc, ic) its loops are at, which the task methods work on.
type mixedCall struct {
	ks                  *mixedKernels
	transA, transB      bool
	m, n                int
	alpha               float32
	a, b, c             []float32
	lda, ldb, ldc       int
	bpack, apack, arows []uint32
	scratch             []uint32
	a16                 []uint32 // an untransposed A as bf16 pairs (row stride lda/2), or nil
	at16                []BF16   // a transposed A's bf16 copy (row stride lda), or nil
	kpMax               int
	jc, nc, npb         int // column block
	pc, kc, kp          int // depth block
	add                 bool
	chunk               int // B panels per packing task
	ic, mc, npa, achunk int // row block, its A panels, A panels per packing task
	rowsPer, colsPer    int // tile task shape
	rowTasks            int
	// edge, when not nil, is where every edge tile is computed: the tasks
	// of a one-thread pool run one after another, so they share one tile of
	// pool scratch (no allocation per product).
	edge []float32
	// shared is the heap copy of the product that a pool's workers read.
	shared *mixedCall
}

// mixedTask names one of mixedCall's task methods.
type mixedTask int

const (
	mixedPackB mixedTask = iota // packBTask
	mixedPackA                  // packATask
	mixedTiles                  // tileTask
)

// do runs task t of kind.
func (s *mixedCall) do(kind mixedTask, t int) {
	switch kind {
	case mixedPackB:
		s.packBTask(t)
	case mixedPackA:
		s.packATask(t)
	default:
		s.tileTask(t)
	}
}

// run does tasks tasks of kind over p: in order on the caller for a
// one-thread pool, which allocates nothing (the mixedCall of a one-thread
// product stays on its caller's stack); otherwise the pool's workers get a
// copy of s on the heap (s.shared, allocated once per product).
func (s *mixedCall) run(p *Pool, tasks int, kind mixedTask) {
	if p.Threads() == 1 {
		for t := 0; t < tasks; t++ {
			s.do(kind, t)
		}
		return
	}
	if s.shared == nil {
		s.shared = new(mixedCall)
	}
	*s.shared = *s
	sh := s.shared
	p.Run(tasks, func(t int) { sh.do(kind, t) })
}

// packBTask packs task t's B panels of the block.
func (s *mixedCall) packBTask(t int) {
	const nr = mixedNR
	var sc []uint32
	if s.transB {
		sc = s.scratch[t*s.kpMax*nr : (t+1)*s.kpMax*nr]
	}
	for jp := t * s.chunk; jp < min(s.npb, (t+1)*s.chunk); jp++ {
		packBMixed(s.ks, s.transB, s.b, s.ldb, s.jc+jp*nr, min(nr, s.nc-jp*nr), s.pc, s.kc, s.bpack[jp*s.kp*nr:], sc)
	}
}

// packATask converts (untransposed) or packs (transposed) task t's rows of
// A for the block.
func (s *mixedCall) packATask(t int) {
	const mr = mixedMR
	lo := t * s.achunk * mr
	hi := min(s.mc, (t+1)*s.achunk*mr)
	kp := s.kp
	if s.transA {
		packATransMixed(s.ks, s.a, s.at16, s.lda, s.ic+lo, hi-lo, s.pc, s.kc, s.apack[lo*kp:])
		return
	}
	if s.a16 != nil {
		// Already converted: only the ragged last panel is packed.
		if hi == s.mc && s.mc%mr != 0 {
			last := (s.npa - 1) * mr
			ld := s.lda / 2
			panelFromRows(s.a16[(s.ic+last)*ld+s.pc/2:], ld, kp, s.mc-last, s.apack[last*kp:])
		}
		return
	}
	convertRows(s.ks, s.a, s.lda, s.ic+lo, hi-lo, s.pc, s.kc, s.arows[lo*kp:])
	if hi == s.mc && s.mc%mr != 0 {
		last := (s.npa - 1) * mr
		panelFromRows(s.arows[last*kp:], kp, kp, s.mc-last, s.apack[last*kp:])
	}
}

// tileTask computes task t's tiles of C for the block.
func (s *mixedCall) tileTask(t int) {
	const mr, nr = mixedMR, mixedNR
	ct, rt := t/s.rowTasks, t%s.rowTasks
	tmp := s.edge // an edge tile (when nil, allocated on first use)
	kp, ks, alpha := s.kp, s.ks, s.alpha
	for ip := rt * s.rowsPer; ip < min(s.npa, (rt+1)*s.rowsPer); ip++ {
		ap := s.apack[ip*kp*mr : (ip+1)*kp*mr]
		i0 := s.ic + ip*mr
		rows := min(mr, s.m-i0)
		var ar []uint32 // A's pair rows in place (full panel)
		lda := kp
		switch {
		case s.transA || rows < mr:
		case s.a16 != nil:
			lda = s.lda / 2
			ar = s.a16[i0*lda+s.pc/2 : (i0+mr-1)*lda+s.pc/2+kp]
		default:
			ar = s.arows[ip*mr*kp : (ip+1)*mr*kp]
		}
		micro := func(c []float32, ldc int, add bool, bp []uint32) {
			if ar != nil {
				ks.microRows(kp, ar, lda, bp, c, ldc, alpha, add)
			} else {
				ks.micro(kp, ap, bp, c, ldc, alpha, add)
			}
		}
		sweepPanels(s.bpack, kp*nr, ct*s.colsPer, min(s.npb, (ct+1)*s.colsPer), s.jc, s.n, i0, rows, mr, nr, s.c, s.ldc, s.add, &tmp, micro)
	}
}
