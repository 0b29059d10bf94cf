package main

import "fmt"

// The AVX2 versions of the QMatMul kernels (in qdot_amd64.s): the same
// lane model, 16 lanes held in two ymm registers (lanes 0..7, 8..15), one
// activation row per call (R = 1), no VNNI: 4-byte sums come from
// vpmaddubsw (u8×s8 → word pairs) and vpmaddwd (word pairs → dwords, by 1
// or by the sub-block scale), exact while a word pair stays below 2^15.
// Q8_0's unsigned weights (up to 255) would overflow that, so they are
// split into 2·(u>>1) + (u&1).
//
// Signatures as the AVX-512 kernels (qdot<T>AVX2 with R = 1). Registers:
// Y0/Y1 the float lanes, Y2/Y3 the integer lanes (k-quants), Y4..Y11
// temporaries, Y12..Y15 constants; the k-quants keep their sub-block
// scales as words at 0(SP).

func (g *gen) qdotAVX2All() {
	for _, t := range []struct {
		name   string
		frame  int
		consts func()
		group  func()
		wb, qb int
		db     int
	}{
		{"Q8_0", 0, g.avx2ConstsQ8, g.avx2GroupQ8, 68, 64, 64},
		{"Q4_0", 0, func() { g.avx2ConstsTab(nil) }, func() { g.avx2GroupTab(18, 2, false, false, 0, 0, g.avx2HalvesQ4) }, 72, 128, 64},
		{"Q4_1", 0, func() { g.avx2ConstsTab(nil) }, func() { g.avx2GroupTab(20, 4, false, false, 0, 2, g.avx2HalvesQ4) }, 80, 128, 64},
		{"Q5_0", 0, func() { g.avx2ConstsTab(nil) }, func() { g.avx2GroupTab(22, 6, false, false, 2, 0, g.avx2HalvesQ4) }, 88, 128, 64},
		{"Q5_1", 0, func() { g.avx2ConstsTab(nil) }, func() { g.avx2GroupTab(24, 8, false, false, 4, 2, g.avx2HalvesQ4) }, 96, 128, 64},
		{"Q4_K", 32, g.avx2ConstsK, func() { g.avx2GroupQ45K(false) }, 144, 256, 4},
		{"Q5_K", 32, g.avx2ConstsQ5K, func() { g.avx2GroupQ45K(true) }, 176, 256, 4},
		{"IQ4_NL", 0, func() { g.avx2ConstsTab(iq4Table) }, func() { g.avx2GroupTab(18, 2, true, true, 0, 0, g.avx2HalvesQ4) }, 72, 128, 64},
		{"MXFP4", 0, func() { g.avx2ConstsTab(fp4Table) }, func() { g.avx2GroupTab(17, 1, true, false, 0, 0, g.avx2E8M0) }, 68, 128, 64},
		{"Q6_K", 32, g.avx2ConstsK, g.avx2GroupQ6K, 210, 256, 4},
		{"Q2_K", 32, g.avx2ConstsK23, g.avx2GroupQ2K, 84, 256, 4},
		{"Q3_K", 32, g.avx2ConstsK23, g.avx2GroupQ3K, 110, 256, 4},
		{"IQ4_XS", 32, g.avx2ConstsXS, g.avx2GroupXS, 136, 256, 4},
	} {
		name := fmt.Sprintf("qdot%sAVX2", t.name)
		g.textLocals(name, "(groups int, w *byte, rb int, ncol int, aq *int8, qs int, lan *int32, ls int, ad *float32, ds int, out *float32, ldo int, red int)", t.frame, 104)
		t.consts()
		g.p("%s_col:", name)
		g.args("w+8 SI", "aq+32 CX", "lan+48 DX", "ad+64 DI", "groups+0 BX")
		g.p("\tVPXOR Y0, Y0, Y0")
		g.p("\tVPXOR Y1, Y1, Y1")
		g.p("%s_grp:", name)
		t.group()
		g.p("\tADDQ $%d, SI", t.wb)
		g.p("\tADDQ $%d, CX", t.qb)
		g.p("\tADDQ $64, DX")
		g.p("\tADDQ $%d, DI", t.db)
		g.p("\tDECQ BX")
		g.p("\tJNZ %s_grp", name)
		g.avx2Store(name, "out+80(FP)", "red+96(FP)")
		g.nextColumn(name + "_col")
	}
	for _, ft := range []string{"F32", "F16", "BF16"} {
		g.qdotFloatAVX2(ft)
	}
}

