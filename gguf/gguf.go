// Package gguf reads and writes GGUF v3 files, the model format of ggml and
// llama.cpp, and maps moe models to and from the llama.cpp "llama"
// architecture (Mixtral-style experts included).
//
// The container layout follows ggml's docs/gguf.md: a little-endian header
// ("GGUF", version, tensor count, key/value count), typed metadata
// key/values, tensor infos (name, dims with the contiguous dimension first,
// ggml type, offset into the data section), padding to the alignment
// (general.alignment, default 32), then the tensor data, each tensor padded
// to the alignment.
package gguf

import (
	"fmt"
	"math"
)

// Magic is the first four bytes of every GGUF file ("GGUF" little-endian).
const Magic = 0x46554747

// Version is the GGUF version this package writes. Version 2 files (the
// same layout) are also read.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// maxDims is GGML_MAX_DIMS: a tensor has at most four dimensions.
const maxDims = 4

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types (gguf_type).
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

// String returns the spec's name of the value type.
func (t ValueType) String() string {
	names := [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size returns the encoded size of a scalar of type t, or 0 for strings and
// arrays (variable size) and unknown types.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// GGMLType is the element type of a tensor (ggml_type).
type GGMLType uint32

// Tensor types this package encodes and decodes.
const (
	F32  GGMLType = 0
	F16  GGMLType = 1
	Q4_0 GGMLType = 2
	Q8_0 GGMLType = 8
	BF16 GGMLType = 30
)

// typeTraits is the block size (elements) and block byte size of a type.
type typeTraits struct {
	name      string
	blockSize int
	typeSize  int
}

// traits lists the ggml types this package knows. Types other packages
// write but moe cannot decode are still listed so that their sizes can be
// validated; Decode rejects them.
var traits = map[GGMLType]typeTraits{
	F32:  {"f32", 1, 4},
	F16:  {"f16", 1, 2},
	Q4_0: {"q4_0", 32, 18},
	3:    {"q4_1", 32, 20},
	6:    {"q5_0", 32, 22},
	7:    {"q5_1", 32, 24},
	Q8_0: {"q8_0", 32, 34},
	9:    {"q8_1", 32, 36},
	10:   {"q2_K", 256, 84},
	11:   {"q3_K", 256, 110},
	12:   {"q4_K", 256, 144},
	13:   {"q5_K", 256, 176},
	14:   {"q6_K", 256, 210},
	15:   {"q8_K", 256, 292},
	24:   {"i8", 1, 1},
	25:   {"i16", 1, 2},
	26:   {"i32", 1, 4},
	27:   {"i64", 1, 8},
	28:   {"f64", 1, 8},
	BF16: {"bf16", 1, 2},
}

// String returns ggml's name of the type (f32, f16, q8_0, ...).
func (t GGMLType) String() string {
	if tr, ok := traits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// BlockSize returns the number of elements in one block of t (1 for plain
// types, 32 for q8_0 and q4_0), or 0 for an unknown type.
func (t GGMLType) BlockSize() int { return traits[t].blockSize }

// ParseType returns the tensor type named s: f32, f16, bf16, q8_0 or q4_0.
func ParseType(s string) (GGMLType, error) {
	switch s {
	case "f32":
		return F32, nil
	case "f16":
		return F16, nil
	case "bf16":
		return BF16, nil
	case "q8_0":
		return Q8_0, nil
	case "q4_0":
		return Q4_0, nil
	}
	return 0, fmt.Errorf("gguf: unknown tensor type %q (want f32, f16, bf16, q8_0 or q4_0)", s)
}

// RowBytes returns the encoded byte size of n elements of type t, or an
// error when t is unknown or n is not a whole number of blocks.
func RowBytes(t GGMLType, n int64) (int64, error) {
	tr, ok := traits[t]
	if !ok {
		return 0, fmt.Errorf("gguf: unknown tensor type %d", uint32(t))
	}
	if n < 0 || n%int64(tr.blockSize) != 0 {
		return 0, fmt.Errorf("gguf: %d elements is not a whole number of %s blocks of %d", n, tr.name, tr.blockSize)
	}
	return n / int64(tr.blockSize) * int64(tr.typeSize), nil
}

// TensorBytes returns the encoded size of a tensor of type t and dims
// (contiguous dimension first), checking for overflow and whole blocks.
func TensorBytes(t GGMLType, dims []uint64) (int64, error) {
	if len(dims) == 0 || len(dims) > maxDims {
		return 0, fmt.Errorf("gguf: tensor has %d dimensions (want 1..%d)", len(dims), maxDims)
	}
	for _, d := range dims {
		if d > math.MaxInt64/2 {
			return 0, fmt.Errorf("gguf: tensor dimension %d is too large", d)
		}
	}
	row, err := RowBytes(t, int64(dims[0]))
	if err != nil {
		return 0, err
	}
	total := row
	for _, d := range dims[1:] {
		if d != 0 && total > math.MaxInt64/int64(d) {
			return 0, fmt.Errorf("gguf: tensor of dims %v overflows", dims)
		}
		total *= int64(d)
	}
	return total, nil
}

// KV is one metadata key/value pair. Value holds one of the Go types
// uint8, int8, uint16, int16, uint32, int32, float32, bool, string, uint64,
// int64, float64, a slice of one of those, or []any for an array of arrays
// (each element a slice).
type KV struct {
	Key   string
	Value any
}

// TensorInfo describes one tensor of a file: its name, dims (contiguous
// dimension first, as ggml's ne), ggml type and its offset from the start of
// the data section.
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   GGMLType
	Offset uint64
}

// Elements returns the number of elements of the tensor.
func (t *TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= int64(d)
	}
	return n
}

// Bytes returns the encoded byte size of the tensor's data.
func (t *TensorInfo) Bytes() (int64, error) { return TensorBytes(t.Type, t.Dims) }
