package memest

import (
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestTrainEstimateMatchesHeap builds small dense and MoE models, runs a
// forward and backward pass and compares the estimate (weights, gradients,
// activations, scratch; the AdamW moments are allocated here as train
// does) with the heap the pass leaves allocated: within a factor 1.25 either way.
func TestTrainEstimateMatchesHeap(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  *config.Config
		B, T int
	}{
		{"dense", &config.Config{ModelType: "mixtral", VocabSize: 512, HiddenSize: 64, IntermediateSize: 192, NumLayers: 3,
			NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 128, RopeTheta: 10000, RMSNormEps: 1e-5}, 4, 64},
		{"moe", &config.Config{ModelType: "mixtral", VocabSize: 512, HiddenSize: 64, IntermediateSize: 96, NumLayers: 2,
			NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 128, RopeTheta: 10000, RMSNormEps: 1e-5, NumExperts: 8, ExpertsPerToken: 2}, 8, 128},
		{"moe_qk_norm_bias", &config.Config{ModelType: "mixtral", VocabSize: 512, HiddenSize: 64, IntermediateSize: 96, NumLayers: 2,
			NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 128, RopeTheta: 10000, RMSNormEps: 1e-5, NumExperts: 8, ExpertsPerToken: 2,
			QKNorm: true, QKVBias: true}, 8, 128},
		{"moe_qk_norm_per_head", &config.Config{ModelType: "mixtral", VocabSize: 512, HiddenSize: 64, IntermediateSize: 96, NumLayers: 2,
			NumHeads: 4, NumKVHeads: 2, MaxPositionEmbeddings: 128, RopeTheta: 10000, RMSNormEps: 1e-5, NumExperts: 8, ExpertsPerToken: 2,
			QKNorm: true, QKNormPerHead: true}, 8, 128},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if got, want := Params(c.cfg), int64(model.NumParams(c.cfg)); got != want {
				t.Fatalf("Params = %d, model.NumParams = %d", got, want)
			}
			pool := compute.NewPool(2)
			defer pool.Close()
			before := heapInUse()
			m, err := model.New(c.cfg, pool)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(1)
			adam := make([]float32, 2*len(m.W.Flat))
			r := rand.New(rand.NewPCG(1, 2))
			toks := make([]int32, c.B*c.T)
			tgts := make([]int32, c.B*c.T)
			for i := range toks {
				toks[i], tgts[i] = int32(r.IntN(c.cfg.VocabSize)), int32(r.IntN(c.cfg.VocabSize))
			}
			if _, err := m.Forward(toks, tgts, c.B, c.T); err != nil {
				t.Fatal(err)
			}
			if err := m.Backward(); err != nil {
				t.Fatal(err)
			}
			measured := heapInUse() - before
			runtime.KeepAlive(m)
			runtime.KeepAlive(adam)
			est := Train(c.cfg, c.B, c.T, pool.Threads())
			ratio := float64(est.Total()) / float64(measured)
			t.Logf("estimate %s, measured heap %s, ratio %.3f", est, Bytes(measured), ratio)
			if ratio < 0.8 || ratio > 1.25 {
				t.Errorf("estimate %d bytes vs measured %d: ratio %.3f outside [0.8, 1.25]", est.Total(), measured, ratio)
			}
		})
	}
}

