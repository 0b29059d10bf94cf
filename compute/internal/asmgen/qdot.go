package main

import (
	"fmt"
)

// The quantized dot-product kernels of compute.QMatMul (qdot_amd64.s).
//
// func qdot<T>R<R>AVX512(groups int, w *byte, rb int, ncol int, aq *int8, qs int, lan *int32, ls int, ad *float32, ds int, out *float32, ldo int, red int)
//
// For each of ncol weight rows (w, then every rb bytes) and R activation
// rows (aq, lan, ad, each row qs / ls / ds bytes after the previous one),
// the kernel runs `groups` groups of blocks of the lane model that
// compute/qmatmul.go describes and, with red == 0, stores each row's 16
// float32 lanes at out (column after column, R·16 floats each); with red
// != 0 it sums each row's lanes as qReduce does and stores the sum at out
// (row r at out + r·ldo bytes, the next column 4 bytes on). The portable Go kernels do
// the same operations in the same order; the caller sums the lanes.
//
// Registers: Z0..Z3 the rows' float lanes, Z4..Z7 their integer sums,
// Z8..Z11 temporaries, Z12..Z19 the group's unpacked weights and scales,
// Z20..Z31 constants. GPRs: BX groups left, SI the weight group, R8/R9/R10
// the activation group (q, lanes, scales), CX/DX/DI the row cursors,
// R11/R12/R13 the row strides.

// qdotType describes one kernel family member.
type qdotType struct {
	name string
	// wbytes, qbytes, lbytes, dbytes: what one group advances the weight,
	// activation, lane and scale pointers by.
	wbytes, qbytes, dbytes int
	// consts writes the constant set-up; prep the group's weight unpacking
	// (shared by the rows); row the per-row integer work on cursor CX into
	// Z(4+r); fin the per-row float step.
	consts func(g *gen)
	prep   func(g *gen)
	row    func(g *gen, r int)
	fin    func(g *gen, r int)
	// chunks > 0 splits prep/row into chunks (prepChunk/rowChunk) with the
	// row cursors reset between them.
	chunks    int
	prepChunk func(g *gen, c int)
	rowChunk  func(g *gen, c, r int)
}

// qdotMaxRows is the most activation rows one kernel call handles.
const qdotMaxRows = 4

// qdotKernels fills qdot_amd64.s: the quantized and float dot kernels of
// QMatMul (AVX-512 for 1..qdotMaxRows rows, AVX2) and the read probe.
func (g *gen) qdotKernels() {
	g.qdotData()
	for _, t := range qdotTypes() {
		for r := 1; r <= qdotMaxRows; r++ {
			g.qdotKernel(t, r)
		}
	}
	for _, ft := range []string{"F32", "F16", "BF16"} {
		for r := 1; r <= qdotMaxRows; r++ {
			g.qdotFloat(ft, r)
		}
	}
	g.qdotAVX2All()
	g.qquantKernels()
	g.qread()
}

// qdotData writes the index and count tables.
func (g *gen) qdotData() {
	var tabs []struct {
		name string
		v    []uint16
	}
	add := func(name string, v []uint16) {
		tabs = append(tabs, struct {
			name string
			v    []uint16
		}{name, v})
	}
	// qidx4: dword lane l takes element l/4 (a 4-block group's scales).
	var v []uint16
	for l := 0; l < 16; l++ {
		v = append(v, uint16(l/4), 0)
	}
	add("qidx4", v)
	// Q4_K / Q5_K unit u: word w takes sub-block 4(u/2)+u%2+2(w/16).
	for u := 0; u < 4; u++ {
		v = nil
		for w := 0; w < 32; w++ {
			v = append(v, uint16(4*(u/2)+u%2+2*(w/16)))
		}
		add(fmt.Sprintf("qidxk45u%d", u), v)
	}
	// Q6_K unit u: word w takes sub-block 4u + w/8.
	for u := 0; u < 4; u++ {
		v = nil
		for w := 0; w < 32; w++ {
			v = append(v, uint16(4*u+w/8))
		}
		add(fmt.Sprintf("qidxk6u%d", u), v)
	}
	// Word shift counts: a, then b in the upper 256 bits.
	cnt := func(name string, a, b int) {
		v = nil
		for w := 0; w < 32; w++ {
			if w < 16 {
				v = append(v, uint16(a))
			} else {
				v = append(v, uint16(b))
			}
		}
		add(name, v)
	}
	cnt("qcnt02", 0, 2)
	for u, s := range []int{0, 1, 4, 5} {
		cnt(fmt.Sprintf("qcntk5u%d", u), s, s+2)
	}
	// Q4_K scale unpack: per-dword right shifts and masks.
	add("qk4shr1", []uint16{0, 0, 0, 0, 0, 0, 4, 0})
	add("qk4and1", []uint16{0x3f3f, 0x3f3f, 0x0f0f, 0x0f0f, 0x3f3f, 0x3f3f, 0x0f0f, 0x0f0f})
	add("qk4shr2", []uint16{0, 0, 6, 0, 0, 0, 6, 0})
	add("qk4and2", []uint16{0, 0, 0x0303, 0x0303, 0, 0, 0x0303, 0x0303})
	// Q2_K / Q3_K unit j: word w takes sub-block 2j+w/8 (lower half) or
	// 8+2j+(w-16)/8 (upper half).
	for j := 0; j < 4; j++ {
		v = nil
		for w := 0; w < 32; w++ {
			if w < 16 {
				v = append(v, uint16(2*j+w/8))
			} else {
				v = append(v, uint16(8+2*j+(w-16)/8))
			}
		}
		add(fmt.Sprintf("qidxk3u%d", j), v)
		cnt(fmt.Sprintf("qcntk3u%d", j), j, 4+j)
	}
	// Q3_K scale unpack.
	add("qk3shr1", []uint16{0, 0, 0, 0, 4, 0, 4, 0})
	add("qk3and1", []uint16{0x0f0f, 0x0f0f, 0x0f0f, 0x0f0f, 0x0f0f, 0x0f0f, 0x0f0f, 0x0f0f})
	add("qk3shr2", []uint16{0, 0, 2, 0, 4, 0, 6, 0})
	add("qk3and2", []uint16{0x0303, 0x0303, 0x0303, 0x0303, 0x0303, 0x0303, 0x0303, 0x0303})
	add("qk3b32", []uint16{0x2020, 0x2020, 0x2020, 0x2020, 0x2020, 0x2020, 0x2020, 0x2020})
	// qidx4hi: dword lane l takes element 4+l/4.
	v = nil
	for l := 0; l < 16; l++ {
		v = append(v, uint16(4+l/4), 0)
	}
	add("qidx4hi", v)
	// IQ4_XS scales: shifts of scales_l and scales_h per sub-block, masks.
	dw := func(name string, f func(i int) int) {
		v = nil
		for i := 0; i < 8; i++ {
			v = append(v, uint16(f(i)), uint16(f(i)>>16))
		}
		add(name, v)
	}
	dw("qxsl", func(i int) int { return 4 * i })
	dw("qxsh", func(i int) int { return 2 * i })
	dw("qx15", func(int) int { return 15 })
	dw("qx3", func(int) int { return 3 })
	dw("qx32", func(int) int { return 32 })
	// Q5_0 / Q5_1 fifth bits: byte j of each 128-bit lane takes byte j/8
	// (low halves) or 2+j/8 (high halves) of the block's qh, tested
	// against bit j%8.
	bytesTab := func(name string, f func(j int) int) {
		v = nil
		for p := 0; p < 64; p += 2 {
			v = append(v, uint16(f(p%16)|f((p+1)%16)<<8))
		}
		add(name, v)
	}
	bytesTab("q5lo", func(j int) int { return j / 8 })
	bytesTab("q5hi", func(j int) int { return 2 + j/8 })
	bytesTab("q5bit", func(j int) int { return 1 << (j % 8) })
	for _, t := range tabs {
		for i := 0; i < len(t.v); i += 4 {
			var q uint64
			for j := 0; j < 4 && i+j < len(t.v); j++ {
				q |= uint64(t.v[i+j]) << (16 * j)
			}
			g.p("DATA %s<>+%d(SB)/8, $0x%016x", t.name, 2*i, q)
		}
		g.p("GLOBL %s<>(SB), RODATA|NOPTR, $%d", t.name, 2*len(t.v))
	}
}

