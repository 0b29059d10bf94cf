#!/usr/bin/python3
"""Time float32 C = A·B with numpy (OpenBLAS) for the shapes moe bench gemm
reports, printing one JSON object per shape: {"m","n","k","gflops","seconds"}.

Run with the BLAS thread count pinned and OpenBLAS's core overrides unset:
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 \
      OMP_NUM_THREADS=2 /usr/bin/python3 benchmarks/gemm/numpy_gemm.py 1024x1024x1024 ...
Also reported: the mean time and the process CPU time per run (OpenBLAS's
threads spin while waiting, so its CPU time includes that). Each shape is MxNxK; "t" after K (e.g. 8x4096x4096t) times A·Bᵀ with B
stored n×k (the x·Wᵀ of a linear layer). The best of several timed runs
after a warm-up is reported, as moe bench gemm does.
"""
import json
import sys
import time

import numpy as np


def bench(m, n, k, trans_b, min_time=1.0):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k), dtype=np.float32)
    # For decode shapes (m <= 16) cycle through copies of B totalling at
    # least 512 MB, as moe bench gemm does, so B comes from memory.
    copies = 1
    if m <= 16:
        copies = max(1, min(64, -(-512 * 10**6 // (4 * k * n))))
    bs = [rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
          for _ in range(copies)]
    c = np.empty((m, n), dtype=np.float32)
    state = [0]

    def run():
        b = bs[state[0] % copies]
        state[0] += 1
        if trans_b:
            np.matmul(a, b.T, out=c)
        else:
            np.matmul(a, b, out=c)

    for _ in range(copies):
        run()
    best = float("inf")
    total = 0.0
    reps = 0
    cpu0 = time.process_time()
    while total < min_time or reps < 3:
        t0 = time.perf_counter()
        run()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        total += dt
        reps += 1
    cpu = (time.process_time() - cpu0) / reps
    return best, total / reps, cpu


def main():
    shapes = sys.argv[1:] or ["256x256x256", "1024x1024x1024"]
    for s in shapes:
        trans_b = s.endswith("t")
        m, n, k = (int(x) for x in s.rstrip("t").split("x"))
        sec, mean, cpu = bench(m, n, k, trans_b)
        flop = 2.0 * m * n * k
        print(json.dumps({"m": m, "n": n, "k": k, "trans_b": trans_b,
                          "gflops": flop / sec / 1e9, "seconds": sec,
                          "mean_seconds": mean, "cpu_seconds": cpu,
                          "gflops_per_cpu_second": flop / cpu / 1e9}))


if __name__ == "__main__":
    main()
