package gguf

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"
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

// BenchmarkExportLoad176M exports a 176M-parameter Mixtral-style model
// (d 512, 8 layers, 8 experts top-2, ff 1408, vocab 32000) as q8_0 and reads
// it back, reporting seconds per direction.
func BenchmarkExportLoad176M(b *testing.B) {
	tok := testTokenizer(b)
	cfg := testConfig(true, false)
	cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize, cfg.NumLayers = 32000, 512, 1408, 8
	cfg.NumHeads, cfg.NumKVHeads, cfg.NumExperts = 8, 8, 8
	w := randomWeights(b, cfg, 1)
	path := filepath.Join(b.TempDir(), "m.gguf")
	for _, typ := range []GGMLType{F32, Q8_0, Q4_0} {
		b.Run(typ.String(), func(b *testing.B) {
			var exp, load time.Duration
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := Export(context.Background(), path, cfg, w, tok, ExportOptions{Type: typ}); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, _, _, err := LoadModel(path); err != nil {
					b.Fatal(err)
				}
				exp, load = exp+t1.Sub(t0), load+time.Since(t1)
			}
			b.ReportMetric(exp.Seconds()/float64(b.N), "export-s")
			b.ReportMetric(load.Seconds()/float64(b.N), "load-s")
			b.ReportMetric(float64(len(w.Flat))/1e6, "Mparams")
		})
	}
}