// bcastByte sets every byte of Z<reg> to b.
func (g *gen) bcastByte(reg int, b byte) {
	g.p("\tMOVL $0x%02x%02x%02x%02x, AX", b, b, b, b)
	g.p("\tVPBROADCASTD AX, Z%d", reg)
}

// qdotKernel writes the kernel of t for R rows.
func (g *gen) qdotKernel(t qdotType, R int) {
	name := fmt.Sprintf("qdot%sR%dAVX512", t.name, R)
	g.text(name, "(groups int, w *byte, rb int, ncol int, aq *int8, qs int, lan *int32, ls int, ad *float32, ds int, out *float32, ldo int, red int)", 104)
	t.consts(g)
	g.args("qs+40 R11", "ls+56 R12", "ds+72 R13")
	col, grp := name+"_col", name+"_grp"
	g.p("%s:", col)
	g.args("w+8 SI", "aq+32 R8", "lan+48 R9", "ad+64 R10", "groups+0 BX")
	g.zero("VPXORD", "Z", R)
	g.p("%s:", grp)
	cursors := func() {
		g.p("\tMOVQ R8, CX")
		g.p("\tMOVQ R9, DX")
		g.p("\tMOVQ R10, DI")
	}
	next := func(r int) {
		if r < R-1 {
			g.p("\tADDQ R11, CX")
			g.p("\tADDQ R12, DX")
			g.p("\tADDQ R13, DI")
		}
	}
	if t.chunks > 0 {
		for c := 0; c < t.chunks; c++ {
			t.prepChunk(g, c)
			g.p("\tMOVQ R8, CX")
			for r := 0; r < R; r++ {
				if c == 0 {
					g.p("\tVPXORD Z%d, Z%d, Z%d", 4+r, 4+r, 4+r)
				}
				t.rowChunk(g, c, r)
				if r < R-1 {
					g.p("\tADDQ R11, CX")
				}
			}
		}
		t.prep(g)
		cursors()
		for r := 0; r < R; r++ {
			t.fin(g, r)
			next(r)
		}
	} else {
		t.prep(g)
		cursors()
		for r := 0; r < R; r++ {
			t.row(g, r)
			t.fin(g, r)
			next(r)
		}
	}
	g.p("\tADDQ $%d, SI", t.wbytes)
	g.p("\tADDQ $%d, R8", t.qbytes)
	g.p("\tADDQ $64, R9")
	g.p("\tADDQ $%d, R10", t.dbytes)
	g.p("\tDECQ BX")
	g.p("\tJNZ %s", grp)
	lanes, next2 := name+"_lanes", name+"_next"
	g.p("\tMOVQ out+80(FP), AX")
	g.p("\tCMPQ red+96(FP), $0")
	g.p("\tJEQ %s", lanes)
	g.p("\tMOVQ ldo+88(FP), CX")
	g.p("\tLEAQ (CX)(CX*2), DX")
	addr := []string{"(AX)", "(AX)(CX*1)", "(AX)(CX*2)", "(AX)(DX*1)"}
	g.reduceRows(R, addr)
	g.p("\tADDQ $4, AX")
	g.p("\tJMP %s", next2)
	g.p("%s:", lanes)
	for r := 0; r < R; r++ {
		g.p("\tVMOVUPS Z%d, %d(AX)", r, 64*r)
	}
	g.p("\tADDQ $%d, AX", 64*R)
	g.p("%s:", next2)
	g.p("\tMOVQ AX, out+80(FP)")
	g.nextColumn(col)
}

