#!/bin/sh
# Start-up cost of moe beside llama.cpp on the same GGUF file, from a fresh
# process with the file in the page cache: wall time to the first generated
# token (load, tokenize, prefill, one token) and peak resident memory for a
# short generation, against the file's size.
#
#   MOE_LLAMA_CPP=/path/to/llama.cpp benchmarks/gguf/startup.sh FILE.gguf...
#
# Environment: THREADS (default 2), TOKENS (for the RSS run, default 16),
# MOE (the moe binary; default: go build). llama-simple must be built under
# $MOE_LLAMA_CPP/build/bin. Needs GNU time (/usr/bin/time).
set -eu
TOKENS=${TOKENS:-16}
. "$(dirname "$0")/common.sh"
simple="$MOE_LLAMA_CPP/build/bin/llama-simple"
# measure CMD...: prints "seconds peak_kib" of one run.
measure() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -1; }
printf '%-24s %8s %12s %12s %12s %12s %12s\n' file size_MB moe_first_s llama_first_s moe_rss_MB llama_rss_MB rss/size
for f in "$@"; do
	cat "$f" >/dev/null # page cache warm, for both
	size=$(stat -c %s "$f")
	# warm-up runs, then the measured ones
	measure "$MOE" generate --model "$f" --prompt "Hello world" --max-tokens 1 --temperature 0 --threads "$THREADS" >/dev/null
	mf=$(measure "$MOE" generate --model "$f" --prompt "Hello world" --max-tokens 1 --temperature 0 --threads "$THREADS" | cut -d' ' -f1)
	lf=$(measure "$simple" -m "$f" -t "$THREADS" -n 1 "Hello world" | cut -d' ' -f1)
	mr=$(measure "$MOE" generate --model "$f" --prompt "Hello world" --max-tokens "$TOKENS" --temperature 0 --threads "$THREADS" | cut -d' ' -f2)
	lr=$(measure "$simple" -m "$f" -t "$THREADS" -n "$TOKENS" "Hello world" | cut -d' ' -f2)
	printf '%-24s %8.0f %12s %12s %12.0f %12.0f %12.2f\n' "$(basename "$f")" "$(awk -v s="$size" 'BEGIN { print s / 1e6 }')" \
		"$mf" "$lf" "$(awk -v k="$mr" 'BEGIN { print k * 1024 / 1e6 }')" "$(awk -v k="$lr" 'BEGIN { print k * 1024 / 1e6 }')" \
		"$(awk -v k="$mr" -v s="$size" 'BEGIN { print k * 1024 / s }')"
done
