// Command asmgen writes compute/gemm_amd64.s, the AVX-512 kernels of package
// compute, as plain Go assembly text. It needs no dependencies; run it from
// the compute directory with `go generate` (see compute/gemm_amd64.go).
//
// Kernels written:
//   - sgemmKernelAVX512 / sgemmKernelRowsAVX512: the 12×32 GEMM micro-kernel
//     over a packed A panel (12 values per k) or 12 rows of A read in place,
//     and a B panel with an arbitrary row stride (32 contiguous values per
//     k), 24 zmm accumulators; sgemmKernel(Rows)AVX2 the 6×16 AVX2+FMA one
//     with 12 ymm accumulators.
//   - dotKernel<MA>AVX512 / dotKernelBF16<MA>AVX512: MA rows of A against NB
//     rows of B (fp32 or bf16), 16 lanes at a time; they add the raw
//     accumulators into out and the caller reduces them.
//   - dotAVX512, axpyAVX512: vector dot product and y += a·x.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
)

// gemmMR and gemmNR are the micro-kernel's tile: rows of A, columns of B.
const (
	gemmMR = 12
	gemmNR = 32
)

// dotPrefetch is how far ahead (bytes) the dot kernels prefetch B rows.
const dotPrefetch = 1024

// dotNB returns how many B rows the dot kernel with ma A rows handles, so that
// the ma·nb accumulators, nb B registers and one A register fit in 32 zmm.
func dotNB(ma int) int {
	nb := 31 / (ma + 1)
	if nb > 8 {
		nb = 8
	}
	return nb
}

// gen collects a file's assembly text; data holds DATA/GLOBL lines a
// kernel computes while it is written, emitted after it.
type gen struct {
	b     bytes.Buffer
	data  []string
	decls []decl // Go declarations of the TEXT blocks written
}

func (g *gen) p(format string, args ...any) { fmt.Fprintf(&g.b, format+"\n", args...) }

func main() {
	dirFlag := flag.String("dir", ".", "directory to write the .s files and their _decl_amd64.go declarations into")
	flag.Parse()
	dir := *dirFlag
	for _, f := range []struct {
		stem, user string
		fill       func(*gen)
	}{
		{"gemm", "gemm_amd64.go", (*gen).gemmKernels},
		{"gemm_pack", "gemm_pack_amd64.go", (*gen).packKernels},
		{"smallm_bf16", "smallm_bf16_amd64.go", (*gen).bf16RowKernels},
		{"elementwise", "elementwise_amd64.go", (*gen).elementwiseKernels},
		{"adamw", "adamw_amd64.go", (*gen).adamw},
		{"gemm_bf16", "gemm_bf16mixed_amd64.go", (*gen).bf16GemmKernels},
	} {
		asm := f.stem + "_amd64.s"
		writeDecls(filepath.Join(dir, f.stem+"_decl_amd64.go"), asm, f.user+" calls them; the doc comments here and there say what each computes, as Go.",
			writeFile(filepath.Join(dir, asm), f.fill))
	}
	writeDecls(filepath.Join(dir, "qdot_decl_amd64.go"), "qdot_amd64.s",
		"qdot_amd64.go says what they compute and which Go code does the same.",
		writeFile(filepath.Join(dir, "qdot_amd64.s"), (*gen).qdotKernels))
}

// gemmKernels fills gemm_amd64.s: the GEMM micro-kernels, the small-M dot
// and row-streaming kernels, the level-1 kernels, the peak probes and the
// transposing packs.
func (g *gen) gemmKernels() {
	g.sgemm(isaAVX512, aPacked)
	g.sgemm(isaAVX512, aRows)
	g.sgemm(isaAVX2, aPacked)
	g.sgemm(isaAVX2, aRows)
	for ma := 1; ma <= 8; ma++ {
		g.dot(ma, false)
		g.dot(ma, true)
	}
	for ma := 1; ma <= 6; ma++ {
		g.rowAxpy(ma, 4)
		g.rowAxpy(ma, 1)
	}
	g.vdot()
	g.axpy()
	g.probes()
	g.packs()
	g.transpose16(false)
	g.transpose16(true)
}

