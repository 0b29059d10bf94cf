package gguf

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/moe-llm/moe/internal/atomicfile"
)

// Tensor is one tensor to write: its name, dims (contiguous dimension
// first), type, and a function that produces its encoded bytes when the
// writer reaches it (so a large model need not be held encoded twice).
type Tensor struct {
	Name string
	Dims []uint64
	Type GGMLType
	// Data returns exactly TensorBytes(Type, Dims) bytes.
	Data func() ([]byte, error)
}

// Write writes a GGUF v3 file with the given metadata and tensors to w. The
// alignment is taken from a general.alignment uint32 in kvs, or 32.
func Write(ctx context.Context, w io.Writer, kvs []KV, tensors []Tensor) error {
	align := uint64(DefaultAlignment)
	seen := map[string]bool{}
	for _, kv := range kvs {
		if seen[kv.Key] {
			return fmt.Errorf("gguf: duplicate metadata key %q", kv.Key)
		}
		seen[kv.Key] = true
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("gguf: general.alignment must be a uint32 power of two, got %v", kv.Value)
			}
			align = uint64(a)
		}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	e := &encoder{w: bw}
	e.u32(Magic)
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		if err := e.value(kv.Value, true); err != nil {
			return fmt.Errorf("gguf: metadata %q: %w", kv.Key, err)
		}
	}
	names := map[string]bool{}
	sizes := make([]int64, len(tensors))
	off := uint64(0)
	for i, t := range tensors {
		if names[t.Name] {
			return fmt.Errorf("gguf: duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		n, err := TensorBytes(t.Type, t.Dims)
		if err != nil {
			return fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
		}
		sizes[i] = n
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(off)
		off += padTo(uint64(n), align)
	}
	e.pad(align)
	for i, t := range tensors {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.err != nil {
			break
		}
		data, err := t.Data()
		if err != nil {
			return fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
		}
		if int64(len(data)) != sizes[i] {
			return fmt.Errorf("gguf: tensor %q: data has %d bytes, dims %v of %s need %d", t.Name, len(data), t.Dims, t.Type, sizes[i])
		}
		e.bytes(data)
		e.pad(align)
	}
	if e.err != nil {
		return fmt.Errorf("gguf: write: %w", e.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("gguf: write: %w", err)
	}
	return nil
}

// WriteFile writes a GGUF file atomically: to a temporary file in the same
// directory, synced, then renamed over path.
func WriteFile(ctx context.Context, path string, kvs []KV, tensors []Tensor) error {
	return atomicfile.WriteWith(path, 0o644, "gguf", func(f *atomicfile.File) error { return Write(ctx, f, kvs, tensors) })
}

func padTo(n, align uint64) uint64 { return (n + align - 1) / align * align }

// encoder writes little-endian values, remembering the first error.
type encoder struct {
	w   *bufio.Writer
	n   uint64
	err error
	b   [8]byte
}

func (e *encoder) bytes(p []byte) {
	if e.err != nil {
		return
	}
	var k int
	k, e.err = e.w.Write(p)
	e.n += uint64(k)
}

func (e *encoder) u8(v uint8)   { e.bytes([]byte{v}) }
func (e *encoder) u16(v uint16) { binary.LittleEndian.PutUint16(e.b[:], v); e.bytes(e.b[:2]) }
func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.b[:], v); e.bytes(e.b[:4]) }
func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.b[:], v); e.bytes(e.b[:8]) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.bytes([]byte(s)) }

func (e *encoder) pad(align uint64) {
	for e.n%align != 0 {
		e.u8(0)
	}
}

// valueType returns the GGUF type of a Go value and, for slices, the
// element type.
func valueType(v any) (t, elem ValueType, err error) {
	switch v.(type) {
	case uint8:
		return TypeUint8, 0, nil
	case int8:
		return TypeInt8, 0, nil
	case uint16:
		return TypeUint16, 0, nil
	case int16:
		return TypeInt16, 0, nil
	case uint32:
		return TypeUint32, 0, nil
	case int32:
		return TypeInt32, 0, nil
	case float32:
		return TypeFloat32, 0, nil
	case bool:
		return TypeBool, 0, nil
	case string:
		return TypeString, 0, nil
	case uint64:
		return TypeUint64, 0, nil
	case int64:
		return TypeInt64, 0, nil
	case float64:
		return TypeFloat64, 0, nil
	case []uint8:
		return TypeArray, TypeUint8, nil
	case []int8:
		return TypeArray, TypeInt8, nil
	case []uint16:
		return TypeArray, TypeUint16, nil
	case []int16:
		return TypeArray, TypeInt16, nil
	case []uint32:
		return TypeArray, TypeUint32, nil
	case []int32:
		return TypeArray, TypeInt32, nil
	case []float32:
		return TypeArray, TypeFloat32, nil
	case []bool:
		return TypeArray, TypeBool, nil
	case []string:
		return TypeArray, TypeString, nil
	case []uint64:
		return TypeArray, TypeUint64, nil
	case []int64:
		return TypeArray, TypeInt64, nil
	case []float64:
		return TypeArray, TypeFloat64, nil
	case []any:
		return TypeArray, TypeArray, nil
	}
	return 0, 0, fmt.Errorf("unsupported metadata value type %T", v)
}

// value writes v, preceded by its type tag when tagged.
func (e *encoder) value(v any, tagged bool) error {
	t, et, err := valueType(v)
	if err != nil {
		return err
	}
	if tagged {
		e.u32(uint32(t))
	}
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case []any:
		e.u32(uint32(et))
		e.u64(uint64(len(x)))
		for i, el := range x {
			if t, _, err := valueType(el); err != nil || t != TypeArray {
				return fmt.Errorf("element %d of an array of arrays is %T", i, el)
			}
			if err := e.value(el, false); err != nil {
				return err
			}
		}
	default:
		return e.slice(et, v)
	}
	return nil
}

// slice writes a typed slice as an array (element type, count, values).
func (e *encoder) slice(et ValueType, v any) error {
	write := func(n int, f func(i int)) {
		e.u32(uint32(et))
		e.u64(uint64(n))
		for i := 0; i < n; i++ {
			f(i)
		}
	}
	switch x := v.(type) {
	case []uint8:
		write(len(x), func(i int) { e.u8(x[i]) })
	case []int8:
		write(len(x), func(i int) { e.u8(uint8(x[i])) })
	case []uint16:
		write(len(x), func(i int) { e.u16(x[i]) })
	case []int16:
		write(len(x), func(i int) { e.u16(uint16(x[i])) })
	case []uint32:
		write(len(x), func(i int) { e.u32(x[i]) })
	case []int32:
		write(len(x), func(i int) { e.u32(uint32(x[i])) })
	case []float32:
		write(len(x), func(i int) { e.u32(math.Float32bits(x[i])) })
	case []bool:
		write(len(x), func(i int) {
			if x[i] {
				e.u8(1)
			} else {
				e.u8(0)
			}
		})
	case []string:
		write(len(x), func(i int) { e.str(x[i]) })
	case []uint64:
		write(len(x), func(i int) { e.u64(x[i]) })
	case []int64:
		write(len(x), func(i int) { e.u64(uint64(x[i])) })
	case []float64:
		write(len(x), func(i int) { e.u64(math.Float64bits(x[i])) })
	default:
		return fmt.Errorf("unsupported metadata value type %T", v)
	}
	return nil
}
