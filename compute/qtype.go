package compute

import "fmt"

// QType is the storage type of a weight matrix row, numbered as ggml's
// ggml_type (and so as GGUF's tensor types): the number is what a GGUF file
// stores. A row of k elements of a block type is k/BlockSize blocks of
// TypeSize bytes each, laid out as ggml lays them out.
type QType uint32

// The storage types, with ggml's numbers.
const (
	QF32    QType = 0
	QF16    QType = 1
	QQ4_0   QType = 2
	QQ4_1   QType = 3
	QQ5_0   QType = 6
	QQ5_1   QType = 7
	QQ8_0   QType = 8
	QQ8_1   QType = 9
	QQ2_K   QType = 10
	QQ3_K   QType = 11
	QQ4_K   QType = 12
	QQ5_K   QType = 13
	QQ6_K   QType = 14
	QQ8_K   QType = 15
	QIQ4_NL QType = 20
	QIQ4_XS QType = 23
	QI8     QType = 24
	QI16    QType = 25
	QI32    QType = 26
	QI64    QType = 27
	QF64    QType = 28
	QBF16   QType = 30
	QMXFP4  QType = 39
)

// qtypeInfo is a type's name (ggml's spelling), block size in elements
// and block size in bytes.
type qtypeInfo struct {
	name      string
	blockSize int
	typeSize  int
}

// qtypes lists every type whose layout moe knows. A type listed here has
// its byte sizes validated even where moe cannot compute with it.
var qtypes = map[QType]qtypeInfo{
	QF32:    {"f32", 1, 4},
	QF16:    {"f16", 1, 2},
	QQ4_0:   {"q4_0", 32, 18},
	QQ4_1:   {"q4_1", 32, 20},
	QQ5_0:   {"q5_0", 32, 22},
	QQ5_1:   {"q5_1", 32, 24},
	QQ8_0:   {"q8_0", 32, 34},
	QQ8_1:   {"q8_1", 32, 36},
	QQ2_K:   {"q2_K", 256, 84},
	QQ3_K:   {"q3_K", 256, 110},
	QQ4_K:   {"q4_K", 256, 144},
	QQ5_K:   {"q5_K", 256, 176},
	QQ6_K:   {"q6_K", 256, 210},
	QQ8_K:   {"q8_K", 256, 292},
	QIQ4_NL: {"iq4_nl", 32, 18},
	QIQ4_XS: {"iq4_xs", 256, 136},
	QI8:     {"i8", 1, 1},
	QI16:    {"i16", 1, 2},
	QI32:    {"i32", 1, 4},
	QI64:    {"i64", 1, 8},
	QF64:    {"f64", 1, 8},
	QBF16:   {"bf16", 1, 2},
	QMXFP4:  {"mxfp4", 32, 17},
}

// Known reports whether moe knows t's layout.
func (t QType) Known() bool { _, ok := qtypes[t]; return ok }

// String returns ggml's name of the type (f32, q8_0, q4_K, ...), or
// ggml_type(N) for an unknown number.
func (t QType) String() string {
	if in, ok := qtypes[t]; ok {
		return in.name
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// BlockSize returns the elements in one block of t (1 for plain types), or
// 0 for an unknown type.
func (t QType) BlockSize() int { return qtypes[t].blockSize }

// TypeSize returns the bytes of one block of t, or 0 for an unknown type.
func (t QType) TypeSize() int { return qtypes[t].typeSize }

// RowBytes returns the bytes of a row of k elements of type t, or an error
// when t is unknown or k is not a whole number of blocks.
func (t QType) RowBytes(k int) (int, error) {
	in, ok := qtypes[t]
	if !ok {
		return 0, fmt.Errorf("unknown tensor type %s", t)
	}
	if k < 0 || k%in.blockSize != 0 {
		return 0, fmt.Errorf("%d elements is not a whole number of %s blocks of %d", k, in.name, in.blockSize)
	}
	return k / in.blockSize * in.typeSize, nil
}
