package checkpoint

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
	"github.com/moe-llm/moe/model"
)

func microConfig() *config.Config {
	return &config.Config{
		ModelType: "mixtral", VocabSize: 32, HiddenSize: 8, IntermediateSize: 16,
		NumLayers: 2, NumHeads: 2, NumKVHeads: 1, MaxPositionEmbeddings: 16,
		RopeTheta: 10000, RMSNormEps: 1e-5, NumExperts: 4, ExpertsPerToken: 2,
	}
}

func randVec(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	x[0] = float32(math.NaN()) // bit patterns must survive, NaN included
	return x
}

func writeSample(t *testing.T, dir string, step int) (Header, []Tensor) {
	t.Helper()
	cfg := microConfig()
	n := model.NumParams(cfg)
	r := rand.New(rand.NewPCG(uint64(step), 7))
	h := Header{
		Step: step, Tokens: int64(step) * 1000, Seed: 42, Threads: 2, Config: cfg,
		Loader:    json.RawMessage(`{"pos":123}`),
		RNG:       []byte{1, 2, 3, 250},
		Optimizer: Optimizer{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradClip: 1, Step: step},
		Schedule:  Schedule{LR: 1e-3, MinLR: 1e-4, WarmupSteps: 10, TotalSteps: 100},
	}
	weights := randVec(r, n)
	weights[0] = 0.5 // LoadModel refuses non-finite weights; the moments keep their NaN
	secs := []Tensor{{SectionWeights, weights}, {SectionAdamM, randVec(r, n)}, {SectionAdamV, randVec(r, n)}}
	if _, err := Save(dir, h, secs, 2); err != nil {
		t.Fatal(err)
	}
	return h, secs
}

func TestRoundTripBitExact(t *testing.T) {
	dir := t.TempDir()
	h, secs := writeSample(t, dir, 5)
	ck, err := ReadFile(filepath.Join(dir, FileName(5)))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Header.Step != 5 || ck.Header.Tokens != h.Tokens || string(ck.Header.Loader) != `{"pos":123}` ||
		string(ck.Header.RNG) != string(h.RNG) || ck.Header.Optimizer != h.Optimizer || ck.Header.Schedule != h.Schedule {
		t.Fatalf("header round trip: got %+v", ck.Header)
	}
	if ck.Header.Config.NumExperts != 4 || ck.Header.Config.HiddenSize != 8 {
		t.Fatalf("config round trip: %+v", ck.Header.Config)
	}
	for _, s := range secs {
		got := ck.Section(s.Name)
		if len(got) != len(s.Data) {
			t.Fatalf("section %s: %d values, want %d", s.Name, len(got), len(s.Data))
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(s.Data[i]) {
				t.Fatalf("section %s[%d]: %v != %v", s.Name, i, got[i], s.Data[i])
			}
		}
	}
}

func TestKeepsNewestTwoAndLoadModel(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []int{1, 2, 10, 3} {
		writeSample(t, dir, s)
	}
	// A stray temp file from an interrupted write is ignored.
	os.WriteFile(filepath.Join(dir, ".checkpoint-00000099.moeckpt.tmp-1"), []byte("junk"), 0o644)
	paths, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[0]) != FileName(10) || filepath.Base(paths[1]) != FileName(3) {
		t.Fatalf("kept %v, want steps 10 and 3", paths)
	}
	_, secs := writeSample(t, t.TempDir(), 10) // same content as step 10's
	for _, p := range []string{dir, paths[0]} {
		cfg, w, err := LoadModel(p)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.NumLayers != 2 || len(w.Flat) != len(secs[0].Data) || len(w.Layers) != 2 {
			t.Fatalf("LoadModel(%s): cfg %+v, %d params", p, cfg, len(w.Flat))
		}
		for i := range w.Flat {
			if math.Float32bits(w.Flat[i]) != math.Float32bits(secs[0].Data[i]) {
				t.Fatalf("weight %d differs", i)
			}
		}
	}
}

func TestCorruptAndTruncatedAreDetected(t *testing.T) {
	dir := t.TempDir()
	writeSample(t, dir, 1)
	path := filepath.Join(dir, FileName(1))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated":     good[:len(good)-100],
		"empty":         {},
		"extra":         append(append([]byte(nil), good...), 0),
		"bad magic":     append([]byte("NOTACKPT"), good[8:]...),
		"flipped float": flip(good, len(good)-50),
		"flipped hdr":   flip(good, 30),
		"flipped crc":   flip(good, len(good)-1),
	}
	for name, b := range cases {
		p := filepath.Join(dir, "c.moeckpt")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadFile(p)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
		if _, _, err := LoadModel(p); err == nil {
			t.Errorf("%s: LoadModel accepted it", name)
		}
	}
	if _, _, err := LoadModel(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no checkpoint") {
		t.Errorf("empty dir: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x10
	return c
}
