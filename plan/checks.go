package plan

import (
	"fmt"
	"math"

	"github.com/moe-llm/moe/config"
)

// Check sets one figure of a published account beside the arithmetic.
type Check struct {
	// Claim names the figure ("training compute").
	Claim string `json:"claim"`
	// Stated is the figure as the account gives it.
	Stated string `json:"stated"`
	// Computed is what the arithmetic gives, with how.
	Computed string `json:"computed"`
	// Verdict starts with "ok", "wrong", "inconsistent" or "unchecked",
	// followed by the reason.
	Verdict string `json:"verdict"`
	// StatedValue and ComputedValue are the two figures as numbers where
	// the claim has one (0 otherwise).
	StatedValue   float64 `json:"stated_value,omitempty"`
	ComputedValue float64 `json:"computed_value,omitempty"`
}

// The published account of GPT-4 that the gpt4 preset reproduces.
const (
	acctTotal        = 1.8e12
	acctLayers       = 120
	acctExperts      = 16
	acctTopK         = 2
	acctPerExpert    = 111e9
	acctAttention    = 55e9
	acctActive       = 280e9
	acctFwdFLOP      = 560e12 // "560 TFLOPs" per token, as stated
	acctTokens       = 13e12
	acctContext      = 8192
	acctLongContext  = 32768
	acctBatch        = 60e6
	acctPerExpertB   = 7.5e6
	acctTrainFLOP    = 2.15e25
	acctGPUs         = 25000
	acctDaysLo       = 90.0
	acctDaysHi       = 100.0
	acctMFULo        = 0.32
	acctMFUHi        = 0.36
	acctCost         = 63e6
	acctPrice        = 1.0
	acctGPT3Misquote = 1e12
	gpt3Published    = 175e9
	a100Peak         = 312e12
)

// within reports whether computed is within tol (a fraction) of stated.
func within(stated, computed, tol float64) bool {
	return math.Abs(computed-stated) <= tol*math.Abs(stated)
}

// relErr formats the relative difference of computed from stated.
func relErr(stated, computed float64) string {
	e := 100 * (computed - stated) / stated
	if math.Abs(e) < 0.05 {
		return "0.0%"
	}
	return fmt.Sprintf("%+.1f%%", e)
}

// agree returns an "ok (…)" or "off by …" verdict for a figure stated with
// a ~ that the arithmetic should reproduce within tol.
func agree(stated, computed, tol float64) string {
	if within(stated, computed, tol) {
		return "ok (" + relErr(stated, computed) + ")"
	}
	return "wrong: off by " + relErr(stated, computed)
}

