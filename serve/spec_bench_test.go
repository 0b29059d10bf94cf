package serve

import (
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/infer"
)

var (
	benchModel  = flag.String("serve.model", "", "BenchmarkServeSpeculation: the target model (a run directory or .gguf)")
	benchDraft  = flag.String("serve.draft", "ngram", "BenchmarkServeSpeculation: a draft model, or ngram for prompt lookup")
	benchTemp   = flag.Float64("serve.temperature", 0, "BenchmarkServeSpeculation: sampling temperature")
	benchGen    = flag.Int("serve.gen", 64, "BenchmarkServeSpeculation: tokens generated per request")
	benchRounds = flag.Int("serve.rounds", 6, "BenchmarkServeSpeculation: turns of each server (alternating, the order swapped every round)")
	benchPass   = flag.Duration("serve.fake-pass", 2*time.Millisecond, "BenchmarkServeSpeculation without -serve.model: the fake target's cost per forward pass")
	benchTok    = flag.Duration("serve.fake-token", 400*time.Microsecond, "BenchmarkServeSpeculation without -serve.model: the fake target's cost per token in a pass")
)

// specBenchPrompts are the prompts of BenchmarkServeSpeculation (Genesis,
// King James Version, public domain); client c sends prompt c mod 8.
var specBenchPrompts = []string{
	"In the beginning God created the heaven and the earth.",
	"And God said, Let there be light: and there was light.",
	"And the evening and the morning were the third day.",
	"And God made two great lights; the greater light to rule the day,",
	"And God blessed them, saying, Be fruitful, and multiply,",
	"And the LORD God formed man of the dust of the ground,",
	"And the LORD God planted a garden eastward in Eden;",
	"Now the serpent was more subtil than any beast of the field",
}

// BenchmarkServeSpeculation compares aggregate tokens per second of a
// model served with speculation (-serve.draft) and without, at 1, 4 and 16
// concurrent clients: the two servers take turns (off, on, on, off, off,
// on, ...; b.N requests per client per turn) so that both see the same
// machine load. It reports tok/s of each over all turns, on/off of those
// totals, and the median over rounds of each round's on/off (robust to a
// burst of load from other processes in one turn), and on/off of tokens
// per CPU second of the process (user + system).
//
// With -serve.model it serves a trained model (a run directory or .gguf);
// without, fake engines whose passes cost what a memory-bound forward pass
// costs (-serve.fake-pass per pass plus -serve.fake-token per token, as
// sleeps, so other processes' load hardly disturbs the ratio), with a fake
// draft (-serve.draft fake: a tenth of the target's cost, every fourth
// proposal wrong) or prompt lookup, which rarely matches the fake's text.
//
//	go test ./serve -run '^$' -bench ServeSpeculation -benchtime 3x -serve.model runs/tiny -serve.draft ngram
//	go test ./serve -run '^$' -bench ServeSpeculation -benchtime 2x -serve.draft fake
func BenchmarkServeSpeculation(b *testing.B) {
	servers := specBenchServers(b)
	for _, clients := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			cl := loadClient(clients)
			defer cl.CloseIdleConnections()
			var sec, cpu [2]float64
			var tok [2]int64
			turn := func(on bool, n int) float64 {
				c0 := cpuSeconds()
				ts := servers[on]
				var tokens atomic.Int64
				start := time.Now()
				var wg sync.WaitGroup
				for c := range clients {
					wg.Go(func() {
						for i := range n {
							body := fmt.Sprintf(`{"prompt":%q,"max_tokens":%d,"temperature":%g,"seed":%d}`,
								specBenchPrompts[c%len(specBenchPrompts)], *benchGen, *benchTemp, c*1000+i)
							got, err := completion(cl, ts.url, body, false)
							if err != nil {
								b.Error(err)
								return
							}
							tokens.Add(int64(got))
						}
					})
				}
				wg.Wait()
				x := 0
				if on {
					x = 1
				}
				el := time.Since(start).Seconds()
				sec[x] += el
				cpu[x] += cpuSeconds() - c0
				tok[x] += tokens.Load()
				return float64(tokens.Load()) / el
			}
			turn(false, 1) // warm up both
			turn(true, 1)
			sec, cpu, tok = [2]float64{}, [2]float64{}, [2]int64{}
			before := scrape(b, cl, servers[true].url)
			b.ResetTimer()
			var ratios []float64
			for r := 0; r < *benchRounds; r++ {
				var off, on float64
				if r%2 == 0 {
					off, on = turn(false, b.N), turn(true, b.N)
				} else {
					on, off = turn(true, b.N), turn(false, b.N)
				}
				ratios = append(ratios, on/off)
			}
			sort.Float64s(ratios)
			b.StopTimer()
			after := scrape(b, cl, servers[true].url)
			if tok[1] > 0 {
				prop := after["moe_speculative_proposed_tokens_total"] - before["moe_speculative_proposed_tokens_total"]
				acc := after["moe_speculative_accepted_tokens_total"] - before["moe_speculative_accepted_tokens_total"]
				b.ReportMetric(prop/float64(tok[1]), "proposed/tok")
				b.ReportMetric(acc/float64(tok[1]), "accepted/tok")
			}
			off, on := float64(tok[0])/sec[0], float64(tok[1])/sec[1]
			b.ReportMetric(off, "off-tok/s")
			b.ReportMetric(on, "on-tok/s")
			b.ReportMetric(on/off, "on/off")
			if cpu[0] > 0 && cpu[1] > 0 {
				// Tokens per CPU second: what a CPU-bound server delivers
				// when it has the cores to itself, and far less disturbed by
				// other processes than the wall clock.
				b.ReportMetric((float64(tok[1])/cpu[1])/(float64(tok[0])/cpu[0]), "cpu-on/off")
			}
			b.ReportMetric((ratios[(len(ratios)-1)/2]+ratios[len(ratios)/2])/2, "median-on/off")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// specBenchServers starts BenchmarkServeSpeculation's two servers, without
// speculation (false) and with it (true).
func specBenchServers(b *testing.B) map[bool]*testServer {
	servers := map[bool]*testServer{}
	if *benchModel == "" {
		for _, on := range []bool{false, true} {
			opt := Options{Parallel: 16}
			if on {
				switch *benchDraft {
				case "ngram":
					opt.NgramDraft = true
				case "fake":
					opt.Draft = &fakeEngine{ctxLen: 1024, wrongAt: 4, perPass: *benchPass / 10, perTok: *benchTok / 10}
				default:
					b.Fatalf("without -serve.model, -serve.draft is ngram or fake, not %q", *benchDraft)
				}
			}
			servers[on] = startServer(b, &fakeEngine{ctxLen: 1024, perPass: *benchPass, perTok: *benchTok}, opt)
		}
		return servers
	}
	pool := compute.NewPool(*benchThreads)
	b.Cleanup(pool.Close)
	m, err := infer.Load(*benchModel, pool)
	if err != nil {
		b.Fatal(err)
	}
	if m.Tok == nil {
		b.Fatalf("%s has no tokenizer", *benchModel)
	}
	m.UseBF16(*benchBF16)
	opt := Options{Parallel: 16, Logger: quietLogger(), StopTokens: []int32{}}
	var draft *infer.Model
	if *benchDraft == "ngram" {
		opt.NgramDraft = true
	} else if draft, err = infer.Load(*benchDraft, pool); err != nil {
		b.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		o, d := opt, draft
		if !on {
			o.NgramDraft, d = false, nil
		}
		srv, err := NewFromModel(m, d, o)
		if err != nil {
			b.Fatal(err)
		}
		servers[on] = serveOnLoopback(b, srv)
	}
	return servers
}
