package main

import "fmt"

// The activation quantizers of compute.QMatMul (qdot_amd64.s), AVX-512.
//
// func qquantB32G<bpg>AVX512(groups int, x *float32, q *int8, lan *int32, d *float32, mul int) (special int)
//
// For `groups` groups of bpg 32-element blocks of x (bpg 2: one 64-byte
// unit per group, blocks in element order; bpg 4: two units, the first
// holding the first 16 values of each block, the second the last 16), each
// block is quantized as compute's quantBlock does (largest magnitude amax,
// values·(127/amax) rounded to nearest even) and its scale amax/127 rounded
// to float16 is stored in the block's lanes of d (16 floats a group); lan
// gets each lane's sum of its 4 bytes (both units for bpg 4) times mul.
// A block whose amax is 0, infinite or NaN stops the kernel, which returns
// 1 (the caller quantizes the row in Go); else it returns 0.
//
// Registers: Z0/Z1 the block's values, Z2..Z5 temporaries, Z26 the
// multiplier, Z27 ones (bytes), Z28 127.0, Z29 the magnitude mask.

// qquantKernels writes the activation quantizers.
func (g *gen) qquantKernels() {
	for _, bpg := range []int{2, 4} {
		g.qquantB32(bpg)
	}
	g.qquantK()
	for _, l := range g.data {
		g.p("%s", l)
	}
	g.data = nil
}

// qquantB32 writes the quantizer of groups of bpg blocks.
func (g *gen) qquantB32(bpg int) {
	name := fmt.Sprintf("qquantB32G%dAVX512", bpg)
	g.text(name, "(groups int, x *float32, q *int8, lan *int32, d *float32, mul int) (special int)", 56)
	g.args("groups+0 BX", "x+8 SI", "q+16 DI", "lan+24 R8", "d+32 R9", "mul+40 AX")
	g.p("\tVPBROADCASTD AX, Z26")
	g.bcastByte(27, 1)
	g.qquantConsts()
	halves := bpg / 2
	lpb := 16 / bpg // lanes per block
	grp := name + "_grp"
	g.p("%s:", grp)
	for bi := 0; bi < bpg; bi++ {
		g.p("\tVMOVUPS %d(SI), Z0", 128*bi)
		g.p("\tVMOVUPS %d(SI), Z1", 128*bi+64)
		// The largest magnitude's bits, in every lane of X2.
		g.p("\tVPANDD Z29, Z0, Z2")
		g.p("\tVPANDD Z29, Z1, Z3")
		g.p("\tVPMAXUD Z3, Z2, Z2")
		g.p("\tVEXTRACTI64X4 $1, Z2, Y3")
		g.p("\tVPMAXUD Y3, Y2, Y2")
		g.p("\tVEXTRACTI128 $1, Y2, X3")
		g.p("\tVPMAXUD X3, X2, X2")
		g.p("\tVPSHUFD $0x4e, X2, X3")
		g.p("\tVPMAXUD X3, X2, X2")
		g.p("\tVPSHUFD $0xb1, X2, X3")
		g.p("\tVPMAXUD X3, X2, X2")
		g.qquantSpecial(name, 2)
		// id = 127/amax; the values times id, rounded to nearest even.
		g.p("\tVDIVSS X2, X28, X4")
		g.p("\tVBROADCASTSS X4, Z4")
		g.p("\tVMULPS Z4, Z0, Z0")
		g.p("\tVMULPS Z4, Z1, Z1")
		g.p("\tVCVTPS2DQ Z0, Z0")
		g.p("\tVCVTPS2DQ Z1, Z1")
		if halves == 1 {
			g.p("\tVPMOVDB Z0, %d(DI)", 32*bi)
			g.p("\tVPMOVDB Z1, %d(DI)", 32*bi+16)
		} else {
			g.p("\tVPMOVDB Z0, %d(DI)", 16*bi)
			g.p("\tVPMOVDB Z1, %d(DI)", 64+16*bi)
		}
		// The scale amax/127, rounded to float16, in the block's lanes.
		g.p("\tVDIVSS X28, X2, X5")
		g.p("\tVCVTPS2PH $0, X5, X5")
		g.p("\tVCVTPH2PS X5, X5")
		if lpb == 8 {
			g.p("\tVBROADCASTSS X5, Y5")
			g.p("\tVMOVUPS Y5, %d(R9)", 4*lpb*bi)
		} else {
			g.p("\tVBROADCASTSS X5, X5")
			g.p("\tVMOVUPS X5, %d(R9)", 4*lpb*bi)
		}
	}
	// Lane sums of 4 bytes (of both units), times mul.
	g.p("\tVPXORD Z3, Z3, Z3")
	for h := 0; h < halves; h++ {
		g.p("\tVPDPBUSD %d(DI), Z27, Z3", 64*h)
	}
	g.p("\tVPMULLD Z26, Z3, Z3")
	g.p("\tVMOVDQU32 Z3, (R8)")
	g.p("\tADDQ $%d, SI", 128*bpg)
	g.p("\tADDQ $%d, DI", 64*halves)
	g.p("\tADDQ $64, R8")
	g.p("\tADDQ $64, R9")
	g.p("\tDECQ BX")
	g.qquantReturn(name, grp)
}