// GPT4Checks sets every figure of the published GPT-4 account beside the
// arithmetic of the gpt4 preset, with a verdict each. The account's errors
// come out as "wrong" or "inconsistent" rows.
func GPT4Checks() ([]Check, error) {
	cfg, ok := config.Preset("gpt4")
	if !ok {
		return nil, fmt.Errorf("plan: the gpt4 preset is missing")
	}
	r := newReport(cfg, DefaultOptions(cfg).withDefaults(cfg))
	d := float64(cfg.HiddenSize)
	L := float64(cfg.NumLayers)
	hd := float64(cfg.HeadDimension())
	var cs []Check
	add := func(c Check) { cs = append(cs, c) }

	add(Check{
		Claim: "total parameters", Stated: "~1.8T",
		Computed: fmt.Sprintf("%s = %d × %s experts + %s attention + %s embeddings, router and norms",
			HumanCount(float64(r.Total)), acctExperts, HumanCount(float64(r.Expert)), HumanCount(float64(r.Attention)),
			HumanCount(float64(r.Total-int64(acctExperts)*r.Expert-r.Attention))),
		Verdict:     agree(acctTotal, float64(r.Total), 0.05),
		StatedValue: acctTotal, ComputedValue: float64(r.Total),
	})
	add(Check{
		Claim: "layers, experts, routing", Stated: "120 layers, 16 experts, top-2",
		Computed: fmt.Sprintf("%d layers, %d experts, top-%d (the preset's inputs)", r.Layers, r.Experts, r.ExpertsPerToken),
		Verdict:  "ok (taken as given)",
	})
	add(Check{
		Claim: "parameters per expert", Stated: "~111B",
		Computed: fmt.Sprintf("%s = 3·d·ff·%d with d = %d, ff = %d (SwiGLU; a GELU MLP of width 4d gives the same 8d² per layer)",
			HumanCount(float64(r.Expert)), r.Layers, cfg.HiddenSize, cfg.ExpertSize()),
		Verdict:     agree(acctPerExpert, float64(r.Expert), 0.02) + "; the widths were chosen to fit it",
		StatedValue: acctPerExpert, ComputedValue: float64(r.Expert),
	})
	mqa := L * (2*d*d + 2*d*hd)
	add(Check{
		Claim: "shared attention parameters", Stated: "~55B",
		Computed: fmt.Sprintf("%s = 4·d²·%d for full multi-head attention at d = %d; multi-query attention (one K/V head of %d) at that width: %s",
			HumanCount(float64(r.Attention)), r.Layers, cfg.HiddenSize, cfg.HeadDimension(), HumanCount(mqa)),
		Verdict: fmt.Sprintf("%s, but only for full multi-head attention: multi-query attention at that width would be %s, about half",
			agree(acctAttention, float64(r.Attention), 0.02), HumanCount(mqa)),
		StatedValue: acctAttention, ComputedValue: float64(r.Attention),
	})
	add(Check{
		Claim: "parameters used per token", Stated: "~280B",
		Computed: fmt.Sprintf("%s = %d × %s + %s attention + %s embeddings and LM head",
			HumanCount(float64(r.Active)), acctTopK, HumanCount(float64(r.Expert)), HumanCount(float64(r.Attention)),
			HumanCount(float64(r.Embedding+r.LMHead))),
		Verdict:     agree(acctActive, float64(r.Active), 0.02),
		StatedValue: acctActive, ComputedValue: float64(r.Active),
	})
	add(Check{
		Claim: "forward FLOPs per token", Stated: "~560 TFLOP",
		Computed: fmt.Sprintf("%s of matmuls (2 per weight used) + %s of attention at %d context = %s",
			SI(r.ForwardMatmulFLOPsPerToken, "FLOP"), SI(r.ForwardAttentionFLOPsPerToken, "FLOP"), r.Context, SI(r.ForwardFLOPsPerToken, "FLOP")),
		Verdict: fmt.Sprintf("wrong unit: a forward pass over ~280B parameters costs 2 × 280B = %s per token; the stated TFLOP is %.0f× too much",
			SI(2*acctActive, "FLOP"), acctFwdFLOP/(2*acctActive)),
		StatedValue: acctFwdFLOP, ComputedValue: r.ForwardFLOPsPerToken,
	})
	sixND := 6 * acctActive * acctTokens
	add(Check{
		Claim: "training compute", Stated: "~2.15e25 FLOPs",
		Computed: fmt.Sprintf("6·N·D = 6 × 280B × 13T = %s; with this preset's matmul weights %s, plus %s of attention = %s",
			Sci(sixND), Sci(r.TrainMatmulFLOPs), Sci(r.TrainAttentionFLOPs), Sci(r.TrainFLOPs)),
		Verdict:     agree(acctTrainFLOP, r.TrainMatmulFLOPs, 0.03) + ": 6·N·D and the stated total agree",
		StatedValue: acctTrainFLOP, ComputedValue: r.TrainFLOPs,
	})
	days := acctTrainFLOP / (acctGPUs * a100Peak * 0.34) / 86400
	rate := acctTrainFLOP / (days * 86400)
	add(Check{
		Claim: "2.15e25: count or rate", Stated: "\"2.15e25 FLOPS\"",
		Computed: fmt.Sprintf("a count of operations: spread over %.0f days it is a sustained %s (25,000 A100s × 312 TFLOP/s × 34%%); as a rate it would need %s A100s",
			days, SI(rate, "FLOP/s"), HumanCount(acctTrainFLOP/a100Peak)),
		Verdict:     "ok as a FLOP count; wrong if read as FLOP/s",
		StatedValue: acctTrainFLOP, ComputedValue: rate,
	})
	add(Check{
		Claim: "training tokens", Stated: "~13T (text ×2, code ×4 epochs)",
		Computed: fmt.Sprintf("2.15e25 / (6 × %s) = %s tokens; the epoch split cannot be derived from the arithmetic",
			HumanCount(r.TrainMatmulFLOPs/6/acctTokens), HumanCount(acctTrainFLOP/(r.TrainMatmulFLOPs/acctTokens))),
		Verdict:     agree(acctTokens, acctTrainFLOP/(r.TrainMatmulFLOPs/acctTokens), 0.05) + "; epochs unchecked",
		StatedValue: acctTokens, ComputedValue: acctTrainFLOP / (r.TrainMatmulFLOPs / acctTokens),
	})
	midDays := (acctDaysLo + acctDaysHi) / 2
	gpusNeeded := acctTrainFLOP / (midDays * 86400 * a100Peak * 0.34)
	add(Check{
		Claim: "GPU count", Stated: "~25,000 A100s",
		Computed:    fmt.Sprintf("2.15e25 / (%.0f days × 312 TFLOP/s × 34%% MFU) = %s A100s", midDays, thousands(int64(math.Round(gpusNeeded/100)*100))),
		Verdict:     agree(acctGPUs, gpusNeeded, 0.1),
		StatedValue: acctGPUs, ComputedValue: gpusNeeded,
	})
	days25 := acctTrainFLOP / (25 * a100Peak * 0.34) / 86400
	add(Check{
		Claim: "GPU count as sometimes quoted", Stated: "\"25 A100s\"",
		Computed:    fmt.Sprintf("25 A100s at 34%% MFU would need %s days (%.0f years)", thousands(int64(days25)), days25/365.25),
		Verdict:     "wrong: only about 25,000 A100s fit 90–100 days",
		StatedValue: 25, ComputedValue: gpusNeeded,
	})
	dLo := acctTrainFLOP / (acctGPUs * a100Peak * acctMFUHi) / 86400
	dHi := acctTrainFLOP / (acctGPUs * a100Peak * acctMFULo) / 86400
	add(Check{
		Claim: "training time", Stated: "90–100 days",
		Computed:    fmt.Sprintf("2.15e25 / (25,000 × 312 TFLOP/s × 32–36%% MFU) = %.1f–%.1f days (%.1f at 34%%)", dLo, dHi, days),
		Verdict:     verdictRange(dLo, dHi, acctDaysLo, acctDaysHi, "days"),
		StatedValue: midDays, ComputedValue: days,
	})
	mLo := acctTrainFLOP / (acctGPUs * a100Peak * acctDaysHi * 86400)
	mHi := acctTrainFLOP / (acctGPUs * a100Peak * acctDaysLo * 86400)
	add(Check{
		Claim: "MFU", Stated: "32–36%",
		Computed:    fmt.Sprintf("2.15e25 / (25,000 × 312 TFLOP/s × 90–100 days) = %s–%s", pct(mLo), pct(mHi)),
		Verdict:     verdictRange(mLo, mHi, acctMFULo, acctMFUHi, "MFU"),
		StatedValue: (acctMFULo + acctMFUHi) / 2, ComputedValue: (mLo + mHi) / 2,
	})
	cLo := acctGPUs * 24 * acctDaysLo * acctPrice
	cHi := acctGPUs * 24 * acctDaysHi * acctPrice
	cMid := acctGPUs * 24 * days * acctPrice
	costVerdict := "ok"
	if acctCost < cLo*0.98 || acctCost > cHi*1.02 {
		costVerdict = fmt.Sprintf("inconsistent: $63M is %s above the top of the range; it needs %.0f days or %s GPUs",
			relErr(cHi, acctCost)[1:], acctCost/(acctGPUs*24*acctPrice), thousands(int64(math.Round(acctCost/(24*acctDaysHi*acctPrice)/100)*100)))
	}
	add(Check{
		Claim: "cost", Stated: "~$63M at $1 per A100-hour",
		Computed:    fmt.Sprintf("25,000 × 24 h × 90–100 days × $1 = %s–%s (%s at %.1f days)", money(cLo), money(cHi), money(cMid), days),
		Verdict:     costVerdict,
		StatedValue: acctCost, ComputedValue: cMid,
	})
	kvMHA := 2 * L * d * 2
	kvMQA := 2 * L * hd * 2
	add(Check{
		Claim: "context", Stated: "8k",
		Computed: fmt.Sprintf("KV cache in bf16: %s per token and %s per 8k sequence with multi-head attention; %s and %s with multi-query",
			SI(kvMHA, "B"), SI(kvMHA*acctContext, "B"), SI(kvMQA, "B"), SI(kvMQA*acctContext, "B")),
		Verdict:     "ok (taken as given); serving many 8k sequences is only cheap with multi-query attention",
		StatedValue: acctContext, ComputedValue: float64(r.Context),
	})
	add(Check{
		Claim: "32k fine-tuned version", Stated: "32k context",
		Computed: fmt.Sprintf("KV cache per 32k sequence: %s with multi-head attention (more than one 80 GB GPU holds), %s with multi-query",
			SI(kvMHA*acctLongContext, "B"), SI(kvMQA*acctLongContext, "B")),
		Verdict:     "unchecked (plausible with multi-query attention or a sharded cache)",
		StatedValue: acctLongContext,
	})
	seqs := acctBatch / acctContext
	add(Check{
		Claim: "batch size", Stated: "60M tokens",
		Computed:    fmt.Sprintf("%s sequences of 8192 tokens; %s optimizer steps for 13T tokens", thousands(int64(seqs)), thousands(int64(math.Round(acctTokens/acctBatch)))),
		Verdict:     "ok (taken as given)",
		StatedValue: acctBatch, ComputedValue: acctBatch,
	})
	perExpert := acctBatch * acctTopK / acctExperts
	add(Check{
		Claim: "tokens per expert per batch", Stated: "~7.5M",
		Computed:    fmt.Sprintf("60M × top-%d / %d experts = %s per expert in each MoE layer (balanced routing)", acctTopK, acctExperts, HumanCount(perExpert)),
		Verdict:     agree(acctPerExpertB, perExpert, 0.01),
		StatedValue: acctPerExpertB, ComputedValue: perExpert,
	})
	g3, ok := config.Preset("gpt3")
	if !ok {
		return nil, fmt.Errorf("plan: the gpt3 preset is missing")
	}
	g3n := float64(Count(g3).Total)
	add(Check{
		Claim: "GPT-3 size as sometimes quoted", Stated: "\"GPT-3 is 1T\"",
		Computed:    fmt.Sprintf("%s (96 layers, d = 12288, the gpt3 preset); published: 175B", HumanCount(g3n)),
		Verdict:     "wrong: GPT-3 has " + HumanCount(g3n) + " parameters (" + relErr(gpt3Published, g3n) + " from the published 175B), not 1T",
		StatedValue: acctGPT3Misquote, ComputedValue: g3n,
	})
	// Expected distinct experts per layer touched by n tokens that each
	// pick k of E at random: E·(1 − (1 − k/E)^n).
	const draft = 4
	touched := acctExperts * (1 - math.Pow(1-float64(acctTopK)/acctExperts, draft+1))
	add(Check{
		Claim: "speculative decoding", Stated: "used for inference",
		Computed: fmt.Sprintf("verifying %d draft tokens (%d positions) touches %.1f of %d experts per layer on average, against %d for one token",
			draft, draft+1, touched, acctExperts, acctTopK),
		Verdict:       fmt.Sprintf("unchecked (plausible): each verification reads %.1f× the expert weights of a plain decode step, so acceptance must be high to pay", touched/acctTopK),
		ComputedValue: touched,
	})
	consistent := within(acctTrainFLOP, sixND, 0.03) && dLo <= acctDaysHi && dHi >= acctDaysLo && within(acctGPUs, gpusNeeded, 0.1)
	summary := "inconsistent"
	if consistent {
		summary = "ok: 6·N·D, the GPU count, the days and the MFU agree with each other"
		if costVerdict != "ok" {
			summary += "; only the cost is high (" + relErr(cMid, acctCost) + " against the other figures)"
		}
	}
	add(Check{
		Claim: "consistency", Stated: "6·N·D, GPUs, days, MFU, cost",
		Computed: fmt.Sprintf("6 × 280B × 13T = %s ≈ 2.15e25; 25,000 A100s × 312 TFLOP/s × 34%% → %.0f days → %s", Sci(sixND), days, money(cMid)),
		Verdict:  summary,
	})
	return cs, nil
}

// verdictRange compares a computed range [lo, hi] with a stated one.
func verdictRange(lo, hi, sLo, sHi float64, what string) string {
	if hi < sLo || lo > sHi {
		return "inconsistent: the computed " + what + " fall outside the stated range"
	}
	if lo >= sLo*0.99 && hi <= sHi*1.01 {
		return "ok (within the stated range)"
	}
	return "ok (the ranges overlap)"
}