// nextColumn ends a kernel's column loop: the next weight row (w += rb),
// back to label col while ncol is not 0, then return.
func (g *gen) nextColumn(col string) {
	g.p("\tMOVQ w+8(FP), AX")
	g.p("\tADDQ rb+16(FP), AX")
	g.p("\tMOVQ AX, w+8(FP)")
	g.p("\tDECQ ncol+24(FP)")
	g.p("\tJNZ %s", col)
	g.vret()
}

// finB32 is the float step of the 32-element block types: lanes +=
// (dw·da)·float(isum), with dw's lanes in Z14.
func finB32(dw string) func(g *gen, r int) {
	return func(g *gen, r int) {
		g.p("\tVCVTDQ2PS Z%d, Z%d", 4+r, 4+r)
		g.p("\tVMULPS (DI), %s, Z8", dw)
		g.p("\tVMULPS Z%d, Z8, Z8", 4+r)
		g.p("\tVADDPS Z8, Z%d, Z%d", r, r)
	}
}

// nibbles4 loads the 16 quant bytes of 4 blocks (stride ts, from offset
// off) into the 128-bit lanes of Z12 and splits them into low (Z12) and
// high (Z13) nibbles.
func nibbles4(g *gen, off, ts int) {
	g.p("\tVMOVDQU %d(SI), X12", off)
	for i := 1; i < 4; i++ {
		g.p("\tVINSERTI32X4 $%d, %d(SI), Z12, Z12", i, off+i*ts)
	}
	splitNibbles(g)
}

// splitNibbles splits the bytes of Z12 into low (Z12) and high (Z13)
// nibbles (Z30 holds 0x0f bytes).
func splitNibbles(g *gen) {
	g.p("\tVPSRLW $4, Z12, Z13")
	g.p("\tVPANDD Z30, Z12, Z12")
	g.p("\tVPANDD Z30, Z13, Z13")
}

// halves4 loads the fp16 scales of 4 blocks (stride ts) into Z14's lanes
// [d0×4, d1×4, d2×4, d3×4].
func halves4(g *gen, ts int) { halves4At(g, ts, 0, 14) }

// halves4At loads the fp16 at offset off of 4 blocks (stride ts) into
// Z<reg>'s lanes [v0×4, v1×4, v2×4, v3×4].
func halves4At(g *gen, ts, off, reg int) {
	g.p("\tMOVWLZX %d(SI), AX", off)
	g.p("\tVMOVD AX, X%d", reg)
	for i := 1; i < 4; i++ {
		g.p("\tVPINSRW $%d, %d(SI), X%d, X%d", i, off+i*ts, reg, reg)
	}
	g.p("\tVCVTPH2PS X%d, X%d", reg, reg)
	g.p("\tVPERMD Z%d, Z29, Z%d", reg, reg)
}

// fifthBits4 adds 16 to the nibbles in Z12 (low halves) and Z13 (high)
// whose bit is set in their block's 32-bit qh (at offset off, stride ts).
// Z20/Z21 hold q5lo/q5hi, Z22 q5bit, Z23 0x10 bytes.
func fifthBits4(g *gen, ts, off int) {
	g.p("\tMOVL %d(SI), AX", off)
	g.p("\tVMOVD AX, X9")
	for i := 1; i < 4; i++ {
		g.p("\tVPINSRD $%d, %d(SI), X9, X9", i, off+i*ts)
	}
	g.p("\tVPERMD Z9, Z29, Z9")
	for h := 0; h < 2; h++ {
		g.p("\tVPSHUFB Z%d, Z9, Z10", 20+h)
		g.p("\tVPTESTMB Z22, Z10, K3")
		g.p("\tVPADDB Z23, Z%d, K3, Z%d", 12+h, 12+h)
	}
}

// consts5 sets Z20..Z23 for fifthBits4.
func consts5(g *gen) {
	g.p("\tVMOVDQU32 q5lo<>(SB), Z20")
	g.p("\tVMOVDQU32 q5hi<>(SB), Z21")
	g.p("\tVMOVDQU32 q5bit<>(SB), Z22")
	g.bcastByte(23, 0x10)
}

// tableZ28 puts a 16-byte table in every 128-bit lane of Z28.
func tableZ28(g *gen, tab []byte) {
	g.p("\tMOVQ $0x%016x, AX", le64(tab[:8]))
	g.p("\tVMOVQ AX, X28")
	g.p("\tMOVQ $0x%016x, AX", le64(tab[8:]))
	g.p("\tVPINSRQ $1, AX, X28, X28")
	g.p("\tVSHUFI64X2 $0, Z28, Z28, Z28")
}

// finB32Min is finB32 plus the min term (mw·da)·float(Σa), mw's lanes in
// Z15 and Σa the lane words.
func finB32Min(g *gen, r int) {
	finB32("Z14")(g, r)
	g.p("\tVCVTDQ2PS (DX), Z9")
	g.p("\tVMULPS (DI), Z15, Z10")
	g.p("\tVMULPS Z9, Z10, Z10")
	g.p("\tVADDPS Z10, Z%d, Z%d", r, r)
}

