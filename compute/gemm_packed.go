package compute

import "fmt"

// PackedB is a weight matrix W (n×k, the (out, in) layout of a linear
// layer) packed once into the GEMM micro-kernel's panel layout, for repeated
// products C = A·Wᵀ with GemmPacked: each product then skips the
// transposing pack that Gemm does on every call, which pays when A has few
// rows (tens to a few hundred tokens, e.g. the tokens routed to one expert).
// It holds a float32 copy of W (bf16 weights are widened). A PackedB is
// immutable and safe for concurrent use; it belongs to the kernel path of
// the process that made it.
type PackedB struct {
	n, k int
	ks   *kernels
	// data: for each depth block pc (gemmKCFor(k) deep, the last one
	// shorter), the ceil(n/nr) panels of kc×nr values, zero-padded.
	data []float32
}

// N returns the number of rows of W (output features).
func (pb *PackedB) N() int { return pb.n }

// K returns the number of columns of W (input features).
func (pb *PackedB) K() int { return pb.k }

// PackB packs the n×k float32 matrix W (row stride ldw) for GemmPacked.
func PackB(p *Pool, w []float32, ldw, n, k int) (*PackedB, error) {
	if n <= 0 || k <= 0 {
		return nil, fmt.Errorf("pack b: sizes must be positive (n=%d k=%d)", n, k)
	}
	if err := checkMatrix("W", n, k, len(w), ldw); err != nil {
		return nil, fmt.Errorf("pack b: %w", err)
	}
	return packB(defaultKernels, p, bmat{f32: w, ld: ldw, trans: true}, n, k), nil
}

// PackBF16B packs the n×k bf16 matrix W (row stride ldw) for GemmPacked,
// widening it to float32 (the packed copy takes twice W's memory).
func PackBF16B(p *Pool, w []BF16, ldw, n, k int) (*PackedB, error) {
	if n <= 0 || k <= 0 {
		return nil, fmt.Errorf("pack b: sizes must be positive (n=%d k=%d)", n, k)
	}
	if err := checkMatrix("W", n, k, len(w), ldw); err != nil {
		return nil, fmt.Errorf("pack b: %w", err)
	}
	return packB(defaultKernels, p, bmat{bf: nonNilBF16(w), ld: ldw, trans: true}, n, k), nil
}

// packB packs op(B) = Wᵀ for path ks.
func packB(ks *kernels, p *Pool, b bmat, n, k int) *PackedB {
	nr := ks.nr
	npb := (n + nr - 1) / nr
	kc := gemmKCFor(k)
	pb := &PackedB{n: n, k: k, ks: ks, data: make([]float32, npb*nr*k)}
	blocks := (k + kc - 1) / kc
	p.Run(blocks*npb, func(t int) {
		blk, jp := t/npb, t%npb
		pc := blk * kc
		kcb := min(kc, k-pc)
		dst := pb.data[pc*npb*nr+jp*kcb*nr : pc*npb*nr+(jp+1)*kcb*nr]
		packBPanel(ks, &b, jp*nr, min(nr, n-jp*nr), pc, kcb, dst)
	})
	return pb
}

// GemmPacked computes C = alpha·A·Wᵀ + beta·C for the m×k matrix A (row
// stride lda) and a W packed by PackB, C being m×n (row stride ldc).
// beta == 0 overwrites C. Inconsistent shapes panic with a descriptive
// error before memory is touched.
func GemmPacked(p *Pool, m int, alpha float32, a []float32, lda int, pb *PackedB, beta float32, c []float32, ldc int) {
	if pb == nil {
		panic(fmt.Errorf("gemm packed: nil PackedB"))
	}
	if m < 0 {
		panic(fmt.Errorf("gemm packed: negative m=%d", m))
	}
	if err := checkMatrix("A", m, pb.k, len(a), lda); err != nil {
		panic(fmt.Errorf("gemm packed: %w", err))
	}
	if err := checkMatrix("C", m, pb.n, len(c), ldc); err != nil {
		panic(fmt.Errorf("gemm packed: %w", err))
	}
	gemmPacked(p, m, alpha, a, lda, pb, beta, c, ldc)
}

// gemmPacked is GemmPacked after the checks.
func gemmPacked(p *Pool, m int, alpha float32, a []float32, lda int, pb *PackedB, beta float32, c []float32, ldc int) {
	if m == 0 {
		return
	}
	if alpha == 0 {
		scaleC(p, m, pb.n, beta, c, ldc)
		return
	}
	if 2*float64(m)*float64(pb.n)*float64(pb.k) < gemmSerialFlops {
		p = p.serial()
	}
	gemmBlockedPre(pb.ks, p, false, m, pb.n, pb.k, alpha, a, lda, bmat{}, pb, beta, c, ldc)
}
