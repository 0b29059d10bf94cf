//go:build amd64 && !purego

#include "textflag.h"

// func copyPanels12AVX(np int, src *float32, dst *float32, dstride int)
// For p < np: dst[p*dstride : p*dstride+12] = src[p*12 : p*12+12].
TEXT ·copyPanels12AVX(SB), NOSPLIT, $0-32
	MOVQ np+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ dst+16(FP), DI
	MOVQ dstride+24(FP), R8
	SHLQ $2, R8
	TESTQ CX, CX
	JLE done12
loop12:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), X1
	VMOVUPS Y0, (DI)
	VMOVUPS X1, 32(DI)
	ADDQ $48, SI
	ADDQ R8, DI
	DECQ CX
	JNZ loop12
done12:
	VZEROUPPER
	RET

// func copyPanels32AVX(np int, src *float32, dst *float32, dstride int)
// For p < np: dst[p*dstride : p*dstride+32] = src[p*32 : p*32+32].
TEXT ·copyPanels32AVX(SB), NOSPLIT, $0-32
	MOVQ np+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ dst+16(FP), DI
	MOVQ dstride+24(FP), R8
	SHLQ $2, R8
	TESTQ CX, CX
	JLE done32
loop32:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $128, SI
	ADDQ R8, DI
	DECQ CX
	JNZ loop32
done32:
	VZEROUPPER
	RET