// avx2Store stores Y0/Y1: summed as qReduce does when the flag is set,
// else as 16 lanes (out advances 4 or 64 bytes).
func (g *gen) avx2Store(name, out, flag string) {
	g.p("\tMOVQ %s, AX", out)
	g.p("\tCMPQ %s, $0", flag)
	g.p("\tJEQ %s_lanes", name)
	g.p("\tVADDPS Y1, Y0, Y8")
	g.reduce8("(AX)")
	g.p("\tADDQ $4, AX")
	g.p("\tJMP %s_next", name)
	g.p("%s_lanes:", name)
	g.p("\tVMOVUPS Y0, (AX)")
	g.p("\tVMOVUPS Y1, 32(AX)")
	g.p("\tADDQ $64, AX")
	g.p("%s_next:", name)
	g.p("\tMOVQ AX, %s", out)
}

// avx2Bcast sets every dword of Y<reg> to v.
func (g *gen) avx2Bcast(reg int, v uint32) {
	g.p("\tMOVL $0x%08x, AX", v)
	g.p("\tVMOVD AX, X%d", reg)
	g.p("\tVPBROADCASTD X%d, Y%d", reg, reg)
}

func (g *gen) avx2ConstsQ8() {
	g.avx2Bcast(12, 0x01010101)
	g.avx2Bcast(13, 0x7f7f7f7f)
	g.avx2Bcast(14, 0x80808080)
	g.avx2Bcast(15, 0x00010001)
}

// avx2GroupQ8: per block b (lanes 8b..8b+7), isum = lan + 2·Σ(u>>1)·a +
// Σ(u&1)·a with u = w xor 0x80, then lanes += (dw·da)·float(isum).
func (g *gen) avx2GroupQ8() {
	for b := 0; b < 2; b++ {
		g.p("\tVMOVDQU %d(SI), Y4", 2+34*b)
		g.p("\tVPXOR Y14, Y4, Y4")
		g.p("\tVPSRLW $1, Y4, Y5")
		g.p("\tVPAND Y13, Y5, Y5")
		g.p("\tVPAND Y12, Y4, Y4")
		g.p("\tVPMADDUBSW %d(CX), Y5, Y5", 32*b)
		g.p("\tVPMADDUBSW %d(CX), Y4, Y4", 32*b)
		g.p("\tVPMADDWD Y15, Y5, Y5")
		g.p("\tVPMADDWD Y15, Y4, Y4")
		g.p("\tVPSLLD $1, Y5, Y5")
		g.p("\tVPADDD %d(DX), Y5, Y5", 32*b)
		g.p("\tVPADDD Y4, Y5, Y5")
		g.p("\tVCVTDQ2PS Y5, Y5")
		g.p("\tVPBROADCASTW %d(SI), X6", 34*b)
		g.p("\tVCVTPH2PS X6, Y6")
		g.avx2Fin32(b)
	}
}

// avx2Fin32 does lanes Y<b> += (Y6·da)·Y5, da the 8 scales at 32b(DI).
func (g *gen) avx2Fin32(b int) {
	g.p("\tVMULPS %d(DI), Y6, Y6", 32*b)
	g.p("\tVMULPS Y5, Y6, Y6")
	g.p("\tVADDPS Y6, Y%d, Y%d", b, b)
}

func (g *gen) avx2ConstsK() {
	g.avx2Bcast(13, 0x30303030)
	g.avx2Bcast(14, 0x0f0f0f0f)
}

// avx2Madd adds to Y<acc> the 4-byte sums of weights Y<w> × activations
// at aoff(CX), each times the word scale in Y<sc>.
func (g *gen) avx2Madd(w, aoff, sc, acc int) {
	g.p("\tVPMADDUBSW %d(CX), Y%d, Y%d", aoff, w, w)
	g.p("\tVPMADDWD Y%d, Y%d, Y%d", sc, w, w)
	g.p("\tVPADDD Y%d, Y%d, Y%d", w, acc, acc)
}

