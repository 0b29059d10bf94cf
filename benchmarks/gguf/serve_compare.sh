#!/bin/sh
# Serving throughput of moe serve beside llama-server on the same GGUF file:
# both get the same thread count and 16 slots, and the same client
# (`moe bench serve`) measures aggregate generated tokens/s at 1, 4 and 16
# concurrent clients, greedy, TOKENS tokens per request (ignore_eos), with
# the tokens that are not valid UTF-8 alone banned by logit_bias in both
# (llama-server b9749 answers 500 when the text is not valid UTF-8, which a
# random-weight model produces).
#
#   MOE_LLAMA_CPP=/path/to/llama.cpp benchmarks/gguf/serve_compare.sh FILE.gguf...
#
# Environment: THREADS (default 2), CLIENTS (default 1,4,16), TOKENS (64),
# REQUESTS (per client, default 2), ROUNDS (default 1; the best counts),
# MOE (the moe binary; default: go build), PORT (default 18080). llama-server
# must be built under $MOE_LLAMA_CPP/build/bin.
set -eu
CLIENTS=${CLIENTS:-1,4,16}
TOKENS=${TOKENS:-64}
REQUESTS=${REQUESTS:-2}
ROUNDS=${ROUNDS:-1}
PORT=${PORT:-18080}
. "$(dirname "$0")/common.sh"
server="$MOE_LLAMA_CPP/build/bin/llama-server"
url="http://127.0.0.1:$PORT"
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT INT TERM
# ready: wait until GET /health answers 200.
ready() {
	i=0
	until curl -sf "$url/health" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -gt 600 ] && { echo "server did not come up" >&2; exit 1; }
		sleep 0.2
	done
}
# tps N JSON: tokens_per_second of the level with N clients.
tps() { echo "$2" | tr '{' '\n' | sed -n "s/.*\"clients\":$1,.*\"tokens_per_second\":\([0-9.e+]*\).*/\1/p"; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
for f in "$@"; do
	m= l=
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		"$MOE" serve --model "$f" --threads "$THREADS" --parallel 16 --addr "127.0.0.1:$PORT" 2>/dev/null &
		pid=$!
		ready
		mo=$("$MOE" bench serve --url "$url" --valid-utf8 "$f" --clients "$CLIENTS" --tokens "$TOKENS" --requests "$REQUESTS" --json)
		stop
		"$server" -m "$f" -t "$THREADS" -np 16 -c $((16 * 512)) --port "$PORT" >/dev/null 2>&1 &
		pid=$!
		ready
		lo=$("$MOE" bench serve --url "$url" --valid-utf8 "$f" --clients "$CLIENTS" --tokens "$TOKENS" --requests "$REQUESTS" --json)
		stop
		for c in $(echo "$CLIENTS" | tr ',' ' '); do
			eval "m$c=\$(best \"\${m$c:-0}\" \"$(tps "$c" "$mo")\")"
			eval "l$c=\$(best \"\${l$c:-0}\" \"$(tps "$c" "$lo")\")"
		done
		r=$((r + 1))
	done
	for c in $(echo "$CLIENTS" | tr ',' ' '); do
		eval "a=\$m$c b=\$l$c"
		printf '%-24s %3d clients  moe %8.1f  llama-server %8.1f tok/s  %5.2fx\n' "$(basename "$f")" "$c" "$a" "$b" \
			"$(awk -v a="$a" -v b="$b" 'BEGIN { print (b > 0 ? a / b : 0) }')"
	done
done
