package main

// elementwiseKernels fills elementwise_amd64.s: AVX-512 element-wise
// kernels over float32 rows with a vectorised e^x (the same range reduction
// and degree-7 polynomial as compute.Exp32, with VSCALEFPS for the 2^n
// scale), used by softmax, logsumexp, cross-entropy and SwiGLU. Each is
// tested against its portable Go twin.
func (g *gen) elementwiseKernels() {
	g.expConsts()
	g.expScale()
	g.swiglu()
	g.swigluBwd()
	g.rowMax()
	g.softmaxBwd()
}

// expConst is the constant table of the e^x kernels, broadcast into
// Z20..Z31 by loadExpConsts.
var expConst = []struct {
	bits uint32
	note string
}{
	{0x3fb8aa3b, "log2(e)"},
	{0x3f318000, "ln2 hi"},
	{0xb95e8083, "ln2 lo"},
	{0x39500d01, "1/5040"},
	{0x3ab60b61, "1/720"},
	{0x3c088889, "1/120"},
	{0x3d2aaaab, "1/24"},
	{0x3e2aaaab, "1/6"},
	{0x3f000000, "1/2"},
	{0x3f800000, "1 (Z29)"},
	{0x42b20000, "89: above it e^x overflows (and still does at 89)"},
	{0xc2d00000, "-104: below it e^x rounds to 0"},
}

func (g *gen) expConsts() {
	g.p("")
	for i, c := range expConst {
		g.p("DATA ewc<>+%d(SB)/4, $0x%08x // %s", 4*i, c.bits, c.note)
	}
	g.p("GLOBL ewc<>(SB), RODATA|NOPTR, $%d", 4*len(expConst))
}

// loadExpConsts broadcasts the e^x constants into Z20..Z31.
func (g *gen) loadExpConsts() {
	for i := range expConst {
		g.p("\tVBROADCASTSS ewc<>+%d(SB), Z%d", 4*i, 20+i)
	}
}

// expZ0 replaces Z0 with e^Z0, using Z1 and Z2. The clamps keep a NaN in
// Z0 (it is the second source, which MIN/MAX return when either is NaN).
// Go: Exp32 in compute/elementwise_exp.go, lane by lane.
func (g *gen) expZ0() {
	g.p("\tVMINPS Z0, Z30, Z0")
	g.p("\tVMAXPS Z0, Z31, Z0")
	g.p("\tVMULPS Z20, Z0, Z1")
	g.p("\tVRNDSCALEPS $0, Z1, Z1")
	g.p("\tVFNMADD231PS Z21, Z1, Z0")
	g.p("\tVFNMADD231PS Z22, Z1, Z0")
	g.p("\tVMOVAPS Z23, Z2")
	for c := 24; c <= 29; c++ {
		g.p("\tVFMADD213PS Z%d, Z0, Z2", c)
	}
	g.p("\tVFMADD213PS Z29, Z0, Z2")
	g.p("\tVSCALEFPS Z1, Z2, Z0")
}

// sigmoidZ0 replaces Z0 (holding g) with sigmoid(g) = 1/(1+e^-g); Z15 must
// be 0.
func (g *gen) sigmoidZ0() {
	g.p("\tVSUBPS Z0, Z15, Z0")
	g.expZ0()
	g.p("\tVADDPS Z29, Z0, Z0")
	g.p("\tVDIVPS Z0, Z29, Z0")
}

// stream writes the loop shared by the element-wise kernels: n (in CX)
// float32 lanes of the row pointers ptrs, 16 at a time through body(false),
// then the last n%16 through body(true) under the mask K1 (masked loads
// must zero the other lanes, masked stores leave them alone); done runs
// after both.
func (g *gen) stream(name string, ptrs []string, body func(masked bool), done func()) {
	g.p("%s_loop:", name)
	g.p("\tCMPQ CX, $16")
	g.p("\tJLT %s_tail", name)
	body(false)
	for _, p := range ptrs {
		g.p("\tADDQ $64, %s", p)
	}
	g.p("\tSUBQ $16, CX")
	g.p("\tJMP %s_loop", name)
	g.p("%s_tail:", name)
	g.p("\tTESTQ CX, CX")
	g.p("\tJZ %s_done", name)
	g.tailMask()
	body(true)
	g.p("%s_done:", name)
	if done != nil {
		done()
	}
	g.vret()
}

