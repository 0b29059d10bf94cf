#!/bin/sh
# Decode and prefill speed of moe beside llama.cpp on the same GGUF files,
# same thread count, interleaved so both see the same machine load.
#
#   MOE_LLAMA_CPP=/path/to/llama.cpp benchmarks/gguf/compare.sh FILE.gguf...
#
# Environment: THREADS (default 2), PP (prompt tokens, default 512), TG
# (generated tokens, default 128), ROUNDS (default 2; the best of each side
# counts; moe decodes twice per round, the first a warm-up as llama-bench
# does one), MOE (the moe binary; default: go build), MOE_ARGS (extra flags
# for moe bench generate, e.g. --weights mmap). llama.cpp's llama-bench
# must be built under $MOE_LLAMA_CPP/build/bin. Prints one line per file:
# moe and llama.cpp tokens/s for decode (tg, from an empty cache as
# llama-bench's tg test) and prefill (pp) and the ratios.
set -eu
PP=${PP:-512}
TG=${TG:-128}
ROUNDS=${ROUNDS:-2}
MOE_ARGS=${MOE_ARGS:-}
. "$(dirname "$0")/common.sh"
bench="$MOE_LLAMA_CPP/build/bin/llama-bench"
# llama_ts P G: avg_ts of llama-bench's CSV row with n_prompt P and n_gen G.
llama_ts() {
	awk -F, -v p="$1" -v g="$2" '{ gsub(/"/, "") }
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		$col["n_prompt"] == p && $col["n_gen"] == g { print $col["avg_ts"] }'
}
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
printf '%-28s %10s %10s %7s %10s %10s %7s\n' file moe_tg llama_tg ratio moe_pp llama_pp ratio
for f in "$@"; do
	mtg=0 mpp=0 ltg=0 lpp=0
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		# As llama-bench: tg decodes from an empty cache, pp is one prompt.
		out=$("$MOE" bench generate $MOE_ARGS --model "$f" --prompt-tokens 1 --gen-tokens "$TG" --threads "$THREADS" --runs 2 --json)
		mtg=$(best "$mtg" "$(echo "$out" | sed -n 's/.*"decode_tokens_per_second": *\([0-9.e+]*\).*/\1/p')")
		out=$("$MOE" bench generate $MOE_ARGS --model "$f" --prompt-tokens "$PP" --gen-tokens 1 --threads "$THREADS" --runs 1 --json)
		mpp=$(best "$mpp" "$(echo "$out" | sed -n 's/.*"prefill_tokens_per_second": *\([0-9.e+]*\).*/\1/p')")
		lout=$("$bench" -m "$f" -t "$THREADS" -p "$PP" -n "$TG" -r 1 -o csv 2>/dev/null)
		ltg=$(best "$ltg" "$(echo "$lout" | llama_ts 0 "$TG")")
		lpp=$(best "$lpp" "$(echo "$lout" | llama_ts "$PP" 0)")
		r=$((r + 1))
	done
	printf '%-28s %10.1f %10.1f %6.2fx %10.1f %10.1f %6.2fx\n' "$(basename "$f")" "$mtg" "$ltg" \
		"$(awk -v a="$mtg" -v b="$ltg" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$mpp" "$lpp" \
		"$(awk -v a="$mpp" -v b="$lpp" 'BEGIN { print (b > 0 ? a / b : 0) }')"
done
