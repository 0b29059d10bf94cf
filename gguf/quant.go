package gguf

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/moe-llm/moe/compute"
)

// Float32ToF16 converts f to IEEE 754 half precision, rounding to nearest
// with ties to even; overflow gives ±Inf and NaN stays NaN.
func Float32ToF16(f float32) uint16 { return compute.Float32ToF16(f) }

// F16ToFloat32 converts an IEEE 754 half to float32 (exactly).
func F16ToFloat32(h uint16) float32 { return compute.F16ToFloat32(h) }

// Float32ToBF16 converts f to bfloat16, rounding to nearest with ties to even.
func Float32ToBF16(f float32) uint16 { return uint16(compute.ToBF16(f)) }

// BF16ToFloat32 converts a bfloat16 to float32 (exactly).
func BF16ToFloat32(h uint16) float32 { return compute.BF16(h).Float32() }

// Encode encodes src as type t in ggml's layout with compute.Quantize
// (ggml's reference quantizers: the same input gives the same bytes as
// llama-quantize without an importance matrix). Block types need a whole
// number of blocks and finite values.
func Encode(t GGMLType, src []float32) ([]byte, error) {
	n, err := RowBytes(t, int64(len(src)))
	if err != nil {
		return nil, err
	}
	if !compute.Encodable(t) {
		return nil, fmt.Errorf("gguf: encoding to %s is not supported", t)
	}
	out := make([]byte, n)
	err = parallelBlocks(t, len(src), func(lo, hi int) error {
		blo, _ := RowBytes(t, int64(lo))
		bhi, _ := RowBytes(t, int64(hi))
		if err := compute.Quantize(t, src[lo:hi], out[blo:bhi]); err != nil {
			return fmt.Errorf("gguf: %w (chunk at element %d)", err, lo)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Decode decodes raw, encoded as type t, into dst (its element count) with
// compute.Dequantize (bit for bit ggml's dequantization).
func Decode(t GGMLType, raw []byte, dst []float32) error {
	n, err := RowBytes(t, int64(len(dst)))
	if err != nil {
		return err
	}
	if int64(len(raw)) != n {
		return fmt.Errorf("gguf: %d %s elements need %d bytes, have %d", len(dst), t, n, len(raw))
	}
	if !compute.Decodable(t) {
		return fmt.Errorf("gguf: decoding %s tensors is not supported (moe reads %s)", t, typeNames(tensorTypes))
	}
	return parallelBlocks(t, len(dst), func(lo, hi int) error {
		blo, _ := RowBytes(t, int64(lo))
		bhi, _ := RowBytes(t, int64(hi))
		return compute.Dequantize(t, raw[blo:bhi], dst[lo:hi])
	})
}

// parallelBlocks calls f on consecutive element ranges covering [0, n),
// each a whole number of t's blocks, concurrently for large n, and returns
// the first error.
func parallelBlocks(t GGMLType, n int, f func(lo, hi int) error) error {
	const chunk = 1 << 16 // elements; a multiple of every block size
	workers := min(runtime.GOMAXPROCS(0), (n+chunk-1)/chunk)
	if workers <= 1 {
		return f(0, n)
	}
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n || errs[w] != nil {
					return
				}
				errs[w] = f(lo, min(lo+chunk, n))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