// TestInferenceKV checks the KV estimate against infer's float32 layout:
// layers × 2 (K and V) × kv heads × head dim × 4 bytes per position.
func TestInferenceKV(t *testing.T) {
	cfg := &config.Config{ModelType: "mixtral", VocabSize: 100, HiddenSize: 64, IntermediateSize: 128, NumLayers: 6,
		NumHeads: 8, NumKVHeads: 2, MaxPositionEmbeddings: 4096, RopeTheta: 10000, RMSNormEps: 1e-5}
	if got, want := KVBytesPerToken(cfg), int64(6*2*2*8*4); got != want {
		t.Errorf("KVBytesPerToken = %d, want %d", got, want)
	}
	e := Inference(cfg, nil, 1000, 4096, 1, 0)
	if e.KVCache != 4096*KVBytesPerToken(cfg) || e.Weights != 1000 {
		t.Errorf("Inference = %+v", e)
	}
	if e2 := Inference(cfg, cfg, 1000, 4096, 1, 0); e2.KVCache != 2*e.KVCache {
		t.Errorf("with a draft: KV %d, want %d", e2.KVCache, 2*e.KVCache)
	}
	if e3 := Inference(cfg, cfg, 0, math.MaxInt, 1, 0); e3.KVCache != math.MaxInt64 {
		t.Errorf("huge KV budget: %d, want saturated", e3.KVCache)
	}
}

// TestCheckRefuses checks the refusal line and the saturation of huge
// requests (no overflow into a small or negative total).
func TestCheckRefuses(t *testing.T) {
	cfg := &config.Config{ModelType: "mixtral", VocabSize: 50000, HiddenSize: 512, IntermediateSize: 1024, NumLayers: 8,
		NumHeads: 8, NumKVHeads: 8, MaxPositionEmbeddings: 65536, RopeTheta: 10000, RMSNormEps: 1e-5}
	huge := Train(cfg, 100000000, 65536, 2)
	if huge.Total() < 1e18 {
		t.Errorf("batch 1e8 × 65536: total %d, want > 1e18", huge.Total())
	}
	if e := Train(cfg, math.MaxInt, math.MaxInt, math.MaxInt); e.Total() != math.MaxInt64 {
		t.Errorf("MaxInt sizes: total %d, want saturated at MaxInt64", e.Total())
	}
	err := check(huge, 8<<30, "MemAvailable", "train", "lower --batch or --seq-len")
	if err == nil || !strings.Contains(err.Error(), "--batch") || !strings.Contains(err.Error(), "8.0 GiB") || strings.Contains(err.Error(), "\n") {
		t.Errorf("refusal: %v", err)
	}
	small := Train(cfg, 1, 128, 2)
	if err := check(small, 8<<30, "MemAvailable", "train", "x"); err != nil {
		t.Errorf("a small run was refused: %v", err)
	}
	if _, err := memAvailable("/proc/meminfo"); err != nil && runtime.GOOS == "linux" {
		t.Errorf("reading /proc/meminfo: %v", err)
	}
}

// TestAvailableReadsMeminfo parses a meminfo file.
func TestAvailableReadsMeminfo(t *testing.T) {
	p := t.TempDir() + "/meminfo"
	os.WriteFile(p, []byte("MemTotal:       16384000 kB\nMemFree:         1000 kB\nMemAvailable:    8192000 kB\n"), 0o644)
	if v, err := memAvailable(p); err != nil || v != 8192000*1024 {
		t.Errorf("memAvailable = %d, %v", v, err)
	}
	os.WriteFile(p, []byte("MemTotal: 1 kB\n"), 0o644)
	if _, err := memAvailable(p); err == nil {
		t.Error("no MemAvailable line: no error")
	}
}

// TestFitKV checks the KV positions that fit: what the headroom leaves
// after the other parts, whatever KV the estimate held, and never negative.
func TestFitKV(t *testing.T) {
	e := Estimate{Weights: 100 << 20, KVCache: 1 << 40, Scratch: 4 << 20}
	const per = 64 << 10
	avail := int64(1 << 30)
	want := int((0.9*float64(avail) - float64(104<<20)) / per)
	if got := fitKV(e, per, avail); got != want {
		t.Errorf("fitKV = %d, want %d", got, want)
	}
	if err := check(Estimate{Weights: e.Weights, Scratch: e.Scratch, KVCache: int64(want) * per}, avail, "test", "serve", "x"); err != nil {
		t.Errorf("the fitted budget is refused: %v", err)
	}
	if got := fitKV(e, per, 50<<20); got != 0 {
		t.Errorf("no room: fitKV = %d, want 0", got)
	}
}
