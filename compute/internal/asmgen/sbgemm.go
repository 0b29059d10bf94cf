package main

import "fmt"

// bf16GemmKernels fills gemm_bf16_amd64.s: the AVX-512 BF16 GEMM
// micro-kernel of the mixed-precision product and the loop that measures the
// bf16 dot-product peak.
func (g *gen) bf16GemmKernels() {
	g.sbgemm(aPacked)
	g.sbgemm(aRows)
	g.bf16Convert()
	g.bf16PackPanels()
	g.dpbf16Probe()
}

// evex512 returns the bytes of an EVEX.512 0F38 W0 instruction with
// register operands, which the Go assembler does not know, in Go's operand
// order (src2, src1, dst; Intel: op zmm_dst, zmm_src1, zmm_src2); pp is
// the implied prefix (2: F3, 3: F2).
func evex512(name string, pp, opcode, src2, src1, dst int) string {
	inv := func(v, bit int) int { return (^v >> bit) & 1 }
	p0 := inv(dst, 3)<<7 | inv(src2, 4)<<6 | inv(src2, 3)<<5 | inv(dst, 4)<<4 | 0x2
	p1 := (^src1&15)<<3 | 1<<2 | pp
	p2 := 0x2<<5 | inv(src1, 4)<<3
	modrm := 0xc0 | (dst&7)<<3 | src2&7
	return fmt.Sprintf("BYTE $0x62; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x%02x // %s Z%d, Z%d, Z%d",
		p0, p1, p2, opcode, modrm, name, src2, src1, dst)
}

// vdpbf16ps is VDPBF16PS (EVEX.512.F3.0F38.W0 52 /r): for each of the 16
// dword lanes, dst += src1.lo·src2.lo + src1.hi·src2.hi over the two bf16
// halves of the lane.
func vdpbf16ps(src2, src1, dst int) string { return evex512("VDPBF16PS", 2, 0x52, src2, src1, dst) }

// vcvtne2ps2bf16 is VCVTNE2PS2BF16 (EVEX.512.F2.0F38.W0 72 /r). Words
// 0..15 of dst are src2's 16 floats rounded to bf16 (nearest even; zeros
// and denormals to a signed zero, NaNs quiet), words 16..31 src1's.
func vcvtne2ps2bf16(src2, src1, dst int) string {
	return evex512("VCVTNE2PS2BF16", 3, 0x72, src2, src1, dst)
}

// bf16Convert writes the conversions that feed the mixed GEMM:
// func bf16CvtRowAVX512(n int, src *float32, dst *uint32): for q < n/2,
// dst[q] = bf16(src[2q]) | bf16(src[2q+1])<<16, n a multiple of 32;
// func bf16CvtPairsAVX512(n int, x, y *float32, dst *uint32): for j < n,
// dst[j] = bf16(x[j]) | bf16(y[j])<<16, n a multiple of 16 (the two rows
// converted together, then their words interleaved by VPERMW).
func (g *gen) bf16Convert() {
	g.text("bf16CvtRowAVX512", "(n int, src *float32, dst *uint32)", 24)
	g.args("n+0 CX", "src+8 SI", "dst+16 DI")
	g.p("\tSHRQ $5, CX")
	g.p("\tJE cvtrow_done")
	g.p("cvtrow_loop:")
	g.p("\tVMOVUPS (SI), Z0")
	g.p("\tVMOVUPS 64(SI), Z1")
	g.p("\t%s", vcvtne2ps2bf16(0, 1, 2))
	g.p("\tVMOVDQU32 Z2, (DI)")
	g.p("\tADDQ $128, SI")
	g.p("\tADDQ $64, DI")
	g.p("\tDECQ CX")
	g.p("\tJNE cvtrow_loop")
	g.p("cvtrow_done:")
	g.vret()
	g.p("")
	for i := 0; i < 32; i += 4 {
		// word 2j = x[j] (word j of the conversion), word 2j+1 = y[j] (word 16+j)
		var q uint64
		for w := 0; w < 4; w++ {
			k := i + w
			v := uint64(k / 2)
			if k%2 == 1 {
				v += 16
			}
			q |= v << (16 * w)
		}
		g.p("DATA bf16PairIdx<>+%d(SB)/8, $0x%016x", 2*i, q)
	}
	g.p("GLOBL bf16PairIdx<>(SB), RODATA|NOPTR, $64")
	g.text("bf16CvtPairsAVX512", "(n int, x, y *float32, dst *uint32)", 32)
	g.args("n+0 CX", "x+8 SI", "y+16 DX", "dst+24 DI")
	g.p("\tVMOVDQU16 bf16PairIdx<>(SB), Z3")
	g.p("\tSHRQ $4, CX")
	g.p("\tJE cvtpairs_done")
	g.p("cvtpairs_loop:")
	g.p("\tVMOVUPS (SI), Z0")
	g.p("\tVMOVUPS (DX), Z1")
	g.p("\t%s", vcvtne2ps2bf16(0, 1, 2))
	g.p("\tVPERMW Z2, Z3, Z4")
	g.p("\tVMOVDQU32 Z4, (DI)")
	g.p("\tADDQ $64, SI")
	g.p("\tADDQ $64, DX")
	g.p("\tADDQ $64, DI")
	g.p("\tDECQ CX")
	g.p("\tJNE cvtpairs_loop")
	g.p("cvtpairs_done:")
	g.vret()
}

