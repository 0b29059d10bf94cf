//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 element-wise kernels: a vectorised e^x (the same range reduction
// and degree-7 polynomial as Exp32, with VSCALEFPS for the 2^n scale) used
// by softmax, logsumexp, cross-entropy and SwiGLU. Hand-written; tested
// against the portable Go versions in elementwise_test.go.

DATA ewc<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA ewc<>+4(SB)/4, $0x3f318000  // ln2 hi
DATA ewc<>+8(SB)/4, $0xb95e8083  // ln2 lo
DATA ewc<>+12(SB)/4, $0x39500d01 // 1/5040
DATA ewc<>+16(SB)/4, $0x3ab60b61 // 1/720
DATA ewc<>+20(SB)/4, $0x3c088889 // 1/120
DATA ewc<>+24(SB)/4, $0x3d2aaaab // 1/24
DATA ewc<>+28(SB)/4, $0x3e2aaaab // 1/6
DATA ewc<>+32(SB)/4, $0x3f000000 // 1/2
DATA ewc<>+36(SB)/4, $0x3f800000 // 1
DATA ewc<>+40(SB)/4, $0x42b20000 // 89: above it e^x overflows (and still does at 89)
DATA ewc<>+44(SB)/4, $0xc2d00000 // -104: below it e^x rounds to 0
GLOBL ewc<>(SB), RODATA|NOPTR, $48

// LOADC broadcasts the constants into Z20..Z31.
#define LOADC \
	VBROADCASTSS ewc<>+0(SB), Z20 \
	VBROADCASTSS ewc<>+4(SB), Z21 \
	VBROADCASTSS ewc<>+8(SB), Z22 \
	VBROADCASTSS ewc<>+12(SB), Z23 \
	VBROADCASTSS ewc<>+16(SB), Z24 \
	VBROADCASTSS ewc<>+20(SB), Z25 \
	VBROADCASTSS ewc<>+24(SB), Z26 \
	VBROADCASTSS ewc<>+28(SB), Z27 \
	VBROADCASTSS ewc<>+32(SB), Z28 \
	VBROADCASTSS ewc<>+36(SB), Z29 \
	VBROADCASTSS ewc<>+40(SB), Z30 \
	VBROADCASTSS ewc<>+44(SB), Z31

// EXPZ0 replaces Z0 with e^Z0, using Z1 and Z2. The clamps keep a NaN in
// Z0 (it is the second source, which MIN/MAX return when either is NaN).
#define EXPZ0 \
	VMINPS Z0, Z30, Z0 \
	VMAXPS Z0, Z31, Z0 \
	VMULPS Z20, Z0, Z1 \
	VRNDSCALEPS $0, Z1, Z1 \
	VFNMADD231PS Z21, Z1, Z0 \
	VFNMADD231PS Z22, Z1, Z0 \
	VMOVAPS Z23, Z2 \
	VFMADD213PS Z24, Z0, Z2 \
	VFMADD213PS Z25, Z0, Z2 \
	VFMADD213PS Z26, Z0, Z2 \
	VFMADD213PS Z27, Z0, Z2 \
	VFMADD213PS Z28, Z0, Z2 \
	VFMADD213PS Z29, Z0, Z2 \
	VFMADD213PS Z29, Z0, Z2 \
	VSCALEFPS Z1, Z2, Z0

