// Package safetensors reads and writes Hugging Face safetensors files and
// maps Hugging Face llama / mistral / mixtral (and qwen-style MoE) checkpoints
// to and from moe's model.Weights; OpenMapped maps a Hugging Face directory
// of the MoE families (mixtral, qwen2_moe, qwen3_moe, olmoe, granitemoe)
// for inference, its weights used in place.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end]} (offsets relative to the byte after the header; an optional
// "__metadata__" object of strings), then the raw row-major little-endian
// tensor data. Sharded checkpoints add model.safetensors.index.json, whose
// "weight_map" names the shard holding each tensor.
package safetensors

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/moe-llm/moe/gguf"
	"github.com/moe-llm/moe/internal/atomicfile"

	"github.com/moe-llm/moe/internal/parsefile"
)

// Data types this package converts to float32, and U8, which it reads and
// writes as raw bytes.
const (
	F32  = "F32"
	F16  = "F16"
	BF16 = "BF16"
	U8   = "U8"
)

// maxHeader bounds the JSON header a reader accepts (the format's own
// implementation uses 100 MB).
const maxHeader = 100 << 20

// dtypeSizes lists the element sizes of every dtype the format defines, so
// that headers of other dtypes still validate; only F32, F16 and BF16 decode.
var dtypeSizes = map[string]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"F64": 8, "I64": 8, "U64": 8,
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType string
	Shape []int64
	// Begin and End are absolute byte offsets of the data in the file.
	Begin, End int64
}

// Elements returns the number of elements of the tensor.
func (t *TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is one parsed safetensors file.
type File struct {
	Path     string
	Metadata map[string]string
	Tensors  map[string]*TensorInfo
	r        io.ReaderAt
	closer   io.Closer
}

// Open opens and parses the safetensors file at path.
func Open(path string) (*File, error) {
	sf, f, err := parsefile.Open("safetensors", path, Read)
	if err != nil {
		return nil, err
	}
	sf.Path, sf.closer = path, f
	return sf, nil
}

// Close releases a file opened by Open.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// rawEntry is one header entry.
type rawEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Read parses a safetensors file of size bytes from r, validating the
// header: known dtypes, non-negative shapes, byte ranges that match the
// shape, lie inside the file and do not overlap.
func Read(r io.ReaderAt, size int64) (*File, error) {
	var lenBuf [8]byte
	if size < 8 {
		return nil, errors.New("safetensors: file truncated: no header length")
	}
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("safetensors: reading header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > maxHeader || int64(n) > size-8 {
		return nil, fmt.Errorf("safetensors: header length %d does not fit a %d-byte file", n, size)
	}
	hdr := make([]byte, n)
	if _, err := r.ReadAt(hdr, 8); err != nil {
		return nil, fmt.Errorf("safetensors: reading header: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimRight(hdr, " "), &raw); err != nil {
		return nil, fmt.Errorf("safetensors: header is not a JSON object: %w", err)
	}
	f := &File{r: r, Tensors: map[string]*TensorInfo{}}
	base := 8 + int64(n)
	dataSize := size - base
	var list []*TensorInfo
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors: __metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var e rawEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		es, ok := dtypeSizes[e.DType]
		if !ok {
			return nil, fmt.Errorf("safetensors: tensor %q has unknown dtype %q", name, e.DType)
		}
		count := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt64/8/d) {
				return nil, fmt.Errorf("safetensors: tensor %q has bad shape %v", name, e.Shape)
			}
			count *= d
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || end < b || end > dataSize {
			return nil, fmt.Errorf("safetensors: tensor %q data [%d,%d) is outside the %d-byte data section (file truncated?)", name, b, end, dataSize)
		}
		if end-b != count*es {
			return nil, fmt.Errorf("safetensors: tensor %q of shape %v and dtype %s needs %d bytes, offsets give %d", name, e.Shape, e.DType, count*es, end-b)
		}
		t := &TensorInfo{Name: name, DType: e.DType, Shape: e.Shape, Begin: base + b, End: base + end}
		f.Tensors[name] = t
		list = append(list, t)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Begin < list[j].Begin })
	for i := 1; i < len(list); i++ {
		if list[i].Begin < list[i-1].End {
			return nil, fmt.Errorf("safetensors: tensors %q and %q overlap", list[i-1].Name, list[i].Name)
		}
	}
	return f, nil
}

// Bytes reads tensor name's bytes as stored.
func (f *File) Bytes(name string) ([]byte, error) {
	t, ok := f.Tensors[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: no tensor %q", name)
	}
	raw := make([]byte, t.End-t.Begin)
	if _, err := f.r.ReadAt(raw, t.Begin); err != nil {
		return nil, fmt.Errorf("safetensors: reading %q: %w", name, err)
	}
	return raw, nil
}

// Float32 reads tensor name, converted to float32.
func (f *File) Float32(name string) ([]float32, error) {
	raw, err := f.Bytes(name)
	if err != nil {
		return nil, err
	}
	t := f.Tensors[name]
	out := make([]float32, t.Elements())
	le := binary.LittleEndian
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = gguf.F16ToFloat32(le.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = gguf.BF16ToFloat32(le.Uint16(raw[2*i:]))
		}
	default:
		return nil, fmt.Errorf("safetensors: tensor %q has dtype %s; moe reads F32, F16 and BF16", name, t.DType)
	}
	return out, nil
}