// tailMask sets K1 to the low CX bits (CX < 16).
func (g *gen) tailMask() {
	g.p("\tMOVL $1, AX")
	g.p("\tSHLL CX, AX")
	g.p("\tDECL AX")
	g.p("\tKMOVW AX, K1")
}

// load and store move 16 lanes, or the lanes of K1 when masked.
func (g *gen) load(masked bool, ptr, reg string) {
	if masked {
		g.p("\tVMOVUPS.Z (%s), K1, %s", ptr, reg)
	} else {
		g.p("\tVMOVUPS (%s), %s", ptr, reg)
	}
}

func (g *gen) store(masked bool, reg, ptr string) {
	if masked {
		g.p("\tVMOVUPS %s, K1, (%s)", reg, ptr)
	} else {
		g.p("\tVMOVUPS %s, (%s)", reg, ptr)
	}
}

// header writes a kernel's doc comment and TEXT line and loads its
// pointer and integer arguments (name+offset → register).
func (g *gen) header(name, sig string, frame int, doc []string, args [][3]string) {
	g.text(name, sig, frame, doc...)
	for _, a := range args {
		g.p("\t%s %s, %s", a[0], a[1], a[2])
	}
}

func (g *gen) expScale() {
	name := "expScaleAVX512"
	g.header(name, "(n int, x, y *float32, shift, scale float32, store int, acc *float32)", 48,
		[]string{"acc[0:16] = lane sums of e^(x[i]-shift); when store != 0, y[i] = scale·e^(x[i]-shift)."},
		[][3]string{{"MOVQ", "n+0(FP)", "CX"}, {"MOVQ", "x+8(FP)", "SI"}, {"MOVQ", "y+16(FP)", "DI"},
			{"VBROADCASTSS", "shift+24(FP)", "Z16"}, {"VBROADCASTSS", "scale+28(FP)", "Z17"},
			{"MOVQ", "store+32(FP)", "R8"}, {"MOVQ", "acc+40(FP)", "R9"}})
	g.loadExpConsts()
	g.p("\tVXORPS Z5, Z5, Z5")
	g.stream(name, []string{"SI", "DI"}, func(masked bool) {
		g.load(masked, "SI", "Z0")
		g.p("\tVSUBPS Z16, Z0, Z0")
		g.expZ0()
		skip := name + "_nostore"
		if masked {
			g.p("\tVADDPS Z0, Z5, K1, Z5")
			skip = name + "_done"
		} else {
			g.p("\tVADDPS Z0, Z5, Z5")
		}
		g.p("\tTESTQ R8, R8")
		g.p("\tJZ %s", skip)
		g.p("\tVMULPS Z17, Z0, Z0")
		g.store(masked, "Z0", "DI")
		if !masked {
			g.p("%s:", skip)
		}
	}, func() { g.p("\tVMOVUPS Z5, (R9)") })
}

func (g *gen) swiglu() {
	name := "swigluAVX512"
	g.header(name, "(n int, out, gate, up *float32)", 32,
		[]string{"out[i] = gate[i]·sigmoid(gate[i])·up[i]"},
		[][3]string{{"MOVQ", "n+0(FP)", "CX"}, {"MOVQ", "out+8(FP)", "DI"}, {"MOVQ", "gate+16(FP)", "SI"}, {"MOVQ", "up+24(FP)", "DX"}})
	g.loadExpConsts()
	g.p("\tVXORPS Z15, Z15, Z15")
	g.stream(name, []string{"SI", "DX", "DI"}, func(masked bool) {
		g.load(masked, "SI", "Z3")
		g.load(masked, "DX", "Z4")
		g.p("\tVMOVAPS Z3, Z0")
		g.sigmoidZ0()
		g.p("\tVMULPS Z3, Z0, Z0")
		g.p("\tVMULPS Z4, Z0, Z0")
		g.store(masked, "Z0", "DI")
	}, nil)
}

