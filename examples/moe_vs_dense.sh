#!/bin/sh
# Train an 8-expert top-2 MoE (the `tiny` preset) and a dense model with the
# same active parameters per token (one SwiGLU FFN twice an expert's width)
# for the same number of steps on the same data, tokenizer and seed, and
# print both validation losses.
#
#   examples/moe_vs_dense.sh [DATA] [STEPS]
#
# DATA defaults to the built-in corpus, STEPS to 300. Environment: MOE (the
# binary, default: go run ./cmd/moe), THREADS (default 2), OUT (default a
# temporary directory), BATCH (4), SEQ (256), LR (3e-3).
set -eu
cd "$(dirname "$0")/.."
DATA=${1:-examples/data/kjv-genesis-exodus.txt}
STEPS=${2:-300}
THREADS=${THREADS:-2}
BATCH=${BATCH:-4}
SEQ=${SEQ:-256}
LR=${LR:-3e-3}
OUT=${OUT:-$(mktemp -d)}
if [ -z "${MOE:-}" ]; then
	go build -o "$OUT/moe" ./cmd/moe
	MOE="$OUT/moe"
fi
mkdir -p "$OUT"

# The MoE: tiny (d 256, 4 layers, 8 experts of width 512, top-2).
# The dense twin: the same model with one FFN of width 2*512 = 1024, so the
# FLOPs and parameters a token touches match (the MoE adds only its router).
"$MOE" bench train --config tiny --steps 1 --batch 1 --seq-len 8 --save-config "$OUT/moe.json" --json >/dev/null
sed -e 's/"num_local_experts": *[0-9]*/"num_local_experts": 0/' \
    -e 's/"num_experts_per_tok": *[0-9]*/"num_experts_per_tok": 0/' \
    -e 's/"intermediate_size": *512/"intermediate_size": 1024/' "$OUT/moe.json" >"$OUT/dense.json"

common="--data $DATA --steps $STEPS --batch $BATCH --seq-len $SEQ --lr $LR --warmup 30 --eval-every 0
	--eval-tokens 65536 --checkpoint-every 0 --threads $THREADS --seed 1 --quiet --json"
echo "training MoE (8 experts, top-2) for $STEPS steps..." >&2
"$MOE" train --config "$OUT/moe.json" --out "$OUT/moe" $common >"$OUT/moe.result"
echo "training dense (same active parameters) for $STEPS steps..." >&2
"$MOE" train --config "$OUT/dense.json" --out "$OUT/dense" --tokenizer "$OUT/moe" $common >"$OUT/dense.result"

val() { sed -e 's/.*"val_loss":\([-0-9.e+]*\).*/\1/' "$1"; }
bpb() { sed -e 's/.*"val_bits_per_byte":\([-0-9.e+]*\).*/\1/' "$1"; }
secs() { sed -e 's/.*"seconds":\([-0-9.e+]*\).*/\1/' "$1"; }
printf 'model                      val_loss  bits/byte  seconds\n'
printf 'MoE 8x top-2 (tiny)        %.4f    %.4f     %.0f\n' "$(val "$OUT/moe.result")" "$(bpb "$OUT/moe.result")" "$(secs "$OUT/moe.result")"
printf 'dense, same active params  %.4f    %.4f     %.0f\n' "$(val "$OUT/dense.result")" "$(bpb "$OUT/dense.result")" "$(secs "$OUT/dense.result")"
echo "runs in $OUT" >&2
