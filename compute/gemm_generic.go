package compute

// genericKernels is the portable pure-Go path: always compiled, used where no
// SIMD path applies and by the tests as the reference for the fast paths.
var genericKernels = kernels{
	name:     "generic",
	mr:       4,
	nr:       8,
	micro:    microGeneric,
	dotNB:    func(ma int) int { return 0 },
	vdot:     dotGeneric,
	vdotStep: 1,
	axpy:     axpyGeneric,
}

// microGeneric is the 4×8 micro-kernel in plain Go.
func microGeneric(k int, a, b []float32, ldb int, c []float32, ldc int, alpha float32, add bool) {
	var acc [4][8]float32
	for l := 0; l < k; l++ {
		ap := a[l*4 : l*4+4 : l*4+4]
		bp := b[l*ldb : l*ldb+8 : l*ldb+8]
		for i, av := range ap {
			r := &acc[i]
			r[0] += av * bp[0]
			r[1] += av * bp[1]
			r[2] += av * bp[2]
			r[3] += av * bp[3]
			r[4] += av * bp[4]
			r[5] += av * bp[5]
			r[6] += av * bp[6]
			r[7] += av * bp[7]
		}
	}
	for i := range acc {
		row := c[i*ldc : i*ldc+8 : i*ldc+8]
		for j, v := range acc[i] {
			if add {
				row[j] += alpha * v
			} else {
				row[j] = alpha * v
			}
		}
	}
}

// dotGeneric returns Σ x[i]·y[i] over len(x) elements.
func dotGeneric(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dotBF16Generic returns Σ x[i]·float32(y[i]) over len(x) elements.
func dotBF16Generic(x []float32, y []BF16) float32 {
	y = y[:len(x)]
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(x); i += 2 {
		s0 += x[i] * y[i].Float32()
		s1 += x[i+1] * y[i+1].Float32()
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i].Float32()
	}
	return s0 + s1
}

// axpyGeneric does y += alpha·x over len(x) elements.
func axpyGeneric(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}
