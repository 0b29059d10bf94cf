package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/moe-llm/moe/internal/parsefile"
)

// File is a parsed GGUF file: its metadata and tensor infos, with the tensor
// data read on demand from the underlying reader, or, for a file from Open
// on a platform that can, used in place from a read-only memory mapping
// (TensorBytes).
type File struct {
	// Version is the file's GGUF version (2 or 3).
	Version uint32
	// KV is the metadata in file order.
	KV []KV
	// Tensors is the tensor infos in file order.
	Tensors []TensorInfo
	// Alignment is the data alignment (general.alignment or 32).
	Alignment uint64
	// DataOffset is the absolute file offset of the tensor data section.
	DataOffset int64
	// Size is the total size of the file in bytes.
	Size int64

	r      io.ReaderAt
	closer io.Closer
	// data is the whole file mapped read-only (nil when not mapped), and
	// unmap releases it.
	data  []byte
	unmap func() error
	keys  map[string]int
	names map[string]int
}

// Limits on header contents, far above anything real, so that a corrupt or
// hostile header is rejected before it can make the reader allocate much.
const (
	maxKeyLen      = 1 << 16
	maxTensorCount = 1 << 24
	maxKVCount     = 1 << 20
	maxArrayDepth  = 4
)

// Open opens and parses the GGUF file at path and maps it read-only into
// memory where the platform allows (see Mapped and TensorBytes); where
// mapping fails the tensors are read through the file. Close releases it.
func Open(path string) (*File, error) {
	gf, f, err := parsefile.Open("gguf", path, Read)
	if err != nil {
		return nil, err
	}
	gf.closer = f
	if data, unmap, err := mapFile(f, gf.Size); err == nil {
		gf.data, gf.unmap = data, unmap
	}
	return gf, nil
}

// Mapped reports whether the file's bytes are memory-mapped, so that
// TensorBytes returns views into the file rather than copies.
func (f *File) Mapped() bool { return f.data != nil }

// Close unmaps and closes the file opened by Open; it is a no-op for Read's
// files. Every slice TensorBytes returned from the mapping becomes invalid:
// touching one after Close faults.
func (f *File) Close() error {
	var errs []error
	if f.unmap != nil {
		errs = append(errs, f.unmap())
		f.data, f.unmap = nil, nil
	}
	if f.closer != nil {
		errs = append(errs, f.closer.Close())
		f.closer = nil
	}
	return errors.Join(errs...)
}

