package model

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/moe-llm/moe/config"
)

// hfInvFreq is Hugging Face transformers' rope initialisation
// (modeling_rope_utils: _compute_default / _linear_scaling / _yarn
// parameters; static NTK as base·factor^(dim/(dim−2))), written out in
// float64 step by step as transformers does it, to check RopeFreqs.
func hfInvFreq(cfg *config.Config) ([]float64, float64) {
	base := cfg.RopeTheta
	dim := cfg.HeadDimension()
	rs := cfg.RopeScaling
	arange := func() []float64 { // torch.arange(0, dim, 2) / dim
		var a []float64
		for i := 0; i < dim; i += 2 {
			a = append(a, float64(i)/float64(dim))
		}
		return a
	}
	posFreqs := func(b float64) []float64 {
		var p []float64
		for _, e := range arange() {
			p = append(p, math.Pow(b, e))
		}
		return p
	}
	inv := func(b float64) []float64 {
		var out []float64
		for _, p := range posFreqs(b) {
			out = append(out, 1/p)
		}
		return out
	}
	if rs == nil {
		return inv(base), 1
	}
	factor := rs.Factor
	switch rs.Type {
	case "linear":
		out := inv(base)
		for i := range out {
			out[i] /= factor
		}
		return out, 1
	case "ntk":
		return inv(base * math.Pow(factor, float64(dim)/float64(dim-2))), 1
	}
	// yarn
	orig := float64(cfg.MaxPositionEmbeddings)
	if rs.OriginalMaxPositionEmbeddings > 0 {
		orig = float64(rs.OriginalMaxPositionEmbeddings)
	}
	getMscale := func(scale, mscale float64) float64 {
		if scale <= 1 {
			return 1
		}
		return 0.1*mscale*math.Log(scale) + 1
	}
	attention := rs.AttentionFactor
	if attention == 0 {
		if rs.Mscale != 0 && rs.MscaleAllDim != 0 {
			attention = getMscale(factor, rs.Mscale) / getMscale(factor, rs.MscaleAllDim)
		} else {
			attention = getMscale(factor, 1)
		}
	}
	betaFast, betaSlow := rs.BetaFast, rs.BetaSlow
	if betaFast == 0 {
		betaFast = 32
	}
	if betaSlow == 0 {
		betaSlow = 1
	}
	findCorrectionDim := func(numRotations float64) float64 {
		return (float64(dim) * math.Log(orig/(numRotations*2*math.Pi))) / (2 * math.Log(base))
	}
	low, high := findCorrectionDim(betaFast), findCorrectionDim(betaSlow)
	if rs.Truncate == nil || *rs.Truncate {
		low, high = math.Floor(low), math.Ceil(high)
	}
	low, high = math.Max(low, 0), math.Min(high, float64(dim-1))
	if low == high {
		high += 0.001
	}
	pf := posFreqs(base)
	out := make([]float64, len(pf))
	for i, p := range pf {
		extrapolation, interpolation := 1/p, 1/(factor*p)
		ramp := math.Min(math.Max((float64(i)-low)/(high-low), 0), 1)
		extrapolationFactor := 1 - ramp
		out[i] = interpolation*(1-extrapolationFactor) + extrapolation*extrapolationFactor
	}
	return out, attention
}

func ropeConfig(hd, maxPos int, rs *config.RopeScaling) *config.Config {
	return &config.Config{ModelType: "llama", VocabSize: 8, HiddenSize: 4 * hd, IntermediateSize: 8, NumLayers: 1,
		NumHeads: 4, HeadDim: hd, MaxPositionEmbeddings: maxPos, RopeTheta: 10000, RopeScaling: rs}
}

