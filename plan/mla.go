package plan

import "github.com/moe-llm/moe/config"

// mlaParams returns one layer's attention parameters under multi-head
// latent attention: the queries (d×heads·(nope+rope), or through the q
// LoRA d×q_lora_rank, its norm and q_lora_rank×heads·(nope+rope)), the
// latent projection d×(kv_lora_rank+rope) and its norm, the per-head key
// and value decompression kv_lora_rank×heads·(nope+v), and the output
// heads·v×d.
func mlaParams(cfg *config.Config) int64 {
	d, nh := int64(cfg.HiddenSize), int64(cfg.NumHeads)
	nope, rope, v := int64(cfg.QKNopeHeadDim), int64(cfg.QKRopeHeadDim), int64(cfg.VHeadDim)
	rank, qr := int64(cfg.KVLoraRank), int64(cfg.QLoraRank)
	q := d * nh * (nope + rope)
	if qr > 0 {
		q = d*qr + qr + qr*nh*(nope+rope)
	}
	return q + d*(rank+rope) + rank + rank*nh*(nope+v) + nh*v*d
}

// attnWidth returns the mean of the query-key and value widths over all
// heads: the attention FLOPs per key are 2·(q·k width) + 2·(value width) =
// 4·attnWidth. Without MLA both are heads × head dimension.
func attnWidth(cfg *config.Config) float64 {
	if cfg.MLA() {
		return float64(cfg.NumHeads) * float64(cfg.HeadDimension()+cfg.VHeadDim) / 2
	}
	return float64(cfg.NumHeads * cfg.HeadDimension())
}