// avx2FinK does lanes Y0/Y1 += (d·da)·float(Y2/Y3), d in Y11.
func (g *gen) avx2FinK() {
	g.p("\tVBROADCASTSS (DI), Y7")
	g.p("\tVMULPS Y7, Y11, Y6")
	for h := 0; h < 2; h++ {
		g.p("\tVCVTDQ2PS Y%d, Y%d", 2+h, 2+h)
		g.p("\tVMULPS Y%d, Y6, Y5", 2+h)
		g.p("\tVADDPS Y5, Y%d, Y%d", h, h)
	}
}

// avx2GroupQ45K: 8 sub-block scales and mins unpacked as the AVX-512
// kernel does; ymm half h of unit u has the one sub-block 4(u/2)+u%2+2h
// (Q5_K: its fifth bits are bit sub of qh, Y15 holding 0x10 bytes).
func (g *gen) avx2GroupQ45K(five bool) {
	g.p("\tVMOVDQU 4(SI), X8")
	g.p("\tVPSHUFD $0x98, X8, X9")
	g.p("\tVPSHUFD $0x50, X8, X10")
	g.p("\tVPSRLVD qk4shr1<>(SB), X9, X9")
	g.p("\tVPAND qk4and1<>(SB), X9, X9")
	g.p("\tVPSRLVD qk4shr2<>(SB), X10, X10")
	g.p("\tVPAND qk4and2<>(SB), X10, X10")
	g.p("\tVPSLLD $4, X10, X10")
	g.p("\tVPOR X10, X9, X8")
	g.p("\tVPMOVZXBW X8, Y9")
	g.p("\tVMOVDQU Y9, (SP)")
	g.p("\tVPSRLDQ $8, X8, X10")
	g.p("\tVPMOVZXBD X10, Y10")
	g.p("\tVPBROADCASTW (SI), X11")
	g.p("\tVCVTPH2PS X11, Y11")
	g.p("\tVPBROADCASTW 2(SI), X12")
	g.p("\tVCVTPH2PS X12, Y12")
	g.p("\tVPXOR Y2, Y2, Y2")
	g.p("\tVPXOR Y3, Y3, Y3")
	qs := 16
	if five {
		qs = 48
	}
	for c := 0; c < 2; c++ {
		for h := 0; h < 2; h++ {
			g.p("\tVMOVDQU %d(SI), Y4", qs+64*c+32*h)
			g.p("\tVPSRLW $4, Y4, Y5")
			g.p("\tVPAND Y14, Y4, Y4")
			g.p("\tVPAND Y14, Y5, Y5")
			for nib := 0; nib < 2; nib++ {
				u := 2*c + nib
				sub := 4*c + nib + 2*h
				if five {
					// bit sub of qh[i] → bit 4 of byte i.
					g.p("\tVMOVDQU 16(SI), Y7")
					if sub < 4 {
						g.p("\tVPSLLW $%d, Y7, Y7", 4-sub)
					} else if sub > 4 {
						g.p("\tVPSRLW $%d, Y7, Y7", sub-4)
					}
					g.p("\tVPAND Y15, Y7, Y7")
					g.p("\tVPOR Y7, Y%d, Y%d", 4+nib, 4+nib)
				}
				g.p("\tVPBROADCASTW %d(SP), Y6", 2*sub)
				g.avx2Madd(4+nib, 64*u+32*h, 6, 2+h)
			}
		}
	}
	g.avx2FinK()
	// Mins: lanes 0..7 -= (dmin·da)·float(m·bsum); lanes 8..15 have m = 0.
	g.p("\tVPMULLD (DX), Y10, Y10")
	g.p("\tVCVTDQ2PS Y10, Y10")
	g.p("\tVMULPS Y7, Y12, Y6")
	g.p("\tVMULPS Y10, Y6, Y10")
	g.p("\tVSUBPS Y10, Y0, Y0")
	g.p("\tVPXOR Y10, Y10, Y10")
	g.p("\tVMULPS Y10, Y6, Y10")
	g.p("\tVSUBPS Y10, Y1, Y1")
}