// isa describes a vector instruction set the GEMM micro-kernel is written
// for: register prefix, vector width in floats, and the tile it uses.
type isa struct {
	suffix string // symbol suffix: AVX512, AVX2
	reg    string // Z or Y
	width  int    // floats per register
	mr, nr int
	zero   string // instruction that zeroes a register with itself
}

var (
	isaAVX512 = isa{suffix: "AVX512", reg: "Z", width: 16, mr: gemmMR, nr: gemmNR, zero: "VPXORD"}
	isaAVX2   = isa{suffix: "AVX2", reg: "Y", width: 8, mr: 6, nr: 16, zero: "VPXOR"}
)

// aMode is how the GEMM micro-kernel reads A.
type aMode int

const (
	aPacked aMode = iota // a packed panel: a[l*mr+i]
	aRows                // mr rows read in place: a[i*lda+l]
	aTrans               // a transposed A read in place: a[l*lda+i]
)

// sgemm writes, for instruction set is,
// func sgemmKernel<ISA>(k int, a, b *float32, ldb int, c *float32, ldc int, alpha float32, add int)
// C[0:mr, 0:nr] (row stride ldc) = alpha·Σ_l a[l*mr+i]·b[l*ldb+j] (+ C if add != 0),
// and, with mode aRows, the same over an unpacked A:
// func sgemmKernelRows<ISA>(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, add int)
// with a[i*lda+l] in place of the packed a[l*mr+i]; with aTrans, over a
// transposed A read in place:
// func sgemmKernelTA<ISA>(k int, a *float32, b *float32, ldb int, c *float32, ldc int, alpha float32, add int, lda int)
// with a[l*lda+i]. The three do the same arithmetic instruction for
// instruction, so they give the same bits. The tile is nr/width
// vectors wide; mr·nr/width accumulators, nr/width B registers and two
// broadcast registers must fit in the register file.
func (g *gen) sgemm(is isa, mode aMode) {
	name, frame := "sgemmKernel"+is.suffix, 64
	off := 0
	abases := []string{"SI", "R10", "R11", "R12"}[:(is.mr+2)/3]
	rowsA := mode == aRows
	switch mode {
	case aRows:
		name, frame, off = "sgemmKernelRows"+is.suffix, 72, 8
	case aTrans:
		name, frame = "sgemmKernelTA"+is.suffix, 72
	}
	nv := is.nr / is.width
	vb := 4 * is.width // bytes per vector
	nacc := is.mr * nv
	R := func(i int) string { return fmt.Sprintf("%s%d", is.reg, i) }
	sig := "(k int, a *float32, b *float32, ldb int, c *float32, ldc int, alpha float32, add int)"
	switch mode {
	case aRows:
		sig = "(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32, add int)"
	case aTrans:
		sig = "(k int, a *float32, b *float32, ldb int, c *float32, ldc int, alpha float32, add int, lda int)"
	}
	g.text(name, sig, frame)
	g.args("k+0 CX", "a+8 SI")
	if rowsA {
		g.rowBases(abases)
	}
	g.p("\tMOVQ b+%d(FP), DX", 16+off)
	g.p("\tMOVQ ldb+%d(FP), R8", 24+off)
	g.p("\tSHLQ $2, R8")
	g.p("\tMOVQ c+%d(FP), DI", 32+off)
	g.p("\tMOVQ ldc+%d(FP), R9", 40+off)
	g.p("\tSHLQ $2, R9")
	if mode == aTrans {
		g.p("\tMOVQ lda+64(FP), R10")
		g.p("\tSHLQ $2, R10")
	}
	// Prefetch the C tile: its lines arrive while the loop runs.
	g.p("\tMOVQ DI, AX")
	for i := 0; i < is.mr; i++ {
		for l := 0; l < 4*is.nr; l += 64 {
			g.p("\tPREFETCHT0 %d(AX)", l)
		}
		g.p("\tADDQ R9, AX")
	}
	g.zero(is.zero, is.reg, nacc)
	lbl, store, over := name+"_loop", name+"_store", name+"_overwrite"
	g.p("\tTESTQ CX, CX")
	g.p("\tJE %s", store)
	g.p("%s:", lbl)
	for v := 0; v < nv; v++ {
		g.p("\tVMOVUPS %d(DX), %s", vb*v, R(nacc+v))
	}
	for i := 0; i < is.mr; i++ {
		t := R(nacc + nv + i%2)
		if rowsA {
			g.p("\tVBROADCASTSS %s, %s", rowAddr(abases, "R13", i), t)
		} else {
			g.p("\tVBROADCASTSS %d(SI), %s", 4*i, t)
		}
		for v := 0; v < nv; v++ {
			g.p("\tVFMADD231PS %s, %s, %s", R(nacc+v), t, R(i*nv+v))
		}
	}
	switch mode {
	case aRows:
		for _, b := range abases {
			g.p("\tADDQ $4, %s", b)
		}
	case aTrans:
		g.p("\tADDQ R10, SI")
	default:
		g.p("\tADDQ $%d, SI", 4*is.mr)
	}
	g.p("\tADDQ R8, DX")
	g.p("\tDECQ CX")
	g.p("\tJNE %s", lbl)
	g.p("%s:", store)
	alpha := R(nacc) // a B register, free after the loop
	g.p("\tVBROADCASTSS alpha+%d(FP), %s", 48+off, alpha)
	g.p("\tMOVQ add+%d(FP), AX", 56+off)
	g.p("\tTESTQ AX, AX")
	g.p("\tJE %s", over)
	g.storeTile(is.mr, nv, vb, R, "R9", func(off int, r string) {
		g.p("\tVFMADD213PS %d(DI), %s, %s", off, alpha, r)
	})
	g.vret()
	g.p("%s:", over)
	g.storeTile(is.mr, nv, vb, R, "R9", func(_ int, r string) {
		g.p("\tVMULPS %s, %s, %s", alpha, r, r)
	})
	g.vret()
}

