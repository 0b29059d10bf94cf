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

// qquantKernels writes the famB32 activation quantizers.
func (g *gen) qquantKernels() {
	for _, bpg := range []int{2, 4} {
		g.qquantB32(bpg)
	}
}

// qquantB32 writes the quantizer of groups of bpg blocks.
func (g *gen) qquantB32(bpg int) {
	name := fmt.Sprintf("qquantB32G%dAVX512", bpg)
	g.text(name, "(groups int, x *float32, q *int8, lan *int32, d *float32, mul int) (special int)", 56)
	g.args("groups+0 BX", "x+8 SI", "q+16 DI", "lan+24 R8", "d+32 R9", "mul+40 AX")
	g.p("\tVPBROADCASTD AX, Z26")
	g.bcastByte(27, 1)
	g.p("\tMOVL $0x42fe0000, AX") // 127.0
	g.p("\tVPBROADCASTD AX, Z28")
	g.p("\tMOVL $0x7fffffff, AX")
	g.p("\tVPBROADCASTD AX, Z29")
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
		// amax-1 ≥ 0x7f7fffff (unsigned): amax is 0, infinite or NaN.
		g.p("\tVMOVD X2, AX")
		g.p("\tDECL AX")
		g.p("\tCMPL AX, $0x7f7fffff")
		g.p("\tJAE %s_special", name)
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
	g.p("\tJNZ %s", grp)
	g.p("\tMOVQ $0, special+48(FP)")
	g.vret()
	g.p("%s_special:", name)
	g.p("\tMOVQ $1, special+48(FP)")
	g.vret()
}
