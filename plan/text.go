package plan

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes r as an aligned human-readable table with SI units.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	kind := "dense"
	if r.Experts > 1 {
		kind = fmt.Sprintf("MoE %d experts top-%d", r.Experts, r.ExpertsPerToken)
	}
	attnKind := "multi-head"
	switch {
	case r.KVHeads == 1:
		attnKind = "multi-query"
	case r.KVHeads < r.Heads:
		attnKind = fmt.Sprintf("grouped-query, %d KV heads", r.KVHeads)
	}
	fmt.Fprintf(&b, "%s (%s): %s, %d layers, d_model %d, %d heads × %d (%s)\n\n",
		r.Name, r.ModelType, kind, r.Layers, r.HiddenSize, r.Heads, r.HeadDim, attnKind)

	t := &table{indent: "  "}
	t.add("parameters", "total", "active/token")
	row := func(name string, total, active int64) {
		if total == 0 {
			return
		}
		t.add(name, HumanCount(float64(total)), HumanCount(float64(active)))
	}
	emb := "embeddings"
	if r.LMHead == 0 {
		emb = "embeddings (tied to LM head)"
	}
	row(emb, r.Embedding, r.Embedding)
	row("position embeddings", r.Position, r.Position)
	row("LM head", r.LMHead, r.LMHead)
	row("attention", r.Attention, r.Attention)
	row("router", r.Router, r.Router)
	if r.RoutedExperts > 0 {
		active := r.Active - (r.Total - r.RoutedExperts)
		row(fmt.Sprintf("routed experts (%d × %s)", r.Experts, HumanCount(float64(r.Expert))), r.RoutedExperts, active)
	}
	row("shared experts", r.SharedExperts, r.SharedExperts)
	row("dense feed-forward", r.DenseFFN, r.DenseFFN)
	row("norms", r.Norms, r.Norms)
	t.add("total", HumanCount(float64(r.Total)), HumanCount(float64(r.Active)))
	t.write(&b)
	fmt.Fprintf(&b, "  exact: %s total, %s active (%s without embeddings)\n\n",
		thousands(r.Total), thousands(r.Active), thousands(r.ActiveNonEmbedding))

	t = &table{indent: "  "}
	t.add("compute", "", "")
	t.add(fmt.Sprintf("forward per token at %d context", r.Context), SI(r.ForwardFLOPsPerToken, "FLOP"),
		fmt.Sprintf("matmuls %s + attention %s", SI(r.ForwardMatmulFLOPsPerToken, "FLOP"), SI(r.ForwardAttentionFLOPsPerToken, "FLOP")))
	t.add("training tokens", HumanCount(r.TrainTokens), "")
	t.add("training FLOPs", Sci(r.TrainFLOPs), fmt.Sprintf("6·N·D %s + attention %s", Sci(r.TrainMatmulFLOPs), Sci(r.TrainAttentionFLOPs)))
	t.add("KV cache (bf16)", SI(r.KVCacheBytesPerToken, "B")+"/token", fmt.Sprintf("%s per %d-token sequence", SI(r.KVCacheBytesPerSequence, "B"), r.Context))
	t.write(&b)
	b.WriteString("\n")

	t = &table{indent: "  "}
	t.add("memory", "fp32", "bf16", "int8", "int4")
	t.add("weights", SI(r.WeightBytes["fp32"], "B"), SI(r.WeightBytes["bf16"], "B"), SI(r.WeightBytes["int8"], "B"), SI(r.WeightBytes["int4"], "B"))
	t.add("training (weights+grads+AdamW)", SI(r.TrainMemoryBytes, "B"), "", "", "")
	t.write(&b)
	fmt.Fprintf(&b, "  80 GB %ss to hold: bf16 weights %s, training state %s (activations not counted)\n",
		strings.ToUpper(r.GPU), thousands(int64(r.GPUsForBF16Weights)), thousands(int64(r.GPUsForTrainState)))
	fmt.Fprintf(&b, "  moe train here (--batch %d --seq-len %d): %s\n", r.LocalBatch, r.LocalSeqLen, r.LocalTrainMemory)
	b.WriteString("\n")

	t = &table{indent: "  "}
	t.add("time and cost", "", "")
	t.add("cluster", fmt.Sprintf("%s × %s", thousands(int64(r.GPUs)), strings.ToUpper(r.GPU)),
		fmt.Sprintf("%s dense bf16 each, %s MFU", SI(r.GPUPeakFLOPS, "FLOP/s"), pct(r.MFU)))
	t.add("training time", duration(r.TrainSeconds), fmt.Sprintf("%s GPU-hours", HumanCount(r.GPUHours)))
	t.add("cost", money(r.CostUSD), fmt.Sprintf("at $%.2f per GPU-hour", r.PricePerGPUHour))
	per := "per expert per MoE layer"
	if r.Experts <= 1 {
		per = "dense: every token through every weight"
	}
	t.add(fmt.Sprintf("batch of %s tokens", HumanCount(r.BatchTokens)), HumanCount(r.TokensPerExpertPerBatch), per)
	t.write(&b)
	if len(r.Ramp) > 0 {
		fmt.Fprintf(&b, "\nbatch ramp: %s → %s tokens over the first %s tokens (~%s optimizer steps)\n",
			HumanCount(r.Ramp[0].BatchTokens), HumanCount(r.BatchTokens), HumanCount(r.Ramp[len(r.Ramp)-1].Consumed), HumanCount(r.RampSteps))
		t = &table{indent: "  "}
		t.add("tokens seen", "batch tokens", "tokens per expert per step")
		for _, p := range r.Ramp {
			t.add(HumanCount(p.Consumed), HumanCount(p.BatchTokens), HumanCount(p.TokensPerExpert))
		}
		t.write(&b)
	}

	if len(r.Checks) > 0 {
		b.WriteString("\nchecks against the published account\n")
		t = &table{indent: "  ", left: true, wrap: 64}
		t.add("claim", "stated", "verdict")
		for _, c := range r.Checks {
			t.add(c.Claim, c.Stated, c.Verdict)
		}
		t.write(&b)
		b.WriteString("\nhow each was computed\n")
		for _, c := range r.Checks {
			for i, l := range wrapText(c.Claim+": "+c.Computed, 110) {
				if i == 0 {
					fmt.Fprintf(&b, "  %s\n", l)
				} else {
					fmt.Fprintf(&b, "      %s\n", l)
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