// Tensor is one tensor to write.
type Tensor struct {
	Name  string
	DType string // F32, F16 or BF16; U8 with Raw
	Shape []int64
	Data  []float32
	// Raw, for DType U8, is the tensor's bytes as stored (gpt-oss's MXFP4
	// blocks and scales).
	Raw []byte
}

// Write writes a safetensors file holding tensors (in the given order) and
// metadata to w.
func Write(ctx context.Context, w io.Writer, tensors []Tensor, metadata map[string]string) error {
	hdr := map[string]any{}
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	off := int64(0)
	for _, t := range tensors {
		es, ok := map[string]int64{F32: 4, F16: 2, BF16: 2, U8: 1}[t.DType]
		if !ok {
			return fmt.Errorf("safetensors: cannot write dtype %q", t.DType)
		}
		n := int64(1)
		for _, d := range t.Shape {
			n *= d
		}
		if have := int64(len(t.Data)) + int64(len(t.Raw)); n != have || (t.DType == U8) != (t.Raw != nil) {
			return fmt.Errorf("safetensors: tensor %q: shape %v needs %d %s values, have %d", t.Name, t.Shape, n, t.DType, have)
		}
		if _, dup := hdr[t.Name]; dup {
			return fmt.Errorf("safetensors: duplicate tensor %q", t.Name)
		}
		hdr[t.Name] = rawEntry{DType: t.DType, Shape: t.Shape, DataOffsets: [2]int64{off, off + n*es}}
		off += n * es
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ') // keep the data 8-byte aligned, as the reference writer does
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(js)))
	bw.Write(lenBuf[:])
	bw.Write(js)
	buf := make([]byte, 0, 1<<16)
	le := binary.LittleEndian
	for _, t := range tensors {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := bw.Write(t.Raw); err != nil {
			return fmt.Errorf("safetensors: write: %w", err)
		}
		for i := 0; i < len(t.Data); i += 8192 {
			buf = buf[:0]
			for _, v := range t.Data[i:min(i+8192, len(t.Data))] {
				switch t.DType {
				case F32:
					buf = le.AppendUint32(buf, math.Float32bits(v))
				case F16:
					buf = le.AppendUint16(buf, gguf.Float32ToF16(v))
				case BF16:
					buf = le.AppendUint16(buf, gguf.Float32ToBF16(v))
				}
			}
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("safetensors: write: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	return nil
}

// WriteFile writes a safetensors file atomically (temporary file, fsync,
// rename).
func WriteFile(ctx context.Context, path string, tensors []Tensor, metadata map[string]string) error {
	return atomicfile.WriteWith(path, 0o644, "safetensors", func(f *atomicfile.File) error { return Write(ctx, f, tensors, metadata) })
}

// IndexName is the file that maps tensors to shards in a sharded checkpoint.
const IndexName = "model.safetensors.index.json"

// Set is the tensors of a checkpoint directory: one model.safetensors, a
// sharded checkpoint described by model.safetensors.index.json, or every
// *.safetensors file of the directory.
type Set struct {
	files []*File
	where map[string]*File
}

// OpenDir opens the safetensors checkpoint in dir.
func OpenDir(dir string) (*Set, error) {
	s := &Set{where: map[string]*File{}}
	var names []string
	if data, err := os.ReadFile(filepath.Join(dir, IndexName)); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("safetensors: %s: %w", filepath.Join(dir, IndexName), err)
		}
		seen := map[string]bool{}
		for _, shard := range idx.WeightMap {
			if filepath.Base(shard) != shard {
				return nil, fmt.Errorf("safetensors: %s names shard %q outside the directory", IndexName, shard)
			}
			if !seen[shard] {
				seen[shard] = true
				names = append(names, shard)
			}
		}
		sort.Strings(names)
		defer func() {
			// Every tensor the index names must be in its shard.
			for t, shard := range idx.WeightMap {
				if f, ok := s.where[t]; ok && filepath.Base(f.Path) != shard {
					s.where[t] = nil
				}
			}
		}()
	} else if errors.Is(err, os.ErrNotExist) {
		m, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
		for _, p := range m {
			names = append(names, filepath.Base(p))
		}
		sort.Strings(names)
	} else {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("safetensors: no .safetensors files in %s", dir)
	}
	for _, n := range names {
		f, err := Open(filepath.Join(dir, n))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
		for t := range f.Tensors {
			if prev, dup := s.where[t]; dup {
				s.Close()
				return nil, fmt.Errorf("safetensors: tensor %q is in both %s and %s", t, prev.Path, f.Path)
			}
			s.where[t] = f
		}
	}
	return s, nil
}

// Close closes every file of the set.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// Names returns every tensor name of the set, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.where))
	for n := range s.where {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Info returns the description of tensor name.
func (s *Set) Info(name string) (*TensorInfo, bool) {
	f, ok := s.where[name]
	if !ok || f == nil {
		return nil, false
	}
	return f.Tensors[name], true
}

// Float32 reads tensor name as float32.
func (s *Set) Float32(name string) ([]float32, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Float32(name)
}

// Bytes reads tensor name's bytes as stored, whatever its dtype.
func (s *Set) Bytes(name string) ([]byte, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Bytes(name)
}

// file returns the file holding tensor name.
func (s *Set) file(name string) (*File, error) {
	f, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: missing tensor %q", name)
	}
	if f == nil {
		return nil, fmt.Errorf("safetensors: tensor %q is not in the shard the index names", name)
	}
	return f, nil
}