// finOff is the k-quant float step for offset types: isum -= off·Σ
// sc·bsum (Z17 the sub-block scales as dwords), then lanes +=
// (d·da)·float(isum), d in Z18.
func finOff(shift int) func(g *gen, r int) {
	return func(g *gen, r int) {
		a, f := 4+r, r
		g.p("\tVPMULLD (DX), Z17, Z8")
		g.p("\tVPSLLD $%d, Z8, Z8", shift)
		g.p("\tVPSUBD Z8, Z%d, Z%d", a, a)
		g.p("\tVCVTDQ2PS Z%d, Z%d", a, a)
		g.p("\tVBROADCASTSS (DI), Z9")
		g.p("\tVMULPS Z9, Z18, Z10")
		g.p("\tVMULPS Z%d, Z10, Z10", a)
		g.p("\tVADDPS Z10, Z%d, Z%d", f, f)
	}
}

func qdotTypes() []qdotType {
	rowB32x4 := func(g *gen, r int) {
		g.p("\tVMOVDQU32 (DX), Z%d", 4+r)
		g.p("\tVPDPBUSD (CX), Z12, Z%d", 4+r)
		g.p("\tVPDPBUSD 64(CX), Z13, Z%d", 4+r)
	}
	constsB32x4 := func(g *gen) {
		g.bcastByte(30, 0x0f)
		g.p("\tVMOVDQU32 qidx4<>(SB), Z29")
	}
	q8 := qdotType{
		name: "Q8_0", wbytes: 68, qbytes: 64, dbytes: 64,
		consts: func(g *gen) { g.bcastByte(31, 0x80) },
		prep: func(g *gen) {
			g.p("\tVMOVDQU 2(SI), Y12")
			g.p("\tVINSERTI64X4 $1, 36(SI), Z12, Z12")
			g.p("\tVPXORD Z31, Z12, Z12")
			g.p("\tVPBROADCASTW (SI), X14")
			g.p("\tVPBROADCASTW 34(SI), X15")
			g.p("\tVINSERTI128 $1, X15, Y14, Y14")
			g.p("\tVCVTPH2PS Y14, Z14")
		},
		row: func(g *gen, r int) {
			g.p("\tVMOVDQU32 (DX), Z%d", 4+r)
			g.p("\tVPDPBUSD (CX), Z12, Z%d", 4+r)
		},
		fin: finB32("Z14"),
	}
	q4 := qdotType{
		name: "Q4_0", wbytes: 72, qbytes: 128, dbytes: 64,
		consts: constsB32x4,
		prep: func(g *gen) {
			nibbles4(g, 2, 18)
			halves4(g, 18)
		},
		row: rowB32x4,
		fin: finB32("Z14"),
	}
	iq4 := q4
	iq4.name = "IQ4_NL"
	iq4.consts = func(g *gen) {
		constsB32x4(g)
		// ggml's IQ4_NL values + 128, in every 128-bit lane.
		tableZ28(g, iq4Table)
	}
	iq4.prep = func(g *gen) {
		nibbles4(g, 2, 18)
		g.p("\tVPSHUFB Z12, Z28, Z12")
		g.p("\tVPSHUFB Z13, Z28, Z13")
		halves4(g, 18)
	}
	// The k-quants: Z16 the sub-block scales as words, Z17 the dwords
	// the lane correction multiplies, Z18 d, Z19 dmin.
	rowK := func(g *gen, c, r int) {
		for h := 0; h < 2; h++ {
			g.p("\tVPMADDUBSW %d(CX), Z%d, Z8", 64*(2*c+h), 12+h)
			g.p("\tVPDPWSSD Z%d, Z8, Z%d", 14+h, 4+r)
		}
	}
	q4kScales := func(g *gen) {
		// 12 bytes at 4(SI) → [sc0..7, m0..7] in X15 (ggml's utmp shuffle).
		g.p("\tVMOVDQU 4(SI), X15")
		g.p("\tVPSHUFD $0x98, X15, X8") // [u0, u2, u1, u2]
		g.p("\tVPSRLVD qk4shr1<>(SB), X8, X8")
		g.p("\tVPANDD qk4and1<>(SB), X8, X8")
		g.p("\tVPSHUFD $0x50, X15, X9") // [u0, u0, u1, u1]
		g.p("\tVPSRLVD qk4shr2<>(SB), X9, X9")
		g.p("\tVPANDD qk4and2<>(SB), X9, X9")
		g.p("\tVPSLLD $4, X9, X9")
		g.p("\tVPORD X9, X8, X15")
		g.p("\tVPMOVZXBW X15, Y16")
		g.p("\tVPMOVZXBD X15, Z17")
		g.p("\tVEXTRACTI64X4 $1, Z17, Y17")
		g.p("\tVPBROADCASTW (SI), Y18")
		g.p("\tVCVTPH2PS Y18, Z18")
		g.p("\tVPBROADCASTW 2(SI), Y19")
		g.p("\tVCVTPH2PS Y19, Z19")
	}
	finMin := func(g *gen, r int) {
		a, f := 4+r, r
		g.p("\tVPMULLD (DX), Z17, Z8")
		g.p("\tVCVTDQ2PS Z%d, Z%d", a, a)
		g.p("\tVBROADCASTSS (DI), Z9")
		g.p("\tVMULPS Z9, Z18, Z10")
		g.p("\tVMULPS Z%d, Z10, Z10", a)
		g.p("\tVADDPS Z10, Z%d, Z%d", f, f)
		g.p("\tVCVTDQ2PS Z8, Z8")
		g.p("\tVMULPS Z9, Z19, Z11")
		g.p("\tVMULPS Z8, Z11, Z11")
		g.p("\tVSUBPS Z11, Z%d, Z%d", f, f)
	}
	constsK45 := func(g *gen) {
		g.bcastByte(30, 0x0f)
		for u := 0; u < 4; u++ {
			g.p("\tVMOVDQU32 qidxk45u%d<>(SB), Z%d", u, 24+u)
		}
	}
	q4k := qdotType{
		name: "Q4_K", wbytes: 144, qbytes: 256, dbytes: 4, chunks: 2,
		consts: constsK45,
		prepChunk: func(g *gen, c int) {
			if c == 0 {
				q4kScales(g)
			}
			g.p("\tVMOVDQU8 %d(SI), Z12", 16+64*c)
			splitNibbles(g)
			g.p("\tVPERMW Z16, Z%d, Z14", 24+2*c)
			g.p("\tVPERMW Z16, Z%d, Z15", 25+2*c)
		},
		rowChunk: rowK,
		prep:     func(g *gen) {},
		fin:      finMin,
	}
	q5k := q4k
	q5k.name, q5k.wbytes = "Q5_K", 176
	q5k.consts = func(g *gen) {
		constsK45(g)
		g.bcastByte(28, 0x01)
		for u := 0; u < 4; u++ {
			g.p("\tVMOVDQU32 qcntk5u%d<>(SB), Z%d", u, 20+u)
		}
	}
	q5k.prepChunk = func(g *gen, c int) {
		if c == 0 {
			q4kScales(g)
			g.p("\tVBROADCASTI64X4 16(SI), Z31")
		}
		g.p("\tVMOVDQU8 %d(SI), Z12", 48+64*c)
		splitNibbles(g)
		for h := 0; h < 2; h++ {
			g.p("\tVPSRLVW Z%d, Z31, Z9", 20+2*c+h)
			g.p("\tVPANDD Z28, Z9, Z9")
			g.p("\tVPSLLW $4, Z9, Z9")
			g.p("\tVPORD Z9, Z%d, Z%d", 12+h, 12+h)
		}
		g.p("\tVPERMW Z16, Z%d, Z14", 24+2*c)
		g.p("\tVPERMW Z16, Z%d, Z15", 25+2*c)
	}
	q6k := qdotType{
		name: "Q6_K", wbytes: 210, qbytes: 256, dbytes: 4, chunks: 2,
		consts: func(g *gen) {
			g.bcastByte(30, 0x0f)
			g.bcastByte(28, 0x30)
			g.p("\tVMOVDQU32 qcnt02<>(SB), Z29")
			for u := 0; u < 4; u++ {
				g.p("\tVMOVDQU32 qidxk6u%d<>(SB), Z%d", u, 24+u)
			}
		},
		prepChunk: func(g *gen, c int) {
			if c == 0 {
				g.p("\tVPMOVSXBW 192(SI), Y16")
				g.p("\tVPMOVSXBD 192(SI), Z17")
				g.p("\tVPBROADCASTW 208(SI), Y18")
				g.p("\tVCVTPH2PS Y18, Z18")
			}
			g.p("\tVMOVDQU8 %d(SI), Z12", 64*c)
			g.p("\tVBROADCASTI64X4 %d(SI), Z9", 128+32*c)
			g.p("\tVPSRLVW Z29, Z9, Z9")
			g.p("\tVPSLLW $4, Z9, Z10")
			g.p("\tVPANDD Z28, Z10, Z10")
			g.p("\tVPANDD Z28, Z9, Z9")
			g.p("\tVPSRLW $4, Z12, Z13")
			g.p("\tVPANDD Z30, Z13, Z13")
			g.p("\tVPORD Z9, Z13, Z13")
			g.p("\tVPANDD Z30, Z12, Z12")
			g.p("\tVPORD Z10, Z12, Z12")
			g.p("\tVPERMW Z16, Z%d, Z14", 24+2*c)
			g.p("\tVPERMW Z16, Z%d, Z15", 25+2*c)
		},
		rowChunk: rowK,
		prep:     func(g *gen) {},
		fin:      finOff(5),
	}
	rowB32Min := func(g *gen, r int) {
		g.p("\tVPXORD Z%d, Z%d, Z%d", 4+r, 4+r, 4+r)
		g.p("\tVPDPBUSD (CX), Z12, Z%d", 4+r)
		g.p("\tVPDPBUSD 64(CX), Z13, Z%d", 4+r)
	}
	q41 := qdotType{
		name: "Q4_1", wbytes: 80, qbytes: 128, dbytes: 64,
		consts: constsB32x4,
		prep: func(g *gen) {
			nibbles4(g, 4, 20)
			halves4(g, 20)
			halves4At(g, 20, 2, 15)
		},
		row: rowB32Min,
		fin: finB32Min,
	}
	q50 := qdotType{
		name: "Q5_0", wbytes: 88, qbytes: 128, dbytes: 64,
		consts: func(g *gen) { constsB32x4(g); consts5(g) },
		prep: func(g *gen) {
			nibbles4(g, 6, 22)
			fifthBits4(g, 22, 2)
			halves4(g, 22)
		},
		row: rowB32x4,
		fin: finB32("Z14"),
	}
	q51 := qdotType{
		name: "Q5_1", wbytes: 96, qbytes: 128, dbytes: 64,
		consts: func(g *gen) { constsB32x4(g); consts5(g) },
		prep: func(g *gen) {
			nibbles4(g, 8, 24)
			fifthBits4(g, 24, 4)
			halves4(g, 24)
			halves4At(g, 24, 2, 15)
		},
		row: rowB32Min,
		fin: finB32Min,
	}
	mx := qdotType{
		name: "MXFP4", wbytes: 68, qbytes: 128, dbytes: 64,
		consts: func(g *gen) {
			constsB32x4(g)
			tableZ28(g, fp4Table)
			g.p("\tMOVL $1, AX")
			g.p("\tVPBROADCASTD AX, Z20")
			g.p("\tMOVL $2, AX")
			g.p("\tVPBROADCASTD AX, Z21")
			g.p("\tMOVL $0x00200000, AX")
			g.p("\tVPBROADCASTD AX, Z22")
		},
		prep: func(g *gen) {
			nibbles4(g, 1, 17)
			g.p("\tVPSHUFB Z12, Z28, Z12")
			g.p("\tVPSHUFB Z13, Z28, Z13")
			// e8m0 halved: e < 2 ? 0x00200000<<e : (e-1)<<23, as bits.
			g.p("\tMOVBLZX (SI), AX")
			g.p("\tVMOVD AX, X14")
			for i := 1; i < 4; i++ {
				g.p("\tVPINSRB $%d, %d(SI), X14, X14", i, 17*i)
			}
			g.p("\tVPMOVZXBD X14, X14")
			g.p("\tVPSUBD X20, X14, X15")
			g.p("\tVPSLLD $23, X15, X15")
			g.p("\tVPSLLVD X14, X22, X16")
			g.p("\tVPCMPUD $1, X21, X14, K2")
			g.p("\tVPBLENDMD X16, X15, K2, X14")
			g.p("\tVPERMD Z14, Z29, Z14")
		},
		row: rowB32x4,
		fin: finB32("Z14"),
	}
	// IQ4_XS: table values +128 overflow vpmaddubsw's words, so the
	// sub-scales multiply vpdpbusd's dwords (Z14: this chunk's lanes).
	iq4xs := qdotType{
		name: "IQ4_XS", wbytes: 136, qbytes: 256, dbytes: 4, chunks: 2,
		consts: func(g *gen) {
			g.bcastByte(30, 0x0f)
			tableZ28(g, iq4Table)
			g.p("\tVMOVDQU32 qidx4<>(SB), Z29")
			g.p("\tVMOVDQU32 qidx4hi<>(SB), Z27")
		},
		prepChunk: func(g *gen, c int) {
			if c == 0 {
				g.p("\tMOVWLZX 2(SI), AX")
				g.p("\tVPBROADCASTD AX, Y9")
				g.p("\tVPSRLVD qxsh<>(SB), Y9, Y9")
				g.p("\tVPANDD qx3<>(SB), Y9, Y9")
				g.p("\tVPSLLD $4, Y9, Y9")
				g.p("\tMOVL 4(SI), AX")
				g.p("\tVPBROADCASTD AX, Y10")
				g.p("\tVPSRLVD qxsl<>(SB), Y10, Y10")
				g.p("\tVPANDD qx15<>(SB), Y10, Y10")
				g.p("\tVPORD Y9, Y10, Y17")
				g.p("\tVPSUBD qx32<>(SB), Y17, Y17")
				g.p("\tVPBROADCASTW (SI), Y18")
				g.p("\tVCVTPH2PS Y18, Z18")
			}
			g.p("\tVMOVDQU8 %d(SI), Z12", 8+64*c)
			splitNibbles(g)
			g.p("\tVPSHUFB Z12, Z28, Z12")
			g.p("\tVPSHUFB Z13, Z28, Z13")
			g.p("\tVPERMD Z17, Z%d, Z14", []int{29, 27}[c])
		},
		rowChunk: func(g *gen, c, r int) {
			for h := 0; h < 2; h++ {
				g.p("\tVPXORD Z8, Z8, Z8")
				g.p("\tVPDPBUSD %d(CX), Z%d, Z8", 64*(2*c+h), 12+h)
				g.p("\tVPMULLD Z14, Z8, Z8")
				g.p("\tVPADDD Z8, Z%d, Z%d", 4+r, 4+r)
			}
		},
		prep: func(g *gen) {},
		fin:  finOff(7),
	}
	// Q2_K / Q3_K: unit j holds bits 2j..2j+1 of the 64 qs bytes (Z11).
	constsK23 := func(g *gen) {
		g.bcastByte(30, 0x0f)
		g.bcastByte(22, 0x03)
		g.bcastByte(28, 0x01)
		for j := 0; j < 4; j++ {
			g.p("\tVMOVDQU32 qidxk3u%d<>(SB), Z%d", j, 24+j)
		}
	}
	lowBits := func(g *gen, c int) {
		for h := 0; h < 2; h++ {
			j := 2*c + h
			g.p("\tVPSRLW $%d, Z11, Z%d", 2*j, 12+h)
			g.p("\tVPANDD Z22, Z%d, Z%d", 12+h, 12+h)
		}
	}
	q3k := qdotType{
		name: "Q3_K", wbytes: 110, qbytes: 256, dbytes: 4, chunks: 2,
		consts: func(g *gen) {
			constsK23(g)
			for j, reg := range []int{19, 20, 21, 23} {
				g.p("\tVMOVDQU32 qcntk3u%d<>(SB), Z%d", j, reg)
			}
		},
		prepChunk: func(g *gen, c int) {
			if c == 0 {
				g.p("\tVMOVQ 96(SI), X15")
				g.p("\tVPINSRD $2, 104(SI), X15, X15")
				g.p("\tVPSHUFD $0x44, X15, X8")
				g.p("\tVPSRLVD qk3shr1<>(SB), X8, X8")
				g.p("\tVPANDD qk3and1<>(SB), X8, X8")
				g.p("\tVPSHUFD $0xaa, X15, X9")
				g.p("\tVPSRLVD qk3shr2<>(SB), X9, X9")
				g.p("\tVPANDD qk3and2<>(SB), X9, X9")
				g.p("\tVPSLLD $4, X9, X9")
				g.p("\tVPORD X9, X8, X15")
				g.p("\tVPSUBB qk3b32<>(SB), X15, X15")
				g.p("\tVPMOVSXBW X15, Y16")
				g.p("\tVPMOVSXBD X15, Z17")
				g.p("\tVPBROADCASTW 108(SI), Y18")
				g.p("\tVCVTPH2PS Y18, Z18")
				g.p("\tVMOVDQU8 32(SI), Z11")
				g.p("\tVBROADCASTI64X4 (SI), Z31")
			}
			lowBits(g, c)
			for h := 0; h < 2; h++ {
				j := 2*c + h
				g.p("\tVPSRLVW Z%d, Z31, Z9", []int{19, 20, 21, 23}[j])
				g.p("\tVPANDD Z28, Z9, Z9")
				g.p("\tVPSLLW $2, Z9, Z9")
				g.p("\tVPORD Z9, Z%d, Z%d", 12+h, 12+h)
				g.p("\tVPERMW Z16, Z%d, Z%d", 24+j, 14+h)
			}
		},
		rowChunk: rowK,
		prep:     func(g *gen) {},
		fin:      finOff(2),
	}
	q2k := qdotType{
		name: "Q2_K", wbytes: 84, qbytes: 256, dbytes: 4, chunks: 2,
		consts: constsK23,
		prepChunk: func(g *gen, c int) {
			if c == 0 {
				g.p("\tVMOVDQU (SI), X15")
				g.p("\tVPANDD X30, X15, X8")
				g.p("\tVPMOVZXBW X8, Y16")
				g.p("\tVPSRLW $4, X15, X9")
				g.p("\tVPANDD X30, X9, X9")
				g.p("\tVPMOVZXBD X9, Z17")
				g.p("\tVPBROADCASTW 80(SI), Y18")
				g.p("\tVCVTPH2PS Y18, Z18")
				g.p("\tVPBROADCASTW 82(SI), Y19")
				g.p("\tVCVTPH2PS Y19, Z19")
				g.p("\tVMOVDQU8 16(SI), Z11")
			}
			lowBits(g, c)
			for h := 0; h < 2; h++ {
				g.p("\tVPERMW Z16, Z%d, Z%d", 24+2*c+h, 14+h)
			}
		},
		rowChunk: rowK,
		prep:     func(g *gen) {},
		fin:      finMin,
	}
	return []qdotType{q8, q4, iq4, q4k, q5k, q6k, q41, q50, q51, mx, iq4xs, q3k, q2k}
}

