package compute

// rowDot returns Σ x[l]·op(B)[l][j] for l < len(x) over row j of a
// transposed B (stored n×k).
func rowDot(ks *kernels, x []float32, b *bmat, j int, scratch []float32) float32 {
	k := len(x)
	if b.bf != nil {
		row := scratch[:k]
		for l, v := range b.bf[j*b.ld : j*b.ld+k] {
			row[l] = v.Float32()
		}
		return vecDot(ks, x, row)
	}
	return vecDot(ks, x, b.f32[j*b.ld:j*b.ld+k])
}

// vecDot is Σ x[i]·y[i] on path ks.
func vecDot(ks *kernels, x, y []float32) float32 {
	n := len(x)
	t := n - n%ks.vdotStep
	s := ks.vdot(x[:t], y[:t])
	if t < n {
		s += dotGeneric(x[t:], y[t:n])
	}
	return s
}

// gemmDot computes C = alpha·A·Bᵀ + beta·C for small m with B stored n×k
// (fp32 or bf16): up to 8 rows of A at a time against groups of B rows with
// the dot kernels, so B is streamed from memory once per 8 rows of A and
// never packed. Each task owns a run of B-row groups and walks the depth in
// blocks that keep its rows of A in L1 (16 KB); the groups are split over
// the pool.
func gemmDot(ks *kernels, p *Pool, m, n, k int, alpha float32, a []float32, lda int, b bmat, beta float32, c []float32, ldc int) {
	n16 := k / 16
	kt := n16 * 16
	threads := p.Threads()
	for i0 := 0; i0 < m; i0 += 8 {
		ma := min(8, m-i0)
		nb := ks.dotNB(ma)
		kb := max(16, (4096/ma)&^15) // depth block: ma·kb floats of A = 16 KB
		groups := n / nb
		rem := n - groups*nb
		chunk := max(1, groups/(8*threads))
		if kt > kb {
			// Few enough B rows per task (about 12) that walking them in
			// depth blocks keeps each row one prefetchable stream.
			chunk = max(1, min(12/nb, chunk))
		}
		tasks := (groups + chunk - 1) / chunk
		extra := 0
		if rem > 0 {
			extra = 1
		}
		aRows := a[i0*lda : (i0+ma-1)*lda+k]
		store := func(i, j int, s float32) {
			ci := (i0+i)*ldc + j
			if beta == 0 {
				c[ci] = alpha * s
			} else {
				c[ci] = alpha*s + beta*c[ci]
			}
		}
		per := ma * nb * 16 // accumulator floats per group
		p.Run(tasks+extra, func(t int) {
			if t == tasks { // the last n%nb rows of B, one dot each
				var scratch []float32
				if b.bf != nil {
					scratch = make([]float32, k)
				}
				for j := groups * nb; j < n; j++ {
					for i := 0; i < ma; i++ {
						store(i, j, rowDot(ks, aRows[i*lda:i*lda+k], &b, j, scratch))
					}
				}
				return
			}
			g0, g1 := t*chunk, min(groups, (t+1)*chunk)
			out := make([]float32, (g1-g0)*per)
			for l0 := 0; l0 < kt; l0 += kb {
				w := min(kb, kt-l0)
				as := aRows[l0 : (ma-1)*lda+l0+w]
				for g := g0; g < g1; g++ {
					j0 := g * nb
					o := out[(g-g0)*per : (g-g0+1)*per]
					lo, hi := j0*b.ld+l0, (j0+nb-1)*b.ld+l0+w
					if b.bf != nil {
						ks.dotBF16(ma, w/16, as, lda, b.bf[lo:hi], b.ld, o)
					} else {
						ks.dot(ma, w/16, as, lda, b.f32[lo:hi], b.ld, o)
					}
				}
			}
			for g := g0; g < g1; g++ {
				j0 := g * nb
				o := out[(g-g0)*per : (g-g0+1)*per]
				for i := 0; i < ma; i++ {
					arow := aRows[i*lda : i*lda+k]
					for j := 0; j < nb; j++ {
						s := sum16(o[(i*nb+j)*16 : (i*nb+j)*16+16])
						if kt < k {
							s += tailDot(arow[kt:k], &b, j0+j, kt)
						}
						store(i, j0+j, s)
					}
				}
			}
		})
	}
}

// tailDot returns Σ x[i]·B[j][l0+i] over row j of a transposed B (stored
// n×k): the last k%16 terms of a dot-kernel product.
func tailDot(x []float32, b *bmat, j, l0 int) float32 {
	off := j*b.ld + l0
	if b.bf != nil {
		return dotBF16Generic(x, b.bf[off:off+len(x)])
	}
	return dotGeneric(x, b.f32[off:off+len(x)])
}

// sum16 adds 16 lanes pairwise (the same tree as a SIMD reduction).
func sum16(v []float32) float32 {
	v = v[:16]
	var h [8]float32
	for i := range h {
		h[i] = v[i] + v[i+8]
	}
	for i := 0; i < 4; i++ {
		h[i] += h[i+4]
	}
	return (h[0] + h[2]) + (h[1] + h[3])
}
