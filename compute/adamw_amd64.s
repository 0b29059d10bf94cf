//go:build amd64 && !purego

#include "textflag.h"

// func adamwAVX512(p, grad, m, v *float32, n int, k *adamwConsts)
//
// For 16 lanes at a time, with the same IEEE operations in the same order
// as adamwGeneric (no fused multiply-add):
//	m = b1*m + (1-b1)*g
//	v = b2*v + ((1-b2)*g)*g
//	p = p*decay - (stepSize*m) / (sqrt(v)*invSqrtBC2 + eps)
TEXT ·adamwAVX512(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), AX
	VBROADCASTSS 0(AX), Z16
	VBROADCASTSS 4(AX), Z17
	VBROADCASTSS 8(AX), Z18
	VBROADCASTSS 12(AX), Z19
	VBROADCASTSS 16(AX), Z20
	VBROADCASTSS 20(AX), Z21
	VBROADCASTSS 24(AX), Z22
	VBROADCASTSS 28(AX), Z23
	SHRQ $4, CX
	JZ   done

loop:
	VMOVUPS (SI), Z0
	VMOVUPS (R8), Z1
	VMULPS  Z16, Z1, Z1
	VMULPS  Z17, Z0, Z2
	VADDPS  Z2, Z1, Z1
	VMOVUPS Z1, (R8)
	VMOVUPS (R9), Z3
	VMULPS  Z18, Z3, Z3
	VMULPS  Z19, Z0, Z4
	VMULPS  Z0, Z4, Z4
	VADDPS  Z4, Z3, Z3
	VMOVUPS Z3, (R9)
	VSQRTPS Z3, Z5
	VMULPS  Z20, Z5, Z5
	VADDPS  Z21, Z5, Z5
	VMOVUPS (DI), Z6
	VMULPS  Z22, Z6, Z6
	VMULPS  Z23, Z1, Z7
	VDIVPS  Z5, Z7, Z7
	VSUBPS  Z7, Z6, Z6
	VMOVUPS Z6, (DI)
	ADDQ    $64, DI
	ADDQ    $64, SI
	ADDQ    $64, R8
	ADDQ    $64, R9
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET
