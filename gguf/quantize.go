package gguf

import (
	"context"
	"fmt"
	"log/slog"
)

// QuantizeOptions controls QuantizeFile.
type QuantizeOptions struct {
	// Mix chooses each tensor's type (see Mix.TensorTypes).
	Mix Mix
	// AllowRequantize re-encodes tensors that are already of a block type
	// (from their decoded values) and writes tensors at a higher precision
	// than they are stored (an upcast, which restores nothing). Without it
	// both are refused, naming the tensor, as llama-quantize refuses
	// requantizing without --allow-requantize.
	AllowRequantize bool
	// Logger receives a warning for each upcast written (nil: none).
	Logger *slog.Logger
	// Name, when set, replaces general.name.
	Name string
}

// QuantizeResult summarises what QuantizeFile wrote.
type QuantizeResult struct {
	// Tensors is the tensor count; Changed how many got a new type.
	Tensors, Changed int
	// Types counts the written tensors by type.
	Types map[GGMLType]int
	// InBytes and OutBytes are the tensor data sizes before and after.
	InBytes, OutBytes int64
}

// bitsPerWeight is the storage cost of one element of t.
func bitsPerWeight(t GGMLType) float64 { return float64(8*t.TypeSize()) / float64(t.BlockSize()) }

// mixModel reads what the mix rules need from a file's metadata.
func mixModel(f *File) MixModel {
	arch, _ := f.Get("general.architecture")
	a, _ := arch.(string)
	geti := func(key string) int {
		v, ok := f.Get(a + "." + key)
		if !ok {
			return 0
		}
		if n, ok := asInt(v); ok {
			return n
		}
		if arr, ok := v.([]int32); ok && len(arr) > 0 { // per-layer counts
			return int(arr[0])
		}
		if arr, ok := v.([]uint32); ok && len(arr) > 0 {
			return int(arr[0])
		}
		return 0
	}
	m := MixModel{Layers: geti("block_count"), Experts: geti("expert_count"), Heads: geti("attention.head_count"), KVHeads: geti("attention.head_count_kv")}
	if m.KVHeads == 0 {
		m.KVHeads = m.Heads
	}
	return m
}

// QuantizeFile writes the GGUF file at in to out (atomically) with its
// tensors re-typed by opt.Mix: a tensor that keeps its type is copied
// byte for byte, any other is decoded to float32 and encoded again. The
// metadata is kept, with general.file_type and
// general.quantization_version set as llama-quantize sets them. Every
// tensor's new type is decided and checked before anything is written.
func QuantizeFile(ctx context.Context, in, out string, opt QuantizeOptions) (*QuantizeResult, error) {
	if opt.Mix.Name == "" {
		return nil, fmt.Errorf("gguf: quantize: no mix given")
	}
	f, err := Open(in)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mt := make([]MixTensor, len(f.Tensors))
	for i, t := range f.Tensors {
		mt[i] = MixTensor{Name: t.Name, Dims: t.Dims, Type: t.Type}
	}
	types, err := opt.Mix.TensorTypes(mixModel(f), mt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	res := &QuantizeResult{Tensors: len(f.Tensors), Types: map[GGMLType]int{}}
	tensors := make([]Tensor, len(f.Tensors))
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		from, to := ti.Type, types[i]
		nIn, _ := ti.Bytes()
		nOut, err := TensorBytes(to, ti.Dims)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q as %s: %w", in, ti.Name, to, err)
		}
		res.InBytes += nIn
		res.OutBytes += nOut
		res.Types[to]++
		tensors[i] = Tensor{Name: ti.Name, Dims: ti.Dims, Type: to, Data: func() ([]byte, error) { return f.TensorData(ti) }}
		if from == to {
			continue
		}
		res.Changed++
		if err := checkRequantize(ti.Name, from, to, opt); err != nil {
			return nil, fmt.Errorf("%s: %w", in, err)
		}
		tensors[i].Data = func() ([]byte, error) {
			vals := make([]float32, ti.Elements())
			if err := f.ReadFloat32(ti.Name, vals); err != nil {
				return nil, err
			}
			return Encode(to, vals)
		}
	}
	kvs := make([]KV, 0, len(f.KV)+2)
	for _, kv := range f.KV {
		if kv.Key != "general.file_type" && kv.Key != "general.quantization_version" && (opt.Name == "" || kv.Key != "general.name") {
			kvs = append(kvs, kv)
		}
	}
	kvs = append(kvs, KV{"general.quantization_version", uint32(2)}, KV{"general.file_type", opt.Mix.FileType})
	if opt.Name != "" {
		kvs = append(kvs, KV{"general.name", opt.Name})
	}
	if err := WriteFile(ctx, out, kvs, tensors); err != nil {
		return nil, fmt.Errorf("writing %s: %w", out, err)
	}
	return res, nil
}

// checkRequantize refuses (unless allowed) a tensor already stored in a
// block type or one that would be written at a higher precision than it
// is stored; allowed upcasts are logged.
func checkRequantize(name string, from, to GGMLType, opt QuantizeOptions) error {
	up := bitsPerWeight(to) > bitsPerWeight(from)
	if opt.AllowRequantize {
		if up && opt.Logger != nil {
			opt.Logger.Warn("upcast: the tensor is stored at lower precision than the type asked; writing it adds no precision",
				"tensor", name, "from", from.String(), "to", to.String())
		}
		return nil
	}
	if up {
		return fmt.Errorf("tensor %q is stored as %s (%.2g bits per weight), lower precision than %s (%.2g): writing it as %s would not restore precision (allow requantizing to write it anyway)",
			name, from, bitsPerWeight(from), to, bitsPerWeight(to), to)
	}
	if quantized(from) {
		return fmt.Errorf("tensor %q is already quantized (%s): re-quantizing it to %s compounds the error of both (allow requantizing to do it anyway)", name, from, to)
	}
	return nil
}
