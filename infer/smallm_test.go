package infer

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// smallMConfig is large enough that the small-M products take the vector
// kernels (several 64-column blocks and a column tail), with a shared
// expert so that every transposed matrix kind is used.
func smallMConfig() *config.Config {
	c := testConfig(true)
	c.VocabSize, c.HiddenSize, c.IntermediateSize = 203, 64, 88
	c.NumHeads, c.NumKVHeads = 4, 2
	c.SharedExpertIntermediateSize = 40
	return c
}

// TestTransposedWeights checks that the matrices the small-M path uses have
// correct packed (panel) copies, and that logits from it match the float64 reference
// and the products over the matrices as stored.
func TestTransposedWeights(t *testing.T) {
	cfg := smallMConfig()
	m := newTestModel(t, cfg, 5, 0.2)
	d := cfg.HiddenSize
	for l, L := range m.W.Layers {
		for _, ex := range m.layers[l].experts {
			if len(ex.gu) != 1 || ex.gu[0].panels == nil {
				t.Fatal("expert [gate;up] not fused and packed")
			}
		}
		rp := m.layers[l].router.panels
		if rp == nil {
			t.Fatal("router not packed")
		}
		E := cfg.NumExperts
		for j := 0; j < d; j++ {
			for e := 0; e < 64; e++ {
				want := float32(0) // padding
				if e < E {
					want = L.Router[e*d+j]
				}
				if rp[j*64+e] != want {
					t.Fatalf("router panel wrong at %d,%d", e, j)
				}
			}
		}
		// [gate;up] of expert 0: 2·88 = 176 rows, so two full panels and
		// a padded one.
		gu := m.layers[l].experts[0].gu[0].f32
		wp := m.layers[l].experts[0].gu[0].panels
		n := 2 * cfg.ExpertSize()
		for i := 0; i < n; i++ {
			for j := 0; j < d; j++ {
				if got := wp[(i/64)*64*d+j*64+i%64]; got != gu[i*d+j] {
					t.Fatalf("panel copy wrong at %d,%d", i, j)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	toks := randTokens(r, 17, cfg.VocabSize)
	want := refForward(cfg, m.W, toks)
	V := cfg.VocabSize
	got, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
	if err != nil {
		t.Fatal(err)
	}
	restore := m.panelsOff()
	stored, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, true)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	for p := range toks {
		if e := maxAbsDiff(got[0][p*V:(p+1)*V], want[p]); e > 2e-4 {
			t.Fatalf("position %d: max |diff| to reference %g", p, e)
		}
		for i := p * V; i < (p+1)*V; i++ {
			if d := got[0][i] - stored[0][i]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("position %d: transposed %g vs stored %g", p, got[0][i], stored[0][i])
			}
		}
	}
}

// TestLogitsIndependentOfRows checks that a position's logits are bit for
// bit the same whether its pass had one row or up to 16 (speculative
// verification of k drafts; a serving step batching many sequences), which
// makes greedy speculative decoding exactly equal to plain decoding.
func TestLogitsIndependentOfRows(t *testing.T) {
	dense := testConfig(false)
	dense.VocabSize, dense.HiddenSize, dense.IntermediateSize = 203, 64, 88
	for name, cfg := range map[string]*config.Config{"smallm": smallMConfig(), "dense": dense, "smallm_bf16": smallMConfig()} {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, randomWeights(t, cfg, 9, 0.3), nil, compute.NewPool(2))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(name, "bf16") {
				m.UseBF16(true)
				if m.layers[0].qkv[0].panelsBF == nil {
					t.Fatal("no bf16 transposed weights")
				}
			}
			r := rand.New(rand.NewPCG(3, 3))
			V := cfg.VocabSize
			prompt := randTokens(r, 20, V)
			next := randTokens(r, 16, V)
			// Reference: one token per pass.
			s := m.NewSeq(0)
			if _, err := m.Forward([]*Seq{s}, [][]int32{prompt}, false); err != nil {
				t.Fatal(err)
			}
			single := make([][]float32, len(next))
			for i, tok := range next {
				lg, err := m.Forward([]*Seq{s}, [][]int32{{tok}}, false)
				if err != nil {
					t.Fatal(err)
				}
				single[i] = append([]float32(nil), lg[0]...)
			}
			same := func(what string, got, want []float32) {
				t.Helper()
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s: logit %d is %g in a batch, %g alone", what, i, got[i], want[i])
					}
				}
			}
			for _, k := range []int{2, 5, 9, 16} {
				s.Truncate(len(prompt))
				lg, err := m.Forward([]*Seq{s}, [][]int32{next[:k]}, true)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < k; i++ {
					same(fmt.Sprintf("%d rows, row %d", k, i), lg[0][i*V:(i+1)*V], single[i])
				}
			}
			// 16 sequences with the same history (computed in passes of at
			// most 20 rows, as above), one new token each.
			seqs := make([]*Seq, 16)
			toks := make([][]int32, 16)
			for i := range seqs {
				seqs[i] = m.NewSeq(0)
				if _, err := m.Forward(seqs[i:i+1], [][]int32{prompt}, false); err != nil {
					t.Fatal(err)
				}
				if _, err := m.Forward(seqs[i:i+1], [][]int32{next[:i]}, false); err != nil {
					t.Fatal(err)
				}
				toks[i] = next[i : i+1]
			}
			lg, err := m.Forward(seqs, toks, false)
			if err != nil {
				t.Fatal(err)
			}
			for i := range seqs {
				same(fmt.Sprintf("sequence %d of 16", i), lg[i], single[i])
			}
		})
	}
}

