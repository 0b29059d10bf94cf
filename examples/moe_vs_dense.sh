#!/bin/sh
# Train an 8-expert top-2 MoE and a dense model with the same active
# parameters per token (one SwiGLU FFN twice an expert's width) for the same
# number of steps on the same data, tokenizer, batches and seed, and print
# both validation losses.
#
#   examples/moe_vs_dense.sh [DATA] [STEPS]
#
# DATA defaults to $KJV (a plain-text King James Bible; the built-in corpus when
# unset or absent), STEPS to 400. Environment:
#   SIZE     small (default: d 128, 4 layers, experts of width 256 vs a dense
#            FFN of 512) or tiny (the tiny preset: d 256, experts of 512 vs 1024)
#   BATCH_TOKENS  tokens per optimizer step (default 4096 = 16 sequences of 128
#            x 2 micro-batches); the MoE needs enough tokens per expert per step
#   MOE (the binary; default: go build), THREADS (default 1 per run; the two
#   runs go in parallel), OUT (default a temporary directory), LR (3e-3).
set -eu
cd "$(dirname "$0")/.."
DATA=${1:-${KJV:-examples/data/kjv-genesis-exodus.txt}}
[ -e "$DATA" ] || DATA=examples/data/kjv-genesis-exodus.txt
STEPS=${2:-400}
SIZE=${SIZE:-small}
THREADS=${THREADS:-1}
BATCH_TOKENS=${BATCH_TOKENS:-4096}
LR=${LR:-3e-3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
if [ -z "${MOE:-}" ]; then
	go build -o "$OUT/bin/moe" ./cmd/moe # not $OUT/moe: that is the MoE's run directory
	MOE="$OUT/bin/moe"
fi

# Start from the tiny preset's config.json (8 experts, top-2, vocab 4096).
"$MOE" bench train --config tiny --steps 1 --batch 1 --seq-len 8 --save-config "$OUT/tiny.json" --json >/dev/null
case "$SIZE" in
small)
	sed -e 's/"hidden_size": *256/"hidden_size": 128/' \
	    -e 's/"num_attention_heads": *8/"num_attention_heads": 4/' \
	    -e 's/"num_key_value_heads": *4/"num_key_value_heads": 2/' \
	    -e 's/"intermediate_size": *512/"intermediate_size": 256/' "$OUT/tiny.json" >"$OUT/moe.json"
	DENSE_FF=512 ;;
tiny)
	cp "$OUT/tiny.json" "$OUT/moe.json"
	DENSE_FF=1024 ;;
*)
	echo "SIZE must be small or tiny" >&2; exit 2 ;;
esac
# The dense twin: no experts, one FFN of twice an expert's width, so the
# parameters and FLOPs a token touches match (the MoE adds only its router).
sed -e 's/"num_local_experts": *[0-9]*/"num_local_experts": 0/' \
    -e 's/"num_experts_per_tok": *[0-9]*/"num_experts_per_tok": 0/' \
    -e "s/\"intermediate_size\": *[0-9]*/\"intermediate_size\": $DENSE_FF/" "$OUT/moe.json" >"$OUT/dense.json"

# One tokenizer for both.
"$MOE" train --config "$OUT/moe.json" --data "$DATA" --out "$OUT/tok" --steps 0 --quiet --json >/dev/null

common="--data $DATA --tokenizer $OUT/tok --steps $STEPS --batch 16 --seq-len 128 --batch-tokens $BATCH_TOKENS
	--lr $LR --warmup 30 --eval-every 100 --eval-tokens 65536 --checkpoint-every 0 --threads $THREADS --seed 1 --quiet --json"
echo "training the $SIZE MoE (8 experts, top-2) and its dense twin for $STEPS steps in $OUT ..." >&2
"$MOE" train --config "$OUT/moe.json" --out "$OUT/moe" $common >"$OUT/moe.result" &
moe_pid=$!
"$MOE" train --config "$OUT/dense.json" --out "$OUT/dense" $common >"$OUT/dense.result"
wait $moe_pid

val() { sed -e 's/.*"val_loss":\([-0-9.e+]*\).*/\1/' "$1"; }
bpb() { sed -e 's/.*"val_bits_per_byte":\([-0-9.e+]*\).*/\1/' "$1"; }
printf 'model (%s, %s steps x %s tokens)   val_loss  bits/byte\n' "$SIZE" "$STEPS" "$BATCH_TOKENS"
printf 'MoE, 8 experts top-2              %.4f    %.4f\n' "$(val "$OUT/moe.result")" "$(bpb "$OUT/moe.result")"
printf 'dense, same active parameters     %.4f    %.4f\n' "$(val "$OUT/dense.result")" "$(bpb "$OUT/dense.result")"
