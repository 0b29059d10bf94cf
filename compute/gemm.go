package compute

import (
	"fmt"
)

// Blocking parameters of the packed GEMM (in elements). An mr×kc A
// micro-panel stays in L1 and a task's B columns (kc × gemmTaskCols, 768 KB
// at most) in the core's L2 while the task sweeps its rows.
const (
	gemmKC       = 512  // largest depth of one packed block
	gemmNC       = 4096 // columns of B packed at once
	gemmMC       = 3072 // rows of A packed at once
	gemmTaskCols = 384  // columns of C one task covers (at most)
	gemmTaskRows = 96   // rows of C one task covers (at most)
	// gemmDirectTA reads full panels of a transposed A in place (no
	// packing) where the kernel path has a strided-A micro-kernel.
	gemmDirectTA = true
	// smallGemm is the m·n·k below which the plain loop beats packing.
	smallGemm = 8 * 8 * 8
	// gemmSerialFlops is the work below which a product runs on the
	// calling goroutine alone (a few microseconds of one core).
	gemmSerialFlops = 1 << 20
	// dotMaxM is the largest m for which op(B)=Bᵀ uses the dot kernels
	// (no packing; B streamed once per 8 rows of A).
	dotMaxM = 16
	// dotMinK is the smallest depth for which the dot kernels pay: below
	// it the horizontal sums cost as much as the products, and packing a
	// short B is cheap.
	dotMinK = 256
	// swapMaxN is the largest n for which C = op(A)·op(B) is computed as
	// Cᵀ = op(B)ᵀ·op(A)ᵀ with the small-M kernels (a 12×32 tile would
	// mostly compute padding); with a transposed A, up to rowAxpyMaxM (the
	// swapped product streams A in place instead of packing all of it).
	swapMaxN = 8
	// rowAxpyMaxM is the largest m for which an untransposed fp32 B is
	// streamed row by row (gemmRowAxpy) instead of packed.
	rowAxpyMaxM = 32
)