// qquantK writes the k-quant activation quantizer:
//
// func qquantKAVX512(groups int, x *float32, q *int8, lan *int32, d *float32, dst *int) (special int)
//
// For `groups` super-blocks of 256 values of x, each is quantized as one
// quantBlock (its scale amax/127 stored at d, one float a super-block), the
// 16 bytes of values 16i..16i+15 stored at q + dst[i], and lan gets the 16
// sums of those runs (16 int32s a super-block). A super-block whose amax is
// 0, infinite or NaN stops the kernel, which returns 1; else it returns 0.
//
// Registers: Z0..Z15 the values (then their integers), Z16..Z25
// temporaries, Z28 127.0, Z29 the magnitude mask.
func (g *gen) qquantK() {
	name := "qquantKAVX512"
	g.text(name, "(groups int, x *float32, q *int8, lan *int32, d *float32, dst *int) (special int)", 56)
	g.args("groups+0 BX", "x+8 SI", "q+16 DI", "lan+24 R8", "d+32 R9", "dst+40 R10")
	g.qquantConsts()
	g.p("\tVMOVDQU32 qksumperm<>(SB), Z27")
	grp := name + "_grp"
	g.p("%s:", grp)
	for i := 0; i < 16; i++ {
		g.p("\tVMOVUPS %d(SI), Z%d", 64*i, i)
	}
	// The largest magnitude's bits, in every lane of X16.
	g.p("\tVPANDD Z29, Z0, Z16")
	for i := 1; i < 16; i++ {
		g.p("\tVPANDD Z29, Z%d, Z17", i)
		g.p("\tVPMAXUD Z17, Z16, Z16")
	}
	g.p("\tVEXTRACTI64X4 $1, Z16, Y17")
	g.p("\tVPMAXUD Y17, Y16, Y16")
	g.p("\tVEXTRACTI32X4 $1, Y16, X17")
	g.p("\tVPMAXUD X17, X16, X16")
	g.p("\tVPSHUFD $0x4e, X16, X17")
	g.p("\tVPMAXUD X17, X16, X16")
	g.p("\tVPSHUFD $0xb1, X16, X17")
	g.p("\tVPMAXUD X17, X16, X16")
	g.qquantSpecial(name, 16)
	g.p("\tVDIVSS X16, X28, X17")
	g.p("\tVBROADCASTSS X17, Z17")
	g.p("\tVDIVSS X28, X16, X18")
	g.p("\tVMOVSS X18, (R9)")
	for i := 0; i < 16; i++ {
		g.p("\tVMULPS Z17, Z%d, Z%d", i, i)
		g.p("\tVCVTPS2DQ Z%d, Z%d", i, i)
		g.p("\tMOVQ %d(R10), AX", 8*i)
		g.p("\tVPMOVDB Z%d, (DI)(AX*1)", i)
	}
	// The 16 run sums: a tree of 128-bit-lane and element shuffles and
	// integer adds (exact in any order), then the runs put in order.
	g.sumTree()
	g.p("\tVPERMD Z0, Z27, Z0")
	g.p("\tVMOVDQU32 Z0, (R8)")
	g.p("\tADDQ $1024, SI")
	g.p("\tADDQ $256, DI")
	g.p("\tADDQ $64, R8")
	g.p("\tADDQ $4, R9")
	g.p("\tDECQ BX")
	g.qquantReturn(name, grp)
}