// TestRopeScalingMatchesHF checks RopeFreqs and the tables built from them
// against hfInvFreq for every scaling kind and YaRN's options.
func TestRopeScalingMatchesHF(t *testing.T) {
	cases := map[string]*config.Config{
		"none":          ropeConfig(64, 256, nil),
		"linear":        ropeConfig(64, 1024, &config.RopeScaling{Type: config.RopeLinear, Factor: 4}),
		"ntk":           ropeConfig(64, 1024, &config.RopeScaling{Type: config.RopeNTK, Factor: 4}),
		"yarn":          ropeConfig(64, 1024, &config.RopeScaling{Type: config.RopeYaRN, Factor: 4, OriginalMaxPositionEmbeddings: 256}),
		"yarn_no_orig":  ropeConfig(128, 4096, &config.RopeScaling{Type: config.RopeYaRN, Factor: 8}),
		"yarn_betas":    ropeConfig(64, 1024, &config.RopeScaling{Type: config.RopeYaRN, Factor: 4, OriginalMaxPositionEmbeddings: 256, BetaFast: 16, BetaSlow: 2}),
		"yarn_deepseek": ropeConfig(64, 163840, &config.RopeScaling{Type: config.RopeYaRN, Factor: 40, OriginalMaxPositionEmbeddings: 4096, Mscale: 1, MscaleAllDim: 0.707}),
		"yarn_attn":     ropeConfig(32, 1024, &config.RopeScaling{Type: config.RopeYaRN, Factor: 2, AttentionFactor: 1.25}),
		"yarn_gpt_oss":  ropeConfig(64, 131072, &config.RopeScaling{Type: config.RopeYaRN, Factor: 32, OriginalMaxPositionEmbeddings: 4096, BetaFast: 32, BetaSlow: 1, Truncate: new(bool)}),
	}
	for name, cfg := range cases {
		got, attn := RopeFreqs(cfg)
		want, wantAttn := hfInvFreq(cfg)
		if len(got) != len(want) || math.Abs(attn-wantAttn) > 1e-15 {
			t.Fatalf("%s: %d frequencies, attention %v; HF %d, %v", name, len(got), attn, len(want), wantAttn)
		}
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-14*want[i] {
				t.Fatalf("%s: inv_freq[%d] = %v, HF %v", name, i, got[i], want[i])
			}
		}
		// Scaling changes the frequencies (the test would pass on an
		// unscaled RoPE otherwise).
		if cfg.RopeScaling != nil {
			plain, _ := RopeFreqs(ropeConfig(cfg.HeadDimension(), 256, nil))
			if got[len(got)-1] == plain[len(plain)-1] {
				t.Errorf("%s: the lowest frequency is unscaled", name)
			}
		}
		// The tables rotate by attn·(cos, sin) of pos·inv_freq.
		r, err := NewRoPE(cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		hd := cfg.HeadDimension()
		for _, pos := range []int{0, 1, 255, 1023, 5000} {
			x := make([]float32, hd)
			for i := range x {
				x[i] = float32(i%7) - 3
			}
			y := append([]float32(nil), x...)
			r.Apply(y, 1, pos)
			for i := 0; i < hd/2; i++ {
				s, c := math.Sincos(float64(pos) * want[i])
				a, b := float64(x[i]), float64(x[i+hd/2])
				wa, wb := wantAttn*(a*c-b*s), wantAttn*(b*c+a*s)
				if math.Abs(float64(y[i])-wa) > 1e-5*(1+math.Abs(wa)) || math.Abs(float64(y[i+hd/2])-wb) > 1e-5*(1+math.Abs(wb)) {
					t.Fatalf("%s pos %d pair %d: (%v, %v), want (%v, %v)", name, pos, i, y[i], y[i+hd/2], wa, wb)
				}
			}
		}
	}
}

// TestYaRNTruncate checks that truncate: false (gpt-oss) changes the
// frequencies (the correction range stays fractional).
func TestYaRNTruncate(t *testing.T) {
	rs := &config.RopeScaling{Type: config.RopeYaRN, Factor: 32, OriginalMaxPositionEmbeddings: 4096}
	a, _ := RopeFreqs(ropeConfig(64, 131072, rs))
	rs.Truncate = new(bool)
	b, _ := RopeFreqs(ropeConfig(64, 131072, rs))
	if slices.Equal(a, b) {
		t.Fatal("truncate: false gives the truncated frequencies")
	}
}

func TestRopeScalingRejectsBadFactor(t *testing.T) {
	for _, f := range []float64{1, 0.5, 0, -2, math.Inf(1)} {
		cfg := ropeConfig(64, 1024, &config.RopeScaling{Type: config.RopeYaRN, Factor: f})
		if _, err := NewRoPE(cfg, 16); err == nil || !strings.Contains(err.Error(), "rope_scaling.factor") {
			t.Errorf("factor %v: err = %v", f, err)
		}
		if err := Supported(cfg); err == nil {
			t.Errorf("factor %v: Supported accepted it", f)
		}
	}
	for _, typ := range []string{"longrope", "llama3", "dynamic", "su"} {
		cfg := ropeConfig(64, 1024, &config.RopeScaling{Type: typ, Factor: 4})
		if _, err := NewRoPE(cfg, 16); err == nil || !strings.Contains(err.Error(), "rope_type") {
			t.Errorf("%s: err = %v", typ, err)
		}
		if err := Supported(cfg); err == nil {
			t.Errorf("%s: Supported accepted it", typ)
		}
	}
}