// TestForwardDraftBF16 checks that a draft's low-precision proposal pass
// computes with the bf16 panels (the same logits as the model under
// UseBF16) without switching the model to bf16, and which drafts use it.
func TestForwardDraftBF16(t *testing.T) {
	cfg := smallMConfig()
	m := newTestModel(t, cfg, 4, 0.3)
	toks := []int32{3, 9, 27, 81, 40}
	fp, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, false)
	if err != nil {
		t.Fatal(err)
	}
	dr, _, err := m.forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, false, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if m.bf16 {
		t.Fatal("a low-precision pass switched the model to bf16")
	}
	m.UseBF16(true)
	bf, err := m.Forward([]*Seq{m.NewSeq(0)}, [][]int32{toks}, false)
	if err != nil {
		t.Fatal(err)
	}
	differs := false
	for i := range bf[0] {
		if dr[0][i] != bf[0][i] {
			t.Fatalf("logit %d: draft pass %g, bf16 model %g", i, dr[0][i], bf[0][i])
		}
		differs = differs || fp[0][i] != bf[0][i]
	}
	if !differs {
		t.Fatal("bf16 logits equal the float32 ones bit for bit: the draft pass did not use bf16")
	}
	// Which drafts propose in bf16: large enough, and not self-drafting.
	big := testConfig(false)
	big.VocabSize, big.HiddenSize, big.IntermediateSize = 2048, 128, 256
	bm := newTestModel(t, big, 1, 0.1)
	if len(bm.W.Flat) < minLowPrecDraft {
		t.Fatalf("test draft too small: %d", len(bm.W.Flat))
	}
	self, err := New(big, bm.W, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if draftLowPrec(m, m) || !draftLowPrec(m, bm) || draftLowPrec(bm, self) || draftLowPrec(bm, m) {
		t.Fatal("draftLowPrec: wrong choice")
	}
}

// randTokens returns n token ids drawn uniformly from [0, vocab).
func randTokens(r *rand.Rand, n, vocab int) []int32 {
	toks := make([]int32, n)
	for i := range toks {
		toks[i] = int32(r.IntN(vocab))
	}
	return toks
}