// rowBases loads the row stride lda+16(FP) (4-byte elements) into R13 as
// bytes and points bases[1:] 3, 6, 9 rows past bases[0] (see rowAddr).
func (g *gen) rowBases(bases []string) {
	g.p("\tMOVQ lda+16(FP), R13")
	g.p("\tSHLQ $2, R13")
	g.p("\tLEAQ (R13)(R13*2), AX")
	for i := 1; i < len(bases); i++ {
		g.p("\tLEAQ (%s)(AX*1), %s", bases[i-1], bases[i])
	}
}

// zreg returns the name of zmm register r.
func zreg(r int) string { return fmt.Sprintf("Z%d", r) }

// rowAddr returns the address of row r (0-based) of a matrix whose row
// pointers are spread over bases (3 rows per base) with stride register ld.
func rowAddr(bases []string, ld string, r int) string {
	base := bases[r/3]
	switch r % 3 {
	case 0:
		return fmt.Sprintf("(%s)", base)
	case 1:
		return fmt.Sprintf("(%s)(%s*1)", base, ld)
	default:
		return fmt.Sprintf("(%s)(%s*2)", base, ld)
	}
}

// dot writes
// func dotKernel<MA>AVX512(n int, a *float32, lda int, b *float32, ldb int, out *float32)
// (or dotKernelBF16<MA>AVX512 with b *uint16): for i < MA, j < NB,
// out[(i*NB+j)*16 + lane] += Σ_{s<n} a[i*lda + 16s + lane]·b[j*ldb + 16s + lane].
func (g *gen) dot(ma int, bf16 bool) {
	nb := dotNB(ma)
	name := fmt.Sprintf("dotKernel%dAVX512", ma)
	btype, esz := "*float32", 4
	if bf16 {
		name = fmt.Sprintf("dotKernelBF16%dAVX512", ma)
		btype, esz = "*BF16", 2
	}
	abases := []string{"SI", "R10", "R11"}[:(ma+2)/3]
	bbases := []string{"DX", "R12", "R13"}[:(nb+2)/3]
	g.text(name, fmt.Sprintf("(n int, a *float32, lda int, b %s, ldb int, out *float32)", btype), 48)
	g.args("n+0 CX", "a+8 SI", "lda+16 R8")
	g.p("\tSHLQ $2, R8")
	g.args("b+24 DX", "ldb+32 R9")
	if bf16 {
		g.p("\tSHLQ $1, R9")
	} else {
		g.p("\tSHLQ $2, R9")
	}
	g.p("\tLEAQ (R8)(R8*2), AX")
	for i := 1; i < len(abases); i++ {
		g.p("\tLEAQ (%s)(AX*1), %s", abases[i-1], abases[i])
	}
	g.p("\tLEAQ (R9)(R9*2), AX")
	for i := 1; i < len(bbases); i++ {
		g.p("\tLEAQ (%s)(AX*1), %s", bbases[i-1], bbases[i])
	}
	nacc := ma * nb
	g.zero("VPXORD", "Z", nacc)
	lbl := name + "_loop"
	done := name + "_done"
	g.p("\tTESTQ CX, CX")
	g.p("\tJE %s", done)
	g.p("%s:", lbl)
	for j := 0; j < nb; j++ {
		zb := nacc + j
		g.p("\tPREFETCHT0 %d%s", dotPrefetch, rowAddr(bbases, "R9", j))
		if bf16 {
			g.p("\tVPMOVZXWD %s, Z%d", rowAddr(bbases, "R9", j), zb)
			g.p("\tVPSLLD $16, Z%d, Z%d", zb, zb)
		} else {
			g.p("\tVMOVUPS %s, Z%d", rowAddr(bbases, "R9", j), zb)
		}
	}
	for i := 0; i < ma; i++ {
		g.p("\tVMOVUPS %s, Z31", rowAddr(abases, "R8", i))
		for j := 0; j < nb; j++ {
			g.p("\tVFMADD231PS Z31, Z%d, Z%d", nacc+j, i*nb+j)
		}
	}
	for _, b := range abases {
		g.p("\tADDQ $64, %s", b)
	}
	for _, b := range bbases {
		g.p("\tADDQ $%d, %s", 16*esz, b)
	}
	g.p("\tDECQ CX")
	g.p("\tJNE %s", lbl)
	g.p("%s:", done)
	g.p("\tMOVQ out+40(FP), DI")
	for r := 0; r < nacc; r++ {
		g.p("\tVADDPS %d(DI), Z%d, Z%d", 64*r, r, r)
		g.p("\tVMOVUPS Z%d, %d(DI)", r, 64*r)
	}
	g.vret()
}