// avx2GroupQ6K: quarter qq of half hh is elements 128hh+32qq.., from
// ql[64hh+32(qq%2)] (nibble qq/2) and bits 2qq of qh[32hh..]; its two
// sub-blocks' scales fill the two 128-bit lanes of the scale words.
func (g *gen) avx2GroupQ6K() {
	g.p("\tVPMOVSXBW 192(SI), Y9")
	g.p("\tVMOVDQU Y9, (SP)")
	g.p("\tVPMOVSXBD 192(SI), Y9")
	g.p("\tVPMOVSXBD 200(SI), Y10")
	g.p("\tVPBROADCASTW 208(SI), X11")
	g.p("\tVCVTPH2PS X11, Y11")
	g.p("\tVPXOR Y2, Y2, Y2")
	g.p("\tVPXOR Y3, Y3, Y3")
	for hh := 0; hh < 2; hh++ {
		g.p("\tVMOVDQU %d(SI), Y12", 128+32*hh)
		for qq := 0; qq < 4; qq++ {
			g.p("\tVPSRLW $%d, Y12, Y6", 2*qq)
			g.p("\tVPSLLW $4, Y6, Y6")
			g.p("\tVPAND Y13, Y6, Y6")
			g.p("\tVMOVDQU %d(SI), Y4", 64*hh+32*(qq%2))
			if qq/2 == 1 {
				g.p("\tVPSRLW $4, Y4, Y4")
			}
			g.p("\tVPAND Y14, Y4, Y4")
			g.p("\tVPOR Y6, Y4, Y4")
			sub := 8*hh + 2*qq
			g.p("\tVPBROADCASTW %d(SP), X7", 2*sub)
			g.p("\tVPBROADCASTW %d(SP), X8", 2*sub+2)
			g.p("\tVINSERTI128 $1, X8, Y7, Y7")
			g.avx2Madd(4, 128*hh+32*qq, 7, 2+qq%2)
		}
	}
	// isum -= 32·sc·bsum per lane (lane l: sub-block l).
	g.p("\tVPMULLD (DX), Y9, Y9")
	g.p("\tVPSLLD $5, Y9, Y9")
	g.p("\tVPSUBD Y9, Y2, Y2")
	g.p("\tVPMULLD 32(DX), Y10, Y10")
	g.p("\tVPSLLD $5, Y10, Y10")
	g.p("\tVPSUBD Y10, Y3, Y3")
	g.avx2FinK()
}

// qdotFloatAVX2 writes
// func qdot<T>AVX2(n16 int, w *byte, rb int, ncol int, a *float32, out *float32, red int)
// the float-weight lane model over the first 16·n16 elements of one row
// of a; the caller finishes any tail on the stored lanes (red == 0).
func (g *gen) qdotFloatAVX2(ft string) {
	name := fmt.Sprintf("qdot%sAVX2", ft)
	esz := map[string]int{"F32": 4, "F16": 2, "BF16": 2}[ft]
	g.text(name, "(n16 int, w *byte, rb int, ncol int, a *float32, out *float32, red int)", 56)
	g.p("%s_col:", name)
	g.args("w+8 SI", "a+32 CX", "n16+0 BX")
	g.p("\tVPXOR Y0, Y0, Y0")
	g.p("\tVPXOR Y1, Y1, Y1")
	g.p("%s_loop:", name)
	for h := 0; h < 2; h++ {
		off := 8 * esz * h
		switch ft {
		case "F32":
			g.p("\tVMOVUPS %d(SI), Y4", off)
		case "F16":
			g.p("\tVCVTPH2PS %d(SI), Y4", off)
		case "BF16":
			g.p("\tVPMOVZXWD %d(SI), Y4", off)
			g.p("\tVPSLLD $16, Y4, Y4")
		}
		g.p("\tVMULPS %d(CX), Y4, Y4", 32*h)
		g.p("\tVADDPS Y4, Y%d, Y%d", h, h)
	}
	g.p("\tADDQ $%d, SI", 16*esz)
	g.p("\tADDQ $64, CX")
	g.p("\tDECQ BX")
	g.p("\tJNZ %s_loop", name)
	g.avx2Store(name, "out+40(FP)", "red+48(FP)")
	g.nextColumn(name + "_col")
}

func (g *gen) avx2ConstsQ5K() {
	g.avx2ConstsK()
	g.avx2Bcast(15, 0x10101010)
}