// CheckGemm returns an error naming the problem if the arguments of a Gemm
// call with these shapes are inconsistent (negative sizes, leading
// dimensions too small, slices too short), and nil otherwise.
func CheckGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) error {
	return checkGemmLens(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
}

// checkGemmLens is CheckGemm on the lengths of A, B and C (whatever their
// element type).
func checkGemmLens(transA, transB bool, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("gemm: negative size m=%d n=%d k=%d", m, n, k)
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	if err := checkMatrix("A", ar, ac, lenA, lda); err != nil {
		return err
	}
	if err := checkMatrix("B", br, bc, lenB, ldb); err != nil {
		return err
	}
	return checkMatrix("C", m, n, lenC, ldc)
}

// checkMatrix checks that a rows×cols row-major matrix with stride ld fits
// in a slice of length n.
func checkMatrix(name string, rows, cols, n, ld int) error {
	if ld < max(cols, 1) {
		return fmt.Errorf("gemm: %s is %d×%d but its row stride is %d", name, rows, cols, ld)
	}
	if rows == 0 || cols == 0 {
		return nil
	}
	if need := (rows-1)*ld + cols; n < need {
		return fmt.Errorf("gemm: %s (%d×%d, stride %d) needs %d elements, slice has %d", name, rows, cols, ld, need, n)
	}
	return nil
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C, where op(A) is m×k and op(B)
// is k×n. All matrices are row-major with row strides lda, ldb and ldc; op(X)
// is X or Xᵀ as transA/transB say (A is k×m when transA, B is n×k when
// transB). beta == 0 overwrites C (NaNs in C are not propagated); alpha == 0
// or k == 0 only scales C by beta. A nil pool runs serially.
//
// Inconsistent shapes are a programming error: Gemm panics with CheckGemm's
// error (as an out-of-range index would), before touching memory. Check
// untrusted shapes with CheckGemm first.
func Gemm(p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if err := CheckGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc); err != nil {
		panic(err)
	}
	gemm(defaultKernels, p, transA, transB, m, n, k, alpha, a, lda, bmat{f32: b, ld: ldb, trans: transB}, beta, c, ldc)
}

// bmat is the B operand: float32 or bf16 values, row stride ld, possibly
// transposed (then it is stored n×k).
type bmat struct {
	f32   []float32
	bf    []BF16
	ld    int
	trans bool
}

// at returns op(B)[l][j].
func (b *bmat) at(l, j int) float32 {
	idx := l*b.ld + j
	if b.trans {
		idx = j*b.ld + l
	}
	if b.bf != nil {
		return b.bf[idx].Float32()
	}
	return b.f32[idx]
}

// scaleC does C = beta·C over the m×n matrix (beta == 0 writes zeros).
// One task's worth runs on the caller without a closure: attention calls
// this for every head of every row, where an allocation per call cost more
// than the scaling.
func scaleC(p *Pool, m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	rows := max(1, 65536/max(n, 1))
	tasks := (m + rows - 1) / rows
	if tasks == 1 {
		scaleRows(0, m, n, beta, c, ldc)
		return
	}
	p.Run(tasks, func(t int) {
		scaleRows(t*rows, min(m, (t+1)*rows), n, beta, c, ldc)
	})
}

// scaleRows does rows [i0, i1) of scaleC.
func scaleRows(i0, i1, n int, beta float32, c []float32, ldc int) {
	for i := i0; i < i1; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// gemmSmall is the plain triple loop for tiny products.
func gemmSmall(transA bool, m, n, k int, alpha float32, a []float32, lda int, b bmat, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for l := 0; l < k; l++ {
				var av float32
				if transA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				s += av * b.at(l, j)
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}

// useDot says whether a small-m product with a transposed B goes to the dot
// kernels: for a deep enough k (the horizontal sums are amortised), for a
// GEMV with k >= 64, and for tiny products (< 16 KFLOP), where it is cheap
// either way and keeps the rounding of earlier releases (tiny models' tests
// compare routing decisions bit for bit).
func useDot(m, n, k int) bool {
	return k >= dotMinK || m == 1 && k >= 64 || 2*m*n*k < 1<<14
}

// gemm is Gemm on a given kernel path, after argument checks.
func gemm(ks *kernels, p *Pool, transA bool, transB bool, m, n, k int, alpha float32, a []float32, lda int, b bmat, beta float32, c []float32, ldc int) {
	_ = transB // carried by b.trans
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(p, m, n, beta, c, ldc)
		return
	}
	if float64(m)*float64(n)*float64(k) <= smallGemm {
		gemmSmall(transA, m, n, k, alpha, a, lda, b, beta, c, ldc)
		return
	}
	if 2*float64(m)*float64(n)*float64(k) < gemmSerialFlops {
		p = p.serial() // waking workers would cost more than the product
	}
	if (n <= swapMaxN || transA && n <= rowAxpyMaxM) && m > max(dotMaxM, rowAxpyMaxM) && b.bf == nil && (ks.dotNB(1) > 0 || ks.rowAxpy != nil) {
		gemmSwapped(ks, p, transA, m, n, k, alpha, a, lda, b, beta, c, ldc)
		return
	}
	if transA && m <= max(dotMaxM, rowAxpyMaxM) && ((b.trans && useDot(m, n, k) && ks.dotNB(1) > 0) || (!b.trans && b.bf == nil && ks.rowAxpy != nil)) {
		// Few rows of a transposed A: copy op(A) out (m·k floats, less
		// than B) so the streaming small-M kernels apply.
		buf := p.getBuf(m * k)
		defer p.putBuf(buf)
		at := (*buf)[:m*k]
		for l := 0; l < k; l++ {
			for i, v := range a[l*lda : l*lda+m] {
				at[i*k+l] = v
			}
		}
		a, lda, transA = at, k, false
	}
	if b.trans && !transA && m <= dotMaxM && useDot(m, n, k) && ks.dotNB(1) > 0 {
		gemmDot(ks, p, m, n, k, alpha, a, lda, b, beta, c, ldc)
		return
	}
	if !b.trans && b.bf == nil && !transA && m <= rowAxpyMaxM && ks.rowAxpy != nil {
		gemmRowAxpy(ks, p, m, n, k, alpha, a, lda, b.f32, b.ld, beta, c, ldc)
		return
	}
	gemmBlocked(ks, p, transA, m, n, k, alpha, a, lda, b, beta, c, ldc)
}

// packA packs rows [i0, i0+rows) × depth [l0, l0+kc) of op(A) into mr-row
// panels: dst[panel*kc*mr + l*mr + i], zero-padding the last panel.
func packA(ks *kernels, transA bool, a []float32, lda int, i0, rows, l0, kc int, dst []float32) {
	mr := ks.mr
	if transA {
		// Row by row of the stored A (k×m) across all the panels, so each
		// row is read as one contiguous run.
		np := (rows + mr - 1) / mr
		full := rows / mr
		for l := 0; l < kc; l++ {
			src := a[(l0+l)*lda+i0 : (l0+l)*lda+i0+rows]
			copyPanels(mr, full, src, dst[l*mr:], kc*mr)
			for pi := full; pi < np; pi++ {
				d := dst[pi*kc*mr+l*mr : pi*kc*mr+l*mr+mr]
				r := copy(d, src[pi*mr:])
				clear(d[r:])
			}
		}
		return
	}
	for pi := 0; pi*mr < rows; pi++ {
		pd := dst[pi*kc*mr : (pi+1)*kc*mr]
		r := min(mr, rows-pi*mr)
		base := i0 + pi*mr
		for i := 0; i < r; i++ {
			src := a[(base+i)*lda+l0 : (base+i)*lda+l0+kc]
			for l, v := range src {
				pd[l*mr+i] = v
			}
		}
		if r < mr {
			for l := 0; l < kc; l++ {
				clear(pd[l*mr+r : l*mr+mr])
			}
		}
	}
}

// packBPanel packs columns [j0, j0+cols) (cols <= nr) × depth [l0, l0+kc)
// of op(B) into dst[l*nr + j], zero-padding to nr columns.
func packBPanel(ks *kernels, b *bmat, j0, cols, l0, kc int, dst []float32) {
	nr := ks.nr
	dst = dst[:kc*nr]
	if cols < nr {
		clear(dst)
	}
	switch {
	case !b.trans && b.bf == nil:
		for l := 0; l < kc; l++ {
			copy(dst[l*nr:l*nr+cols], b.f32[(l0+l)*b.ld+j0:])
		}
	case !b.trans:
		for l := 0; l < kc; l++ {
			src := b.bf[(l0+l)*b.ld+j0 : (l0+l)*b.ld+j0+cols]
			d := dst[l*nr : l*nr+cols]
			for j, v := range src {
				d[j] = v.Float32()
			}
		}
	case b.bf == nil:
		if cols == nr && ks.packBTrans != nil && ks.packBTrans(kc, b.f32[j0*b.ld+l0:(j0+nr-1)*b.ld+l0+kc], b.ld, dst) {
			return
		}
		for j := 0; j < cols; j++ {
			src := b.f32[(j0+j)*b.ld+l0 : (j0+j)*b.ld+l0+kc]
			for l, v := range src {
				dst[l*nr+j] = v
			}
		}
	default:
		if cols == nr && ks.packBTransBF16 != nil && ks.packBTransBF16(kc, b.bf[j0*b.ld+l0:(j0+nr-1)*b.ld+l0+kc], b.ld, dst) {
			return
		}
		for j := 0; j < cols; j++ {
			src := b.bf[(j0+j)*b.ld+l0 : (j0+j)*b.ld+l0+kc]
			for l, v := range src {
				dst[l*nr+j] = v.Float32()
			}
		}
	}
}

// gemmKCFor returns the depth block for depth k: equal blocks of at most
// gemmKC (1024 → 2×512, 1100 → 3×367 rather than 512+512+76).
func gemmKCFor(k int) int {
	kblocks := (k + gemmKC - 1) / gemmKC
	return (k + kblocks - 1) / kblocks
}

// gemmBlocked is the BLIS-style packed GEMM: for each block of gemmNC
// columns and gemmKC depth, B is packed once (in parallel), then for each
// block of gemmMC rows A is packed (in parallel) and the tiles are shared
// out as tasks of up to gemmTaskRows × gemmTaskCols.
func gemmBlocked(ks *kernels, p *Pool, transA bool, m, n, k int, alpha float32, a []float32, lda int, b bmat, beta float32, c []float32, ldc int) {
	mr, nr := ks.mr, ks.nr
	if beta != 0 && beta != 1 {
		scaleC(p, m, n, beta, c, ldc)
	}
	kcMax := gemmKCFor(k)
	ncMax := min(n, gemmNC)
	mcMax := min(m, gemmMC)
	bPanels := (ncMax + nr - 1) / nr
	aPanels := (mcMax + mr - 1) / mr
	bbuf := p.getBuf(bPanels * kcMax * nr)
	defer p.putBuf(bbuf)
	bpack := *bbuf
	abuf := p.getBuf(aPanels * kcMax * mr)
	defer p.putBuf(abuf)
	apack := *abuf
	threads := p.Threads()

	for jc := 0; jc < n; jc += gemmNC {
		nc := min(gemmNC, n-jc)
		npb := (nc + nr - 1) / nr
		for pc := 0; pc < k; pc += kcMax {
			kc := min(kcMax, k-pc)
			add := beta != 0 || pc > 0
			chunk := max(1, npb/(4*threads))
			packTasks := (npb + chunk - 1) / chunk
			p.Run(packTasks, func(t int) {
				j0, j1 := t*chunk, min(npb, (t+1)*chunk)
				if !b.trans && b.bf == nil && (j1-1)*nr+nr <= nc {
					// Row by row across the chunk's full panels: each row
					// of B is read as one contiguous run (kinder to the TLB
					// than panel by panel down a large B).
					for l := 0; l < kc; l++ {
						src := b.f32[(pc+l)*b.ld+jc+j0*nr : (pc+l)*b.ld+jc+j1*nr]
						copyPanels(nr, j1-j0, src, bpack[j0*kc*nr+l*nr:], kc*nr)
					}
					return
				}
				for jp := j0; jp < j1; jp++ {
					packBPanel(ks, &b, jc+jp*nr, min(nr, nc-jp*nr), pc, kc, bpack[jp*kc*nr:])
				}
			})
			for ic := 0; ic < m; ic += gemmMC {
				mc := min(gemmMC, m-ic)
				npa := (mc + mr - 1) / mr
				achunk := max(1, npa/(4*threads))
				// An untransposed A is read in place by microRows; only
				// its ragged last panel is packed.
				directA := !transA && ks.microRows != nil
				// A transposed A is read in place too where the path has
				// a strided-A kernel (the dW = dYᵀ·X products).
				microTA := microTAFor(ks)
				directTA := transA && microTA != nil && gemmDirectTA
				if directA || directTA {
					if rem := mc % mr; rem != 0 {
						lo := (npa - 1) * mr
						packA(ks, transA, a, lda, ic+lo, rem, pc, kc, apack[lo*kc:])
					}
				} else {
					p.Run((npa+achunk-1)/achunk, func(t int) {
						lo := t * achunk * mr
						hi := min(mc, (t+1)*achunk*mr)
						packA(ks, transA, a, lda, ic+lo, hi-lo, pc, kc, apack[lo*kc:])
					})
				}
				rowsPer, colsPer, rowTasks, colTasks := tileTasks(npa, npb, mr, nr, threads)
				p.Run(rowTasks*colTasks, func(t int) {
					ct, rt := t/rowTasks, t%rowTasks
					var tmp []float32 // an edge tile, allocated on first use
					for ip := rt * rowsPer; ip < min(npa, (rt+1)*rowsPer); ip++ {
						ap := apack[ip*kc*mr : (ip+1)*kc*mr]
						i0 := ic + ip*mr
						rows := min(mr, m-i0)
						var arows, acols []float32 // A in place (full panel)
						if directA && rows == mr {
							arows = a[i0*lda+pc : (i0+mr-1)*lda+pc+kc]
						}
						if directTA && rows == mr {
							acols = a[pc*lda+i0 : (pc+kc-1)*lda+i0+mr]
						}
						micro := func(c []float32, ldc int, add bool, bp []float32) {
							switch {
							case arows != nil:
								ks.microRows(kc, arows, lda, bp, nr, c, ldc, alpha, add)
							case acols != nil:
								microTA(kc, acols, lda, bp, nr, c, ldc, alpha, add)
							default:
								ks.micro(kc, ap, bp, nr, c, ldc, alpha, add)
							}
						}
						sweepPanels(bpack, kc*nr, ct*colsPer, min(npb, (ct+1)*colsPer), jc, n, i0, rows, mr, nr, c, ldc, add, &tmp, micro)
					}
				})
			}
		}
	}
}

// tileTasks shares the npa×npb tiles of a block out as rowTasks×colTasks
// tasks of rowsPer A panels × colsPer B panels (at most gemmTaskRows ×
// gemmTaskCols elements), halving them until every thread gets work.
func tileTasks(npa, npb, mr, nr, threads int) (rowsPer, colsPer, rowTasks, colTasks int) {
	rowsPer, colsPer = max(1, gemmTaskRows/mr), max(1, gemmTaskCols/nr)
	rowTasks, colTasks = (npa+rowsPer-1)/rowsPer, (npb+colsPer-1)/colsPer
	for rowTasks*colTasks < 2*threads && colsPer > 1 {
		colsPer = (colsPer + 1) / 2
		colTasks = (npb + colsPer - 1) / colsPer
	}
	for rowTasks*colTasks < 2*threads && rowsPer > 1 {
		rowsPer = (rowsPer + 1) / 2
		rowTasks = (npa + rowsPer - 1) / rowsPer
	}
	return rowsPer, colsPer, rowTasks, colTasks
}

// sweepPanels runs micro for one A panel (rows <= mr rows of C from i0)
// over the B panels [jp0, jp1) of bpack (panel elements each, nr columns
// from jc): full tiles straight into C, edge tiles into *tmp (allocated on
// first use) and then copied or added into C.
func sweepPanels[P float32 | uint32](bpack []P, panel, jp0, jp1, jc, n, i0, rows, mr, nr int, c []float32, ldc int, add bool, tmp *[]float32, micro func(c []float32, ldc int, add bool, bp []P)) {
	for jp := jp0; jp < jp1; jp++ {
		bp := bpack[jp*panel : (jp+1)*panel]
		j0 := jc + jp*nr
		cols := min(nr, n-j0)
		if rows == mr && cols == nr {
			micro(c[i0*ldc+j0:(i0+mr-1)*ldc+j0+nr], ldc, add, bp)
			continue
		}
		if *tmp == nil {
			*tmp = make([]float32, mr*nr)
		}
		micro(*tmp, nr, false, bp)
		storeEdge(*tmp, nr, rows, cols, c[i0*ldc+j0:], ldc, add)
	}
}

// storeEdge copies (or adds, when add) the rows×cols corner of an edge
// tile computed into tmp (row stride nr) into C.
func storeEdge(tmp []float32, nr, rows, cols int, c []float32, ldc int, add bool) {
	for i := 0; i < rows; i++ {
		crow := c[i*ldc : i*ldc+cols]
		trow := tmp[i*nr : i*nr+cols]
		if add {
			for j, v := range trow {
				crow[j] += v
			}
		} else {
			copy(crow, trow)
		}
	}
}

// Row-streaming blocking for gemmRowAxpy: depth rows per pass and the
// column width one task covers at least.
const (
	rowAxpyKB   = 128
	rowAxpyCols = 256
)

// gemmRowAxpy computes C = alpha·A·B + beta·C for few rows of A and an
// untransposed fp32 B (the x·W of a small batch) without packing: each task
// owns a range of columns and walks B's rows in blocks of rowAxpyKB, so every
// row is read as one contiguous run per task, with the rows of C in
// registers (up to ks.rowAxpyRows at a time).
func gemmRowAxpy(ks *kernels, p *Pool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	scaleC(p, m, n, beta, c, ldc)
	threads := p.Threads()
	cw := (n + 4*threads - 1) / (4 * threads)
	cw = max(rowAxpyCols, (cw+63)&^63)
	tasks := (n + cw - 1) / cw
	if tasks == 1 {
		rowAxpyRange(ks, 0, n, m, k, alpha, a, lda, b, ldb, c, ldc) // no closure to allocate
		return
	}
	p.Run(tasks, func(t int) {
		rowAxpyRange(ks, t*cw, min(n, (t+1)*cw), m, k, alpha, a, lda, b, ldb, c, ldc)
	})
}

// rowAxpyRange adds alpha·A·B to columns [c0, c1) of C for gemmRowAxpy.
func rowAxpyRange(ks *kernels, c0, c1, m, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	for l0 := 0; l0 < k; l0 += rowAxpyKB {
		kb := min(rowAxpyKB, k-l0)
		for i0 := 0; i0 < m; i0 += ks.rowAxpyRows {
			ma := min(ks.rowAxpyRows, m-i0)
			as := a[i0*lda+l0 : (i0+ma-1)*lda+l0+kb]
			j := c0
			for ; j < c1; j += 16 {
				nv := 4
				if j+64 > c1 {
					if j+16 > c1 {
						break
					}
					nv = 1
				}
				w := 16 * nv
				ks.rowAxpy(ma, nv, kb, as, lda, b[l0*ldb+j:(l0+kb-1)*ldb+j+w], ldb, c[i0*ldc+j:(i0+ma-1)*ldc+j+w], ldc, alpha)
				j += w - 16
			}
			for i := 0; i < ma && j < c1; i++ {
				crow := c[(i0+i)*ldc+j : (i0+i)*ldc+c1]
				for l := 0; l < kb; l++ {
					av := alpha * as[i*lda+l]
					brow := b[(l0+l)*ldb+j : (l0+l)*ldb+c1]
					for jj, bv := range brow {
						crow[jj] += av * bv
					}
				}
			}
		}
	}
}

// gemmSwapped computes C = alpha·op(A)·op(B) + beta·C for a very narrow C
// (n <= swapMaxN, fp32 B) as T = alpha·op(B)ᵀ·op(A)ᵀ into an n×m scratch,
// which the small-M paths handle well, then adds Tᵀ into C.
func gemmSwapped(ks *kernels, p *Pool, transA bool, m, n, k int, alpha float32, a []float32, lda int, b bmat, beta float32, c []float32, ldc int) {
	buf := p.getBuf(n * m)
	defer p.putBuf(buf)
	t := (*buf)[:n*m]
	// op(B)ᵀ is B as stored when transB, else Bᵀ; likewise for op(A)ᵀ.
	gemm(ks, p, !b.trans, !transA, n, m, k, alpha, b.f32, b.ld, bmat{f32: a, ld: lda, trans: !transA}, 0, t, m)
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		for j := range row {
			if beta == 0 {
				row[j] = t[j*m+i]
			} else {
				row[j] = t[j*m+i] + beta*row[j]
			}
		}
	}
}