// vdot writes func dotAVX512(n int, x, y *float32) float32 for n a multiple
// of 64: four accumulators, reduced at the end.
func (g *gen) vdot() {
	g.text("dotAVX512", "(n int, x *float32, y *float32) float32", 28)
	g.args("n+0 CX", "x+8 SI", "y+16 DI")
	g.zero("VPXORD", "Z", 4)
	g.stream4("vdot_loop", "vdot_reduce", func(r int) {
		g.p("\tVMOVUPS %d(SI), Z%d", 64*r, 4+r)
		g.p("\tVFMADD231PS %d(DI), Z%d, Z%d", 64*r, 4+r, r)
	})
	g.p("\tVADDPS Z1, Z0, Z0")
	g.p("\tVADDPS Z3, Z2, Z2")
	g.p("\tVADDPS Z2, Z0, Z0")
	g.p("\tVEXTRACTF32X8 $1, Z0, Y1")
	g.p("\tVADDPS Y1, Y0, Y0")
	g.p("\tVEXTRACTF128 $1, Y0, X1")
	g.p("\tVADDPS X1, X0, X0")
	g.p("\tVPERMILPS $0x4e, X0, X1")
	g.p("\tVADDPS X1, X0, X0")
	g.p("\tVPERMILPS $0xb1, X0, X1")
	g.p("\tVADDSS X1, X0, X0")
	g.p("\tVMOVSS X0, ret+24(FP)")
	g.vret()
}