// sumTree reduces Z0..Z15 (16 int32 lanes each) to Z0, whose lane l holds
// the sum of the lanes of Z(qksumPerm[l]); it uses Z16..Z25.
//
// Each step is simulated on labels (which vector each lane's partial sum
// belongs to) so that the final order is known, not assumed.
func (g *gen) sumTree() {
	// lab[v][l]: the source vector of lane l of Z(v).
	var lab [16][16]int
	for v := range lab {
		for l := range lab[v] {
			lab[v][l] = v
		}
	}
	// shuf64x2 emits VSHUFI64X2 $imm, b, a, dst (dst's 128-bit lanes 0,1
	// from a, 2,3 from b, as imm selects) and returns dst's labels.
	shuf64x2 := func(imm int, a, b int, dst string) [16]int {
		var out [16]int
		for j := 0; j < 4; j++ {
			src := a
			if j >= 2 {
				src = b
			}
			sel := imm >> (2 * j) & 3
			for e := 0; e < 4; e++ {
				out[4*j+e] = lab[src][4*sel+e]
			}
		}
		g.p("\tVSHUFI64X2 $0x%02x, Z%d, Z%d, %s", imm, b, a, dst)
		return out
	}
	add := func(x, y [16]int, dst int, xr, yr string) {
		for l := range x {
			if x[l] != y[l] {
				panic("sumTree: adding lanes of different vectors")
			}
		}
		lab[dst] = x
		g.p("\tVPADDD %s, %s, Z%d", yr, xr, dst)
	}
	// Level 1: pairs (2i, 2i+1) → Z(i): 256-bit halves.
	for i := 0; i < 8; i++ {
		a, b := 2*i, 2*i+1
		x := shuf64x2(0x44, a, b, "Z16")
		y := shuf64x2(0xee, a, b, "Z17")
		add(x, y, i, "Z16", "Z17")
	}
	// Level 2: pairs (2i, 2i+1) of Z0..Z7 → Z(i): 128-bit lanes.
	for i := 0; i < 4; i++ {
		a, b := 2*i, 2*i+1
		x := shuf64x2(0x88, a, b, "Z16")
		y := shuf64x2(0xdd, a, b, "Z17")
		add(x, y, i, "Z16", "Z17")
	}
	// Level 3: pairs (2i, 2i+1) of Z0..Z3 → Z(i): qword unpacks.
	unpack := func(op string, a, b int, dst string, hi bool) [16]int {
		var out [16]int
		for j := 0; j < 4; j++ {
			o := 0
			if hi {
				o = 2
			}
			out[4*j], out[4*j+1] = lab[a][4*j+o], lab[a][4*j+o+1]
			out[4*j+2], out[4*j+3] = lab[b][4*j+o], lab[b][4*j+o+1]
		}
		g.p("\t%s Z%d, Z%d, %s", op, b, a, dst)
		return out
	}
	for i := 0; i < 2; i++ {
		a, b := 2*i, 2*i+1
		x := unpack("VPUNPCKLQDQ", a, b, "Z16", false)
		y := unpack("VPUNPCKHQDQ", a, b, "Z17", true)
		add(x, y, i, "Z16", "Z17")
	}
	// Level 4: Z0, Z1 → Z0: dword shuffles (even, odd elements).
	shufps := func(imm int, a, b int, dst string) [16]int {
		var out [16]int
		for j := 0; j < 4; j++ {
			out[4*j] = lab[a][4*j+imm&3]
			out[4*j+1] = lab[a][4*j+imm>>2&3]
			out[4*j+2] = lab[b][4*j+imm>>4&3]
			out[4*j+3] = lab[b][4*j+imm>>6&3]
		}
		g.p("\tVSHUFPS $0x%02x, Z%d, Z%d, %s", imm, b, a, dst)
		return out
	}
	x := shufps(0x88, 0, 1, "Z16")
	y := shufps(0xdd, 0, 1, "Z17")
	add(x, y, 0, "Z16", "Z17")
	// The permutation putting vector v's sum in lane v.
	var perm [16]uint16
	for l, v := range lab[0] {
		perm[v] = uint16(l)
	}
	for i := 0; i < 16; i += 4 {
		q := uint64(perm[i]) | uint64(perm[i+1])<<32
		q2 := uint64(perm[i+2]) | uint64(perm[i+3])<<32
		g.data = append(g.data, fmt.Sprintf("DATA qksumperm<>+%d(SB)/8, $0x%016x", 4*i, q), fmt.Sprintf("DATA qksumperm<>+%d(SB)/8, $0x%016x", 4*i+8, q2))
	}
	g.data = append(g.data, "GLOBL qksumperm<>(SB), RODATA|NOPTR, $64")
}

// qquantConsts sets Z28 to 127.0 in every lane and Z29 to the float32
// magnitude mask, for the activation quantizers.
func (g *gen) qquantConsts() {
	g.p("\tMOVL $0x42fe0000, AX") // 127.0
	g.p("\tVPBROADCASTD AX, Z28")
	g.p("\tMOVL $0x7fffffff, AX")
	g.p("\tVPBROADCASTD AX, Z29")
}

// qquantSpecial jumps to name's _special label when the amax bits in the
// low lane of X(reg) are those of 0, an infinity or a NaN (amax-1 ≥
// 0x7f7fffff, unsigned).
func (g *gen) qquantSpecial(name string, reg int) {
	g.p("\tVMOVD X%d, AX", reg)
	g.p("\tDECL AX")
	g.p("\tCMPL AX, $0x7f7fffff")
	g.p("\tJAE %s_special", name)
}

// qquantReturn closes a quantizer's group loop grp and returns special:
// 0 after the last group, 1 from name's _special label.
func (g *gen) qquantReturn(name, grp string) {
	g.p("\tJNZ %s", grp)
	g.p("\tMOVQ $0, special+48(FP)")
	g.vret()
	g.p("%s_special:", name)
	g.p("\tMOVQ $1, special+48(FP)")
	g.vret()
}
