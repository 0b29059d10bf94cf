#!/usr/bin/python3
"""Side-by-side GEMM comparison: moe bench gemm vs numpy/OpenBLAS.

For every shape it alternates the two ROUNDS times (so both see the same
background load), keeps each one's best wall time and best GFLOP per
CPU-second, and prints a Markdown table with the ratios.

  go build -o /tmp/moe ./cmd/moe
  /usr/bin/python3 benchmarks/gemm/compare.py --moe /tmp/moe --threads 2 --rounds 5

Shapes are MxNxK, with a trailing "t" for A·Bᵀ (B stored n×k, a linear
layer's x·Wᵀ). OpenBLAS runs with OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=THREADS
and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, so it picks its own kernel.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SHAPES = ["256x256x256", "1024x1024x1024", "4096x4096x4096",
                  "1x4096x4096t", "8x4096x4096t", "1x4096x4096", "8x4096x4096",
                  "2048x512x512t", "2048x4096x512t"]


def run_moe(moe, shape, threads, min_time):
    trans = shape.endswith("t")
    m, n, k = shape.rstrip("t").split("x")
    cmd = [moe, "bench", "gemm", "--m", m, "--n", n, "--k", k, "--threads", str(threads),
           "--min-time", min_time, "--json"]
    if trans:
        cmd.append("--transb")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_numpy(shape, threads):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "numpy_gemm.py"), shape],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", default="moe")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", default="1s")
    ap.add_argument("shapes", nargs="*", default=DEFAULT_SHAPES)
    args = ap.parse_args()
    print("| shape | moe GFLOP/s | OpenBLAS GFLOP/s | moe/OpenBLAS | moe GFLOP/CPU-s | OpenBLAS GFLOP/CPU-s | ratio | moe GB/s (decode) |")
    print("|---|---|---|---|---|---|---|---|")
    peak = None
    for shape in args.shapes:
        mb = nb = mc = nc = 0.0
        gbs = ""
        for _ in range(args.rounds):
            r = run_moe(args.moe, shape, args.threads, args.min_time)
            peak = r.get("peak_gflops", peak)
            mb = max(mb, r["gflops"])
            mc = max(mc, r.get("gflops_per_cpu_second", 0))
            if r.get("memory_bandwidth"):
                gbs = "%.1f of %.1f measured" % (r["bytes_per_second"] / 1e9, r["memory_bandwidth"] / 1e9)
            o = run_numpy(shape, args.threads)
            nb = max(nb, o["gflops"])
            nc = max(nc, o["gflops_per_cpu_second"])
        print("| %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %s |" % (
            shape, mb, nb, mb / nb, mc, nc, mc / nc if nc else 0, gbs))
        sys.stdout.flush()
    if peak:
        print("\npeak (moe's estimate, %d threads): %.0f GFLOP/s" % (args.threads, peak))


if __name__ == "__main__":
    main()
