package main

import "fmt"

// bf16GemmKernels fills gemm_bf16_amd64.s: the AVX-512 BF16 GEMM
// micro-kernel of the mixed-precision product and the loop that measures the
// bf16 dot-product peak.
func (g *gen) bf16GemmKernels() {
	g.sbgemm()
	g.dpbf16Probe()
}

// vdpbf16ps returns the bytes of VDPBF16PS zmm(src2), zmm(src1), zmm(dst) in
// Go's operand order (Intel: vdpbf16ps zmm_dst, zmm_src1, zmm_src2), which
// the Go assembler does not know: EVEX.512.F3.0F38.W0 52 /r, register form.
// For each of the 16 dword lanes, dst += src1.lo·src2.lo + src1.hi·src2.hi
// over the two bf16 halves of the lane.
func vdpbf16ps(src2, src1, dst int) string {
	inv := func(v, bit int) int { return (^v >> bit) & 1 }
	p0 := inv(dst, 3)<<7 | inv(src2, 4)<<6 | inv(src2, 3)<<5 | inv(dst, 4)<<4 | 0x2
	p1 := (^src1&15)<<3 | 1<<2 | 0x2
	p2 := 0x2<<5 | inv(src1, 4)<<3
	modrm := 0xc0 | (dst&7)<<3 | src2&7
	return fmt.Sprintf("BYTE $0x62; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x52; BYTE $0x%02x // VDPBF16PS Z%d, Z%d, Z%d",
		p0, p1, p2, modrm, src2, src1, dst)
}

// sbgemm writes
// func sbgemmKernelAVX512(kp int, a, b *uint32, c *float32, ldc int, alpha float32, add int)
// C[0:12, 0:32] (row stride ldc) = alpha·acc (+ C if add != 0), where acc
// starts at zero and, for each k-pair p < kp in order, each accumulator
// lane (i, j) takes one VDPBF16PS of the bf16 pair a[p*12+i] (A's values at
// depths 2p and 2p+1 of row i, low half first) with the pair b[p*32+j] (B's
// values at depths 2p and 2p+1 of column j). 24 zmm accumulators, two B
// registers, A pairs broadcast into four rotating registers. The portable
// twin is microBF16Generic.
func (g *gen) sbgemm() {
	const mr, nr = gemmMR, gemmNR
	const nv = nr / 16
	name := "sbgemmKernelAVX512"
	g.p("")
	g.p("// func %s(kp int, a, b *uint32, c *float32, ldc int, alpha float32, add int)", name)
	g.p("TEXT ·%s(SB), NOSPLIT, $0-56", name)
	g.p("\tMOVQ kp+0(FP), CX")
	g.p("\tMOVQ a+8(FP), SI")
	g.p("\tMOVQ b+16(FP), DX")
	g.p("\tMOVQ c+24(FP), DI")
	g.p("\tMOVQ ldc+32(FP), R9")
	g.p("\tSHLQ $2, R9")
	g.p("\tMOVQ DI, AX")
	for i := 0; i < mr; i++ {
		g.p("\tPREFETCHT0 (AX)")
		g.p("\tPREFETCHT0 64(AX)")
		g.p("\tADDQ R9, AX")
	}
	nacc := mr * nv
	for r := 0; r < nacc; r++ {
		g.p("\tVPXORD Z%d, Z%d, Z%d", r, r, r)
	}
	lbl, store, over := name+"_loop", name+"_store", name+"_overwrite"
	g.p("\tTESTQ CX, CX")
	g.p("\tJE %s", store)
	g.p("%s:", lbl)
	for v := 0; v < nv; v++ {
		g.p("\tVMOVUPS %d(DX), Z%d", 64*v, nacc+v)
	}
	for i := 0; i < mr; i++ {
		t := nacc + nv + i%4
		g.p("\tVPBROADCASTD %d(SI), Z%d", 4*i, t)
		for v := 0; v < nv; v++ {
			g.p("\t%s", vdpbf16ps(nacc+v, t, i*nv+v))
		}
	}
	g.p("\tADDQ $%d, SI", 4*mr)
	g.p("\tADDQ $%d, DX", 4*nr)
	g.p("\tDECQ CX")
	g.p("\tJNE %s", lbl)
	g.p("%s:", store)
	alpha := fmt.Sprintf("Z%d", nacc)
	g.p("\tVBROADCASTSS alpha+40(FP), %s", alpha)
	for r := 0; r < nacc; r++ {
		g.p("\tVMULPS %s, Z%d, Z%d", alpha, r, r)
	}
	g.p("\tMOVQ add+48(FP), AX")
	g.p("\tTESTQ AX, AX")
	g.p("\tJE %s", over)
	rows := func(addC bool) {
		for i := 0; i < mr; i++ {
			for v := 0; v < nv; v++ {
				if addC {
					g.p("\tVADDPS %d(DI), Z%d, Z%d", 64*v, i*nv+v, i*nv+v)
				}
				g.p("\tVMOVUPS Z%d, %d(DI)", i*nv+v, 64*v)
			}
			if i != mr-1 {
				g.p("\tADDQ R9, DI")
			}
		}
		g.p("\tVZEROUPPER")
		g.p("\tRET")
	}
	rows(true)
	g.p("%s:", over)
	rows(false)
}

// dpbf16Probe writes func dpbf16LoopAVX512(n int): n×16 independent
// VDPBF16PS on zmm registers (1024 FLOP per iteration), which MeasurePeakBF16
// times.
func (g *gen) dpbf16Probe() {
	g.p("")
	g.p("// func dpbf16LoopAVX512(n int)")
	g.p("TEXT ·dpbf16LoopAVX512(SB), NOSPLIT, $0-8")
	g.p("\tMOVQ n+0(FP), CX")
	for r := 0; r < 18; r++ {
		g.p("\tVPXORD Z%d, Z%d, Z%d", r, r, r)
	}
	g.p("dpbf16_loop:")
	for r := 0; r < 16; r++ {
		g.p("\t%s", vdpbf16ps(16, 17, r))
	}
	g.p("\tDECQ CX")
	g.p("\tJNE dpbf16_loop")
	g.p("\tVZEROUPPER")
	g.p("\tRET")
}
