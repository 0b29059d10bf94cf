#!/bin/sh
# Training throughput of moe beside the PyTorch peer (benchmarks/train/torch_train.py), float32 and
# bf16 each, in interleaved rounds on the same machine: per round one `moe bench train --precision
# both` (a float32 then a bf16 timing) and one torch_train.py run per precision. Prints each
# run's JSON line, then a summary: median tokens/s and tokens per CPU-second of the four, and the
# round-by-round ratios (per CPU-second is the steadier figure on a loaded machine).
#
# usage: benchmarks/train/compare.sh MOE_BINARY [ROUNDS [THREADS [CONFIG]]]
#
# The peer runs Debian's python3-torch with the OpenMP OpenBLAS (libopenblas0-openmp), OpenBLAS
# choosing its own kernel (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset) and OMP_WAIT_POLICY=PASSIVE
# (spinning OpenMP threads lose their time slices to other load).
set -eu
moe=${1:?usage: compare.sh MOE_BINARY [ROUNDS [THREADS [CONFIG]]]}
rounds=${2:-5}
threads=${3:-2}
config=${4:-tiny}
dir=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$moe" bench train --config "$config" --threads "$threads" --rounds 1 --steps 1 --save-config "$tmp/config.json" --json >/dev/null
uptime
for r in $(seq "$rounds"); do
	"$moe" bench train --config "$config" --threads "$threads" --precision both --rounds 1 --steps 2 --json | tee -a "$tmp/moe.jsonl"
	for p in float32 bf16; do
		env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$threads" OMP_WAIT_POLICY=PASSIVE \
			LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
			/usr/bin/python3 "$dir/torch_train.py" --config "$tmp/config.json" --threads "$threads" \
			--steps 2 --warmup 1 --precision "$p" | tee -a "$tmp/torch.jsonl"
	done
	uptime
done
/usr/bin/python3 - "$tmp/moe.jsonl" "$tmp/torch.jsonl" <<'PY'
import json, statistics, sys

moe = [json.loads(l) for l in open(sys.argv[1])]
torch = [json.loads(l) for l in open(sys.argv[2])]
cols = {}  # name -> per-round (tokens/s, tokens per CPU-second)
for d in moe:
    for p in d["precisions"]:
        cols.setdefault("moe " + p["precision"], []).append(
            (p["rounds_tokens_per_second"][0], p["rounds_tokens_per_cpu_second"][0]))
for d in torch:
    cols.setdefault("torch " + d["precision"], []).append((d["tokens_per_second"], d["tokens_per_cpu_second"]))
med = lambda xs: statistics.median(xs)
summary = {}
for name, v in cols.items():
    summary[name] = {"median_tokens_per_second": round(med([w for w, _ in v])),
                     "best_tokens_per_second": round(max(w for w, _ in v)),
                     "median_tokens_per_cpu_second": round(med([c for _, c in v]))}
pairs = [("moe bf16", "moe float32"), ("moe float32", "torch float32"), ("moe bf16", "torch float32"),
         ("moe bf16", "torch bf16"), ("torch bf16", "torch float32")]
for a, b in pairs:
    wall = [x[0] / y[0] for x, y in zip(cols[a], cols[b])]
    cpu = [x[1] / y[1] for x, y in zip(cols[a], cols[b])]
    summary[a + " / " + b] = {"median_wall": round(med(wall), 2), "wall_range": [round(min(wall), 2), round(max(wall), 2)],
                              "median_cpu": round(med(cpu), 2), "cpu_range": [round(min(cpu), 2), round(max(cpu), 2)]}
for k, v in summary.items():
    print(k + ":", json.dumps(v))
PY
