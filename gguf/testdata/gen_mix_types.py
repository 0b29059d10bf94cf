#!/usr/bin/env python3
"""Writes mix_types.json: the tensor types llama-quantize chooses for each
of its mixes on a few small models laid out as moe's export lays them out
(llama architecture, Mixtral-style experts), for gguf's TestMixMatchesLlamaQuantize.

llama.cpp is found through MOE_LLAMA_CPP (a source tree built under
build/bin): the quantizing is llama_model_quantize from build/bin/libllama.so
(what llama-quantize calls; no importance matrix), through ctypes; gguf-py is
read from the tree to write the input models and read the quantized files:

    MOE_LLAMA_CPP=/path/to/llama.cpp python3 gguf/testdata/gen_mix_types.py

The input weights are zero: only the type choices are recorded.
"""
import ctypes
import json
import os
import sys
import tempfile

import numpy as np

root = os.environ.get("MOE_LLAMA_CPP")
if not root:
    sys.exit("set MOE_LLAMA_CPP to a llama.cpp source tree with build/bin/llama-quantize")
sys.path.insert(0, os.path.join(root, "gguf-py"))
import gguf  # noqa: E402

libpath = os.path.join(root, "build", "bin", "libllama.so")
if not os.path.exists(libpath):
    sys.exit("no " + libpath + " (build llama.cpp first)")


class QuantizeParams(ctypes.Structure):  # llama_model_quantize_params (include/llama.h)
    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int), ("output_tensor_type", ctypes.c_int),
                ("token_embedding_type", ctypes.c_int), ("allow_requantize", ctypes.c_bool),
                ("quantize_output_tensor", ctypes.c_bool), ("only_copy", ctypes.c_bool), ("pure", ctypes.c_bool),
                ("keep_split", ctypes.c_bool), ("dry_run", ctypes.c_bool), ("imatrix", ctypes.c_void_p),
                ("kv_overrides", ctypes.c_void_p), ("tt_overrides", ctypes.c_void_p), ("prune_layers", ctypes.c_void_p)]


lib = ctypes.CDLL(libpath)
lib.llama_model_quantize_default_params.restype = QuantizeParams
lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
lib.llama_model_quantize.restype = ctypes.c_uint32
lib.llama_backend_init()

# mix name -> llama_ftype (include/llama.h)
MIXES = {"q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q8_0": 7, "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13,
         "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "iq4_nl": 25, "iq4_xs": 30,
         "mxfp4_moe": 38, "f16": 1, "bf16": 32}


def quantize(src, dst, ftype):
    params = lib.llama_model_quantize_default_params()
    params.nthread = 1
    params.ftype = ftype
    return lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))

# name, layers, experts (0: dense), d, heads, kv heads, ffn width, tied embeddings
MODELS = [
    ("moe8_ff32", 16, 8, 256, 4, 2, 32, False),      # 8 experts; expert rows of 32: k-quant fallbacks
    ("moe4_gqa4_tied", 12, 4, 256, 8, 2, 256, True),  # grouped-query factor 4, no output.weight
    ("dense9", 9, 0, 256, 4, 4, 512, False),
]
VOCAB = 320


def tensors_of(layers, experts, d, heads, kv, ff, tied):
    """(name, shape in numpy order: slowest dimension first)."""
    hd = d // heads
    ts = [("token_embd.weight", (VOCAB, d))]
    for i in range(layers):
        p = "blk.%d." % i
        ts += [(p + "attn_norm.weight", (d,)), (p + "attn_q.weight", (d, d)), (p + "attn_k.weight", (kv * hd, d)),
               (p + "attn_v.weight", (kv * hd, d)), (p + "attn_output.weight", (d, d)), (p + "ffn_norm.weight", (d,))]
        if experts:
            ts += [(p + "ffn_gate_inp.weight", (experts, d)), (p + "ffn_gate_exps.weight", (experts, ff, d)),
                   (p + "ffn_up_exps.weight", (experts, ff, d)), (p + "ffn_down_exps.weight", (experts, d, ff))]
        else:
            ts += [(p + "ffn_gate.weight", (ff, d)), (p + "ffn_up.weight", (ff, d)), (p + "ffn_down.weight", (d, ff))]
    ts.append(("output_norm.weight", (d,)))
    if not tied:
        ts.append(("output.weight", (VOCAB, d)))
    return ts


def write_model(path, layers, experts, d, heads, kv, ff, tied):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("mixtest")
    w.add_file_type(0)
    w.add_vocab_size(VOCAB)
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(d // heads)
    w.add_layer_norm_rms_eps(1e-5)
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(2)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<%d>" % i for i in range(VOCAB)])
    w.add_token_types([1] * VOCAB)
    w.add_token_merges([])
    ts = tensors_of(layers, experts, d, heads, kv, ff, tied)
    for name, shape in ts:
        w.add_tensor(name, np.zeros(shape, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ts


out = {"generator": "gguf/testdata/gen_mix_types.py (llama_model_quantize, no importance matrix)", "models": []}
with tempfile.TemporaryDirectory() as tmp:
    for name, layers, experts, d, heads, kv, ff, tied in MODELS:
        src = os.path.join(tmp, name + ".gguf")
        ts = write_model(src, layers, experts, d, heads, kv, ff, tied)
        entry = {"name": name, "layers": layers, "experts": experts, "heads": heads, "kv_heads": kv,
                 "tensors": [{"name": n, "dims": list(reversed(s))} for n, s in ts], "mixes": {}}
        for mix in MIXES:
            dst = os.path.join(tmp, name + "-" + mix + ".gguf")
            if quantize(src, dst, MIXES[mix]) != 0:
                entry["mixes"][mix] = {"error": "llama_model_quantize failed (see its log above)"}
                print(name, mix, "failed", file=sys.stderr)
                continue
            rd = gguf.GGUFReader(dst)
            types = {t.name: t.tensor_type.name.lower() for t in rd.tensors}
            ft = int(rd.fields["general.file_type"].parts[-1][0])
            entry["mixes"][mix] = {"file_type": ft, "types": [types[n] for n, _ in ts]}
            os.remove(dst)
        out["models"].append(entry)
        print("model", name, "done", file=sys.stderr)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mix_types.json")
with open(path, "w") as f:
    json.dump(out, f, indent=None, separators=(",", ":"))
    f.write("\n")
print("wrote", path)