// axpy writes func axpyAVX512(n int, alpha float32, x, y *float32) for n a
// multiple of 64: y += alpha·x.
func (g *gen) axpy() {
	g.text("axpyAVX512", "(n int, alpha float32, x *float32, y *float32)", 32)
	g.p("\tMOVQ n+0(FP), CX")
	g.p("\tVBROADCASTSS alpha+8(FP), Z8")
	g.args("x+16 SI", "y+24 DI")
	g.stream4("axpy_loop", "axpy_done", func(r int) {
		g.p("\tVMOVUPS %d(DI), Z%d", 64*r, r)
		g.p("\tVFMADD231PS %d(SI), Z8, Z%d", 64*r, r)
		g.p("\tVMOVUPS Z%d, %d(DI)", r, 64*r)
	})
	g.vret()
}

// probes writes the two loops cpu.go times to estimate the peak:
// func fmaLoopAVX512(n int) runs n×16 independent zmm FMAs (512 FLOP per
// iteration); func addChain(n int) runs n×8 dependent integer adds (8 cycles
// per iteration on any x86 core), which gives the clock.
func (g *gen) probes() {
	g.peakLoop("fmaLoopAVX512", "fma_loop", func(r int) string { return fmt.Sprintf("VFMADD231PS Z16, Z17, Z%d", r) })
	g.text("addChain", "(n int) int", 16)
	g.p("\tMOVQ n+0(FP), CX")
	g.p("\tXORQ AX, AX")
	g.p("add_loop:")
	for r := 0; r < 8; r++ {
		g.p("\tADDQ $1, AX")
	}
	g.p("\tDECQ CX")
	g.p("\tJNE add_loop")
	g.p("\tMOVQ AX, ret+8(FP)")
	g.p("\tRET")
}

// peakLoop writes func name(n int): n iterations of 16 independent
// instructions op(r), r < 16, each accumulating into Z<r> from Z16 and Z17
// (Z0..Z17 zeroed first), for timing a core's peak.
func (g *gen) peakLoop(name, loop string, op func(r int) string) {
	g.text(name, "(n int)", 8)
	g.p("\tMOVQ n+0(FP), CX")
	g.zero("VPXORD", "Z", 18)
	g.p("%s:", loop)
	for r := 0; r < 16; r++ {
		g.p("\t%s", op(r))
	}
	g.p("\tDECQ CX")
	g.p("\tJNE %s", loop)
	g.vret()
}

// stream4 writes a loop over CX/64 steps (CX a count of floats), each
// writing body(r) for the four 16-float vectors r < 4 at 64·r(SI) and
// 64·r(DI) and then advancing SI and DI 256 bytes; with CX/64 zero it
// jumps straight to label done, which ends the loop.
func (g *gen) stream4(loop, done string, body func(r int)) {
	g.p("\tSHRQ $6, CX")
	g.p("\tJE %s", done)
	g.p("%s:", loop)
	for r := 0; r < 4; r++ {
		body(r)
	}
	g.p("\tADDQ $256, SI")
	g.p("\tADDQ $256, DI")
	g.p("\tDECQ CX")
	g.p("\tJNE %s", loop)
	g.p("%s:", done)
}