// Read parses a GGUF file of size bytes from r, validating the header, every
// metadata value and every tensor info (known type, whole blocks, aligned
// offset, data inside the file, no overlaps).
func Read(r io.ReaderAt, size int64) (*File, error) {
	d := &decoder{r: r, size: size}
	magic, err := d.u32()
	if err != nil {
		return nil, fmt.Errorf("gguf: reading magic: %w", err)
	}
	if magic != Magic {
		return nil, fmt.Errorf("gguf: bad magic %#08x (not a GGUF file)", magic)
	}
	f := &File{r: r, Size: size, keys: map[string]int{}, names: map[string]int{}}
	if f.Version, err = d.u32(); err != nil {
		return nil, fmt.Errorf("gguf: reading version: %w", err)
	}
	if v := f.Version; v == 2<<24 || v == 3<<24 {
		return nil, errors.New("gguf: big-endian GGUF files are not supported")
	}
	if f.Version != 2 && f.Version != 3 {
		return nil, fmt.Errorf("gguf: unsupported version %d (want 2 or 3)", f.Version)
	}
	nt, err := d.u64()
	if err != nil {
		return nil, fmt.Errorf("gguf: reading tensor count: %w", err)
	}
	nkv, err := d.u64()
	if err != nil {
		return nil, fmt.Errorf("gguf: reading metadata count: %w", err)
	}
	if nt > maxTensorCount || nt > uint64(size) {
		return nil, fmt.Errorf("gguf: tensor count %d is implausible for a %d-byte file", nt, size)
	}
	if nkv > maxKVCount || nkv > uint64(size) {
		return nil, fmt.Errorf("gguf: metadata count %d is implausible for a %d-byte file", nkv, size)
	}
	f.KV = make([]KV, 0, nkv)
	for i := uint64(0); i < nkv; i++ {
		key, err := d.str(maxKeyLen)
		if err != nil {
			return nil, fmt.Errorf("gguf: metadata %d key: %w", i, err)
		}
		if _, dup := f.keys[key]; dup {
			return nil, fmt.Errorf("gguf: duplicate metadata key %q", key)
		}
		vt, err := d.u32()
		if err != nil {
			return nil, fmt.Errorf("gguf: metadata %q type: %w", key, err)
		}
		v, err := d.value(ValueType(vt), 0)
		if err != nil {
			return nil, fmt.Errorf("gguf: metadata %q: %w", key, err)
		}
		f.keys[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	f.Alignment = DefaultAlignment
	if v, ok := f.Get("general.alignment"); ok {
		a, ok := v.(uint32)
		if !ok {
			return nil, fmt.Errorf("gguf: general.alignment is %T, want uint32", v)
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("gguf: general.alignment %d is not a power of two", a)
		}
		f.Alignment = uint64(a)
	}
	f.Tensors = make([]TensorInfo, 0, min(nt, 1<<16))
	for i := uint64(0); i < nt; i++ {
		var t TensorInfo
		if t.Name, err = d.str(maxKeyLen); err != nil {
			return nil, fmt.Errorf("gguf: tensor %d name: %w", i, err)
		}
		if _, dup := f.names[t.Name]; dup {
			return nil, fmt.Errorf("gguf: duplicate tensor name %q", t.Name)
		}
		nd, err := d.u32()
		if err != nil {
			return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
		}
		if nd == 0 || nd > maxDims {
			return nil, fmt.Errorf("gguf: tensor %q has %d dimensions (want 1..%d)", t.Name, nd, maxDims)
		}
		t.Dims = make([]uint64, nd)
		for j := range t.Dims {
			if t.Dims[j], err = d.u64(); err != nil {
				return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
			}
		}
		typ, err := d.u32()
		if err != nil {
			return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
		}
		t.Type = GGMLType(typ)
		if !t.Type.Known() {
			return nil, fmt.Errorf("gguf: tensor %q has type %s, which moe does not support (it reads %s)", t.Name, typeName(t.Type), typeNames(tensorTypes))
		}
		if t.Offset, err = d.u64(); err != nil {
			return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
		}
		if _, err := t.Bytes(); err != nil {
			return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
		}
		if t.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("gguf: tensor %q offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		f.names[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	pad := (f.Alignment - uint64(d.off)%f.Alignment) % f.Alignment
	f.DataOffset = d.off + int64(pad)
	if len(f.Tensors) > 0 && f.DataOffset > size {
		return nil, fmt.Errorf("gguf: file truncated: data section starts at %d, file has %d bytes", f.DataOffset, size)
	}
	// Every tensor's bytes must lie inside the file and not overlap another's.
	idx := make([]int, len(f.Tensors))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return f.Tensors[idx[a]].Offset < f.Tensors[idx[b]].Offset })
	end := uint64(0)
	avail := uint64(size - f.DataOffset)
	for k, i := range idx {
		t := &f.Tensors[i]
		n, _ := t.Bytes()
		if k > 0 && t.Offset < end {
			return nil, fmt.Errorf("gguf: tensor %q at offset %d overlaps the previous tensor", t.Name, t.Offset)
		}
		if t.Offset > avail || uint64(n) > avail-t.Offset {
			return nil, fmt.Errorf("gguf: file truncated: tensor %q needs bytes [%d,%d) of a %d-byte data section", t.Name, t.Offset, t.Offset+uint64(n), avail)
		}
		end = t.Offset + uint64(n)
	}
	return f, nil
}

// Get returns the metadata value of key.
func (f *File) Get(key string) (any, bool) {
	i, ok := f.keys[key]
	if !ok {
		return nil, false
	}
	return f.KV[i].Value, true
}

// Tensor returns the info of the tensor called name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.names[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorData reads the raw encoded bytes of t.
func (f *File) TensorData(t *TensorInfo) ([]byte, error) {
	n, err := t.Bytes()
	if err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
	}
	buf := make([]byte, n)
	if _, err := f.r.ReadAt(buf, f.DataOffset+int64(t.Offset)); err != nil {
		return nil, fmt.Errorf("gguf: reading tensor %q: %w", t.Name, err)
	}
	return buf, nil
}

// TensorBytes returns the raw encoded bytes of t: a read-only view into the
// mapping when the file is mapped (valid until Close; writing to it faults),
// else a copy read from the file as TensorData does.
func (f *File) TensorBytes(t *TensorInfo) ([]byte, error) {
	if f.data == nil {
		return f.TensorData(t)
	}
	n, err := t.Bytes()
	if err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
	}
	off := f.DataOffset + int64(t.Offset)
	if off < 0 || n < 0 || off > int64(len(f.data)) || n > int64(len(f.data))-off {
		return nil, fmt.Errorf("gguf: file truncated: tensor %q needs bytes [%d,%d) of a %d-byte file", t.Name, off, off+n, len(f.data))
	}
	return f.data[off : off+n : off+n], nil
}