// avx2ConstsTab: Y12 1s, Y13 0x7f, Y14 0x0f bytes, Y15 1s as words, Y10
// the value table in both 128-bit lanes (no table: 0x10 bytes, for the
// fifth bits), Y11 qidx4's first 8 dwords.
func (g *gen) avx2ConstsTab(tab []byte) {
	g.avx2Bcast(12, 0x01010101)
	g.avx2Bcast(13, 0x7f7f7f7f)
	g.avx2Bcast(14, 0x0f0f0f0f)
	g.avx2Bcast(15, 0x00010001)
	if tab == nil {
		g.avx2Bcast(10, 0x10101010)
	} else {
		g.avx2Table(10, tab)
	}
	g.p("\tVMOVDQU qidx4<>(SB), Y11")
}

// avx2Table puts a 16-byte table in both 128-bit lanes of Y<reg>.
func (g *gen) avx2Table(reg int, tab []byte) {
	g.p("\tMOVQ $0x%016x, AX", le64(tab[:8]))
	g.p("\tVMOVQ AX, X%d", reg)
	g.p("\tMOVQ $0x%016x, AX", le64(tab[8:]))
	g.p("\tVPINSRQ $1, AX, X%d, X%d", reg, reg)
	g.p("\tVINSERTI128 $1, X%d, Y%d, Y%d", reg, reg, reg)
}

// avx2GroupTab is the 4-block group of the nibble types: Q4_0, Q4_1,
// Q5_0, Q5_1 (nibbles as they are; qh > 0: the blocks' 32 fifth bits at
// that offset; mins > 0: the fp16 min at that offset, added as
// (m·da)·float(Σa) with Σa the lane words), IQ4_NL (through its table:
// values up to 241, so split as 2·(u>>1) + (u&1)) and MXFP4 (through its
// table: values up to 28). Blocks are ts bytes with the quants at qoff;
// scales(ts, hb) loads the two blocks' scales into X6. Lanes 4 per block,
// blocks 2hb, 2hb+1 in ymm half hb.
func (g *gen) avx2GroupTab(ts, qoff int, table, split bool, qh, mins int, scales func(ts, hb int)) {
	for hb := 0; hb < 2; hb++ {
		g.p("\tVMOVDQU %d(SI), X4", qoff+2*ts*hb)
		g.p("\tVINSERTI128 $1, %d(SI), Y4, Y4", qoff+2*ts*hb+ts)
		g.p("\tVPSRLW $4, Y4, Y5")
		g.p("\tVPAND Y14, Y4, Y4")
		g.p("\tVPAND Y14, Y5, Y5")
		if qh > 0 {
			// Byte j of the low (high) nibbles takes bit j (16+j) of its
			// block's qh as 0x10.
			g.p("\tVPBROADCASTD %d(SI), X8", qh+2*ts*hb)
			g.p("\tVPBROADCASTD %d(SI), X9", qh+2*ts*hb+ts)
			g.p("\tVINSERTI128 $1, X9, Y8, Y8")
			for i, pat := range []string{"q5lo", "q5hi"} {
				g.p("\tVPSHUFB %s<>(SB), Y8, Y9", pat)
				g.p("\tVPAND q5bit<>(SB), Y9, Y9")
				g.p("\tVPCMPEQB q5bit<>(SB), Y9, Y9")
				g.p("\tVPAND Y10, Y9, Y9")
				g.p("\tVPOR Y9, Y%d, Y%d", 4+i, 4+i)
			}
		}
		if table {
			g.p("\tVPSHUFB Y4, Y10, Y4")
			g.p("\tVPSHUFB Y5, Y10, Y5")
		}
		if split {
			// lo: Y4, hi: Y5 → Y6/Y7 their halves, Y4/Y5 their low bits.
			for i := 0; i < 2; i++ {
				g.p("\tVPSRLW $1, Y%d, Y%d", 4+i, 6+i)
				g.p("\tVPAND Y13, Y%d, Y%d", 6+i, 6+i)
				g.p("\tVPAND Y12, Y%d, Y%d", 4+i, 4+i)
			}
			// Word pairs of the halves reach 30480: widen each before adding.
			for i := 0; i < 2; i++ {
				g.p("\tVPMADDUBSW %d(CX), Y%d, Y%d", 64*i+32*hb, 6+i, 6+i)
				g.p("\tVPMADDWD Y15, Y%d, Y%d", 6+i, 6+i)
			}
			g.p("\tVPADDD Y7, Y6, Y6")
			g.p("\tVPSLLD $1, Y6, Y6")
		}
		g.p("\tVPMADDUBSW %d(CX), Y4, Y4", 32*hb)
		g.p("\tVPMADDUBSW %d(CX), Y5, Y5", 64+32*hb)
		g.p("\tVPADDW Y5, Y4, Y4")
		g.p("\tVPMADDWD Y15, Y4, Y4")
		if split {
			g.p("\tVPADDD Y6, Y4, Y4")
		}
		if mins > 0 {
			g.p("\tVCVTDQ2PS Y4, Y5")
		} else {
			g.p("\tVPADDD %d(DX), Y4, Y5", 32*hb)
			g.p("\tVCVTDQ2PS Y5, Y5")
		}
		scales(ts, hb)
		g.p("\tVPERMPS Y6, Y11, Y6")
		g.avx2Fin32(hb)
		if mins > 0 {
			g.avx2HalvesAt(ts, hb, mins)
			g.p("\tVPERMPS Y6, Y11, Y6")
			g.p("\tVMULPS %d(DI), Y6, Y6", 32*hb)
			g.p("\tVCVTDQ2PS %d(DX), Y5", 32*hb)
			g.p("\tVMULPS Y5, Y6, Y6")
			g.p("\tVADDPS Y6, Y%d, Y%d", hb, hb)
		}
	}
}