// iq4Table is ggml's IQ4_NL values plus 128; fp4Table its doubled e2m1
// (MXFP4) values plus 16.
var (
	iq4Table = []byte{1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241}
	fp4Table = []byte{16, 17, 18, 19, 20, 22, 24, 28, 16, 15, 14, 13, 12, 10, 8, 4}
)

func le64(b []byte) uint64 {
	var v uint64
	for i, x := range b {
		v |= uint64(x) << (8 * i)
	}
	return v
}

// qread writes func qReadAVX512(n int, p *byte) uint64: the xor of the
// 8-byte words of p[0:n] (n a multiple of 256), a plain read of memory for
// comparing kernels' bandwidth with.
func (g *gen) qread() {
	g.text("qReadAVX512", "(n int, p *byte) uint64", 24,
		"qReadAVX512 returns the xor of the 8-byte words of p[0:n] (n a multiple",
		"of 256): in Go, for i := 0; i < n; i += 8 { x ^= binary.LittleEndian.Uint64(p[i:]) }.")
	g.args("n+0 CX", "p+8 SI")
	g.zero("VPXORQ", "Z", 4)
	g.p("\tSHRQ $8, CX")
	g.p("\tJZ qread_done")
	g.p("qread_loop:")
	for i := 0; i < 4; i++ {
		g.p("\tVPXORQ %d(SI), Z%d, Z%d", 64*i, i, i)
	}
	g.p("\tADDQ $256, SI")
	g.p("\tDECQ CX")
	g.p("\tJNZ qread_loop")
	g.p("qread_done:")
	g.p("\tVPXORQ Z1, Z0, Z0")
	g.p("\tVPXORQ Z3, Z2, Z2")
	g.p("\tVPXORQ Z2, Z0, Z0")
	g.p("\tVEXTRACTI64X4 $1, Z0, Y1")
	g.p("\tVPXORQ Y1, Y0, Y0")
	g.p("\tVEXTRACTI128 $1, Y0, X1")
	g.p("\tVPXORQ X1, X0, X0")
	g.p("\tVPSHUFD $0x4e, X0, X1")
	g.p("\tVPXORQ X1, X0, X0")
	g.p("\tVMOVQ X0, AX")
	g.p("\tMOVQ AX, ret+16(FP)")
	g.vret()
}

