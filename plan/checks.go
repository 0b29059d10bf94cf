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

// slip returns k ≠ 0 when stated is computed·10^k within tol (a fraction):
// a figure off by a power of ten, the mark of a wrong unit or a mistranslated
// Chinese 万/亿 count; 0 otherwise.
func slip(stated, computed, tol float64) int {
	if stated <= 0 || computed <= 0 {
		return 0
	}
	k := int(math.Round(math.Log10(stated / computed)))
	if k == 0 || !within(stated, computed*math.Pow(10, float64(k)), tol) {
		return 0
	}
	return k
}

// gpt4Env is what the checks of the account are computed from: the gpt4
// preset's report and the arithmetic several checks share.
type gpt4Env struct {
	r          *Report
	cfg        *config.Config
	d, L, hd   float64
	sixND      float64 // 6·N·D with the account's N and D
	days       float64 // days at 34% MFU on the account's cluster
	gpusNeeded float64 // A100s that fit the middle of 90–100 days
	dLo, dHi   float64 // days at 36% and 32% MFU
	costMid    float64 // dollars at the computed days
	costOK     bool    // whether the stated cost fits the stated days
	gpt3       float64 // the gpt3 preset's parameters
}

// gpt4Checks is the account, one computed comparison per row, in the order
// moe plan prints them.
var gpt4Checks = []func(e *gpt4Env) Check{
	checkTotal, checkShape, checkPerExpert, checkAttention, checkActive, checkForward,
	checkTrainCompute, checkCountOrRate, checkTokens, checkGPUs, checkGPUMisquote,
	checkDays, checkMFU, checkCost, checkContext, checkLongContext, checkBatch,
	checkPerExpertBatch, checkGPT3Misquote, checkSpeculative,
	checkZhAttention, checkZhCostHour, checkConsistency,
}

// GPT4Checks sets every figure of the published GPT-4 account (and two of
// its Chinese translation) beside the arithmetic of the gpt4 preset, with a
// verdict each computed from the two figures. The account's errors come
// out as "wrong" or "inconsistent" rows.
func GPT4Checks() ([]Check, error) {
	cfg, ok := config.Preset("gpt4")
	if !ok {
		return nil, fmt.Errorf("plan: the gpt4 preset is missing")
	}
	g3, ok := config.Preset("gpt3")
	if !ok {
		return nil, fmt.Errorf("plan: the gpt3 preset is missing")
	}
	e := &gpt4Env{
		r: newReport(cfg, DefaultOptions(cfg).withDefaults(cfg)), cfg: cfg,
		d: float64(cfg.HiddenSize), L: float64(cfg.NumLayers), hd: float64(cfg.HeadDimension()),
		sixND: 6 * acctActive * acctTokens,
		days:  acctTrainFLOP / (acctGPUs * a100Peak * 0.34) / 86400,
		gpt3:  float64(Count(g3).Total),
	}
	e.gpusNeeded = acctTrainFLOP / ((acctDaysLo + acctDaysHi) / 2 * 86400 * a100Peak * 0.34)
	e.dLo = acctTrainFLOP / (acctGPUs * a100Peak * acctMFUHi) / 86400
	e.dHi = acctTrainFLOP / (acctGPUs * a100Peak * acctMFULo) / 86400
	e.costMid = acctGPUs * 24 * e.days * acctPrice
	cLo, cHi := acctGPUs*24*acctDaysLo*acctPrice, acctGPUs*24*acctDaysHi*acctPrice
	e.costOK = acctCost >= cLo*0.98 && acctCost <= cHi*1.02
	cs := make([]Check, len(gpt4Checks))
	for i, f := range gpt4Checks {
		cs[i] = f(e)
	}
	return cs, nil
}

func checkTotal(e *gpt4Env) Check {
	r := e.r
	return Check{
		Claim: "total parameters", Stated: "~1.8T",
		Computed: fmt.Sprintf("%s = %d × %s experts + %s attention + %s embeddings, router and norms",
			HumanCount(float64(r.Total)), acctExperts, HumanCount(float64(r.Expert)), HumanCount(float64(r.Attention)),
			HumanCount(float64(r.Total-int64(acctExperts)*r.Expert-r.Attention))),
		Verdict:     agree(acctTotal, float64(r.Total), 0.05),
		StatedValue: acctTotal, ComputedValue: float64(r.Total),
	}
}