// avx2HalvesQ4 loads the fp16 scales of blocks 2hb, 2hb+1 into X6.
func (g *gen) avx2HalvesQ4(ts, hb int) { g.avx2HalvesAt(ts, hb, 0) }

// avx2HalvesAt loads the fp16 at offset off of blocks 2hb, 2hb+1 into X6.
func (g *gen) avx2HalvesAt(ts, hb, off int) {
	g.p("\tMOVWLZX %d(SI), AX", off+2*ts*hb)
	g.p("\tVMOVD AX, X6")
	g.p("\tVPINSRW $1, %d(SI), X6, X6", off+2*ts*hb+ts)
	g.p("\tVCVTPH2PS X6, X6")
}

// avx2E8M0 loads the e8m0 scales (halved) of blocks 2hb, 2hb+1 into X6:
// e < 2 ? (e+1)<<21 (= 0x00200000<<e) : (e-1)<<23, as bits.
func (g *gen) avx2E8M0(ts, hb int) {
	g.p("\tMOVBLZX %d(SI), AX", 2*ts*hb)
	g.p("\tMOVBLZX %d(SI), R8", 2*ts*hb+ts)
	for _, r := range []string{"AX", "R8"} {
		g.p("\tLEAL -1(%s), R9", r)
		g.p("\tSHLL $23, R9")
		g.p("\tLEAL 1(%s), R10", r)
		g.p("\tSHLL $21, R10")
		g.p("\tCMPL %s, $2", r)
		g.p("\tCMOVLCS R10, R9")
		g.p("\tMOVL R9, %s", r)
	}
	g.p("\tVMOVD AX, X6")
	g.p("\tVPINSRD $1, R8, X6, X6")
}

// avx2ConstsK23: Y13 0x03, Y14 0x0f, Y15 0x04 bytes.
func (g *gen) avx2ConstsK23() {
	g.avx2Bcast(13, 0x03030303)
	g.avx2Bcast(14, 0x0f0f0f0f)
	g.avx2Bcast(15, 0x04040404)
}

// avx2Scale2 sets Y7's words to the scale words of sub-blocks sub (low
// 128 bits) and sub+1 (high), from the 16 words at 0(SP).
func (g *gen) avx2Scale2(sub int) {
	g.p("\tVPBROADCASTW %d(SP), X7", 2*sub)
	g.p("\tVPBROADCASTW %d(SP), X8", 2*sub+2)
	g.p("\tVINSERTI128 $1, X8, Y7, Y7")
}

