package infer

import (
	"fmt"
	"testing"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// benchModel returns a model of cfg with random weights (seed 1) on a pool
// of all cores that is closed when b ends.
func benchModel(b *testing.B, cfg *config.Config) *Model {
	pool := compute.NewPool(0)
	b.Cleanup(pool.Close)
	m, err := RandomModel(cfg, 1, pool)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// benchPrompt returns the 64-token prompt (token i = 7i mod V) that the
// benchmarks prefill.
func benchPrompt(vocab int) []int32 {
	prompt := make([]int32, 64)
	for i := range prompt {
		prompt[i] = int32(i * 7 % vocab)
	}
	return prompt
}

// prefilledSeq returns a new sequence of m that holds benchPrompt.
func prefilledSeq(b *testing.B, m *Model) *Seq {
	s := m.NewSeq(0)
	if _, err := m.Forward([]*Seq{s}, [][]int32{benchPrompt(m.Cfg.VocabSize)}, false); err != nil {
		b.Fatal(err)
	}
	return s
}

// benchDecode measures batch-1 decode: one token per Forward against a
// cache of 64 tokens, rolled back each iteration.
func benchDecode(b *testing.B, cfg *config.Config) {
	m := benchModel(b, cfg)
	s := prefilledSeq(b, m)
	s.ReuseLogits(true) // as generate's loop
	// Warm up: touch every expert once.
	for i := 0; i < 16; i++ {
		m.Forward([]*Seq{s}, [][]int32{{int32(i)}}, false)
		s.Truncate(64)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Forward([]*Seq{s}, [][]int32{{int32(i % cfg.VocabSize)}}, false); err != nil {
			b.Fatal(err)
		}
		s.Truncate(64)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}

func BenchmarkDecodeTiny(b *testing.B) {
	cfg, _ := config.Preset("tiny")
	benchDecode(b, cfg)
}

func BenchmarkDecodeTinyDraft(b *testing.B) {
	cfg, _ := config.Preset("tiny-draft")
	benchDecode(b, cfg)
}

// moeVsDense returns a top-2-of-16 MoE and a dense model with the same
// active parameters per token (dense FFN width = 2 × expert width), both
// larger than the L3 cache so that decode reads weights from memory.
func moeVsDense() (moe, dense *config.Config) {
	base := config.Config{ModelType: "mixtral", VocabSize: 4096, HiddenSize: 512, NumLayers: 4, NumHeads: 8, NumKVHeads: 4,
		MaxPositionEmbeddings: 256, RopeTheta: 10000, RMSNormEps: 1e-5, TieWordEmbeddings: true}
	moe, dense = new(config.Config), new(config.Config)
	*moe, *dense = base, base
	moe.NumExperts, moe.ExpertsPerToken, moe.IntermediateSize = 16, 2, 512
	dense.IntermediateSize = 1024
	return moe, dense
}

// BenchmarkDecodeMoE16 and BenchmarkDecodeDense2x are the check:
// decode of a top-2-of-16 MoE should cost within 1.2× of the dense model
// with the same active parameters.
func BenchmarkDecodeMoE16(b *testing.B) {
	moe, _ := moeVsDense()
	benchDecode(b, moe)
}

func BenchmarkDecodeDense2x(b *testing.B) {
	_, dense := moeVsDense()
	benchDecode(b, dense)
}

// BenchmarkDecodeMoEvsDenseRatio measures the two models of moeVsDense side
// by side, alternating blocks of 16 decode steps so both see the same
// machine load, and reports the ratio of their best per-token times
// (moe/dense; the issue asks for at most 1.2).
func BenchmarkDecodeMoEvsDenseRatio(b *testing.B) {
	mc, dc := moeVsDense()
	pool := compute.NewPool(0)
	defer pool.Close()
	var models [2]*Model
	var seqs [2]*Seq
	for i, c := range []*config.Config{mc, dc} {
		m, err := RandomModel(c, 1, pool)
		if err != nil {
			b.Fatal(err)
		}
		models[i] = m
		seqs[i] = prefilledSeq(b, m)
	}
	const block = 16
	best := [2]float64{1e9, 1e9}
	b.ResetTimer()
	for it := 0; it < b.N+2; it++ { // two extra rounds warm up the weights
		for i, m := range models {
			t := time.Now()
			for j := 0; j < block; j++ {
				if _, err := m.Forward([]*Seq{seqs[i]}, [][]int32{{int32((it*block + j) % 4096)}}, false); err != nil {
					b.Fatal(err)
				}
				seqs[i].Truncate(64)
			}
			if per := time.Since(t).Seconds() / block; it >= 2 && per < best[i] {
				best[i] = per
			}
		}
	}
	b.ReportMetric(best[0]*1e3, "moe-ms/tok")
	b.ReportMetric(best[1]*1e3, "dense-ms/tok")
	b.ReportMetric(best[0]/best[1], "moe/dense")
}

// BenchmarkVerifyTiny measures the tiny target scoring m tokens in one pass
// (speculative verification of m-1 drafts), to compare with m = 1.
func BenchmarkVerifyTiny(b *testing.B) {
	cfg, _ := config.Preset("tiny")
	m := benchModel(b, cfg)
	s := prefilledSeq(b, m)
	for _, rows := range []int{1, 2, 5, 9} {
		b.Run(fmt.Sprint(rows), func(b *testing.B) {
			toks := make([]int32, rows)
			touched := 0
			for i := 0; i < b.N; i++ {
				for j := range toks {
					toks[j] = int32((i*rows + j*131) % cfg.VocabSize)
				}
				_, st, err := m.ForwardStats([]*Seq{s}, [][]int32{toks}, true)
				if err != nil {
					b.Fatal(err)
				}
				touched += st.TouchedTotal()
				s.Truncate(64)
			}
			b.ReportMetric(float64(touched)/float64(b.N)/float64(cfg.NumLayers), "experts/layer")
		})
	}
}