// rowAxpy writes
// func rowAxpyKernel<MA>x<NV>AVX512(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32)
// C[i][0:16·NV] += alpha·Σ_{l<k} a[i*lda+l]·b[l*ldb + 0:16·NV] for i < MA:
// few rows of A times an untransposed B, read row by row (the x·W of a
// small batch), with B prefetched eight rows ahead.
func (g *gen) rowAxpy(ma, nv int) {
	name := fmt.Sprintf("rowAxpyKernel%dx%dAVX512", ma, nv)
	abases := []string{"SI", "R10"}[:(ma+2)/3]
	g.text(name, "(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha float32)", 60)
	g.args("k+0 CX", "a+8 SI", "lda+16 R8")
	g.p("\tSHLQ $2, R8")
	g.args("b+24 DX", "ldb+32 R9")
	g.p("\tSHLQ $2, R9")
	g.p("\tLEAQ (R8)(R8*2), AX")
	if len(abases) > 1 {
		g.p("\tLEAQ (SI)(AX*1), R10")
	}
	nacc := ma * nv
	g.zero("VPXORD", "Z", nacc)
	lbl, done := name+"_loop", name+"_done"
	g.p("\tTESTQ CX, CX")
	g.p("\tJE %s", done)
	g.p("%s:", lbl)
	for v := 0; v < nv; v++ {
		g.p("\tVMOVUPS %d(DX), Z%d", 64*v, 24+v)
		g.p("\tPREFETCHT0 %d(DX)(R9*8)", 64*v)
	}
	for i := 0; i < ma; i++ {
		g.p("\tVBROADCASTSS %s, Z31", rowAddr(abases, "R8", i))
		for v := 0; v < nv; v++ {
			g.p("\tVFMADD231PS Z%d, Z31, Z%d", 24+v, i*nv+v)
		}
	}
	for _, b := range abases {
		g.p("\tADDQ $4, %s", b)
	}
	g.p("\tADDQ R9, DX")
	g.p("\tDECQ CX")
	g.p("\tJNE %s", lbl)
	g.p("%s:", done)
	g.args("c+40 DI", "ldc+48 R11")
	g.p("\tSHLQ $2, R11")
	g.p("\tVBROADCASTSS alpha+56(FP), Z30")
	g.storeTile(ma, nv, 64, zreg, "R11", func(off int, r string) {
		g.p("\tVFMADD213PS %d(DI), Z30, %s", off, r)
	})
	g.vret()
}

// packs writes the gather-based transposing pack used for the depth steps
// left over after the 16×16 transposes:
// func packBTransAVX512(kc int, src *float32, idx *int32, dst *float32)
// sets dst[l*32+j] = src[idx[j]/4 + l] for l < kc, j < 32 (idx[j] = 4·j·ldb).
func (g *gen) packs() {
	g.text("packBTransAVX512", "(kc int, src *float32, idx *int32, dst *float32)", 32)
	g.args("kc+0 CX", "src+8 SI", "idx+16 AX", "dst+24 DI")
	g.p("\tVMOVDQU32 (AX), Z30")
	g.p("\tVMOVDQU32 64(AX), Z31")
	g.p("\tTESTQ CX, CX")
	g.p("\tJE packbt_done")
	g.p("packbt_loop:")
	g.p("\tKXNORW K1, K1, K1")
	g.p("\tKXNORW K2, K2, K2")
	g.p("\tVGATHERDPS (SI)(Z30*1), K1, Z0")
	g.p("\tVGATHERDPS (SI)(Z31*1), K2, Z1")
	g.p("\tVMOVUPS Z0, (DI)")
	g.p("\tVMOVUPS Z1, 64(DI)")
	g.p("\tADDQ $4, SI")
	g.p("\tADDQ $128, DI")
	g.p("\tDECQ CX")
	g.p("\tJNE packbt_loop")
	g.p("packbt_done:")
	g.vret()
}