// qdotFloat writes the float-weight kernel for R rows:
// func qdot<T>R<R>AVX512(n16 int, w *byte, rb int, ncol int, a *float32, lda int, rem int, out *float32, ldo int)
// For each of ncol weight rows of 16·n16+rem elements (f32, f16 or bf16;
// the next row rb bytes on) and R rows of a (lda bytes apart), lane l sums
// a[i]·w[i] for i ≡ l (mod 16), multiply then add, in order; the lanes are
// summed as qReduce does and stored at out (row r at out + r·ldo bytes,
// the next column 4 bytes on).
func (g *gen) qdotFloat(ft string, R int) {
	name := fmt.Sprintf("qdot%sR%dAVX512", ft, R)
	esz := map[string]int{"F32": 4, "F16": 2, "BF16": 2}[ft]
	load := func(mask string) {
		switch ft {
		case "F32":
			g.p("\tVMOVUPS%s (SI), %sZ12", maskSuffix(mask), mask)
		case "F16":
			g.p("\tVCVTPH2PS%s (SI), %sZ12", maskSuffix(mask), mask)
		case "BF16":
			g.p("\tVPMOVZXWD%s (SI), %sZ12", maskSuffix(mask), mask)
			g.p("\tVPSLLD $16, Z12, Z12")
		}
	}
	addr := []string{"(R8)", "(R8)(R11*1)", "(R8)(R11*2)", "(R8)(DX*1)"}
	g.text(name, "(n16 int, w *byte, rb int, ncol int, a *float32, lda int, rem int, out *float32, ldo int)", 72)
	g.p("\tMOVQ lda+40(FP), R11")
	g.p("\tLEAQ (R11)(R11*2), DX")
	g.p("\tMOVQ rem+48(FP), CX")
	g.p("\tMOVL $1, AX")
	g.p("\tSHLL CX, AX")
	g.p("\tDECL AX")
	g.p("\tKMOVW AX, K1")
	g.p("%s_col:", name)
	g.args("w+8 SI", "a+32 R8", "n16+0 BX")
	g.zero("VPXORD", "Z", R)
	g.p("\tTESTQ BX, BX")
	g.p("\tJZ %s_tail", name)
	g.p("%s_loop:", name)
	load("")
	for r := 0; r < R; r++ {
		g.p("\tVMULPS %s, Z12, Z%d", addr[r], 4+r)
		g.p("\tVADDPS Z%d, Z%d, Z%d", 4+r, r, r)
	}
	g.p("\tADDQ $%d, SI", 16*esz)
	g.p("\tADDQ $64, R8")
	g.p("\tDECQ BX")
	g.p("\tJNZ %s_loop", name)
	g.p("%s_tail:", name)
	g.p("\tCMPQ rem+48(FP), $0")
	g.p("\tJEQ %s_red", name)
	load("K1, ")
	for r := 0; r < R; r++ {
		g.p("\tVMULPS.Z %s, Z12, K1, Z%d", addr[r], 4+r)
		g.p("\tVADDPS Z%d, Z%d, K1, Z%d", 4+r, r, r)
	}
	g.p("%s_red:", name)
	g.args("out+56 AX", "ldo+64 CX")
	g.p("\tLEAQ (CX)(CX*2), R9")
	oaddr := []string{"(AX)", "(AX)(CX*1)", "(AX)(CX*2)", "(AX)(R9*1)"}
	g.reduceRows(R, oaddr)
	g.p("\tADDQ $4, AX")
	g.p("\tMOVQ AX, out+56(FP)")
	g.nextColumn(name + "_col")
}

