package gguf

import (
	"math/rand/v2"
	"testing"
)

// benchCodec measures encoding or decoding 1 Mi float32 values as typ;
// b.SetBytes counts the float32 bytes processed.
func benchCodec(b *testing.B, typ GGMLType, decode bool) {
	r := rand.New(rand.NewPCG(1, 1))
	src := make([]float32, 1<<20)
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	raw, err := Encode(typ, src)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(4 * len(src)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if decode {
			if err := Decode(typ, raw, src); err != nil {
				b.Fatal(err)
			}
		} else if _, err := Encode(typ, src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeF16(b *testing.B)  { benchCodec(b, F16, false) }
func BenchmarkEncodeQ8_0(b *testing.B) { benchCodec(b, Q8_0, false) }
func BenchmarkEncodeQ4_0(b *testing.B) { benchCodec(b, Q4_0, false) }
func BenchmarkDecodeF16(b *testing.B)  { benchCodec(b, F16, true) }
func BenchmarkDecodeQ8_0(b *testing.B) { benchCodec(b, Q8_0, true) }
func BenchmarkDecodeQ4_0(b *testing.B) { benchCodec(b, Q4_0, true) }
