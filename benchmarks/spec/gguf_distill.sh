#!/usr/bin/env bash
# Distilled vs text-trained draft for a quantized GGUF target, the way
# docs/generate.md ("A distilled draft for a quantized GGUF target") measures it.
#
#   benchmarks/spec/gguf_distill.sh CORPUS.txt OUTDIR [TARGET_CONFIG]
#
# Splits CORPUS at 95% (the last 5% is never trained on; the prompts come from
# it), trains a target (TARGET_CONFIG, default the 82M-parameter MoE below) for
# $TARGET_TIME, exports it to Q8_0 and Q4_K_M GGUF, trains tiny-draft from the
# text and distills tiny-draft from the Q8_0 file for the same $DRAFT_TIME,
# then runs `moe bench generate` (greedy) on three held-out passages with both
# drafts, with the adaptive policy and with K fixed at $FIXED_K, and prints a
# summary line per draft. Environment: MOE (the moe binary; default: go build),
# THREADS (2), TARGET_TIME (12m), DRAFT_TIME (3m), GEN (200), PROMPT (48
# tokens), RUNS (3), FIXED_K (3), DISTILL_ARGS (extra `moe distill` flags, e.g.
# "--generate 32 --generate-greedy").
set -euo pipefail
corpus=${1:?usage: gguf_distill.sh CORPUS.txt OUTDIR [TARGET_CONFIG]}
out=${2:?usage: gguf_distill.sh CORPUS.txt OUTDIR [TARGET_CONFIG]}
cfg=${3:-}
moe=${MOE:-}
if [ -z "$moe" ]; then
	moe=$(mktemp -d)/moe
	(cd "$(dirname "$0")/../.." && go build -o "$moe" ./cmd/moe)
fi
threads=${THREADS:-2}
mkdir -p "$out"
if [ -z "$cfg" ]; then
	cfg=$out/target.json
	cat >"$cfg" <<'JSON'
{"model_type": "mixtral", "vocab_size": 4096, "hidden_size": 512, "intermediate_size": 1024,
 "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
 "max_position_embeddings": 256, "rope_theta": 10000, "rms_norm_eps": 1e-5,
 "tie_word_embeddings": true, "num_local_experts": 8, "num_experts_per_tok": 2,
 "router_aux_loss_coef": 0.01, "moe_routing": "token_choice", "moe_router_order": "topk_softmax",
 "moe_router_z_loss_coef": 0.001, "initializer_range": 0.02, "hidden_act": "silu"}
JSON
fi
# The split: train on the first 95% (at a line end), prompts from the rest.
python3 - "$corpus" "$out" <<'PY'
import re, sys
b = open(sys.argv[1], 'rb').read()
cut = b.index(b'\n', int(len(b) * 0.95)) + 1
open(sys.argv[2] + '/train.txt', 'wb').write(b[:cut])
lines = [l for l in b[cut:].decode('utf-8').split('\n')]
for i, f in enumerate([0.2, 0.5, 0.8]):
    j = int(len(lines) * f)
    sel = [l for l in lines[j:j + 40] if l.strip()][:4]
    text = ' '.join(re.sub(r'^\s*\d+\s+', '', l).strip() for l in sel)
    open('%s/prompt%d.txt' % (sys.argv[2], i + 1), 'w').write(text + '\n')
PY
"$moe" train --config "$cfg" --data "$out/train.txt" --out "$out/target" --threads "$threads" \
	--seq-len 128 --batch 8 --steps "${TARGET_STEPS:-700}" --warmup 30 --max-time "${TARGET_TIME:-12m}" \
	--eval-every 0 --checkpoint-every 200 --quiet --json >"$out/target.train.json"
"$moe" export --model "$out/target" --type q8_0 --out "$out/target-q8_0.gguf"
"$moe" export --model "$out/target" --type q4_k_m --out "$out/target-q4_k_m.gguf"
"$moe" train --config tiny-draft --tokenizer "$out/target" --data "$out/train.txt" --out "$out/draft-text" \
	--threads "$threads" --seq-len 128 --steps "${DRAFT_STEPS:-2000}" --max-time "${DRAFT_TIME:-3m}" \
	--eval-every 0 --quiet --json >"$out/draft-text.train.json"
"$moe" distill --target "$out/target-q8_0.gguf" --config tiny-draft --data "$out/train.txt" \
	--out "$out/draft-distilled" --threads "$threads" --steps "${DISTILL_STEPS:-300}" \
	--max-time "${DRAFT_TIME:-3m}" ${DISTILL_ARGS:-} --quiet --json >"$out/draft-distilled.distill.json"
for t in q8_0 q4_k_m; do
	for p in 1 2 3; do
		for mode in adaptive fixed; do
			extra=()
			if [ "$mode" = fixed ]; then
				extra=(--fixed-draft-tokens --draft-tokens "${FIXED_K:-3}")
			fi
			f=$out/bench-$t-p$p-$mode
			uptime >"$f.load"
			"$moe" bench generate --model "$out/target-$t.gguf" --draft "$out/draft-distilled" --draft "$out/draft-text" \
				--prompt-file "$out/prompt$p.txt" --prompt-tokens "${PROMPT:-48}" --gen-tokens "${GEN:-200}" \
				--threads "$threads" --runs "${RUNS:-3}" "${extra[@]}" --json >"$f.json"
			uptime >>"$f.load"
		done
	done
done
python3 - "$out"/bench-*.json <<'PY'
import json, sys
for f in sys.argv[1:]:
    d = json.load(open(f))
    for r in d['drafts']:
        print('%s %s: %.2fx, acceptance %.2f, accepted/round %.2f, vcost %.2f, K %d, identical %s' % (
            f.rsplit('/', 1)[-1], r['draft'].rsplit('/', 1)[-1], r['speedup'], r['acceptance_rate'],
            r['mean_accepted_length'], r['verify_cost_vs_plain_step'], r['draft_tokens_final'], r.get('identical')))
PY
