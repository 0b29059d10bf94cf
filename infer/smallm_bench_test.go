package infer

import (
	"fmt"
	"testing"
	"time"

	"github.com/moe-llm/moe/config"
)

// BenchmarkSmallMPaths times one tiny forward pass of m rows (one sequence
// of m tokens, or m sequences of one token for "seqs") with the transposed
// weight copies (panels) and without, alternating blocks so both see the same load,
// and reports the best per-pass time of each.
func BenchmarkSmallMPaths(b *testing.B) {
	cfg, _ := config.Preset("tiny")
	m := benchModel(b, cfg)
	const nseq = 16
	seqs := make([]*Seq, nseq)
	for i := range seqs {
		seqs[i] = prefilledSeq(b, m)
	}
	for _, mode := range []string{"one", "seqs"} {
		for _, rows := range []int{1, 5, 9, 16} {
			b.Run(fmt.Sprintf("%s/%d", mode, rows), func(b *testing.B) {
				var ss []*Seq
				var toks [][]int32
				if mode == "one" {
					ss = seqs[:1]
					toks = [][]int32{make([]int32, rows)}
				} else {
					ss = seqs[:rows]
					toks = make([][]int32, rows)
					for i := range toks {
						toks[i] = make([]int32, 1)
					}
				}
				best := [2]float64{1e9, 1e9}
				const block = 8
				it := 0
				for i := 0; i < b.N+1; i++ {
					for v := 0; v < 2; v++ {
						restore := func() {}
						if v == 1 {
							restore = m.panelsOff()
						}
						t := time.Now()
						for j := 0; j < block; j++ {
							it++
							for r := range toks {
								for c := range toks[r] {
									toks[r][c] = int32((it*131 + r*17 + c*29) % cfg.VocabSize)
								}
							}
							if _, err := m.Forward(ss, toks, mode == "one"); err != nil {
								b.Fatal(err)
							}
							for _, s := range ss {
								s.Truncate(64)
							}
						}
						restore()
						if per := time.Since(t).Seconds() / block; i > 0 && per < best[v] {
							best[v] = per
						}
					}
				}
				b.ReportMetric(best[0]*1e3, "new-ms")
				b.ReportMetric(best[1]*1e3, "old-ms")
				b.ReportMetric(best[1]/best[0], "speedup")
			})
		}
	}
}