// ReadFloat32 reads tensor name and decodes it to float32 into dst, which
// must have exactly the tensor's element count.
func (f *File) ReadFloat32(name string, dst []float32) error {
	t, ok := f.Tensor(name)
	if !ok {
		return fmt.Errorf("gguf: no tensor %q", name)
	}
	if t.Elements() != int64(len(dst)) {
		return fmt.Errorf("gguf: tensor %q has %d elements (dims %v), want %d", name, t.Elements(), t.Dims, len(dst))
	}
	raw, err := f.TensorBytes(t)
	if err != nil {
		return err
	}
	if err := Decode(t.Type, raw, dst); err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	return nil
}

// errTruncated reports a read past the end of the file.
var errTruncated = errors.New("file truncated")

// decoder reads little-endian values from a ReaderAt through a window
// buffer, never past size.
type decoder struct {
	r       io.ReaderAt
	off     int64 // next byte to read
	size    int64
	buf     []byte
	bufOff  int64 // file offset of buf[0]
	scratch [8]byte
}

// next returns the next n bytes (valid until the following call).
func (d *decoder) next(n int64) ([]byte, error) {
	if n < 0 || n > d.size-d.off {
		return nil, errTruncated
	}
	if d.off < d.bufOff || d.off+n > d.bufOff+int64(len(d.buf)) {
		want := max(n, 1<<16)
		want = min(want, d.size-d.off)
		if int64(cap(d.buf)) < want {
			d.buf = make([]byte, want)
		}
		d.buf = d.buf[:want]
		if _, err := d.r.ReadAt(d.buf, d.off); err != nil && !(errors.Is(err, io.EOF)) {
			return nil, err
		}
		d.bufOff = d.off
	}
	s := d.buf[d.off-d.bufOff : d.off-d.bufOff+n]
	d.off += n
	return s, nil
}

