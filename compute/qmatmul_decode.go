package compute

// The weight unpackers of QMatMul's portable kernels: each turns one block
// (ggml's layout) into unsigned integer weights (the value plus the type's
// offset), its integer sub-scales and its float scales.

// qmIQ4NL is ggml's IQ4_NL (and IQ4_XS) value table plus 128.
var qmIQ4NL = [16]uint8{1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241}

// qmFP4 is ggml's doubled e2m1 (MXFP4) value table plus 16.
var qmFP4 = [16]uint8{16, 17, 18, 19, 20, 22, 24, 28, 16, 15, 14, 13, 12, 10, 8, 4}

func decQ8_0(b []byte, q *[32]uint8) (d, m float32) {
	for i := range q {
		q[i] = b[2+i] ^ 0x80
	}
	return qmHalf(le16(b)), 0
}

// nibbles32 spreads 16 bytes of nibbles: low ones first, high ones after.
func nibbles32(qs []byte, q *[32]uint8) {
	for j := 0; j < 16; j++ {
		q[j] = qs[j] & 15
		q[j+16] = qs[j] >> 4
	}
}

func decQ4_0(b []byte, q *[32]uint8) (d, m float32) {
	nibbles32(b[2:18], q)
	return qmHalf(le16(b)), 0
}

func decQ4_1(b []byte, q *[32]uint8) (d, m float32) {
	nibbles32(b[4:20], q)
	return qmHalf(le16(b)), qmHalf(le16(b[2:]))
}

// fifthBits adds bit j of qh as bit 4 of q[j].
func fifthBits(qh uint32, q *[32]uint8) {
	for j := range q {
		q[j] |= uint8(qh>>j&1) << 4
	}
}

func decQ5_0(b []byte, q *[32]uint8) (d, m float32) {
	nibbles32(b[6:22], q)
	fifthBits(le32(b[2:]), q)
	return qmHalf(le16(b)), 0
}

func decQ5_1(b []byte, q *[32]uint8) (d, m float32) {
	nibbles32(b[8:24], q)
	fifthBits(le32(b[4:]), q)
	return qmHalf(le16(b)), qmHalf(le16(b[2:]))
}

// tabled32 maps the nibbles of 16 bytes through a table.
func tabled32(qs []byte, tab *[16]uint8, q *[32]uint8) {
	for j := 0; j < 16; j++ {
		q[j] = tab[qs[j]&15]
		q[j+16] = tab[qs[j]>>4]
	}
}

func decIQ4NL(b []byte, q *[32]uint8) (d, m float32) {
	tabled32(b[2:18], &qmIQ4NL, q)
	return qmHalf(le16(b)), 0
}

func decMXFP4(b []byte, q *[32]uint8) (d, m float32) {
	tabled32(b[1:17], &qmFP4, q)
	return qmE8M0Half(b[0]), 0
}

// scaleMinQ45K unpacks the 6-bit scales and mins of Q4_K and Q5_K.
func scaleMinQ45K(s []byte, sc, mn *[16]int32) {
	for j := 0; j < 8; j++ {
		if j < 4 {
			sc[j] = int32(s[j] & 63)
			mn[j] = int32(s[j+4] & 63)
		} else {
			sc[j] = int32(s[j+4]&0xF | (s[j-4]>>6)<<4)
			mn[j] = int32(s[j+4]>>4 | (s[j]>>6)<<4)
		}
	}
	for j := 8; j < 16; j++ {
		sc[j], mn[j] = 0, 0
	}
}

func decQ4K(b []byte, q *[256]uint8, sc, mn *[16]int32) (d, dmin float32) {
	scaleMinQ45K(b[4:16], sc, mn)
	qs := b[16:144]
	for pos := range q {
		u, p := pos/64, pos%64
		q[pos] = qs[64*(u/2)+p] >> (4 * (u % 2)) & 15
	}
	return qmHalf(le16(b)), qmHalf(le16(b[2:]))
}

func decQ5K(b []byte, q *[256]uint8, sc, mn *[16]int32) (d, dmin float32) {
	scaleMinQ45K(b[4:16], sc, mn)
	qh, qs := b[16:48], b[48:176]
	for pos := range q {
		u, p := pos/64, pos%64
		sub := int(permQ45K[pos]) / 32
		q[pos] = qs[64*(u/2)+p]>>(4*(u%2))&15 | (qh[p%32]>>sub&1)<<4
	}
	return qmHalf(le16(b)), qmHalf(le16(b[2:]))
}

func decQ6K(b []byte, q *[256]uint8, sc, mn *[16]int32) (d, dmin float32) {
	ql, qh, s := b[0:128], b[128:192], b[192:208]
	for e := range q {
		h, qq, l := e/128, e%128/32, e%32
		lo := ql[64*h+l+32*(qq%2)] >> (4 * (qq / 2)) & 15
		q[e] = lo | (qh[32*h+l]>>(2*qq)&3)<<4
	}
	for i := range sc {
		sc[i] = int32(int8(s[i]))
	}
	return qmHalf(le16(b[208:])), 0
}

// scalesQ3K unpacks Q3_K's sixteen 6-bit scales, less 32.
func scalesQ3K(s []byte, sc *[16]int32) {
	for i := 0; i < 16; i++ {
		var lo, hi uint8
		if i < 8 {
			lo = s[i] & 15
		} else {
			lo = s[i-8] >> 4
		}
		hi = s[8+i%4] >> (2 * (i / 4)) & 3
		sc[i] = int32(lo|hi<<4) - 32
	}
}

func decQ3K(b []byte, q *[256]uint8, sc, mn *[16]int32) (d, dmin float32) {
	hm, qs := b[0:32], b[32:96]
	scalesQ3K(b[96:108], sc)
	for pos := range q {
		j, p := pos/64, pos%64
		h := p / 32
		q[pos] = qs[p]>>(2*j)&3 | (hm[p%32]>>(4*h+j)&1)<<2
	}
	return qmHalf(le16(b[108:])), 0
}

func decQ2K(b []byte, q *[256]uint8, sc, mn *[16]int32) (d, dmin float32) {
	s, qs := b[0:16], b[16:80]
	for i := range sc {
		sc[i] = int32(s[i] & 15)
		mn[i] = int32(s[i] >> 4)
	}
	for pos := range q {
		j, p := pos/64, pos%64
		q[pos] = qs[p] >> (2 * j) & 3
	}
	return qmHalf(le16(b[80:])), qmHalf(le16(b[82:]))
}

func decIQ4XS(b []byte, q *[256]uint8, sc, mn *[16]int32) (d, dmin float32) {
	sh, sl, qs := le16(b[2:]), b[4:8], b[8:136]
	for ib := 0; ib < 8; ib++ {
		ls := sl[ib/2]>>(4*(ib%2))&15 | uint8(sh>>(2*ib)&3)<<4
		sc[ib] = int32(ls) - 32
	}
	for ib := 8; ib < 16; ib++ {
		sc[ib] = 0
	}
	for pos := range q {
		u, p := pos/64, pos%64
		q[pos] = qmIQ4NL[qs[64*(u/2)+p]>>(4*(u%2))&15]
	}
	return qmHalf(le16(b)), 0
}
