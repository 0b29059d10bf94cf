package infer

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/gguf"
)

// ggufTestConfig is a Mixtral-style model whose matrices are whole 32-wide
// blocks, so that every quantized type stores them as asked.
func ggufTestConfig(vocab int, tied bool) *config.Config {
	return &config.Config{
		ModelType: "mixtral", VocabSize: vocab, HiddenSize: 64, IntermediateSize: 96,
		NumLayers: 2, NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 64,
		RopeTheta: 10000, RMSNormEps: 1e-5, NumExperts: 4, ExpertsPerToken: 2,
		TieWordEmbeddings: tied, HiddenAct: "silu",
	}
}

// maxDiff32 returns max |a−b|.
func maxDiff32(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// TestGGUFInPlace checks that a GGUF model run with its matrices in their
// stored types, in place, computes what the same file decoded to float32
// computes (the path before quantized weights), prefill and decode, and
// for f32 files what the exported weights compute (the float64 reference).
func TestGGUFInPlace(t *testing.T) {
	tok := trainTestTok(t)
	for _, c := range []struct {
		typ  gguf.GGMLType
		tied bool
	}{{gguf.F32, false}, {gguf.F16, true}, {gguf.Q8_0, false}, {gguf.Q4_0, true}} {
		t.Run(c.typ.String(), func(t *testing.T) {
			cfg := ggufTestConfig(tok.VocabSize(), c.tied)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			w := randomWeights(t, cfg, 4, 0.2)
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := gguf.Export(context.Background(), path, cfg, w, tok, gguf.ExportOptions{Type: c.typ}); err != nil {
				t.Fatal(err)
			}
			pool := compute.NewPool(2)
			defer pool.Close()
			m := loadT(t, path, pool)
			if m.W != nil || m.file == nil || m.NumParams() != len(w.Flat) {
				t.Fatalf("GGUF model: W %v, file %v, %d params", m.W != nil, m.file != nil, m.NumParams())
			}
			if c.typ != gguf.F32 && m.layers[0].experts[0].down.raw == nil {
				t.Fatal("expert matrix was not kept in its stored type")
			}
			cfg2, w2, _, err := gguf.ReadModel(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			mf, err := New(cfg2, w2, tok, pool)
			if err != nil {
				t.Fatal(err)
			}
			toks := []int32{5, 17, 3, 200, 41, 8, 99, 12, 7, 150}
			V := cfg.VocabSize
			s, sf := m.NewSeq(0), mf.NewSeq(0)
			got, err := m.Forward([]*Seq{s}, [][]int32{toks}, true)
			if err != nil {
				t.Fatal(err)
			}
			want, err := mf.Forward([]*Seq{sf}, [][]int32{toks}, true)
			if err != nil {
				t.Fatal(err)
			}
			// Block-quantized weights multiply activations quantized to 8
			// bits per block (as llama.cpp does), so their logits differ
			// from the float32 decode by that rounding, relative to the
			// logits' scale; float types take the activations as they are.
			// (On these 64-wide random layers that is up to ~5% of the
			// largest logit at one entry and well under 1% on average; a
			// wrong matrix or row would be off by the logits' own size.)
			tol, meanTol := 2e-4, 2e-4
			if c.typ.BlockSize() > 1 {
				var scale float64
				for _, v := range want[0] {
					scale = max(scale, math.Abs(float64(v)))
				}
				tol, meanTol = 0.08*scale, 0.01*scale
			}
			var sum float64
			for i := range want[0] {
				sum += math.Abs(float64(got[0][i]) - float64(want[0][i]))
			}
			if e, mean := maxDiff32(got[0], want[0]), sum/float64(len(want[0])); e > tol || mean > meanTol {
				t.Fatalf("prefill logits differ from the float32 decode by %g at most, %g on average (tolerances %g, %g)", e, mean, tol, meanTol)
			}
			if c.typ == gguf.F32 {
				ref := refForward(cfg, w, toks)
				for p := range toks {
					if e := maxAbsDiff(got[0][p*V:(p+1)*V], ref[p]); e > 2e-4 {
						t.Fatalf("position %d: max |diff| to the reference %g", p, e)
					}
				}
			}
			for i, tk := range []int32{3, 60, 2} {
				a, err := m.Forward([]*Seq{s}, [][]int32{{tk}}, false)
				if err != nil {
					t.Fatal(err)
				}
				b, err := mf.Forward([]*Seq{sf}, [][]int32{{tk}}, false)
				if err != nil {
					t.Fatal(err)
				}
				if e := maxDiff32(a[0], b[0]); e > tol {
					t.Fatalf("decode step %d: logits differ by %g (tolerance %g)", i, e, tol)
				}
			}
			fw, err := m.Float32Weights(context.Background())
			if err != nil || len(fw.Flat) != len(w2.Flat) || maxDiff32(fw.Flat, w2.Flat) != 0 {
				t.Fatalf("Float32Weights: %v", err)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Forward([]*Seq{s}, [][]int32{{1}}, false); err == nil {
				t.Fatal("forward on a closed model did not fail")
			}
		})
	}
}

// TestRoPEGrowsWithUse checks that a model claiming a huge context builds
// RoPE tables only for the positions used, and that positions past the
// first tables give the same logits as a model built with large tables.
func TestRoPEGrowsWithUse(t *testing.T) {
	cfg := testConfig(false)
	cfg.MaxPositionEmbeddings = 1 << 30
	w := randomWeights(t, cfg, 2, 0.3)
	m, err := New(cfg, w, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.ropeLen > initialRoPE {
		t.Fatalf("RoPE tables for %d positions up front", m.ropeLen)
	}
	big, err := New(cfg, w, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := big.growRoPE(4 * initialRoPE); err != nil {
		t.Fatal(err)
	}
	n := initialRoPE + 40
	toks := make([]int32, n)
	for i := range toks {
		toks[i] = int32(i*7) % int32(cfg.VocabSize)
	}
	a, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := big.Forward([]*Seq{big.NewSeq(0)}, [][]int32{toks}, true)
	if err != nil {
		t.Fatal(err)
	}
	if m.ropeLen < n || m.ropeLen > 2*initialRoPE {
		t.Fatalf("RoPE tables for %d positions after %d tokens", m.ropeLen, n)
	}
	for i := range a[0] {
		if a[0][i] != b[0][i] {
			t.Fatalf("logit %d: %v with grown tables, %v with large ones", i, a[0][i], b[0][i])
		}
	}
}

// TestGGUFLogitsIndependentOfRowsAndThreads checks, for matrices in their
// stored types, what TestLogitsIndependentOfRows checks for float32 ones: a
// position's logits are bit for bit the same whether its pass had one row
// or up to 16, and whatever the number of threads.
func TestGGUFLogitsIndependentOfRowsAndThreads(t *testing.T) {
	tok := trainTestTok(t)
	for _, typ := range []gguf.GGMLType{gguf.F16, gguf.Q8_0, gguf.Q4_0} {
		t.Run(typ.String(), func(t *testing.T) {
			cfg := ggufTestConfig(tok.VocabSize(), false)
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := gguf.Export(context.Background(), path, cfg, randomWeights(t, cfg, 8, 0.2), tok, gguf.ExportOptions{Type: typ}); err != nil {
				t.Fatal(err)
			}
			toks := make([]int32, 16)
			for i := range toks {
				toks[i] = int32(i*37+5) % int32(cfg.VocabSize)
			}
			run := func(threads, step int) []float32 {
				pool := compute.NewPool(threads)
				defer pool.Close()
				m := loadT(t, path, pool)
				s := m.NewSeq(0)
				var all []float32
				for i := 0; i < len(toks); i += step {
					lg, err := m.Forward([]*Seq{s}, [][]int32{toks[i:min(i+step, len(toks))]}, true)
					if err != nil {
						t.Fatal(err)
					}
					all = append(all, lg[0]...)
				}
				return all
			}
			want := run(1, 1)
			for _, c := range [][2]int{{2, 1}, {1, 16}, {2, 16}, {2, 5}} {
				got := run(c[0], c[1])
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%d threads, %d rows per pass: logit %d is %v, one row on one thread gives %v", c[0], c[1], i, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestGGUFSpeculativeExact checks that greedy speculative decoding of a
// GGUF model in its stored type, drafted by a q4_0 copy of it, gives the
// tokens plain greedy decoding gives.
func TestGGUFSpeculativeExact(t *testing.T) {
	tok := trainTestTok(t)
	cfg := ggufTestConfig(tok.VocabSize(), false)
	w := randomWeights(t, cfg, 11, 0.2)
	dir := t.TempDir()
	load := func(name string, typ gguf.GGMLType) *Model {
		path := filepath.Join(dir, name)
		if err := gguf.Export(context.Background(), path, cfg, w, tok, gguf.ExportOptions{Type: typ}); err != nil {
			t.Fatal(err)
		}
		pool := compute.NewPool(2)
		m, err := Load(path, pool)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(); pool.Close() })
		return m
	}
	target, draft := load("t.gguf", gguf.Q8_0), load("d.gguf", gguf.Q4_0)
	prompt := []int32{5, 17, 3, 200, 41}
	opts := GenerateOptions{MaxTokens: 24, IgnoreEOT: true}
	plain, err := target.Generate(context.Background(), prompt, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Draft = draft
	spec, err := target.Generate(context.Background(), prompt, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Rounds == 0 || len(spec.Tokens) != len(plain.Tokens) {
		t.Fatalf("speculative: %d rounds, %d tokens; plain %d tokens", spec.Rounds, len(spec.Tokens), len(plain.Tokens))
	}
	for i := range plain.Tokens {
		if spec.Tokens[i] != plain.Tokens[i] {
			t.Fatalf("token %d: speculative %d, plain %d", i, spec.Tokens[i], plain.Tokens[i])
		}
	}
}