// sbgemm writes
// func sbgemmKernelAVX512(kp int, a, b *uint32, c *float32, ldc int, alpha float32, add int)
// C[0:12, 0:32] (row stride ldc) = alpha·acc (+ C if add != 0), where acc
// starts at zero and, for each k-pair p < kp in order, each accumulator
// lane (i, j) takes one VDPBF16PS of the bf16 pair a[p*12+i] (A's values at
// depths 2p and 2p+1 of row i, low half first) with the pair b[p*32+j] (B's
// values at depths 2p and 2p+1 of column j). 24 zmm accumulators, two B
// registers, A pairs broadcast into four rotating registers. The portable
// twin is microBF16Generic. With mode aRows,
// func sbgemmKernelRowsAVX512(kp int, a *uint32, lda int, b *uint32, c *float32, ldc int, alpha float32, add int)
// reads the pairs of row i at a[i*lda+p] (a row-major bf16 copy of A) in
// place of the packed a[p*12+i], with the same arithmetic.
func (g *gen) sbgemm(mode aMode) {
	const mr, nr = gemmMR, gemmNR
	const nv = nr / 16
	name, off, frame := "sbgemmKernelAVX512", 0, 56
	rowsA := mode == aRows
	abases := []string{"SI", "R10", "R11", "R12"}
	if rowsA {
		name, off, frame = "sbgemmKernelRowsAVX512", 8, 64
	}
	sig := "(kp int, a, b *uint32, c *float32, ldc int, alpha float32, add int)"
	if rowsA {
		sig = "(kp int, a *uint32, lda int, b *uint32, c *float32, ldc int, alpha float32, add int)"
	}
	g.text(name, sig, frame)
	g.args("kp+0 CX", "a+8 SI")
	if rowsA {
		g.rowBases(abases)
	}
	g.p("\tMOVQ b+%d(FP), DX", 16+off)
	g.p("\tMOVQ c+%d(FP), DI", 24+off)
	g.p("\tMOVQ ldc+%d(FP), R9", 32+off)
	g.p("\tSHLQ $2, R9")
	g.p("\tMOVQ DI, AX")
	for i := 0; i < mr; i++ {
		g.p("\tPREFETCHT0 (AX)")
		g.p("\tPREFETCHT0 64(AX)")
		g.p("\tADDQ R9, AX")
	}
	nacc := mr * nv
	g.zero("VPXORD", "Z", nacc)
	lbl, store, over := name+"_loop", name+"_store", name+"_overwrite"
	g.p("\tTESTQ CX, CX")
	g.p("\tJE %s", store)
	g.p("%s:", lbl)
	for v := 0; v < nv; v++ {
		g.p("\tVMOVUPS %d(DX), Z%d", 64*v, nacc+v)
	}
	for i := 0; i < mr; i++ {
		t := nacc + nv + i%4
		if rowsA {
			g.p("\tVPBROADCASTD %s, Z%d", rowAddr(abases, "R13", i), t)
		} else {
			g.p("\tVPBROADCASTD %d(SI), Z%d", 4*i, t)
		}
		for v := 0; v < nv; v++ {
			g.p("\t%s", vdpbf16ps(nacc+v, t, i*nv+v))
		}
	}
	if rowsA {
		for _, b := range abases {
			g.p("\tADDQ $4, %s", b)
		}
	} else {
		g.p("\tADDQ $%d, SI", 4*mr)
	}
	g.p("\tADDQ $%d, DX", 4*nr)
	g.p("\tDECQ CX")
	g.p("\tJNE %s", lbl)
	g.p("%s:", store)
	alpha := fmt.Sprintf("Z%d", nacc)
	g.p("\tVBROADCASTSS alpha+%d(FP), %s", 40+off, alpha)
	for r := 0; r < nacc; r++ {
		g.p("\tVMULPS %s, Z%d, Z%d", alpha, r, r)
	}
	g.p("\tMOVQ add+%d(FP), AX", 48+off)
	g.p("\tTESTQ AX, AX")
	g.p("\tJE %s", over)
	g.storeTile(mr, nv, 64, zreg, "R9", func(off int, r string) {
		g.p("\tVADDPS %d(DI), %s, %s", off, r, r)
	})
	g.vret()
	g.p("%s:", over)
	g.storeTile(mr, nv, 64, zreg, "R9", nil)
	g.vret()
}

// dpbf16Probe writes func dpbf16LoopAVX512(n int): n×16 independent
// VDPBF16PS on zmm registers (1024 FLOP per iteration), which MeasurePeakBF16
// times.
func (g *gen) dpbf16Probe() {
	g.peakLoop("dpbf16LoopAVX512", "dpbf16_loop", func(r int) string { return vdpbf16ps(16, 17, r) })
}
