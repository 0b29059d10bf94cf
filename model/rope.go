package model

import (
	"errors"
	"fmt"
	"math"

	"github.com/moe-llm/moe/compute"
	"github.com/moe-llm/moe/config"
)

// RopeFreqs returns the RoPE inverse frequencies of cfg (one per rotated
// pair, RopeDim / 2: the head dimension, or under MLA its rope part) and
// the attention factor that multiplies cos and sin, following Hugging Face
// transformers' rope_scaling definitions:
//
//   - none: invFreq_i = θ^(−2i/d), factor 1;
//   - linear: invFreq_i / s;
//   - ntk (static NTK-aware): θ' = θ·s^(d/(d−2)) in place of θ;
//   - yarn: a ramp between interpolated (invFreq_i/s) and original
//     frequencies over the dimensions whose wavelengths make between
//     beta_fast (32) and beta_slow (1) turns in the original context
//     (original_max_position_embeddings, else max_position_embeddings;
//     bounds floored and ceiled unless truncate is false), and attention factor 0.1·ln s + 1, or
//     mscale(s, mscale)/mscale(s, mscale_all_dim) when both are set, or
//     attention_factor.
func RopeFreqs(cfg *config.Config) (invFreq []float64, attn float64) {
	d := cfg.RopeDim()
	theta := RopeBase(cfg)
	rs := cfg.RopeScaling
	invFreq = make([]float64, d/2)
	for i := range invFreq {
		invFreq[i] = math.Pow(theta, -2*float64(i)/float64(d))
	}
	if rs == nil {
		return invFreq, 1
	}
	s := rs.Factor
	switch rs.Type {
	case config.RopeLinear:
		for i := range invFreq {
			invFreq[i] /= s
		}
	case config.RopeYaRN:
		orig := rs.OriginalMaxPositionEmbeddings
		if orig == 0 {
			orig = cfg.MaxPositionEmbeddings
		}
		fast, slow := rs.BetaFast, rs.BetaSlow
		if fast == 0 {
			fast = 32
		}
		if slow == 0 {
			slow = 1
		}
		// The dimension whose wavelength turns n times in the original context.
		corr := func(n float64) float64 {
			return float64(d) * math.Log(float64(orig)/(n*2*math.Pi)) / (2 * math.Log(RopeTheta(cfg)))
		}
		lo, hi := corr(fast), corr(slow)
		if rs.YaRNTruncate() {
			lo, hi = math.Floor(lo), math.Ceil(hi)
		}
		lo, hi = math.Max(lo, 0), math.Min(hi, float64(d-1))
		if lo == hi {
			hi += 0.001
		}
		for i := range invFreq {
			ramp := math.Min(math.Max((float64(i)-lo)/(hi-lo), 0), 1)
			extra := 1 - ramp // weight of the original frequency
			invFreq[i] = invFreq[i]/s*(1-extra) + invFreq[i]*extra
		}
		mscale := func(m float64) float64 { return 0.1*m*math.Log(s) + 1 }
		switch {
		case rs.AttentionFactor > 0:
			attn = rs.AttentionFactor
		case rs.Mscale > 0 && rs.MscaleAllDim > 0:
			attn = mscale(rs.Mscale) / mscale(rs.MscaleAllDim)
		default:
			attn = mscale(1)
		}
		return invFreq, attn
	}
	return invFreq, 1
}

// RopeBase returns the base the RoPE frequencies are powers of: RopeTheta,
// or for static NTK-aware scaling the raised base θ·s^(d/(d−2)) — which is
// how that scaling is written for llama.cpp and transformers, neither of
// which names it.
func RopeBase(cfg *config.Config) float64 {
	if rs := cfg.RopeScaling; rs != nil && rs.Type == config.RopeNTK {
		d := float64(cfg.RopeDim())
		return RopeTheta(cfg) * math.Pow(rs.Factor, d/(d-2))
	}
	return RopeTheta(cfg)
}

// NewRoPE builds the RoPE tables of cfg (its rope_theta and rope_scaling)
// for positions [0, maxPos): what training and inference both rotate by.
func NewRoPE(cfg *config.Config, maxPos int) (*compute.RoPE, error) {
	if err := cfg.ValidateRopeScaling(); err != nil {
		return nil, err
	}
	if err := cfg.RopeScalingImplemented(); err != nil {
		return nil, err
	}
	d := cfg.RopeDim()
	if d <= 0 || d%2 != 0 {
		return nil, fmt.Errorf("rope: head dimension %d must be positive and even", d)
	}
	if d == 2 && cfg.RopeScaling != nil && cfg.RopeScaling.Type == config.RopeNTK {
		return nil, errors.New("rope: NTK-aware scaling needs a head dimension above 2")
	}
	inv, attn := RopeFreqs(cfg)
	return compute.NewRoPEFreqs(inv, maxPos, attn)
}