// func expScaleAVX512(n int, x, y *float32, shift, scale float32, store int, acc *float32)
// acc[0:16] = lane sums of e^(x[i]-shift); when store != 0, y[i] = scale·e^(x[i]-shift).
TEXT ·expScaleAVX512(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	VBROADCASTSS shift+24(FP), Z16
	VBROADCASTSS scale+28(FP), Z17
	MOVQ store+32(FP), R8
	MOVQ acc+40(FP), R9
	LOADC
	VXORPS Z5, Z5, Z5

eloop:
	CMPQ CX, $16
	JLT  etail
	VMOVUPS (SI), Z0
	VSUBPS  Z16, Z0, Z0
	EXPZ0
	VADDPS  Z0, Z5, Z5
	TESTQ   R8, R8
	JZ      enostore
	VMULPS  Z17, Z0, Z0
	VMOVUPS Z0, (DI)

enostore:
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP  eloop

etail:
	TESTQ CX, CX
	JZ    edone
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K1
	VMOVUPS.Z (SI), K1, Z0
	VSUBPS  Z16, Z0, Z0
	EXPZ0
	VADDPS  Z0, Z5, K1, Z5
	TESTQ   R8, R8
	JZ      edone
	VMULPS  Z17, Z0, Z0
	VMOVUPS Z0, K1, (DI)

edone:
	VMOVUPS Z5, (R9)
	VZEROUPPER
	RET

// SIGZ0 replaces Z0 (holding g) with sigmoid(g) = 1/(1+e^-g); Z15 must be 0.
#define SIGZ0 \
	VSUBPS Z0, Z15, Z0 \
	EXPZ0 \
	VADDPS Z29, Z0, Z0 \
	VDIVPS Z0, Z29, Z0

// func swigluAVX512(n int, out, gate, up *float32)
// out[i] = gate[i]·sigmoid(gate[i])·up[i]
TEXT ·swigluAVX512(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ out+8(FP), DI
	MOVQ gate+16(FP), SI
	MOVQ up+24(FP), DX
	LOADC
	VXORPS Z15, Z15, Z15

sloop:
	CMPQ CX, $16
	JLT  stail
	VMOVUPS (SI), Z3
	VMOVUPS (DX), Z4
	VMOVAPS Z3, Z0
	SIGZ0
	VMULPS  Z3, Z0, Z0
	VMULPS  Z4, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP  sloop

stail:
	TESTQ CX, CX
	JZ    sdone
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K1
	VMOVUPS.Z (SI), K1, Z3
	VMOVUPS.Z (DX), K1, Z4
	VMOVAPS Z3, Z0
	SIGZ0
	VMULPS  Z3, Z0, Z0
	VMULPS  Z4, Z0, Z0
	VMOVUPS Z0, K1, (DI)

sdone:
	VZEROUPPER
	RET

// func swigluBwdAVX512(n int, dgate, dup, dout, gate, up *float32)
// s = sigmoid(g); dgate = dout·u·s·(1 + g·(1−s)); dup = dout·g·s.
TEXT ·swigluBwdAVX512(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ dgate+8(FP), DI
	MOVQ dup+16(FP), R10
	MOVQ dout+24(FP), R11
	MOVQ gate+32(FP), SI
	MOVQ up+40(FP), DX
	LOADC
	VXORPS Z15, Z15, Z15

bloop:
	CMPQ CX, $16
	JLT  btail
	VMOVUPS (SI), Z3
	VMOVUPS (DX), Z4
	VMOVUPS (R11), Z6
	VMOVAPS Z3, Z0
	SIGZ0
	VSUBPS      Z0, Z29, Z7
	VFMADD213PS Z29, Z3, Z7
	VMULPS      Z0, Z7, Z7
	VMULPS      Z4, Z7, Z7
	VMULPS      Z6, Z7, Z7
	VMULPS      Z6, Z3, Z8
	VMULPS      Z0, Z8, Z8
	VMOVUPS     Z7, (DI)
	VMOVUPS     Z8, (R10)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R11
	ADDQ $64, DI
	ADDQ $64, R10
	SUBQ $16, CX
	JMP  bloop

btail:
	TESTQ CX, CX
	JZ    bdone
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K1
	VMOVUPS.Z (SI), K1, Z3
	VMOVUPS.Z (DX), K1, Z4
	VMOVUPS.Z (R11), K1, Z6
	VMOVAPS Z3, Z0
	SIGZ0
	VSUBPS      Z0, Z29, Z7
	VFMADD213PS Z29, Z3, Z7
	VMULPS      Z0, Z7, Z7
	VMULPS      Z4, Z7, Z7
	VMULPS      Z6, Z7, Z7
	VMULPS      Z6, Z3, Z8
	VMULPS      Z0, Z8, Z8
	VMOVUPS     Z7, K1, (DI)
	VMOVUPS     Z8, K1, (R10)

bdone:
	VZEROUPPER
	RET

// func maxAVX512(n int, x *float32, acc *float32)
// acc[0:16] = lane maxima of x (−Inf for lanes that saw nothing); n ≥ 1.
// A NaN in x is not guaranteed to survive (the caller's exp pass turns it
// into a NaN sum anyway).
TEXT ·maxAVX512(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ acc+16(FP), R9
	MOVL $0xff800000, AX
	VPBROADCASTD AX, Z5
	VMOVAPS Z5, Z6

mloop:
	CMPQ CX, $32
	JLT  mone
	VMAXPS (SI), Z5, Z5
	VMAXPS 64(SI), Z6, Z6
	ADDQ $128, SI
	SUBQ $32, CX
	JMP  mloop

mone:
	VMAXPS Z6, Z5, Z5
	CMPQ CX, $16
	JLT  mtail
	VMAXPS (SI), Z5, Z5
	ADDQ $64, SI
	SUBQ $16, CX

mtail:
	TESTQ CX, CX
	JZ    mdone
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K1
	VMOVAPS Z5, Z6
	VMOVUPS (SI), K1, Z6
	VMAXPS  Z6, Z5, Z5

mdone:
	VMOVUPS Z5, (R9)
	VZEROUPPER
	RET

// func softmaxBwdAVX512(n int, dx, dy, y *float32, dot, scale float32)
// dx[i] = scale·y[i]·(dy[i] − dot); dx may alias dy.
TEXT ·softmaxBwdAVX512(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ dx+8(FP), DI
	MOVQ dy+16(FP), DX
	MOVQ y+24(FP), SI
	VBROADCASTSS dot+32(FP), Z16
	VBROADCASTSS scale+36(FP), Z17

sloop:
	CMPQ CX, $16
	JLT  stail
	VMOVUPS (DX), Z0
	VSUBPS  Z16, Z0, Z0
	VMULPS  (SI), Z0, Z0
	VMULPS  Z17, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP  sloop

stail:
	TESTQ CX, CX
	JZ    sdone
	MOVL  $1, AX
	SHLL  CX, AX
	DECL  AX
	KMOVW AX, K1
	VMOVUPS.Z (DX), K1, Z0
	VMOVUPS.Z (SI), K1, Z1
	VSUBPS  Z16, Z0, Z0
	VMULPS  Z1, Z0, Z0
	VMULPS  Z17, Z0, Z0
	VMOVUPS Z0, K1, (DI)

sdone:
	VZEROUPPER
	RET