func (g *gen) swigluBwd() {
	name := "swigluBwdAVX512"
	g.header(name, "(n int, dgate, dup, dout, gate, up *float32)", 48,
		[]string{"s = sigmoid(g); dgate = dout·u·s·(1 + g·(1−s)); dup = dout·g·s."},
		[][3]string{{"MOVQ", "n+0(FP)", "CX"}, {"MOVQ", "dgate+8(FP)", "DI"}, {"MOVQ", "dup+16(FP)", "R10"},
			{"MOVQ", "dout+24(FP)", "R11"}, {"MOVQ", "gate+32(FP)", "SI"}, {"MOVQ", "up+40(FP)", "DX"}})
	g.loadExpConsts()
	g.p("\tVXORPS Z15, Z15, Z15")
	g.stream(name, []string{"SI", "DX", "R11", "DI", "R10"}, func(masked bool) {
		g.load(masked, "SI", "Z3")
		g.load(masked, "DX", "Z4")
		g.load(masked, "R11", "Z6")
		g.p("\tVMOVAPS Z3, Z0")
		g.sigmoidZ0()
		g.p("\tVSUBPS Z0, Z29, Z7")
		g.p("\tVFMADD213PS Z29, Z3, Z7")
		g.p("\tVMULPS Z0, Z7, Z7")
		g.p("\tVMULPS Z4, Z7, Z7")
		g.p("\tVMULPS Z6, Z7, Z7")
		g.p("\tVMULPS Z6, Z3, Z8")
		g.p("\tVMULPS Z0, Z8, Z8")
		g.store(masked, "Z7", "DI")
		g.store(masked, "Z8", "R10")
	}, nil)
}

// rowMax keeps two accumulators over 32 lanes per step, then folds them;
// its tail merges the masked lanes into a copy of the maxima.
func (g *gen) rowMax() {
	name := "maxAVX512"
	g.header(name, "(n int, x *float32, acc *float32)", 24,
		[]string{"acc[0:16] = lane maxima of x (−Inf for lanes that saw nothing); n ≥ 1.",
			"A NaN in x is not guaranteed to survive (the caller's exp pass turns it",
			"into a NaN sum anyway)."},
		[][3]string{{"MOVQ", "n+0(FP)", "CX"}, {"MOVQ", "x+8(FP)", "SI"}, {"MOVQ", "acc+16(FP)", "R9"}})
	g.p("\tMOVL $0xff800000, AX")
	g.p("\tVPBROADCASTD AX, Z5")
	g.p("\tVMOVAPS Z5, Z6")
	g.p("%s_loop2:", name)
	g.p("\tCMPQ CX, $32")
	g.p("\tJLT %s_one", name)
	g.p("\tVMAXPS (SI), Z5, Z5")
	g.p("\tVMAXPS 64(SI), Z6, Z6")
	g.p("\tADDQ $128, SI")
	g.p("\tSUBQ $32, CX")
	g.p("\tJMP %s_loop2", name)
	g.p("%s_one:", name)
	g.p("\tVMAXPS Z6, Z5, Z5")
	g.stream(name, []string{"SI"}, func(masked bool) {
		if masked {
			g.p("\tVMOVAPS Z5, Z6")
			g.p("\tVMOVUPS (SI), K1, Z6")
			g.p("\tVMAXPS Z6, Z5, Z5")
			return
		}
		g.p("\tVMAXPS (SI), Z5, Z5")
	}, func() { g.p("\tVMOVUPS Z5, (R9)") })
}