// avx2Units23 adds the 4 units of Q2_K / Q3_K (unit j: bits 2j of the 64
// qs bytes at qoff; ymm half h: elements 128h+32j.., sub-blocks
// 8h+2j, +1), with hbits(j, h) adding Q3_K's third bit to Y4.
func (g *gen) avx2Units23(qoff int, hbits func(j, h int)) {
	g.p("\tVPXOR Y2, Y2, Y2")
	g.p("\tVPXOR Y3, Y3, Y3")
	for h := 0; h < 2; h++ {
		g.p("\tVMOVDQU %d(SI), Y12", qoff+32*h)
		for j := 0; j < 4; j++ {
			if j == 0 {
				g.p("\tVPAND Y13, Y12, Y4")
			} else {
				g.p("\tVPSRLW $%d, Y12, Y4", 2*j)
				g.p("\tVPAND Y13, Y4, Y4")
			}
			if hbits != nil {
				hbits(j, h)
			}
			g.avx2Scale2(8*h + 2*j)
			g.avx2Madd(4, 64*j+32*h, 7, 2+h)
		}
	}
}

// avx2GroupQ2K: scales low nibbles (words at 0(SP)), mins high nibbles
// (dwords Y9/Y10), d Y11, dmin in X/Y5 at the end.
func (g *gen) avx2GroupQ2K() {
	g.p("\tVMOVDQU (SI), X8")
	g.p("\tVPAND X14, X8, X9")
	g.p("\tVPMOVZXBW X9, Y9")
	g.p("\tVMOVDQU Y9, (SP)")
	g.p("\tVPSRLW $4, X8, X8")
	g.p("\tVPAND X14, X8, X8")
	g.p("\tVPMOVZXBD X8, Y9")
	g.p("\tVPSRLDQ $8, X8, X8")
	g.p("\tVPMOVZXBD X8, Y10")
	g.p("\tVPBROADCASTW 80(SI), X11")
	g.p("\tVCVTPH2PS X11, Y11")
	g.avx2Units23(16, nil)
	g.avx2FinK()
	// lanes -= (dmin·da)·float(m·bsum), Y7 = da from avx2FinK.
	g.p("\tVPBROADCASTW 82(SI), X6")
	g.p("\tVCVTPH2PS X6, Y6")
	g.p("\tVMULPS Y7, Y6, Y6")
	for h := 0; h < 2; h++ {
		g.p("\tVPMULLD %d(DX), Y%d, Y%d", 32*h, 9+h, 9+h)
		g.p("\tVCVTDQ2PS Y%d, Y%d", 9+h, 9+h)
		g.p("\tVMULPS Y%d, Y6, Y5", 9+h)
		g.p("\tVSUBPS Y5, Y%d, Y%d", h, h)
	}
}

// avx2OffK subtracts off·sc·bsum from the integer lanes Y2/Y3, the
// sub-block scales as dwords in Y9 (lanes 0..7) and Y10 (8..15).
func (g *gen) avx2OffK(shift int) {
	for h := 0; h < 2; h++ {
		g.p("\tVPMULLD %d(DX), Y%d, Y%d", 32*h, 9+h, 9+h)
		g.p("\tVPSLLD $%d, Y%d, Y%d", shift, 9+h, 9+h)
		g.p("\tVPSUBD Y%d, Y%d, Y%d", 9+h, 2+h, 2+h)
	}
}

// avx2GroupQ3K: the third bit of element (h, j, i) is bit 4h+j of hm[i].
func (g *gen) avx2GroupQ3K() {
	g.p("\tVMOVQ 96(SI), X8")
	g.p("\tVPINSRD $2, 104(SI), X8, X8")
	g.p("\tVPSHUFD $0x44, X8, X9")
	g.p("\tVPSRLVD qk3shr1<>(SB), X9, X9")
	g.p("\tVPAND qk3and1<>(SB), X9, X9")
	g.p("\tVPSHUFD $0xaa, X8, X10")
	g.p("\tVPSRLVD qk3shr2<>(SB), X10, X10")
	g.p("\tVPAND qk3and2<>(SB), X10, X10")
	g.p("\tVPSLLD $4, X10, X10")
	g.p("\tVPOR X10, X9, X8")
	g.p("\tVPSUBB qk3b32<>(SB), X8, X8")
	g.p("\tVPMOVSXBW X8, Y9")
	g.p("\tVMOVDQU Y9, (SP)")
	g.p("\tVPMOVSXBD X8, Y9")
	g.p("\tVPSRLDQ $8, X8, X8")
	g.p("\tVPMOVSXBD X8, Y10")
	g.p("\tVPBROADCASTW 108(SI), X11")
	g.p("\tVCVTPH2PS X11, Y11")
	g.avx2Units23(32, func(j, h int) {
		b := 4*h + j
		g.p("\tVMOVDQU (SI), Y5")
		if b > 2 {
			g.p("\tVPSRLW $%d, Y5, Y5", b-2)
		} else if b < 2 {
			g.p("\tVPSLLW $%d, Y5, Y5", 2-b)
		}
		g.p("\tVPAND Y15, Y5, Y5")
		g.p("\tVPOR Y5, Y4, Y4")
	})
	g.avx2OffK(2)
	g.avx2FinK()
}

