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
	"strings"

	"github.com/moe-llm/moe/compute"
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

// GGMLType is the element type of a tensor (ggml_type): compute.QType,
// the one table of storage types and block layouts every package uses.
type GGMLType = compute.QType

// Tensor types (ggml's numbers). Every type listed in compute.QType has
// its byte size validated when a file is read; the ones below are also
// encoded and decoded (Encode, Decode).
const (
	F32    = compute.QF32
	F16    = compute.QF16
	BF16   = compute.QBF16
	Q4_0   = compute.QQ4_0
	Q4_1   = compute.QQ4_1
	Q5_0   = compute.QQ5_0
	Q5_1   = compute.QQ5_1
	Q8_0   = compute.QQ8_0
	Q2_K   = compute.QQ2_K
	Q3_K   = compute.QQ3_K
	Q4_K   = compute.QQ4_K
	Q5_K   = compute.QQ5_K
	Q6_K   = compute.QQ6_K
	IQ4_NL = compute.QIQ4_NL
	IQ4_XS = compute.QIQ4_XS
	MXFP4  = compute.QMXFP4
)

// tensorTypes are the types ParseType names, in the order its error
// lists them.
var tensorTypes = []GGMLType{F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4}

// otherTypeNames are ggml's names of the types moe does not know, so that
// a file holding one is refused by the type's name.
var otherTypeNames = map[GGMLType]string{16: "iq2_xxs", 17: "iq2_xs", 18: "iq3_xxs", 19: "iq1_s", 21: "iq3_s", 22: "iq2_s",
	29: "iq1_m", 34: "tq1_0", 35: "tq2_0", 40: "nvfp4", 41: "q1_0", 42: "q2_0"}

// typeName is t's name for messages: ggml's name also for types moe does
// not know (iq2_xxs), or ggml_type(N).
func typeName(t GGMLType) string {
	if n, ok := otherTypeNames[t]; ok && !t.Known() {
		return n
	}
	return t.String()
}

// typeNames returns the names of types, comma-separated.
func typeNames(types []GGMLType) string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = strings.ToLower(t.String())
	}
	return strings.Join(names, ", ")
}

// ParseType returns the tensor type named s by ggml's name (f32, f16,
// bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl,
// iq4_xs, mxfp4), case-insensitively; the error for an unknown name lists
// the known ones.
func ParseType(s string) (GGMLType, error) {
	for _, t := range tensorTypes {
		if strings.EqualFold(s, t.String()) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("gguf: unknown tensor type %q (known: %s)", s, typeNames(tensorTypes))
}

// RowBytes returns the encoded byte size of n elements of type t, or an
// error when t is unknown or n is not a whole number of blocks.
func RowBytes(t GGMLType, n int64) (int64, error) {
	if !t.Known() {
		return 0, fmt.Errorf("gguf: unknown tensor type %s", t)
	}
	bs := int64(t.BlockSize())
	if n < 0 || n%bs != 0 {
		return 0, fmt.Errorf("gguf: %d elements is not a whole number of %s blocks of %d", n, t, bs)
	}
	return n / bs * int64(t.TypeSize()), nil
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