func (g *gen) softmaxBwd() {
	name := "softmaxBwdAVX512"
	g.header(name, "(n int, dx, dy, y *float32, dot, scale float32)", 40,
		[]string{"dx[i] = scale·y[i]·(dy[i] − dot); dx may alias dy."},
		[][3]string{{"MOVQ", "n+0(FP)", "CX"}, {"MOVQ", "dx+8(FP)", "DI"}, {"MOVQ", "dy+16(FP)", "DX"}, {"MOVQ", "y+24(FP)", "SI"},
			{"VBROADCASTSS", "dot+32(FP)", "Z16"}, {"VBROADCASTSS", "scale+36(FP)", "Z17"}})
	g.stream(name, []string{"SI", "DX", "DI"}, func(masked bool) {
		g.load(masked, "DX", "Z0")
		if masked {
			g.load(masked, "SI", "Z1")
			g.p("\tVSUBPS Z16, Z0, Z0")
			g.p("\tVMULPS Z1, Z0, Z0")
		} else {
			g.p("\tVSUBPS Z16, Z0, Z0")
			g.p("\tVMULPS (SI), Z0, Z0")
		}
		g.p("\tVMULPS Z17, Z0, Z0")
		g.store(masked, "Z0", "DI")
	}, nil)
}

// adamw writes the AdamW update; the lengths are whole vectors (the caller
// does the rest in Go).
func (g *gen) adamw() {
	name := "adamwAVX512"
	g.header(name, "(p, grad, m, v *float32, n int, k *adamwConsts)", 48,
		[]string{"", "For 16 lanes at a time (n/16 vectors), with the same IEEE operations in",
			"the same order as adamwGeneric (no fused multiply-add), k holding",
			"b1, 1-b1, b2, 1-b2, invSqrtBC2, eps, decay, stepSize:",
			"\tm = b1*m + (1-b1)*g",
			"\tv = b2*v + ((1-b2)*g)*g",
			"\tp = p*decay - (stepSize*m) / (sqrt(v)*invSqrtBC2 + eps)"},
		[][3]string{{"MOVQ", "p+0(FP)", "DI"}, {"MOVQ", "grad+8(FP)", "SI"}, {"MOVQ", "m+16(FP)", "R8"},
			{"MOVQ", "v+24(FP)", "R9"}, {"MOVQ", "n+32(FP)", "CX"}, {"MOVQ", "k+40(FP)", "AX"}})
	for i := 0; i < 8; i++ {
		g.p("\tVBROADCASTSS %d(AX), Z%d", 4*i, 16+i)
	}
	g.p("\tSHRQ $4, CX")
	g.p("\tJZ %s_done", name)
	g.p("%s_loop:", name)
	for _, ins := range []string{
		"VMOVUPS (SI), Z0", "VMOVUPS (R8), Z1", "VMULPS Z16, Z1, Z1", "VMULPS Z17, Z0, Z2", "VADDPS Z2, Z1, Z1",
		"VMOVUPS Z1, (R8)", "VMOVUPS (R9), Z3", "VMULPS Z18, Z3, Z3", "VMULPS Z19, Z0, Z4", "VMULPS Z0, Z4, Z4",
		"VADDPS Z4, Z3, Z3", "VMOVUPS Z3, (R9)", "VSQRTPS Z3, Z5", "VMULPS Z20, Z5, Z5", "VADDPS Z21, Z5, Z5",
		"VMOVUPS (DI), Z6", "VMULPS Z22, Z6, Z6", "VMULPS Z23, Z1, Z7", "VDIVPS Z5, Z7, Z7", "VSUBPS Z7, Z6, Z6",
		"VMOVUPS Z6, (DI)",
	} {
		g.p("\t%s", ins)
	}
	for _, p := range []string{"DI", "SI", "R8", "R9"} {
		g.p("\tADDQ $64, %s", p)
	}
	g.p("\tDECQ CX")
	g.p("\tJNZ %s_loop", name)
	g.p("%s_done:", name)
	g.vret()
}