func checkShape(e *gpt4Env) Check {
	r := e.r
	v := "ok (taken as given)"
	if r.Layers != acctLayers || r.Experts != acctExperts || r.ExpertsPerToken != acctTopK {
		v = "inconsistent: the preset is not the account's shape"
	}
	return Check{
		Claim: "layers, experts, routing", Stated: "120 layers, 16 experts, top-2",
		Computed: fmt.Sprintf("%d layers, %d experts, top-%d (the preset's inputs)", r.Layers, r.Experts, r.ExpertsPerToken),
		Verdict:  v,
	}
}

func checkPerExpert(e *gpt4Env) Check {
	r := e.r
	return Check{
		Claim: "parameters per expert", Stated: "~111B",
		Computed: fmt.Sprintf("%s = 3·d·ff·%d with d = %d, ff = %d (SwiGLU; a GELU MLP of width 4d gives the same 8d² per layer)",
			HumanCount(float64(r.Expert)), r.Layers, e.cfg.HiddenSize, e.cfg.ExpertSize()),
		Verdict:     agree(acctPerExpert, float64(r.Expert), 0.02) + "; the widths were chosen to fit it",
		StatedValue: acctPerExpert, ComputedValue: float64(r.Expert),
	}
}

// mqaAttention is the attention parameters of multi-query attention (one
// K/V head) at the preset's width.
func (e *gpt4Env) mqaAttention() float64 { return e.L * (2*e.d*e.d + 2*e.d*e.hd) }

func checkAttention(e *gpt4Env) Check {
	r := e.r
	mqa := e.mqaAttention()
	v := agree(acctAttention, float64(r.Attention), 0.02)
	if within(acctAttention, float64(r.Attention), 0.02) && !within(acctAttention, mqa, 0.1) {
		v += fmt.Sprintf(", but only for full multi-head attention: multi-query attention at that width would be %s, about %s",
			HumanCount(mqa), fraction(mqa/float64(r.Attention)))
	}
	return Check{
		Claim: "shared attention parameters", Stated: "~55B",
		Computed: fmt.Sprintf("%s = 4·d²·%d for full multi-head attention at d = %d; multi-query attention (one K/V head of %d) at that width: %s",
			HumanCount(float64(r.Attention)), r.Layers, e.cfg.HiddenSize, e.cfg.HeadDimension(), HumanCount(mqa)),
		Verdict:     v,
		StatedValue: acctAttention, ComputedValue: float64(r.Attention),
	}
}

// fraction names a ratio near a simple fraction ("half") or gives it as a
// percentage.
func fraction(x float64) string {
	if within(0.5, x, 0.05) {
		return "half"
	}
	return pct(x)
}

func checkActive(e *gpt4Env) Check {
	r := e.r
	return Check{
		Claim: "parameters used per token", Stated: "~280B",
		Computed: fmt.Sprintf("%s = %d × %s + %s attention + %s embeddings and LM head",
			HumanCount(float64(r.Active)), acctTopK, HumanCount(float64(r.Expert)), HumanCount(float64(r.Attention)),
			HumanCount(float64(r.Embedding+r.LMHead))),
		Verdict:     agree(acctActive, float64(r.Active), 0.02),
		StatedValue: acctActive, ComputedValue: float64(r.Active),
	}
}

func checkForward(e *gpt4Env) Check {
	r := e.r
	rule := 2 * acctActive // two FLOPs per weight used
	v := agree(acctFwdFLOP, r.ForwardFLOPsPerToken, 0.1)
	if k := slip(acctFwdFLOP, rule, 0.01); k != 0 {
		v = fmt.Sprintf("wrong unit: a forward pass over ~%s parameters costs 2 × %s = %s per token; the stated figure is %.0f× too much",
			HumanCount(acctActive), HumanCount(acctActive), SI(rule, "FLOP"), math.Pow(10, float64(k)))
	}
	return Check{
		Claim: "forward FLOPs per token", Stated: "~560 TFLOP",
		Computed: fmt.Sprintf("%s of matmuls (2 per weight used) + %s of attention at %d context = %s",
			SI(r.ForwardMatmulFLOPsPerToken, "FLOP"), SI(r.ForwardAttentionFLOPsPerToken, "FLOP"), r.Context, SI(r.ForwardFLOPsPerToken, "FLOP")),
		Verdict:     v,
		StatedValue: acctFwdFLOP, ComputedValue: r.ForwardFLOPsPerToken,
	}
}