// maskSuffix is the zeroing suffix for a masked load.
func maskSuffix(mask string) string {
	if mask == "" {
		return ""
	}
	return ".Z"
}

// reduceRows sums the 16 lanes of each of Z0..Z(R-1) as qReduce does and
// stores row r's sum at addr[r]. Four rows are summed side by side (one
// shuffle-and-add tree for all, the same additions as reduce16 does for
// each: float addition is commutative, so which operand comes first does
// not matter); it uses Z4..Z11.
func (g *gen) reduceRows(R int, addr []string) {
	if R != 4 {
		for r := 0; r < R; r++ {
			g.reduce16(r, addr[r])
		}
		return
	}
	// l+8: [Z0, Z1] and [Z2, Z3] 256-bit halves, paired.
	g.p("\tVSHUFF64X2 $0x44, Z1, Z0, Z4")
	g.p("\tVSHUFF64X2 $0xee, Z1, Z0, Z5")
	g.p("\tVSHUFF64X2 $0x44, Z3, Z2, Z6")
	g.p("\tVSHUFF64X2 $0xee, Z3, Z2, Z7")
	g.p("\tVADDPS Z5, Z4, Z4")
	g.p("\tVADDPS Z7, Z6, Z6")
	// l+4: 128-bit lane r of Z8 then holds row r's 4 partial sums.
	g.p("\tVSHUFF64X2 $0x88, Z6, Z4, Z8")
	g.p("\tVSHUFF64X2 $0xdd, Z6, Z4, Z9")
	g.p("\tVADDPS Z9, Z8, Z8")
	// l+2, then l+1, within each 128-bit lane.
	g.p("\tVPERMILPS $0x4e, Z8, Z9")
	g.p("\tVADDPS Z9, Z8, Z8")
	g.p("\tVMOVSHDUP Z8, Z9")
	g.p("\tVADDPS Z9, Z8, Z8")
	g.p("\tVMOVSS X8, %s", addr[0])
	for r := 1; r < 4; r++ {
		g.p("\tVEXTRACTF32X4 $%d, Z8, X9", r)
		g.p("\tVMOVSS X9, %s", addr[r])
	}
}

// reduce16 sums the 16 lanes of Z<r> as qReduce does (l+8, l+4, l+2, l+1)
// and stores the sum at addr; it uses X8 and X9.
func (g *gen) reduce16(r int, addr string) {
	g.p("\tVEXTRACTF64X4 $1, Z%d, Y8", r)
	g.p("\tVADDPS Y8, Y%d, Y8", r)
	g.reduce8(addr)
}

// reduce8 finishes reduce16 from Y8 (lanes l and l+8 summed): l+4, l+2,
// l+1, the sum stored at addr; it uses X8 and X9.
func (g *gen) reduce8(addr string) {
	g.p("\tVEXTRACTF128 $1, Y8, X9")
	g.p("\tVADDPS X9, X8, X8")
	g.p("\tVMOVHLPS X8, X8, X9")
	g.p("\tVADDPS X9, X8, X8")
	g.p("\tVMOVSHDUP X8, X9")
	g.p("\tVADDSS X9, X8, X8")
	g.p("\tVMOVSS X8, %s", addr)
}