// avx2ConstsXS: Y12 1s, Y13 0x7f, Y14 0x0f bytes, Y15 the IQ4_NL table
// (+128) in both 128-bit lanes.
func (g *gen) avx2ConstsXS() {
	g.avx2Bcast(12, 0x01010101)
	g.avx2Bcast(13, 0x7f7f7f7f)
	g.avx2Bcast(14, 0x0f0f0f0f)
	g.avx2Table(15, iq4Table)
}

// avx2GroupXS: 8 scales (ls-32) as dwords in Y9 (Y10 = 0) and at 0(SP);
// the table values (up to 241) split as 2·(u>>1) + (u&1), both parts
// multiplied by the scale words (exact in integers).
func (g *gen) avx2GroupXS() {
	g.p("\tMOVWLZX 2(SI), AX")
	g.p("\tVMOVD AX, X9")
	g.p("\tVPBROADCASTD X9, Y9")
	g.p("\tVPSRLVD qxsh<>(SB), Y9, Y9")
	g.p("\tVPAND qx3<>(SB), Y9, Y9")
	g.p("\tVPSLLD $4, Y9, Y9")
	g.p("\tMOVL 4(SI), AX")
	g.p("\tVMOVD AX, X10")
	g.p("\tVPBROADCASTD X10, Y10")
	g.p("\tVPSRLVD qxsl<>(SB), Y10, Y10")
	g.p("\tVPAND qx15<>(SB), Y10, Y10")
	g.p("\tVPOR Y10, Y9, Y9")
	g.p("\tVPSUBD qx32<>(SB), Y9, Y9")
	g.p("\tVMOVDQU Y9, (SP)")
	g.p("\tVPXOR Y10, Y10, Y10")
	g.p("\tVPBROADCASTW (SI), X11")
	g.p("\tVCVTPH2PS X11, Y11")
	g.p("\tVPXOR Y2, Y2, Y2")
	g.p("\tVPXOR Y3, Y3, Y3")
	for c := 0; c < 2; c++ {
		for hh := 0; hh < 2; hh++ {
			g.p("\tVMOVDQU %d(SI), Y4", 8+64*c+32*hh)
			g.p("\tVPSRLW $4, Y4, Y5")
			g.p("\tVPAND Y14, Y4, Y4")
			g.p("\tVPAND Y14, Y5, Y5")
			// Scale words of sub-blocks 4c+2hh (low 128 bits), +1 (high).
			sub := 4*c + 2*hh
			g.p("\tVPBROADCASTW %d(SP), X7", 4*sub)
			g.p("\tVPBROADCASTW %d(SP), X8", 4*sub+4)
			g.p("\tVINSERTI128 $1, X8, Y7, Y7")
			for nib := 0; nib < 2; nib++ {
				u, w := 2*c+nib, 4+nib
				g.p("\tVPSHUFB Y%d, Y15, Y%d", w, w)
				g.p("\tVPSRLW $1, Y%d, Y6", w)
				g.p("\tVPAND Y13, Y6, Y6")
				g.p("\tVPAND Y12, Y%d, Y%d", w, w)
				g.p("\tVPMADDUBSW %d(CX), Y6, Y6", 64*u+32*hh)
				g.p("\tVPMADDWD Y7, Y6, Y6")
				g.p("\tVPSLLD $1, Y6, Y6")
				g.p("\tVPADDD Y6, Y%d, Y%d", 2+hh, 2+hh)
				g.avx2Madd(w, 64*u+32*hh, 7, 2+hh)
			}
		}
	}
	g.avx2OffK(7)
	g.avx2FinK()
}