func checkTrainCompute(e *gpt4Env) Check {
	r := e.r
	v := agree(acctTrainFLOP, r.TrainMatmulFLOPs, 0.03)
	if within(acctTrainFLOP, e.sixND, 0.03) {
		v += ": 6·N·D and the stated total agree"
	}
	return Check{
		Claim: "training compute", Stated: "~2.15e25 FLOPs",
		Computed: fmt.Sprintf("6·N·D = 6 × %s × %s = %s; with this preset's matmul weights %s, plus %s of attention = %s",
			HumanCount(acctActive), HumanCount(acctTokens), Sci(e.sixND), Sci(r.TrainMatmulFLOPs), Sci(r.TrainAttentionFLOPs), Sci(r.TrainFLOPs)),
		Verdict:     v,
		StatedValue: acctTrainFLOP, ComputedValue: r.TrainFLOPs,
	}
}

func checkCountOrRate(e *gpt4Env) Check {
	rate := acctTrainFLOP / (e.days * 86400)
	asRate := acctTrainFLOP / a100Peak // A100s that would sustain it per second
	v := "ok as a FLOP count"
	if asRate > 100*acctGPUs {
		v += "; wrong if read as FLOP/s"
	}
	return Check{
		Claim: "2.15e25: count or rate", Stated: "\"2.15e25 FLOPS\"",
		Computed: fmt.Sprintf("a count of operations: spread over %.0f days it is a sustained %s (%s A100s × 312 TFLOP/s × 34%%); as a rate it would need %s A100s",
			e.days, SI(rate, "FLOP/s"), thousands(acctGPUs), HumanCount(asRate)),
		Verdict:     v,
		StatedValue: acctTrainFLOP, ComputedValue: rate,
	}
}

func checkTokens(e *gpt4Env) Check {
	r := e.r
	tokens := acctTrainFLOP / (r.TrainMatmulFLOPs / acctTokens)
	return Check{
		Claim: "training tokens", Stated: "~13T (text ×2, code ×4 epochs)",
		Computed: fmt.Sprintf("%s / (6 × %s) = %s tokens; the epoch split cannot be derived from the arithmetic",
			Sci(acctTrainFLOP), HumanCount(r.TrainMatmulFLOPs/6/acctTokens), HumanCount(tokens)),
		Verdict:     agree(acctTokens, tokens, 0.05) + "; epochs unchecked",
		StatedValue: acctTokens, ComputedValue: tokens,
	}
}

func checkGPUs(e *gpt4Env) Check {
	return Check{
		Claim: "GPU count", Stated: "~25,000 A100s",
		Computed: fmt.Sprintf("%s / (%.0f days × 312 TFLOP/s × 34%% MFU) = %s A100s",
			Sci(acctTrainFLOP), (acctDaysLo+acctDaysHi)/2, thousands(int64(math.Round(e.gpusNeeded/100)*100))),
		Verdict:     agree(acctGPUs, e.gpusNeeded, 0.1),
		StatedValue: acctGPUs, ComputedValue: e.gpusNeeded,
	}
}

func checkGPUMisquote(e *gpt4Env) Check {
	const misquote = 25
	days := acctTrainFLOP / (misquote * a100Peak * 0.34) / 86400
	v := "ok"
	if days > acctDaysHi {
		v = fmt.Sprintf("wrong: %d A100s would need %.0f years; only about %s A100s fit %.0f–%.0f days",
			misquote, days/365.25, thousands(int64(math.Round(e.gpusNeeded/1000)*1000)), acctDaysLo, acctDaysHi)
	}
	return Check{
		Claim: "GPU count as sometimes quoted", Stated: "\"25 A100s\"",
		Computed:    fmt.Sprintf("%d A100s at 34%% MFU would need %s days (%.0f years)", misquote, thousands(int64(days)), days/365.25),
		Verdict:     v,
		StatedValue: misquote, ComputedValue: e.gpusNeeded,
	}
}

func checkDays(e *gpt4Env) Check {
	return Check{
		Claim: "training time", Stated: "90–100 days",
		Computed: fmt.Sprintf("%s / (%s × 312 TFLOP/s × %s–%s MFU) = %.1f–%.1f days (%.1f at 34%%)",
			Sci(acctTrainFLOP), thousands(acctGPUs), pct(acctMFULo), pct(acctMFUHi), e.dLo, e.dHi, e.days),
		Verdict:     verdictRange(e.dLo, e.dHi, acctDaysLo, acctDaysHi, "days"),
		StatedValue: (acctDaysLo + acctDaysHi) / 2, ComputedValue: e.days,
	}
}

func checkMFU(e *gpt4Env) Check {
	mLo := acctTrainFLOP / (acctGPUs * a100Peak * acctDaysHi * 86400)
	mHi := acctTrainFLOP / (acctGPUs * a100Peak * acctDaysLo * 86400)
	return Check{
		Claim: "MFU", Stated: "32–36%",
		Computed: fmt.Sprintf("%s / (%s × 312 TFLOP/s × %.0f–%.0f days) = %s–%s",
			Sci(acctTrainFLOP), thousands(acctGPUs), acctDaysLo, acctDaysHi, pct(mLo), pct(mHi)),
		Verdict:     verdictRange(mLo, mHi, acctMFULo, acctMFUHi, "MFU"),
		StatedValue: (acctMFULo + acctMFUHi) / 2, ComputedValue: (mLo + mHi) / 2,
	}
}

