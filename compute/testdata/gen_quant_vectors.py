#!/usr/bin/env python3
"""Writes the quantization test vectors of compute's tests (quant/ here).

The values come from llama.cpp's own code, found through MOE_LLAMA_CPP (a
llama.cpp source tree): its Python package gguf-py (numpy dequantizers and
quantizers written to match ggml's C reference code) and, when llama.cpp is
built, ggml's C quantizers themselves (ggml_quantize_chunk in
build/bin/libggml-base.so, what llama-quantize calls, without an importance
matrix):

    MOE_LLAMA_CPP=/path/to/llama.cpp python3 compute/testdata/gen_quant_vectors.py

For every type gguf-py decodes: random but valid blocks (scales finite) and
the float32 values gguf-py decodes from them. For every type gguf-py
quantizes: float32 inputs and the bytes gguf-py encodes them to; for every
type ggml quantizes (k-quants included): the bytes ggml's C code encodes the
same inputs to ("encode-c" cases). index.json
lists the cases: type, rows, cols, and the files holding the encoded bytes
and the float32 values (little-endian).
"""
import json
import os
import sys

import numpy as np

root = os.environ.get("MOE_LLAMA_CPP")
if not root:
    sys.exit("set MOE_LLAMA_CPP to a llama.cpp source tree (gguf-py is read from it)")
sys.path.insert(0, os.path.join(root, "gguf-py"))
from gguf import quants  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T  # noqa: E402

out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant")
os.makedirs(out_dir, exist_ok=True)
rng = np.random.default_rng(20261202)

# Byte offsets of the f16 scale fields in each type's block.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0],
}
# rows x cols of each decode case: odd shapes, a few dozen to a few hundred blocks.
SHAPES = {32: (5, 1280), 256: (3, 4096), 1: (7, 96)}


def random_scales(n):
    """n finite f16 values: mostly normal, spanning 2^-14..2^4, some subnormal, some zero."""
    mag = np.exp2(rng.uniform(-14, 4, n)).astype(np.float16)
    sub = rng.random(n) < 0.05
    mag[sub] = (rng.integers(1, 1024, sub.sum()).astype(np.uint16)).view(np.float16)
    mag[rng.random(n) < 0.02] = 0
    sign = np.where(rng.random(n) < 0.5, -1, 1).astype(np.float16)
    return (mag * sign).astype(np.float16)


cases = []


def write(name, arr):
    path = os.path.join(out_dir, name)
    arr.tofile(path)
    return name


def decode_case(t):
    bs, ts = GGML_QUANT_SIZES[t]
    rows, cols = SHAPES[bs]
    nb = rows * cols // bs
    blocks = rng.integers(0, 256, (nb, ts), dtype=np.uint8)
    for off in F16_FIELDS.get(t, []):
        blocks[:, off:off + 2] = random_scales(nb).view(np.uint8).reshape(nb, 2)
    if t == T.BF16:
        # keep NaNs out (their payload is not the question here); Inf and subnormals stay
        v = blocks.reshape(-1).view(np.uint16)
        nan = (v & 0x7F80) == 0x7F80
        v[nan] &= 0xFF80
    if t == T.F16:
        v = blocks.reshape(-1).view(np.uint16)
        nan = ((v & 0x7C00) == 0x7C00) & ((v & 0x3FF) != 0)
        v[nan] &= 0xFC00
    data = blocks.reshape(rows, cols // bs * ts)
    vals = quants.dequantize(data, t).astype(np.float32)
    assert vals.shape == (rows, cols), (t.name, vals.shape)
    name = t.name.lower()
    cases.append({"kind": "decode", "type": name, "rows": rows, "cols": cols,
                  "bytes": write(name + ".dec.bin", data), "floats": write(name + ".dec.f32", vals)})


def encode_input(rows, cols, bs):
    """Rows of normal values with a per-block spread, plus special blocks."""
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    scale = np.exp2(rng.uniform(-8, 4, (rows, cols // bs, 1))).astype(np.float32)
    x = (x.reshape(rows, cols // bs, bs) * scale).reshape(rows, cols)
    flat = x.reshape(-1, bs)
    flat[0] = 0                        # an all-zero block
    flat[1] = 0.25                     # a constant block
    flat[2, :] = 0
    flat[2, 5] = -3                    # one value, negative
    flat[3] = np.round(flat[3] * 8) / 8  # values on a grid: ties in the rounding
    return x


ENC_INPUTS = {}


def encode_input_file(rows, cols):
    key = (rows, cols)
    if key not in ENC_INPUTS:
        x = encode_input(rows, cols, 32)
        ENC_INPUTS[key] = (x, write("enc_%dx%d.f32" % key, x))
    return ENC_INPUTS[key]


def encode_case(t):
    bs, ts = GGML_QUANT_SIZES[t]
    rows, cols = (5, 1024) if bs > 1 else (7, 96)
    x, xname = encode_input_file(rows, cols)
    q = quants.quantize(x, t)
    q = np.ascontiguousarray(q).view(np.uint8).reshape(rows, -1)
    assert q.shape[1] == cols // bs * ts
    name = t.name.lower()
    cases.append({"kind": "encode", "type": name, "rows": rows, "cols": cols,
                  "bytes": write(name + ".enc.bin", q), "floats": xname})


def ggml_lib():
    import ctypes
    path = os.path.join(root, "build", "bin", "libggml-base.so")
    if not os.path.exists(path):
        print("no", path, "(llama.cpp not built): skipping the C quantizer cases", file=sys.stderr)
        return None
    lib = ctypes.CDLL(path)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    return lib


def encode_c_case(lib, t):
    bs, ts = GGML_QUANT_SIZES[t]
    rows, cols = 5, 1024
    x, xname = encode_input_file(rows, cols)
    x = np.ascontiguousarray(x, dtype=np.float32)
    q = np.zeros((rows, cols // bs * ts), dtype=np.uint8)
    lib.ggml_quantize_init(int(t))
    n = lib.ggml_quantize_chunk(int(t), x.ctypes.data, q.ctypes.data, 0, rows, cols, None)
    assert n == q.size, (t.name, n, q.size)
    name = t.name.lower()
    cases.append({"kind": "encode-c", "type": name, "rows": rows, "cols": cols,
                  "bytes": write(name + ".encc.bin", q), "floats": xname})


for t in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K,
          T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS, T.MXFP4]:
    decode_case(t)
for t in [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.MXFP4]:
    encode_case(t)
lib = ggml_lib()
if lib is not None:
    for t in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
              T.IQ4_NL, T.IQ4_XS, T.MXFP4]:
        encode_c_case(lib, t)

with open(os.path.join(out_dir, "index.json"), "w") as f:
    json.dump({"generator": "compute/testdata/gen_quant_vectors.py (gguf-py, numpy " + np.__version__ + ")",
               "cases": cases}, f, indent=1)
    f.write("\n")
print("wrote", len(cases), "cases to", out_dir)