// transpose16 writes
// func transpose16AVX512(n16 int, src *float32, ld int, dst *float32, ldd int)
// dst[(16c+i)*ldd + j] = src[j*ld + 16c + i] for c < n16, i, j < 16: 16 rows
// of a row-major matrix transposed 16×16 block by block in registers
// (unpack, 64-bit unpack, two 128-bit lane shuffles).
//
// With bf16, src holds bf16 values (func transpose16BF16AVX512(n16 int, src
// *uint16, ld int, dst *float32, ldd int)), widened exactly to float32 as
// they are loaded.
func (g *gen) transpose16(bf16 bool) {
	name, srcType, esz, shift := "transpose16AVX512", "*float32", 4, 2
	if bf16 {
		name, srcType, esz, shift = "transpose16BF16AVX512", "*BF16", 2, 1
	}
	lbl, done := name+"_loop", name+"_done"
	g.text(name, fmt.Sprintf("(n16 int, src %s, ld int, dst *float32, ldd int)", srcType), 40)
	g.args("n16+0 CX", "src+8 SI", "ld+16 R8")
	g.p("\tSHLQ $%d, R8", shift)
	g.args("dst+24 DI", "ldd+32 DX")
	g.p("\tSHLQ $2, DX")
	g.p("\tLEAQ (R8)(R8*2), R9")  // 3·ld
	g.p("\tLEAQ (R8)(R8*4), R10") // 5·ld
	g.p("\tLEAQ (R9)(R8*4), R11") // 7·ld
	g.p("\tLEAQ (DX)(DX*2), R12") // 3·ldd
	g.p("\tTESTQ CX, CX")
	g.p("\tJE %s", done)
	g.p("%s:", lbl)
	g.p("\tLEAQ (SI)(R8*8), BX") // row 8
	rows := []string{"(SI)", "(SI)(R8*1)", "(SI)(R8*2)", "(SI)(R9*1)", "(SI)(R8*4)", "(SI)(R10*1)", "(SI)(R9*2)", "(SI)(R11*1)",
		"(BX)", "(BX)(R8*1)", "(BX)(R8*2)", "(BX)(R9*1)", "(BX)(R8*4)", "(BX)(R10*1)", "(BX)(R9*2)", "(BX)(R11*1)"}
	for j, r := range rows {
		if bf16 {
			g.p("\tVPMOVZXWD %s, Z%d", r, j)
			g.p("\tVPSLLD $16, Z%d, Z%d", j, j)
		} else {
			g.p("\tVMOVUPS %s, Z%d", r, j)
		}
	}
	// Stage 1: 32-bit interleave of row pairs into Z16..Z31.
	for p := 0; p < 8; p++ {
		a, b := 2*p, 2*p+1
		g.p("\tVUNPCKLPS Z%d, Z%d, Z%d", b, a, 16+2*p)
		g.p("\tVUNPCKHPS Z%d, Z%d, Z%d", b, a, 17+2*p)
	}
	// Stage 2: 64-bit interleave back into Z0..Z15.
	for q := 0; q < 4; q++ {
		t := 16 + 4*q // t0..t3 of this quad
		g.p("\tVUNPCKLPD Z%d, Z%d, Z%d", t+2, t, 4*q)
		g.p("\tVUNPCKHPD Z%d, Z%d, Z%d", t+2, t, 4*q+1)
		g.p("\tVUNPCKLPD Z%d, Z%d, Z%d", t+3, t+1, 4*q+2)
		g.p("\tVUNPCKHPD Z%d, Z%d, Z%d", t+3, t+1, 4*q+3)
	}
	// Stage 3: 128-bit lanes, r(i) with r(i+4) → Z16..Z31.
	for h := 0; h < 2; h++ {
		base := 8 * h
		for i := 0; i < 4; i++ {
			g.p("\tVSHUFF32X4 $0x88, Z%d, Z%d, Z%d", base+i+4, base+i, 16+base+i)
			g.p("\tVSHUFF32X4 $0xdd, Z%d, Z%d, Z%d", base+i+4, base+i, 16+base+i+4)
		}
	}
	// Stage 4: t(i) with t(i+8) → Z0..Z15, row i of the transpose.
	for i := 0; i < 8; i++ {
		g.p("\tVSHUFF32X4 $0x88, Z%d, Z%d, Z%d", 16+i+8, 16+i, i)
		g.p("\tVSHUFF32X4 $0xdd, Z%d, Z%d, Z%d", 16+i+8, 16+i, i+8)
	}
	for i := 0; i < 16; i++ {
		switch i % 4 {
		case 0:
			g.p("\tVMOVUPS Z%d, (DI)", i)
		case 1:
			g.p("\tVMOVUPS Z%d, (DI)(DX*1)", i)
		case 2:
			g.p("\tVMOVUPS Z%d, (DI)(DX*2)", i)
		case 3:
			g.p("\tVMOVUPS Z%d, (DI)(R12*1)", i)
			g.p("\tLEAQ (DI)(DX*4), DI")
		}
	}
	g.p("\tADDQ $%d, SI", 16*esz)
	g.p("\tDECQ CX")
	g.p("\tJNE %s", lbl)
	g.p("%s:", done)
	g.vret()
}