func checkCost(e *gpt4Env) Check {
	cLo, cHi := acctGPUs*24*acctDaysLo*acctPrice, acctGPUs*24*acctDaysHi*acctPrice
	v := "ok"
	if !e.costOK {
		v = fmt.Sprintf("inconsistent: %s is %s above the top of the range; it needs %.0f days or %s GPUs",
			"$63M", relErr(cHi, acctCost)[1:], acctCost/(acctGPUs*24*acctPrice), thousands(int64(math.Round(acctCost/(24*acctDaysHi*acctPrice)/100)*100)))
	}
	return Check{
		Claim: "cost", Stated: "~$63M at $1 per A100-hour",
		Computed: fmt.Sprintf("%s × 24 h × %.0f–%.0f days × $%.0f = %s–%s (%s at %.1f days)",
			thousands(acctGPUs), acctDaysLo, acctDaysHi, acctPrice, money(cLo), money(cHi), money(e.costMid), e.days),
		Verdict:     v,
		StatedValue: acctCost, ComputedValue: e.costMid,
	}
}

// kvPerToken returns the bf16 KV-cache bytes per token with full
// multi-head attention and with multi-query attention.
func (e *gpt4Env) kvPerToken() (mha, mqa float64) { return 2 * e.L * e.d * 2, 2 * e.L * e.hd * 2 }

func checkContext(e *gpt4Env) Check {
	mha, mqa := e.kvPerToken()
	return Check{
		Claim: "context", Stated: "8k",
		Computed: fmt.Sprintf("KV cache in bf16: %s per token and %s per 8k sequence with multi-head attention; %s and %s with multi-query",
			SI(mha, "B"), SI(mha*acctContext, "B"), SI(mqa, "B"), SI(mqa*acctContext, "B")),
		Verdict:     "ok (taken as given); serving many 8k sequences is only cheap with multi-query attention",
		StatedValue: acctContext, ComputedValue: float64(e.r.Context),
	}
}

func checkLongContext(e *gpt4Env) Check {
	mha, mqa := e.kvPerToken()
	return Check{
		Claim: "32k fine-tuned version", Stated: "32k context",
		Computed: fmt.Sprintf("KV cache per 32k sequence: %s with multi-head attention (more than one 80 GB GPU holds), %s with multi-query",
			SI(mha*acctLongContext, "B"), SI(mqa*acctLongContext, "B")),
		Verdict:     "unchecked (plausible with multi-query attention or a sharded cache)",
		StatedValue: acctLongContext,
	}
}

func checkBatch(e *gpt4Env) Check {
	return Check{
		Claim: "batch size", Stated: "60M tokens",
		Computed: fmt.Sprintf("%s sequences of %d tokens; %s optimizer steps for %s tokens",
			thousands(int64(math.Floor(acctBatch/acctContext))), acctContext, thousands(int64(math.Round(acctTokens/acctBatch))), HumanCount(acctTokens)),
		Verdict:     "ok (taken as given)",
		StatedValue: acctBatch, ComputedValue: acctBatch,
	}
}

func checkPerExpertBatch(e *gpt4Env) Check {
	perExpert := acctBatch * acctTopK / acctExperts
	return Check{
		Claim: "tokens per expert per batch", Stated: "~7.5M",
		Computed: fmt.Sprintf("%s × top-%d / %d experts = %s per expert in each MoE layer (balanced routing)",
			HumanCount(acctBatch), acctTopK, acctExperts, HumanCount(perExpert)),
		Verdict:     agree(acctPerExpertB, perExpert, 0.01),
		StatedValue: acctPerExpertB, ComputedValue: perExpert,
	}
}

func checkGPT3Misquote(e *gpt4Env) Check {
	v := "ok (" + relErr(acctGPT3Misquote, e.gpt3) + ")"
	if !within(acctGPT3Misquote, e.gpt3, 0.1) {
		v = fmt.Sprintf("wrong: GPT-3 has %s parameters (%s from the published %s), not %s",
			HumanCount(e.gpt3), relErr(gpt3Published, e.gpt3), HumanCount(gpt3Published), HumanCount(acctGPT3Misquote))
	}
	return Check{
		Claim: "GPT-3 size as sometimes quoted", Stated: "\"GPT-3 is 1T\"",
		Computed:    fmt.Sprintf("%s (96 layers, d = 12288, the gpt3 preset); published: %s", HumanCount(e.gpt3), HumanCount(gpt3Published)),
		Verdict:     v,
		StatedValue: acctGPT3Misquote, ComputedValue: e.gpt3,
	}
}