func (d *decoder) u8() (uint8, error) {
	b, err := d.next(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) u16() (uint16, error) {
	b, err := d.next(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.next(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.next(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// str reads a length-prefixed UTF-8 string of at most limit bytes (limit < 0:
// only bounded by the file).
func (d *decoder) str(limit int64) (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if limit >= 0 && n > uint64(limit) {
		return "", fmt.Errorf("string of %d bytes is too long", n)
	}
	if n > uint64(d.size-d.off) {
		return "", errTruncated
	}
	b, err := d.next(int64(n))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// value reads one value of type t; depth counts nested arrays.
func (d *decoder) value(t ValueType, depth int) (any, error) {
	switch t {
	case TypeUint8:
		return d.u8()
	case TypeInt8:
		v, err := d.u8()
		return int8(v), err
	case TypeUint16:
		return d.u16()
	case TypeInt16:
		v, err := d.u16()
		return int16(v), err
	case TypeUint32:
		return d.u32()
	case TypeInt32:
		v, err := d.u32()
		return int32(v), err
	case TypeFloat32:
		v, err := d.u32()
		return math.Float32frombits(v), err
	case TypeBool:
		v, err := d.u8()
		if err == nil && v > 1 {
			return nil, fmt.Errorf("bool value %d is neither 0 nor 1", v)
		}
		return v == 1, err
	case TypeString:
		return d.str(-1)
	case TypeUint64:
		return d.u64()
	case TypeInt64:
		v, err := d.u64()
		return int64(v), err
	case TypeFloat64:
		v, err := d.u64()
		return math.Float64frombits(v), err
	case TypeArray:
		if depth >= maxArrayDepth {
			return nil, fmt.Errorf("arrays nested deeper than %d", maxArrayDepth)
		}
		et, err := d.u32()
		if err != nil {
			return nil, err
		}
		n, err := d.u64()
		if err != nil {
			return nil, err
		}
		return d.array(ValueType(et), n, depth+1)
	}
	return nil, fmt.Errorf("unknown value type %d", uint32(t))
}

// array reads n values of element type t into a typed slice.
func (d *decoder) array(t ValueType, n uint64, depth int) (any, error) {
	minSize := uint64(t.size())
	switch t {
	case TypeString:
		minSize = 8
	case TypeArray:
		minSize = 12
	}
	if minSize == 0 {
		return nil, fmt.Errorf("array of unknown value type %d", uint32(t))
	}
	if n > uint64(d.size-d.off)/minSize {
		return nil, fmt.Errorf("array of %d %s values: %w", n, t, errTruncated)
	}
	switch t {
	case TypeString:
		out := make([]string, n)
		for i := range out {
			s, err := d.str(-1)
			if err != nil {
				return nil, fmt.Errorf("array element %d: %w", i, err)
			}
			out[i] = s
		}
		return out, nil
	case TypeArray:
		out := make([]any, n)
		for i := range out {
			v, err := d.value(TypeArray, depth)
			if err != nil {
				return nil, fmt.Errorf("array element %d: %w", i, err)
			}
			out[i] = v
		}
		return out, nil
	}
	raw, err := d.next(int64(n * minSize))
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return append([]uint8(nil), raw...), nil
	case TypeInt8:
		return leArray(raw, 1, func(b []byte) int8 { return int8(b[0]) }), nil
	case TypeBool:
		out := make([]bool, n)
		for i := range out {
			if raw[i] > 1 {
				return nil, fmt.Errorf("array element %d: bool value %d is neither 0 nor 1", i, raw[i])
			}
			out[i] = raw[i] == 1
		}
		return out, nil
	case TypeUint16:
		return leArray(raw, 2, le.Uint16), nil
	case TypeInt16:
		return leArray(raw, 2, func(b []byte) int16 { return int16(le.Uint16(b)) }), nil
	case TypeUint32:
		return leArray(raw, 4, le.Uint32), nil
	case TypeInt32:
		return leArray(raw, 4, func(b []byte) int32 { return int32(le.Uint32(b)) }), nil
	case TypeFloat32:
		return leArray(raw, 4, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) }), nil
	case TypeUint64:
		return leArray(raw, 8, le.Uint64), nil
	case TypeInt64:
		return leArray(raw, 8, func(b []byte) int64 { return int64(le.Uint64(b)) }), nil
	case TypeFloat64:
		return leArray(raw, 8, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) }), nil
	}
	return nil, fmt.Errorf("array of unknown value type %d", uint32(t))
}

// leArray decodes raw as consecutive values of size bytes each, one get a
// value.
func leArray[T any](raw []byte, size int, get func([]byte) T) []T {
	out := make([]T, len(raw)/size)
	for i := range out {
		out[i] = get(raw[size*i:])
	}
	return out
}