// text starts the assembly function name: a blank line, a comment giving
// its Go declaration (func name + sig, sig being the parenthesised
// parameters and the result) followed by the lines of doc, and the TEXT
// directive with an argument frame of frame bytes and no locals. The
// declaration is recorded for the Go file writeDecls writes.
func (g *gen) text(name, sig string, frame int, doc ...string) {
	g.textLocals(name, sig, 0, frame, doc...)
}

// textLocals is text for a function with a local frame of locals bytes.
func (g *gen) textLocals(name, sig string, locals, frame int, doc ...string) {
	if kd := kernelDoc(name); kd != nil {
		if len(doc) > 0 && doc[0] != "" {
			kd = append(kd, "")
		}
		doc = append(kd, doc...)
	}
	g.p("")
	g.p("// func %s%s", name, sig)
	for _, d := range doc {
		g.p("// %s", d)
	}
	g.p("TEXT ·%s(SB), NOSPLIT, $%d-%d", name, locals, frame)
	g.decls = append(g.decls, decl{"func " + name + sig, doc})
}

// decl is the Go declaration of an assembly function and its doc lines.
type decl struct {
	fn  string
	doc []string
}

// args loads arguments from the frame: each of loads is "arg+offset REG"
// and becomes MOVQ arg+offset(FP), REG.
func (g *gen) args(loads ...string) {
	for _, l := range loads {
		arg, reg, _ := strings.Cut(l, " ")
		g.p("\tMOVQ %s(FP), %s", arg, reg)
	}
}

// zero writes op reg<r>, reg<r>, reg<r> for r < n: registers 0..n-1 of
// prefix reg (Z, Y) zeroed by an xor with themselves.
func (g *gen) zero(op, reg string, n int) {
	for r := 0; r < n; r++ {
		g.p("\t%s %s%d, %s%d, %s%d", op, reg, r, reg, r, reg, r)
	}
}

// storeTile stores the mr×nv accumulator tile acc(i*nv+v) to C at DI:
// vector v of row i at byte vb·v of row i, DI advancing by the register ld
// between rows. With pre non-nil, pre(off, r) first writes the instruction
// that folds alpha or the C value at off(DI) into register r.
func (g *gen) storeTile(mr, nv, vb int, acc func(int) string, ld string, pre func(off int, r string)) {
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			if pre != nil {
				pre(vb*v, acc(i*nv+v))
			}
			g.p("\tVMOVUPS %s, %d(DI)", acc(i*nv+v), vb*v)
		}
		if i != mr-1 {
			g.p("\tADDQ %s, DI", ld)
		}
	}
}

// vret ends a function that used vector registers: VZEROUPPER (no AVX-SSE
// transition penalty in the caller) and RET.
func (g *gen) vret() {
	g.p("\tVZEROUPPER")
	g.p("\tRET")
}