func checkSpeculative(e *gpt4Env) Check {
	// Expected distinct experts per layer touched by n tokens that each
	// pick k of E at random: E·(1 − (1 − k/E)^n).
	const draft = 4
	touched := acctExperts * (1 - math.Pow(1-float64(acctTopK)/acctExperts, draft+1))
	return Check{
		Claim: "speculative decoding", Stated: "used for inference",
		Computed: fmt.Sprintf("verifying %d draft tokens (%d positions) touches %.1f of %d experts per layer on average, against %d for one token",
			draft, draft+1, touched, acctExperts, acctTopK),
		Verdict:       fmt.Sprintf("unchecked (plausible): each verification reads %.1f× the expert weights of a plain decode step, so acceptance must be high to pay", touched/acctTopK),
		ComputedValue: touched,
	}
}

// The Chinese translation of the account that moe's users read states the
// attention parameters as 55 亿 (亿 = 10^8, so 5.5B) and calls the $63M
// (6300 万美元) the cost of "this one hour" of training ("仅这一小时的训练
// 成本将高达 6300 万美元"). Each check's Stated quotes the account; its
// Computed and Verdict come from the arithmetic.
const (
	zhAttention = 55e8
	zhCostHour  = 6300e4
)

func checkZhAttention(e *gpt4Env) Check {
	attn := float64(e.r.Attention)
	v := agree(zhAttention, attn, 0.05)
	if k := slip(zhAttention, attn, 0.05); k != 0 {
		v = fmt.Sprintf("wrong: 亿 is 10^8, so 55 亿 is %s, %.0f× %s the arithmetic's %s and the English original's ~%s; it should read 550 亿",
			HumanCount(zhAttention), math.Pow(10, math.Abs(float64(k))), map[bool]string{true: "above", false: "below"}[k > 0], HumanCount(attn), HumanCount(acctAttention))
	}
	return Check{
		Claim: "attention parameters (Chinese translation)", Stated: "\"55 亿\"",
		Computed:    fmt.Sprintf("%s = 4·d²·%d, as in the English original's ~%s", HumanCount(attn), e.r.Layers, HumanCount(acctAttention)),
		Verdict:     v,
		StatedValue: zhAttention, ComputedValue: attn,
	}
}

func checkZhCostHour(e *gpt4Env) Check {
	hour := acctGPUs * acctPrice // one hour of the whole cluster
	v := agree(zhCostHour, hour, 0.1)
	if !within(zhCostHour, hour, 0.1) {
		v = fmt.Sprintf("wrong: one hour of %s A100s at $%.0f costs %s; %s is the whole run's cost (%.0f hours, %.0f days), not one hour's",
			thousands(acctGPUs), acctPrice, money(hour), money(zhCostHour), zhCostHour/hour, zhCostHour/hour/24)
	}
	return Check{
		Claim: "cost of one hour (Chinese translation)", Stated: "\"6300 万美元\" for \"这一小时\"",
		Computed:    fmt.Sprintf("%s A100s × $%.0f per GPU-hour = %s per hour; the run: %s", thousands(acctGPUs), acctPrice, money(hour), money(e.costMid)),
		Verdict:     v,
		StatedValue: zhCostHour, ComputedValue: hour,
	}
}

func checkConsistency(e *gpt4Env) Check {
	consistent := within(acctTrainFLOP, e.sixND, 0.03) && e.dLo <= acctDaysHi && e.dHi >= acctDaysLo && within(acctGPUs, e.gpusNeeded, 0.1)
	summary := "inconsistent"
	if consistent {
		summary = "ok: 6·N·D, the GPU count, the days and the MFU agree with each other"
		if !e.costOK {
			summary += "; only the cost is high (" + relErr(e.costMid, acctCost) + " against the other figures)"
		}
	}
	return Check{
		Claim: "consistency", Stated: "6·N·D, GPUs, days, MFU, cost",
		Computed: fmt.Sprintf("6 × %s × %s = %s ≈ %s; %s A100s × 312 TFLOP/s × 34%% → %.0f days → %s",
			HumanCount(acctActive), HumanCount(acctTokens), Sci(e.sixND), Sci(acctTrainFLOP), thousands(acctGPUs), e.days, money(e.costMid)),
		Verdict: summary,
	}
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
