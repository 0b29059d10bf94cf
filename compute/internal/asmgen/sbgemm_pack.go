package main

// bf16PackPanels writes the packing moves of the mixed-precision GEMM for
// whole panels (gemm_bf16_amd64.s; bf16PairIdx is bf16Convert's):
// func bf16PackATransAVX512(kp, np int, x *float32, ld int, dst *uint32, pstride int)
// packs np adjacent gemmMR-row panels of a transposed A (rows of a panel
// are columns of the stored A) and func bf16PackBAVX512 (same arguments)
// np adjacent gemmNR-column panels of an untransposed B: for panel p < np,
// q < kp and j < w (w = gemmMR or gemmNR), dst[p*pstride + q*w + j] =
// bf16(x[2q*ld + p*w + j]) | bf16(x[(2q+1)*ld + p*w + j])<<16, both rows
// converted by one VCVTNE2PS2BF16 and their words interleaved by VPERMW.
// The 12-wide panel loads and stores under the mask K1 (12 lanes).
// Callers pass a few depth pairs at a time, so that the rows they read
// stay in cache across the panels.
// func bf16PackATransBF16AVX512(kp, np int, x *uint16, ld int, dst *uint32, pstride int)
// is bf16PackATransAVX512 for a transposed A that is already bf16 (x holds
// bf16 bits, row stride ld): dst[p*pstride + q*12 + j] = x[2q*ld + p*12 + j]
// | x[(2q+1)*ld + p*12 + j]<<16, the two rows' words loaded into one
// register and interleaved by VPERMW, nothing converted.
func (g *gen) bf16PackPanels() {
	g.bf16PackPanel("bf16PackATransAVX512", gemmMR, false)
	g.bf16PackPanel("bf16PackBAVX512", gemmNR, false)
	g.bf16PackPanel("bf16PackATransBF16AVX512", gemmMR, true)
}

// bf16PackPanel writes one of bf16PackPanels' functions for panel width w
// (12 or 32), from float32 rows or (src16) from bf16 rows.
func (g *gen) bf16PackPanel(name string, w int, src16 bool) {
	nv := (w + 15) / 16
	masked := w%16 != 0
	esize, xtype := 4, "*float32"
	if src16 {
		esize, xtype = 2, "*uint16"
	}
	g.text(name, "(kp, np int, x "+xtype+", ld int, dst *uint32, pstride int)", 48)
	g.args("kp+0 CX", "np+8 R10", "x+16 SI", "ld+24 DX", "dst+32 DI", "pstride+40 R11")
	g.p("\tSHLQ $%d, DX", esize/2)
	g.p("\tSHLQ $2, R11")
	g.p("\tLEAQ (DX)(DX*1), R9")
	g.p("\tVMOVDQU16 bf16PairIdx<>(SB), Z31")
	if masked {
		g.p("\tMOVL $0x%x, AX", 1<<(w%16)-1)
		g.p("\tKMOVW AX, K1")
	}
	g.p("\tTESTQ CX, CX")
	g.p("\tJE %s_done", name)
	g.p("\tTESTQ R10, R10")
	g.p("\tJE %s_done", name)
	g.p("%s_panel:", name)
	g.p("\tMOVQ SI, R12")
	g.p("\tMOVQ DI, R13")
	g.p("\tMOVQ CX, R14")
	g.p("%s_loop:", name)
	for v := 0; v < nv; v++ {
		x, y, c, o := 4*v, 4*v+1, 4*v+2, 4*v+3
		if src16 {
			// x's words into the low half, y's into the high half: the
			// layout VCVTNE2PS2BF16 leaves, so the same VPERMW pairs them.
			mask := ""
			if masked {
				mask = "K1, "
			}
			g.p("\tVMOVDQU16.Z %d(R12), %sY%d", 32*v, mask, x)
			g.p("\tVMOVDQU16.Z %d(R12)(DX*1), %sY%d", 32*v, mask, y)
			g.p("\tVINSERTI64X4 $1, Y%d, Z%d, Z%d", y, x, c)
		} else if masked {
			g.p("\tVMOVUPS.Z %d(R12), K1, Z%d", 64*v, x)
			g.p("\tVMOVUPS.Z %d(R12)(DX*1), K1, Z%d", 64*v, y)
		} else {
			g.p("\tVMOVUPS %d(R12), Z%d", 64*v, x)
			g.p("\tVMOVUPS %d(R12)(DX*1), Z%d", 64*v, y)
		}
		if !src16 {
			g.p("\t%s", vcvtne2ps2bf16(x, y, c))
		}
		g.p("\tVPERMW Z%d, Z31, Z%d", c, o)
		if masked {
			g.p("\tVMOVDQU32 Z%d, K1, %d(R13)", o, 64*v)
		} else {
			g.p("\tVMOVDQU32 Z%d, %d(R13)", o, 64*v)
		}
	}
	g.p("\tADDQ R9, R12")
	g.p("\tADDQ $%d, R13", 4*w)
	g.p("\tDECQ R14")
	g.p("\tJNE %s_loop", name)
	g.p("\tADDQ $%d, SI", esize*w)
	g.p("\tADDQ R11, DI")
	g.p("\tDECQ R10")
	g.p("\tJNE %s_panel", name)
	g.p("%s_done:", name)
	g.vret()
}
